"""Sleep-EDF Expanded: ``<rec>-PSG.edf`` + ``<rec[:6]>??-Hypnogram.edf`` (EDF+ stage annotations).

As PhysioNet ships it: ``sleep-cassette/SC4ssNE0-PSG.edf`` (two nights N per subject ss; some nights
``F0``/``G0`` instead of ``E0``, their hypnograms ``SC4ssNEC``, ``..FC``, ``..GV``...) and
``sleep-telemetry/ST7ssNJ0-PSG.edf`` with ``ST7ssNJ?-Hypnogram.edf``. A hypnogram is matched by the
first six characters (study, subject, night). Ids: subject ``SC4ss``/``ST7ss``; recording ``SC4ssNE0``
under its folder relative to the dataset root (``sleep-cassette/SC4001E0``).
"""

from __future__ import annotations

import re
from pathlib import Path

from psgvlm.io.edf import edf_start
from psgvlm.io.hypnograms import read_edf_hypnogram
from psgvlm.io.readers.pairing import layout_id, make_recording
from psgvlm.io.readers.signal_files import read_edf_signals
from psgvlm.io.recording import Recording


def _hypnogram_for(path: Path) -> Path | None:
    """``<rec[:6]>*-Hypnogram.edf`` beside the PSG, or the lone hypnogram of a lone PSG."""
    cands = sorted(path.parent.glob(f"{path.name[:6]}*-Hypnogram.edf"))
    if len(cands) == 1:
        return cands[0]
    every = sorted(path.parent.glob("*-Hypnogram.edf"))
    psgs = [p for p in path.parent.glob("*.edf") if not p.name.endswith("-Hypnogram.edf")]
    if len(every) == 1 and len(psgs) == 1:  # a lone pair (e.g. a cropped file renamed)
        return every[0]
    return None


def _ids(path: Path) -> tuple[str, str]:
    """``(recording, subject)`` from the file name: ``SC4ssNE0`` and ``SC4ss`` (subject ss, night N)."""
    rec_id = path.name.removesuffix("-PSG.edf").removesuffix(".edf")
    m = re.match(r"(S[CT]\d\d\d)\d", rec_id)
    return rec_id, m.group(1) if m else rec_id


def find_sleepedf(root: Path) -> list[tuple[Path, Path | None, str, str]]:
    """Every ``*-PSG.edf`` under ``root`` (else every ``*.edf`` but hypnograms) with its hypnogram and ids."""
    psgs = list(root.rglob("*-PSG.edf"))
    if not psgs:
        psgs = [p for p in root.rglob("*.edf") if not p.name.endswith("-Hypnogram.edf")]
    found = []
    for psg in psgs:
        rec_id, subject = _ids(psg)
        found.append((psg, _hypnogram_for(psg), layout_id(psg, root, rec_id), subject))
    return found


def read_sleepedf(path, hypnogram=None, *, channels=None, nonfinite="raise") -> Recording:
    """Sleep-EDF Expanded: ``<rec>-PSG.edf`` + ``<rec[:6]>??-Hypnogram.edf`` (EDF+ annotations)."""
    path = Path(path)
    hyp = Path(hypnogram) if hypnogram else _hypnogram_for(path)
    if hyp is None or not hyp.is_file():
        raise FileNotFoundError(
            f"hypnogram for {path} not found (expected '{path.name[:6]}??-Hypnogram.edf' beside it; pass hypnogram=)"
        )
    chans, meta, edf = read_edf_signals(path, channels=channels, nonfinite=nonfinite)
    labels = read_edf_hypnogram(hyp, edf_start(edf))
    rec_id, subject = _ids(path)
    return make_recording(chans, subject=subject, recording=rec_id, dataset="sleepedf", source=path,
                          meta=meta, hypnogram=labels)
