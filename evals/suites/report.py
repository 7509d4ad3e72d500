"""``python -m evals report --results DIR [DIR ...] --out REPORT``: one Markdown report + JSON summary.

Reads the ``results.json`` of any suites' results dirs and writes ``REPORT/report.md`` (a Table-1-like
table -- rows models, columns Acc, B-Acc, kappa, W-F1, MF1 per dataset, mean ± sd over seeds when
several seeds were given, else the value with its subject-bootstrap 95% CI -- then robustness deltas,
channel-loss tables, attribution summaries and zero-shot collapse), the plots copied under
``REPORT/figures/``, and ``REPORT/summary.json`` with the same numbers.

A results dir may carry a label, ``LABEL=DIR`` (e.g. ``"subject split=results/metrics_subject"``): the
setting it stands for in the tables. ``--layout NAME`` adds, first, a table in the layout of a seed
paper with the paper's numbers beside ours (``LAYOUTS``; the numbers are literal tables below, copied
from ../shared/papers and cited). The reproduce scripts (recipes/reproduce/) end with this command:

    python -m evals report --layout psg_llava_table1 --out REPORT \
        --results "epoch split=results/metrics_epoch" "subject split=results/metrics_subject"
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from psgvlm.provenance import provenance, read_json, write_json_atomic, write_text_atomic
from psgvlm.stages import STAGES

from ..papers import (
    NAP_ZERO_SHOT,
    PSG_LLAVA_ATTRIBUTION,
    PSG_LLAVA_TABLE1,
    SDREAMER_ABLATION,
    SLEEP2VEC_TABLE1,
    TABLE1_METRICS,
)

COLUMNS = (("accuracy", "Acc"), ("balanced_accuracy", "B-Acc"), ("kappa", "κ"), ("weighted_f1", "W-F1"),
           ("macro_f1", "MF1"))
SUITE_NAMES = ("metrics", "robustness", "channel_loss", "attribution", "zero_shot")


def _fmt(x, nd: int = 4) -> str:
    return "–" if x is None else f"{x:.{nd}f}"


def _ci(ci) -> str:
    return "" if not ci or ci[0] is None else f" [{ci[0]:.3f}, {ci[1]:.3f}]"


def table1(metrics_results: list[dict], labels: list[str | None] | None = None) -> tuple[str, list[dict]]:
    """Markdown Table 1 and its rows: one row per model (and label), five columns per dataset."""
    cells: dict[str, dict[str, dict]] = {}
    ci_of: dict[tuple[str, str], dict] = {}
    for res, label in zip(metrics_results, labels or [None] * len(metrics_results)):
        def name(model, label=label):
            return model if label is None else f"{model} [{label}]"
        for r in res.get("runs", []):
            ci_of.setdefault((name(r["model"]), r["dataset"]), r.get("ci"))
        for m in res.get("models", []):
            cells.setdefault(name(m["model"]), {})[m["dataset"]] = m
    datasets = sorted({d for per in cells.values() for d in per})
    head = "| Model | " + " | ".join(f"{d} {label}" for d in datasets for _, label in COLUMNS) + " |"
    sep = "|---|" + "---|" * (len(datasets) * len(COLUMNS))
    lines, rows = [head, sep], []
    for model, per in cells.items():
        vals, row = [], {"model": model}  # model carries its label: "name [label]"
        for d in datasets:
            m = per.get(d)
            for key, label in COLUMNS:
                if m is None:
                    vals.append("–")
                    continue
                s = m["summary"][key]
                if m["n_runs"] > 1:
                    vals.append(f"{s['mean']:.4f} ± {s['sd']:.4f} (n={m['n_runs']})")
                else:
                    vals.append(f"{s['mean']:.4f}{_ci((ci_of.get((model, d)) or {}).get(key))}")
                row[f"{d}/{label}"] = {"mean": s["mean"], "sd": s["sd"], "n": m["n_runs"]}
        lines.append(f"| {model} | " + " | ".join(vals) + " |")
        rows.append(row)
    return "\n".join(lines), rows


# ----------------------------------------------------------------------------- paper layouts
# The papers' own numbers: evals/papers.py.


def _paper_dataset(name: str) -> str | None:
    """Our dataset name (``isruc``, ``mass``, ``shhs-1`` ...) -> the paper's column, else None."""
    low = name.lower()
    return next((d for d in ("ISRUC", "MASS", "SHHS") if low.startswith(d.lower())), None)


