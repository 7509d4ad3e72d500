"""MASS (Montreal Archive of Sleep Studies): ``<id> PSG.edf`` + ``<id> Base.edf`` (EDF+ stage annotations).

The Base files lie beside the PSG files or in a folder of their own (the archive ships signals and
annotations separately: ``SS3/biosignals/`` and ``SS3/annotations/``). Ids: the subject is the MASS id
(``01-03-0001``, unique across the archive's subsets); the recording is that id under its folder
relative to the dataset root. The EEG is referenced to computed linked ears (``EEG C3-CLE``) or a
linked-ear reference (``-LER``) depending on the night, the ECG is ``ECG ECGI`` or ``ECG I``, and the
rates are "256 Hz with decimals" (e.g. 256.0017 Hz: resampling snaps them, see
:func:`psgvlm.signal.epochs.resample_ratio`).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from psgvlm.io.edf import edf_start
from psgvlm.io.hypnograms import read_edf_hypnogram
from psgvlm.io.readers.pairing import layout_id, make_recording
from psgvlm.io.readers.signal_files import read_edf_signals
from psgvlm.io.recording import Recording


def _mass_id(path: Path) -> str:
    return re.sub(r"\s*PSG$", "", path.stem)


def find_mass(root: Path) -> list[tuple[Path, Path | None, str, str]]:
    """Every ``* PSG.edf`` under ``root`` with its ``* Base.edf`` (beside it, else anywhere under ``root``)."""
    bases = {}
    for base in sorted(root.rglob("* Base.edf")):
        bases.setdefault(base.name, base)
    found = []
    for psg in root.rglob("* PSG.edf"):
        sid = _mass_id(psg)
        beside = psg.with_name(f"{sid} Base.edf")
        found.append((psg, beside if beside.is_file() else bases.get(beside.name), layout_id(psg, root, sid), sid))
    return found


def read_mass(path, hypnogram=None, *, channels=None, nonfinite="raise") -> Recording:
    """MASS: ``<id> PSG.edf`` + ``<id> Base.edf`` (EDF+ annotations "Sleep stage W/1/2/3/4/R/?").

    20-s scoring (SS1/SS2) is paired by time like 30-s scoring; ``pairing["scoring_epoch_s"]`` says
    which it was. Without ``hypnogram`` the Base file is looked for beside the PSG file.
    """
    path = Path(path)
    sid = _mass_id(path)
    hyp = Path(hypnogram) if hypnogram else path.with_name(f"{sid} Base.edf")
    if not hyp.is_file():
        raise FileNotFoundError(f"hypnogram {hyp} not found (MASS labels are in '<id> Base.edf')")
    chans, meta, edf = read_edf_signals(path, channels=channels, nonfinite=nonfinite)
    labels = read_edf_hypnogram(hyp, edf_start(edf))
    notes = {"scoring_epoch_s": float(np.median(labels.durations_s))} if labels.durations_s.size else {}
    return make_recording(chans, subject=sid, recording=sid, dataset="mass", source=path, meta=meta,
                          hypnogram=labels, notes=notes)
