"""Scoring image datasets with a predictor, re-rendering like a run's training data (the render stage
run as a command) and running a recipe command: the shared machinery of the robustness and
channel-loss suites."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from psgvlm.metrics import SCALAR_METRICS, bootstrap_ci, paired_bootstrap_delta, stage_metrics
from psgvlm.predictions import make_rows, read_predictions


def predict_rows(predictor, ds, *, batch_size: int = 16, transform_image=None, desc: str = "predict") -> list[dict]:
    """Rows in the predictions schema for every epoch of ``ds`` (an image dataset split).

    ``transform_image(np.ndarray (H, W, 3)) -> np.ndarray`` is applied to each image first (band
    blanking).
    """
    from PIL import Image

    from psgvlm.image.attribution import no_grad
    from psgvlm.vlm.context import with_context

    context = getattr(predictor, "context", 0)
    if context:  # a run trained with --context K reads strips; the transform applies to each epoch in them
        ds, transform_image = with_context(ds, context, transform=transform_image), None
    probs = []
    for i in tqdm(range(0, len(ds), batch_size), desc=desc, unit="batch"):
        images = ds[i:i + batch_size]["image"]
        if transform_image is not None:
            images = [Image.fromarray(transform_image(np.asarray(im.convert("RGB")))) for im in images]
        with no_grad():
            p = np.asarray(predictor.predict_proba(images, batch_size=batch_size), dtype=np.float64)
        if p.shape != (len(images), 5):
            raise ValueError(f"predict_proba returned shape {p.shape} for {len(images)} images, expected (n, 5)")
        probs.append(p)
    cols = ds.select_columns(["dataset", "subject", "recording", "epoch", "start_s", "label"]).to_dict()
    return make_rows(dataset=cols["dataset"], subjects=cols["subject"], recordings=cols["recording"],
                     epochs=cols["epoch"], starts_s=cols["start_s"], labels=cols["label"],
                     probs=np.concatenate(probs) if probs else np.zeros((0, 5)))


def align(rows_a: list[dict], rows_b: list[dict], *, what: str) -> tuple[list[dict], list[dict]]:
    """Both row lists ordered by (subject, recording, epoch); ValueError naming any epoch not in both."""
    from .common import check_match, row_key

    check_match(rows_b, [row_key(r) for r in rows_a], what=what)
    a = sorted(rows_a, key=row_key)
    b = sorted(rows_b, key=row_key)
    return a, b


def compare(clean: list[dict], other: list[dict], *, n_boot: int, seed: int, alpha: float = 0.05,
            subjects_of_interest=None) -> dict:
    """Metrics of both row sets on the same scored epochs, and paired deltas (other - clean) with CIs.

    ``subjects_of_interest`` (e.g. the corrupted subjects) adds the same comparison restricted to them
    and to the others.
    """
    scored = [i for i, r in enumerate(clean) if r["label"] is not None and r["label"] >= 0]
    y = np.array([clean[i]["label"] for i in scored])
    pa = np.array([clean[i]["pred"] for i in scored])
    pb = np.array([other[i]["pred"] for i in scored])
    subj = np.array([str(clean[i]["subject"]) for i in scored])
    out = {"clean": stage_metrics(y, pa), "other": stage_metrics(y, pb),
           "clean_ci": bootstrap_ci(y, pa, subj, n_boot=n_boot, seed=seed, alpha=alpha),
           "other_ci": bootstrap_ci(y, pb, subj, n_boot=n_boot, seed=seed, alpha=alpha),
           "delta": paired_bootstrap_delta(y, pa, pb, subj, n_boot=n_boot, seed=seed, alpha=alpha)}
    if subjects_of_interest is not None:
        chosen = np.isin(subj, sorted(subjects_of_interest))
        for name, mask in (("affected", chosen), ("intact", ~chosen)):
            if mask.any():
                out[name] = {"subjects": sorted(set(subj[mask])), "n_epochs": int(mask.sum()),
                             **{k: {"clean": stage_metrics(y[mask], pa[mask])[k],
                                    "other": stage_metrics(y[mask], pb[mask])[k]} for k in SCALAR_METRICS}}
    return out


def trained_render_kwargs(dataset_meta: dict) -> dict:
    """Options of :func:`render` that reproduce how a run's training images were rendered.

    Read from the training dataset's ``meta.json`` (a run's ``meta["dataset"]``): channel order,
    image side, target rate, split kind and seed, channel labels, and where set the reader options
    (ISRUC scorer, last epochs trimmed, SHHS visit) and the subject subset, so the re-rendered epochs
    are the trained ones. ValueError when the meta has no
    channel order, or when its renderer settings differ from ``psgvlm render``'s in a way the
    command has no option for.
    """
    from psgvlm.image.dataset import image_size
    from psgvlm.image.renderer import RenderSettings

    if not dataset_meta or "channels" not in dataset_meta:
        raise ValueError("the run's dataset meta has no channel order; cannot re-render like its training data")
    settings = dataset_meta.get("settings") or {}
    size = image_size(dataset_meta)
    trained = RenderSettings.from_dict(settings["render"]).as_dict()
    command = RenderSettings(size=size).as_dict()
    other = sorted(k for k in trained if k != "labels" and trained[k] != command[k])
    if other:
        raise ValueError(f"the run's images were rendered with {({k: trained[k] for k in other})}, which "
                         f"`psgvlm render` has no option for (it draws {({k: command[k] for k in other})})")
    split = dataset_meta.get("split") or {}
    reading = {"scorer": settings.get("scorer"), "visit": settings.get("visit"),
               "trim_tail_epochs": settings.get("trim_tail_epochs"), "subjects": (settings.get("subjects") or {}).get("ids")}
    return {"channels": list(dataset_meta["channels"]), "size": size, "sfreq": dataset_meta.get("sfreq"),
            "split": split.get("kind", "subject"), "split_seed": int(split.get("seed", 0)),
            "label_channels": bool(settings.get("label_channels")), **{k: v for k, v in reading.items() if v}}


def run_command(argv: list[str], *, log, what: str) -> None:
    """Run ``argv``; its stdout and stderr go to the file ``log``; RuntimeError naming ``what`` on failure."""
    proc = subprocess.run(argv, capture_output=True, text=True)
    Path(log).write_text(proc.stdout + proc.stderr, encoding="utf-8")
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {proc.returncode}): {shlex.join(argv)}\n{proc.stderr[-2000:]}")


def render(*, fmt: str, input, out, hypnogram=None, num_proc: int = 1, transform=None, channels=None,
           size: int | None = None, sfreq: float | None = None, split: str = "subject", split_seed: int = 0,
           label_channels: bool = False, scorer: int | None = None, visit: int | None = None,
           trim_tail_epochs: int = 0, subjects=None):
    """Run the render stage (``python -m psgvlm.cli render``) into ``out``, then load it: (DatasetDict, meta).

    Evals talk to the builder through files: ``transform`` (a corruption from
    :mod:`psgvlm.signal.corruption`) is written to ``OUT.transform.json`` and handed over with
    ``--transform``; the command's output goes to ``OUT.render.log``. ``out`` is replaced if it exists.
    """
    from psgvlm.image.dataset import load_dataset
    from psgvlm.signal.corruption import save_transform

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "psgvlm.cli", "render", "--format", fmt, "--input", str(input), "--out", str(out),
            "--split", split, "--split-seed", str(split_seed), "--num-proc", str(num_proc), "--overwrite", "--quiet"]
    if hypnogram is not None:
        argv += ["--hypnogram", str(hypnogram)]
    if channels:
        argv += ["--channels", *channels]
    if size is not None:
        argv += ["--size", str(size)]
    if sfreq:
        argv += ["--fs", repr(float(sfreq))]
    if label_channels:
        argv.append("--labels")
    for flag, value in (("--scorer", scorer), ("--visit", visit), ("--trim-tail-epochs", trim_tail_epochs)):
        if value:
            argv += [flag, str(value)]
    if subjects:
        argv += ["--subjects", *map(str, subjects)]
    if transform is not None:
        argv += ["--transform", str(save_transform(transform, out.parent / f"{out.name}.transform.json"))]
    run_command(argv, log=out.parent / f"{out.name}.render.log", what="render command")
    return load_dataset(out)


def eval_split_name(dd, split: str) -> str:
    """``split`` if the dataset has it; the single ``all`` split of an unsplit dataset otherwise."""
    if split in dd:
        return split
    if list(dd) == ["all"]:
        return "all"
    raise ValueError(f"split {split!r} not in the rendered dataset; available: {list(dd)}")


def train_with_command(template: str, *, out_dir, **fields) -> list[dict]:
    """Run a recipe command (placeholders like ``{dataset}``, ``{out}``) and read its predictions.

    The command must train on the given dataset and write ``{out}/predictions.jsonl`` for the
    evaluation split (what every recipe does at its end).
    """
    out_dir = Path(out_dir)
    try:
        cmd = template.format(out=str(out_dir), **{k: str(v) for k, v in fields.items()})
    except KeyError as err:
        raise ValueError(f"train command has unknown placeholder {err}; allowed: out, {', '.join(fields)}") from None
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    run_command(shlex.split(cmd), log=out_dir.parent / f"{out_dir.name}.train.log", what="train command")
    return read_predictions(out_dir)
