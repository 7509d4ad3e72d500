"""EDF / EDF+ / BDF files: parse and check the fixed header, open a file for reading, and write EDF
files (signals at their own sampling rates, annotation-only EDF+ files).

The header parser and :func:`check_edf` are the strict gate every reader passes a file through;
:func:`open_edf` opens it with ``edfio`` (turning signals into channels is
:mod:`psgvlm.io.readers.signal_files`' job). Writing is a thin layer over ``edfio``. It picks each
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

from psgvlm.provenance import shared_mode

# EDF header numbers are 8 ASCII characters; keep ranges well inside that.
_MAX_ABS_PHYSICAL = 9_999_999.0


@dataclass(frozen=True)
class EdfFileHeader:
    """The fixed and per-signal EDF/BDF header fields checks need (no patient identification)."""

    base: str  # "EDF" or "BDF"
    kind: str  # base plus "+C"/"+D" when the reserved field says so
    sample_bytes: int  # 2 (EDF) or 3 (BDF)
    header_bytes: int
    n_records: int  # -1 while recording (the file's length decides)
    record_s: float  # data record duration, seconds
    labels: list[str]
    units: list[str]
    samples_per_record: list[int]
    file_bytes: int

    @property
    def record_bytes(self) -> int:
        return self.sample_bytes * sum(self.samples_per_record)


def _text(chunk: bytes) -> str:
    try:
        return chunk.decode("utf-8").strip()
    except UnicodeDecodeError:
        # EDF allows only printable ASCII; writers also use UTF-8 or latin-1 in labels: accepted.
        return chunk.decode("latin-1").strip()


# A rate above this is a header error (a record duration in ms, a sample count typo): no PSG amplifier
# samples faster, and resampling from it would only exhaust memory.
MAX_SFREQ_HZ = 100_000.0
_ANNOTATION_LABELS = ("EDF Annotations", "BDF Annotations")


def parse_edf_header(path, *, max_signals: int | None = None) -> EdfFileHeader:
    """Parse and check the 256-byte fixed header and the per-signal headers of an EDF/BDF file.

    Hand-written because it must be strict where readers are lenient (mne and edfio accept truncated
    files with a warning, and an uncalibrated or zero-duration header surfaces as a library internal)
    and must not load any data. Every field is checked, each refusal naming the field and its value:
    the version; the start date (``dd.mm.yy``) and time (``hh.mm.ss``); the header size against the
    number of signals; the number of data records (-1 "unknown" or >= 1); the record duration (finite,
    > 0; 0 only in an annotation-only EDF+ file); the number of signals (>= 1, at most
    ``max_signals``); per signal: a non-empty label, numeric physical minimum and maximum that differ
    (minimum > maximum is allowed: an inverted signal), integer digital minimum < maximum (a range
    beyond the 16-/24-bit samples is allowed: it only calibrates), samples per record >= 1, and a rate of at most
    :data:`MAX_SFREQ_HZ`. Messages name the bad value but not the path (callers add it where it is
    safe to show). Size-versus-records policy is the caller's.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        Not EDF/BDF, a malformed field, more than ``max_signals`` signals, or signal headers cut off.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    size = path.stat().st_size
    with open(path, "rb") as f:
        fixed = f.read(256)
        if len(fixed) < 256:
            raise ValueError(f"not an EDF/BDF file: only {size} bytes, shorter than the 256-byte header")
        version = fixed[:8]
        if version == b"0       ":
            base, sample_bytes = "EDF", 2
        elif version == b"\xffBIOSEMI":
            base, sample_bytes = "BDF", 3
        else:
            raise ValueError(f"not an EDF/BDF file: the first 8 bytes {version!r} are not the EDF ('0') or "
                             "BDF (0xFF 'BIOSEMI') version field")
        bad = f"malformed {base} header"

        def number(chunk: bytes, what: str, cast=float):
            raw = _text(chunk)
            try:
                value = cast(raw)
            except ValueError:
                raise ValueError(f"{bad}: {what} is {raw!r}, not {'an integer' if cast is int else 'a number'}") from None
            if not math.isfinite(value):
                raise ValueError(f"{bad}: {what} is {raw!r}, not a finite number")
            return value

        for what, chunk, fmt, shown in (("start date", fixed[168:176], "%d.%m.%y", "dd.mm.yy"),
                                        ("start time", fixed[176:184], "%H.%M.%S", "hh.mm.ss")):
            text = _text(chunk)
            try:
                _dt.datetime.strptime(text, fmt)
            except ValueError:
                raise ValueError(f"{bad}: {what} is {text!r}, not a valid {shown}") from None
        reserved = _text(fixed[192:236])
        kind = base + next((t[3:] for t in ("EDF+C", "EDF+D", "BDF+C", "BDF+D") if reserved.startswith(t)), "")
        header_bytes = number(fixed[184:192], "the number of header bytes", int)
        n_records = number(fixed[236:244], "the number of data records", int)
        record_s = number(fixed[244:252], "the data record duration")
        ns = number(fixed[252:256], "the number of signals", int)
        if ns < 1:
            raise ValueError(f"{bad}: the number of signals is {ns}; a file holds at least 1")
        if max_signals is not None and ns > max_signals:
            raise ValueError(f"{base} header declares {ns} signals; allowed: 1..{max_signals}")
        if header_bytes != 256 * (ns + 1):
            raise ValueError(f"{bad}: {ns} signals need {256 * (ns + 1)} header bytes, the header says {header_bytes}")
        if n_records == 0 or n_records < -1:
            raise ValueError(f"{bad}: the number of data records is {n_records}; it must be >= 1 "
                             "(or -1 while recording)")
        if record_s < 0:
            raise ValueError(f"{bad}: the data record duration is {record_s:g} s; it must be > 0")
        per = f.read(256 * ns)
    if len(per) < 256 * ns:
        raise ValueError(f"truncated {base} file: the signal headers need {256 * ns} bytes, only {len(per)} "
                         "are present")

    def column(offset: int, width: int) -> list[bytes]:
        return [per[offset * ns + i * width: offset * ns + (i + 1) * width] for i in range(ns)]

    labels = [_text(c) for c in column(0, 16)]
    spr_offset = 16 + 80 + 8 + 8 + 8 + 8 + 8 + 80  # label, transducer, unit, 4 ranges, prefiltering
    samples = []
    columns = zip(column(104, 8), column(112, 8), column(120, 8), column(128, 8), column(spr_offset, 8))
    for i, (label, (pmin, pmax, dmin, dmax, spr)) in enumerate(zip(labels, columns)):
        sig = f"signal {i} ({label!r})"
        if not label:
            raise ValueError(f"{bad}: signal {i} has an empty label; every signal needs a name")
        n = number(spr, f"{sig}: samples per record", int)
        if n < 1:
            raise ValueError(f"{bad}: {sig}: samples per record is {n}; it must be >= 1")
        samples.append(n)
        if label in _ANNOTATION_LABELS:
            continue
        p0, p1 = number(pmin, f"{sig}: physical minimum"), number(pmax, f"{sig}: physical maximum")
        if p0 == p1:
            raise ValueError(f"{bad}: {sig}: physical minimum and maximum are both {p0:g}; they must differ "
                             "(the signal cannot be calibrated)")
        d0, d1 = number(dmin, f"{sig}: digital minimum", int), number(dmax, f"{sig}: digital maximum", int)
        # Beyond the 16-/24-bit sample range is allowed: real files (DREAMS) write it; it only calibrates.
        if not d0 < d1:
            raise ValueError(f"{bad}: {sig}: digital minimum {d0} and maximum {d1}; the minimum must be below "
                             "the maximum (the signal cannot be calibrated)")
        if record_s == 0:
            raise ValueError(f"{bad}: the data record duration is 0 s but {sig} holds samples; it must be > 0 "
                             "(0 only in an annotation-only EDF+ file)")
        if n / record_s > MAX_SFREQ_HZ:
            raise ValueError(f"{bad}: {sig}: {n} samples per {record_s:g}-s record is {n / record_s:g} Hz; "
                             f"at most {MAX_SFREQ_HZ:g} Hz is a plausible rate")
    return EdfFileHeader(
        base=base, kind=kind, sample_bytes=sample_bytes, header_bytes=header_bytes, n_records=n_records,
        record_s=record_s, labels=labels, units=[_text(c) for c in column(96, 8)], samples_per_record=samples,
        file_bytes=size,
    )


