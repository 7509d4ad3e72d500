"""Shared pieces of the training recipes: the argument parser, the run while it trains (logs, trackers,
checkpoints, resuming), the model card and Hub upload, loss curves, the cosine schedule, run meta.

The loops themselves stay in the recipes (read top to bottom); what two recipes share lives here.
Every recipe reads its arguments with :func:`parse_args` and names them as transformers'
``TrainingArguments`` does wherever the concept exists there (``output_dir``, ``learning_rate``,
``num_train_epochs`` / ``max_steps``, ``per_device_train_batch_size``, ``warmup_ratio``,
``weight_decay``, ``seed``, ``resume_from_checkpoint``, ``report_to``, ``save_total_limit``,
``push_to_hub``, ``hub_model_id``). A recipe trains through one :class:`TrainingRun`: it starts the
trackers of ``--report_to``, writes ``train_log.jsonl``, keeps the newest checkpoints and the best by
validation kappa, resumes from ``latest``, and at the end writes the model card and uploads when asked.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import inspect
import io
import json
import math
import re
import shutil
import sys
import textwrap
import time
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

from psgvlm.provenance import provenance, read_json, write_json_atomic, write_text_atomic

RUN_CONFIG = "run_config.json"
CHECKPOINTS = "checkpoints"
# Arguments that may differ between a checkpoint and the run resuming from it.
RESUME_FREE = {"resume_from_checkpoint", "max_steps", "save_every", "eval_every", "output_dir",
               "max_eval_samples", "predict_splits", "config", "report_to", "save_total_limit", "push_to_hub",
               "hub_model_id", "threads"}
# --report_to name -> the module it needs (accelerate's trackers; TensorBoard also runs on tensorboardX).
TRACKERS = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",), "mlflow": ("mlflow",)}
INTENDED_USE = ("Research on automatic sleep staging (AASM stages W, N1, N2, N3, REM of 30-s polysomnography "
                "epochs): benchmarks, ablations and method development. Not a medical device: not for diagnosis, "
                "treatment or any clinical decision.")
SYNTHETIC_NOTICE = ("**Synthetic data.** This model was trained and tested on synthetic recordings written by "
                    "`psgvlm synth`. Its figures show that the pipeline works; they say nothing about how it "
                    "stages real sleep.")


@dataclass(kw_only=True)
class TrackingArguments:
    """Logging, checkpoints, resuming and publishing: the arguments every training recipe shares."""

    report_to: list[str] = field(default_factory=lambda: ["none"])  # experiment trackers: tensorboard, wandb, mlflow or none (wandb/mlflow when installed; WANDB_MODE=offline and MLFLOW_TRACKING_URI are respected)
    save_total_limit: int = 2  # checkpoints kept under OUTPUT_DIR/checkpoints: the newest this many, plus the best by validation kappa (0: keep all)
    resume_from_checkpoint: str = ""  # "latest" (the newest checkpoint under OUTPUT_DIR/checkpoints) or a checkpoint dir; refused under another config
    push_to_hub: bool = False  # at the end, upload the model, its processor and the model card to the Hub repo hub_model_id
    hub_model_id: str = ""  # Hub repo id (user/name) that push_to_hub uploads to


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


def list_checkpoints(output_dir) -> list[tuple[int, Path]]:
    """``[(step, dir)]`` of the finished checkpoints under ``output_dir/checkpoints``, oldest first.

    A checkpoint is finished once its ``run_config.json`` is written (last, after accelerate's state),
    so one a killed run left half-written is not listed.
    """
    root = Path(output_dir) / CHECKPOINTS
    found = []
    for d in root.glob("step-*") if root.is_dir() else []:
        m = re.fullmatch(r"step-(\d+)", d.name)
        if m and (d / RUN_CONFIG).is_file():
            found.append((int(m.group(1)), d))
    return sorted(found)


def find_checkpoint(value: str, output_dir) -> Path | None:
    """The checkpoint ``--resume_from_checkpoint value`` names: None for "", the newest finished one under
    ``output_dir/checkpoints`` for "latest", else the dir itself; FileNotFoundError naming what is missing."""
    if not value:
        return None
    if value == "latest":
        found = list_checkpoints(output_dir)
        if not found:
            raise FileNotFoundError(f"--resume_from_checkpoint latest: no finished checkpoint under "
                                    f"{Path(output_dir) / CHECKPOINTS}")
        return found[-1][1]
    if not Path(value).is_dir():
        raise FileNotFoundError(f"--resume_from_checkpoint {value!r}: no such checkpoint dir (or give 'latest')")
    return Path(value)


def trackers(report_to) -> list[str]:
    """accelerate's ``log_with`` for ``--report_to`` (a name or a list; "none" or empty: no tracker).

    Raises ValueError naming an unknown tracker and the allowed ones, or a tracker whose package is not
    installed and how to install it.
    """
    names = [report_to] if isinstance(report_to, str) else list(report_to or [])
    names = [n for n in names if n != "none"]
    bad = sorted(set(names) - set(TRACKERS))
    if bad:
        raise ValueError(f"report_to {bad} not allowed; allowed: {[*TRACKERS, 'none']}")
    missing = [n for n in names if not any(importlib.util.find_spec(m) for m in TRACKERS[n])]
    if missing:
        raise ValueError(f"report_to {missing}: not installed; pip install {' '.join(missing)} (or --report_to none)")
    return names


def val_metrics(labels, preds) -> dict:
    """``{"val_kappa", "val_macro_f1", "val_accuracy"}`` of validation epochs (unscored truth left out):
    the names every recipe logs, and ``val_kappa`` the one the best checkpoint is chosen by."""
    from psgvlm.metrics import stage_metrics

    m = stage_metrics(labels, preds)
    return {"val_kappa": m["kappa"], "val_macro_f1": m["macro_f1"], "val_accuracy": m["accuracy"]}


class GeneratorState:
    """A numpy ``Generator`` or ``torch.Generator`` as an object accelerate checkpoints (``state_dict`` /
    ``load_state_dict``), so a resumed run draws the batches an uninterrupted one would."""

    def __init__(self, generator):
        self.generator = generator

    def state_dict(self) -> dict:
        g = self.generator
        return {"state": g.bit_generator.state if hasattr(g, "bit_generator") else g.get_state()}

    def load_state_dict(self, state: dict) -> None:
        if hasattr(self.generator, "bit_generator"):
            self.generator.bit_generator.state = state["state"]
        else:
            self.generator.set_state(state["state"])


def _scalar_config(config: dict, prefix: str = "") -> dict:
    """``config`` flattened to the scalars trackers store as hyper-parameters (others as JSON text)."""
    out = {}
    for k, v in config.items():
        if isinstance(v, dict):
            out.update(_scalar_config(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v if isinstance(v, (bool, int, float, str)) else json.dumps(v)
    return out


class TrainingRun:
    """A recipe's run dir while it trains: the log, the trackers, checkpoints, resuming and publishing.

    Parameters
    ----------
    args : dataclass with :class:`TrackingArguments` and ``output_dir``
        The recipe's arguments.
    config : dict
        The resolved config (``asdict(args)``): stored with every checkpoint, compared on resume, given
        to the trackers as hyper-parameters.
    metric, greater_is_better :
        The logged validation value the best checkpoint is chosen by (default validation kappa, higher
        is better).
    **accelerator_kwargs :
        Passed to ``accelerate.Accelerator`` (with ``log_with`` from ``--report_to`` and the run dir as
        project dir; TensorBoard writes to ``OUTPUT_DIR/logs``), available as ``.accelerator``.

    Every row goes to ``train_log.jsonl`` (main process) and to the trackers. A checkpoint
    ``checkpoints/step-N`` is accelerate's state (weights, optimizer, scheduler, RNGs and the objects
    registered for checkpointing) plus ``run_config.json`` (config, step, best so far, the log up to N);
    after each save only the newest ``save_total_limit`` and the best remain. A fresh run removes the
    run dir's old log and checkpoints; ``--resume_from_checkpoint`` is resolved (``latest``) and checked
    against the config when the run is created, before anything is loaded.
    """

    def __init__(self, args, config: dict, *, metric: str = "val_kappa", greater_is_better: bool = True,
                 **accelerator_kwargs):
        from accelerate import Accelerator
        from accelerate.utils import ProjectConfiguration

        if args.push_to_hub and not args.hub_model_id:
            raise ValueError("--push_to_hub needs --hub_model_id USER/NAME (the Hub repo to upload to)")
        if args.save_total_limit < 0:
            raise ValueError(f"save_total_limit must be >= 0 (0 keeps all), got {args.save_total_limit}")
        self.args, self.config = args, config
        self.out = Path(args.output_dir)
        self.metric, self.greater_is_better = metric, greater_is_better
        self.log_path = self.out / "train_log.jsonl"
        self.checkpoint = find_checkpoint(args.resume_from_checkpoint, self.out)
        self.saved_state = check_resume(self.checkpoint, config) if self.checkpoint else None
        self.best: dict | None = (self.saved_state or {}).get("best")
        project = ProjectConfiguration(project_dir=str(self.out), logging_dir=str(self.out / "logs"))
        self.accelerator = Accelerator(log_with=trackers(args.report_to) or None, project_config=project,
                                       **accelerator_kwargs)
        self.main = self.accelerator.is_main_process
        self.accelerator.init_trackers("psgvlm", config=_scalar_config(config), init_kwargs={
            "wandb": {"name": self.out.name, "dir": str(self.out)}, "mlflow": {"run_name": self.out.name}})
        self.last_step, self._saved_step = 0, None
        self._t0 = self._t_last = time.time()

    def resume(self, *, strict: bool = True) -> int:
        """Load the checkpoint given by ``--resume_from_checkpoint`` into everything prepared or registered
        on ``.accelerator`` and restore its log; returns the optimizer step to continue from.

        A fresh run (no checkpoint) starts at 0 and removes the run dir's old log and checkpoints.
        ``strict=False`` where checkpoints hold only the trainable weights (the LoRA recipe).
        """
        if self.checkpoint is None:
            old = list_checkpoints(self.out)
            if self.main:
                self.log_path.unlink(missing_ok=True)
                shutil.rmtree(self.out / CHECKPOINTS, ignore_errors=True)
            self.accelerator.wait_for_everyone()
            if old:
                self.accelerator.print(f"a fresh run: removed {len(old)} checkpoint(s) of an earlier run under "
                                       f"{self.out / CHECKPOINTS} (--resume_from_checkpoint latest continues one)")
            self._t0 = self._t_last = time.time()
            return 0
        self.accelerator.load_state(str(self.checkpoint), strict=strict)
        self.last_step = self._saved_step = int(self.saved_state["step"])
        if self.main:
            restore_log(self.checkpoint, self.log_path, self.last_step)
        self.accelerator.print(f"resumed from {self.checkpoint} at optimizer step {self.last_step}")
        self._t0 = self._t_last = time.time()  # samples/s and elapsed_s count training time
        return self.last_step

    def log(self, row: dict) -> None:
        """One row (with its ``step``) to ``train_log.jsonl`` and its numbers to the trackers."""
        if self.main:
            append_jsonl(self.log_path, row)
        numbers = {k: v for k, v in row.items() if k != "step" and isinstance(v, (int, float)) and v is not None}
        self.accelerator.log(numbers, step=int(row["step"]))

    def log_step(self, step: int, *, loss: float, lr: float, grad_norm, samples: int, **extra) -> None:
        """An optimizer step's row: loss, learning rate, gradient norm (before clipping), samples/s since
        the previous step, seconds since the run (or its resumption) started."""
        now = time.time()
        row = {"step": step, **extra, "loss": loss, "lr": lr,
               "grad_norm": None if grad_norm is None else float(grad_norm),
               "samples_per_s": samples / max(now - self._t_last, 1e-9), "elapsed_s": now - self._t0}
        self._t_last = now
        self.last_step = step
        self.log(row)

    def evaluated(self, step: int, metrics: dict, **extra) -> bool:
        """Log validation ``metrics`` (logged names, e.g. :func:`val_metrics`); a new best by ``metric`` is
        checkpointed at once. Returns whether it is a new best."""
        self.log({"step": step, **extra, **metrics})
        value = float(metrics[self.metric])
        old = None if self.best is None else self.best["value"]
        best = old is None or math.isnan(old) or (  # a NaN (e.g. kappa of one class) is beaten by any number
            not math.isnan(value) and (value > old if self.greater_is_better else value < old))
        if best:
            self.best = {"step": step, "metric": self.metric, "value": value,
                         "checkpoint": f"{CHECKPOINTS}/step-{step}"}
            self.save(step)
        return best

    def save(self, step: int) -> Path:
        """Checkpoint ``checkpoints/step-<step>`` (every process calls it; once per step), then remove those
        beyond ``save_total_limit`` (never the best)."""
        ckpt = self.out / CHECKPOINTS / f"step-{step}"
        if step == self._saved_step:  # e.g. a new best at a step that is also a save step
            return ckpt
        self._saved_step = step
        self.accelerator.save_state(str(ckpt))
        if self.main:
            save_run_config(ckpt, self.config, log_path=self.log_path, step=step, best=self.best)
            limit = self.args.save_total_limit
            found = list_checkpoints(self.out)
            keep = {s for s, _ in found[-limit:]} | ({self.best["step"]} if self.best else set())
            for s, d in found:
                if limit and s not in keep:
                    shutil.rmtree(d, ignore_errors=True)
        self.accelerator.wait_for_everyone()
        return ckpt

    def finish(self, step: int) -> dict:
        """End of training: the last checkpoint (unless step ``step`` has one) and ``loss_curve.png``.

        Returns ``{"checkpoints": {"last": ..., "best": ..., "save_total_limit": ...}}`` for meta.json.
        """
        if step > 0:
            self.save(step)  # a no-op when this step is checkpointed already
        if self.main:
            plot_loss_curve(self.log_path, self.out / "loss_curve.png", title=self.out.name)
        last = f"{CHECKPOINTS}/step-{step}" if step > 0 else None
        return {"checkpoints": {"last": last, "best": self.best, "save_total_limit": self.args.save_total_limit}}

    def publish(self, upload: list[str]) -> None:
        """After the final predictions: ``confusion.png`` and the model card (``README.md``) in the run dir,
        the test metrics to the trackers, the Hub upload of the files matching ``upload`` (glob patterns
        relative to the run dir, README.md added) when ``--push_to_hub``; then the trackers end."""
        if self.main:
            metrics = read_json(self.out / "metrics.json") if (self.out / "metrics.json").is_file() else {}
            pooled = metrics.get("pooled") or {}
            if pooled:
                from psgvlm.plots import plot_confusion

                plot_confusion(pooled["confusion"], self.out / "confusion.png", title=f"{self.out.name}: test")
                self.accelerator.log({f"test_{k}": pooled[k] for k in ("kappa", "macro_f1", "accuracy")},
                                     step=self.last_step)
            write_model_card(self.out)
            if self.args.push_to_hub:
                push_to_hub(self.out, self.args.hub_model_id, [*upload, "README.md", "confusion.png"])
        self.accelerator.wait_for_everyone()
        self.accelerator.end_training()


# ---- the model card and the Hub upload --------------------------------------------------------------


def _is_synthetic(dataset_meta: dict) -> bool:
    """Whether the recordings a dataset was built from are ``psgvlm synth`` output (a ``synth.json`` beside them)."""
    path = ((dataset_meta or {}).get("input") or {}).get("path")
    if not path:
        return False
    path = Path(path)
    return any((d / "synth.json").is_file() for d in (path, path.parent))


def _metrics_table(split_dir: Path) -> list[str]:
    """Markdown rows of pooled metrics with subject-bootstrap 95% CIs from ``split_dir/predictions.jsonl``."""
    from psgvlm.metrics import bootstrap_ci, stage_metrics
    from psgvlm.predictions import read_predictions
    from psgvlm.stages import UNSCORED

    if not (split_dir / "predictions.jsonl").is_file():
        return []
    rows = [r for r in read_predictions(split_dir) if r["label"] is not None and r["label"] != UNSCORED]
    if not rows:
        return []
    truth, pred, subj = [r["label"] for r in rows], [r["pred"] for r in rows], [r["subject"] for r in rows]
    m, ci = stage_metrics(truth, pred), bootstrap_ci(truth, pred, subj, n_boot=1000, seed=0)
    out = []
    for key, name in (("kappa", "Cohen's kappa"), ("macro_f1", "macro F1"), ("accuracy", "accuracy"),
                      ("balanced_accuracy", "balanced accuracy")):
        lo, hi = ci[key]
        interval = "n/a" if lo is None else f"{lo:.3f} to {hi:.3f}"
        out.append(f"| {name} | {m[key]:.3f} | {interval} |")
    return [f"{len(rows)} scored epochs of {ci['n_subjects']} subject(s); 95% intervals resample whole subjects "
            f"(1000 resamples{'; one subject gives no spread' if ci['n_subjects'] < 2 else ''}).", "",
            "| metric | value | 95% CI |", "|---|---|---|", *out]


def write_model_card(run_dir) -> Path:
    """``run_dir/README.md``, a Hugging Face model card built from the run's ``meta.json`` (and its
    predictions): base model, data and split, training, test metrics with subject-bootstrap CIs,
    intended use, and the synthetic-data notice where the recordings are ``psgvlm synth`` output.

    Written offline, atomically; returns its path.
    """
    from huggingface_hub import ModelCardData

    run_dir = Path(run_dir)
    meta = read_json(run_dir / "meta.json")
    kind = meta.get("kind", "run")
    config = meta.get("config") or {}
    args = config.get("args", config) if isinstance(config, dict) else {}
    args = args or meta.get("args") or {}
    dataset = meta.get("dataset") or {}
    sources = [read_json(Path(p) / "meta.json") for v in (meta.get("sources") or {}).values()
               for p in ([v] if isinstance(v, str) else v)
               if (Path(p) / "meta.json").is_file()]  # NAP: the data is its predictors' (one run dir or several)
    synthetic = _is_synthetic(dataset) or any(_is_synthetic(s.get("dataset") or {}) for s in sources)
    base = meta.get("base_model") or args.get("checkpoint") or args.get("pretrained") or None
    hub_base = base if isinstance(base, str) and re.fullmatch(r"[\w.-]+/[\w.-]+", base) else None
    card = ModelCardData(library_name="peft" if meta.get("adapter") else ("transformers" if "arch" in meta else None),
                         base_model=hub_base, tags=["sleep-staging", "polysomnography", "psgvlm", kind])
    what = ("a self-supervised PSG encoder (fine-tuned for staging by `recipes/sleep2vec_finetune.py`)"
            if kind == "sleep2vec-pretrain" else "a sleep stager scoring 30-s PSG epochs as W, N1, N2, N3 or REM")
    lines = [f"# {run_dir.name}", "", f"A psgvlm `{kind}` run: {what}.", ""]
    if synthetic:
        lines += [SYNTHETIC_NOTICE, ""]
    lines += ["## Model", ""]
    if base and meta.get("adapter"):
        lines.append(f"- base model: `{base}`, LoRA adapter in `{meta['adapter']}/`")
    elif base:
        lines.append(f"- base model: `{base}`" + (" (not fine-tuned: zero-shot)" if "adapter" in meta else ""))
    elif meta.get("arch"):
        lines.append(f"- architecture: `{meta['arch']}` ({args.get('size', '')} preset, trained from scratch)")
    else:
        model_config = meta.get("model_config") or config.get("model_config")
        lines.append(f"- trained from scratch; model config: `{json.dumps(model_config, default=str)}`"
                     if model_config else "- trained from scratch")
    ckpts = meta.get("checkpoints") or {}
    best = ckpts.get("best")
    if best:
        lines.append(f"- checkpoints: last `{ckpts['last']}` (the weights in this dir); best by {best['metric']} "
                     f"`{best['checkpoint']}` ({best['value']:.3f})")
    elif ckpts.get("last"):
        lines.append(f"- checkpoints: last `{ckpts['last']}` (no held-out validation chose a best)")
    lines += ["", "## Data", ""]
    if dataset:
        src, fmt = dataset.get("input") or {}, dataset.get("format") or (dataset.get("input") or {}).get("format")
        if src.get("path"):
            lines.append(f"- recordings: `{src['path']}`" + (f" (format {fmt})" if fmt else ""))
        if dataset.get("channels"):
            lines.append(f"- channels: {', '.join(map(str, dataset['channels']))}")
    split = dataset.get("split") or meta.get("split") or {}
    if split:
        parts = [f"{k} {len(v)} subject(s)" for k, v in split.items() if isinstance(v, list)]
        lines.append(f"- split ({split.get('kind', 'subject')}, seed {split.get('seed', '?')}): {', '.join(parts)}")
    if sources:
        lines.append(f"- predictors: {', '.join(f'`{k}`' for k in meta['sources'])} (their run dirs' predictions)")
    lines += ["", "## Training", ""]
    for key in ("learning_rate", "num_train_epochs", "max_steps", "per_device_train_batch_size", "seed"):
        if key in args:
            lines.append(f"- {key}: {args[key]}")
    if meta.get("optimizer_steps") is not None:
        lines.append(f"- optimizer steps: {meta['optimizer_steps']}")
    lines += ["", "## Results", ""]
    table = _metrics_table(run_dir)
    lines += (["Test split:", "", *table] if table else
              [f"Evaluation: `{json.dumps(meta['evaluation'], default=str)}`" if meta.get("evaluation") else
               "No labelled test predictions in this run dir."])
    val = _metrics_table(run_dir / "predictions_validation")
    lines += ["", "Validation split:", "", *val] if val else []
    lines += ["", "## Intended use", "", INTENDED_USE, "", "## Provenance", "",
              f"`meta.json` beside this card holds the full config, the dataset's meta and package versions "
              f"(git {(meta.get('provenance') or {}).get('git_sha') or 'unknown'}).", ""]
    path = run_dir / "README.md"
    write_text_atomic(path, f"---\n{card.to_yaml()}\n---\n\n" + "\n".join(lines))
    return path


def push_to_hub(run_dir, repo_id: str, patterns: list[str]) -> str:
    """Upload the files of ``run_dir`` matching ``patterns`` to the Hub model repo ``repo_id`` (created if
    absent; the token from ``huggingface-cli login`` or HF_TOKEN); returns the commit URL."""
    from huggingface_hub import create_repo, upload_folder

    create_repo(repo_id, repo_type="model", exist_ok=True)
    info = upload_folder(repo_id=repo_id, folder_path=str(run_dir), allow_patterns=patterns,
                         commit_message=f"psgvlm run {Path(run_dir).name}")
    print(f"pushed {run_dir} ({', '.join(patterns)}) to https://huggingface.co/{repo_id}")
    return str(info)


def plot_loss_curve(log_path, png_path, title: str = "training") -> Path | None:
    """Training loss (eval/validation loss and validation kappa where logged) against step, as a PNG.

    The one loss plot: recipes write ``loss_curve.png`` with it and ``evals metrics`` plots runs'
    ``train_log.jsonl`` with it. The legend sits below the axes, off the data (kappa has its own right
    axis). Returns the PNG's path, or None when the log holds no loss.
    """
    from psgvlm.plots import new_figure, save_png

    rows = read_jsonl(log_path)
    series: dict[str, list] = {"loss": [], "eval_loss": [], "val_loss": [], "val_kappa": []}
    for i, r in enumerate(rows):
        step = r.get("step", r.get("global_step", i))
        for key, points in series.items():
            if key in r:
                points.append((step, r[key]))
    if not series["loss"] and not series["eval_loss"] and not series["val_loss"]:
        return None
    fig = new_figure(6, 3.8, layout="constrained")
    ax = fig.add_subplot(111)
    if series["loss"]:
        ax.plot(*zip(*series["loss"]), color="tab:blue", lw=1, label="train loss")
    if series["eval_loss"]:
        ax.plot(*zip(*series["eval_loss"]), "o-", color="tab:red", lw=1, label="eval loss")
    if series["val_loss"]:
        ax.plot(*zip(*series["val_loss"]), "o-", color="tab:red", lw=1, label="validation loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    if series["val_kappa"]:
        ax2 = ax.twinx()
        ax2.plot(*zip(*series["val_kappa"]), "o-", color="tab:orange", label="validation kappa")
        ax2.set_ylabel("kappa")
        ax2.set_ylim(-0.1, 1.0)
    ax.set_title(title, fontsize=9)
    fig.legend(loc="outside lower center", ncols=3, fontsize=8, frameon=False)
    return save_png(fig, png_path)


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


def epoch_batches(accelerator, ds, *, epoch: int, seed: int, batch_size: int, collate_fn, skip: int = 0):
    """The micro-batches of one epoch of ``ds`` in a seeded order, less the first ``skip`` (a resumed run).

    The order comes from ``default_rng([seed, epoch])``, so a resumed run sees the batches an
    uninterrupted one would; the loader has its own ``torch.Generator`` so that creating it draws
    nothing from the global RNG (dropout). Prepared on ``accelerator`` (split between processes).
    Returns None when ``skip`` covers the epoch (a resumed run is past it).
    """
    import numpy as np
    import torch
    from torch.utils.data import DataLoader, Subset

    order = np.random.default_rng([seed, epoch]).permutation(len(ds)).tolist()
    loader = accelerator.prepare(DataLoader(Subset(ds, order), batch_size=batch_size, collate_fn=collate_fn,
                                            generator=torch.Generator()))
    if skip >= len(loader):
        return None
    return accelerator.skip_first_batches(loader, skip) if skip > 0 else loader


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
