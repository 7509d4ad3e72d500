"""Stage one recording end to end: read, render every epoch, score it with a run, write the night.

    psgvlm stage --edf night.edf --out out/night
    psgvlm stage --edf SC4001E0-PSG.edf --hypnogram SC4001EC-Hypnogram.edf --run runs/llava_isruc --out out/sc4001
    psgvlm stage --edf night.edf --channels C3 C4 LOC ROC EMG --out out/night

What it writes in ``--out`` (:mod:`psgvlm.night.outputs`):

- ``hypnogram.tsv``: ``init_sec  duration_sec  stage`` one row per 30-s epoch (U-Sleep's layout).
- ``hypnogram.csv``: ``epoch, start_s, stage, confidence, p_W, p_N1, p_N2, p_N3, p_REM`` (and
  ``expert`` when a hypnogram was given), as YASA users tabulate ``predict_proba``.
- ``hypnodensity.npy``: float32 (n_epochs, 5) stage probabilities, columns W, N1, N2, N3, REM.
- ``hypnogram_annotations.edf``: EDF+ annotations ("Sleep stage W/N1/N2/N3/R", one per epoch) that
  EDFbrowser or ``mne.read_annotations`` opens beside the recording.
- ``hypnogram.png``: predicted hypnogram (and the expert one below it) plus the hypnodensity.
- ``summary.json``: sleep statistics (:mod:`psgvlm.night.sleepstats`) of the prediction (and of the expert
  hypnogram), agreement metrics when a hypnogram was given, the channel mapping, the model and its
  provenance, and the notice that says what the model is (e.g. trained on synthetic recordings, not
  for clinical use), signal warnings (e.g. a channel upsampled to the model's rate), timings and
  provenance. Patient-identifying header fields (name, birth date, hospital code) are never copied:
  only signal facts (rates, durations, channel labels) and a SHA-256 of the input file.
- ``metrics.json``: agreement with the expert hypnogram (:func:`psgvlm.metrics.stage_metrics`), when
  one was given.

The staged span is always the whole recording: 30-s epochs from signal time 0 to the last whole
epoch, whatever part of the night an expert hypnogram covers. Expert labels are placed on that grid by
time (:mod:`psgvlm.night.grid`); staged epochs without a label count as unscored in the agreement, and
labels outside the recording are reported as unmatched (console and ``summary.json`` ``checks.expert``).
An epoch in which every mapped EEG channel is flat (constant, zero or not finite) is not scored: its
stage is ``UNS`` (``Sleep stage ?`` in the EDF+ annotations, probabilities 0), it counts in time in bed
but never as sleep, and the count is a warning; a recording whose EEG is flat in every epoch is refused.
A reused ``--out`` keeps no file of the previous run (:func:`psgvlm.night.outputs.write_outputs`).
Bad input (a file, a value) exits with code 2 and one line naming it; ``--debug`` shows the traceback.

Channels: the run's image has one band per channel of the dataset it was trained on (its
``meta.json`` channel order). Each band is filled with the recording's channel of the same canonical
name, else with the best unused channel of the same modality by the one channel-picking rule
(:func:`psgvlm.io.channels.rank_channels`: EEG central first, then frontal, then occipital), else
left flat and reported. ``--channels`` gives the recording's channels band by band instead (``-``
leaves a band flat).

Modules of :mod:`psgvlm.night`: this one (read, map channels onto the run's bands, render and score
every epoch, the CLI), :mod:`~psgvlm.night.grid` (the epochs cut, expert labels placed on them, flat
epochs), :mod:`~psgvlm.night.outputs` (the files above), :mod:`~psgvlm.night.viewer`
(re-render one epoch, attribution overlay), :mod:`~psgvlm.night.sleepstats`,
:mod:`~psgvlm.night.uploads` (upload checks) and :mod:`~psgvlm.night.sessions` (the app's per-session
folders).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from psgvlm.provenance import read_json
from psgvlm.stages import EPOCH_S, N_STAGES, UNSCORED

SYNTHETIC_NOTICE = ("Default model: a small model trained only on synthetic recordings. It demonstrates "
                    "the pipeline; its stages are not accurate on real sleep and it is not for clinical use.")
RUN_NOTICE = "Research software, not a medical device: not for clinical use."
EMPTY_BAND = "-"  # --channels value that leaves a band flat


# ------------------------------------------------------------------------------------------------
# Model
# ------------------------------------------------------------------------------------------------
def default_run() -> Path:
    """The embedded default run (``psgvlm.vlm.predict.DEFAULT_RUN``)."""
    from psgvlm.vlm.predict import DEFAULT_RUN

    return Path(DEFAULT_RUN)


def model_info(run_dir) -> dict:
    """What model scored the night: run name, kind, training data, provenance and the notice."""
    run_dir = Path(run_dir)
    meta_path = run_dir / "meta.json"
    meta = read_json(meta_path) if meta_path.is_file() else {}
    is_default = run_dir.resolve() == default_run().resolve()
    notice = meta.get("notice") or (SYNTHETIC_NOTICE if is_default else RUN_NOTICE)
    dataset = meta.get("dataset") or meta.get("dataset_meta") or {}
    return {
        "run": "default (embedded)" if is_default else run_dir.name,
        "kind": meta.get("kind"),
        "is_default": is_default,
        "trained_on": dataset.get("input") if isinstance(dataset, dict) else None,
        "recipe": meta.get("recipe") or (meta.get("config") or {}).get("recipe"),
        "provenance": meta.get("provenance"),
        "notice": notice,
    }


# ------------------------------------------------------------------------------------------------
# Channels
# ------------------------------------------------------------------------------------------------
def run_channels(dataset_meta: dict) -> tuple[list[str], dict[str, str], float]:
    """(band channel order, modality per band, target rate Hz) of a run's training dataset."""
    channels = list(dataset_meta.get("channels") or [])
    if not channels:
        raise ValueError("the run's dataset meta lists no channels; cannot map a recording onto its bands")
    modalities = dict(dataset_meta.get("modalities") or {})
    sfreq = float(dataset_meta.get("sfreq") or (dataset_meta.get("settings") or {}).get("sfreq") or 0)
    if not sfreq > 0:
        raise ValueError(f"the run's dataset meta gives sampling rate {dataset_meta.get('sfreq')!r}; need > 0 Hz")
    return channels, modalities, sfreq


