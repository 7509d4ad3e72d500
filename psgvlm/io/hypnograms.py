"""Hypnogram formats: label files -> stage intervals in signal seconds (:class:`Hypnogram`).

One parser per label format, each a key of
:data:`psgvlm.io.hypnogram_formats.HYPNOGRAM_FORMATS` (``psgvlm stage --hypnogram-format``), used by the
format readers (:mod:`psgvlm.io.readers`):

- ``isruc`` :func:`read_isruc_hypnogram`: ISRUC scorer text, one code per 30-s epoch;
- ``dreams`` :func:`read_dreams_hypnogram`: DREAMS R&K text, ``[Hypnogram]`` then one code per 5 s;
- ``edf`` :func:`read_edf_hypnogram`: EDF+ annotations ("Sleep stage W/1/2/3/4/R/?", "Movement time"), as
  in Sleep-EDF ``*-Hypnogram.edf`` and MASS ``* Base.edf``, shifted into the signal's time base;
- ``nsrr`` :func:`read_nsrr_hypnogram`: NSRR XML ``ScoredEvent`` stages (SHHS), or the Compumedics
  Profusion XML NSRR ships beside it (``<SleepStage>`` per epoch);
- ``prerau`` :func:`read_prerau_hypnogram`: the Prerau ``Time,Stage`` change list;
- ``table`` :func:`read_table_hypnogram`: CSV/TSV ``init_sec,duration_sec,stage`` (header optional;
  tab, ``;`` or ``,``);
- ``labels`` :func:`read_label_lines`: one label per line (30-s epochs).

The registry of these formats, telling a file's format from its content and reading any of them is
:mod:`psgvlm.io.hypnogram_formats`.

The small text formats are parsed by hand (no library reads them); EDF+ annotations are read with
edfio through :func:`psgvlm.io.edf.open_edf`. Codes are mapped through the tables in
:mod:`psgvlm.stages`; an unknown code is an error naming the file and the value. Onsets and durations
are checked row by row (:func:`check_intervals`): NaN, inf, negative or beyond :data:`MAX_LABEL_S` is an
error naming the file, the row and the value. Text files may start with a UTF-8 BOM. Pairing intervals
with the signal (30-s grid, coverage rule) is :func:`psgvlm.io.readers.pairing.pair_by_time`'s job.
"""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from psgvlm.io.edf import edf_start, open_edf
from psgvlm.stages import (
    DREAMS_CODES,
    EPOCH_S,
    GENERIC_LABELS,
    ISRUC_CODES,
    NSRR_CONCEPTS,
    PRERAU_CODES,
    PROFUSION_CODES,
    RK_ANNOTATIONS,
    UNSCORED,
    map_codes,
)

# Generic hypnograms accept the plain names and the EDF+ R&K annotation texts.
GENERIC_TABLE: dict = {**GENERIC_LABELS, **RK_ANNOTATIONS}
DREAMS_STEP_S = 5.0  # DREAMS hypnograms give one R&K code per 5 s
# No label of a night lies a week from its signal start; a larger onset or duration is a unit or format
# error (milliseconds, a sample index, 1e300), refused before it reaches epoch counts.
MAX_LABEL_S = 7 * 86400.0


@dataclass(frozen=True)
class Hypnogram:
    """Stage labels of one label file as time intervals in signal seconds."""

    onsets_s: np.ndarray  # (n_labels,) float, seconds from the signal start
    durations_s: np.ndarray  # (n_labels,) float, seconds
    codes: np.ndarray  # (n_labels,) int AASM codes, UNSCORED allowed
    source: str  # the label file, for messages and rec.pairing["hypnogram"]
    onset_s: float | None = None  # start of the 30-s epoch grid; None: the first label's onset
    notes: dict = field(default_factory=dict)  # format facts copied into rec.pairing (shift, label step)


