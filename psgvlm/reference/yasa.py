"""YASA's pretrained ``SleepStaging`` (LightGBM, shipped inside the yasa package) run per EEG channel.

A real, frozen, externally trained stager for NAP and for the side-by-side tables: each EEG channel
gives its own hypnodensity (W, N1, N2, N3, REM), so NAP sees one YASA stream per channel. Works
offline: yasa 0.8.1 loads its classifiers from ``yasa/classifiers/*.joblib``.

YASA extracts its own features (including 7.5-min rolling windows), resamples to 100 Hz itself and
expects raw microvolts (it is given volts through MNE and converts). The signal is cropped to the
scored epochs, ``[onset_s, onset_s + 30 n_epochs)``, so YASA's epoch k is the recording's epoch k.
"""

from __future__ import annotations

import sys
import warnings

import numpy as np

from psgvlm.stages import STAGES

# YASA's column names per our stage (its classifier says W/R, yasa.Hypnogram renames to WAKE/REM)
_YASA_TO_OURS_COLS = {"W": ("WAKE", "W"), "N1": ("N1",), "N2": ("N2",), "N3": ("N3",), "REM": ("REM", "R")}
YASA_SFREQ_HZ = 100.0  # YASA downsamples to 100 Hz internally; we hand it 100 Hz directly
MIN_EPOCHS = 2  # YASA's rolling features need a few epochs; fewer is refused


def yasa_hypnodensity(rec, eeg_channel: str, *, eog_channel: str | None = None,
                      emg_channel: str | None = None) -> np.ndarray:
    """Hypnodensity (n_epochs, 5) of YASA on one EEG channel (optionally with EOG/EMG) of ``rec``.

    Parameters
    ----------
    rec : psgvlm.io.recording.Recording
    eeg_channel : str
        Canonical name of an EEG channel.
    eog_channel, emg_channel : str, optional
        Add YASA's EOG/EMG features (its eeg+eog+emg classifier) when given.

    Returns
    -------
    probs : np.ndarray, shape (rec.n_epochs, 5), columns W, N1, N2, N3, REM.
    """
    import mne
    import yasa

    from psgvlm.signal.epochs import resample

    ch = rec.channel(eeg_channel)
    if ch.modality != "EEG":
        raise ValueError(f"channel {eeg_channel!r} is {ch.modality}, not EEG; EEG channels: "
                         f"{[c.canonical for c in rec.channels if c.modality == 'EEG']}")
    n_epochs = rec.n_epochs
    if n_epochs < MIN_EPOCHS:
        raise ValueError(f"recording {rec.recording!r} has {n_epochs} epochs; YASA needs >= {MIN_EPOCHS}")
    names, data = [], []
    for name in [eeg_channel, eog_channel, emg_channel]:
        if name is None:
            continue
        c = rec.channel(name)
        x = np.asarray(c.data, dtype=np.float64)
        if not np.all(np.isfinite(x)):
            raise ValueError(f"channel {name!r} of {rec.recording!r} holds NaN/inf samples")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # upsampling a 50 Hz channel is fine for YASA's features
            y = resample(x, c.sfreq, YASA_SFREQ_HZ)
        start = int(round(rec.onset_s * YASA_SFREQ_HZ))
        n = int(round(n_epochs * rec.epoch_s * YASA_SFREQ_HZ))
        y = y[start:start + n]
        if len(y) < n:
            y = np.pad(y, (0, n - len(y)), mode="edge")
        names.append(name)
        data.append(y * 1e-6)  # microvolts -> volts for MNE
    types = ["eeg"] + (["eog"] if eog_channel else []) + (["emg"] if emg_channel else [])
    info = mne.create_info(names, YASA_SFREQ_HZ, types)
    raw = mne.io.RawArray(np.vstack(data), info, verbose="error")
    meta = None
    if rec.meta.get("age") is not None and rec.meta.get("sex") in ("M", "F"):
        meta = {"age": float(rec.meta["age"]), "male": rec.meta["sex"] == "M"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sls = yasa.SleepStaging(raw, eeg_name=eeg_channel, eog_name=eog_channel, emg_name=emg_channel,
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
