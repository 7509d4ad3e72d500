"""Stage one recording end to end: read, render every epoch, score it with a run, write the night.

    psgvlm stage --edf night.edf --out out/night
    psgvlm stage --edf SC4001E0-PSG.edf --hypnogram SC4001EC-Hypnogram.edf --run runs/llava_isruc --out out/sc4001
    psgvlm stage --edf night.edf --channels C3 C4 LOC ROC EMG --out out/night

What it writes in ``--out``:

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

Channels: the run's image has one band per channel of the dataset it was trained on (its
``meta.json`` channel order). Each band is filled with the recording's channel of the same canonical
name, else with an unused channel of the same modality (EEG preferring central derivations), else
left flat and reported. ``--channels`` gives the recording's channels band by band instead (``-``
leaves a band flat).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import textwrap
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from psgvlm.provenance import provenance, read_json, write_json_atomic, write_text_atomic
from psgvlm.stages import EPOCH_S, N_STAGES, STAGES, UNSCORED

SYNTHETIC_NOTICE = ("Default model: a small model trained only on synthetic recordings. It demonstrates "
                    "the pipeline; its stages are not accurate on real sleep and it is not for clinical use.")
RUN_NOTICE = "Research software, not a medical device: not for clinical use."
EMPTY_BAND = "-"  # --channels value that leaves a band flat
# EDF+ annotation texts, the Sleep-EDF / MNE convention EDFbrowser's hypnogram view understands.
EDF_STAGE_TEXT = {"W": "Sleep stage W", "N1": "Sleep stage N1", "N2": "Sleep stage N2",
                  "N3": "Sleep stage N3", "REM": "Sleep stage R"}
_EEG_ORDER = ("C3", "C4", "Cz", "F3", "F4", "Fz", "Fpz-Cz", "O1", "O2", "Pz-Oz", "Pz", "Oz", "EEG")
_EOG_ORDER = ("LOC", "ROC", "EOG")
_EMG_ORDER = ("EMG",)
_MIN_SFREQ = 50.0  # Hz; below this a channel is a trend (impedance, rate), never auto-picked


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
    try:
        is_default = run_dir.resolve() == default_run().resolve()
    except ImportError:  # a run scored by a caller-supplied predictor, without psgvlm.vlm.predict
        is_default = False
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

    Same canonical name first; then an unused channel of the band's modality sampled at >= 50 Hz,
    EEG in the order central, frontal, occipital (what scorers read first), EOG LOC/ROC first.
    """
    used: set[str] = set()
    out: list[str | None] = [None] * len(bands)
    usable = [c for c in rec.channels if c.sfreq >= _MIN_SFREQ]
    for i, band in enumerate(bands):
        if band in rec.ch_names and rec.channel(band).sfreq >= _MIN_SFREQ:
            out[i] = band
            used.add(band)
    order = {"EEG": _EEG_ORDER, "EOG": _EOG_ORDER, "EMG": _EMG_ORDER}
    for i, band in enumerate(bands):
        if out[i] is not None:
            continue
        modality = _band_modality(band, modalities)
        pref = order.get(modality, ())
        candidates = [c.canonical for c in usable if c.modality == modality and c.canonical not in used]
        candidates.sort(key=lambda n: pref.index(n) if n in pref else len(pref))
        if candidates:
            out[i] = candidates[0]
            used.add(candidates[0])
    return out


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

    @property
    def stages(self) -> np.ndarray:
        return self.probs.argmax(1).astype(np.int8)

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
    """Read a recording (EDF/EDF+/BDF, any montage) and an optional expert hypnogram."""
    from psgvlm.io.readers import read_recording

    return read_recording("generic", str(edf), hypnogram=None if hypnogram is None else str(hypnogram))


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
    from psgvlm.signal.epochs import epochs_from_recording, minmax_scale

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
    present = [m for m in mapping if m is not None]
    with warnings.catch_warnings(record=True) as caught:  # e.g. a channel upsampled: reported in the summary
        warnings.simplefilter("always")
        x_raw, expert, starts_s = epochs_from_recording(rec, present, sfreq)
    notes = [str(w.message) for w in caught]
    n_epochs, n_times = len(x_raw), x_raw.shape[-1]
    if n_epochs == 0:
        raise ValueError(f"the recording holds no whole 30-s epoch ({rec.duration_s:.1f} s of signal)")
    x = np.zeros((n_epochs, len(bands), n_times), dtype=np.float32)  # flat bands stay 0 = mid-line
    x[:, [i for i, m in enumerate(mapping) if m is not None], :] = minmax_scale(x_raw)
    del x_raw
    if epochs_path is not None:
        np.save(epochs_path, x.astype(np.float16))
    t_read = time.perf_counter()

    from PIL import Image

    probs = np.zeros((n_epochs, N_STAGES), dtype=np.float32)
    render_s = 0.0
    with tqdm(total=n_epochs, desc="stage", unit="epoch") as bar:
        for lo in range(0, n_epochs, batch_size):
            hi = min(n_epochs, lo + batch_size)
            r0 = time.perf_counter()
            images = [Image.fromarray(render_epoch(x[i], settings)) for i in range(lo, hi)]
            render_s += time.perf_counter() - r0
            p = np.asarray(predictor.predict_proba(images, batch_size=batch_size), dtype=np.float32)
            if p.shape != (hi - lo, N_STAGES):
                raise RuntimeError(f"predictor returned shape {p.shape}, expected {(hi - lo, N_STAGES)}")
            probs[lo:hi] = p
            bar.update(hi - lo)
            if progress is not None:
                progress(hi, n_epochs)
    t_end = time.perf_counter()
    recording = {
        "duration_s": float(rec.duration_s),
        "n_epochs": int(n_epochs),
        "onset_s": float(rec.onset_s),
        "channels": [{"name": c.canonical, "modality": c.modality, "sfreq": float(c.sfreq)} for c in rec.channels],
        # Counts only: a reader's pairing report may name files, which may name the patient.
        "pairing": {k: v for k, v in (rec.pairing or {}).items() if isinstance(v, int | float | bool)},
        "sha256": source_sha256,
        "warnings": notes,
    }
    return StageResult(
        probs=probs, starts_s=np.asarray(starts_s, dtype=np.float64),
        expert=None if expert is None else np.asarray(expert, dtype=np.int8),
        bands=bands, channel_map=mapping, sfreq=sfreq, settings=settings.as_dict(),
        model=model_info(run_dir), recording=recording,
        epochs_path=None if epochs_path is None else str(epochs_path),
        timings_s={"load_model": t_load - t0, "read_resample_scale": t_read - t_load, "render": render_s,
                   "render_and_predict": t_end - t_read, "total": t_end - t0},
        epoch_s=float(rec.epoch_s),
    )