def render_settings(dataset_meta: dict) -> dict:
    """The renderer settings a run's images were drawn with (``meta["settings"]["render"]``)."""
    settings = dataset_meta.get("settings") or {}
    render = settings.get("render")
    if render is None:
        raise ValueError("the run's dataset meta has no settings.render; cannot draw images like its training data")
    return render


def _band_modality(band: str, modalities: dict[str, str]) -> str:
    if band in modalities:
        return modalities[band]
    from psgvlm.io.channels import lookup

    return lookup(band)[1]


def auto_channels(rec, bands: list[str], modalities: dict[str, str]) -> list[str | None]:
    """The recording's channel (canonical name) for each band, or None for a band left flat.

    Same canonical name first (sampled at >= 50 Hz); then the best unused channel of the band's
    modality by :func:`psgvlm.io.channels.rank_channels` (EEG central, then frontal, then occipital;
    EOG LOC, ROC first).
    """
    from psgvlm.io.channels import MIN_AUTO_SFREQ, rank_channels

    out: list[str | None] = [None] * len(bands)
    for i, band in enumerate(bands):
        if band in rec.ch_names and rec.channel(band).sfreq >= MIN_AUTO_SFREQ:
            out[i] = band
    used = {m for m in out if m is not None}
    for i, band in enumerate(bands):
        if out[i] is None:
            candidates = rank_channels(rec.channels, _band_modality(band, modalities), exclude=used)
            if candidates:
                out[i] = candidates[0]
                used.add(candidates[0])
    return out


def propose_channels(header, bands: list[str], modalities: dict[str, str]) -> tuple[list[tuple[str, str]],
                                                                                    list[str | None]]:
    """From an EDF header alone (no samples read): ``(canonical, modality)`` per signal and :func:`auto_channels`.

    Parameters
    ----------
    header : psgvlm.night.uploads.EdfHeader
        The checked header of an upload.
    bands, modalities
        The run's bands (:func:`run_channels`).

    Returns
    -------
    names : list of (str, str)
        Canonical name and modality of each signal in ``header.labels`` order.
    mapping : list of str or None
        The proposed recording channel per band (None = flat).
    """
    from psgvlm.io.channels import canonical_names
    from psgvlm.io.recording import Channel, Recording

    sig = {s.label: s for s in header.signals}
    names = canonical_names(header.labels, [sig[lab].unit for lab in header.labels])
    shell = Recording(channels=[Channel(name=lab, canonical=c, modality=m, sfreq=max(sig[lab].sfreq, 1e-9),
                                        data=np.zeros(0, np.float32))
                                for lab, (c, m) in zip(header.labels, names)],
                      subject="-", recording="-", dataset="generic", source="-")
    return names, auto_channels(shell, bands, modalities)


