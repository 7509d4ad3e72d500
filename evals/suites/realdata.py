"""``python -m evals realdata --data ../shared/data/real --out DIR``: every predictor kind on real sleep.

The real-data scorecard (issue 10 item 4). On the shared real recordings with expert labels (DREAMS
excerpts 1-6, Prerau, the Sleep-EDF crop; ``../shared/data/real/README.md``) it scores, on the reader's
epoch grid (the expert's 30-s epochs):

- the pretrained predictors of ``psgvlm stage`` (:data:`psgvlm.night.predictors.PREDICTORS`, run by
  ``run_predictors`` on the same epochs): the embedded default VLM (synthetic training only), YASA,
  GSSC (when the extra ``psgvlm[gssc]`` imports; else the row says why) and their soft vote. Nothing is
  trained on the real recordings; ``--vlm-run NAME=DIR`` adds more VLM runs (e.g. another render mode);
- models trained leave-one-recording-out (LORO: for each recording, trained on the others, tested on
  it): sDREAMER and sleep2vec (pre-trained then fine-tuned on the folds' training recordings) on the
  best EEG channel of each recording (``recipes/sdreamer.py``, ``recipes/sleep2vec_pretrain.py`` and
  ``recipes/sleep2vec_finetune.py`` as subprocesses, tiny CPU configs), and the tiny VLM: the embedded
  default model fine-tuned with a fresh LoRA on the real epochs rendered as ``psgvlm stage`` renders
  them for it (``recipes/llava_isruc.py``);
- NAP over YASA's and GSSC's per-EEG-channel streams (``psgvlm reference`` run dirs, ``recipes/nap.py``):
  LORO, and zero-shot by leaving one corpus out (DREAMS, Prerau, Sleep-EDF: NAP trained on the others).

Per row: per recording and pooled accuracy, Cohen's kappa, macro-F1 and per-class F1 (the shipped
``evaluate`` module, as ``python -m evals metrics``), recording-bootstrap 95% CIs (each recording is a
different subject). An epoch a predictor left unscored counts as wrong. The pool holds DREAMS 1-6,
Prerau and the Sleep-EDF crop; DREAMS excerpt 3's full-PSG EDF (same night as excerpt3.txt, more
channels) is scored by the pretrained predictors as its own recording and kept out of the pool.

Writes ``DIR/scorecard.md`` (the Markdown tables), ``DIR/scorecard.json`` (every figure, the config and
provenance) and ``DIR/samples.jsonl`` (per epoch: row, recording, expert, prediction); the LORO folds'
datasets and runs go to ``DIR/work/`` and are removed at the end unless ``--keep-work``. Everything
in DIR is derived from the real recordings: never commit it (the README shows the table only).

    python -m evals realdata --data ../shared/data/real --out results/realdata
    python -m evals realdata --data ../shared/data/real --out results/rd --rows yasa vote --recordings dreams1 prerau
    python -m evals realdata --data ../shared/data/real --out results/rd --quick     # fewer training steps
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from psgvlm.stages import N_STAGES, STAGES, UNSCORED

REPO = Path(__file__).resolve().parents[2]  # a checkout: the LORO rows run its recipes/
RECIPES = REPO / "recipes"


class RowUnavailable(Exception):
    """A row cannot be computed here (an extra not installed, no checkout); the message says why."""


# ------------------------------------------------------------------------------------------------
# recordings
# ------------------------------------------------------------------------------------------------
@dataclass
class RealRecording:
    """One shared real recording, read, with the expert stages on the reader's grid."""

    key: str  # short id, --recordings (dreams1, ..., prerau, sleepedf)
    name: str  # shown in tables
    fmt: str  # reader (psgvlm.io.readers.READERS)
    path: Path
    hypnogram: Path
    pooled: bool  # in the pool and the LORO folds (False: a second copy of a pooled night)
    rec: object = None  # psgvlm.io.recording.Recording, read by load()

    @property
    def expert(self) -> np.ndarray:
        return np.asarray(self.rec.stages, dtype=np.int64)

    def load(self) -> RealRecording:
        from psgvlm.io.readers import read_recording

        self.rec = read_recording(self.fmt, self.path, hypnogram=self.hypnogram)
        return self


def find_recordings(data: Path) -> list[RealRecording]:
    """Every shared recording present under ``data`` (not read yet), in table order."""
    out = []
    dreams = data / "dreams_spindles"
    for n in range(1, 7):
        if (dreams / f"excerpt{n}.txt").is_file():
            out.append(RealRecording(f"dreams{n}", f"DREAMS {n}", "dreams", dreams / f"excerpt{n}.txt",
                                     dreams / f"Hypnogram_excerpt{n}.txt", True))
    if (data / "prerau" / "segment_data.csv").is_file():
        out.append(RealRecording("prerau", "Prerau", "prerau", data / "prerau" / "segment_data.csv",
                                 data / "prerau" / "segment_stages.csv", True))
    sedf = data / "sleepedf_crop"
    if (sedf / "short_psg.edf").is_file() and (sedf / "SC4001EC-Hypnogram.edf").is_file():
        out.append(RealRecording("sleepedf", "Sleep-EDF crop", "generic", sedf / "short_psg.edf",
                                 sedf / "SC4001EC-Hypnogram.edf", True))
    if (dreams / "excerpt3.edf").is_file():
        out.append(RealRecording("dreams3_edf", "DREAMS 3 (full-PSG EDF)", "dreams", dreams / "excerpt3.edf",
                                 dreams / "Hypnogram_excerpt3.txt", False))
    return out