def check_edf_size(h: EdfFileHeader, *, exact: bool = False) -> int:
    """The number of whole data records, after checking the file's length against its header.

    Parameters
    ----------
    h : EdfFileHeader
        A parsed header (:func:`parse_edf_header`).
    exact : bool
        Refuse any byte beyond the last record (uploads); otherwise a partial trailing record is
        tolerated (readers drop it).

    Returns
    -------
    int
        Data records: the header's count, or for -1 ("unknown, still recording") what the length holds.

    Raises
    ------
    ValueError
        Shorter than the header promises (truncated), longer than it describes, or no whole record;
        the message names the sizes but not the path.
    """
    size, record_bytes, n_records = h.file_bytes, h.record_bytes, h.n_records
    whole = (size - h.header_bytes) // record_bytes
    if n_records == -1:  # allowed while recording: the length decides
        if whole < 1:
            raise ValueError(f"truncated {h.base} file: {size} bytes, the number of data records is -1 (unknown) "
                             f"and not one whole {record_bytes}-byte record follows the header")
        n_records = whole
    expected = h.header_bytes + n_records * record_bytes
    if size < expected:
        raise ValueError(f"truncated {h.base} file: {size} bytes, the header promises {expected} "
                         f"({n_records} data records of {h.record_s:g} s; only {whole} complete)")
    extra = size - expected
    if extra > (0 if exact else record_bytes - 1):
        raise ValueError(f"{size} bytes, {extra} more than the header describes ({expected}: {n_records} data "
                         "records); the number-of-records field is wrong or the file holds something else")
    return n_records


