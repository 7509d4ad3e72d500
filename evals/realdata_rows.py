"""How each row of the real-data scorecard (:mod:`evals.suites.realdata`) gets its predictions.

The shared real recordings (:func:`find_recordings`), and one function per kind of row: the pretrained
predictors run by ``psgvlm stage``'s registry (:func:`pretrained_row`, :func:`vlm_run_row`), the models
trained leave-one-recording-out through the recipes as subprocesses (:func:`sdreamer_loro`,
:func:`sleep2vec_loro`, :func:`vlm_tiny_loro`) and NAP over YASA's and GSSC's per-channel streams
(:func:`nap_loro`, :func:`nap_zero_shot`). Each takes a :class:`Context` and returns, per recording key,
the predicted stage of each expert epoch (``UNSCORED`` where none), or raises :class:`RowUnavailable`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from psgvlm.stages import STAGES, UNSCORED

REPO = Path(__file__).resolve().parents[1]  # a checkout: the LORO rows run its recipes/
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


def pretrained_row(name: str) -> Callable:
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


def vlm_run_row(name: str, run_dir: Path) -> Callable:
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


def sdreamer_loro(ctx: Context) -> dict[str, np.ndarray]:
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


def sleep2vec_loro(ctx: Context) -> dict[str, np.ndarray]:
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


def vlm_tiny_loro(ctx: Context) -> dict[str, np.ndarray]:
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


def nap_loro(ctx: Context) -> dict[str, np.ndarray]:
    """NAP over YASA + GSSC streams, leave one recording out (the loro protocol of ``recipes/nap.py``)."""
    streams = [f"{name}={run}" for runs in _reference_streams(ctx).values() for name, run in runs]
    out = ctx.work / "nap" / "loro"
    _recipe("nap.py", "--protocol", "loro", "--predictors", *streams, *_nap_args(ctx), "--output_dir", out,
            log=out.with_suffix(".log"))
    return _nap_predictions(ctx, out, ctx.pooled)


def nap_zero_shot(ctx: Context) -> dict[str, np.ndarray]:
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
