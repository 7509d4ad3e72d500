"""YASA's pretrained ``SleepStaging`` (LightGBM, shipped inside the yasa package): the one YASA wrapper.

A real, frozen, externally trained stager. :func:`yasa_hypnodensity` runs it on one EEG channel
(optionally with EOG and EMG); NAP and the side-by-side tables use one stream per EEG channel
(:func:`yasa_streams`, ``psgvlm yasa``), ``psgvlm stage`` and the app one reference per night with
the channels :func:`yasa_channels` picks (:func:`yasa_reference`). Works offline: yasa 0.8.1 loads
its classifiers from ``yasa/classifiers/*.joblib``.

YASA extracts its own features (including 7.5-min rolling windows), resamples to 100 Hz itself and
expects raw microvolts (it is given volts through MNE and converts). We hand it 100 Hz, resampled and
cut by :func:`psgvlm.signal.epochs.epochs_from_recording` (the one epoch cutter), so YASA's epoch k is
the recording's epoch k, ``[onset_s + 30 k, onset_s + 30 (k + 1))``. Age and sex, when the recording
states them, are passed as YASA's metadata features to the per-channel streams (not to the reference
beside the model, which sees signals only).
"""

from __future__ import annotations

import sys
import warnings

import numpy as np

from psgvlm.stages import STAGES

# YASA's column names per our stage (its classifier says W/R, yasa.Hypnogram renames to WAKE/REM)
_YASA_TO_OURS_COLS = {"W": ("WAKE", "W"), "N1": ("N1",), "N2": ("N2",), "N3": ("N3",), "REM": ("REM", "R")}
YASA_SFREQ_HZ = 100.0  # YASA downsamples to 100 Hz internally; we hand it 100 Hz so our filter is the one used
MIN_EPOCHS = 2  # YASA's rolling features need a few epochs; fewer is refused


def yasa_channels(rec) -> dict[str, str | None]:
    """``{"eeg", "eog", "emg"}``: the channel of each YASA reads by default, or None.

    The first of each modality by :func:`psgvlm.io.channels.rank_channels` (central EEG first, LOC,
    chin EMG), among channels sampled at >= 50 Hz.
    """
    from psgvlm.io.channels import rank_channels

    out: dict[str, str | None] = {}
    for modality in ("EEG", "EOG", "EMG"):
        names = rank_channels(rec.channels, modality)
        out[modality.lower()] = names[0] if names else None
    return out


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


def yasa_reference(rec, n_epochs: int | None = None, *, eeg: str | None = None, eog: str | None = None,
                   emg: str | None = None) -> dict:
    """Stage a night with YASA on the channels a scorer would read first, as a reference.

    Parameters
    ----------
    rec : psgvlm.io.recording.Recording
        The night; epochs start at ``rec.onset_s`` (0 s from ``psgvlm.night.stage.read_input``, as staged).
    n_epochs : int, optional
        Epochs to return (the staged night's count); default ``rec.n_epochs``.
    eeg, eog, emg : str, optional
        Channel names; default :func:`yasa_channels` (EEG is required, EOG/EMG optional).

    Returns
    -------
    dict with ``probs`` (n_epochs, 5) float32 in our stage order, ``channels`` used, ``classifier`` name.

    YASA sees the signals only (no age or sex), like the model it is compared with.
    """
    import yasa

    picked = yasa_channels(rec)
    eeg, eog, emg = eeg or picked["eeg"], eog or picked["eog"], emg or picked["emg"]
    if eeg is None:
        raise ValueError(f"YASA needs an EEG channel; none found among {rec.ch_names}")
    probs = yasa_hypnodensity(rec, eeg, eog_channel=eog, emg_channel=emg, n_epochs=n_epochs, demographics=False)
    return {"probs": probs.astype(np.float32), "channels": {"eeg": eeg, "eog": eog, "emg": emg},
            "classifier": f"yasa {yasa.__version__} SleepStaging (LightGBM, pretrained)"}