# ------------------------------------------------------------------------------------------------
# what every row shares
# ------------------------------------------------------------------------------------------------
@dataclass
class Context:
    """The recordings, the options and what rows computed that other rows reuse."""

    recs: list[RealRecording]
    work: Path  # LORO datasets and runs
    quick: bool = False
    seed: int = 0
    vlm_runs: dict[str, Path] = field(default_factory=dict)  # extra VLM rows: name -> run dir
    wanted: list[str] = field(default_factory=list)  # the pretrained predictors asked for (rows)
    data: Path | None = None  # the --data folder (recorded in the folds' datasets)
    predicted: dict[str, dict] = field(default_factory=dict)  # recording key -> {predictor: Hypnodensity}
    failed: dict[str, dict] = field(default_factory=dict)  # recording key -> {predictor: reason}
    cache: dict = field(default_factory=dict)  # things several folds share (signal recordings, images)

    @property
    def pooled(self) -> list[RealRecording]:
        return [r for r in self.recs if r.pooled]

    def steps(self, full: int, quick: int) -> int:
        return quick if self.quick else full


def _predictor_outputs(ctx: Context, rec: RealRecording, name: str, run_dir=None):
    """The predictor ``name`` of ``psgvlm.night.predictors`` on ``rec`` (every pretrained one run once, cached)."""
    from psgvlm.night.predictors import PREDICTORS, PredictorOptions, run_predictors

    key = rec.key if run_dir is None else f"{rec.key}@{run_dir}"
    if key not in ctx.predicted:
        wanted = set(ctx.wanted) | {n for w in ctx.wanted for n in PREDICTORS[w].needs}
        names = [n for n in PREDICTORS if n in wanted] if run_dir is None else ["vlm"]
        opts = PredictorOptions(run_dir=run_dir, vlm=_vlm(ctx, run_dir))
        # the reader's grid (from rec.onset_s), so the epochs are the expert's; one process (the VLM is loaded here)
        ctx.predicted[key], ctx.failed[key], _ = run_predictors(rec.rec, rec.rec.n_epochs, names, opts, parallel=False)
    if name not in ctx.predicted[key]:
        raise RowUnavailable(ctx.failed[key].get(name, f"{name} did not run"))
    return ctx.predicted[key][name]


_LOADED: dict[str, object] = {}


def _vlm(ctx: Context, run_dir):
    """One loaded VLM predictor per run dir (the default run when ``run_dir`` is None)."""
    from psgvlm.night.stage import default_run
    from psgvlm.vlm.predict import load_predictor

    path = str(run_dir or default_run())
    if path not in _LOADED:
        _LOADED[path] = load_predictor(path)
    return _LOADED[path]


def _codes(hyp) -> np.ndarray:
    from psgvlm.night.predictors import stages_of

    return stages_of(hyp).astype(np.int64)


def _pretrained(name: str) -> Callable:
    """A row of one pretrained predictor of ``PREDICTORS``: every recording, nothing trained."""
    def row(ctx: Context) -> dict[str, np.ndarray]:
        out = {}
        for rec in ctx.recs:
            try:
                out[rec.key] = _codes(_predictor_outputs(ctx, rec, name))
            except RowUnavailable as err:
                if rec.pooled:
                    raise RowUnavailable(f"{rec.name}: {err}") from None
        return out
    return row


def _vlm_run_row(name: str, run_dir: Path) -> Callable:
    def row(ctx: Context) -> dict[str, np.ndarray]:
        return {rec.key: _codes(_predictor_outputs(ctx, rec, "vlm", run_dir)) for rec in ctx.recs}
    return row


