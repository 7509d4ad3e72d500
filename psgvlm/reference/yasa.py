"""YASA's pretrained ``SleepStaging`` (LightGBM, shipped inside the yasa package): the one YASA wrapper.

A real, frozen, externally trained stager. :func:`yasa_hypnodensity` runs it on one EEG channel
(optionally with EOG and EMG); :func:`yasa_predict` is the predictor of the contract in
:mod:`psgvlm.reference`: one stream per EEG channel (each with the EOG and EMG channel when present),
averaged. ``psgvlm stage``, the app and ``psgvlm reference --predictor yasa`` call it through
:data:`psgvlm.night.predictors.PREDICTORS`. Works offline: yasa 0.8.1 loads its classifiers from
``yasa/classifiers/*.joblib``.

YASA extracts its own features (including 7.5-min rolling windows), resamples to 100 Hz itself and
expects raw microvolts (it is given volts through MNE and converts). We hand it 100 Hz, resampled and
cut by :func:`psgvlm.signal.epochs.epochs_from_recording` (the one epoch cutter), so YASA's epoch k is
the recording's epoch k, ``[onset_s + 30 k, onset_s + 30 (k + 1))``. Age and sex, when the recording
states them, can be passed as YASA's metadata features (``demographics=True``); the predictor leaves
them out, as the other predictors see signals only.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from psgvlm.reference import Hypnodensity, PredictorUnavailable, on_grid, reference_channels
from psgvlm.stages import STAGES

# YASA's column names per our stage (its classifier says W/R, yasa.Hypnogram renames to WAKE/REM)
_YASA_TO_OURS_COLS = {"W": ("WAKE", "W"), "N1": ("N1",), "N2": ("N2",), "N3": ("N3",), "REM": ("REM", "R")}
YASA_SFREQ_HZ = 100.0  # YASA downsamples to 100 Hz internally; we hand it 100 Hz so our filter is the one used
MIN_EPOCHS = 2  # YASA's rolling features need a few epochs; fewer is refused
YASA_MIN_SFREQ_HZ = 80.0  # SleepStaging refuses data below this rate; slower channels are upsampled to 100 Hz


def import_antropy():
    """Import antropy (YASA's entropy features) with numba's on-disk cache on; returns the module.

    antropy compiles six numba functions with explicit signatures when it is imported, without
    ``cache=True``: 10-14 s of every process that stages a night, before YASA reads one sample. While
    it is imported, ``numba.jit`` defaults ``cache=True``, so the machine code is compiled once and
    loaded from numba's cache (``__pycache__`` beside antropy, or ``NUMBA_CACHE_DIR``) afterwards.
    """
    import sys

    if "antropy" in sys.modules:
        return sys.modules["antropy"]
    import numba

    jit = numba.jit

    def cached_jit(*args, **kwargs):
        kwargs.setdefault("cache", True)
        return jit(*args, **kwargs)

    numba.jit = cached_jit
    try:
        import antropy
    finally:
        numba.jit = jit
    return antropy


def _yasa_raw(rec, names: list[str], types: list[str], n_epochs: int):
    """An MNE Raw (volts, 100 Hz) of ``n_epochs`` epochs of ``names``, cut by the one epoch cutter."""
    import mne

    from psgvlm.signal.epochs import UpsampledChannelWarning, epochs_from_recording

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UpsampledChannelWarning)  # a 50 Hz channel upsampled: fine for YASA
        x, _, _ = epochs_from_recording(rec, names, YASA_SFREQ_HZ, epoch_s=rec.epoch_s)
    if len(x) < n_epochs:
        raise ValueError(f"recording {rec.recording!r}: channels {names} hold {len(x)} whole epochs at "
                         f"{YASA_SFREQ_HZ:g} Hz, fewer than the {n_epochs} asked for")
    data = x[:n_epochs].transpose(1, 0, 2).reshape(len(names), -1).astype(np.float64) * 1e-6  # uV -> V
    return mne.io.RawArray(data, mne.create_info(names, YASA_SFREQ_HZ, types), verbose="error")


def yasa_hypnodensity(rec, eeg_channel: str, *, eog_channel: str | None = None,
                      emg_channel: str | None = None, n_epochs: int | None = None,
                      demographics: bool = True) -> np.ndarray:
    """Hypnodensity of YASA on one EEG channel (optionally with EOG/EMG) of ``rec``.

    Parameters
    ----------
    rec : psgvlm.io.recording.Recording
    eeg_channel : str
        Canonical name of an EEG channel.
    eog_channel, emg_channel : str, optional
        Add YASA's EOG/EMG features (its eeg+eog+emg classifier) when given.
    n_epochs : int, optional
        Epochs to stage from ``rec.onset_s``; default ``rec.n_epochs``.
    demographics : bool
        Give YASA the recording's age and sex (``rec.meta``) as features when both are known.

    Returns
    -------
    probs : np.ndarray, shape (n_epochs, 5), float64
        Columns W, N1, N2, N3, REM; rows sum to 1.
    """
    import yasa

    import_antropy()
    ch = rec.channel(eeg_channel)
    if ch.modality != "EEG":
        raise ValueError(f"channel {eeg_channel!r} is {ch.modality}, not EEG; EEG channels: "
                         f"{[c.canonical for c in rec.channels if c.modality == 'EEG']}")
    n_epochs = rec.n_epochs if n_epochs is None else int(n_epochs)
    if n_epochs < MIN_EPOCHS:
        raise ValueError(f"recording {rec.recording!r} has {n_epochs} epochs; YASA needs >= {MIN_EPOCHS}")
    picked = [(n, t) for n, t in ((eeg_channel, "eeg"), (eog_channel, "eog"), (emg_channel, "emg")) if n]
    names = [rec.channel(n).canonical for n, _ in picked]
    raw = _yasa_raw(rec, names, [t for _, t in picked], n_epochs)
    meta = None
    if demographics and rec.meta.get("age") is not None and rec.meta.get("sex") in ("M", "F"):
        meta = {"age": float(rec.meta["age"]), "male": rec.meta["sex"] == "M"}
    kinds = {t: name for name, (_, t) in zip(names, picked)}
    with warnings.catch_warnings():
        # Includes: YASA's classifiers were pickled with an older scikit-learn (a LabelEncoder only).
        warnings.simplefilter("ignore")
        sls = yasa.SleepStaging(raw, eeg_name=kinds["eeg"], eog_name=kinds.get("eog"), emg_name=kinds.get("emg"),
                                metadata=meta)
        proba = sls.predict().proba  # yasa >= 0.7: a Hypnogram carrying the probabilities
    cols = {str(c).upper(): c for c in proba.columns}
    order = [_YASA_TO_OURS_COLS[s] for s in STAGES]
    missing = [o for o in order if not any(k in cols for k in o)]
    if missing:
        raise RuntimeError(f"YASA probabilities have columns {list(proba.columns)}; expected {order}")
    probs = np.stack([proba[cols[next(k for k in o if k in cols)]].to_numpy(dtype=np.float64) for o in order], 1)
    if len(probs) != n_epochs:
        raise RuntimeError(f"YASA returned {len(probs)} epochs for {n_epochs} in {rec.recording!r}")
    return probs / probs.sum(1, keepdims=True)


def yasa_predict(rec, n_epochs: int | None = None, *, eeg=None, eog=None, emg=None, max_eeg: int | None = 1,
                 demographics: bool = False) -> Hypnodensity:
    """YASA on a night: one stream per EEG channel (with the EOG and EMG channel when present), averaged.

    Parameters
    ----------
    rec : psgvlm.io.recording.Recording
        Epoch ``k`` is ``[rec.onset_s + 30 k, ...)`` (0 s for ``psgvlm stage``).
    n_epochs : int, optional
        Epochs of the grid; default ``rec.n_epochs``. Epochs past the end of the channels are unscored.
    eeg, eog, emg, max_eeg
        Channels (:func:`psgvlm.reference.reference_channels`; default the best EEG, EOG, EMG channel).
    demographics : bool
        Give YASA the recording's age and sex as features when both are known (off beside the VLM,
        which sees signals only).

    Returns
    -------
    psgvlm.reference.Hypnodensity
        ``streams`` keyed by EEG channel.

    Raises
    ------
    PredictorUnavailable
        No EEG channel, fewer than 2 epochs.
    """
    import yasa

    n_epochs = rec.n_epochs if n_epochs is None else int(n_epochs)
    chans = reference_channels(rec, eeg=eeg, eog=eog, emg=emg, max_eeg=max_eeg)
    used = [*chans["eeg"], *chans["eog"], *chans["emg"]]
    n_sig = int(math.floor((min(rec.channel(c).duration_s for c in used) - rec.onset_s) / rec.epoch_s + 1e-9))
    n_run = min(n_epochs, n_sig)
    if n_run < MIN_EPOCHS:
        raise PredictorUnavailable(f"YASA needs >= {MIN_EPOCHS} epochs of 30 s; the channels {used} hold {max(n_run, 0)}")
    notes = [f"channel {c!r} is sampled at {rec.channel(c).sfreq:g} Hz; YASA needs >= {YASA_MIN_SFREQ_HZ:g} Hz, so it "
             f"was upsampled to {YASA_SFREQ_HZ:g} Hz (no content above {rec.channel(c).sfreq / 2:g} Hz)"
             for c in used if rec.channel(c).sfreq < YASA_MIN_SFREQ_HZ]
    eog1 = chans["eog"][0] if chans["eog"] else None
    emg1 = chans["emg"][0] if chans["emg"] else None
    streams = {}
    for e in chans["eeg"]:
        p = yasa_hypnodensity(rec, e, eog_channel=eog1, emg_channel=emg1, n_epochs=n_run, demographics=demographics)
        streams[e] = on_grid(p, n_epochs)[0]
    probs, unscored = on_grid(np.mean([s[:n_run] for s in streams.values()], axis=0), n_epochs)
    kind = "+".join(k for k, v in (("eeg", True), ("eog", eog1), ("emg", emg1)) if v)
    return Hypnodensity(probs=probs, channels=used, unscored=unscored, streams=streams, notes=notes,
                        info={"classifier": f"yasa {yasa.__version__} SleepStaging ({kind}, LightGBM, pretrained)",
                              "eeg": chans["eeg"], "eog": eog1, "emg": emg1,
                              "combined": "mean of the per-EEG-channel streams" if len(streams) > 1 else "one stream"})
