"""Hypnogram formats: label files -> stage intervals in signal seconds (:class:`Hypnogram`).

One parser per label format, used by the format readers (:mod:`psgvlm.io.readers`):

- :func:`read_isruc_hypnogram`: ISRUC scorer text, one code per 30-s epoch;
- :func:`read_dreams_hypnogram`: DREAMS R&K text, ``[Hypnogram]`` then one code per 5 s;
- :func:`read_edf_hypnogram`: EDF+ annotations ("Sleep stage W/1/2/3/4/R/?", "Movement time"), as in
  Sleep-EDF ``*-Hypnogram.edf`` and MASS ``* Base.edf``, shifted into the signal's time base;
- :func:`read_nsrr_hypnogram`: NSRR XML ``ScoredEvent`` stages (SHHS);
- :func:`read_prerau_hypnogram`: the Prerau ``Time,Stage`` change list;
- :func:`read_generic_hypnogram`: CSV/TSV ``init_sec,duration_sec,stage`` (header optional), one label
  per line (30-s epochs), or any of the EDF+/XML forms above by suffix.

The small text formats are parsed by hand (no library reads them); EDF+ annotations are read with
edfio through :func:`psgvlm.io.edf.open_edf`. Codes are mapped through the tables in
:mod:`psgvlm.stages`; an unknown code is an error naming the file and the value. Pairing intervals
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
    RK_ANNOTATIONS,
    map_codes,
)

# Generic hypnograms accept the plain names and the EDF+ R&K annotation texts.
GENERIC_TABLE: dict = {**GENERIC_LABELS, **RK_ANNOTATIONS}
DREAMS_STEP_S = 5.0  # DREAMS hypnograms give one R&K code per 5 s


@dataclass(frozen=True)
class Hypnogram:
    """Stage labels of one label file as time intervals in signal seconds."""

    onsets_s: np.ndarray  # (n_labels,) float, seconds from the signal start
    durations_s: np.ndarray  # (n_labels,) float, seconds
    codes: np.ndarray  # (n_labels,) int AASM codes, UNSCORED allowed
    source: str  # the label file, for messages and rec.pairing["hypnogram"]
    onset_s: float | None = None  # start of the 30-s epoch grid; None: the first label's onset
    notes: dict = field(default_factory=dict)  # format facts copied into rec.pairing (shift, label step)


def _lines(path: Path) -> list[str]:
    """Non-empty stripped lines of a label file."""
    if not path.is_file():
        raise FileNotFoundError(f"hypnogram {path} not found")
    return [ln.strip() for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]


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
    on, du, raw, other = [], [], [], 0
    for a in edf.annotations:
        text = a.text.strip()
        if not (text.casefold().startswith("sleep stage") or text.casefold().startswith("movement")):
            other += text != ""
            continue
        if a.duration is None or a.duration <= 0:
            raise ValueError(f"{path}: stage annotation {text!r} at {a.onset:g} s has no duration")
        on.append(a.onset + shift)
        du.append(a.duration)
        raw.append(text)
    codes = map_codes(raw, RK_ANNOTATIONS, source=str(path))
    return Hypnogram(np.asarray(on), np.asarray(du), codes, str(path),
                     notes={"hypnogram_shift_s": shift, "other_annotations": other})


def read_nsrr_hypnogram(path) -> Hypnogram:
    """NSRR XML (``*-nsrr.xml``): ``ScoredEvent`` elements whose ``EventType`` starts with "Stages".

    Parameters
    ----------
    path : str or Path
        The XML file; ``Start`` and ``Duration`` are seconds from the signal start.

    Returns
    -------
    Hypnogram
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"hypnogram {path} not found")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise ValueError(f"{path}: not a valid NSRR XML file: {err}") from err
    on, du, raw = [], [], []
    for ev in root.iter("ScoredEvent"):
        etype = (ev.findtext("EventType") or "").strip()
        if not etype.startswith("Stages"):
            continue
        concept = (ev.findtext("EventConcept") or "").strip()
        try:
            on.append(float(ev.findtext("Start")))
            du.append(float(ev.findtext("Duration")))
        except (TypeError, ValueError):
            raise ValueError(
                f"{path}: stage event {concept!r} has Start {ev.findtext('Start')!r} / Duration "
                f"{ev.findtext('Duration')!r}; both must be numbers (seconds)"
            ) from None
        raw.append(concept)
    codes = map_codes(raw, NSRR_CONCEPTS, source=str(path))
    return Hypnogram(np.asarray(on), np.asarray(du), codes, str(path))


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
    rows = _lines(path)
    if rows and not re.match(r"[-+0-9.]", rows[0]):
        rows = rows[1:]
    try:
        times = np.array([float(r.split(",")[0]) for r in rows])
        raw = [int(float(r.split(",")[1])) for r in rows]
    except (ValueError, IndexError):
        raise ValueError(f"{path}: expected 'Time,Stage' rows of numbers") from None
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


def _table_hypnogram(path: Path, lines: list[str], sep: str) -> Hypnogram:
    """CSV/TSV rows ``init_sec,duration_sec,stage``; a header may name (and reorder) the columns."""
    rows = [[c.strip() for c in ln.split(sep)] for ln in lines]
    header = [c.casefold() for c in rows[0]]
    if "stage" in header or "init_sec" in header or "onset" in header:
        cols = header
        rows = rows[1:]
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
    try:
        on = np.array([float(r[i_on]) for r in rows])
        du = np.array([float(r[i_du]) for r in rows])
    except (ValueError, IndexError):
        raise ValueError(f"{path}: expected rows 'init_sec{sep}duration_sec{sep}stage' with numbers") from None
    codes = map_codes([r[i_st] for r in rows], GENERIC_TABLE, source=str(path))
    return Hypnogram(on, du, codes, str(path), notes={"hypnogram_kind": "intervals init_sec,duration_sec,stage"})


def read_generic_hypnogram(path, signal_start: dt.datetime | None = None) -> Hypnogram:
    """A hypnogram in any supported form, told apart by suffix and content.

    ``.edf``/``.bdf``: EDF+ annotations (:func:`read_edf_hypnogram`); ``.xml``: NSRR XML; otherwise
    text: CSV/TSV ``init_sec,duration_sec,stage`` (header optional; names W/N1/N2/N3/REM, S1-S4, R,
    0-5 or the EDF+ R&K texts), or one label per line, each a 30-s epoch from the signal start.

    Parameters
    ----------
    path : str or Path
        The label file.
    signal_start : datetime, optional
        Start of the signal file (EDF+ hypnograms are shifted into its time base).

    Returns
    -------
    Hypnogram
        ``notes["hypnogram_kind"]`` says which text form was read.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".edf", ".bdf"):
        return read_edf_hypnogram(path, signal_start)
    if suffix == ".xml":
        return read_nsrr_hypnogram(path)
    lines = _lines(path)
    if not lines:
        raise ValueError(f"{path}: empty hypnogram")
    sep = "\t" if "\t" in lines[0] else ("," if "," in lines[0] else None)
    if sep is None:
        codes = map_codes(lines, GENERIC_TABLE, source=str(path))
        return _per_epoch(codes, EPOCH_S, path, notes={"hypnogram_kind": "one label per 30-s epoch"})
    return _table_hypnogram(path, lines, sep)
