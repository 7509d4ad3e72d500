"""``python -m evals report --results DIR [DIR ...] --out REPORT``: one Markdown report + JSON summary.

Reads the ``results.json`` of any suites' results dirs and writes ``REPORT/report.md`` (a Table-1-like
table -- rows models, columns Acc, B-Acc, kappa, W-F1, MF1 per dataset, mean ± sd over seeds when
several seeds were given, else the value with its subject-bootstrap 95% CI -- then robustness deltas,
channel-loss tables, attribution summaries and zero-shot collapse), the plots copied under
``REPORT/figures/``, and ``REPORT/summary.json`` with the same numbers.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

from psgvlm.provenance import provenance, read_json, write_json_atomic, write_text_atomic

COLUMNS = (("accuracy", "Acc"), ("balanced_accuracy", "B-Acc"), ("kappa", "κ"), ("weighted_f1", "W-F1"),
           ("macro_f1", "MF1"))
SUITE_NAMES = ("metrics", "robustness", "channel_loss", "attribution", "zero_shot")


def _fmt(x, nd: int = 4) -> str:
    return "–" if x is None else f"{x:.{nd}f}"


def _ci(ci) -> str:
    return "" if not ci or ci[0] is None else f" [{ci[0]:.3f}, {ci[1]:.3f}]"


def table1(metrics_results: list[dict]) -> tuple[str, list[dict]]:
    """Markdown Table 1 and its rows: one row per model, five columns per dataset."""
    cells: dict[str, dict[str, dict]] = {}
    ci_of: dict[tuple[str, str], dict] = {}
    for res in metrics_results:
        for r in res.get("runs", []):
            ci_of.setdefault((r["model"], r["dataset"]), r.get("ci"))
        for m in res.get("models", []):
            cells.setdefault(m["model"], {})[m["dataset"]] = m
    datasets = sorted({d for per in cells.values() for d in per})
    head = "| Model | " + " | ".join(f"{d} {label}" for d in datasets for _, label in COLUMNS) + " |"
    sep = "|---|" + "---|" * (len(datasets) * len(COLUMNS))
    lines, rows = [head, sep], []
    for model, per in cells.items():
        vals, row = [], {"model": model}
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


def _copy_figures(src: Path, dst: Path, rel_to: Path) -> list[str]:
    dst.mkdir(parents=True, exist_ok=True)
    out = []
    for png in sorted(src.glob("*.png")):
        shutil.copy2(png, dst / png.name)
        out.append(str((dst / png.name).relative_to(rel_to)))
    return out


def run_report(results_dirs, out, *, title: str = "psgvlm evaluation report", max_figures: int = 12) -> dict:
    """Gather results dirs into ``out/report.md``, ``out/summary.json`` and ``out/figures``."""
    out = Path(out)
    loaded = []
    for d in map(Path, results_dirs):
        path = d / "results.json" if d.is_dir() else d
        if not path.exists():
            raise FileNotFoundError(f"no results.json in {d}")
        res = read_json(path)
        if res.get("suite") not in SUITE_NAMES:
            raise ValueError(f"{path}: suite {res.get('suite')!r} is not one of {list(SUITE_NAMES)}")
        loaded.append((path.parent, res))
    if not loaded:
        raise ValueError("no results dirs given")
    md = [f"# {title}", ""]
    summary: dict = {"sources": [str(p) for p, _ in loaded], "provenance": provenance()}
    by_suite = {s: [(p, r) for p, r in loaded if r["suite"] == s] for s in SUITE_NAMES}

    if by_suite["metrics"]:
        text, rows = table1([r for _, r in by_suite["metrics"]])
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
    ap.add_argument("--results", nargs="+", required=True, help="results dirs of any suites")
    ap.add_argument("--out", required=True, help="report dir")
    ap.add_argument("--title", default="psgvlm evaluation report")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run_report(args.results, args.out, title=args.title)
    except (ValueError, FileNotFoundError) as err:
        print(f"evals report: {err}", file=sys.stderr)
        return 2
    print(f"wrote {Path(args.out) / 'report.md'} and summary.json")
    return 0
