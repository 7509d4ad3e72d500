"""Stage one recording end to end: read, run every predictor on the same epochs, write the night.

    psgvlm stage --edf night.edf --out out/night
    psgvlm stage --edf SC4001E0-PSG.edf --hypnogram SC4001EC-Hypnogram.edf --run runs/llava_isruc --out out/sc4001
    psgvlm stage --edf night.edf --channels C3 C4 LOC ROC EMG --out out/night
    psgvlm stage --edf night.edf --predictors vlm yasa --primary yasa --out out/night

The predictors (:data:`psgvlm.night.predictors.PREDICTORS`: the VLM run, YASA, GSSC when its extra is
installed, their soft vote) all stage the same epochs; one that cannot run is reported with its reason.
``--primary`` (default ``auto``: the best that ran by the real-data ranking) chooses whose stages fill
the files below, which name it. What it writes in ``--out`` (:mod:`psgvlm.night.outputs`):

- ``hypnogram.tsv``: ``init_sec  duration_sec  stage  predictor`` one row per 30-s epoch (U-Sleep's
  layout, plus the primary's name).
- ``hypnogram.csv``: ``epoch, start_s, stage, confidence, p_W, p_N1, p_N2, p_N3, p_REM, primary, review``,
  one ``stage_<name>`` column per predictor (and ``expert`` when a hypnogram was given), as YASA users
  tabulate ``predict_proba``; ``review`` says why a person should look at the epoch (predictors
  disagree, low confidence) or is empty.
- ``predictors/<name>/hypnogram.tsv`` and ``hypnodensity.npy``: each predictor's own.
- ``hypnodensity.npy``: float32 (n_epochs, 5) stage probabilities, columns W, N1, N2, N3, REM.
- ``hypnogram_annotations.edf``: EDF+ annotations ("Sleep stage W/N1/N2/N3/R", one per epoch) that
  EDFbrowser or ``mne.read_annotations`` opens beside the recording.
- ``hypnogram.png``: every predictor's hypnogram (the primary on top; the expert's below) plus the
  primary's hypnodensity.
- ``summary.json``: ``primary``; sleep statistics (:mod:`psgvlm.night.sleepstats`) of the primary's stages
  (and of the expert hypnogram), agreement metrics when a hypnogram was given; ``predictors`` (each
  one's kind, channels, stage counts, agreement, or why it did not run), ``pairwise_agreement``,
  ``review`` (count and epochs); the VLM's channel mapping, the model and its
  provenance, and the notice that says what the model is (e.g. trained on synthetic recordings, not
  for clinical use), signal warnings (e.g. a channel upsampled to the model's rate), timings and
  provenance. Patient-identifying header fields (name, birth date, hospital code) are never copied:
  only signal facts (rates, durations, channel labels) and a SHA-256 of the input file.
- ``metrics.json``: agreement with the expert hypnogram (:func:`psgvlm.metrics.stage_metrics`) of the
  primary and of every predictor, when one was given.

The staged span is always the whole recording: 30-s epochs from signal time 0 to the last whole
epoch, whatever part of the night an expert hypnogram covers. Expert labels are placed on that grid by
time (:mod:`psgvlm.night.grid`); staged epochs without a label count as unscored in the agreement, and
labels outside the recording are reported as unmatched (console and ``summary.json`` ``checks.expert``).
An epoch in which every EEG channel a predictor reads is flat (constant, zero or not finite) is not scored: its
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

Modules of :mod:`psgvlm.night`: this one (read, map channels onto the run's bands, run the predictors,
the CLI), :mod:`~psgvlm.night.predictors` (the registry, the VLM predictor, primary, pairwise agreement,
review list), :mod:`~psgvlm.night.reference` (``psgvlm reference``), :mod:`~psgvlm.night.grid` (the epochs cut, expert labels placed on them, flat
epochs), :mod:`~psgvlm.night.outputs` (the files above), :mod:`~psgvlm.night.viewer`
(re-render one epoch, attribution overlay), :mod:`~psgvlm.night.sleepstats`,
:mod:`~psgvlm.night.uploads` (upload checks) and :mod:`~psgvlm.night.sessions` (the app's per-session
folders).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from psgvlm.locks import LockedError, check_out_dir
from psgvlm.provenance import read_json
from psgvlm.stages import EPOCH_S, UNSCORED

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
    """A staged night: every predictor's output on the same 30-s epochs, and the primary's stages.

    ``probs``, ``unscored`` and :attr:`stages` are the primary's; ``predictions`` holds every
    predictor that ran, ``failed`` why the others could not. The VLM's facts (bands, channel map,
    render settings, saved epochs for the viewer) are empty when the VLM did not run.
    """

    probs: np.ndarray  # (n_epochs, 5) float32, columns STAGES: the primary's
    starts_s: np.ndarray  # (n_epochs,) float64, epoch start in signal time, seconds
    expert: np.ndarray | None  # (n_epochs,) int8 AASM codes or None
    bands: list[str]  # the VLM's channel bands, top first ([] without the VLM)
    channel_map: list[str | None]  # recording channel drawn in each band (None = flat)
    sfreq: float | None  # VLM rendering rate, Hz
    settings: dict | None  # VLM render settings (as_dict)
    model: dict | None  # model_info() of the VLM run, None without the VLM
    recording: dict  # de-identified facts about the input
    epochs_path: str | None = None  # scaled epochs (n_epochs, n_bands, n_times) saved for the viewer
    timings_s: dict = field(default_factory=dict)
    epoch_s: float = EPOCH_S
    unscored: np.ndarray | None = None  # (n_epochs,) bool: the primary did not score it (probabilities 0)
    checks: dict = field(default_factory=dict)  # flat epochs per band, expert pairing report (summary)
    predictions: dict = field(default_factory=dict)  # name -> psgvlm.reference.Hypnodensity, registry order
    primary: str = "vlm"
    failed: dict = field(default_factory=dict)  # name -> why it could not run
    review: list = field(default_factory=list)  # (n_epochs,) "" or why a person should look at the epoch
    notice: str = RUN_NOTICE  # the primary's notice

    @property
    def stages(self) -> np.ndarray:
        """The primary's AASM codes; ``UNSCORED`` where it did not score the epoch."""
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


