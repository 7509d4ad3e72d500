"""The Prerau-lab example: ``segment_data.csv`` (one EEG value per line, 100 Hz) + ``segment_stages.csv``."""

from __future__ import annotations

import re
from pathlib import Path

from psgvlm.io.hypnograms import read_prerau_hypnogram
from psgvlm.io.readers.pairing import make_recording
from psgvlm.io.readers.signal_files import channels_from_signals, read_numbers
from psgvlm.io.recording import Recording

PRERAU_SFREQ = 100.0


def find_prerau(root: Path) -> list[tuple[Path, Path | None, str, str]]:
    """Every ``segment_data.csv`` under ``root`` with ``segment_stages.csv`` beside it; its folder relative
    to ``root`` (``root``'s name for one directly in it) names recording and subject."""
    found = []
    for sig in root.rglob("segment_data.csv"):
        rec_id = sig.parent.relative_to(root).as_posix()
        rec_id = (root.name or "prerau") if rec_id == "." else rec_id
        found.append((sig, sig.with_name("segment_stages.csv"), rec_id, rec_id))
    return found


def read_prerau(path, hypnogram=None, *, sfreq: float = PRERAU_SFREQ, channels=None,
                nonfinite="raise") -> Recording:
    """Prerau-lab CSV: ``segment_data.csv`` (one EEG value per line) + ``segment_stages.csv``.

    The stage file lists ``Time,Stage`` changes (see :func:`psgvlm.io.hypnograms.read_prerau_hypnogram`);
    the epoch grid starts at the first whole epoch on the changes' grid.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "segment_data.csv"
    hyp = Path(hypnogram) if hypnogram else path.with_name("segment_stages.csv")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    meta: dict = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        first = f.readline().strip()
    has_header = not re.fullmatch(r"[-+0-9.eE,\s]+", first or "0")
    x = read_numbers(path, skip_header=has_header)
    chans = channels_from_signals(path, ["EEG"], [sfreq], ["uV"], [lambda: x], channels=channels,
                                  nonfinite=nonfinite, meta=meta)
    name = path.parent.name or "prerau"  # one segment per folder, as the example ships
    return make_recording(chans, subject=name, recording=name, dataset="prerau", source=path, meta=meta,
                          hypnogram=read_prerau_hypnogram(hyp))
