"""Training and prediction helpers the baseline recipes share: windows, the optimiser loop, the shared
argument dataclasses, run dirs, and the predict-only path (``--from_run``) of the signal recipes."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from psgvlm.baselines.signal_data import SignalRecording, select, sequence_starts
from psgvlm.predictions import make_rows, write_predictions
from psgvlm.provenance import provenance, read_json, write_json_atomic
from psgvlm.stages import N_STAGES, UNSCORED
from psgvlm.training import TrackingArguments, warmup_cosine


def arrays_for(rec: SignalRecording, modalities: dict[str, str | None]) -> dict[str, np.ndarray]:
    """``{modality: (n_epochs, n_times)}``, the per-recording form of a baseline's input dict.

    ``modalities`` maps a modality (``"EEG"``) to a channel, or to None for the recording's first
    channel of that modality. A missing modality raises ValueError naming it and what the recording has.
    """
    return {m: rec.modality_array(m, ch) for m, ch in modalities.items()}


def random_windows(recs_arrays: list[tuple[dict, np.ndarray]], *, seq_len: int, batch_size: int,
                   rng: np.random.Generator, pad: bool = False):
    """One batch of random windows: ({name: (B, L, n_times) tensor}, labels (B, L) long).

    ``recs_arrays`` is a list of (arrays dict, stages) per recording; recordings are drawn in proportion
    to their number of windows. Every recording must have >= ``seq_len`` epochs.

    ``pad=True`` (models that take any length, e.g. whole nights for sleep2vec): shorter recordings are
    drawn too, as one window of their own length, and recordings are drawn in proportion to
    ``max(n_epochs, seq_len)`` (so that every epoch is about equally likely to be seen, whether its
    night is shorter or longer than a window). L is the longest window of the batch; shorter ones are
    zero-padded at the end with UNSCORED labels, and a third item ``attention_mask`` (B, L) bool
    (True = a real epoch) is returned.
    """
    n = np.array([len(st) for _, st in recs_arrays], dtype=float)
    if pad:
        sizes = np.maximum(n, seq_len)
    else:
        sizes = n - seq_len + 1
        if (sizes < 1).any():
            short = [len(st) for _, st in recs_arrays if len(st) < seq_len]
            raise ValueError(f"recordings of {short} epochs are shorter than the window K={seq_len}")
    idx = rng.choice(len(recs_arrays), size=batch_size, p=sizes / sizes.sum())
    xs, ys = {}, []
    for i in idx:
        arrays, stages = recs_arrays[i]
        s = int(rng.integers(0, max(len(stages) - seq_len, 0) + 1))
        for m, a in arrays.items():
            xs.setdefault(m, []).append(a[s:s + seq_len])
        ys.append(np.asarray(stages[s:s + seq_len], np.int64))
    if not pad:
        return ({m: torch.from_numpy(np.stack(v)) for m, v in xs.items()}, torch.from_numpy(np.stack(ys)))
    length = max(len(y) for y in ys)

    def padded(a, fill):
        return np.concatenate([a, np.full((length - len(a), *a.shape[1:]), fill, a.dtype)])

    valid = np.stack([np.arange(length) < len(y) for y in ys])
    return ({m: torch.from_numpy(np.stack([padded(a, 0) for a in v])) for m, v in xs.items()},
            torch.from_numpy(np.stack([padded(y, UNSCORED) for y in ys])), torch.from_numpy(valid))


@torch.no_grad()
def predict_windows(fn, arrays: dict[str, np.ndarray], *, seq_len: int, stride: int | None = None,
                    batch_size: int = 16, allow_short: bool = False) -> np.ndarray:
    """Hypnodensity (n_epochs, 5) of one recording from a baseline over sliding windows.

    Parameters
    ----------
    fn : callable
        A baseline model (eval mode) or anything with its contract: ``fn({name: (B, L, n_times)
        tensor}) -> logits (B, L, 5)``.
    arrays : dict
        Input name -> (n_epochs, n_times) array of the whole recording (:func:`arrays_for`).
    seq_len : int
        Window length L, epochs. Windows step by ``stride`` (default seq_len // 2), the last one is
        aligned to the end; overlapping probabilities are averaged.
    allow_short : bool
        A recording shorter than ``seq_len`` is one window of its own length (models that take any
        length, e.g. sleep2vec: the same as padding it and masking the padding). False: ValueError.

    Returns
    -------
    np.ndarray, shape (n_epochs, 5), float64; rows sum to 1.

    Raises ValueError when the recording is shorter than ``seq_len`` (unless ``allow_short``).
    """
    n_epochs = len(next(iter(arrays.values())))
    if allow_short:
        seq_len = min(seq_len, n_epochs)
    starts = sequence_starts(n_epochs, seq_len, stride or max(1, seq_len // 2))
    acc = np.zeros((n_epochs, N_STAGES))
    cnt = np.zeros(n_epochs)
    for b in range(0, len(starts), batch_size):
        chunk = starts[b:b + batch_size]
        x = {m: torch.from_numpy(np.stack([a[s:s + seq_len] for s in chunk])) for m, a in arrays.items()}
        p = torch.softmax(fn(x), -1).numpy()
        for j, s in enumerate(chunk):
            acc[s:s + seq_len] += p[j]
            cnt[s:s + seq_len] += 1
    return acc / cnt[:, None]


def train_loop(model, step_fn, *, max_steps: int, learning_rate: float, weight_decay: float = 0.01,
               warmup_ratio: float = 0.05, desc: str = "train", logging_steps: int = 10, run=None,
               evaluate=None, eval_every: int = 0, batch_size: int = 0, rngs=()) -> list[float]:
    """AdamW under :func:`psgvlm.training.warmup_cosine`; ``step_fn(step) -> loss tensor``. Returns losses.

    ``max_steps`` optimizer steps at peak ``learning_rate`` after a linear warm-up over ``warmup_ratio``
    of them, gradients clipped to norm 1; a non-finite loss raises FloatingPointError naming the step.
    ``model`` is the module trained (or, without ``run``, an iterable of parameters).

    With ``run`` (a :class:`psgvlm.training.TrainingRun`) this is a recipe's loop: the run's checkpoint
    (``--resume_from_checkpoint``) is loaded first, every step is logged (loss, learning rate, gradient
    norm, samples/s from ``batch_size``), ``evaluate() -> {"val_...": value}`` runs every ``eval_every``
    steps and after the last one (module in eval mode), each evaluation is followed by a checkpoint and
    the best is kept; the recipe calls ``run.finish`` afterwards. ``rngs`` are the numpy/torch generators ``step_fn``
    draws from: they are checkpointed with the weights, so a resumed run continues exactly. The losses a
    resumed run returns include those logged before the checkpoint.
    """
    from tqdm import tqdm

    from psgvlm.training import GeneratorState, read_jsonl

    module = model if isinstance(model, torch.nn.Module) else None
    params = [p for p in (model.parameters() if module is not None else model) if p.requires_grad]
    if not params:
        raise ValueError("no trainable parameters")
    if run is not None and module is None:
        raise TypeError("train_loop(run=...) needs the module itself (its weights are checkpointed)")
    opt = torch.optim.AdamW(params, lr=learning_rate, weight_decay=weight_decay, betas=(0.9, 0.95))
    sched = warmup_cosine(opt, total_steps=max_steps, warmup_ratio=warmup_ratio)
    losses, start = [], 0
    if run is not None:
        module, opt, sched = run.accelerator.prepare(module, opt, sched)
        for g in rngs:
            run.accelerator.register_for_checkpointing(GeneratorState(g))
        start = run.resume()
        losses = [r["loss"] for r in read_jsonl(run.log_path) if "loss" in r]
    bar = tqdm(range(start, max_steps), desc=desc, mininterval=5, initial=start, total=max_steps)
    for step in bar:
        loss = step_fn(step)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{desc}: loss became {float(loss)} at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if step % logging_steps == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-logging_steps:]):.4f}")
        if run is None:
            continue
        run.log_step(step + 1, loss=losses[-1], lr=sched.get_last_lr()[0], grad_norm=grad_norm, samples=batch_size)
        if evaluate is not None and ((eval_every and (step + 1) % eval_every == 0) or step + 1 == max_steps):
            module.eval()
            if not run.evaluated(step + 1, evaluate()):  # a new best is checkpointed already
                run.save(step + 1)
            module.train()
    return losses


# --class_weighting name -> the power of the inverse class frequency in the CE weights (None: unweighted).
CLASS_WEIGHTING = {"none": None, "inverse_frequency": 1.0, "inverse_sqrt_frequency": 0.5}


def class_weights(stages_list, scheme: str = "inverse_sqrt_frequency") -> torch.Tensor | None:
    """Cross-entropy class weights from the training labels: frequency ** -power (mean 1) for the
    ``CLASS_WEIGHTING`` scheme, None for ``"none"``; ValueError naming an unknown scheme."""
    if scheme not in CLASS_WEIGHTING:
        raise ValueError(f"class_weighting {scheme!r} not allowed; allowed: {list(CLASS_WEIGHTING)}")
    power = CLASS_WEIGHTING[scheme]
    if power is None:
        return None
    y = np.concatenate([s[s != UNSCORED] for s in stages_list])
    counts = np.bincount(y, minlength=N_STAGES).astype(float)
    w = np.where(counts > 0, (counts.clip(1) / counts.sum()) ** -power, 0.0)
    return torch.tensor(w / w[counts > 0].mean(), dtype=torch.float32)


def write_run(out_dir, *, kind: str, config: dict, recs: list[SignalRecording], probs: list[np.ndarray],
              dataset_meta: dict | None = None, extra: dict | None = None, name: str = "predictions") -> dict:
    """Write ``meta.json`` and the predictions/metrics of ``recs`` into ``out_dir``; returns metrics.

    ``name="predictions"`` writes the contract files ``predictions.jsonl`` + ``metrics.json``; other
    names (e.g. ``predictions_train``) go to a sub-folder ``out_dir/<name>/`` with the same two files.
    """
    out_dir = Path(out_dir)
    rows = []
    for r, p in zip(recs, probs):
        rows += make_rows(dataset=r.dataset, subjects=[r.subject] * r.n_epochs,
                          recordings=[r.recording] * r.n_epochs, epochs=range(r.n_epochs),
                          starts_s=r.starts_s, labels=r.stages.tolist(), probs=p)
    target = out_dir if name == "predictions" else out_dir / name
    metrics = write_predictions(target, rows, extra_meta={"kind": kind, "split": name})
    meta = {"kind": kind, "config": config, "dataset": dataset_meta or {}, **(extra or {}),
            "provenance": provenance()}
    write_json_atomic(out_dir / "meta.json", meta)
    return metrics


# -- arguments the signal recipes share (parsed by psgvlm.training.parse_args) -------------------------


@dataclass(kw_only=True)
class RunArguments(TrackingArguments):
    output_dir: str  # the run dir to write
    seed: int = 0  # seeds parameter init and batch sampling
    threads: int = 2  # torch CPU threads
    config: str = ""  # YAML file of argument defaults (flags override it); its path is recorded in meta.json


@dataclass(kw_only=True)
class OptimizerArguments:
    max_steps: int = 300  # optimizer steps
    per_device_train_batch_size: int = 16  # windows of seq_len epochs per batch
    learning_rate: float = 1e-3  # peak AdamW learning rate (linear warm-up, then cosine decay)
    warmup_ratio: float = 0.05  # share of max_steps spent warming up
    weight_decay: float = 0.01  # AdamW weight decay
    eval_every: int = 100  # optimizer steps between validation scorings, each followed by a checkpoint (0: after the last step only)


@dataclass(kw_only=True)
class SignalDataArguments:
    signal_data: str  # signal dataset dir; built there from --format/--input when absent
    format: str | None = None  # reader name (isruc, mass, shhs, sleepedf, ...), to build the signal dataset
    input: str | None = None  # recordings folder, to build the signal dataset
    split_from: str | None = None  # dataset dir whose meta.json split to reuse when building (a subject split)
    split_seed: int = 0  # seed of the subject split when building without --split_from
    subjects: list[str] | None = None  # only these subjects when building: ids or a file (default: --split_from's)
    trim_tail_epochs: int | None = None  # ISRUC: last epochs of each night dropped (default: --split_from's, else 0)
    scorer: int | None = None  # ISRUC scorer, 1 or 2 (default: --split_from's, else 1)
    visit: int | None = None  # SHHS visit, 1 or 2 (default: --split_from's, else 1)


def exit_on_split_leak(fn, *args, **kwargs):
    """``fn(*args, **kwargs)``; a :class:`psgvlm.baselines.signal_data.SplitLeakError` (a ``--split_from``
    that puts a subject in two splits) ends the recipe as a user error: its one line, exit status 2."""
    import sys

    from psgvlm.baselines.signal_data import SplitLeakError

    try:
        return fn(*args, **kwargs)
    except SplitLeakError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def load_or_build_signal_data(args: SignalDataArguments):
    """(recordings, meta) of the signal dataset ``args.signal_data``; built first from ``args.format`` /
    ``args.input`` (split from ``args.split_from`` or seeded by ``args.split_seed``; reader options and
    subjects from the arguments, else from the ``--split_from`` image dataset) when absent.

    A dataset of an older format version is rebuilt (with a message) when ``args.format``/``args.input``
    are given, else refused with a ValueError saying how to rebuild it. A split that puts a subject in two
    splits (``--split_from`` an image dataset rendered with ``--split epoch``) ends the recipe with exit
    status 2 and a message naming ``--split_from`` (:func:`exit_on_split_leak`).
    """
    return exit_on_split_leak(_load_or_build, args)


def _load_or_build(args: SignalDataArguments):
    from psgvlm.baselines.signal_data import VERSION, build_signal_dataset, load_signal_dataset

    path = Path(args.signal_data)
    exists = (path / "meta.json").exists()
    stale = exists and read_json(path / "meta.json").get("version") != VERSION
    if not exists or (stale and args.format and args.input):
        if not (args.format and args.input):
            raise FileNotFoundError(f"no signal dataset at {path}; give --format and --input to build it")
        if stale:
            print(f"{path} is a signal dataset of an older format version; rebuilding it from {args.input}")
        build_signal_dataset(fmt=args.format, input=args.input, out=path, split_from=args.split_from,
                             split_seed=args.split_seed, overwrite=stale,
                             subjects=_subjects_arg(args.subjects), trim_tail_epochs=args.trim_tail_epochs,
                             scorer=args.scorer, visit=args.visit)
    return load_signal_dataset(path)


def _subjects_arg(values):
    from psgvlm.io.subjects import parse_subjects

    return parse_subjects(values) if values else None


# -- predict-only (``--from_run``): a trained run's model on another signal dataset ---------------------


def save_model(out_dir, model: torch.nn.Module, config: dict) -> None:
    """``model.pt`` (state dict, written atomically) + ``model_config.json`` of a baseline run dir."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / ".model.pt.tmp"
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, out_dir / "model.pt")
    write_json_atomic(out_dir / "model_config.json", config)


