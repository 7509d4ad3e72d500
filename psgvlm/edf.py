"""Write EDF / EDF+ files: signals at their own sampling rates, and annotation-only EDF+ files.

A thin layer over ``edfio`` (reading stays with mne in :mod:`psgvlm.readers`). It picks each
signal's physical range from the data with headroom, so nothing clips and the 16-bit (or 12-bit)
quantisation step stays small, writes through a temporary file and a rename so a crash never
leaves a half-written EDF under its final name, and writes the annotation-only EDF+ files that
Sleep-EDF hypnograms and MASS ``Base.edf`` files are (also used by ``psgvlm stage`` for its EDF+
output).
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import edfio
import numpy as np

# EDF header numbers are 8 ASCII characters; keep ranges well inside that.
_MAX_ABS_PHYSICAL = 9_999_999.0


@dataclass(frozen=True)
class EdfChannel:
    """One signal to write: samples in physical units at ``sfreq`` Hz."""

    label: str  # as it stands in the file, e.g. "C3-A2", "EEG Fpz-Cz"
    sfreq: float  # Hz; sfreq * data_record_duration must be a whole number of samples
    data: np.ndarray  # (n_times,) physical units
    unit: str = "uV"  # EDF physical dimension
    transducer: str = ""
    prefiltering: str = ""
    physical_range: tuple[float, float] | None = None  # None: chosen from the data with headroom
    digital_range: tuple[int, int] = (-32768, 32767)


def _nice_ceil(value: float) -> float:
    """Smallest number >= value with two significant digits (120, 0.35, 4500...)."""
    if value <= 0:
        return 1.0
    exp = math.floor(math.log10(value)) - 1
    step = 10.0**exp
    return round(math.ceil(value / step - 1e-9) * step, max(0, -exp))


def physical_range(x, *, headroom: float = 1.2) -> tuple[float, float]:
    """A physical (min, max) for an EDF header that holds ``x`` with ``headroom``.

    Signals that cross zero get a symmetric range (as EEG amplifiers write it); one-signed signals
    (SpO2 in %, temperature) get a range around their own span so quantisation stays fine.
    A flat signal gets +-1 around its value.

    Parameters
    ----------
    x : array-like
        Samples in physical units; must be finite.
    headroom : float
        Factor (>= 1) applied to the peak (or span) so later edits do not clip.

    Returns
    -------
    (lo, hi) : tuple of float
    """
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return (-1.0, 1.0)
    if not np.all(np.isfinite(x)):
        raise ValueError("signal has NaN or inf samples; EDF cannot store them")
    lo, hi = float(x.min()), float(x.max())
    if hi - lo < 1e-9:
        return (math.floor(lo) - 1.0, math.floor(lo) + 1.0)
    if lo < 0 < hi or min(abs(lo), abs(hi)) < 0.05 * max(abs(lo), abs(hi)):
        peak = _nice_ceil(max(abs(lo), abs(hi)) * headroom)
        return (-peak, peak)
    pad = (hi - lo) * (headroom - 1.0) / 2 + 1e-6 * max(abs(lo), abs(hi))
    step = _nice_ceil(hi - lo) / 10
    return (math.floor((lo - pad) / step) * step, math.ceil((hi + pad) / step) * step)


def _signal(ch: EdfChannel) -> edfio.EdfSignal:
    data = np.asarray(ch.data, dtype=np.float64)
    rng_ = ch.physical_range if ch.physical_range is not None else physical_range(data)
    lo, hi = (float(v) for v in rng_)
    if not (lo < hi and abs(lo) < _MAX_ABS_PHYSICAL and abs(hi) < _MAX_ABS_PHYSICAL):
        raise ValueError(f"channel {ch.label!r}: physical range {rng_!r} does not fit an EDF header")
    data = np.clip(data, lo, hi)  # an explicit range is a promise: clip like an amplifier would
    return edfio.EdfSignal(
        data, ch.sfreq, label=ch.label, physical_dimension=ch.unit, physical_range=(lo, hi),
        digital_range=ch.digital_range, transducer_type=ch.transducer, prefiltering=ch.prefiltering,
    )


def _write_atomic(edf: edfio.Edf, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        edf.write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def edf_patient(*, sex: str | None = None, birthdate: _dt.date | None = None, code: str = "X",
            name: str = "X") -> edfio.Patient:
    """EDF+ patient field (code, sex F/M/X, birthdate, name); anonymised defaults ``X``."""
    sex_ = (sex or "X").upper()
    if sex_ not in ("F", "M", "X"):
        raise ValueError(f"sex {sex!r} must be 'F', 'M' or None")
    return edfio.Patient(code=code, sex=sex_, birthdate=birthdate, name=name.replace(" ", "_"))


def write_edf(path, channels: Sequence[EdfChannel], *, patient: edfio.Patient | None = None,
              startdatetime: _dt.datetime | None = None, data_record_duration: float = 1.0,
              annotations: Sequence[tuple[float, float, str]] | None = None,
              edf_plus: bool = False, recording_additional: Sequence[str] = ()) -> Path:
    """Write signals (each at its own rate) to an EDF file, atomically.

    Parameters
    ----------
    path : str or Path
        Output file; its folder is created.
    channels : sequence of EdfChannel
        Signals in file order; all must last the same time.
    patient : edfio.Patient, optional
        Patient field (see :func:`edf_patient`); anonymised when None.
    startdatetime : datetime, optional
        Recording start (date and time of the first sample).
    data_record_duration : float
        Seconds per data record (1 s for most PSG, 30 s for Sleep-EDF).
    annotations : sequence of (onset_s, duration_s, text), optional
        Written to an "EDF Annotations" signal; the file is then EDF+C.
    edf_plus : bool
        Write EDF+C (with an annotation signal) even without annotations.
    recording_additional : sequence of str
        Extra words for the EDF+ recording field.

    Returns
    -------
    Path of the written file.
    """
    path = Path(path)
    if not channels:
        raise ValueError(f"{path}: no channels to write")
    durations = {ch.label: len(ch.data) / ch.sfreq for ch in channels}
    if max(durations.values()) - min(durations.values()) > 1e-6:
        raise ValueError(f"{path}: channels last different times (s): {durations}")
    start = startdatetime or _dt.datetime(1985, 1, 1)
    anns = None
    if annotations is not None or edf_plus:
        anns = [edfio.EdfAnnotation(float(o), float(d) if d is not None else None, str(t))
                for o, d, t in (annotations or ())]
    edf = edfio.Edf(
        [_signal(ch) for ch in channels],
        patient=patient or edf_patient(),
        recording=edfio.Recording(startdate=start.date(), additional=tuple(recording_additional)),
        starttime=start.time().replace(microsecond=0),
        data_record_duration=data_record_duration,
        annotations=anns,
    )
    return _write_atomic(edf, path)


def write_annotations_edf(path, onsets_s, durations_s, texts, *, startdatetime: _dt.datetime | None = None,
                          patient: edfio.Patient | None = None) -> Path:
    """Write an annotation-only EDF+ file (like a Sleep-EDF hypnogram or a MASS ``Base.edf``).

    Parameters
    ----------
    path : str or Path
        Output file.
    onsets_s : sequence of float
        Onsets in seconds from the recording start, (n_annotations,).
    durations_s : sequence of float or None
        Durations in seconds (None entries: no duration), (n_annotations,).
    texts : sequence of str
        Annotation texts, e.g. "Sleep stage 2", (n_annotations,).
    startdatetime : datetime, optional
        Start of the recording the annotations refer to.
    patient : edfio.Patient, optional
        Patient field; anonymised when None.

    Returns
    -------
    Path of the written file.
    """
    path = Path(path)
    onsets = list(onsets_s)
    durations = list(durations_s)
    texts = list(texts)
    if not (len(onsets) == len(durations) == len(texts)):
        raise ValueError(
            f"{path}: {len(onsets)} onsets, {len(durations)} durations and {len(texts)} texts; "
            "they must have the same length"
        )
    if not onsets:
        raise ValueError(f"{path}: no annotations to write")
    for i, (o, d) in enumerate(zip(onsets, durations)):
        if not (np.isfinite(o) and o >= 0) or (d is not None and not (np.isfinite(d) and d >= 0)):
            raise ValueError(f"{path}: annotation {i} has onset {o!r} s / duration {d!r} s; "
                             "both must be finite and >= 0")
    start = startdatetime or _dt.datetime(1985, 1, 1)
    anns = [edfio.EdfAnnotation(float(o), None if d is None else float(d), str(t))
            for o, d, t in zip(onsets, durations, texts)]
    edf = edfio.Edf(
        [], patient=patient or edf_patient(), recording=edfio.Recording(startdate=start.date()),
        starttime=start.time().replace(microsecond=0), annotations=anns,
    )
    return _write_atomic(edf, path)
