"""DREAMS (spindles/sleep excerpts): ``excerptN.txt`` (one channel) or ``excerptN.edf`` (full PSG) +
``Hypnogram_excerptN.txt`` (R&K codes, one per 5 s)."""

from __future__ import annotations

import re
from pathlib import Path

from psgvlm.io.hypnograms import read_dreams_hypnogram
from psgvlm.io.readers.pairing import make_recording
from psgvlm.io.readers.signal_files import channels_from_signals, read_edf_signals, read_numbers
from psgvlm.io.recording import Channel, Recording

# DREAMS text excerpts do not state their rate; these are the rates given with the database.
DREAMS_TXT_SFREQ: dict[int, float] = {1: 100.0, 2: 200.0, 3: 50.0, 4: 200.0, 5: 200.0, 6: 200.0}
DREAMS_EXCERPT_S = 1800.0  # every DREAMS excerpt is 30 minutes


def find_dreams(root: Path, *, source: str = "txt") -> list[tuple[Path, Path | None]]:
    """Every ``excerptN.<source>`` under ``root`` with ``Hypnogram_excerptN.txt`` beside it.

    ``source`` is "txt" (the six one-channel excerpts) or "edf" (excerpts with a full-PSG EDF).
    """
    if source not in ("txt", "edf"):
        raise ValueError(f"source={source!r}; allowed: 'txt', 'edf'")
    found = []
    for sig in root.rglob(f"excerpt*.{source}"):
        n = re.search(r"excerpt(\d+)", sig.stem)
        if n:
            found.append((sig, sig.with_name(f"Hypnogram_excerpt{n.group(1)}.txt")))
    return found


def _read_text_excerpt(path: Path, n: int, sfreq: float | None, channels, nonfinite: str,
                       meta: dict) -> list[Channel]:
    """The one channel of ``excerptN.txt``: ``[C3-A1]`` then microvolts, one per line."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    with open(path, encoding="utf-8", errors="replace") as f:
        first = f.readline().strip()
    if not (first.startswith("[") and first.endswith("]")):
        raise ValueError(f"{path}: first line {first!r} should be the channel name in brackets, e.g. '[C3-A1]'")
    rate = sfreq or DREAMS_TXT_SFREQ.get(n)
    if rate is None:
        raise ValueError(f"{path}: rate of excerpt {n} unknown; pass sfreq= (Hz)")
    x = read_numbers(path, skip_header=True)
    if abs(x.size / rate - DREAMS_EXCERPT_S) > 2.0:
        raise ValueError(
            f"{path}: {x.size} samples at {rate:g} Hz is {x.size / rate:.1f} s, not the "
            f"{DREAMS_EXCERPT_S:g}-s excerpt; pass the right sfreq="
        )
    return channels_from_signals(path, [first[1:-1]], [rate], ["uV"], [lambda: x], channels=channels,
                                 nonfinite=nonfinite, meta=meta)


def read_dreams(path, hypnogram=None, *, sfreq: float | None = None, channels=None,
                nonfinite="raise") -> Recording:
    """DREAMS excerpt: ``excerptN.edf`` or ``excerptN.txt`` + ``Hypnogram_excerptN.txt`` (5-s R&K codes).

    The text excerpt holds one channel (``[C3-A1]`` then microvolts); its rate is ``sfreq`` or the
    database's rate for excerpt N (:data:`DREAMS_TXT_SFREQ`), checked against the 30-min length.
    """
    path = Path(path)
    m = re.search(r"excerpt(\d+)", path.stem)
    if not m:
        raise ValueError(f"{path}: DREAMS files are named 'excerptN.txt' or 'excerptN.edf'")
    n = int(m.group(1))
    hyp = Path(hypnogram) if hypnogram else path.with_name(f"Hypnogram_excerpt{n}.txt")
    if path.suffix.lower() == ".txt":
        meta: dict = {}
        chans = _read_text_excerpt(path, n, sfreq, channels, nonfinite, meta)
    else:
        chans, meta, _ = read_edf_signals(path, channels=channels, nonfinite=nonfinite)
    return make_recording(chans, subject=f"excerpt{n}", recording=f"excerpt{n}", dataset="dreams", source=path,
                          meta=meta, hypnogram=read_dreams_hypnogram(hyp))