def load_model(run_dir, build, *, what: str) -> torch.nn.Module:
    """The model saved by :func:`save_model`; ``build(config_dict)`` makes the empty module."""
    run_dir = Path(run_dir)
    if not (run_dir / "model.pt").exists():
        raise FileNotFoundError(f"{run_dir} is not {what} (no model.pt)")
    model = build(read_json(run_dir / "model_config.json"))
    model.load_state_dict(torch.load(run_dir / "model.pt", weights_only=True))
    return model


def load_source_run(run_dir, kind: str) -> dict:
    """``meta.json`` of a trained baseline run of ``kind``; FileNotFoundError/ValueError naming what is wrong.

    The run dir must hold ``model.pt``, ``model_config.json`` and ``meta.json`` (what the training
    recipe writes; a predict-only run dir has no weights and cannot be a source).
    """
    run_dir = Path(run_dir)
    missing = [f for f in ("model.pt", "model_config.json", "meta.json") if not (run_dir / f).exists()]
    if missing:
        raise FileNotFoundError(f"--from_run {run_dir}: no {', '.join(missing)}; give a run dir trained by the "
                                f"{kind} recipe")
    meta = read_json(run_dir / "meta.json")
    if meta.get("kind") != kind:
        raise ValueError(f"--from_run {run_dir} is a {meta.get('kind')!r} run; this recipe predicts with {kind!r} runs")
    return meta


