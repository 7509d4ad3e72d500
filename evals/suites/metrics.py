"""``python -m evals metrics --runs RUN [RUN ...] --out DIR``: metrics of one or several runs.

For each run (and each dataset in it): pooled and per-subject metrics via the shipped `evaluate`
module, per-class F1, confusion counts and row-normalised, unscored epochs excluded and counted,
subject-bootstrap CIs. Runs sharing a model name and dataset but with different seeds are
summarised as mean ± sd over seeds. ``--dataset DIR --split test`` checks that the predictions
cover exactly that split's epochs and refuses otherwise.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from psgvlm.image.dataset import load_dataset
from psgvlm.metrics import bootstrap_ci, row_normalised, seed_summary, stage_metrics
from psgvlm.plots import plot_hypnodensity, plot_hypnogram
from psgvlm.predictions import answered
from psgvlm.stages import N_STAGES, UNSCORED

from ..common import Run, check_match, dataset_keys, load_run, write_results
from ..metrics import load_sleep_staging
from ..plots import plot_confusion, plot_training_loss


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


def score_rows(rows: list[dict], *, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05, metric=None) -> dict:
    """Pooled metrics (evaluate module), per subject, bootstrap CIs for rows of one dataset.

    Rows without an expert label (``label`` null) are counted in ``n_unlabelled``; unscored ones
    (-1) in ``n_unscored``; scored ones without an answer (``pred`` -1, an unparseable generation) in
    ``n_no_prediction`` (``no_prediction_rate`` of the scored); none of them enters the metrics.
    """
    labelled = [r for r in rows if r["label"] is not None]
    scored = [r for r in labelled if r["label"] != UNSCORED]
    out = {"n_rows": len(rows), "n_unlabelled": len(rows) - len(labelled),
           "n_unscored": len(labelled) - len(scored), "n_no_prediction": len(scored) - len(answered(scored)),
           "no_prediction_rate": (len(scored) - len(answered(scored))) / len(scored) if scored else 0.0}
    scored = answered(scored)
    if not scored:
        raise ValueError("no scored epochs (every label is null or unscored): nothing to evaluate")
    y = np.array([r["label"] for r in scored])
    p = np.array([r["pred"] for r in scored])
    subjects = np.array([str(r["subject"]) for r in scored])
    metric = metric or load_sleep_staging()
    pooled = metric.compute(predictions=p.tolist(), references=y.tolist())
    pooled["confusion_row_normalised"] = row_normalised(pooled["confusion"]).round(4).tolist()
    out["pooled"] = pooled
    out["ci"] = bootstrap_ci(y, p, subjects, n_boot=n_boot, seed=seed, alpha=alpha)
    out["per_subject"] = {s: stage_metrics(y[subjects == s], p[subjects == s]) for s in sorted(set(subjects))}
    return out


def run_metrics(runs: list[Run], out, *, dataset=None, split: str = "test", n_boot: int = 1000,
                seed: int = 0, alpha: float = 0.05, max_subject_plots: int = 3) -> dict:
    """Score ``runs``, write results.json, samples.jsonl and plots to ``out``; return the results."""
    out = Path(out)
    if dataset is not None:
        ds, _ = load_dataset(dataset, split)
        keys = dataset_keys(ds)
        for run in runs:
            check_match(run.rows, keys, what=f"dataset {dataset} split {split!r}")
    metric = load_sleep_staging()
    per_run, samples = [], []
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for k, run in enumerate(runs):
        tag = _slug(f"{k}_{run.name}")
        for ds_name in run.datasets:
            rows = [r for r in run.rows if str(r["dataset"]) == ds_name]
            scores = score_rows(rows, n_boot=n_boot, seed=seed, alpha=alpha, metric=metric)
            entry = {"run": str(run.path), "tag": tag, "model": run.name, "kind": run.kind, "seed": run.seed,
                     "dataset": ds_name, **scores}
            per_run.append(entry)
            groups[(run.name, ds_name)].append(entry)
            plot_confusion(scores["pooled"]["confusion"], out / f"confusion_{tag}_{_slug(ds_name)}.png",
                           title=f"{run.name} on {ds_name}")
            for subj in sorted({str(r["subject"]) for r in rows})[:max_subject_plots]:
                sub = sorted((r for r in rows if str(r["subject"]) == subj), key=lambda r: (r["recording"], r["start_s"]))
                start = [r["start_s"] for r in sub]
                truth = [UNSCORED if r["label"] is None else r["label"] for r in sub]
                plot_hypnogram(truth, [r["pred"] for r in sub], start,
                               out / f"hypnogram_{tag}_{_slug(subj)}.png", title=f"{run.name}: subject {subj}")
                plot_hypnodensity([r["probs"] or [np.nan] * N_STAGES for r in sub], start, out / f"hypnodensity_{tag}_{_slug(subj)}.png",
                                  title=f"{run.name}: subject {subj}")
            for r in rows:
                samples.append({"tag": tag, "model": run.name, "dataset": ds_name, "subject": r["subject"],
                                "recording": r["recording"], "epoch": r["epoch"], "start_s": r["start_s"],
                                "label": r["label"], "pred": r["pred"],
                                "correct": None if r["label"] in (None, UNSCORED) else r["label"] == r["pred"],
                                "probs": r["probs"]})
        plot_training_loss(run.path / "train_log.jsonl", out / f"training_loss_{tag}.png", title=run.name)
    models = []
    for (name, ds_name), entries in groups.items():
        seeds = [e["seed"] for e in entries]
        models.append({"model": name, "dataset": ds_name, "runs": [e["run"] for e in entries], "seeds": seeds,
                       "n_runs": len(entries), "summary": seed_summary([e["pooled"] for e in entries])})
        if len(entries) > 1 and len(set(seeds)) < len(seeds):
            models[-1]["warning"] = f"runs of {name} on {ds_name} share seeds {seeds}: spread is not over seeds"
    config = {"runs": [str(r.path) for r in runs], "names": [r.name for r in runs],
              "dataset": None if dataset is None else str(dataset), "split": split, "n_boot": n_boot,
              "seed": seed, "alpha": alpha}
    results = {"runs": per_run, "models": models}
    write_results(out, "metrics", config, results, samples)
    return results


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m evals metrics", description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", nargs="+", required=True, help="run dirs or predictions.jsonl files")
    ap.add_argument("--names", nargs="+", help="model name per run (default: from meta.json)")
    ap.add_argument("--out", required=True, help="results dir")
    ap.add_argument("--dataset", help="image dataset dir to check the predictions against")
    ap.add_argument("--split", default="test", help="split of --dataset (default test)")
    ap.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (subjects)")
    ap.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    ap.add_argument("--alpha", type=float, default=0.05, help="1 - CI level")
    ap.add_argument("--max-subject-plots", type=int, default=3, help="hypnogram/hypnodensity plots per run")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.names and len(args.names) != len(args.runs):
        print(f"--names has {len(args.names)} entries for {len(args.runs)} runs", file=sys.stderr)
        return 2
    try:
        runs = [load_run(r, name) for r, name in zip(args.runs, args.names or [None] * len(args.runs))]
        results = run_metrics(runs, args.out, dataset=args.dataset, split=args.split, n_boot=args.n_boot,
                              seed=args.seed, alpha=args.alpha, max_subject_plots=args.max_subject_plots)
    except (ValueError, FileNotFoundError) as err:
        print(f"evals metrics: {err}", file=sys.stderr)
        return 2
    for m in results["models"]:
        s = m["summary"]
        print(f"{m['model']:<24} {m['dataset']:<10} n={m['n_runs']} "
              + " ".join(f"{k}={s[k]['mean']:.4f}±{s[k]['sd']:.4f}" for k in ("accuracy", "kappa", "macro_f1")))
    print(f"wrote {Path(args.out) / 'results.json'}")
    return 0