def yasa_streams(rec, eeg_channels=None) -> dict[str, np.ndarray]:
    """``{eeg_channel: hypnodensity (n_epochs, 5)}`` for every EEG channel (or those given)."""
    chans = eeg_channels or [c.canonical for c in rec.channels if c.modality == "EEG"]
    if not chans:
        raise ValueError(f"recording {rec.recording!r} has no EEG channel; present: {rec.modalities}")
    return {c: yasa_hypnodensity(rec, c) for c in chans}


def write_yasa_run(recordings, out, *, eeg_channels=None) -> dict:
    """Run YASA per EEG channel on ``recordings`` and write ``OUT/channels/<ch>/predictions.jsonl``.

    Every recording must have the same EEG channels (or hold all of ``eeg_channels``). Returns
    ``{channel: metrics}``.
    """
    from pathlib import Path

    from tqdm import tqdm

    from psgvlm.predictions import make_rows, write_predictions
    from psgvlm.provenance import provenance, write_json_atomic

    out = Path(out)
    rows: dict[str, list] = {}
    chans = None
    for rec in tqdm(recordings, desc="YASA"):
        eeg = [c.canonical for c in rec.channels if c.modality == "EEG"]
        want = list(eeg_channels) if eeg_channels else eeg
        missing = [c for c in want if c not in eeg]
        if missing:
            raise ValueError(f"recording {rec.recording!r} lacks EEG channels {missing}; it has {eeg}")
        if chans is None:
            chans = want
        elif want != chans:
            raise ValueError(f"recording {rec.recording!r} has EEG channels {want}, earlier ones {chans}; "
                             f"pass eeg_channels to pick a common set")
        n = rec.n_epochs
        for ch, probs in yasa_streams(rec, chans).items():
            rows.setdefault(ch, []).extend(make_rows(
                dataset=rec.dataset, subjects=[rec.subject] * n, recordings=[rec.recording] * n,
                epochs=range(n), starts_s=rec.onset_s + rec.epoch_s * np.arange(n),
                labels=rec.stages[:n].tolist(), probs=probs))
    metrics = {ch: write_predictions(out / "channels" / ch, r, extra_meta={"kind": "yasa", "channel": ch})
               for ch, r in rows.items()}
    import yasa

    write_json_atomic(out / "meta.json", {"kind": "yasa", "config": {"yasa": yasa.__version__, "channels": chans,
                                                                     "classifier": "yasa default (eeg)"},
                                          "provenance": provenance()})
    return metrics


def main(argv=None) -> int:
    """``python -m psgvlm.reference.yasa --format F --input DIR --out RUN [--channels C3 C4]``."""
    import argparse

    from psgvlm.io.readers import find_recordings, read_recording

    ap = argparse.ArgumentParser(prog="psgvlm yasa", description=main.__doc__)
    ap.add_argument("--format", required=True, help="reader of the recordings (isruc, mass, sleepedf, ...)")
    ap.add_argument("--input", required=True, help="recordings folder or one file")
    ap.add_argument("--out", required=True, help="run dir: OUT/channels/<ch>/predictions.jsonl + meta.json")
    ap.add_argument("--channels", nargs="*", help="EEG channels to stage (default: every EEG channel)")
    a = ap.parse_args(argv)
    try:
        found = find_recordings(a.format, a.input)
        if not found:
            raise FileNotFoundError(f"no {a.format!r} recordings under {a.input}")
        metrics = write_yasa_run((read_recording(a.format, **kw) for kw in found), a.out, eeg_channels=a.channels)
    except (FileNotFoundError, ValueError) as err:
        print(f"psgvlm yasa: {err}", file=sys.stderr)
        return 2
    for ch, m in metrics.items():
        print(ch, {k: round(m["pooled"].get(k, float("nan")), 3) for k in ("kappa", "macro_f1")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