def resolve_channel_map(rec, bands: list[str], modalities: dict[str, str],
                        requested: list[str] | None = None) -> list[str | None]:
    """Validate a user's band-by-band channel list (or auto-detect one); see :func:`auto_channels`."""
    if not requested:
        mapping = auto_channels(rec, bands, modalities)
    else:
        if len(requested) != len(bands):
            raise ValueError(
                f"--channels gives {len(requested)} channel(s) {list(requested)} but the model's image has "
                f"{len(bands)} bands {bands}; give one recording channel per band ({EMPTY_BAND!r} for none)")
        mapping = []
        for name in requested:
            if name in (EMPTY_BAND, "", None):
                mapping.append(None)
                continue
            mapping.append(rec.channel(name).canonical)  # raises naming the available channels
        dup = sorted({m for m in mapping if m is not None and mapping.count(m) > 1})
        if dup:
            raise ValueError(f"channel(s) {dup} requested for more than one band in {list(requested)}")
    if not any(m is not None and rec.channel(m).modality == "EEG" for m in mapping):
        eeg = [c.canonical for c in rec.channels if c.modality == "EEG"]
        raise ValueError(
            f"no EEG channel mapped onto the model's bands {bands}; EEG channels found in the recording: "
            f"{eeg or 'none'}; all channels: {rec.ch_names}")
    return mapping


# ------------------------------------------------------------------------------------------------
# Scoring
# ------------------------------------------------------------------------------------------------
@dataclass
class StageResult:
    """A staged night. Arrays are per 30-s epoch of the recording."""

    probs: np.ndarray  # (n_epochs, 5) float32, columns STAGES
    starts_s: np.ndarray  # (n_epochs,) float64, epoch start in signal time, seconds
    expert: np.ndarray | None  # (n_epochs,) int8 AASM codes or None
    bands: list[str]  # the model's channel bands, top first
    channel_map: list[str | None]  # recording channel drawn in each band (None = flat)
    sfreq: float  # rendering rate, Hz
    settings: dict  # render settings (as_dict)
    model: dict  # model_info()
    recording: dict  # de-identified facts about the input
    epochs_path: str | None = None  # scaled epochs (n_epochs, n_bands, n_times) saved for the viewer
    timings_s: dict = field(default_factory=dict)
    epoch_s: float = EPOCH_S
    unscored: np.ndarray | None = None  # (n_epochs,) bool: no EEG signal, not scored (probabilities 0)
    checks: dict = field(default_factory=dict)  # flat epochs per band, expert pairing report (summary)

    @property
    def stages(self) -> np.ndarray:
        """Predicted AASM codes; ``UNSCORED`` where the epoch had no EEG signal."""
        codes = self.probs.argmax(1).astype(np.int8)
        if self.unscored is not None:
            codes[self.unscored] = UNSCORED
        return codes

    @property
    def confidence(self) -> np.ndarray:
        return self.probs.max(1)

    @property
    def n_epochs(self) -> int:
        return len(self.probs)


def _sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_input(edf, hypnogram=None):
    """Read a recording (EDF/EDF+/BDF, any montage) and an optional expert hypnogram.

    The expert stages are placed on the staged grid: every whole 30-s epoch from signal time 0
    (``onset_s`` 0, :func:`psgvlm.night.grid.expert_on_grid`), ``UNSCORED`` where no label covers an
    epoch; ``pairing["dropped_label_epochs"]`` counts the labels outside the recording. So a YASA
    reference or any other consumer of the returned recording sees the same epochs as the model.
    """
    from psgvlm.io.readers import read_recording
    from psgvlm.night.grid import expert_on_grid

    rec = read_recording("generic", str(edf), hypnogram=None if hypnogram is None else str(hypnogram))
    if rec.stages is not None:
        n_epochs = max(0, int(np.floor(rec.duration_s / rec.epoch_s + 1e-9)))
        expert, report = expert_on_grid(rec, n_epochs, rec.epoch_s)
        rec.pairing = {**rec.pairing, "n_label_epochs": report["n_label_epochs"],
                       "dropped_label_epochs": report["unmatched_label_epochs"], "onset_s": 0.0}
        rec.stages, rec.onset_s = expert, 0.0
    return rec


