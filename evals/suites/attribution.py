"""``python -m evals attribution --run RUN --dataset IMAGES --out DIR``: feature-ablation heatmaps.

For a seeded sample of epochs (up to ``--per-stage`` per true stage) of one split: the 24x24 patch
map (14x14 patches masked with ``--baseline``; Euclidean distance of the stage probabilities; min-max
normalised), a heatmap PNG (top 30% overlaid, plus the raw map) for the first few per stage, and
aggregates: the mean map of correctly classified epochs per stage and of misclassified epochs, each
mapped to (channel band x time window) and summarised in one line ("REM decided on EOG (LOC),
seconds 10-20"). Needs an image model (``psgvlm.vlm.predict.load_predictor``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from psgvlm.image.attribution import MASK_BASELINES, band_time_scores, describe, feature_ablation
from psgvlm.image.dataset import band_layout, image_size, load_dataset
from psgvlm.stages import STAGES

from ..common import epoch_seconds, load_predictor_for, write_results
from ..plots import plot_heatmap


def check_layout(dataset_meta: dict, predictor) -> None:
    """Refuse a dataset rendered with other channels than the model was trained on, and a context run."""
    if getattr(predictor, "context", 0):
        raise ValueError(f"the run reads strips of {2 * predictor.context + 1} epochs (--context "
                         f"{predictor.context}); the attribution suite explains one-epoch images only")
    trained = getattr(predictor, "dataset_meta", None) or {}
    a, b = trained.get("channels"), dataset_meta.get("channels")
    if a and b and list(a) != list(b):
        raise ValueError(f"the model was trained on images of channels {a} but the dataset has {b}; "
                         "attribution bands would be mislabelled")


def pick_epochs(labels, *, per_stage: int, seed: int) -> list[int]:
    """Seeded sample of up to ``per_stage`` row indices per true stage, sorted."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    out = []
    for code in range(len(STAGES)):
        idx = np.flatnonzero(labels == code)
        out += rng.choice(idx, size=min(per_stage, len(idx)), replace=False).tolist()
    return sorted(out)


