"""Stage one recording: read it, map its channels onto the run's bands, run every predictor on the same epochs.

:func:`read_input` reads a recording (and an expert hypnogram) and its start date-time;
:func:`stage_recording` stages every 30-s epoch from signal time 0 with every predictor asked for
(:mod:`psgvlm.night.predictors`) and returns a :class:`StageResult`; :func:`with_primary` swaps whose
stages fill the night. The command ``psgvlm stage`` and the files it writes: :mod:`psgvlm.night.cli_stage`.

Channels: :mod:`psgvlm.night.bands` maps the recording's channels onto the run's bands.

Time in bed: ``lights_off``/``lights_on`` (seconds from the start, or clock time ``HH:MM[:SS]`` when
the header gives the start time) keep the epochs that start within [lights off, lights on], both
inclusive, as ``yasa.Hypnogram.crop`` does with timestamps (:func:`psgvlm.night.sleepstats.time_in_bed`);
the sleep statistics are computed on those epochs, the files keep the whole night.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from psgvlm.io.edf import EdfStart
from psgvlm.night.bands import channel_choices, channel_request, substitution_notes
from psgvlm.provenance import read_json
from psgvlm.stages import EPOCH_S, UNSCORED

SYNTHETIC_NOTICE = ("Default model: a small model trained only on synthetic recordings. It demonstrates "
                    "the pipeline; its stages are not accurate on real sleep and it is not for clinical use.")
RUN_NOTICE = "Research software, not a medical device: not for clinical use."


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
    start: EdfStart | None = None  # when the recording started (None: not an EDF file); parts None if anonymised
    lights: dict | None = None  # time in bed (time_in_bed()): off_s, on_s, first_epoch, n_epochs; None = whole night
    channels: list = field(default_factory=list)  # the VLM's channel_choices(): per band label, canonical, how

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

    @property
    def in_bed(self) -> slice:
        """The epochs in bed (lights off to lights on; the whole night without them)."""
        if self.lights is None:
            return slice(0, self.n_epochs)
        return slice(self.lights["first_epoch"], self.lights["first_epoch"] + self.lights["n_epochs"])

    def clock_times(self) -> list[str] | None:
        """Clock time of each epoch start: ISO date-time, or ``HH:MM:SS`` when only the time of day is
        known; None when the header gives no start time."""
        import datetime as dt

        if self.start is None or self.start.time is None:
            return None
        t0 = dt.datetime.combine(self.start.date or dt.date(2000, 1, 1), self.start.time)
        stamps = [t0 + dt.timedelta(seconds=float(s)) for s in self.starts_s]
        return [t.isoformat() if self.start.date is not None else t.time().isoformat() for t in stamps]


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


def sha256_file(path) -> str:
    """SHA-256 hex digest of a file, read in 1-MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_input(edf, hypnogram=None, hypnogram_format: str | None = None):
    """Read a recording (EDF/EDF+/BDF, any montage) and an optional expert hypnogram.

    ``rec.meta["start"]`` is the header's start (:func:`psgvlm.io.edf.read_edf_start`: EDF+ anonymised
    dates recognised).

    The hypnogram's format is detected from its content (:func:`psgvlm.io.hypnogram_formats.detect_hypnogram`)
    unless ``hypnogram_format`` names one of :data:`psgvlm.io.hypnogram_formats.HYPNOGRAM_FORMATS`.

    The expert stages are placed on the staged grid: every whole 30-s epoch from signal time 0
    (``onset_s`` 0, :func:`psgvlm.night.grid.expert_on_grid`), ``UNSCORED`` where no label covers an
    epoch; ``pairing["dropped_label_epochs"]`` counts the labels outside the recording. So a YASA
    reference or any other consumer of the returned recording sees the same epochs as the model.
    """
    from psgvlm.io.edf import read_edf_start
    from psgvlm.io.readers import read_recording
    from psgvlm.night.grid import expert_on_grid

    opts = {} if hypnogram_format is None else {"hypnogram_format": hypnogram_format}
    # lazy: a channel's samples are read when a predictor first uses them (a night's EDF holds many unused)
    rec = read_recording("generic", str(edf), hypnogram=None if hypnogram is None else str(hypnogram), lazy=True,
                         **opts)
    rec.meta["start"] = read_edf_start(edf)  # the header's start date-time (parts None where anonymised)
    if rec.stages is not None:
        n_epochs = max(0, int(np.floor(rec.duration_s / rec.epoch_s + 1e-9)))
        expert, report = expert_on_grid(rec, n_epochs, rec.epoch_s)
        rec.pairing = {**rec.pairing, "n_label_epochs": report["n_label_epochs"],
                       "dropped_label_epochs": report["unmatched_label_epochs"], "onset_s": 0.0}
        rec.stages, rec.onset_s = expert, 0.0
    return rec


