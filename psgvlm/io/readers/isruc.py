"""ISRUC-Sleep: ``<id>/<id>.rec`` (an EDF) + ``<id>/<id>_<scorer>.txt`` (two scorers), as downloaded.

The download is one folder per subgroup: ``Subgroup_1/<id>/`` (100 subjects) and ``Subgroup_3/<id>/``
(10), each numbering its subjects from 1, and ``Subgroup_2/<subject>/<session>/<session>.rec`` (8
subjects, two nights each). Ids come from that layout (:func:`isruc_ids`): subject
``isruc-sg<N>-<id>``; subgroup 2's two nights are recordings ``isruc-sg2-<subject>-1`` and ``-2`` of one
subject ``isruc-sg2-<subject>``. A folder without subgroup folders (``<id>/<id>.rec``, as
``psgvlm synth`` writes by default) names recording and subject ``<id>``.

Recordings vary (:mod:`psgvlm.io.channels`): A1/A2 or M1/M2 references, bare electrodes in a few
(re-referenced here: F3-A2 = F3 - A2, ...), a chin EMG labelled ``24`` instead of ``X1``, nights
without some channels. The last 30 epochs of each night (noisy tails of the original export) are
dropped by published benchmarks; ``trim_tail_epochs=30`` does the same, and says so in
``rec.pairing["trimmed_tail_epochs"]``.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from psgvlm.io.hypnograms import Hypnogram, read_isruc_hypnogram
from psgvlm.io.readers.pairing import make_recording
from psgvlm.io.readers.signal_files import read_edf_signals
from psgvlm.io.recording import Recording

# "Subgroup_1", "subgroup1", "SubgroupIII", "ISRUC_S3", "ISRUC-Sleep-2", "sg2": the subgroup folder. A bare
# "isruc3" is not one (a user's or a test's folder name, not the download's).
_SUBGROUP = re.compile(r"(?:isruc[_ -]?(?:sleep[_ -]?(?:subgroup|sg|s)?|subgroup|sg|s)|subgroup|sg|s)[_ -]?"
                       r"(1|2|3|iii|ii|i)",
                       re.IGNORECASE)
_ROMAN = {"i": "1", "ii": "2", "iii": "3"}


def _subgroup(folder: str) -> str | None:
    """The subgroup number a folder name gives ("Subgroup_3" -> "3"), or None."""
    m = _SUBGROUP.fullmatch(folder.strip())
    return None if m is None else _ROMAN.get(m.group(1).casefold(), m.group(1))


def isruc_ids(path, root=None) -> tuple[str, str]:
    """``(recording, subject)`` of an ISRUC ``.rec`` from where it lies in the download.

    Parameters
    ----------
    path : str or Path
        The ``.rec`` file.
    root : str or Path, optional
        The dataset folder it was found under (``--input``); its own name may be the subgroup
        (``--input ISRUC/Subgroup_3``). Folders between ``root`` and the subgroup folder prefix the
        ids, so every file under ``root`` gets its own. Default: the file alone (its parents name the
        subgroup, if any).

    Returns
    -------
    recording, subject : str
        ``Subgroup_3/1/1.rec`` -> (``isruc-sg3-1``, ``isruc-sg3-1``); ``Subgroup_2/5/2/2.rec`` ->
        (``isruc-sg2-5-2``, ``isruc-sg2-5``); ``1/1.rec`` without a subgroup folder -> (``1``, ``1``);
        any other place: the path relative to ``root`` without its suffix, for both.
    """
    path = Path(path)
    stem = path.stem
    if root is None:
        context, rel = (), path.parts[-4:]
    else:
        context, rel = (Path(root).name,), path.relative_to(root).parts
    parts = (*context, *rel)
    for k in range(len(parts) - 2, -1, -1):
        n = _subgroup(parts[k])
        if n is None:
            continue
        inner = parts[k + 1:]
        if len(inner) == 2 and inner[0] == stem:  # Subgroup_N/<id>/<id>.rec
            recording = subject = f"isruc-sg{n}-{stem}"
        elif len(inner) == 3 and inner[1] == stem:  # Subgroup_2/<subject>/<session>/<session>.rec
            subject = f"isruc-sg{n}-{inner[0]}"
            recording = f"{subject}-{stem}"
        else:
            break
        prefix = "/".join(parts[len(context):k]) if root is not None else ""
        return (f"{prefix}/{recording}", f"{prefix}/{subject}") if prefix else (recording, subject)
    if root is None:
        return stem, stem
    rel_path = PurePosixPath(*rel).with_suffix("")
    name = rel_path.parent.as_posix() if rel_path.parent.name == stem else rel_path.as_posix()
    return name, name


def find_isruc(root: Path, *, scorer: int = 1) -> list[tuple[Path, Path | None, str, str]]:
    """Every ``*.rec`` under ``root`` with its scorer file ``<id>_<scorer>.txt`` beside it and its ids."""
    scorer = int(scorer)
    return [(rec, rec.with_name(f"{rec.stem}_{scorer}.txt"), *isruc_ids(rec, root)) for rec in root.rglob("*.rec")]


def _trim_tail(labels: Hypnogram, n: int) -> Hypnogram:
    """``labels`` without its last ``n`` label epochs (ISRUC: one per 30 s)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"trim_tail_epochs={n!r}: must be an integer >= 0")
    if n >= len(labels.codes):
        raise ValueError(f"{labels.source}: trim_tail_epochs={n} would drop all {len(labels.codes)} label epochs")
    keep = len(labels.codes) - n
    return Hypnogram(labels.onsets_s[:keep], labels.durations_s[:keep], labels.codes[:keep], labels.source,
                     labels.onset_s, labels.notes)


def read_isruc(path, hypnogram=None, *, scorer: int = 1, trim_tail_epochs: int = 0, channels=None,
               nonfinite="raise") -> Recording:
    """ISRUC-Sleep: ``<id>/<id>.rec`` (EDF) + ``<id>/<id>_<scorer>.txt`` (one code per 30 s).

    ``path`` may be the ``.rec`` file or its ``<id>`` folder; ``scorer`` is 1 or 2;
    ``trim_tail_epochs`` drops that many label epochs at the end of the night (published benchmarks
    drop 30). Bare electrodes are re-referenced (``meta["derived_channels"]``); ``24`` is the chin EMG.
    """
    path = Path(path)
    if path.is_dir():
        path = path / f"{path.name}.rec"
    if scorer not in (1, 2):
        raise ValueError(f"scorer={scorer!r}; ISRUC has scorers 1 and 2")
    hyp = Path(hypnogram) if hypnogram else path.with_name(f"{path.stem}_{scorer}.txt")
    chans, meta, _ = read_edf_signals(path, channels=channels, nonfinite=nonfinite, dataset="isruc",
                                      rereference=True)
    labels = read_isruc_hypnogram(hyp)
    notes = {}
    if trim_tail_epochs:
        labels = _trim_tail(labels, trim_tail_epochs)
        notes["trimmed_tail_epochs"] = trim_tail_epochs
    meta["scorer"] = scorer
    recording, subject = isruc_ids(path)
    return make_recording(chans, subject=subject, recording=recording, dataset="isruc", source=path, meta=meta,
                          hypnogram=labels, notes=notes)