def check_edf(path: Path) -> dict:
    """Validate an EDF/BDF header and the file size; return the header fields used for checks.

    Raises ValueError naming the file and the bad value for files that are not EDF/BDF, have a
    malformed header, are discontinuous (EDF+D) or are shorter than their header says (truncated).
    A partial trailing data record is tolerated (readers drop it).
    """
    path = Path(path)
    try:
        h = parse_edf_header(path)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    if h.kind.endswith("+D"):
        # Discontinuous files have gaps between data records; reading them as continuous would
        # shift every label after the first gap, so refuse rather than mis-pair.
        raise ValueError(
            f"{path}: discontinuous {h.kind} file (gaps between records) is not supported; "
            f"convert it to a continuous EDF (e.g. with the gaps filled) first"
        )
    try:
        n_records = check_edf_size(h)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    return {"kind": h.base, "n_records": n_records, "record_s": h.record_s, "n_signals": len(h.labels)}


def open_edf(path: Path) -> edfio.Edf:
    """Check an EDF/EDF+/BDF file (:func:`check_edf`) and open it with edfio (EDF data loaded lazily).

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        The file fails the checks or edfio refuses its header. A header that is not UTF-8 is read as
        latin-1 (every byte is a latin-1 character).
    """
    path = Path(path)
    checked = check_edf(path)
    # EDF headers are ASCII by the standard; clinical exports write UTF-8 (Nox: "Impédance") or latin-1.
    # edfio decodes with errors replaced, so the encoding is chosen here from the header's own bytes.
    with open(path, "rb") as f:
        header = f.read(256 * (checked["n_signals"] + 1))
    try:
        header.decode("utf-8")
        encoding = "utf-8"
    except UnicodeDecodeError:
        encoding = "latin-1"
    try:
        if checked["kind"] == "BDF":
            return edfio.read_bdf(path, header_encoding=encoding)
        return edfio.read_edf(path, lazy_load_data=True, header_encoding=encoding)
    except Exception as err:  # edfio raises ValueError/others on non-compliant headers
        raise ValueError(f"{path}: cannot be read as EDF/BDF: {err}") from err


def edf_start(edf: edfio.Edf) -> _dt.datetime | None:
    """Start date and time of an open file; None when anonymised or malformed."""
    try:
        return _dt.datetime.combine(edf.startdate, edf.starttime)
    except Exception:  # anonymised or malformed start date
        return None