def render_one(result: StageResult, epoch: int) -> np.ndarray:
    """Re-render epoch ``epoch`` of a staged night (needs ``epochs_path``): (size, size, 3) uint8."""
    from psgvlm.image.renderer import RenderSettings, render_epoch

    if result.epochs_path is None:
        raise ValueError("this result kept no epochs (stage_recording(..., epochs_path=None))")
    if not 0 <= epoch < result.n_epochs:
        raise ValueError(f"epoch {epoch!r} out of range; the night has epochs 0..{result.n_epochs - 1}")
    x = np.load(result.epochs_path, mmap_mode="r")
    return render_epoch(np.asarray(x[epoch], dtype=np.float32), RenderSettings.from_dict(result.settings))


# ------------------------------------------------------------------------------------------------
# Reference: YASA's pretrained stager (LightGBM classifiers shipped inside the yasa package)
# ------------------------------------------------------------------------------------------------
YASA_SFREQ = 100.0  # YASA resamples to 100 Hz itself; we hand it 100 Hz so our filter is the one used


def yasa_channels(rec) -> dict[str, str | None]:
    """The recording's EEG, EOG and EMG channel YASA should read (central EEG, LOC, chin EMG first)."""
    usable = [c for c in rec.channels if c.sfreq >= _MIN_SFREQ]
    out: dict[str, str | None] = {}
    for modality, pref in (("EEG", _EEG_ORDER), ("EOG", _EOG_ORDER), ("EMG", _EMG_ORDER)):
        names = [c.canonical for c in usable if c.modality == modality]
        names.sort(key=lambda n: pref.index(n) if n in pref else len(pref))
        out[modality.lower()] = names[0] if names else None
    return out