# ------------------------------------------------------------------------------------------------
# leave-one-recording-out rows
# ------------------------------------------------------------------------------------------------
def _command(args: list, *, log: Path) -> None:
    """Run ``python <args>`` (one torch thread); its output goes to ``log``; a failure names the log."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as fh:
        proc = subprocess.run([sys.executable, *map(str, args)], cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT)
    if proc.returncode:
        tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-3:])
        raise RuntimeError(f"python {' '.join(map(str, args[:3]))} exited {proc.returncode} (log {log}): {tail}")


def _recipe(*args, log: Path) -> None:
    """``python recipes/<args>`` through :func:`_command`; RowUnavailable outside a checkout."""
    if not (RECIPES / args[0]).is_file():
        raise RowUnavailable(f"needs the recipes of a checkout ({RECIPES / args[0]} not found)")
    _command([RECIPES / args[0], *args[1:]], log=log)


def _read_fold(run_dir: Path, rec: RealRecording) -> np.ndarray:
    """A LORO run's test predictions of ``rec`` on its epoch grid (UNSCORED where it has none)."""
    from psgvlm.predictions import read_predictions

    pred = np.full(rec.rec.n_epochs, UNSCORED, dtype=np.int64)
    for r in read_predictions(run_dir / "predictions.jsonl"):
        if r["recording"] != rec.key:
            raise RuntimeError(f"{run_dir}: test predictions of {r['recording']!r}, expected only {rec.key!r}")
        k = int(r["epoch"])
        if r["label"] is not None and r["label"] != UNSCORED and r["label"] != rec.expert[k]:
            raise RuntimeError(f"{run_dir}: epoch {k} of {rec.key} labelled {r['label']}, the reader says "
                               f"{rec.expert[k]}: the fold's epochs are not the expert's")
        if r["pred"] >= 0:
            pred[k] = int(r["pred"])
    return pred


def _loro(ctx: Context, row: str, train: Callable) -> dict[str, np.ndarray]:
    """``train(fold_dir, train_keys, test_key) -> run dir`` once per pooled recording; its test predictions."""
    from tqdm.auto import tqdm

    keys = [r.key for r in ctx.pooled]
    if len(keys) < 2:
        raise RowUnavailable(f"leave-one-recording-out needs two recordings or more; have {keys}")
    out = {}
    for rec in tqdm(ctx.pooled, desc=f"{row} LORO", unit="fold"):
        fold = ctx.work / row / rec.key
        if fold.exists():  # a previous scorecard's fold: never resumed
            shutil.rmtree(fold)
        out[rec.key] = _read_fold(train(fold, [k for k in keys if k != rec.key], rec.key), rec)
    return out


def _loro_split(train: list[str], test: str) -> dict:
    return {"kind": "leave-one-recording-out", "train": sorted(train), "validation": [], "test": [test]}


def _signal_recordings(ctx: Context) -> list:
    """Each pooled recording's best EEG channel (the one channel-picking rule) as a signal recording.

    The channel is named ``EEG`` in every recording (C3, Cz, Fpz-Cz, ... are one input to the models);
    subject and recording ids are the recording keys (each recording is a different subject).
    """
    if "signal" not in ctx.cache:
        from psgvlm.baselines.signal_data import recording_to_signal
        from psgvlm.io.channels import rank_channels

        ctx.cache["signal"] = []
        for r in ctx.pooled:
            eeg = rank_channels(r.rec.channels, "EEG")
            if not eeg:
                raise RowUnavailable(f"{r.name} has no EEG channel")
            sig = recording_to_signal(r.rec, channels=[eeg[0]])
            ctx.cache["signal"].append(replace(sig, subject=r.key, recording=r.key, x={"EEG": sig.x[eeg[0]]},
                                       modalities={"EEG": "EEG"}, sfreq={"EEG": sig.sfreq[eeg[0]]},
                                       meta={**sig.meta, "channel": eeg[0]}))
    return ctx.cache["signal"]


def _signal_fold(ctx: Context, fold: Path, train: list[str], test: str) -> Path:
    from psgvlm.baselines.signal_data import save_signal_dataset

    return save_signal_dataset(_signal_recordings(ctx), fold / "signal", split=_loro_split(train, test), overwrite=True,
                               extra={"input": {"format": "realdata", "path": str(ctx.data), "channels": ["EEG"]}})


def _sdreamer(ctx: Context) -> dict[str, np.ndarray]:
    def train(fold, train_keys, test):
        data = _signal_fold(ctx, fold, train_keys, test)
        # EEG only (most real recordings have no EMG); K = 10 epochs so the 10-epoch Sleep-EDF crop is one window
        _recipe("sdreamer.py", "--config", RECIPES / "configs" / "sdreamer_tiny.yaml", "--signal_data", data,
                "--modalities", "EEG", "--seq_len", 10, "--max_steps", ctx.steps(300, 40), "--eval_every", 0,
                "--threads", 1, "--seed", ctx.seed, "--output_dir", fold / "sdreamer", log=fold / "sdreamer.log")
        return fold / "sdreamer"
    return _loro(ctx, "sdreamer", train)