def predict_test_split(out, *, kind: str, source_run, source_meta: dict, recs: list[SignalRecording],
                       ds_meta: dict, fn, inputs: dict, seq_len: int, split: str = "test",
                       allow_short: bool = False) -> dict:
    """Predict the ``split`` subjects of a signal dataset with a trained model; returns the metrics.

    ``fn`` is the trained model (see :func:`predict_windows`), ``inputs`` its input names ->
    channel (None: the recording's first channel of that modality, see :func:`arrays_for`). Writes
    ``predictions.jsonl`` + ``metrics.json`` and ``meta.json`` (``predict_only``, ``source_run``, the
    source run's config, this dataset's split and input) to ``out``. Recordings shorter than the
    model's window are skipped and listed, as in training (``allow_short``: predicted, see
    :func:`predict_windows`).
    """
    names = (ds_meta.get("split") or {}).get(split)
    if not names:
        raise ValueError(f"the signal dataset has no {split!r} subjects in its split "
                         f"{ {k: v for k, v in (ds_meta.get('split') or {}).items() if isinstance(v, list)} }")
    chosen = select(recs, names)
    rs = [r for r in chosen if allow_short or r.n_epochs >= seq_len]
    if not rs:
        raise ValueError(f"every {split} recording is shorter than the model's window K={seq_len}: "
                         f"{[r.recording for r in chosen]}")
    probs = [predict_windows(fn, arrays_for(r, inputs), seq_len=seq_len, allow_short=allow_short) for r in rs]
    return write_run(out, kind=kind, config=source_meta.get("config") or {}, recs=rs, probs=probs,
                     dataset_meta={k: ds_meta[k] for k in ("split", "input", "rates", "corruption") if k in ds_meta},
                     extra={"predict_only": True, "source_run": str(Path(source_run).resolve()),
                            "predicted_split": split,
                            "skipped_test_shorter_than_K": [r.recording for r in chosen if not (allow_short or r.n_epochs >= seq_len)]})
