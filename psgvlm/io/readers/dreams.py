"""DREAMS (spindles/sleep excerpts): ``excerptN.txt`` (one channel) or ``excerptN.edf`` (full PSG) +
``Hypnogram_excerptN.txt`` (R&K codes, one per 5 s)."""

from __future__ import annotations

import math
import re
from pathlib import Path

from psgvlm.io.hypnograms import read_dreams_hypnogram
from psgvlm.io.readers.pairing import layout_id, make_recording
from psgvlm.io.readers.signal_files import channels_from_signals, read_edf_signals, read_numbers
from psgvlm.io.recording import Channel, Recording

DREAMS_EXCERPT_S = 1800.0  # every DREAMS excerpt is 30 minutes
# DREAMS text excerpts do not state their rate; it follows from the sample count over 30 min: a whole
# rate, give or take 1e-4 of it, or a whole rate plus a short tail of extra samples (the database's
# excerpt 6 holds 360140 samples, 0.7 s past 30 min at 200 Hz).
DREAMS_RATE_RTOL = 1e-4
DREAMS_TAIL_S = 1.0
DREAMS_LENGTH_TOL_S = 2.0  # an sfreq= given by the caller must make the excerpt 30 min within this


def dreams_text_rate(n_samples: int, source: str = "") -> float:
    """The rate of a DREAMS text excerpt from its sample count: the whole number of Hz that makes it 30 min.

    Parameters
    ----------
    n_samples : int
        Samples in the excerpt.
    source : str
        The file, for messages.

    Returns
    -------
    float
        A whole number of Hz, >= 1: ``n_samples / DREAMS_EXCERPT_S`` within :data:`DREAMS_RATE_RTOL` of
        it, or at most :data:`DREAMS_TAIL_S` seconds of samples more than 30 minutes at it.

    Raises
    ------
    ValueError
        When no whole rate of at least 1 Hz gives a 30-min excerpt (the message says to pass ``sfreq=``).
    """
    exact = n_samples / DREAMS_EXCERPT_S
    for rate in sorted({math.floor(exact), math.ceil(exact)}, key=lambda r: abs(r - exact)):
        extra = n_samples - rate * DREAMS_EXCERPT_S  # samples past 30 min at this rate (negative: short)
        if rate >= 1 and -DREAMS_RATE_RTOL * rate * DREAMS_EXCERPT_S <= extra <= rate * DREAMS_TAIL_S:
            return float(rate)
    raise ValueError(
        f"{source}: {n_samples} samples is not a {DREAMS_EXCERPT_S:g}-s DREAMS excerpt at a whole rate "
        f"({n_samples / DREAMS_EXCERPT_S:.4g} Hz over {DREAMS_EXCERPT_S:g} s); pass sfreq= (Hz, --sfreq)"
    )


def find_dreams(root: Path, *, source: str = "txt") -> list[tuple[Path, Path | None, str, str]]:
    """Every ``excerptN.<source>`` under ``root`` with ``Hypnogram_excerptN.txt`` beside it and its ids
    (``excerptN`` under its folder relative to ``root``, for recording and subject).

    ``source`` is "txt" (the six one-channel excerpts) or "edf" (excerpts with a full-PSG EDF).
    """
    if source not in ("txt", "edf"):
        raise ValueError(f"source={source!r}; allowed: 'txt', 'edf'")
    found = []
    for sig in root.rglob(f"excerpt*.{source}"):
        n = re.search(r"excerpt(\d+)", sig.stem)
        if n:
            rec_id = layout_id(sig, root, f"excerpt{n.group(1)}")
            found.append((sig, sig.with_name(f"Hypnogram_excerpt{n.group(1)}.txt"), rec_id, rec_id))
    return found


def _read_text_excerpt(path: Path, sfreq: float | None, channels, nonfinite: str,
                       meta: dict) -> list[Channel]:
    """The one channel of ``excerptN.txt``: ``[C3-A1]`` then microvolts, one per line."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        first = f.readline().strip()
    if not (first.startswith("[") and first.endswith("]")):
        raise ValueError(f"{path}: first line {first!r} should be the channel name in brackets, e.g. '[C3-A1]'")
    x = read_numbers(path, skip_header=True)
    if sfreq is None:
        rate = dreams_text_rate(x.size, str(path))
    else:
        rate = float(sfreq)
        if not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"{path}: sfreq={sfreq!r}; the rate must be a positive number of Hz")
        if abs(x.size / rate - DREAMS_EXCERPT_S) > DREAMS_LENGTH_TOL_S:
            raise ValueError(
                f"{path}: {x.size} samples at {rate:g} Hz is {x.size / rate:.1f} s, not the "
                f"{DREAMS_EXCERPT_S:g}-s excerpt; pass the right sfreq= or none (the rate then follows "
                f"from the sample count)"
            )
    return channels_from_signals(path, [first[1:-1]], [rate], ["uV"], [lambda: x], channels=channels,
                                 nonfinite=nonfinite, meta=meta)


def read_dreams(path, hypnogram=None, *, sfreq: float | None = None, channels=None,
                nonfinite="raise") -> Recording:
    """DREAMS excerpt: ``excerptN.edf`` or ``excerptN.txt`` + ``Hypnogram_excerptN.txt`` (5-s R&K codes).

    The text excerpt holds one channel (``[C3-A1]`` then microvolts); its rate is ``sfreq`` when given
    (checked against the 30-min length), else the whole rate that makes the excerpt 30 minutes
    (:func:`dreams_text_rate`).
    """
    path = Path(path)
    m = re.search(r"excerpt(\d+)", path.stem)
    if not m:
        raise ValueError(f"{path}: DREAMS files are named 'excerptN.txt' or 'excerptN.edf'")
    n = int(m.group(1))
    hyp = Path(hypnogram) if hypnogram else path.with_name(f"Hypnogram_excerpt{n}.txt")
    if path.suffix.lower() == ".txt":
        meta: dict = {}
        chans = _read_text_excerpt(path, sfreq, channels, nonfinite, meta)
    else:
        chans, meta, _ = read_edf_signals(path, channels=channels, nonfinite=nonfinite)
    return make_recording(chans, subject=f"excerpt{n}", recording=f"excerpt{n}", dataset="dreams", source=path,
                          meta=meta, hypnogram=read_dreams_hypnogram(hyp))
