"""Any EDF/BDF, optionally with a hypnogram in any form :func:`psgvlm.io.hypnogram_formats.read_generic_hypnogram`
reads (format detected from its content, or named: CSV/TSV intervals, one label per line, DREAMS and ISRUC
text, EDF+ annotations, NSRR XML)."""

from __future__ import annotations

from pathlib import Path

from psgvlm.io.edf import edf_start
from psgvlm.io.hypnogram_formats import read_generic_hypnogram
from psgvlm.io.readers.pairing import make_recording
from psgvlm.io.readers.signal_files import read_edf_signals
from psgvlm.io.recording import Recording

# Label files looked for beside a signal file, first found wins.
_HYPNOGRAM_NAMES = ("{}.csv", "{}.tsv", "{}.ids", "{}_hypnogram.csv", "{}-hypnogram.csv", "{}_hypnogram.txt",
                    "{}.txt")


def find_generic(root: Path) -> list[tuple[Path, Path | None, str, str]]:
    """Every EDF/BDF under ``root`` (not Sleep-EDF or MASS label files) with the first label file
    named like it (``<stem>.csv``, ``.tsv``, ``.ids``, ``_hypnogram.csv``, ...); its path relative to
    ``root`` without the suffix (``subjA/night``) names recording and subject."""
    found = []
    for sig in (p for ext in ("edf", "bdf", "EDF", "BDF") for p in root.rglob(f"*.{ext}")):
        if sig.name.endswith(("-Hypnogram.edf", " Base.edf")):
            continue
        beside = (sig.with_name(name.format(sig.stem)) for name in _HYPNOGRAM_NAMES)
        rec_id = sig.relative_to(root).with_suffix("").as_posix()
        found.append((sig, next((h for h in beside if h.is_file()), None), rec_id, rec_id))
    return found


def read_generic(path, hypnogram=None, *, channels=None, nonfinite="raise",
                 hypnogram_format: str | None = None, lazy: bool = False) -> Recording:
    """Any EDF/BDF, optionally with a hypnogram in any format of
    :data:`psgvlm.io.hypnogram_formats.HYPNOGRAM_FORMATS`, detected from its content unless
    ``hypnogram_format`` names it. Without a hypnogram the recording is unlabelled (``stages`` None).
    ``lazy``: each channel's samples are read the first time they are used (:func:`read_edf_signals`)."""
    path = Path(path)
    chans, meta, edf = read_edf_signals(path, channels=channels, nonfinite=nonfinite, lazy=lazy)
    stem = path.stem
    if hypnogram is None:
        return make_recording(chans, subject=stem, recording=stem, dataset="generic", source=path, meta=meta)
    hyp = Path(hypnogram)
    if not hyp.is_file():
        raise FileNotFoundError(f"hypnogram {hyp} not found")
    return make_recording(chans, subject=stem, recording=stem, dataset="generic", source=path, meta=meta,
                          hypnogram=read_generic_hypnogram(hyp, edf_start(edf), hypnogram_format))