def _sleep2vec_backbone(ctx: Context) -> Path:
    """sleep2vec pre-trained once on synthetic nights (EEG, EOG, EMG), shared by every fold.

    Its contrastive pre-training pairs two modalities of one night, and the real recordings give
    one EEG channel: the backbone learns from synthetic nights (``psgvlm synth``), which hold no real
    recording, so no fold sees its test night before fine-tuning.
    """
    pre = ctx.work / "sleep2vec" / "pretrained_synthetic"
    if not (pre / "model.pt").is_file():
        synth = ctx.work / "sleep2vec" / "synthetic_nights"
        _command(["-m", "psgvlm.cli", "synth", "--format", "isruc", "--subjects", 4, "--minutes", ctx.steps(60, 20),
                  "--seed", ctx.seed, "--out", synth], log=synth.parent / "synth.log")
        _recipe("sleep2vec_pretrain.py", "--config", RECIPES / "configs" / "sleep2vec_tiny_pretrain.yaml",
                "--signal_data", synth.parent / "synthetic_signal", "--format", "isruc", "--input", synth,
                "--max_steps", ctx.steps(300, 30), "--eval_every", 0, "--threads", 1, "--seed", ctx.seed,
                "--output_dir", pre, log=synth.parent / "pretrain.log")
    return pre


def _sleep2vec(ctx: Context) -> dict[str, np.ndarray]:
    def train(fold, train_keys, test):
        data = _signal_fold(ctx, fold, train_keys, test)
        _recipe("sleep2vec_finetune.py", "--config", RECIPES / "configs" / "sleep2vec_tiny_finetune.yaml",
                "--signal_data", data, "--pretrained", _sleep2vec_backbone(ctx), "--modalities", "EEG",
                "--eval_subsets", "EEG", "--max_steps", ctx.steps(300, 40), "--eval_every", 0, "--threads", 1,
                "--seed", ctx.seed, "--output_dir", fold / "s2v_ft", log=fold / "s2v_ft.log")
        return fold / "s2v_ft"
    return _loro(ctx, "sleep2vec", train)


def _vlm_images(ctx: Context) -> dict[str, dict]:
    """Each pooled recording's scored epochs rendered as ``psgvlm stage`` renders them for the default run.

    Same bands, channel choice (the one channel-picking rule, missing bands flat), scaling and
    renderer settings as the embedded default's images of the ``vlm`` row; ``{key: {"png", "epoch",
    "label", "start_s", "channels"}}`` with PNG bytes per epoch.
    """
    if "vlm_images" not in ctx.cache:
        import io

        from PIL import Image

        from psgvlm.image.renderer import RenderSettings, render_epoch
        from psgvlm.night.bands import resolve_channel_map
        from psgvlm.night.grid import band_epochs
        from psgvlm.night.stage import render_settings, run_channels

        dmeta = _vlm(ctx, None).dataset_meta
        bands, modalities, sfreq = run_channels(dmeta)
        settings = RenderSettings.from_dict(render_settings(dmeta))
        out = {}
        for r in ctx.pooled:
            mapping = resolve_channel_map(r.rec, bands, modalities, None)
            x, starts_s, _, _ = band_epochs(r.rec, mapping, sfreq, settings)
            keep = [k for k in range(min(len(x), r.rec.n_epochs)) if r.expert[k] != UNSCORED]
            pngs = []
            for k in keep:
                buf = io.BytesIO()
                Image.fromarray(render_epoch(x[k], settings)).save(buf, format="PNG")
                pngs.append(buf.getvalue())
            out[r.key] = {"png": pngs, "epoch": keep, "label": [int(r.expert[k]) for k in keep],
                          "start_s": [float(starts_s[k]) for k in keep],
                          "channels": ",".join(m or "-" for m in mapping), "dataset": r.fmt}
        ctx.cache["vlm_images"] = out
    return ctx.cache["vlm_images"]


def _vlm_fold(ctx: Context, path: Path, split: dict) -> Path:
    """An image dataset (the ``psgvlm render`` layout) of the folds' recordings; meta from the default run's."""
    import datasets

    from psgvlm.image.dataset import features
    from psgvlm.provenance import provenance, write_json_atomic

    images = _vlm_images(ctx)
    dsd, counts = {}, {}
    for name in ("train", "validation", "test"):
        cols = {k: [] for k in ("image", "label", "stage", "subject", "recording", "epoch", "start_s", "dataset",
                                "channels")}
        for key in split[name]:
            im = images[key]
            n = len(im["png"])
            cols["image"] += [{"bytes": b, "path": None} for b in im["png"]]
            cols["label"] += im["label"]
            cols["stage"] += [STAGES[y] for y in im["label"]]
            cols["subject"] += [key] * n
            cols["recording"] += [key] * n
            cols["epoch"] += im["epoch"]
            cols["start_s"] += im["start_s"]
            cols["dataset"] += [im["dataset"]] * n
            cols["channels"] += [im["channels"]] * n
        dsd[name] = datasets.Dataset.from_dict(cols, features=features())
        counts[name] = {**{s: cols["label"].count(i) for i, s in enumerate(STAGES)},
                        "n_subjects": len(split[name]), "n_epochs": len(cols["label"])}
    datasets.DatasetDict(dsd).save_to_disk(str(path))
    dmeta = _vlm(ctx, None).dataset_meta
    keep = ("kind", "version", "settings", "channels", "modalities", "sfreq", "epoch_s", "size")
    write_json_atomic(path / "meta.json", {**{k: dmeta[k] for k in keep if k in dmeta}, "format": "realdata",
                                           "split": split, "counts": counts, "labelled": True,
                                           "input": {"path": str(ctx.data), "hypnogram": None},
                                           "provenance": provenance()})
    return path