def _by_model(loaded, suite: str = "metrics") -> dict:
    """``{(label, model, dataset): [pooled metrics of each run]}`` over the labelled results of ``suite``."""
    out = defaultdict(list)
    for label, _, res in loaded:
        if res["suite"] == suite:
            for r in res.get("runs", []):
                out[(label, r["model"], r["dataset"])].append({**r["pooled"], "run": r["run"]})
    return out


def _mean_sd(values) -> tuple[float | None, float | None, int]:
    v = np.array([x for x in values if x is not None], dtype=np.float64)
    if not len(v):
        return None, None, 0
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0, len(v)


def _cell(values, scale: float = 1.0, nd: int = 4, sign: str = "") -> str:
    """Mean (± sd over several values) of ``values`` times ``scale``; ``sign="+"`` signs the mean."""
    mean, sd, n = _mean_sd(values)
    if mean is None:
        return "–"
    return f"{mean * scale:{sign}.{nd}f}" + (f" ± {sd * scale:.{nd}f}" if n > 1 else "")


def _specificity(confusion) -> float:
    """Mean over stages of TN / (TN + FP), from a confusion matrix (rows truth, columns prediction)."""
    cm = np.asarray(confusion, dtype=np.float64)
    fp = cm.sum(0) - np.diag(cm)
    tn = cm.sum() - cm.sum(0) - cm.sum(1) + np.diag(cm)
    return float(np.mean(np.divide(tn, tn + fp, out=np.zeros_like(tn), where=(tn + fp) > 0)))


def _n_of(runs: dict) -> str:
    ns = sorted({len(v) for v in runs.values()})
    return "n=" + "/".join(map(str, ns)) if ns else ""


def layout_psg_llava_table1(loaded) -> tuple[list[str], dict]:
    """The PSG-image paper's Table 1: paper row, then ours per label (split), per model."""
    runs = _by_model(loaded)
    ours: dict[str, dict[str, dict]] = defaultdict(lambda: defaultdict(dict))  # model -> label -> dataset -> runs
    for (label, model, dataset), pooled in runs.items():
        if _paper_dataset(dataset):
            ours[model][label or "ours"][_paper_dataset(dataset)] = pooled
    cols = [f"{d} {short}" for d in ("ISRUC", "MASS", "SHHS") for _, short in TABLE1_METRICS]
    lines = ["| Group | Model | Source | " + " | ".join(cols) + " |", "|---|---|---|" + "---|" * len(cols)]
    rows = []
    groups = {**PSG_LLAVA_TABLE1, "Not in the paper": {m: {} for m in ours
                                                        if not any(m in g for g in PSG_LLAVA_TABLE1.values())}}
    for group, models in groups.items():
        for model, paper in models.items():
            if paper:
                vals = [f"{paper[d][i]:.4f}" if d in paper else "–" for d in ("ISRUC", "MASS", "SHHS")
                        for i in range(len(TABLE1_METRICS))]
                lines.append(f"| {group} | {model} | paper | " + " | ".join(vals) + " |")
                rows.append({"group": group, "model": model, "source": "paper", **{
                    f"{d}/{short}": paper[d][i] for d in paper for i, (_, short) in enumerate(TABLE1_METRICS)}})
            for label, per in sorted(ours.get(model, {}).items()):
                vals = [_cell([p[key] for p in per.get(d, [])]) for d in ("ISRUC", "MASS", "SHHS")
                        for key, _ in TABLE1_METRICS]
                lines.append(f"| {group} | {model} | ours, {label} ({_n_of(per)}) | " + " | ".join(vals) + " |")
                rows.append({"group": group, "model": model, "source": f"ours, {label}", **{
                    f"{d}/{short}": _mean_sd([p[key] for p in per[d]])[0] for d in per
                    for key, short in TABLE1_METRICS}})
    notes = ["Paper: Table 1 of the PSG-image paper (epoch-level 8:2 split, 5 seeds) and its Figure 3 for "
             "the CLIP encoder; ours: mean ± sd over seeds of the test split, per split kind. MaxViT, ViM, "
             "MultiSleepNet, TinySleepNet, SleepWaveNet, LaBraM and CBraMod are not implemented here; "
             "sleep2vec, sDREAMER and NAP are this project's signal baselines (not in the paper)."]
    return [*lines, "", *notes], {"rows": rows}