def yasa_reference(rec, n_epochs: int, *, eeg: str | None = None, eog: str | None = None,
                   emg: str | None = None) -> dict:
    """Stage the same epochs with ``yasa.SleepStaging`` (Vallat & Walker 2021), as a reference.

    Parameters
    ----------
    rec : Recording
        The night; epochs start at ``rec.onset_s`` like :func:`stage_recording`'s.
    n_epochs : int
        Epochs to return (the staged night's count).
    eeg, eog, emg : str, optional
        Channel names; default :func:`yasa_channels` (EEG is required, EOG/EMG optional).

    Returns
    -------
    dict with ``probs`` (n_epochs, 5) in our stage order, ``channels`` used, ``classifier`` name.
    """
    import mne
    import yasa

    from psgvlm.signal.epochs import resample

    picked = yasa_channels(rec)
    eeg, eog, emg = eeg or picked["eeg"], eog or picked["eog"], emg or picked["emg"]
    if eeg is None:
        raise ValueError(f"YASA needs an EEG channel; none found among {rec.ch_names}")
    names, types, data = [], [], []
    start = int(round(rec.onset_s * YASA_SFREQ))
    stop = start + int(n_epochs * rec.epoch_s * YASA_SFREQ)
    for name, kind in ((eeg, "eeg"), (eog, "eog"), (emg, "emg")):
        if name is None:
            continue
        ch = rec.channel(name)
        y = resample(ch.data, ch.sfreq, YASA_SFREQ)[start:stop]
        if len(y) < stop - start:
            y = np.pad(y, (0, stop - start - len(y)), mode="edge")
        names.append(f"{kind}:{ch.canonical}")
        types.append(kind)
        data.append(y.astype(np.float64) * 1e-6)  # MNE holds volts; our channels are microvolts
    raw = mne.io.RawArray(np.vstack(data), mne.create_info(names, YASA_SFREQ, types), verbose="error")
    kinds = dict(zip(types, names))
    sls = yasa.SleepStaging(raw, eeg_name=kinds["eeg"], eog_name=kinds.get("eog"), emg_name=kinds.get("emg"))
    with warnings.catch_warnings():
        # YASA's classifiers were pickled with an older scikit-learn (a LabelEncoder only); known, harmless.
        warnings.filterwarnings("ignore", message=".*Trying to unpickle estimator.*")
        proba = sls.predict().proba  # yasa >= 0.7: a Hypnogram carrying per-epoch probabilities
    # Column names differ across YASA versions ("W"/"R" from the classifier, "WAKE"/"REM" after 0.7).
    cols = {"W": ("WAKE", "W"), "N1": ("N1",), "N2": ("N2",), "N3": ("N3",), "REM": ("REM", "R")}
    pick = [next(c for c in cols[s] if c in proba.columns) for s in STAGES]
    probs = np.stack([proba[c].to_numpy() for c in pick], axis=1).astype(np.float32)[:n_epochs]
    if len(probs) < n_epochs:
        raise ValueError(f"YASA returned {len(probs)} epochs for a night of {n_epochs}")
    return {"probs": probs, "channels": {"eeg": eeg, "eog": eog, "emg": emg},
            "classifier": f"yasa {yasa.__version__} SleepStaging (LightGBM, pretrained)"}