def _vlm_start(ctx: Context) -> Path:
    """The embedded default run's model with its LoRA merged in: where each fold's fresh LoRA starts."""
    start = ctx.work / "vlm_tiny" / "start"
    if not (start / "config.json").is_file():
        from peft import PeftModel

        from psgvlm.night.stage import default_run
        from psgvlm.vlm.model import load_model

        run = default_run()
        model, processor = load_model(str(run / "base_model"), dtype="float32")
        model = PeftModel.from_pretrained(model, str(run / "adapter")).merge_and_unload()
        model.save_pretrained(start)
        processor.save_pretrained(start)
    return start


def _vlm_tiny(ctx: Context) -> dict[str, np.ndarray]:
    keys = [r.key for r in ctx.pooled]

    def train(fold, train_keys, test):
        # validation (the recipe's checkpoint choice): the next recording after the test one, out of training
        val = keys[(keys.index(test) + 1) % len(keys)]
        split = {"kind": "leave-one-recording-out", "train": [k for k in train_keys if k != val],
                 "validation": [val], "test": [test]}
        data = _vlm_fold(ctx, fold / "images", split)
        _recipe("llava_isruc.py", "--config", RECIPES / "configs" / "llava_tiny_cpu.yaml", "--dataset", data,
                "--model", _vlm_start(ctx), "--num_train_epochs", ctx.steps(3, 1), "--max_steps", ctx.steps(0, 5),
                "--predict_splits", "test", "--seed", ctx.seed, "--output_dir", fold / "run", log=fold / "llava.log")
        return fold / "run"
    if len(keys) < 3:
        raise RowUnavailable(f"the tiny VLM's folds need three recordings or more (train, validation, test); have {keys}")
    return _loro(ctx, "vlm_tiny", train)


def _reference_streams(ctx: Context) -> dict[str, list[Path]]:
    """YASA and GSSC run dirs over the pooled recordings, as ``psgvlm reference`` writes them (NAP's input).

    ``{corpus: [run dirs]}``, a run dir per predictor and corpus (per recording when only some of a
    corpus's recordings are chosen); the streams per EEG channel are in each run's ``channels/``.
    """
    from psgvlm.night.predictors import PREDICTORS

    if "streams" not in ctx.cache:
        missing = {n: PREDICTORS[n].missing() for n in NAP_STREAMS if PREDICTORS[n].missing()}
        if missing:
            raise RowUnavailable("NAP fuses " + " and ".join(NAP_STREAMS) + ": " + "; ".join(f"{k}: {v}" for k, v in missing.items()))
        corpora: dict[str, list[RealRecording]] = {}
        for r in ctx.pooled:
            corpora.setdefault(r.fmt if r.fmt != "generic" else r.key, []).append(r)
        out: dict[str, list] = {}
        for corpus, recs in corpora.items():
            from psgvlm.io.readers import find_recordings as reader_finds

            folder = recs[0].path.parent
            whole = recs[0].fmt != "generic" and len(reader_finds(recs[0].fmt, folder)) == len(recs)
            jobs = [(corpus, ["--input", folder])] if whole else [
                (r.key, ["--input", r.path] + (["--hypnogram", r.hypnogram] if r.fmt == "generic" else [])) for r in recs]
            for name in NAP_STREAMS:
                for tag, inputs in jobs:
                    run = ctx.work / "nap" / "streams" / f"{name}_{tag}"
                    _command(["-m", "psgvlm.cli", "reference", "--predictor", name, "--format", recs[0].fmt, *inputs,
                              "--out", run], log=run.with_suffix(".log"))
                    out.setdefault(corpus, []).append((name, run))
        ctx.cache["streams"] = out
    return ctx.cache["streams"]


def _nap_predictions(ctx: Context, run_dir: Path, recs: list[RealRecording]) -> dict[str, np.ndarray]:
    """NAP's out-of-fold ``predictions.jsonl`` of ``recs`` (matched by the reader's recording id)."""
    from psgvlm.predictions import read_predictions

    by_id = {(r.rec.dataset, str(r.rec.recording)): r for r in recs}
    out = {r.key: np.full(r.rec.n_epochs, UNSCORED, dtype=np.int64) for r in recs}
    for row in read_predictions(run_dir / "predictions.jsonl"):
        rec = by_id.get((row["dataset"], row["recording"]))
        if rec is None:
            raise RuntimeError(f"{run_dir}: predictions of {row['dataset']}/{row['recording']}, not a chosen recording")
        if row["pred"] >= 0:
            out[rec.key][int(row["epoch"])] = int(row["pred"])
    return out


def _nap_args(ctx: Context) -> list:
    return ["--max_steps", ctx.steps(400, 30), "--eval_every", 0, "--threads", 1, "--seed", ctx.seed]


