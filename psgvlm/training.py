"""Shared pieces of the training recipes: the argument parser, resume checks, logs, loss curves, the
cosine schedule, run meta.

The loops themselves stay in the recipes (read top to bottom); what two recipes share lives here.
Every recipe reads its arguments with :func:`parse_args` and names them as transformers'
``TrainingArguments`` does wherever the concept exists there (``output_dir``, ``learning_rate``,
``num_train_epochs`` / ``max_steps``, ``per_device_train_batch_size``, ``warmup_ratio``,
``weight_decay``, ``seed``, ``resume_from_checkpoint``).
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import json
import math
import shutil
import sys
import textwrap
import tokenize
from pathlib import Path

from psgvlm.provenance import provenance, read_json, write_json_atomic

RUN_CONFIG = "run_config.json"
# Arguments that may differ between a checkpoint and the run resuming from it.
RESUME_FREE = {"resume_from_checkpoint", "max_steps", "save_every", "eval_every", "output_dir",
               "max_eval_samples", "predict_splits", "config"}


def field_help(dataclass_type) -> dict[str, str]:
    """``{field name: its # comment}`` read from the source of ``dataclass_type`` and its dataclass bases.

    A field's help is the comment on its line(s), or else the comment lines right above it; a subclass
    that redeclares a field replaces its help. Classes whose source cannot be read (no file) add nothing.
    """
    helps: dict[str, str] = {}
    for cls in reversed(dataclass_type.__mro__):
        if not dataclasses.is_dataclass(cls):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(cls))
        except (OSError, TypeError):
            continue
        comments, own_line = {}, set()
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                comments[tok.start[0]] = tok.string.lstrip("#").strip()
                if not tok.line[: tok.start[1]].strip():
                    own_line.add(tok.start[0])
        for node in ast.parse(source).body[0].body:
            if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
                continue
            text = [comments[i] for i in range(node.lineno, node.end_lineno + 1) if i in comments]
            above, i = [], node.lineno - 1
            while i in own_line:
                above.insert(0, comments[i])
                i -= 1
            if text or above:
                helps[node.target.id] = " ".join(text or above)
    return helps


def parse_args(dataclass_type, argv=None):
    """The recipes' one argument parser: ``HfArgumentParser`` over ``dataclass_type`` with
    ``--config x.yaml`` as defaults and ``--flag`` overrides on top.

    Every field's ``# comment`` in the dataclass source (see :func:`field_help`) is its ``--help`` line.
    A YAML key that is not a field raises ValueError naming it and the allowed keys; a value from the
    YAML satisfies a required field; the YAML's path is recorded in the field ``config`` where the
    dataclass has one. Returns one ``dataclass_type`` instance.
    """
    import argparse

    import yaml
    from transformers import HfArgumentParser

    names = [f.name for f in dataclasses.fields(dataclass_type)]
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--config")
    known, rest = pre.parse_known_args(sys.argv[1:] if argv is None else list(argv))
    defaults = {}
    if known.config:
        path = Path(known.config)
        if not path.is_file():
            raise FileNotFoundError(f"config file {str(path)!r} not found")
        defaults = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(defaults, dict):
            raise ValueError(f"{path}: a recipe config is a mapping of argument: value, got {type(defaults).__name__}")
        unknown = sorted(set(defaults) - set(names))
        if unknown:
            raise ValueError(f"{path}: unknown keys {unknown}; allowed: {sorted(names)}")
        if "config" in names:
            defaults["config"] = str(path)
    parser = HfArgumentParser(dataclass_type)
    parser.set_defaults(**defaults)
    helps = field_help(dataclass_type)
    for action in parser._actions:
        if action.dest in defaults:  # a value from the config satisfies a required flag
            action.required = False
        if action.dest in helps and not action.help:
            text = helps[action.dest].replace("%", "%%")  # argparse formats help with %
            negated = action.option_strings[0].startswith("--no_")
            action.help = f"set {action.dest} to false ({text})" if negated else text
    (args,) = parser.parse_args_into_dataclasses(args=rest)
    return args


def config_diff(a: dict, b: dict, ignore=RESUME_FREE) -> dict:
    """Keys whose values differ: ``{key: (a_value, b_value)}``."""
    keys = (set(a) | set(b)) - set(ignore)
    return {k: (a.get(k), b.get(k)) for k in sorted(keys) if a.get(k) != b.get(k)}


def check_resume(checkpoint, config: dict) -> dict:
    """The checkpoint's saved state; refuses (ValueError with the diff) a checkpoint of another config."""
    checkpoint = Path(checkpoint)
    if not (checkpoint / RUN_CONFIG).exists():
        raise ValueError(f"{checkpoint} is not a checkpoint of this recipe (no {RUN_CONFIG})")
    saved = read_json(checkpoint / RUN_CONFIG)
    diff = config_diff(saved["config"], config)
    if diff:
        lines = "\n".join(f"  {k}: checkpoint={v[0]!r} now={v[1]!r}" for k, v in diff.items())
        raise ValueError(f"refusing to resume from {checkpoint}: it was trained with another config:\n{lines}")
    return saved


def save_run_config(checkpoint, config: dict, log_path=None, **state) -> None:
    """The config (checked on resume) and a copy of the training log beside accelerate's state."""
    if log_path is not None and Path(log_path).exists():
        shutil.copyfile(log_path, Path(checkpoint) / "train_log.jsonl")
    write_json_atomic(Path(checkpoint) / RUN_CONFIG, {"config": config, **state})


def append_jsonl(path, row: dict) -> None:
    """Append one JSON line (the training log is append-only, so a resumed run continues it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


def read_jsonl(path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def restore_log(checkpoint, path, max_step: int) -> None:
    """The checkpoint's copy of the training log up to ``max_step`` becomes ``path`` (resumed runs)."""
    rows = [r for r in read_jsonl(Path(checkpoint) / "train_log.jsonl") if r.get("step", 0) <= max_step]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def plot_loss_curve(log_path, png_path, title: str = "training") -> Path | None:
    """Training loss (eval loss and validation kappa where logged) against step, as a PNG.

    The one loss plot: recipes write ``loss_curve.png`` with it and ``evals metrics`` plots runs'
    ``train_log.jsonl`` with it. Returns the PNG's path, or None when the log holds no loss.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = read_jsonl(log_path)
    series: dict[str, list] = {"loss": [], "eval_loss": [], "val_kappa": []}
    for i, r in enumerate(rows):
        step = r.get("step", r.get("global_step", i))
        for key, points in series.items():
            if key in r:
                points.append((step, r[key]))
    if not series["loss"] and not series["eval_loss"]:
        return None
    fig = Figure(figsize=(6, 3.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(111)
    if series["loss"]:
        ax.plot(*zip(*series["loss"]), color="tab:blue", lw=1, label="train loss")
    if series["eval_loss"]:
        ax.plot(*zip(*series["eval_loss"]), "o-", color="tab:red", lw=1, label="eval loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    if series["val_kappa"]:
        ax2 = ax.twinx()
        ax2.plot(*zip(*series["val_kappa"]), "o-", color="tab:orange", label="validation kappa")
        ax2.set_ylabel("kappa")
        ax2.set_ylim(-0.1, 1.0)
    ax.set_title(title, fontsize=9)
    fig.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path)
    return png_path


def warmup_cosine(optimizer, *, total_steps: int, warmup_ratio: float):
    """transformers' cosine schedule with linear warmup over ``warmup_ratio`` of the steps."""
    from transformers import get_cosine_schedule_with_warmup

    if not 0 <= warmup_ratio < 1:
        raise ValueError(f"warmup_ratio must be in [0, 1), got {warmup_ratio}")
    return get_cosine_schedule_with_warmup(optimizer, math.ceil(warmup_ratio * total_steps), max(total_steps, 1))


SPLITS = ("train", "validation", "test")


def check_image_splits(dsd, dataset, *, predict_splits, need=("train", "validation")) -> None:
    """Refuse (ValueError) ``predict_splits`` outside train/validation/test and a dataset without a
    split in ``need`` (the image recipes train on train and validate on validation)."""
    bad = sorted(set(predict_splits) - set(SPLITS))
    if bad:
        raise ValueError(f"predict_splits {bad} not allowed; allowed: {list(SPLITS)}")
    for split in need:
        if split not in dsd:
            raise ValueError(f"{dataset} has no {split!r} split (has {sorted(dsd)}); render with a subject split")


def seeded_subset(ds, n: int, seed: int):
    """A seeded random subset of ``n`` rows of a datasets split (all rows when n is 0 or >= its length)."""
    import numpy as np

    return ds if not n or n >= len(ds) else ds.select(np.random.default_rng(seed).permutation(len(ds))[:n])


def write_split_predictions(out, split: str, ds, probs) -> dict:
    """An image-dataset split's predictions: ``out`` for the test split, ``out/predictions_<split>``
    for the others (``predictions.jsonl`` + ``metrics.json``, the runs' contract); returns the metrics.

    ``ds`` is the split (columns dataset, subject, recording, epoch, start_s, label), ``probs`` (n, 5).
    """
    from psgvlm.predictions import make_rows, write_predictions

    rows = make_rows(dataset=ds["dataset"], subjects=ds["subject"], recordings=ds["recording"],
                     epochs=ds["epoch"], starts_s=ds["start_s"], labels=list(ds["label"]), probs=probs)
    target = Path(out) if split == "test" else Path(out) / f"predictions_{split}"
    return write_predictions(target, rows, extra_meta={"split": split, "run": str(out)})


def write_run_meta(run_dir, *, kind: str, config: dict, dataset_meta: dict, **extra) -> dict:
    """``run_dir/meta.json``: kind, config, the dataset's meta (render settings, channels), provenance."""
    meta = {"kind": kind, "config": config, "dataset": dataset_meta, **extra, "provenance": provenance()}
    write_json_atomic(Path(run_dir) / "meta.json", meta)
    return meta


def mixed_precision() -> str:
    """bf16 where the hardware supports it (CUDA with bf16), else full precision."""
    import torch

    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
