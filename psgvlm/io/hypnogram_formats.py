"""Hypnogram formats by name, and telling one from a file's content.

:data:`HYPNOGRAM_FORMATS` maps each ``--hypnogram-format`` name to its parser in
:mod:`psgvlm.io.hypnograms`; :func:`detect_hypnogram` tells the format from the file's content (never its
name) and :func:`read_generic_hypnogram` reads a file either way: the ``generic`` reader, hence ``psgvlm
render --format generic``, ``psgvlm stage`` and the app's upload check, all read expert hypnograms
through it.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import replace
from pathlib import Path

from psgvlm.io.hypnograms import (
    Hypnogram,
    read_dreams_hypnogram,
    read_edf_hypnogram,
    read_isruc_hypnogram,
    read_label_lines,
    read_nsrr_hypnogram,
    read_prerau_hypnogram,
    read_table_hypnogram,
)
from psgvlm.stages import ISRUC_CODES

# Every hypnogram format by name (``--hypnogram-format``): (reader, what it reads). The EDF+ reader also
# takes the signal's start; the others take the path alone (:func:`read_generic_hypnogram`).
HYPNOGRAM_FORMATS: dict = {
    "dreams": (read_dreams_hypnogram, "DREAMS text, a [Hypnogram] line then one R&K code per 5 s (5=W, 4=REM, "
                                      "3=S1, 2=S2, 1=S3, 0=S4)"),
    "edf": (read_edf_hypnogram, "EDF+ annotations 'Sleep stage W/1/2/3/4/R/?' (Sleep-EDF, MASS)"),
    "nsrr": (read_nsrr_hypnogram, "NSRR XML ScoredEvent stages (SHHS)"),
    "isruc": (read_isruc_hypnogram, "ISRUC scorer text, one integer per 30-s epoch (0=W, 1-3 N1-N3, 4=S4, 5=REM)"),
    "prerau": (read_prerau_hypnogram, "Time,Stage change list (Prerau: 1=N3, 2=N2, 3=N1, 4=REM, 5=W)"),
    "table": (read_table_hypnogram, "CSV/TSV init_sec,duration_sec,stage, header optional, tab ';' or ',' "
                                    "between columns"),
    "labels": (read_label_lines, "one stage name per line, one per 30-s epoch (W, N1, N2, N3, REM, S1-S4, R, ?)"),
}
# Scoring epochs of 20 s or 30 s written as 5-s labels repeat each label 4 or 6 times.
_SUB_EPOCH_BLOCKS = (4, 6)


def _text_lines(path: Path) -> list[str]:
    """The non-empty lines of a text hypnogram, refusing binary data and other encodings by name."""
    data = path.read_bytes()
    if b"\x00" in data:
        raise ValueError(f"{path}: holds binary data; a hypnogram is text (CSV/TSV, one label per line, DREAMS, "
                         "ISRUC), an EDF+ file or NSRR XML")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: is not UTF-8 text ({err.reason} at byte {err.start}); a hypnogram is text "
                         "(CSV/TSV, one label per line, DREAMS, ISRUC), an EDF+ file or NSRR XML") from None
    return [ln.strip() for ln in text.splitlines() if ln.strip()]


def _in_blocks(values: list[int]) -> int | None:
    """The block length (4 or 6) if ``values`` change only at multiples of it and fill whole blocks."""
    n = len(values)
    changes = [i for i in range(1, n) if values[i] != values[i - 1]]
    for k in _SUB_EPOCH_BLOCKS:
        if n % k == 0 and all(i % k == 0 for i in changes):
            return k
    return None


def detect_hypnogram(path) -> tuple[str, object]:
    """The format of a hypnogram file, told from its content (never its name): ``(name, reader)``.

    The rules, in order: an EDF/BDF version field -> ``edf``; text starting with ``<`` -> ``nsrr``;
    a first line in brackets (``[Hypnogram]``) -> ``dreams``; a first line with tab, ``;`` or ``,``:
    ``Time,Stage`` or two numeric columns -> ``prerau``, else ``table``; one integer per line ->
    ``isruc``, unless the integers change only on a 4- or 6-line grid and fill it (5-s labels of 20-s or
    30-s scoring: a DREAMS hypnogram whose ``[Hypnogram]`` line was removed, which read as ISRUC
    would be six times too long with its codes reversed), which is refused as ambiguous; any other
    text -> ``labels``.

    Parameters
    ----------
    path : str or Path
        The hypnogram file.

    Returns
    -------
    name : str
        A key of :data:`HYPNOGRAM_FORMATS`.
    reader : callable
        Its reader.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        Empty, binary or not UTF-8, or the ambiguous integer case above (naming ``--hypnogram-format``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"hypnogram {path} not found")
    with open(path, "rb") as f:
        head = f.read(8)
    if head in (b"0       ", b"\xffBIOSEMI"):
        return "edf", HYPNOGRAM_FORMATS["edf"][0]
    lines = _text_lines(path)
    if not lines:
        raise ValueError(f"{path}: empty hypnogram")
    first = lines[0]
    if first.startswith("<"):
        name = "nsrr"
    elif first.startswith("["):
        name = "dreams"
    elif any(c in first for c in ("\t", ";", ",")):
        sep = next(c for c in ("\t", ";", ",") if c in first)
        cols = [c.strip().casefold() for c in first.split(sep)]
        numeric = len(cols) == 2 and all(re.fullmatch(r"[-+]?[0-9.]+(e[-+]?\d+)?", c) for c in cols)
        name = "prerau" if cols == ["time", "stage"] or numeric else "table"
    elif all(re.fullmatch(r"[-+]?\d+", ln) for ln in lines):
        values = [int(ln) for ln in lines]
        k = _in_blocks(values)
        if k is not None:
            raise ValueError(
                f"{path}: one integer per line, changing only every {k} lines: these look like 5-s labels of "
                f"{5 * k}-s scoring (a DREAMS hypnogram without its [Hypnogram] line, 5=W ... 0=S4) but could be "
                "ISRUC codes, one per 30-s epoch (0=W ... 5=REM); say which with --hypnogram-format dreams or "
                "--hypnogram-format isruc (or restore the [Hypnogram] line)")
        name = "isruc" if set(values) <= set(ISRUC_CODES) else "labels"
    else:
        name = "labels"
    return name, HYPNOGRAM_FORMATS[name][0]


def read_generic_hypnogram(path, signal_start: dt.datetime | None = None, fmt: str | None = None) -> Hypnogram:
    """A hypnogram in any supported format, detected from its content (:func:`detect_hypnogram`) or named.

    Parameters
    ----------
    path : str or Path
        The label file.
    signal_start : datetime, optional
        Start of the signal file (EDF+ hypnograms are shifted into its time base).
    fmt : str, optional
        A key of :data:`HYPNOGRAM_FORMATS` to read it as (``--hypnogram-format``); default detected.

    Returns
    -------
    Hypnogram
        ``notes["hypnogram_format"]`` names the format read.
    """
    path = Path(path)
    if fmt is None:
        fmt, reader = detect_hypnogram(path)
    elif fmt in HYPNOGRAM_FORMATS:
        reader = HYPNOGRAM_FORMATS[fmt][0]
    else:
        raise ValueError(f"hypnogram format {fmt!r} unknown; choose from {sorted(HYPNOGRAM_FORMATS)}")
    hyp = reader(path, signal_start) if fmt == "edf" else reader(path)
    return replace(hyp, notes={**hyp.notes, "hypnogram_format": fmt})