def check_intervals(onsets_s, durations_s, source: str, *, rows: list[str] | None = None,
                    min_onset_s: float = 0.0) -> None:
    """Refuse label intervals whose onset or duration is not a sensible number of seconds.

    Parameters
    ----------
    onsets_s, durations_s : array-like of float, shape (n_labels,)
        Label intervals, seconds.
    source : str
        The label file, for messages.
    rows : list of str, optional
        Where each interval comes from ("line 7"), for messages; default "label i".
    min_onset_s : float
        Smallest onset allowed (0 for times read from a file; negative after a shift into the signal's
        time base, i.e. labels that start before the signal).

    Raises
    ------
    ValueError
        Naming the file, the row and the value: NaN/inf, an onset below ``min_onset_s``, a duration
        <= 0, or either beyond :data:`MAX_LABEL_S`.
    """
    on = np.asarray(onsets_s, dtype=float)
    du = np.asarray(durations_s, dtype=float)
    for what, x, lo in (("onset", on, min_onset_s), ("duration", du, 0.0)):
        bad = ~np.isfinite(x) | (np.abs(x) > MAX_LABEL_S) | (x < lo) | ((x <= 0) if what == "duration" else False)
        if not bad.any():
            continue
        i = int(np.argmax(bad))
        row = rows[i] if rows is not None else f"label {i}"
        v = float(x[i])
        if not np.isfinite(v):
            why = "is not a finite number"
        elif abs(v) > MAX_LABEL_S:
            why = f"is beyond {MAX_LABEL_S:g} s (7 days)"
        elif what == "duration":
            why = "must be > 0"
        else:
            why = "is negative" if lo == 0 else f"is before {lo:g} s"
        raise ValueError(f"{source}: {row}: {what} {v!r} s {why}; label onsets and durations are finite "
                         f"seconds within {MAX_LABEL_S:g} s (7 days) of the signal start, durations > 0")


def _numbered(path: Path) -> list[tuple[int, str]]:
    """(line number, stripped text) of the non-empty lines of a label file (a UTF-8 BOM is dropped)."""
    if not path.is_file():
        raise FileNotFoundError(f"hypnogram {path} not found")
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    return [(i, ln.strip()) for i, ln in enumerate(text.splitlines(), 1) if ln.strip()]


def _lines(path: Path) -> list[str]:
    """Non-empty stripped lines of a label file."""
    return [ln for _, ln in _numbered(path)]


def _per_epoch(codes: np.ndarray, step_s: float, path: Path, **kw) -> Hypnogram:
    """One label per ``step_s`` seconds from the signal start."""
    k = np.arange(len(codes))
    return Hypnogram(k * step_s, np.full(len(codes), step_s), codes, str(path), **kw)


def _int_codes(lines: list[str], table: dict, path: Path) -> np.ndarray:
    """Integer codes, one per line, mapped through ``table``."""
    try:
        ints = [int(v) for v in lines]
    except ValueError:
        bad = next(v for v in lines if not re.fullmatch(r"-?\d+", v))
        raise ValueError(f"{path}: unknown stage code {bad!r}; known codes: {sorted(table)}") from None
    return map_codes(ints, table, source=str(path))


def read_isruc_hypnogram(path) -> Hypnogram:
    """ISRUC scorer file ``<id>_<scorer>.txt``: one code per 30-s epoch (0 W, 1 N1, 2 N2, 3/4 N3, 5 REM).

    Parameters
    ----------
    path : str or Path
        The scorer text file.

    Returns
    -------
    Hypnogram
        30-s intervals from signal time 0.
    """
    path = Path(path)
    return _per_epoch(_int_codes(_lines(path), ISRUC_CODES, path), EPOCH_S, path)


def read_dreams_hypnogram(path) -> Hypnogram:
    """DREAMS ``Hypnogram_excerptN.txt``: a ``[Hypnogram]`` line, then one R&K code per 5 s.

    Parameters
    ----------
    path : str or Path
        The hypnogram text file.

    Returns
    -------
    Hypnogram
        5-s intervals from signal time 0 (grid at 0, ``notes["label_step_s"]`` = 5).
    """
    path = Path(path)
    lines = _lines(path)
    if lines and lines[0].startswith("["):
        lines = lines[1:]
    codes = _int_codes(lines, DREAMS_CODES, path)
    return _per_epoch(codes, DREAMS_STEP_S, path, onset_s=0.0, notes={"label_step_s": DREAMS_STEP_S})


