r"""``python -m evals channel_loss``: channels or whole modalities lost at inference.

    python -m evals channel_loss --run runs/llava_isruc --format isruc --input data/isruc \
        --drop EOG --drop C3,C4 --drop EMG,ECG --out results/channel_loss
    # EEG-only training setting (re-render with EEG only and re-train with the recipe command)
    python -m evals channel_loss --run runs/llava_isruc --format isruc --input data/isruc --eeg-only-train \
        --train-cmd "accelerate launch recipes/llava_isruc.py --dataset {dataset} --output_dir {out}" --out results/eeg

Each ``--drop`` is a comma-separated set of channel names and/or modalities (EEG, EOG, EMG, ECG...)
of the run's training channels; an unknown name is refused, naming what exists. Two ways to lose them,
both reported, named:

- ``blank``: the image keeps the trained band layout and the dropped bands are painted with the
  background colour (the montage lost an electrode, the picture did not change shape);
- ``rerender``: the recording is rendered again without those channels, so the remaining channels
  spread over the whole image (a different montage than the model was trained on).

Output: one table per dropped set and mode (metrics, paired deltas vs the clean images with
subject-bootstrap CIs). Deterministic: the same inputs give the same results bit for bit.
The EEG-only setting renders an EEG-only dataset to ``OUT/dataset_eeg_only``, runs ``--train-cmd``
(placeholders ``{dataset}``, ``{out}``) and compares its predictions with the run's own.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from psgvlm.image.dataset import band_layout
from psgvlm.metrics import SCALAR_METRICS
from psgvlm.signal.corruption import blank_bands, resolve_drop

from ..common import load_predictor_for, load_run, write_results
from ..inference import (
    align,
    compare,
    eval_split_name,
    predict_rows,
    render,
    train_with_command,
    trained_render_kwargs,
)
from ..plots import plot_metric_bars

MODES = ("blank", "rerender")


def run_channel_loss(predictor, *, fmt: str, input, out, drops: list[list[str]], hypnogram=None,
                     modes=MODES, split: str = "test", n_boot: int = 1000, seed: int = 0, batch_size: int = 16,
                     num_proc: int = 1, config: dict | None = None) -> dict:
    """Score the clean split, then each dropped set in each mode; write results; return them."""
    out = Path(out)
    bad_modes = sorted(set(modes) - set(MODES))
    if bad_modes or not modes:
        raise ValueError(f"modes {list(modes)} invalid; allowed: {list(MODES)}")
    if not drops:
        raise ValueError("no channel set to drop: give at least one --drop")
    meta_trained = getattr(predictor, "dataset_meta", None) or {}
    kw = trained_render_kwargs(meta_trained)
    available = {c: (meta_trained.get("modalities") or {}).get(c, "OTHER") for c in kw["channels"]}
    resolved = [resolve_drop(d, available) for d in drops]  # validate every set before any work
    for d, r in zip(drops, resolved):
        if len(r) == len(available):
            raise ValueError(f"dropping {d} removes every channel {list(available)}")
    clean_dd, clean_meta = render(fmt=fmt, input=input, hypnogram=hypnogram, out=out / "dataset_clean",
                                  num_proc=num_proc, **kw)
    split = eval_split_name(clean_dd, split)
    bands = band_layout(clean_meta)
    clean_rows = predict_rows(predictor, clean_dd[split], batch_size=batch_size, desc="clean")
    tables, samples = [], []
    for wanted, dropped in zip(drops, resolved):
        label = "+".join(wanted)
        for mode in modes:
            if mode == "blank":
                rows = predict_rows(predictor, clean_dd[split], batch_size=batch_size, desc=f"{label} blank",
                                    transform_image=lambda im, d=dropped: blank_bands(im, bands, d))
                kept = kw["channels"]
            else:
                kept = [c for c in kw["channels"] if c not in dropped]
                slug = "_".join(dropped)
                dd, _ = render(fmt=fmt, input=input, hypnogram=hypnogram, out=out / f"dataset_without_{slug}",
                               num_proc=num_proc, **{**kw, "channels": kept})
                rows = predict_rows(predictor, dd[eval_split_name(dd, split)], batch_size=batch_size,
                                    desc=f"{label} rerender")
            a, b = align(clean_rows, rows, what=f"the {mode} images without {dropped}")
            cmp = compare(a, b, n_boot=n_boot, seed=seed)
            tables.append({"name": f"{label}/{mode}", "requested": list(wanted), "dropped": dropped, "mode": mode,
                           "channels_rendered": kept, "clean": {k: cmp["clean"][k] for k in SCALAR_METRICS},
                           "dropped_metrics": cmp["other"], "dropped_ci": cmp["other_ci"], "delta": cmp["delta"]})
            samples += [{"set": f"{label}/{mode}", "subject": x["subject"], "recording": x["recording"],
                         "epoch": x["epoch"], "label": x["label"], "pred_clean": x["pred"], "pred": y["pred"],
                         "probs": y["probs"]} for x, y in zip(a, b)]
    clean_metrics = tables[0]["clean"]
    plot_metric_bars({"clean": clean_metrics, **{t["name"]: {k: t["dropped_metrics"][k] for k in SCALAR_METRICS}
                                                 for t in tables}},
                     out / "channel_loss.png", title="channel loss")
    results = {"clean": clean_metrics, "tables": tables, "split": split}
    cfg = {"format": fmt, "input": str(input), "drops": [list(d) for d in drops], "modes": list(modes),
           "split": split, "n_boot": n_boot, "seed": seed, **(config or {})}
    write_results(out, "channel_loss", cfg, results, samples)
    return results


def run_eeg_only_train(clean_run, *, fmt: str, input, out, train_cmd: str, render_kwargs: dict, modalities: dict,
                       hypnogram=None, n_boot: int = 1000, seed: int = 0, num_proc: int = 1,
                       config: dict | None = None) -> dict:
    """EEG-only training: render only the EEG channels, re-train via ``train_cmd``, compare with the run."""
    out = Path(out)
    eeg = [c for c in render_kwargs["channels"] if modalities.get(c) == "EEG"]
    if not eeg:
        raise ValueError(f"the run's channels {render_kwargs['channels']} hold no EEG channel")
    render(fmt=fmt, input=input, hypnogram=hypnogram, out=out / "dataset_eeg_only", num_proc=num_proc,
           **{**render_kwargs, "channels": eeg})
    rows = train_with_command(train_cmd, out_dir=out / "run_eeg_only", dataset=out / "dataset_eeg_only")
    a, b = align(clean_run.rows, rows, what="the EEG-only run's predictions")
    cmp = compare(a, b, n_boot=n_boot, seed=seed)
    table = {"name": "EEG-only/train", "channels_rendered": eeg, "clean": {k: cmp["clean"][k] for k in SCALAR_METRICS},
             "dropped_metrics": cmp["other"], "dropped_ci": cmp["other_ci"], "delta": cmp["delta"]}
    cfg = {"setting": "eeg-only-train", "format": fmt, "input": str(input), "train_cmd": train_cmd, "n_boot": n_boot,
           "seed": seed, **(config or {})}
    write_results(out, "channel_loss", cfg, {"clean": table["clean"], "tables": [table]}, [])
    return {"tables": [table]}


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m evals channel_loss", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="run dir of an image model")
    ap.add_argument("--format", required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--hypnogram")
    ap.add_argument("--out", required=True)
    ap.add_argument("--drop", action="append", default=[], help="comma-separated channels/modalities (repeatable)")
    ap.add_argument("--modes", default=",".join(MODES), help="blank and/or rerender")
    ap.add_argument("--eeg-only-train", action="store_true", help="the EEG-only training setting (needs --train-cmd)")
    ap.add_argument("--train-cmd", help="recipe command, placeholders {dataset} {out}")
    ap.add_argument("--split", default="test")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--num-proc", type=int, default=1)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.eeg_only_train:
            if not args.train_cmd:
                raise ValueError("--eeg-only-train needs --train-cmd (the recipe command to re-train)")
            clean = load_run(args.run)
            meta = clean.meta.get("dataset") or clean.meta.get("dataset_meta") or {}
            res = run_eeg_only_train(clean, fmt=args.format, input=args.input, hypnogram=args.hypnogram, out=args.out,
                                     train_cmd=args.train_cmd, render_kwargs=trained_render_kwargs(meta),
                                     modalities=meta.get("modalities") or {}, n_boot=args.n_boot, seed=args.seed,
                                     num_proc=args.num_proc, config={"run": args.run})
        else:
            drops = [[x.strip() for x in d.split(",") if x.strip()] for d in args.drop]
            predictor = load_predictor_for(args.run)
            res = run_channel_loss(predictor, fmt=args.format, input=args.input, hypnogram=args.hypnogram,
                                   out=args.out, drops=drops, modes=[m.strip() for m in args.modes.split(",")],
                                   split=args.split, n_boot=args.n_boot, seed=args.seed, batch_size=args.batch_size,
                                   num_proc=args.num_proc, config={"run": args.run})
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"evals channel_loss: {err}", file=sys.stderr)
        return 2
    for t in res["tables"]:
        d = t["delta"]
        print(f"{t['name']:<24} " + ", ".join(f"{k} {t['dropped_metrics'][k]:.4f} ({d[k]['delta']:+.4f})"
                                              for k in ("accuracy", "kappa", "macro_f1")))
    print(f"wrote {Path(args.out) / 'results.json'}")
    return 0