# The date EDF+ prescribes when the real one is unknown, and what anonymisers (edfio's anonymize, EDFbrowser)
# write: a start on this date is treated as no date.
EDF_UNKNOWN_DATE = _dt.date(1985, 1, 1)


@dataclass(frozen=True)
class EdfStart:
    """When a recording started, as far as its header tells (None where it was anonymised)."""

    date: _dt.date | None  # EDF+ "Startdate dd-MMM-yyyy" (4-digit year) or the dd.mm.yy field; None if anonymised
    time: _dt.time | None  # hh.mm.ss; None when anonymised along with the date (00.00.00)
    anonymised: bool  # "Startdate X" or the 01.01.85 placeholder

    @property
    def datetime(self) -> _dt.datetime | None:
        """Date and time of the first sample, or None when either is unknown."""
        return None if self.date is None or self.time is None else _dt.datetime.combine(self.date, self.time)

    def as_dict(self) -> dict:
        """``{"datetime": ISO or None, "date", "time", "anonymised"}`` for a JSON summary."""
        dt_ = self.datetime
        return {"datetime": None if dt_ is None else dt_.isoformat(),
                "date": None if self.date is None else self.date.isoformat(),
                "time": None if self.time is None else self.time.isoformat(), "anonymised": self.anonymised}


def read_edf_start(path) -> EdfStart:
    """The start of an EDF/EDF+/BDF file from its fixed header alone (no signal is read).

    The EDF+ recording field's ``Startdate dd-MMM-yyyy`` (4-digit year) wins over the 2-digit
    ``dd.mm.yy`` field (years 85-99 are 19xx, 00-84 20xx, the EDF rule); ``Startdate X`` (EDF+
    anonymised) or the placeholder date 01.01.85 give no date. The time of day is kept unless the date
    is anonymised and the time is 00.00.00 (what anonymisers write), so a clock time can still be shown
    for a file whose date was removed. A malformed field gives None for that part.
    """
    with open(path, "rb") as f:
        fixed = f.read(256)
    recording = _text(fixed[88:168]).split()
    date: _dt.date | None = None
    anonymised = False
    if len(recording) >= 2 and recording[0] == "Startdate":
        if recording[1] == "X":
            anonymised = True
        else:
            try:
                date = _dt.datetime.strptime(recording[1].title(), "%d-%b-%Y").date()
            except ValueError:
                pass
    if date is None and not anonymised:
        try:
            d, m, y = (int(v) for v in _text(fixed[168:176]).split("."))
            date = _dt.date(1900 + y if y >= 85 else 2000 + y, m, d)
        except ValueError:
            pass
    try:
        h, mi, sec = (int(v) for v in _text(fixed[176:184]).split("."))
        time: _dt.time | None = _dt.time(h, mi, sec)
    except ValueError:
        time = None
    if date == EDF_UNKNOWN_DATE:
        date, anonymised = None, True
    anonymised = anonymised or date is None
    if anonymised and time == _dt.time(0, 0, 0):
        time = None
    return EdfStart(date=date, time=time, anonymised=anonymised)


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
        shared_mode(tmp)  # mkstemp's 0600 would leave the file unreadable to the group
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
                          patient: edfio.Patient | None = None, start: EdfStart | None = None) -> Path:
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
    start : EdfStart, optional
        The recording's start as read (:func:`edf_start_info`), instead of ``startdatetime``: an
        anonymised date is written as EDF+ ``Startdate X`` (01.01.85), a known time of day is kept.

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
    if start is not None:
        startdate, starttime = start.date, start.time or _dt.time(0, 0, 0)
    else:
        startdatetime = startdatetime or _dt.datetime.combine(EDF_UNKNOWN_DATE, _dt.time(0, 0, 0))
        startdate, starttime = startdatetime.date(), startdatetime.time()
    anns = [edfio.EdfAnnotation(float(o), None if d is None else float(d), str(t))
            for o, d, t in zip(onsets, durations, texts)]
    edf = edfio.Edf(  # Recording(startdate=None) writes "Startdate X" and 01.01.85
        [], patient=patient or edf_patient(), recording=edfio.Recording(startdate=startdate),
        starttime=starttime.replace(microsecond=0), annotations=anns,
    )
    return _write_atomic(edf, path)