# ------------------------------------------------------------------------------------------------
# Outputs
# ------------------------------------------------------------------------------------------------
def summarize(result: StageResult) -> dict:
    """Statistics, agreement and facts as written to ``summary.json``."""
    from psgvlm.metrics import stage_metrics
    from psgvlm.night.sleepstats import sleep_statistics
    from psgvlm.stages import stage_counts

    pred = result.stages
    out = {
        "notice": result.model["notice"],
        "model": result.model,
        "n_epochs": result.n_epochs,
        "epoch_s": result.epoch_s,
        "stage_counts": stage_counts(pred),
        "mean_confidence": float(result.confidence.mean()),
        "sleep_statistics": sleep_statistics(pred, result.epoch_s),
        "channels": [{"band": b, "recording_channel": m} for b, m in zip(result.bands, result.channel_map)],
        "flat_bands": [b for b, m in zip(result.bands, result.channel_map) if m is None],
        "render": {"sfreq": result.sfreq, "settings": result.settings},
        "recording": result.recording,
        "timings_s": result.timings_s,
    }
    if result.expert is not None:
        scored = result.expert != UNSCORED
        out["expert_stage_counts"] = stage_counts(result.expert)
        out["expert_sleep_statistics"] = sleep_statistics(result.expert, result.epoch_s)
        out["agreement"] = stage_metrics(result.expert, pred) if scored.any() else None
    return out


def hypnogram_tsv(result: StageResult) -> str:
    lines = ["init_sec\tduration_sec\tstage"]
    for start, code in zip(result.starts_s, result.stages):
        lines.append(f"{start:g}\t{result.epoch_s:g}\t{STAGES[int(code)]}")
    return "\n".join(lines) + "\n"


def hypnogram_csv(result: StageResult) -> str:
    head = ["epoch", "start_s", "stage", "confidence", *[f"p_{s}" for s in STAGES]]
    if result.expert is not None:
        head.append("expert")
    lines = [",".join(head)]
    for i, (start, code, p) in enumerate(zip(result.starts_s, result.stages, result.probs)):
        row = [str(i), f"{start:g}", STAGES[int(code)], f"{p.max():.4f}", *[f"{v:.4f}" for v in p]]
        if result.expert is not None:
            e = int(result.expert[i])
            row.append("UNS" if e == UNSCORED else STAGES[e])
        lines.append(",".join(row))
    return "\n".join(lines) + "\n"