def layout_sleep2vec_table1(loaded) -> tuple[list[str], dict]:
    """sleep2vec's Table 1 (SHHS): per channel set (the label), the paper's sleep2vec row and ours."""
    runs = _by_model(loaded)
    cols = ["Acc. %", "κ", "MF1 %", "Sens. %", "Spec. %", *(f"F1 {s} %" for s in STAGES)]
    lines = ["| Channel set | Source | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    rows = []
    ours = defaultdict(list)
    for (label, model, dataset), pooled in runs.items():
        ours[label or model].extend((model, dataset, p) for p in pooled)
    for channel_set in [*SLEEP2VEC_TABLE1, *(k for k in ours if k not in SLEEP2VEC_TABLE1)]:
        paper = SLEEP2VEC_TABLE1.get(channel_set)
        if paper:
            lines.append(f"| {channel_set} | paper (sleep2vec) | " + " | ".join(
                f"{v:.2f}" if i == 1 else f"{v:.1f}" for i, v in enumerate(paper)) + " |")
            rows.append({"channel_set": channel_set, "source": "paper", "values": list(paper)})
        got = ours.get(channel_set)
        if not got:
            lines.append(f"| {channel_set} | ours | " + " | ".join("–" for _ in cols) + " |")
            continue
        ps = [p for _, _, p in got]
        per_key = [[p["accuracy"] for p in ps], [p["kappa"] for p in ps], [p["macro_f1"] for p in ps],
                   [p["balanced_accuracy"] for p in ps], [_specificity(p["confusion"]) for p in ps],
                   *([p["per_class_f1"][s] for p in ps] for s in STAGES)]
        vals = [_cell(v, 1.0, 2) if i == 1 else _cell(v, 100.0, 1) for i, v in enumerate(per_key)]
        models = sorted({f"{m} on {d}" for m, d, _ in got})
        lines.append(f"| {channel_set} | ours ({', '.join(models)}; n={len(ps)}) | " + " | ".join(vals) + " |")
        rows.append({"channel_set": channel_set, "source": "ours", "n": len(ps),
                     "values": [_mean_sd(v)[0] for v in per_key]})
    notes = ["Paper: sleep2vec's Table 1 (SHHS, sleep2vec-medium pre-trained on five cohorts). Ours: one "
             "fine-tune per channel set, mean ± sd over seeds; Sens. is the mean per-class recall "
             "(balanced accuracy), Spec. the mean per-class specificity. IBI & RESP needs inter-beat-interval "
             "features, which this project does not derive: no row of ours."]
    return [*lines, "", *notes], {"rows": rows}


def layout_sdreamer_ablation(loaded) -> tuple[list[str], dict]:
    """sDREAMER's variants (sequence / epoch-only, with / without self-distillation): mixed and single-channel."""
    runs = _by_model(loaded)
    cols = ["Acc %", "MF1 %", "EEG-only Acc %", "EMG-only Acc %"]
    lines = ["| Variant | Source | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    rows = []
    ours = defaultdict(list)
    for (label, model, _), pooled in runs.items():
        ours[model if label is None else f"{model} [{label}]"].extend(pooled)
    for variant in [*SDREAMER_ABLATION, *(k for k in ours if k not in SDREAMER_ABLATION)]:
        paper = SDREAMER_ABLATION.get(variant)
        if paper:
            lines.append(f"| {variant} | paper (mice, 3 classes) | " + " | ".join(
                "–" if v is None else f"{v:.2f}" for v in paper) + " |")
        ps = ours.get(variant, [])
        single = [read_json(Path(p["run"]) / "metrics_single_channel.json")
                  if (Path(p["run"]) / "metrics_single_channel.json").exists() else {} for p in ps]
        per_key = [[p["accuracy"] for p in ps], [p["macro_f1"] for p in ps],
                   [s.get("eeg", {}).get("accuracy") for s in single], [s.get("emg", {}).get("accuracy") for s in single]]
        lines.append(f"| {variant} | ours (n={len(ps)}) | " + " | ".join(_cell(v, 100.0, 2) for v in per_key) + " |")
        rows.append({"variant": variant, "paper": None if paper is None else list(paper), "n": len(ps),
                     "ours": [_mean_sd(v)[0] for v in per_key]})
    notes = ["Paper: sDREAMER on a mouse dataset with three classes, so its levels are not comparable with "
             "five-class human staging; compare the direction of each ablation. Single-channel columns: "
             "the multi-channel model run on one modality (the run's metrics_single_channel.json)."]
    return [*lines, "", *notes], {"rows": rows}


def layout_nap_zero_shot(loaded) -> tuple[list[str], dict]:
    """NAP's zero-shot table: per target dataset (the label), the best single frozen model, soft vote and
    NAP macro F1 (mean ± sd over seeds), the best single model named."""
    runs = _by_model(loaded)
    lines = ["| Target | Source | best single model MF1 | soft vote MF1 | NAP MF1 | NAP − best single |",
             "|---|---|---|---|---|---|"]
    rows = []
    targets = sorted({label for label, _, _ in runs if label})
    for target in [*NAP_ZERO_SHOT, *(t for t in targets if t not in NAP_ZERO_SHOT)]:
        if target in NAP_ZERO_SHOT:
            single, nap = NAP_ZERO_SHOT[target]
            lines.append(f"| {target} | paper | {single:.3f} | – | {nap:.3f} | {nap - single:+.3f} |")
        if target not in targets:
            continue
        mf1 = defaultdict(list)  # model -> macro F1 per run (seed)
        for (lab, model, _), ps in runs.items():
            if lab == target:
                mf1[model] += [p["macro_f1"] for p in ps]
        singles = {m: v for m, v in mf1.items() if m not in ("NAP", "soft vote")}
        best = max(singles, key=lambda m: _mean_sd(singles[m])[0], default=None)
        best_v, nap_v = _mean_sd(singles.get(best, []))[0], _mean_sd(mf1.get("NAP", []))[0]
        gain = f"{nap_v - best_v:+.3f}" if best_v is not None and nap_v is not None else "–"
        lines.append(f"| {target} | ours (n={len(mf1.get('NAP', []))}) | "
                     f"{_cell(singles.get(best, []), 1, 3)}{f' ({best})' if best else ''} | "
                     f"{_cell(mf1.get('soft vote', []), 1, 3)} | {_cell(mf1.get('NAP', []), 1, 3)} | {gain} |")
        rows.append({"target": target, "best_single_model": best, "best_single": best_v,
                     "soft_vote": _mean_sd(mf1.get("soft vote", []))[0], "nap": nap_v, "n": len(mf1.get("NAP", [])),
                     "singles": {m: _mean_sd(v)[0] for m, v in singles.items()}})
    notes = ["Paper: NAP trained on BSWR (private), its base models single-channel deep stagers trained "
             "elsewhere, applied zero-shot to each target. Ours: recipes/nap.py --protocol zero_shot trains NAP on "
             "the other corpora's streams and predicts the target, which it never saw; the frozen models are the "
             "pretrained reference stagers YASA and GSSC run per EEG channel (`psgvlm reference`). Best single "
             "model: the frozen model (its per-channel streams averaged) with the highest MF1 on the target."]
    return [*lines, "", *notes], {"rows": rows}


def layout_psg_llava_robustness(loaded) -> tuple[list[str], dict]:
    """The PSG-image paper's robustness settings: per setting, model (label), clean -> corrupted."""
    groups = defaultdict(list)
    for label, path, res in loaded:
        if res["suite"] == "robustness":
            groups[(res["setting"], label or path.name)].append(res)
    lines, rows = [], []
    for setting in ("clean-train", "train-corrupted"):
        keys = sorted(k for k in groups if k[0] == setting)
        lines += [f"**{setting}** ({'trained clean, tested corrupted' if setting == 'clean-train' else 'trained and tested corrupted'})",
                  "", "| Model | " + " | ".join(f"{short} clean → corrupted (Δ)" for _, short in TABLE1_METRICS) + " |",
                  "|---|" + "---|" * len(TABLE1_METRICS)]
        for key in keys:
            rs = groups[key]
            cells = []
            for metric, _ in TABLE1_METRICS:
                clean, bad = _mean_sd([r["clean"][metric] for r in rs])[0], _mean_sd([r["corrupted"][metric] for r in rs])[0]
                cells.append(f"{_fmt(clean)} → {_fmt(bad)} ({_cell([r['delta'][metric]['delta'] for r in rs], sign='+')})")
            lines.append(f"| {key[1]} (n={len(rs)}) | " + " | ".join(cells) + " |")
            rows.append({"setting": setting, "model": key[1], "n": len(rs), "delta": {
                m: _mean_sd([r["delta"][m]["delta"] for r in rs])[0] for m, _ in TABLE1_METRICS}})
        if not keys:
            lines.append("| – | " + " | ".join("–" for _ in TABLE1_METRICS) + " |")
        lines.append("")
    notes = ["Paper: Figures 4 and 5 of the PSG-image paper show these settings on ISRUC and MASS as charts, "
             "with no numbers in the text, so there is no paper column. Protocol: about 70% of subjects get "
             "failing core EEG channels (noise or zeros from a random onset)."]
    return [*lines, *notes], {"rows": rows}


def layout_psg_llava_attribution(loaded) -> tuple[list[str], dict]:
    """The PSG-image paper's Figure 7 in words beside our per-stage modality ranking."""
    lines = ["| Model | Stage | paper (Fig. 7) | ours: modalities by mean attribution | strongest cell | n |",
             "|---|---|---|---|---|---|"]
    rows = []
    for label, path, res in loaded:
        if res["suite"] != "attribution":
            continue
        for stage in [*STAGES, "misclassified"]:
            agg = res["aggregates"].get(stage if stage == "misclassified" else f"correct_{stage}", {"n": 0})
            if not agg.get("n"):
                lines.append(f"| {label or path.name} | {stage} | {PSG_LLAVA_ATTRIBUTION[stage]} | – | – | 0 |")
                continue
            ranked = sorted(agg["modality_scores"].items(), key=lambda kv: -kv[1])
            top = agg["top"]
            lines.append(f"| {label or path.name} | {stage} | {PSG_LLAVA_ATTRIBUTION[stage]} | "
                         + " > ".join(f"{m} {v:.2f}" for m, v in ranked)
                         + f" | {top['channel']}, s {top['window_s'][0]:g}-{top['window_s'][1]:g} | {agg['n']} |")
            rows.append({"model": label or path.name, "stage": stage, "modalities": dict(ranked), "n": agg["n"]})
    notes = ["Paper: Figures 7 and 12 of the PSG-image paper (qualitative, ISRUC). Ours: the mean "
             "feature-ablation map of the correctly classified test epochs of each stage (and of the "
             "misclassified ones), averaged over each modality's channel bands."]
    return [*lines, "", *notes], {"rows": rows}


# Literal registry: --layout name -> (table builder, section title).
LAYOUTS = {
    "psg_llava_table1": (layout_psg_llava_table1, "PSG-image paper, Table 1 (paper beside ours)"),
    "psg_llava_robustness": (layout_psg_llava_robustness, "PSG-image paper, robustness (Figures 4-5)"),
    "psg_llava_attribution": (layout_psg_llava_attribution, "PSG-image paper, attribution (Figure 7)"),
    "sleep2vec_table1": (layout_sleep2vec_table1, "sleep2vec, Table 1 (SHHS, per channel set)"),
    "sdreamer_ablation": (layout_sdreamer_ablation, "sDREAMER, self-distillation and epoch-only ablation"),
    "nap_zero_shot": (layout_nap_zero_shot, "NAP, zero-shot macro F1"),
}


def parse_results_entry(entry: str) -> tuple[str | None, Path]:
    """``"LABEL=DIR"`` -> (label, DIR); a plain ``DIR`` (or one that exists, ``=`` and all) -> (None, DIR)."""
    if "=" in entry and not Path(entry).exists():
        label, path = entry.split("=", 1)
        if label.strip():
            return label.strip(), Path(path)
    return None, Path(entry)


def _copy_figures(src: Path, dst: Path, rel_to: Path) -> list[str]:
    dst.mkdir(parents=True, exist_ok=True)
    out = []
    for png in sorted(src.glob("*.png")):
        shutil.copy2(png, dst / png.name)
        out.append(str((dst / png.name).relative_to(rel_to)))
    return out


def run_report(results_dirs, out, *, title: str = "psgvlm evaluation report", max_figures: int = 12,
               layout: str | None = None) -> dict:
    """Gather results dirs (``DIR`` or ``LABEL=DIR``) into ``out/report.md``, ``out/summary.json`` and
    ``out/figures``; ``layout`` (a ``LAYOUTS`` name) puts a paper's table with its numbers first."""
    out = Path(out)
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r} not known; choose from {sorted(LAYOUTS)}")
    labelled = []
    for entry in results_dirs:
        label, d = parse_results_entry(str(entry))
        path = d / "results.json" if d.is_dir() else d
        if not path.exists():
            raise FileNotFoundError(f"no results.json in {d}")
        res = read_json(path)
        if res.get("suite") not in SUITE_NAMES:
            raise ValueError(f"{path}: suite {res.get('suite')!r} is not one of {list(SUITE_NAMES)}")
        labelled.append((label, path.parent, res))
    if not labelled:
        raise ValueError("no results dirs given")
    loaded = [(p, r) for _, p, r in labelled]
    md = [f"# {title}", ""]
    summary: dict = {"sources": [str(p) for p, _ in loaded], "labels": [lab for lab, _, _ in labelled],
                     "provenance": provenance()}
    by_suite = {s: [(p, r) for p, r in loaded if r["suite"] == s] for s in SUITE_NAMES}
    if layout is not None:
        build, heading = LAYOUTS[layout]
        lines, summary["layout"] = build(labelled)
        summary["layout"]["name"] = layout
        md += [f"## {heading}", "", *lines, ""]

    if by_suite["metrics"]:
        text, rows = table1([r for _, _, r in labelled if r["suite"] == "metrics"],
                            [lab for lab, _, r in labelled if r["suite"] == "metrics"])
        md += ["## Sleep staging (Table 1)", "",
               "Mean ± sd over seeds when several runs of a model were given; otherwise the pooled value "
               "with its subject-bootstrap 95% CI.", "", text, ""]
        summary["table1"] = rows
    for path, res in by_suite["robustness"]:
        d = res["delta"]
        md += [f"## Robustness ({res['setting']}) — {path.name}", "",
               f"{res['n_subjects_affected']} subjects with failing core EEG channels "
               f"(seed {res['corruption']['seed']}, fraction {res['corruption']['fraction']}); "
               f"{len(res['manifest'])} channel failures (manifest in {path / 'manifest.json'}).", "",
               "| Metric | clean | corrupted | Δ (95% CI) |", "|---|---|---|---|"]
        for key, label in COLUMNS:
            md.append(f"| {label} | {_fmt(res['clean'][key])} | {_fmt(res['corrupted'][key])} | "
                      f"{d[key]['delta']:+.4f}{_ci(d[key]['ci'])} |")
        md.append("")
        summary.setdefault("robustness", []).append(
            {"source": str(path), "setting": res["setting"], "delta": {k2: d[k2] for k2, _ in COLUMNS}})
    for path, res in by_suite["channel_loss"]:
        md += [f"## Channel loss — {path.name}", "", "| Dropped set | mode | " + " | ".join(
            label for _, label in COLUMNS) + " |", "|---|---|" + "---|" * len(COLUMNS)]
        md.append("| none (clean) | – | " + " | ".join(_fmt(res["clean"][k]) for k, _ in COLUMNS) + " |")
        for t in res["tables"]:
            md.append(f"| {t['name'].split('/')[0]} | {t.get('mode', 'train')} | " + " | ".join(
                f"{t['dropped_metrics'][k]:.4f} ({t['delta'][k]['delta']:+.4f})" for k, _ in COLUMNS) + " |")
        md.append("")
        summary.setdefault("channel_loss", []).append(
            {"source": str(path), "tables": [{"name": t["name"], "delta": {k: t["delta"][k] for k, _ in COLUMNS}}
                                             for t in res["tables"]]})
    for path, res in by_suite["attribution"]:
        t = res["timing"]
        md += [f"## Attribution — {path.name}", "",
               f"{t['n_epochs']} epochs, {t['seconds_per_epoch_mean']:.2f} s and "
               f"{t['forward_passes_mean']:.0f} forward passes per epoch on average.", ""]
        md += [f"- {s}" for s in res["summaries"]] + [""]
        summary.setdefault("attribution", []).append({"source": str(path), "summaries": res["summaries"]})
    for path, res in by_suite["zero_shot"]:
        c = res["collapse"]
        md += [f"## Zero-shot (untuned) — {res['model']}", "",
               f"Accuracy {res['metrics']['accuracy']:.4f}, κ {res['metrics']['kappa']:.4f}; "
               f"{c['n_classes_predicted']} of 5 classes predicted, {c['top_share']:.0%} {c['top_class']}; "
               f"90% of predictions in {c['classes_covering_90pct']}.", ""]
        summary.setdefault("zero_shot", []).append({"source": str(path), "collapse": c,
                                                    "accuracy": res["metrics"]["accuracy"]})

    md += ["## Figures", ""]
    for k, (path, res) in enumerate(loaded):
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{k}_{res['suite']}_{path.name}")
        figs = _copy_figures(path, out / "figures" / slug, out)
        for f in figs[:max_figures]:
            md.append(f"![{Path(f).stem}]({f})")
        if len(figs) > max_figures:
            md.append(f"({len(figs) - max_figures} more in figures/{slug}/)")
        md.append("")
    md += ["## Provenance", "", f"git {summary['provenance']['git_sha']}; sources:", ""]
    md += [f"- {p} ({r['suite']}, written {r.get('provenance', {}).get('time_utc', '?')}, "
           f"git {r.get('provenance', {}).get('git_sha', '?')})" for p, r in loaded]
    write_text_atomic(out / "report.md", "\n".join(md) + "\n")
    write_json_atomic(out / "summary.json", summary)
    return summary


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m evals report", description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", nargs="+", required=True,
                    help="results dirs of any suites, each DIR or LABEL=DIR (the setting it stands for, e.g. "
                         "\"subject split=results/metrics_subject\")")
    ap.add_argument("--out", required=True, help="report dir")
    ap.add_argument("--title", default="psgvlm evaluation report", help="the report's heading")
    ap.add_argument("--layout", choices=sorted(LAYOUTS),
                    help="also a table in a seed paper's layout with its numbers beside ours: "
                         + "; ".join(f"{k}: {v[1]}" for k, v in LAYOUTS.items()))
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run_report(args.results, args.out, title=args.title, layout=args.layout)
    except (ValueError, FileNotFoundError) as err:
        print(f"evals report: {err}", file=sys.stderr)
        return 2
    print(f"wrote {Path(args.out) / 'report.md'} and summary.json")
    return 0
