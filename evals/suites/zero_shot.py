"""``python -m evals zero_shot --run UNTUNED_RUN --dataset IMAGES --out DIR``: the untuned model.

The PSG-image paper (appendix I) shows the original LLaVA, never fine-tuned on PSG images, putting
every epoch into one or two classes (mostly N2). This suite scores a split with an untuned run
(``psgvlm.vlm.predict.load_predictor``: a run dir whose model has no adapter) -- or reads the
``predictions.jsonl`` such a run already wrote, with ``--predictions`` -- and reports the confusion
matrix, the metrics and how collapsed the predictions are (distinct classes predicted, share of the
most frequent one, the classes covering 90% of predictions).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from psgvlm.image.dataset import load_dataset
from psgvlm.metrics import row_normalised, stage_metrics
from psgvlm.predictions import answered, read_predictions
from psgvlm.stages import STAGES

from ..common import check_match, dataset_keys, load_predictor_for, write_results
from ..inference import predict_rows
from ..plots import plot_confusion


def collapse(preds) -> dict:
    """How concentrated predictions are: counts per class, distinct classes, top share, 90% cover."""
    preds = np.asarray(preds, dtype=int)
    counts = np.bincount(preds, minlength=len(STAGES))
    share = counts / max(1, counts.sum())
    order = np.argsort(-share, kind="stable")
    cover, total = [], 0.0
    for k in order:
        if total >= 0.9:
            break
        cover.append(STAGES[k])
        total += share[k]
    return {"counts": {s: int(c) for s, c in zip(STAGES, counts)}, "n_classes_predicted": int((counts > 0).sum()),
            "top_class": STAGES[int(order[0])], "top_share": float(share[order[0]]), "classes_covering_90pct": cover}


def run_zero_shot(rows: list[dict], out, *, name: str = "untuned", config: dict | None = None) -> dict:
    """Confusion matrix, metrics and collapse statistics of an untuned model's rows."""
    out = Path(out)
    scored = [r for r in rows if r["label"] is not None and r["label"] >= 0]
    if not scored:
        raise ValueError("no scored epochs: zero_shot needs expert labels")
    n_no_prediction = len(scored) - len(answered(scored))  # unparseable generations: counted, not scored
    scored = answered(scored)
    if not scored:
        raise ValueError(f"none of the {n_no_prediction} scored epochs has an answer (every generation unparseable)")
    y = [r["label"] for r in scored]
    p = [r["pred"] for r in scored]
    m = stage_metrics(y, p)
    m["confusion_row_normalised"] = row_normalised(m["confusion"]).round(4).tolist()
    plot_confusion(m["confusion"], out / "confusion_zero_shot.png", title=f"{name} (zero-shot)")
    results = {"model": name, "metrics": m, "collapse": collapse(p),
               "n_unscored": len(rows) - len(scored) - n_no_prediction, "n_no_prediction": n_no_prediction,
               "no_prediction_rate": n_no_prediction / (len(scored) + n_no_prediction)}
    write_results(out, "zero_shot", {"name": name, **(config or {})}, results,
                  [{k: r[k] for k in ("subject", "recording", "epoch", "label", "pred", "probs")} for r in rows])
    return results


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m evals zero_shot", description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", help="run dir of the untuned model (scored with psgvlm.vlm.predict)")
    ap.add_argument("--predictions", help="predictions.jsonl an untuned run already wrote (instead of scoring)")
    ap.add_argument("--dataset", help="image dataset dir (required with --run; checked with --predictions)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--name", default="untuned", help="model name in tables")
    ap.add_argument("--out", required=True)
    ap.add_argument("--batch-size", type=int, default=8)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if bool(args.run) == bool(args.predictions):
            raise ValueError("give exactly one of --run (score now) or --predictions (already scored)")
        if args.run:
            if not args.dataset:
                raise ValueError("--run needs --dataset (the images to score)")
            ds, _ = load_dataset(args.dataset, args.split)
            rows = predict_rows(load_predictor_for(args.run), ds, batch_size=args.batch_size, desc="zero-shot")
        else:
            rows = read_predictions(args.predictions)
            if args.dataset:
                ds, _ = load_dataset(args.dataset, args.split)
                check_match(rows, dataset_keys(ds), what=f"dataset {args.dataset} split {args.split!r}")
        res = run_zero_shot(rows, args.out, name=args.name,
                            config={"run": args.run, "predictions": args.predictions, "dataset": args.dataset,
                                    "split": args.split})
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"evals zero_shot: {err}", file=sys.stderr)
        return 2
    c = res["collapse"]
    print(f"{res['model']}: accuracy {res['metrics']['accuracy']:.4f}, {c['n_classes_predicted']} classes predicted, "
          f"{c['top_share']:.0%} {c['top_class']}; wrote {Path(args.out) / 'results.json'}")
    return 0