def read_edf_hypnogram(path, signal_start: dt.datetime | None) -> Hypnogram:
    """Sleep-stage annotations of an EDF+ file, shifted into the signal's time base.

    Parameters
    ----------
    path : str or Path
        EDF+ file with "Sleep stage ..." / "Movement time" annotations (other annotations are counted).
    signal_start : datetime or None
        Start of the signal file; the hypnogram's own start is taken relative to it (no shift if
        either is unknown).

    Returns
    -------
    Hypnogram
        ``notes``: ``hypnogram_shift_s`` (seconds) and ``other_annotations`` (count).
    """
    path = Path(path)
    edf = open_edf(path)
    shift = 0.0
    hyp_start = edf_start(edf)
    if signal_start is not None and hyp_start is not None:
        shift = (hyp_start - signal_start).total_seconds()
    if abs(shift) > MAX_LABEL_S:
        raise ValueError(f"{path}: starts {shift:.0f} s ({shift / 86400:.1f} days) from the signal's start "
                         f"{signal_start}; a hypnogram of this night starts within 7 days of it")
    on, du, raw, rows, other = [], [], [], [], 0
    for a in edf.annotations:
        text = a.text.strip()
        if not (text.casefold().startswith("sleep stage") or text.casefold().startswith("movement")):
            other += text != ""
            continue
        if a.duration is None:
            raise ValueError(f"{path}: stage annotation {text!r} at {a.onset:g} s has no duration")
        on.append(a.onset)
        du.append(a.duration)
        raw.append(text)
        rows.append(f"annotation {len(rows)} {text!r}")
    check_intervals(on, du, str(path), rows=rows)
    codes = map_codes(raw, RK_ANNOTATIONS, source=str(path))
    return Hypnogram(np.asarray(on, dtype=float) + shift, np.asarray(du, dtype=float), codes, str(path),
                     notes={"hypnogram_shift_s": shift, "other_annotations": other})


# NSRR event concepts that are never stages even where a file files them under "Stages" (respiratory
# events the scorer was unsure of).
NSRR_NON_STAGE_CONCEPTS = ("Unsure|Unsure",)


