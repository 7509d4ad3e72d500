"""Server-side checks of an uploaded recording, before any reader touches it.

The browser's file name and MIME type are the user's word, not evidence: the type is decided from
the bytes (the EDF/BDF fixed header and its per-signal header), the extension is only compared
case-insensitively, and the file must be exactly as long as its header says (a truncated or padded
file is refused with the numbers). Size, duration and channel limits stop a shared server from being
tied up by one upload. Header fields that identify the patient (the 80-byte patient and recording
identification fields: name, birth date, hospital code, technician) are read here only to be
dropped: :class:`EdfHeader` keeps none of them, so nothing downstream can copy them into outputs.

The header is parsed by :func:`psgvlm.io.edf.parse_edf_header` (shared with the readers' own check);
this module adds the upload policy: exact length, limits, no discontinuous files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from psgvlm.io.edf import check_edf_size, parse_edf_header

EXTENSIONS = (".edf", ".bdf", ".rec")  # .rec: ISRUC's EDF files
HYPNOGRAM_EXTENSIONS = (".txt", ".csv", ".tsv", ".edf", ".xml", ".ids")  # the content decides the format
MAX_BYTES = 1024**3  # 1 GiB: a whole night of 20+ channels at 256 Hz is ~0.5 GiB
MAX_HYPNOGRAM_BYTES = 20 * 1024**2
MIN_DURATION_S = 30.0  # one scoring epoch
MAX_DURATION_S = 36 * 3600.0
MAX_SIGNALS = 512


class UploadError(ValueError):
    """An upload that fails a check; the message is safe to show to the user."""


@dataclass
class SignalHeader:
    label: str
    unit: str
    sfreq: float  # Hz
    samples_per_record: int


@dataclass
class EdfHeader:
    """What the server needs from an EDF/BDF header, and nothing that identifies the patient."""

    kind: str  # "EDF", "EDF+C", "EDF+D", "BDF", "BDF+C", "BDF+D"
    n_records: int
    record_s: float
    signals: list[SignalHeader] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return self.n_records * self.record_s

    @property
    def labels(self) -> list[str]:
        return [s.label for s in self.signals if s.label != "EDF Annotations" and s.label != "BDF Annotations"]


def check_extension(name: str, allowed=EXTENSIONS) -> str:
    """The lower-cased extension of ``name`` if it is one of ``allowed``, else :class:`UploadError`."""
    ext = Path(name).suffix.lower()
    if ext not in allowed:
        raise UploadError(f"file extension {Path(name).suffix!r} is not accepted; allowed: {', '.join(allowed)}")
    return ext


def read_edf_header(path, *, max_signals: int = MAX_SIGNALS) -> EdfHeader:
    """Parse and check the EDF/BDF header of ``path`` against the file's actual length.

    Raises
    ------
    UploadError
        When the bytes are not an EDF/BDF header, a field is malformed, or the file is shorter or
        longer than ``header + n_records * record_bytes``.
    """
    try:
        h = parse_edf_header(path, max_signals=max_signals)
    except ValueError as err:  # the parser's messages name values, never the server path
        raise UploadError(str(err)) from None
    samples = h.samples_per_record  # each >= 1, the record duration >= 0: checked by the parser
    try:
        n_records = check_edf_size(h, exact=True)  # an upload must be exactly as long as its header says
    except ValueError as err:
        raise UploadError(f"{err}; the upload is incomplete" if "truncated" in str(err) else str(err)) from None
    signals = [SignalHeader(label=lab, unit=u, sfreq=s / h.record_s if h.record_s else 0.0, samples_per_record=s)
               for lab, u, s in zip(h.labels, h.units, samples)]
    return EdfHeader(kind=h.kind, n_records=n_records, record_s=h.record_s, signals=signals)


def validate_recording_upload(path, *, name: str | None = None, max_bytes: int = MAX_BYTES,
                              min_duration_s: float = MIN_DURATION_S,
                              max_duration_s: float = MAX_DURATION_S) -> EdfHeader:
    """All checks for an uploaded PSG file; returns its (de-identified) header.

    Parameters
    ----------
    path : path-like
        The uploaded file on the server.
    name : str, optional
        The name the client gave (defaults to ``path``'s name); only its extension is checked.
    max_bytes, min_duration_s, max_duration_s
        Limits; durations in seconds.
    """
    path = Path(path)
    check_extension(name or path.name)
    size = path.stat().st_size
    if size > max_bytes:
        raise UploadError(f"file is {size / 1024**2:.1f} MiB; the limit is {max_bytes / 1024**2:.0f} MiB")
    header = read_edf_header(path)
    if header.kind.endswith("+D"):
        raise UploadError(f"{header.kind} (discontinuous) recordings are not supported; export a "
                          "continuous EDF/EDF+C")
    if not header.labels:
        raise UploadError("the file holds only annotations, no signals to stage")
    if header.duration_s < min_duration_s:
        raise UploadError(f"recording lasts {header.duration_s:.1f} s; at least {min_duration_s:.0f} s "
                          "(one 30-s epoch) is needed")
    if header.duration_s > max_duration_s:
        raise UploadError(f"recording lasts {header.duration_s / 3600:.1f} h; the limit is "
                          f"{max_duration_s / 3600:.0f} h")
    return header


def validate_hypnogram_upload(path, *, name: str | None = None,
                              max_bytes: int = MAX_HYPNOGRAM_BYTES) -> str:
    """Checks for an uploaded expert hypnogram, by reading it as staging will; returns its format.

    The format is detected from the content (:func:`psgvlm.io.hypnogram_formats.detect_hypnogram`, the same
    function ``psgvlm stage`` and the readers use) and the file is read by its reader: unknown stage
    codes, bad onsets or durations, the ambiguous header-less DREAMS/ISRUC case and overlapping labels
    with different stages are refused here, at upload, not when Stage is pressed. EDF+ hypnograms must
    first pass :func:`read_edf_header`.

    Returns
    -------
    str
        A key of :data:`psgvlm.io.hypnogram_formats.HYPNOGRAM_FORMATS` (``"dreams"``, ``"edf"``, ``"table"``...).

    Raises
    ------
    UploadError
        The message names the upload by the client's file name, never the server path.
    """
    from psgvlm.io.hypnogram_formats import detect_hypnogram, read_generic_hypnogram
    from psgvlm.io.readers.pairing import merge_overlaps

    path = Path(path)
    shown = name or path.name
    check_extension(shown, HYPNOGRAM_EXTENSIONS)
    size = path.stat().st_size
    if size > max_bytes:
        raise UploadError(f"hypnogram file is {size / 1024**2:.1f} MiB; the limit is "
                          f"{max_bytes / 1024**2:.0f} MiB")
    if size == 0:
        raise UploadError("hypnogram file is empty")
    try:
        fmt, _ = detect_hypnogram(path)
        if fmt == "edf":
            read_edf_header(path)
        hyp = read_generic_hypnogram(path, None, fmt)
        merge_overlaps(hyp.onsets_s, hyp.durations_s, hyp.codes, source=str(path))
    except (ValueError, OSError) as err:
        raise UploadError(str(err).replace(str(path), shown)) from None
    if not len(hyp.codes):
        raise UploadError(f"{shown}: holds no sleep stage labels")
    return fmt
