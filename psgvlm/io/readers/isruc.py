"""ISRUC-Sleep (subgroups 1 and 3): ``<id>/<id>.rec`` (an EDF) + ``<id>/<id>_<scorer>.txt`` (two scorers)."""

from __future__ import annotations

from pathlib import Path

from psgvlm.io.hypnograms import read_isruc_hypnogram
from psgvlm.io.readers.pairing import make_recording
from psgvlm.io.readers.signal_files import read_edf_signals
from psgvlm.io.recording import Recording


def find_isruc(root: Path, *, scorer: int = 1) -> list[tuple[Path, Path | None]]:
    """Every ``*.rec`` under ``root`` with its scorer file ``<id>_<scorer>.txt`` beside it."""
    scorer = int(scorer)
    return [(rec, rec.with_name(f"{rec.stem}_{scorer}.txt")) for rec in root.rglob("*.rec")]


def read_isruc(path, hypnogram=None, *, scorer: int = 1, channels=None, nonfinite="raise") -> Recording:
    """ISRUC-Sleep subgroup 1/3: ``<id>/<id>.rec`` (EDF) + ``<id>/<id>_<scorer>.txt`` (one code per 30 s).

    ``path`` may be the ``.rec`` file or its ``<id>`` folder; ``scorer`` is 1 or 2.
    """
    path = Path(path)
    if path.is_dir():
        path = path / f"{path.name}.rec"
    if scorer not in (1, 2):
        raise ValueError(f"scorer={scorer!r}; ISRUC has scorers 1 and 2")
    sid = path.stem
    hyp = Path(hypnogram) if hypnogram else path.with_name(f"{sid}_{scorer}.txt")
    chans, meta, _ = read_edf_signals(path, channels=channels, nonfinite=nonfinite)
    labels = read_isruc_hypnogram(hyp)
    meta["scorer"] = scorer
    return make_recording(chans, subject=sid, recording=sid, dataset="isruc", source=path, meta=meta,
                          hypnogram=labels)