def with_primary(result: StageResult, primary: str) -> StageResult:
    """The same staged night with another predictor's stages as the primary (no predictor is rerun)."""
    import dataclasses

    from psgvlm.night.predictors import REFERENCE_NOTICE, choose_primary, review_epochs

    name = choose_primary(result.predictions, primary)
    chosen = result.predictions[name]
    notice = result.model["notice"] if name == "vlm" else REFERENCE_NOTICE.format(name=name.upper())
    return dataclasses.replace(result, probs=chosen.probs, unscored=chosen.unscored, primary=name, notice=notice,
                               review=review_epochs(result.predictions, name),
                               checks={**result.checks, "unscored_epochs": np.flatnonzero(chosen.unscored).tolist()})


def _sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_input(edf, hypnogram=None, hypnogram_format: str | None = None):
    """Read a recording (EDF/EDF+/BDF, any montage) and an optional expert hypnogram.

    The hypnogram's format is detected from its content (:func:`psgvlm.io.hypnograms.detect_hypnogram`)
    unless ``hypnogram_format`` names one of :data:`psgvlm.io.hypnograms.HYPNOGRAM_FORMATS`.

    The expert stages are placed on the staged grid: every whole 30-s epoch from signal time 0
    (``onset_s`` 0, :func:`psgvlm.night.grid.expert_on_grid`), ``UNSCORED`` where no label covers an
    epoch; ``pairing["dropped_label_epochs"]`` counts the labels outside the recording. So a YASA
    reference or any other consumer of the returned recording sees the same epochs as the model.
    """
    from psgvlm.io.readers import read_recording
    from psgvlm.night.grid import expert_on_grid

    opts = {} if hypnogram_format is None else {"hypnogram_format": hypnogram_format}
    # lazy: a channel's samples are read when a predictor first uses them (a night's EDF holds many unused)
    rec = read_recording("generic", str(edf), hypnogram=None if hypnogram is None else str(hypnogram), lazy=True,
                         **opts)
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
                    batch_size: int = 16, epochs_path=None, progress=None, source_sha256: str | None = None,
                    predictors=None, primary: str = "auto", eeg=None, eog=None, emg=None, max_eeg: int | None = 1,
                    from_onset: bool = False) -> StageResult:
    """Stage every 30-s epoch of ``rec`` with every predictor asked for, on the same epochs.

    Parameters
    ----------
    rec : psgvlm.io.recording.Recording
        The night (expert stages optional, placed on the grid by time). Epoch ``k`` is
        ``[30 k, 30 (k + 1))`` s of signal time, up to the last whole epoch of every channel.
    run_dir, channels, predictor, batch_size, epochs_path, progress
        The VLM's (:func:`score_vlm`).
    source_sha256 : str, optional
        Checksum of the input file, recorded in the summary.
    predictors : list of str, optional
        Names from :data:`psgvlm.night.predictors.PREDICTORS`; default every one this install can run.
    primary : str
        Whose stages fill the hypnogram and the statistics: a predictor's name, or ``"auto"`` (the best
        that ran by :data:`psgvlm.night.predictors.AUTO_PRIMARY`).
    eeg, eog, emg : list of str, optional
        The reference stagers' channels (default: the best EEG, EOG and EMG channel).
    max_eeg : int or None
        EEG channels the reference stagers pick when ``eeg`` is not given (None = every one).
    from_onset : bool
        Keep the reader's grid (epochs from ``rec.onset_s``, ``rec.stages`` as the expert) instead of the
        whole night from 0 s: ``psgvlm reference`` on a dataset whose scoring starts later (Prerau).

    Returns
    -------
    StageResult

    Raises
    ------
    ValueError
        No whole epoch; no predictor could run (every reason named); ``primary`` not among those that ran.
    """
    import dataclasses

    from psgvlm.night.grid import expert_on_grid
    from psgvlm.night.predictors import PredictorOptions, choose_primary, default_predictors, run_predictors

    t0 = time.perf_counter()
    names = default_predictors() if predictors is None else list(predictors)
    name = Path(str(rec.source)).name
    onset_s = rec.onset_s if from_onset else 0.0
    n_epochs = rec.n_epochs if from_onset else max(0, int(np.floor(rec.duration_s / rec.epoch_s + 1e-9)))
    if n_epochs == 0:
        raise ValueError(f"{name}: the recording holds no whole 30-s epoch ({rec.duration_s:.1f} s of signal)")
    if from_onset:
        expert = None if rec.stages is None else np.asarray(rec.stages[:n_epochs], dtype=np.int8)
        report = None
    else:
        expert, report = expert_on_grid(rec, n_epochs, rec.epoch_s)
    grid_rec = dataclasses.replace(rec, stages=expert, onset_s=onset_s)
    opts = PredictorOptions(run_dir=run_dir, vlm=predictor, channels=channels, eeg=eeg, eog=eog, emg=emg,
                            max_eeg=max_eeg, batch_size=batch_size, epochs_path=epochs_path, progress=progress)
    strict = ({"vlm"} if channels else set()) | ({"yasa", "gssc"} if (eeg or eog or emg) else set())
    outputs, failed, seconds = run_predictors(grid_rec, n_epochs, names, opts, strict=strict)
    if not outputs:
        raise ValueError("nothing to stage: no predictor could run on this recording: "
                         + "; ".join(f"{k}: {v}" for k, v in failed.items()))
    prim = choose_primary(outputs, primary)  # checked before the outputs are built
    notes = []
    if report is not None and report["unmatched_label_epochs"]:
        notes.append(f"{report['unmatched_label_epochs']} of {report['n_label_epochs']} expert label epochs fall "
                     f"outside the staged recording (0 to {n_epochs * rec.epoch_s:g} s) and were not used")
    if report is not None and report["n_epochs_without_label"]:
        notes.append(f"{report['n_epochs_without_label']} of {n_epochs} staged epochs have no expert label; "
                     f"they are left out of the agreement")
    for k, out in outputs.items():
        notes += out.notes if k == "vlm" else [f"{k}: {n}" for n in out.notes]
    vlm = outputs.get("vlm")
    vinfo = vlm.info if vlm is not None else {}
    model = vinfo.get("model")
    chosen = outputs[prim]
    night = StageResult(
        probs=chosen.probs, starts_s=onset_s + np.arange(n_epochs, dtype=np.float64) * rec.epoch_s, expert=expert,
        bands=vinfo.get("bands", []), channel_map=vinfo.get("channel_map", []), sfreq=vinfo.get("sfreq"),
        settings=vinfo.get("settings"), model=model, recording=_recording_facts(rec, n_epochs, source_sha256, notes),
        epochs_path=None if epochs_path is None or vlm is None else str(epochs_path),
        timings_s={"total": time.perf_counter() - t0, "predictors": seconds, "vlm_phases": vinfo.get("timings_s", {})},
        epoch_s=float(rec.epoch_s), unscored=chosen.unscored,
        checks={"n_flat_epochs": vinfo.get("checks", {}).get("n_flat_epochs", {}),
                "unscored_epochs": np.flatnonzero(chosen.unscored).tolist(), "expert": report},
        predictions=outputs, primary=prim, failed=failed)
    return with_primary(night, prim)  # the primary's notice, review list and unscored epochs


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------
MAX_BATCH_SIZE = 1024  # epoch images per forward pass; more only exhausts memory