def read_nsrr_hypnogram(path) -> Hypnogram:
    """NSRR XML (``*-nsrr.xml``) or its Compumedics source (``*-profusion.xml``), told apart by content.

    NSRR XML: ``ScoredEvent`` elements whose ``EventType`` starts with "Stages" (``Unsure|Unsure``, a
    respiratory event, is ignored wherever it stands, and counted). Profusion XML: ``EpochLength``
    and one ``<SleepStage>`` integer per epoch from the signal start (0 W, 1 N1, 2 N2, 3/4 N3,
    5 REM, any other integer unscored; :data:`psgvlm.stages.PROFUSION_CODES`).

    Parameters
    ----------
    path : str or Path
        The XML file; NSRR ``Start`` and ``Duration`` are seconds from the signal start.

    Returns
    -------
    Hypnogram
        ``notes["hypnogram_kind"]`` names the XML flavour; ``notes["ignored_events"]`` counts the
        ignored ``Unsure|Unsure`` events (NSRR) and ``notes["other_stage_codes"]`` the epochs with
        another integer (Profusion).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"hypnogram {path} not found")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise ValueError(f"{path}: not a valid NSRR XML file: {err}") from err
    if root.find("SleepStages") is not None:
        return _read_profusion(path, root)
    on, du, raw, rows, ignored = [], [], [], [], 0
    for ev in root.iter("ScoredEvent"):
        etype = (ev.findtext("EventType") or "").strip()
        concept = (ev.findtext("EventConcept") or "").strip()
        if concept in NSRR_NON_STAGE_CONCEPTS:
            ignored += 1
            continue
        if not etype.startswith("Stages"):
            continue
        try:
            on.append(float(ev.findtext("Start")))
            du.append(float(ev.findtext("Duration")))
        except (TypeError, ValueError):
            raise ValueError(
                f"{path}: stage event {concept!r} has Start {ev.findtext('Start')!r} / Duration "
                f"{ev.findtext('Duration')!r}; both must be numbers (seconds)"
            ) from None
        raw.append(concept)
        rows.append(f"stage event {len(rows)} {concept!r}")
    check_intervals(on, du, str(path), rows=rows)
    codes = map_codes(raw, NSRR_CONCEPTS, source=str(path))
    return Hypnogram(np.asarray(on, dtype=float), np.asarray(du, dtype=float), codes, str(path),
                     notes={"hypnogram_kind": "NSRR XML", "ignored_events": {"Unsure|Unsure": ignored}})


def _read_profusion(path: Path, root) -> Hypnogram:
    """Compumedics Profusion XML: ``EpochLength`` and one ``<SleepStage>`` integer per epoch."""
    text = (root.findtext("EpochLength") or "").strip()
    try:
        epoch_s = float(text)
    except ValueError:
        epoch_s = float("nan")
    if not (np.isfinite(epoch_s) and 0 < epoch_s <= 3600):
        raise ValueError(f"{path}: Profusion XML EpochLength {text!r} is not a number of seconds in (0, 3600]")
    values = [(el.text or "").strip() for el in root.find("SleepStages").iter("SleepStage")]
    ints = []
    for i, v in enumerate(values):
        if not re.fullmatch(r"-?\d+", v):
            raise ValueError(f"{path}: <SleepStage> {i} is {v!r}, not an integer stage code; known codes: "
                             f"{sorted(PROFUSION_CODES)} (any other integer is unscored)")
        ints.append(int(v))
    other = sum(v not in PROFUSION_CODES for v in ints)
    codes = np.array([PROFUSION_CODES.get(v, UNSCORED) for v in ints], dtype=np.int8)
    return _per_epoch(codes, epoch_s, path, onset_s=0.0,
                      notes={"hypnogram_kind": "Compumedics Profusion XML", "other_stage_codes": other})


def read_prerau_hypnogram(path) -> Hypnogram:
    """Prerau ``segment_stages.csv``: ``Time,Stage`` changes (1=N3, 2=N2, 3=N1, 4=REM, 5=W), header optional.

    The last row marks the end. The epoch grid's phase is taken from the change times (all on one
    30-s grid, checked); the partial epoch before it is dropped.

    Parameters
    ----------
    path : str or Path
        The stage-change CSV; times in signal seconds.

    Returns
    -------
    Hypnogram
        One interval per change; ``onset_s`` is the first whole epoch on the changes' grid.
    """
    path = Path(path)
    rows = _numbered(path)
    if rows and not re.match(r"[-+0-9.]", rows[0][1]):
        rows = rows[1:]
    try:
        times = np.array([float(r.split(",")[0]) for _, r in rows])
        stage_values = [float(r.split(",")[1]) for _, r in rows]
    except (ValueError, IndexError):
        raise ValueError(f"{path}: expected 'Time,Stage' rows of numbers") from None
    check_intervals(times, np.ones_like(times), str(path), rows=[f"line {i}" for i, _ in rows])
    for (lineno, _), v in zip(rows, stage_values):
        if not (np.isfinite(v) and v == round(v) and abs(v) < 100):
            raise ValueError(f"{path}: line {lineno}: stage {v!r} is not a stage code; known codes: "
                             f"{sorted(PRERAU_CODES)}")
    raw = [int(v) for v in stage_values]
    if len(times) < 2 or np.any(np.diff(times) <= 0):
        raise ValueError(f"{path}: stage-change times must be >= 2 and strictly increasing")
    codes = map_codes(raw[:-1], PRERAU_CODES, source=str(path))
    inner = times[1:-1] if len(times) > 2 else times[:1]
    phase = round(float(inner[0] % EPOCH_S), 6)
    off = (inner - phase) / EPOCH_S
    if np.any(np.abs(off - np.round(off)) > 1e-3):
        raise ValueError(f"{path}: stage changes {inner.tolist()} do not fall on one {EPOCH_S:g}-s grid")
    onset = phase if times[0] < phase else float(times[0])
    return Hypnogram(times[:-1], np.diff(times), codes, str(path), onset_s=onset)


def _table_hypnogram(path: Path, numbered: list[tuple[int, str]], sep: str) -> Hypnogram:
    """CSV/TSV rows ``init_sec,duration_sec,stage``; a header may name (and reorder) the columns."""
    lines = [ln for _, ln in numbered]
    linenos = [i for i, _ in numbered]
    rows = [[c.strip() for c in ln.split(sep)] for ln in lines]
    header = [c.casefold() for c in rows[0]]
    if "stage" in header or "init_sec" in header or "onset" in header:
        cols = header
        rows, linenos = rows[1:], linenos[1:]
        try:
            i_on = next(cols.index(c) for c in ("init_sec", "onset", "start", "start_s") if c in cols)
            i_du = next(cols.index(c) for c in ("duration_sec", "duration", "duration_s") if c in cols)
            i_st = next(cols.index(c) for c in ("stage", "label", "description") if c in cols)
        except StopIteration:
            raise ValueError(
                f"{path}: header {rows and lines[0]!r} needs onset (init_sec), duration (duration_sec) and "
                f"stage columns"
            ) from None
    else:
        i_on, i_du, i_st = 0, 1, 2
    on, du, st = [], [], []
    for lineno, r in zip(linenos, rows):
        try:
            # with ';' between columns, a comma is the decimal mark (spreadsheets in many locales)
            on.append(float(r[i_on].replace(",", ".") if sep == ";" else r[i_on]))
            du.append(float(r[i_du].replace(",", ".") if sep == ";" else r[i_du]))
            st.append(r[i_st])
        except (ValueError, IndexError):
            raise ValueError(f"{path}: line {lineno} {sep.join(r)!r}: expected 'init_sec{sep}duration_sec{sep}"
                             f"stage' with numbers (seconds)") from None
    check_intervals(on, du, str(path), rows=[f"line {i}" for i in linenos])
    on, du = np.asarray(on, dtype=float), np.asarray(du, dtype=float)
    codes = map_codes(st, GENERIC_TABLE, source=str(path))
    return Hypnogram(on, du, codes, str(path), notes={"hypnogram_kind": "intervals init_sec,duration_sec,stage"})


def read_table_hypnogram(path) -> Hypnogram:
    """CSV/TSV ``init_sec,duration_sec,stage`` rows separated by tab, ``;`` or ``,`` (the first line decides).

    A header may name (and reorder) the columns; stages are names W/N1/N2/N3/REM, S1-S4, R, 0-5 or the
    EDF+ R&K texts.

    Parameters
    ----------
    path : str or Path
        The table (UTF-8, BOM allowed).

    Returns
    -------
    Hypnogram
        One interval per row.
    """
    path = Path(path)
    numbered = _numbered(path)
    if not numbered:
        raise ValueError(f"{path}: empty hypnogram")
    # the first line decides the separator: tab, then ';' (spreadsheets with a decimal comma), then ','
    sep = next((c for c in ("\t", ";", ",") if c in numbered[0][1]), None)
    if sep is None:
        raise ValueError(f"{path}: line {numbered[0][0]} {numbered[0][1]!r} has no tab, ';' or ',' between "
                         "columns; expected 'init_sec,duration_sec,stage' rows")
    return _table_hypnogram(path, numbered, sep)


def read_label_lines(path) -> Hypnogram:
    """One stage label per line, each a 30-s epoch from the signal start (W/N1/N2/N3/REM, S1-S4, R, 0-5, ?).

    Parameters
    ----------
    path : str or Path
        The label file (UTF-8, BOM allowed).

    Returns
    -------
    Hypnogram
        30-s intervals from signal time 0.
    """
    path = Path(path)
    lines = _lines(path)
    if not lines:
        raise ValueError(f"{path}: empty hypnogram")
    codes = map_codes(lines, GENERIC_TABLE, source=str(path))
    return _per_epoch(codes, EPOCH_S, path, notes={"hypnogram_kind": "one label per 30-s epoch"})