def _start(rec) -> EdfStart | None:
    start = (rec.meta or {}).get("start")
    return start if isinstance(start, EdfStart) else None


def time_point_s(value, start: EdfStart | None, option: str) -> float:
    """Seconds from the recording start of ``value``: seconds (``"3600"``, ``1800.5``) or a clock time
    ``HH:MM[:SS]`` (the first such time at or after the start, so 23:00 -> 07:00 crosses midnight).

    Raises
    ------
    ValueError
        Not a number >= 0 nor a clock time, or a clock time while the header gives no start time.
    """
    import datetime as dt

    text = str(value).strip()
    if ":" not in text:
        try:
            seconds = float(text)
        except ValueError:
            seconds = -1.0
        if not (np.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"{option} {text!r} is not allowed; give seconds from the start (>= 0) or a clock "
                             f"time HH:MM[:SS]")
        return seconds
    clock = None
    for fmt in ("%H:%M:%S", "%H:%M"):
        try:
            clock = dt.datetime.strptime(text, fmt).time()
            break
        except ValueError:
            continue
    if clock is None:
        raise ValueError(f"{option} {text!r} is not a clock time HH:MM[:SS] (00:00 to 23:59:59) nor seconds")
    if start is None or start.time is None:
        raise ValueError(f"{option} {text!r}: the recording's header gives no start time (anonymised), so a clock "
                         f"time cannot be placed; give seconds from the start instead")
    day = 24 * 3600
    of_day = lambda t: t.hour * 3600 + t.minute * 60 + t.second  # noqa: E731
    return float((of_day(clock) - of_day(start.time)) % day)


def lights_in_bed(starts_s, start: EdfStart | None, lights_off=None, lights_on=None) -> dict | None:
    """``StageResult.lights`` for lights off/on (:func:`time_point_s`), None when neither is given.

    Lights off defaults to the start, lights on to the last epoch's start. Raises ValueError naming the
    option for a bad value, and when no epoch starts in between.
    """
    from psgvlm.night.sleepstats import time_in_bed

    if lights_off in (None, "") and lights_on in (None, ""):
        return None
    starts_s = np.asarray(starts_s, dtype=np.float64)
    off_s = 0.0 if lights_off in (None, "") else time_point_s(lights_off, start, "--lights-off")
    on_s = float(starts_s[-1]) if lights_on in (None, "") else time_point_s(lights_on, start, "--lights-on")
    first, count = time_in_bed(starts_s, off_s, on_s)
    return {"off_s": off_s, "on_s": on_s, "first_epoch": first, "n_epochs": count,
            "rule": "epochs that start within [lights off, lights on], both inclusive (yasa.Hypnogram.crop)"}


def with_lights(result: StageResult, lights_off=None, lights_on=None) -> StageResult:
    """The same staged night with another time in bed (:func:`lights_in_bed`); nothing is rerun."""
    import dataclasses

    return dataclasses.replace(result, lights=lights_in_bed(result.starts_s, result.start, lights_off, lights_on))


def _recording_facts(rec, n_epochs: int, sha256: str | None, notes: list[str]) -> dict:
    """De-identified facts about the input for the summary: signal facts only, never header text."""
    return {
        "duration_s": float(rec.duration_s),
        "n_epochs": int(n_epochs),
        "onset_s": float(rec.onset_s),
        "start": _start(rec).as_dict() if _start(rec) is not None else None,
        "channels": [{"label": c.name, "name": c.canonical, "modality": c.modality, "sfreq": float(c.sfreq)}
                     for c in rec.channels],
        # Counts only: a reader's pairing report may name files, which may name the patient.
        "pairing": {k: v for k, v in (rec.pairing or {}).items() if isinstance(v, int | float | bool)},
        "sha256": sha256,
        "warnings": notes,
    }