def _nap_loro(ctx: Context) -> dict[str, np.ndarray]:
    """NAP over YASA + GSSC streams, leave one recording out (the loro protocol of ``recipes/nap.py``)."""
    streams = [f"{name}={run}" for runs in _reference_streams(ctx).values() for name, run in runs]
    out = ctx.work / "nap" / "loro"
    _recipe("nap.py", "--protocol", "loro", "--predictors", *streams, *_nap_args(ctx), "--output_dir", out,
            log=out.with_suffix(".log"))
    return _nap_predictions(ctx, out, ctx.pooled)


def _nap_zero_shot(ctx: Context) -> dict[str, np.ndarray]:
    """NAP over YASA + GSSC streams, leave one corpus out: trained on the other corpora (the zero_shot protocol)."""
    corpora = _reference_streams(ctx)
    if len(corpora) < 2:
        raise RowUnavailable(f"zero-shot NAP needs two corpora or more; have {list(corpora)}")
    preds = {}
    for corpus, runs in corpora.items():
        train = [f"{name}={run}" for c, rs in corpora.items() if c != corpus for name, run in rs]
        out = ctx.work / "nap" / f"zero_shot_{corpus}"
        _recipe("nap.py", "--protocol", "zero_shot", "--train_predictors", *train,
                "--predictors", *[f"{name}={run}" for name, run in runs], *_nap_args(ctx), "--output_dir", out,
                log=out.with_suffix(".log"))
        tested = [r for r in ctx.pooled if (r.fmt if r.fmt != "generic" else r.key) == corpus]
        preds.update(_nap_predictions(ctx, out, tested))
    return preds


NAP_STREAMS = ("yasa", "gssc")  # the frozen stagers whose per-channel streams NAP fuses


# Literal registry: row name -> (protocol, what it is, how its predictions are made). The pretrained
# predictors are the entries of psgvlm.night.predictors.PREDICTORS of the same name.
ROWS: dict[str, tuple[str, str, Callable]] = {
    "vlm": ("pretrained", "embedded default VLM (synthetic nights only)", _pretrained("vlm")),
    "yasa": ("pretrained", "YASA LightGBM stager", _pretrained("yasa")),
    "gssc": ("pretrained", "GSSC ResNet + GRU (psgvlm[gssc])", _pretrained("gssc")),
    "vote": ("pretrained", "soft vote of YASA and GSSC", _pretrained("vote")),
    "sdreamer": ("LORO", "sDREAMER, tiny, EEG", _sdreamer),
    "sleep2vec": ("LORO", "sleep2vec, tiny, pre-trained on synthetic nights, fine-tuned on EEG", _sleep2vec),
    "nap_loro": ("LORO", "NAP over YASA + GSSC per-channel streams (recipes/nap.py --protocol loro)", _nap_loro),
    "nap_zero_shot": ("zero-shot", "NAP over YASA + GSSC streams trained on the other corpora, leave one corpus out",
                      _nap_zero_shot),
    "vlm_tiny": ("LORO", "the embedded default VLM + a fresh LoRA fine-tuned on rendered real epochs", _vlm_tiny),
}


# ------------------------------------------------------------------------------------------------
# scoring and tables
# ------------------------------------------------------------------------------------------------
def epoch_rows(row: str, rec: RealRecording, pred: np.ndarray) -> list[dict]:
    """Per epoch with an expert stage: the predictions schema, an unscored prediction made a wrong stage.

    The unscored prediction becomes ``(expert + 1) % 5``: wrong whatever the truth, so a predictor
    that leaves epochs out is not scored on the easy ones only; ``unscored`` marks those rows.
    """
    expert = rec.expert
    if len(pred) != len(expert):
        raise RuntimeError(f"{row} gave {len(pred)} epochs for {rec.name}, the expert {len(expert)}")
    starts = rec.rec.onset_s + np.arange(len(expert)) * rec.rec.epoch_s
    return [{"row": row, "dataset": rec.fmt, "subject": rec.key, "recording": rec.key, "epoch": k,
             "start_s": float(starts[k]), "label": int(e),
             "pred": int((e + 1) % N_STAGES if p == UNSCORED else p), "unscored": bool(p == UNSCORED),
             "probs": None}
            for k, (e, p) in enumerate(zip(expert, pred)) if e != UNSCORED]