def _recording_facts(rec, n_epochs: int, sha256: str | None, notes: list[str]) -> dict:
    """De-identified facts about the input for the summary: signal facts only, never header text."""
    return {
        "duration_s": float(rec.duration_s),
        "n_epochs": int(n_epochs),
        "onset_s": float(rec.onset_s),
        "channels": [{"name": c.canonical, "modality": c.modality, "sfreq": float(c.sfreq)} for c in rec.channels],
        # Counts only: a reader's pairing report may name files, which may name the patient.
        "pairing": {k: v for k, v in (rec.pairing or {}).items() if isinstance(v, int | float | bool)},
        "sha256": sha256,
        "warnings": notes,
    }


def stage_recording(rec, *, run_dir=None, channels: list[str] | None = None, predictor=None,
                    batch_size: int = 16, epochs_path=None, progress=None,
                    source_sha256: str | None = None) -> StageResult:
    """Render and score every 30-s epoch of ``rec``.

    Parameters
    ----------
    rec : psgvlm.io.recording.Recording
        The night (expert stages optional).
    run_dir : path-like, optional
        A run directory; default: the embedded default run.
    channels : list of str, optional
        The recording's channel for each band of the run's image (``"-"`` = flat); default auto.
    predictor : optional
        An already loaded ``psgvlm.vlm.predict`` predictor for ``run_dir`` (the app keeps one loaded).
    batch_size : int
        Epochs rendered and scored at once.
    epochs_path : path-like, optional
        Where to save the scaled epochs (float16, (n_epochs, n_bands, n_times)) for later re-rendering.
    progress : callable, optional
        ``progress(done, total)`` after each batch (the app's progress bar); tqdm runs regardless.
    source_sha256 : str, optional
        Checksum of the input file, recorded in the summary.

    Returns
    -------
    StageResult
    """
    from tqdm.auto import tqdm

    from psgvlm.image.renderer import RenderSettings, render_epoch

    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} must be >= 1")
    t0 = time.perf_counter()
    run_dir = Path(run_dir) if run_dir is not None else default_run()
    if predictor is None:
        from psgvlm.vlm.predict import load_predictor

        predictor = load_predictor(run_dir)
    t_load = time.perf_counter()
    dmeta = predictor.dataset_meta
    bands, modalities, sfreq = run_channels(dmeta)
    settings = RenderSettings.from_dict(render_settings(dmeta))
    mapping = resolve_channel_map(rec, bands, modalities, channels)
    from psgvlm.night.grid import band_epochs

    x, expert, starts_s, notes, checks = band_epochs(rec, mapping, sfreq, settings)
    n_epochs = len(x)
    todo = np.flatnonzero(~checks["no_eeg"])  # epochs without EEG signal are not scored (left UNS)
    if epochs_path is not None:
        np.save(epochs_path, x.astype(np.float16))
    t_read = time.perf_counter()

    from PIL import Image

    probs = np.zeros((n_epochs, N_STAGES), dtype=np.float32)
    render_s = 0.0
    with tqdm(total=len(todo), desc="stage", unit="epoch") as bar:
        for lo in range(0, len(todo), batch_size):
            idx = todo[lo: lo + batch_size]
            r0 = time.perf_counter()
            images = [Image.fromarray(render_epoch(x[i], settings)) for i in idx]
            render_s += time.perf_counter() - r0
            p = np.asarray(predictor.predict_proba(images, batch_size=batch_size), dtype=np.float32)
            if p.shape != (len(idx), N_STAGES):
                raise RuntimeError(f"predictor returned shape {p.shape}, expected {(len(idx), N_STAGES)}")
            probs[idx] = p
            bar.update(len(idx))
            if progress is not None:
                progress(lo + len(idx), len(todo))
    t_end = time.perf_counter()
    return StageResult(
        probs=probs, starts_s=np.asarray(starts_s, dtype=np.float64),
        expert=None if expert is None else np.asarray(expert, dtype=np.int8),
        bands=bands, channel_map=mapping, sfreq=sfreq, settings=settings.as_dict(),
        model=model_info(run_dir), recording=_recording_facts(rec, n_epochs, source_sha256, notes),
        epochs_path=None if epochs_path is None else str(epochs_path),
        timings_s={"load_model": t_load - t0, "read_resample_scale": t_read - t_load, "render": render_s,
                   "render_and_predict": t_end - t_read, "total": t_end - t0},
        epoch_s=float(rec.epoch_s), unscored=checks["no_eeg"],
        checks={"n_flat_epochs": {b: int(checks["flat"][:, i].sum())
                                  for i, (b, m) in enumerate(zip(bands, mapping)) if m is not None},
                "unscored_epochs": np.flatnonzero(checks["no_eeg"]).tolist(),
                "expert": checks["expert"]},
    )


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------
MAX_BATCH_SIZE = 1024  # epoch images per forward pass; more only exhausts memory


