"""Shared pieces of the training recipes: config files, resume checks, logs, loss curves, run meta.

The loops themselves stay in the recipes (read top to bottom); what two recipes share lives here.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import sys
from pathlib import Path

from psgvlm.provenance import provenance, read_json, write_json_atomic

RUN_CONFIG = "run_config.json"
# Arguments that may differ between a checkpoint and the run resuming from it.
RESUME_FREE = {"resume_from_checkpoint", "max_steps", "save_every", "eval_every", "output_dir",
               "max_eval_samples", "predict_splits", "config"}


def parse_args(dataclass_type, argv=None):
    """``HfArgumentParser`` with ``--config x.yaml`` (YAML defaults) and flag overrides on top."""
    import yaml
    from transformers import HfArgumentParser

    argv = list(sys.argv[1:] if argv is None else argv)
    defaults = {}
    if "--config" in argv:
        i = argv.index("--config")
        if i + 1 >= len(argv):
            raise SystemExit("--config needs a YAML file path")
        path = Path(argv[i + 1])
        if not path.exists():
            raise SystemExit(f"config file {str(path)!r} not found")
        defaults = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        names = {f.name for f in dataclasses.fields(dataclass_type)}
        unknown = sorted(set(defaults) - names)
        if unknown:
            raise SystemExit(f"{path}: unknown keys {unknown}; allowed: {sorted(names)}")
        defaults["config"] = str(path)
        argv = argv[:i] + argv[i + 2:]
    parser = HfArgumentParser(dataclass_type)
    parser.set_defaults(**defaults)
    (args,) = parser.parse_args_into_dataclasses(args=argv)
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


def write_run_meta(run_dir, *, kind: str, config: dict, dataset_meta: dict, **extra) -> dict:
    """``run_dir/meta.json``: kind, config, the dataset's meta (render settings, channels), provenance."""
    meta = {"kind": kind, "config": config, "dataset": dataset_meta, **extra, "provenance": provenance()}
    write_json_atomic(Path(run_dir) / "meta.json", meta)
    return meta


def mixed_precision() -> str:
    """bf16 where the hardware supports it (CUDA with bf16), else full precision."""
    import torch

    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