def score_row(rows_by_rec: dict[str, list[dict]], pooled: list[str], *, n_boot: int, seed: int, metric) -> dict:
    """Pooled metrics with recording-bootstrap CIs (``score_rows`` of the metrics suite) and per recording."""
    from .metrics import score_rows

    rows = [r for k in pooled if k in rows_by_rec for r in rows_by_rec[k]]
    scores = score_rows(rows, n_boot=n_boot, seed=seed, metric=metric)
    per_rec = {}
    for key, rs in rows_by_rec.items():
        m = score_rows(rs, n_boot=1, seed=seed, metric=metric)["pooled"]
        per_rec[key] = {**{k: m[k] for k in ("accuracy", "kappa", "macro_f1", "per_class_f1", "confusion")},
                        "n_epochs": len(rs), "n_unscored_pred": sum(r["unscored"] for r in rs)}
    # DREAMS alone too: the synthetic generator's spectra were compared with the Prerau recording, which is
    # therefore no clean held-out test for the synthetic-trained VLM; DREAMS never was.
    dreams = [r for k in pooled if k.startswith("dreams") and k in rows_by_rec for r in rows_by_rec[k]]
    m = score_rows(dreams, n_boot=1, seed=seed, metric=metric)["pooled"] if dreams else None
    return {"pooled": {k: scores["pooled"][k] for k in ("accuracy", "kappa", "macro_f1", "balanced_accuracy",
                                                         "per_class_f1", "confusion")},
            "ci": scores["ci"], "n_epochs": len(rows), "n_unscored_pred": sum(r["unscored"] for r in rows),
            "recordings": per_rec,
            "pooled_dreams": None if m is None else {"n_epochs": len(dreams), "accuracy": m["accuracy"],
                                                     "kappa": m["kappa"], "macro_f1": m["macro_f1"]}}


def _f(x, digits: int = 2) -> str:
    return "–" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{digits}f}"


def _with_ci(value, ci) -> str:
    return f"{_f(value)} [{_f(ci[0])}, {_f(ci[1])}]"


def markdown(results: dict, recs: list[RealRecording]) -> str:
    """The scorecard tables: pooled figures per row, then kappa / accuracy per recording."""
    rows, skipped = results["rows"], results["not_run"]
    pool = [r for r in recs if r.pooled]
    n = max((v["n_epochs"] for v in rows.values()), default=0)
    lines = [f"Pooled over {', '.join(r.name for r in pool)} ({n} expert epochs); 95% CIs from "
             f"{results['config']['n_boot']} recording-bootstrap resamples.", "",
             "| predictor | protocol | epochs | accuracy | kappa | macro-F1 | " + " | ".join(f"F1 {s}" for s in STAGES)
             + " | kappa, DREAMS 1-6 |",
             "|---|---|---|---|---|---|" + "---|" * (N_STAGES + 1)]
    for name, v in rows.items():
        p, ci, dreams = v["pooled"], v["ci"], v["pooled_dreams"]
        lines.append(f"| {name} | {v['protocol']} | {v['n_epochs']} | {_with_ci(p['accuracy'], ci['accuracy'])} | "
                     f"{_with_ci(p['kappa'], ci['kappa'])} | {_with_ci(p['macro_f1'], ci['macro_f1'])} | "
                     + " | ".join(_f(p["per_class_f1"][s]) for s in STAGES)
                     + f" | {_f(None if dreams is None else dreams['kappa'])} |")
    shown = [r for r in recs if any(r.key in v["recordings"] for v in rows.values())]
    lines += ["", "Kappa / accuracy per recording:", "",
              "| predictor | " + " | ".join(f"{r.name} ({len([e for e in r.expert if e != UNSCORED])})" for r in shown) + " |",
              "|---|" + "---|" * len(shown)]
    for name, v in rows.items():
        cells = [(lambda m: f"{_f(m['kappa'])} / {_f(m['accuracy'])}")(v["recordings"][r.key])
                 if r.key in v["recordings"] else "" for r in shown]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Rows: " + "; ".join(f"`{k}`: {v['describe']}" for k, v in rows.items()) + "."]
    if skipped:
        lines += ["", "Not run: " + "; ".join(f"`{k}`: {v}" for k, v in skipped.items()) + "."]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m evals realdata", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="the shared real recordings (../shared/data/real)")
    ap.add_argument("--out", required=True, help="results dir: scorecard.md, scorecard.json, samples.jsonl")
    ap.add_argument("--rows", nargs="+", metavar="ROW", help=f"rows to compute, of {list(ROWS)} (default: all)")
    ap.add_argument("--recordings", nargs="+", metavar="KEY",
                    help="recordings to use, of dreams1..dreams6, prerau, sleepedf, dreams3_edf (default: all present)")
    ap.add_argument("--vlm-run", action="append", default=[], metavar="NAME=DIR",
                    help="another VLM run to score as the default is (a row vlm:NAME), repeatable")
    ap.add_argument("--quick", action="store_true", help="LORO rows with a few training steps (a smoke test)")
    ap.add_argument("--n-boot", type=int, default=1000, help="recording-bootstrap resamples (default 1000)")
    ap.add_argument("--seed", type=int, default=0, help="seed of training and the bootstrap (default 0)")
    ap.add_argument("--keep-work", action="store_true", help="keep the LORO folds' datasets and runs in OUT/work")
    ap.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return ap