def _fail(message, code: int = 2) -> int:
    """Print one line ``psgvlm stage: <message>`` to stderr and return the exit code."""
    print(f"psgvlm stage: {' '.join(str(message).split())}", file=sys.stderr)
    return code


def check_out_dir(out) -> str | None:
    """Why ``out`` cannot take the outputs (a file, not writable), or None; checked before any work."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        return f"--out {str(out)!r} exists and is not a directory; give a folder (new or existing)"
    parent = out
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        return f"--out {str(out)!r}: {str(parent)!r} is not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"--out {str(out)!r}: {str(parent)!r} is not writable"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="psgvlm stage", description=__doc__.split("\n\n")[0])
    parser.add_argument("--edf", required=True, help="the recording: EDF, EDF+ or BDF")
    parser.add_argument("--hypnogram", help="expert hypnogram (CSV/TSV/one label per line, EDF+, NSRR XML)")
    parser.add_argument("--channels", nargs="+",
                        help=f"recording channel per band of the model's image, top first ({EMPTY_BAND!r} = flat)")
    parser.add_argument("--run", help="run directory (default: the embedded default model)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--batch-size", default="16",
                        help=f"epoch images scored per forward pass, 1..{MAX_BATCH_SIZE} (default 16)")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    args = parser.parse_args(argv)

    from psgvlm.night.outputs import summarize, write_outputs
    from psgvlm.night.uploads import UploadError, validate_recording_upload

    try:
        batch_size = int(args.batch_size)
    except ValueError:
        batch_size = 0
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        return _fail(f"--batch-size {args.batch_size!r} is not allowed; give a whole number 1..{MAX_BATCH_SIZE}")
    edf = Path(args.edf)
    if not edf.is_file():
        return _fail(f"--edf {str(edf)!r} is not a file")
    if args.hypnogram and not Path(args.hypnogram).is_file():
        return _fail(f"--hypnogram {args.hypnogram!r} is not a file")
    if args.run and not Path(args.run).is_dir():
        return _fail(f"--run {args.run!r} is not a directory")
    bad_out = check_out_dir(args.out)
    if bad_out:
        return _fail(bad_out)
    try:
        validate_recording_upload(edf)
        rec = read_input(edf, args.hypnogram)
        result = stage_recording(rec, run_dir=args.run, channels=args.channels, batch_size=batch_size,
                                 source_sha256=_sha256(edf))
        paths = write_outputs(result, args.out)
    except (UploadError, ValueError) as err:  # bad input: the message names the file and the value
        if args.debug:
            raise
        return _fail(err if edf.name in str(err) else f"{edf.name}: {err}")
    except Exception as err:  # noqa: BLE001  not the user's input: one line, the traceback with --debug
        if args.debug:
            raise
        return _fail(f"{type(err).__name__}: {err} (rerun with --debug for the traceback)", code=1)
    stats = summarize(result)["sleep_statistics"]
    tst = stats["TST"]
    se = stats["SE"]
    n_uns = int(np.count_nonzero(result.stages == UNSCORED))
    print(f"staged {result.n_epochs} epochs ({result.n_epochs * result.epoch_s / 60:g} min, from 0 s) in "
          f"{result.timings_s['total']:.1f} s; TST {tst:.1f} min, SE {se:.1f}%"
          + (f"; {n_uns} epochs unscored (no EEG signal)" if n_uns else ""))
    print(f"wrote {', '.join(sorted(p.name for p in paths.values()))} to {args.out}")
    for note in result.recording["warnings"]:
        print(f"warning: {note}", file=sys.stderr)
    print(result.model["notice"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
