"""MASS (Montreal Archive of Sleep Studies): ``<id> PSG.edf`` + ``<id> Base.edf`` (EDF+ stage annotations)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from psgvlm.io.edf import edf_start
from psgvlm.io.hypnograms import read_edf_hypnogram
from psgvlm.io.readers.pairing import make_recording
from psgvlm.io.readers.signal_files import read_edf_signals
from psgvlm.io.recording import Recording


def find_mass(root: Path) -> list[tuple[Path, Path | None]]:
    """Every ``* PSG.edf`` under ``root`` with its ``* Base.edf`` beside it."""
    return [(psg, psg.with_name(psg.name.replace(" PSG.edf", " Base.edf"))) for psg in root.rglob("* PSG.edf")]


def read_mass(path, hypnogram=None, *, channels=None, nonfinite="raise") -> Recording:
    """MASS: ``<id> PSG.edf`` + ``<id> Base.edf`` (EDF+ annotations "Sleep stage W/1/2/3/4/R/?").

    20-s scoring (SS1/SS2) is paired by time like 30-s scoring; ``pairing["scoring_epoch_s"]`` says
    which it was.
    """
    path = Path(path)
    sid = re.sub(r"\s*PSG$", "", path.stem)
    hyp = Path(hypnogram) if hypnogram else path.with_name(f"{sid} Base.edf")
    if not hyp.is_file():
        raise FileNotFoundError(f"hypnogram {hyp} not found (MASS labels are in '<id> Base.edf')")
    chans, meta, edf = read_edf_signals(path, channels=channels, nonfinite=nonfinite)
    labels = read_edf_hypnogram(hyp, edf_start(edf))
    notes = {"scoring_epoch_s": float(np.median(labels.durations_s))} if labels.durations_s.size else {}
    return make_recording(chans, subject=sid, recording=sid, dataset="mass", source=path, meta=meta,
                          hypnogram=labels, notes=notes)