def plot_hypnogram(result: StageResult, path) -> None:
    """Hypnogram (predicted, and expert when known) over the hypnodensity, saved as PNG.

    Uses a ``Figure`` with its own Agg canvas, never pyplot: nothing global is left open.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    hours = (result.starts_s - result.starts_s[0]) / 3600.0 if result.n_epochs else np.zeros(0)
    step = result.epoch_s / 3600.0
    edges = np.append(hours, hours[-1] + step)
    # Conventional hypnogram order top to bottom: W, REM, N1, N2, N3.
    level = {0: 4, 4: 3, 1: 2, 2: 1, 3: 0}
    rows = [("Predicted", result.stages)]
    if result.expert is not None:
        rows.append(("Expert", result.expert))
    fig = Figure(figsize=(10, 1.9 * len(rows) + 2.2), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(rows) + 1, 1, sharex=True,
                        gridspec_kw={"height_ratios": [1] * len(rows) + [1.1]})
    for ax, (title, codes) in zip(axes, rows):
        y = np.array([level.get(int(c), np.nan) for c in codes], dtype=float)
        ax.stairs(y, edges, baseline=None, color="black", linewidth=1.0)
        is_rem = np.asarray(codes) == 4  # REM drawn thick red, as sleep reports do
        ax.hlines(np.full(is_rem.sum(), 3.0), edges[:-1][is_rem], edges[1:][is_rem], color="tab:red",
                  linewidth=2.5)
        ax.set_yticks([4, 3, 2, 1, 0], ["W", "REM", "N1", "N2", "N3"])
        ax.set_ylim(-0.5, 4.5)
        ax.set_ylabel(title)
        ax.grid(axis="y", alpha=0.3)
    colors = ["#f2c14e", "#8ecae6", "#219ebc", "#023047", "#e63946"]
    ax = axes[-1]
    ax.stackplot(np.repeat(edges, 2)[1:-1], *[np.repeat(result.probs[:, k], 2) for k in range(N_STAGES)],
                 labels=STAGES, colors=colors, step=None)
    ax.set_ylim(0, 1)
    ax.set_xlim(edges[0], edges[-1])
    ax.set_ylabel("Hypnodensity")
    ax.set_xlabel("Time from first epoch (h)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    fig.suptitle(textwrap.fill(result.model["notice"], 110), fontsize=8, color="dimgray")
    tmp = Path(path).with_name(f".{Path(path).name}.tmp.png")
    fig.savefig(tmp, format="png")
    tmp.replace(path)


def write_outputs(result: StageResult, out) -> dict[str, Path]:
    """Write every output file of a staged night into ``out``; returns name -> path."""
    from psgvlm.io.edf import write_annotations_edf

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in ("hypnogram.tsv", "hypnogram.csv", "hypnodensity.npy",
                                           "hypnogram_annotations.edf", "hypnogram.png", "summary.json")}
    write_text_atomic(paths["hypnogram.tsv"], hypnogram_tsv(result))
    write_text_atomic(paths["hypnogram.csv"], hypnogram_csv(result))
    tmp = out / ".hypnodensity.tmp.npy"
    np.save(tmp, result.probs.astype(np.float32))
    tmp.replace(paths["hypnodensity.npy"])
    texts = [EDF_STAGE_TEXT[STAGES[int(c)]] for c in result.stages]
    write_annotations_edf(paths["hypnogram_annotations.edf"], onsets_s=result.starts_s,
                          durations_s=np.full(result.n_epochs, result.epoch_s), texts=texts)
    plot_hypnogram(result, paths["hypnogram.png"])
    summary = summarize(result)
    summary["files"] = sorted(paths)
    summary["provenance"] = provenance()
    write_json_atomic(paths["summary.json"], summary)
    if result.expert is not None and summary.get("agreement"):
        paths["metrics.json"] = out / "metrics.json"
        write_json_atomic(paths["metrics.json"], {"agreement": summary["agreement"], "notice": summary["notice"]})
    return paths


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="psgvlm stage", description=__doc__.split("\n\n")[0])
    parser.add_argument("--edf", required=True, help="the recording: EDF, EDF+ or BDF")
    parser.add_argument("--hypnogram", help="expert hypnogram (CSV/TSV/one label per line, EDF+, NSRR XML)")
    parser.add_argument("--channels", nargs="+",
                        help=f"recording channel per band of the model's image, top first ({EMPTY_BAND!r} = flat)")
    parser.add_argument("--run", help="run directory (default: the embedded default model)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args(argv)

    from psgvlm.night.uploads import UploadError, validate_recording_upload

    edf = Path(args.edf)
    if not edf.is_file():
        print(f"psgvlm stage: --edf {str(edf)!r} is not a file", file=sys.stderr)
        return 2
    if args.hypnogram and not Path(args.hypnogram).is_file():
        print(f"psgvlm stage: --hypnogram {args.hypnogram!r} is not a file", file=sys.stderr)
        return 2
    if args.run and not Path(args.run).is_dir():
        print(f"psgvlm stage: --run {args.run!r} is not a directory", file=sys.stderr)
        return 2
    try:
        validate_recording_upload(edf)
        rec = read_input(edf, args.hypnogram)
        result = stage_recording(rec, run_dir=args.run, channels=args.channels, batch_size=args.batch_size,
                                 source_sha256=_sha256(edf))
        paths = write_outputs(result, args.out)
    except (UploadError, ValueError, OSError) as err:
        print(f"psgvlm stage: {err}", file=sys.stderr)
        return 1
    stats = summarize(result)["sleep_statistics"]
    tst = stats["TST"]
    se = stats["SE"]
    print(f"staged {result.n_epochs} epochs in {result.timings_s['total']:.1f} s; "
          f"TST {tst:.1f} min, SE {se:.1f}%")
    print(f"wrote {', '.join(sorted(p.name for p in paths.values()))} to {args.out}")
    for note in result.recording["warnings"]:
        print(f"warning: {note}", file=sys.stderr)
    print(result.model["notice"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