def _fail(message) -> int:
    print(f"evals realdata: {' '.join(str(message).split())}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    data, out = Path(args.data), Path(args.out)
    if not data.is_dir():
        return _fail(f"--data {str(data)!r} is not a folder: the shared real recordings are absent "
                     "(see ../shared/data/real/README.md); nothing to score")
    bad = [r for r in args.rows or [] if r not in ROWS]
    if bad:
        return _fail(f"--rows {bad} not allowed; choose from {list(ROWS)}")
    runs = {}
    for spec in args.vlm_run:
        name, sep, path = spec.partition("=")
        if not sep or not name or not (Path(path) / "meta.json").is_file():
            return _fail(f"--vlm-run {spec!r}: give NAME=DIR with DIR a VLM run directory (holding meta.json)")
        runs[name] = Path(path)
    if args.n_boot < 1:
        return _fail(f"--n-boot {args.n_boot} must be >= 1")
    if out.exists() and not out.is_dir():
        return _fail(f"--out {str(out)!r} exists and is not a folder")
    recs = find_recordings(data)
    if args.recordings:
        unknown = sorted(set(args.recordings) - {r.key for r in recs})
        if unknown:
            return _fail(f"--recordings {unknown} not under {data}; present: {[r.key for r in recs]}")
        recs = [r for r in recs if r.key in args.recordings]
    if not any(r.pooled for r in recs):
        return _fail(f"none of the expected recordings (DREAMS excerpts, Prerau, Sleep-EDF crop) is under {data}")
    try:
        run_scorecard(recs, out, rows=args.rows or list(ROWS), vlm_runs=runs, quick=args.quick,
                      n_boot=args.n_boot, seed=args.seed, keep_work=args.keep_work, data=data)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        if args.debug:
            raise
        return _fail(err)
    print((out / "scorecard.md").read_text())
    print(f"wrote {out / 'scorecard.md'}, {out / 'scorecard.json'}")
    return 0


def run_scorecard(recs: list[RealRecording], out: Path, *, rows: list[str], vlm_runs: dict | None = None,
                  quick: bool = False, n_boot: int = 1000, seed: int = 0, keep_work: bool = False,
                  data: Path | None = None) -> dict:
    """Compute ``rows`` on ``recs``; write scorecard.md, scorecard.json and samples.jsonl into ``out``."""
    import json

    from psgvlm.provenance import provenance, write_json_atomic, write_text_atomic

    from ..metrics import load_sleep_staging

    out.mkdir(parents=True, exist_ok=True)
    for r in recs:
        r.load()
    from psgvlm.night.predictors import PREDICTORS

    ctx = Context(recs=recs, work=out / "work", quick=quick, seed=seed, vlm_runs=dict(vlm_runs or {}),
                  wanted=[n for n in rows if n in PREDICTORS], data=data)
    table = {name: ROWS[name] for name in ROWS if name in rows}
    for name, run_dir in ctx.vlm_runs.items():
        table[f"vlm:{name}"] = ("pretrained", f"VLM run {run_dir}", _vlm_run_row(name, run_dir))
    metric = load_sleep_staging()
    pooled = [r.key for r in ctx.pooled]
    results: dict = {"rows": {}, "not_run": {}, "seconds": {}}
    samples: list[dict] = []
    for name, (protocol, describe, fn) in table.items():
        t0 = time.perf_counter()
        print(f"realdata: {name} ({protocol}) ...", file=sys.stderr, flush=True)
        try:
            preds = fn(ctx)
        except RowUnavailable as err:
            results["not_run"][name] = " ".join(str(err).split())
            print(f"realdata: {name} not run: {results['not_run'][name]}", file=sys.stderr)
            continue
        by_rec = {r.key: epoch_rows(name, r, preds[r.key]) for r in recs if r.key in preds}
        results["rows"][name] = {"protocol": protocol, "describe": describe,
                                 **score_row(by_rec, pooled, n_boot=n_boot, seed=seed, metric=metric)}
        results["seconds"][name] = round(time.perf_counter() - t0, 1)
        samples += [s for rs in by_rec.values() for s in rs]
    if not results["rows"]:
        raise RuntimeError("no row could be computed: " + "; ".join(f"{k}: {v}" for k, v in results["not_run"].items()))
    results["recordings"] = {r.key: {"name": r.name, "format": r.fmt, "path": str(r.path), "pooled": r.pooled,
                                     "n_epochs": int(r.rec.n_epochs), "n_expert": int((r.expert != UNSCORED).sum()),
                                     "expert": {s: int((r.expert == i).sum()) for i, s in enumerate(STAGES)}}
                             for r in recs}
    results["config"] = {"data": None if data is None else str(data), "rows": list(table), "quick": quick,
                         "n_boot": n_boot, "seed": seed, "vlm_runs": {k: str(v) for k, v in ctx.vlm_runs.items()}}
    write_text_atomic(out / "scorecard.md", markdown(results, recs))
    write_json_atomic(out / "scorecard.json", {"suite": "realdata", **results, "provenance": provenance()})
    write_text_atomic(out / "samples.jsonl", "".join(json.dumps(s) + "\n" for s in samples))
    if not keep_work and ctx.work.exists():
        shutil.rmtree(ctx.work)
    return results
