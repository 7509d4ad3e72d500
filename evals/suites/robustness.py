r"""``python -m evals robustness``: failing core EEG channels, the PSG-image paper's protocol.

    # trained clean, tested corrupted (any image model run)
    python -m evals robustness --run runs/llava_isruc --format isruc --input data/isruc --out results/rob --seed 0
    # trained clean, tested corrupted, signal baselines: the recipe's predict-only mode (--from_run)
    python -m evals robustness --run runs/sdreamer --format isruc --input data/isruc --out results/rob_sd --seed 0 \
        --predict-cmd "python recipes/sdreamer.py --from_run {run} --signal_data {signal_data} --output_dir {out}"
    python -m evals robustness --run runs/s2v_ft --format isruc --input data/isruc --out results/rob_s2v --seed 0 \
        --predict-cmd "python recipes/sleep2vec_finetune.py --from_run {run} --signal_data {signal_data} \
        --output_dir {out}"
    # trained and tested corrupted: re-render everything corrupted, re-train with the recipe command
    python -m evals robustness --run runs/llava_isruc --format isruc --input data/isruc --out results/rob2 \
        --setting train-corrupted --train-cmd "accelerate launch recipes/llava_isruc.py --dataset {dataset} --output_dir {out}"

Corruption (``psgvlm.signal.corruption.ChannelFailure``): a seeded ``--fraction`` (0.7) of the evaluated
subjects each get one random failure time (the paper's t_fail) from which every present core EEG
channel (C3, C4, F3, F4, O1, O2) is white noise (matched to the channel's std) or zeros, the kind drawn
once per subject (``--failure-per subject``, the default); ``--failure-per channel`` is the named
variant where each core channel draws its own onset and kind. Applied to the signals before
rendering (the render stage runs as a command with ``--transform``, the injector's spec file, which
records the setting), so image and signal models see the same corruption. The manifest
(subject, recording, channel, onset_s, kind, per) is saved as ``manifest.json``.

Settings:

- ``clean-train`` (default): the run's predictor scores the clean and the corrupted renderings of the
  same split (same channels, render settings, rate and split as the run's training data). Needs an
  image model (``psgvlm.vlm.predict.load_predictor``); for other models give ``--predict-cmd``, a command
  that predicts with the clean-trained run (``{run}``) on ``{signal_data}`` or ``{dataset}`` into
  ``{out}`` -- only the run's test subjects are eligible for failure, and the clean predictions are
  the run's own ``predictions.jsonl``.
- ``train-corrupted``: all subjects are eligible (``--fraction`` of them corrupted, train and test
  alike) and ``--train-cmd`` is run with placeholders ``{dataset}`` (the corrupted images, rendered
  to ``OUT/dataset_corrupted`` like the clean run's), ``{signal_data}`` (the corrupted signal dataset
  of the signal baselines, ``OUT/signal_corrupted``, same failures and split), ``{out}``
  (``OUT/run_corrupted``, where the recipe must write predictions.jsonl), ``{seed}``, ``{fraction}``,
  ``{manifest}``. Its predictions are compared with the clean run's ``predictions.jsonl`` on the same
  epochs. Works for image and signal recipes alike, e.g. ``--train-cmd "python recipes/sdreamer.py
  --signal_data {signal_data} --format isruc --input data/isruc --output_dir {out}"``.

Output: metrics clean and corrupted, paired deltas (corrupted - clean) with subject-bootstrap CIs,
split into affected and intact subjects; results.json, samples.jsonl, manifest.json, plots.
Bit-for-bit reproducible from ``--seed``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from psgvlm.metrics import SCALAR_METRICS
from psgvlm.provenance import write_json_atomic
from psgvlm.signal.corruption import CORE_EEG, FAILURE_KINDS, FAILURE_UNITS, ChannelFailure

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
from ..plots import plot_confusion, plot_metric_bars

SETTINGS = ("clean-train", "train-corrupted")


def _finish(out: Path, setting: str, cmp: dict, clean_rows, bad_rows, manifest, injector, config) -> dict:
    write_json_atomic(out / "manifest.json", manifest)
    plot_metric_bars({"clean": {k: cmp["clean"][k] for k in SCALAR_METRICS},
                      "corrupted": {k: cmp["other"][k] for k in SCALAR_METRICS}},
                     out / "metrics_clean_vs_corrupted.png", title=f"robustness ({setting})",
                     errors={"clean": {k: cmp["clean_ci"][k] for k in SCALAR_METRICS},
                             "corrupted": {k: cmp["other_ci"][k] for k in SCALAR_METRICS}})
    plot_confusion(cmp["clean"]["confusion"], out / "confusion_clean.png", title="clean")
    plot_confusion(cmp["other"]["confusion"], out / "confusion_corrupted.png", title="corrupted")
    affected = {e["subject"] for e in manifest}
    samples = [{"subject": a["subject"], "recording": a["recording"], "epoch": a["epoch"], "label": a["label"],
                "pred_clean": a["pred"], "pred_corrupted": b["pred"], "subject_corrupted": a["subject"] in affected,
                "probs_clean": a["probs"], "probs_corrupted": b["probs"]} for a, b in zip(clean_rows, bad_rows)]
    results = {"setting": setting, "corruption": injector.config(), "manifest": manifest,
               "n_subjects_affected": len(affected),
               "clean": cmp["clean"], "corrupted": cmp["other"], "clean_ci": cmp["clean_ci"],
               "corrupted_ci": cmp["other_ci"], "delta": cmp["delta"],
               **{k: cmp[k] for k in ("affected", "intact") if k in cmp}}
    write_results(out, "robustness", config, results, samples)
    return results


def run_clean_train(predictor, *, fmt: str, input, out, hypnogram=None, seed: int = 0, fraction: float = 0.7,
                    split: str = "test", channels=CORE_EEG, kinds=FAILURE_KINDS, per: str = "subject",
                    n_boot: int = 1000, batch_size: int = 16, num_proc: int = 1, config: dict | None = None) -> dict:
    """Trained clean, tested corrupted: score clean and corrupted renderings of one split."""
    out = Path(out)
    kw = trained_render_kwargs(getattr(predictor, "dataset_meta", None) or {})
    clean_dd, clean_meta = render(fmt=fmt, input=input, hypnogram=hypnogram, out=out / "dataset_clean",
                                  num_proc=num_proc, **kw)
    split = eval_split_name(clean_dd, split)
    subjects = (clean_meta.get("split") or {}).get(split) or sorted(set(clean_dd[split]["subject"]))
    injector = ChannelFailure(seed=seed, subjects=subjects, fraction=fraction, channels=channels, kinds=kinds,
                              per=per, manifest_dir=out / "manifest_parts")
    bad_dd, _ = render(fmt=fmt, input=input, hypnogram=hypnogram, out=out / "dataset_corrupted",
                       num_proc=num_proc, transform=injector, **kw)
    from psgvlm.signal.corruption import collect_manifest

    manifest = collect_manifest(out / "manifest_parts")
    clean_rows = predict_rows(predictor, clean_dd[split], batch_size=batch_size, desc="clean")
    bad_rows = predict_rows(predictor, bad_dd[split], batch_size=batch_size, desc="corrupted")
    clean_rows, bad_rows = align(clean_rows, bad_rows, what="the clean rendering")
    cmp = compare(clean_rows, bad_rows, n_boot=n_boot, seed=seed, subjects_of_interest={e["subject"] for e in manifest})
    cfg = {"setting": "clean-train", "format": fmt, "input": str(input), "split": split, "seed": seed,
           "fraction": fraction, "channels": list(channels), "kinds": list(kinds), "per": per, "n_boot": n_boot,
           "render": kw, **(config or {})}
    return _finish(out, "clean-train", cmp, clean_rows, bad_rows, manifest, injector, cfg)


def build_corrupted_signal_data(fmt: str, input, out, injector, *, split_from, hypnogram=None,
                                reading: dict | None = None) -> Path:
    """The signal baselines' dataset (``psgvlm.baselines.signal_data``) of corrupted recordings, split (and
    read: reader options, subject subset, channels) like ``split_from`` or ``reading``."""
    from psgvlm.baselines.signal_data import build_signal_dataset

    return build_signal_dataset(fmt=fmt, input=input, out=out, split_from=split_from, hypnogram=hypnogram,
                                transform=injector, overwrite=True, **(reading or {}))


def run_with_command(clean_run, *, setting: str, fmt: str, input, out, command: str,
                     render_kwargs: dict | None = None, hypnogram=None, seed: int = 0, fraction: float = 0.7,
                     channels=CORE_EEG, kinds=FAILURE_KINDS, per: str = "subject", n_boot: int = 1000,
                     num_proc: int = 1, config: dict | None = None) -> dict:
    """Corrupt the signals, run a recipe ``command`` on them, compare its predictions with the clean run.

    ``setting`` "train-corrupted": every subject is eligible (``fraction`` of all subjects corrupted,
    train and test alike) and the command re-trains. "clean-train": only the clean run's test
    subjects are eligible (its split in meta.json) and the command predicts with the clean-trained
    model (for models without an image predictor, e.g. the signal baselines).

    ``command`` placeholders: ``{dataset}`` (corrupted images, for image recipes; needs
    ``render_kwargs``), ``{signal_data}`` (corrupted signal dataset, for the signal baselines), ``{out}``,
    ``{run}`` (the clean run dir), ``{seed}``, ``{fraction}``, ``{manifest}``. Both datasets carry
    the same failures and the clean run's split.
    """
    from psgvlm.io.readers import find_recordings, read_recording
    from psgvlm.signal.corruption import collect_manifest

    if setting not in SETTINGS:
        raise ValueError(f"setting {setting!r} unknown; choose from {SETTINGS}")
    out = Path(out)
    wants_images, wants_signals = "{dataset}" in command, "{signal_data}" in command
    if not (wants_images or wants_signals):
        raise ValueError("the command must name its data: {dataset} (corrupted images) and/or "
                         "{signal_data} (corrupted signals for the signal baselines)")
    split = (clean_run.meta.get("dataset") or {}).get("split")
    listed = sorted({s for k in ("train", "validation", "test", "all") for s in (split or {}).get(k) or []})
    if setting == "train-corrupted" and listed:  # the clean run's subjects (a subset, if it was rendered so)
        subjects = listed
    elif setting == "train-corrupted":
        jobs = find_recordings(fmt, input) if Path(input).is_dir() else [{"path": input, "hypnogram": hypnogram}]
        subjects = sorted({j.get("subject") or read_recording(fmt, **j).subject for j in jobs})
    else:
        subjects = (split or {}).get("test") or sorted({str(r["subject"]) for r in clean_run.rows})
    make = lambda manifest_dir=None: ChannelFailure(  # noqa: E731
        seed=seed, subjects=subjects, fraction=fraction, channels=channels, kinds=kinds, per=per,
        manifest_dir=manifest_dir)
    injector = make(out / "manifest_parts")
    fields = {"seed": seed, "fraction": fraction, "manifest": out / "manifest.json", "run": clean_run.path}
    if wants_images:
        if not render_kwargs:
            raise ValueError("{dataset} in the command needs the clean run's render settings "
                             "(its meta.json 'dataset' has no channel order: is it an image run?)")
        render(fmt=fmt, input=input, hypnogram=hypnogram, out=out / "dataset_corrupted",
               num_proc=num_proc, transform=injector, **render_kwargs)
        fields["dataset"] = out / "dataset_corrupted"
    if wants_signals:
        split_from, reading = out / "dataset_corrupted" if wants_images else None, {}
        if split_from is None and split:
            write_json_atomic(out / "split.json", {"split": split})
            split_from = out / "split.json"
            # read as the clean run's signal dataset was: its reader options, channels and subjects
            used = (clean_run.meta.get("dataset") or {}).get("input") or {}
            reading = {k: used.get(k) for k in ("channels", "scorer", "visit", "trim_tail_epochs")}
            if Path(input).is_dir():
                reading["subjects"] = listed
        fields["signal_data"] = build_corrupted_signal_data(
            fmt, input, out / "signal_corrupted", make() if wants_images else injector, split_from=split_from,
            hypnogram=hypnogram, reading=reading)
    manifest = collect_manifest(out / "manifest_parts")
    write_json_atomic(out / "manifest.json", manifest)
    bad_rows = train_with_command(command, out_dir=out / "run_corrupted", **fields)
    clean_rows, bad_rows = align(clean_run.rows, bad_rows, what="the clean run's predictions")
    cmp = compare(clean_rows, bad_rows, n_boot=n_boot, seed=seed, subjects_of_interest={e["subject"] for e in manifest})
    cfg = {"setting": setting, "format": fmt, "input": str(input), "seed": seed, "fraction": fraction,
           "channels": list(channels), "kinds": list(kinds), "per": per, "n_boot": n_boot, "command": command,
           "clean_run": str(clean_run.path), **(config or {})}
    return _finish(out, setting, cmp, clean_rows, bad_rows, manifest, injector, cfg)


def run_train_corrupted(clean_run, *, train_cmd: str, **kwargs) -> dict:
    """Trained and tested corrupted: :func:`run_with_command` with ``setting="train-corrupted"``."""
    return run_with_command(clean_run, setting="train-corrupted", command=train_cmd, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m evals robustness", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="the clean-trained run dir")
    ap.add_argument("--format", required=True, help="reader of the raw recordings (isruc, mass, ...)")
    ap.add_argument("--input", required=True, help="raw recordings (folder or one file)")
    ap.add_argument("--hypnogram", help="labels for a single-file --input")
    ap.add_argument("--out", required=True)
    ap.add_argument("--setting", choices=SETTINGS, default="clean-train")
    ap.add_argument("--train-cmd", help="recipe command for --setting train-corrupted (placeholders: "
                                        "{dataset} {signal_data} {out} {run} {seed} {fraction} {manifest})")
    ap.add_argument("--predict-cmd", help="clean-train with a command instead of psgvlm.vlm.predict (models "
                                          "without an image predictor; same placeholders), e.g. \"python "
                                          "recipes/sdreamer.py --from_run {run} --signal_data {signal_data} "
                                          "--output_dir {out}\" (also recipes/sleep2vec_finetune.py)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the corruption and of the bootstrap")
    ap.add_argument("--fraction", type=float, default=0.7, help="share of subjects corrupted (paper: 0.7)")
    ap.add_argument("--channels", default=",".join(CORE_EEG), help="channels eligible for failure")
    ap.add_argument("--kinds", default=",".join(FAILURE_KINDS), help="failure kinds drawn from (noise, zeros)")
    ap.add_argument("--failure-per", choices=FAILURE_UNITS, default="subject",
                    help="subject: one failure time and kind per subject, shared by its core EEG channels (the "
                         "paper, default); channel: each core channel draws its own onset and kind")
    ap.add_argument("--split", default="test", help="split scored in the clean-train setting")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--num-proc", type=int, default=1)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    channels = [c.strip() for c in args.channels.split(",") if c.strip()]
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    failure = {"seed": args.seed, "fraction": args.fraction, "channels": channels, "kinds": kinds,
               "per": args.failure_per, "n_boot": args.n_boot, "num_proc": args.num_proc,
               "hypnogram": args.hypnogram, "config": {"run": args.run}}
    try:
        if args.setting == "clean-train" and args.predict_cmd:
            clean = load_run(args.run)
            meta = clean.meta.get("dataset") or {}
            res = run_with_command(clean, setting="clean-train", command=args.predict_cmd, fmt=args.format,
                                   input=args.input, out=args.out, **failure,
                                   render_kwargs=trained_render_kwargs(meta) if "{dataset}" in args.predict_cmd else None)
        elif args.setting == "clean-train":
            if args.train_cmd:
                raise ValueError("--train-cmd goes with --setting train-corrupted")
            predictor = load_predictor_for(args.run)
            res = run_clean_train(predictor, fmt=args.format, input=args.input, out=args.out, split=args.split,
                                  batch_size=args.batch_size, **failure)
        else:
            if not args.train_cmd or args.predict_cmd:
                raise ValueError("--setting train-corrupted needs --train-cmd (the recipe command to re-train), "
                                 "not --predict-cmd")
            clean = load_run(args.run)
            meta = clean.meta.get("dataset") or {}
            render_kwargs = trained_render_kwargs(meta) if "{dataset}" in args.train_cmd else None
            res = run_train_corrupted(clean, fmt=args.format, input=args.input, out=args.out,
                                      train_cmd=args.train_cmd, render_kwargs=render_kwargs, **failure)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"evals robustness: {err}", file=sys.stderr)
        return 2
    d = res["delta"]
    print(f"{res['n_subjects_affected']} subjects corrupted; " + ", ".join(
        f"{k} {res['clean'][k]:.4f} -> {res['corrupted'][k]:.4f} (delta {d[k]['delta']:+.4f}, "
        f"CI {d[k]['ci'][0]:+.4f}..{d[k]['ci'][1]:+.4f})" for k in ("accuracy", "kappa", "macro_f1")))
    print(f"wrote {Path(args.out) / 'results.json'}")
    return 0