def _fail(message, code: int = 2) -> int:
    """Print one line ``psgvlm stage: <message>`` to stderr and return the exit code."""
    print(f"psgvlm stage: {' '.join(str(message).split())}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    from psgvlm.io.hypnograms import HYPNOGRAM_FORMATS

    parser = argparse.ArgumentParser(prog="psgvlm stage", description=__doc__.split("\n\n")[0])
    parser.add_argument("--edf", required=True, help="the recording: EDF, EDF+ or BDF")
    parser.add_argument("--hypnogram", help="expert hypnogram; its format is detected from its content "
                        "(see --hypnogram-format)")
    parser.add_argument("--hypnogram-format", choices=sorted(HYPNOGRAM_FORMATS), metavar="NAME",
                        help="read --hypnogram as this format instead of detecting it: "
                        + "; ".join(f"{k}: {d}" for k, (_, d) in sorted(HYPNOGRAM_FORMATS.items())))
    parser.add_argument("--channels", nargs="+",
                        help=f"recording channel per band of the model's image, top first ({EMPTY_BAND!r} = flat)")
    parser.add_argument("--run", help="run directory (default: the embedded default model)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--batch-size", default="16",
                        help=f"epoch images scored per forward pass, 1..{MAX_BATCH_SIZE} (default 16)")
    from psgvlm.night.predictors import add_predictor_arguments

    add_predictor_arguments(parser)
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
    from psgvlm.night.predictors import add_predictor_arguments, check_predictor_arguments

    try:
        names, primary = check_predictor_arguments(args)
    except ValueError as err:
        return _fail(err)
    try:
        validate_recording_upload(edf)
        t_read = time.perf_counter()
        rec = read_input(edf, args.hypnogram, args.hypnogram_format)
        t_read = time.perf_counter() - t_read
        result = stage_recording(rec, run_dir=args.run, channels=args.channels, batch_size=batch_size,
                                 source_sha256=_sha256(edf), predictors=names, primary=primary,
                                 eeg=args.eeg, eog=args.eog, emg=args.emg)
        result.timings_s["read_input"] = t_read
        paths = write_outputs(result, args.out)
    except LockedError as err:  # another run writes --out: the message names the lock and its PID
        if args.debug:
            raise
        return _fail(err)
    except (UploadError, ValueError) as err:  # bad input: the message names the file and the value
        if args.debug:
            raise
        return _fail(err if edf.name in str(err) else f"{edf.name}: {err}")
    except Exception as err:  # noqa: BLE001  not the user's input: one line, the traceback with --debug
        if args.debug:
            raise
        return _fail(f"{type(err).__name__}: {err} (rerun with --debug for the traceback)", code=1)
    report_night(result, summarize(result), paths, args.out)
    return 0


def report_night(result: StageResult, summary: dict, paths: dict, out) -> None:
    """The console report of a staged night: what ran, the primary, agreement, warnings, the notice."""
    stats = summary["sleep_statistics"]
    n_uns = int(np.count_nonzero(result.stages == UNSCORED))
    print(f"staged {result.n_epochs} epochs ({result.n_epochs * result.epoch_s / 60:g} min, from 0 s) in "
          f"{result.timings_s['total']:.1f} s; primary {result.primary}: TST {stats['TST']:.1f} min, "
          f"SE {stats['SE']:.1f}%" + (f"; {n_uns} epochs unscored (no EEG signal)" if n_uns else ""))
    for name, entry in summary["predictors"].items():
        if not entry["ran"]:
            print(f"  {name}: not run: {entry['reason']}")
            continue
        line = f"  {name}{' (primary)' if entry['primary'] else ''}: channels {', '.join(entry['channels'])}"
        agree = entry.get("agreement")
        if agree:
            line += (f"; vs expert: accuracy {agree['accuracy']:.3f}, kappa {agree['kappa']:.3f}, "
                     f"macro F1 {agree['macro_f1']:.3f} ({agree['n_epochs']} epochs)")
        print(line)
    print(f"review: {summary['review']['n_epochs']} epochs where predictors disagree or the primary's "
          f"confidence is below {summary['review']['confidence_below']:g} (hypnogram.csv column 'review')")
    top = sorted({p.relative_to(out).parts[0] for p in paths.values()})
    print(f"wrote {', '.join(top)} to {out}")
    for note in result.recording["warnings"]:
        print(f"warning: {note}", file=sys.stderr)
    print(result.notice)


if __name__ == "__main__":
    sys.exit(main())