def stage_recording(rec, *, run_dir=None, channels: list[str] | None = None, predictor=None,
                    batch_size: int = 16, epochs_path=None, progress=None, source_sha256: str | None = None,
                    predictors=None, primary: str = "auto", eeg=None, eog=None, emg=None, max_eeg: int | None = 1,
                    from_onset: bool = False, lights_off=None, lights_on=None) -> StageResult:
    """Stage every 30-s epoch of ``rec`` with every predictor asked for, on the same epochs.

    Parameters
    ----------
    rec : psgvlm.io.recording.Recording
        The night (expert stages optional, placed on the grid by time). Epoch ``k`` is
        ``[30 k, 30 (k + 1))`` s of signal time, up to the last whole epoch of every channel.
    run_dir, predictor, batch_size, epochs_path, progress
        The VLM's (:func:`psgvlm.night.predictors.score_vlm`).
    channels : list of str or ChannelRequest, optional
        ``--channels``: one recording channel per band of the VLM's image, or ``band=channel`` values
        (:func:`psgvlm.night.bands.channel_request`); bands not named are filled automatically.
    source_sha256 : str, optional
        Checksum of the input file, recorded in the summary.
    predictors : list of str, optional
        Names from :data:`psgvlm.night.predictors.PREDICTORS`; default every one this install can run.
    primary : str
        Whose stages fill the hypnogram and the statistics: a predictor's name, or ``"auto"`` (the best
        that ran by :data:`psgvlm.night.predictors.AUTO_PRIMARY`).
    eeg, eog, emg : list of str, optional
        The reference stagers' channels (default: the best EEG, EOG and EMG channel), also placed on the
        VLM's bands of that modality (:func:`psgvlm.night.bands.resolve_channel_choices`) unless ``channels`` gives every band.
    max_eeg : int or None
        EEG channels the reference stagers pick when ``eeg`` is not given (None = every one).
    from_onset : bool
        Keep the reader's grid (epochs from ``rec.onset_s``, ``rec.stages`` as the expert) instead of the
        whole night from 0 s: ``psgvlm reference`` on a dataset whose scoring starts later (Prerau).
    lights_off, lights_on : float or str, optional
        Time in bed (:func:`time_point_s`: seconds from the start or clock time ``HH:MM[:SS]``): the
        statistics count the epochs that start within [lights_off, lights_on] (yasa.Hypnogram.crop's rule).

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
    starts_s = onset_s + np.arange(n_epochs, dtype=np.float64) * rec.epoch_s
    lights = lights_in_bed(starts_s, _start(rec), lights_off, lights_on)  # checked before anything runs
    request = channel_request(channels, eeg=eeg, eog=eog, emg=emg)
    opts = PredictorOptions(run_dir=run_dir, vlm=predictor, channels=request or None, eeg=eeg, eog=eog, emg=emg,
                            max_eeg=max_eeg, batch_size=batch_size, epochs_path=epochs_path, progress=progress)
    strict = ({"vlm"} if request else set()) | ({"yasa", "gssc"} if (eeg or eog or emg) else set())
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
    choices = []
    if vlm is not None:
        dmeta = predictor.dataset_meta if predictor is not None else \
            read_json(Path(run_dir or default_run()) / "meta.json").get("dataset", {})
        choices = channel_choices(grid_rec, *run_channels(dmeta)[:2], request)
        notes += substitution_notes(choices)
    model = vinfo.get("model")
    chosen = outputs[prim]
    night = StageResult(
        probs=chosen.probs, starts_s=starts_s, expert=expert,
        bands=vinfo.get("bands", []), channel_map=vinfo.get("channel_map", []), sfreq=vinfo.get("sfreq"),
        settings=vinfo.get("settings"), model=model, recording=_recording_facts(rec, n_epochs, source_sha256, notes),
        epochs_path=None if epochs_path is None or vlm is None else str(epochs_path),
        timings_s={"total": time.perf_counter() - t0, "predictors": seconds, "vlm_phases": vinfo.get("timings_s", {})},
        epoch_s=float(rec.epoch_s), unscored=chosen.unscored,
        checks={"n_flat_epochs": vinfo.get("checks", {}).get("n_flat_epochs", {}),
                "unscored_epochs": np.flatnonzero(chosen.unscored).tolist(), "expert": report},
        predictions=outputs, primary=prim, failed=failed, start=_start(rec), lights=lights, channels=choices)
    return with_primary(night, prim)  # the primary's notice, review list and unscored epochs