def run_attribution(predictor, dataset, out, *, split: str = "test", per_stage: int = 5, seed: int = 0,
                    baseline="background", batch_size: int = 32, patch_px: int = 14, window_s: float = 10.0, top_frac: float = 0.3,
                    max_plots_per_stage: int = 2, config: dict | None = None) -> dict:
    """Attribution over a sample of one split; writes results.json, samples.jsonl, PNGs; returns results."""
    out = Path(out)
    ds, meta = load_dataset(dataset, split)
    check_layout(meta, predictor)
    bands = band_layout(meta)
    size = image_size(meta)
    epoch_s = epoch_seconds(meta)
    idx = pick_epochs(ds["label"], per_stage=per_stage, seed=seed)
    if not idx:
        raise ValueError(f"split {split!r} of {dataset} has no labelled epoch to explain")
    samples, groups = [], {f"correct_{s}": [] for s in STAGES}
    groups["misclassified"] = []
    plotted = dict.fromkeys(STAGES, 0)
    for i in tqdm(idx, desc="attribution", unit="epoch"):
        row = ds[int(i)]
        res = feature_ablation(predictor.predict_proba, row["image"], baseline=baseline, batch_size=batch_size,
                               patch_px=patch_px)
        pred = int(np.argmax(res["probs"]))
        label = int(row["label"])
        cells = band_time_scores(res["norm"], bands, size=size, epoch_s=epoch_s, window_s=window_s)
        key = f"correct_{STAGES[label]}" if pred == label else "misclassified"
        groups[key].append(res["norm"])
        sample = {"subject": row["subject"], "recording": row["recording"], "epoch": int(row["epoch"]),
                  "label": label, "pred": pred, "correct": pred == label, "probs": res["probs"].round(6).tolist(),
                  "n_forward": res["n_forward"], "seconds": round(res["seconds"], 4),
                  "raw_map": res["raw"].round(6).tolist(), "band_mass": cells["band_mass"], "top": cells["top"]}
        if plotted[STAGES[label]] < max_plots_per_stage:
            name = f"heatmap_{STAGES[label]}_{row['subject']}_{int(row['epoch'])}.png"
            plot_heatmap(np.asarray(row["image"].convert("RGB")), res["norm"], out / name, top_frac=top_frac,
                         bands=bands, title=f"true {STAGES[label]} / pred {STAGES[pred]}")
            sample["plot"] = name
            plotted[STAGES[label]] += 1
        samples.append(sample)
    aggregates = {}
    for key, maps in groups.items():
        if not maps:
            aggregates[key] = {"n": 0}
            continue
        mean = np.mean(maps, axis=0)
        cells = band_time_scores(mean, bands, size=size, epoch_s=epoch_s, window_s=window_s)
        stage = key.removeprefix("correct_") if key != "misclassified" else "misclassified"
        aggregates[key] = {"n": len(maps), "mean_map": mean.round(6).tolist(), **cells,
                           "summary": describe(stage, cells)}
        plot_heatmap(np.full((size, size, 3), 255, np.uint8), mean, out / f"mean_map_{key}.png", top_frac=top_frac,
                     bands=bands, title=f"mean map {key} (n={len(maps)})")
    seconds = [s["seconds"] for s in samples]
    forwards = [s["n_forward"] for s in samples]
    results = {"aggregates": aggregates,
               "timing": {"n_epochs": len(samples), "seconds_per_epoch_mean": float(np.mean(seconds)),
                          "seconds_per_epoch_max": float(np.max(seconds)),
                          "forward_passes_mean": float(np.mean(forwards)), "forward_passes_max": int(np.max(forwards))},
               "bands": bands, "summaries": [a["summary"] for a in aggregates.values() if "summary" in a]}
    cfg = {"dataset": str(dataset), "split": split, "per_stage": per_stage, "seed": seed, "baseline": baseline,
           "batch_size": batch_size, "window_s": window_s, "top_frac": top_frac, "patch_px": patch_px, **(config or {})}
    write_results(out, "attribution", cfg, results, samples)
    return results


def _baseline(text: str):
    return int(text) if text.isdigit() else text


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m evals attribution", description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, help="run dir of an image model (VLM or image classifier)")
    ap.add_argument("--dataset", required=True, help="image dataset dir (psgvlm render output)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--out", required=True)
    ap.add_argument("--per-stage", type=int, default=5, help="epochs explained per true stage")
    ap.add_argument("--seed", type=int, default=0, help="seed of the epoch sample")
    ap.add_argument("--baseline", type=_baseline, default="background",
                    help=f"mask fill: 0..255 or one of {MASK_BASELINES} (default background)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--patch-px", type=int, default=14,
                    help="patch side (paper: 14 -> 576 patches; 28 -> 144 patches, 4x fewer forward passes)")
    ap.add_argument("--window-s", type=float, default=10.0, help="time window of the channel x time table")
    ap.add_argument("--top-frac", type=float, default=0.3, help="share of patches overlaid (paper: 30%%)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        predictor = load_predictor_for(args.run)
        res = run_attribution(predictor, args.dataset, args.out, split=args.split, per_stage=args.per_stage,
                              seed=args.seed, baseline=args.baseline, batch_size=args.batch_size,
                              patch_px=args.patch_px, window_s=args.window_s, top_frac=args.top_frac, config={"run": args.run})
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"evals attribution: {err}", file=sys.stderr)
        return 2
    for line in res["summaries"]:
        print(line)
    t = res["timing"]
    print(f"{t['n_epochs']} epochs, {t['seconds_per_epoch_mean']:.2f} s/epoch, "
          f"{t['forward_passes_mean']:.0f} forward passes/epoch; wrote {Path(args.out) / 'results.json'}")
    return 0
