"""NSRR's SHHS, one visit at a time: ``shhs<V>-<id>.edf`` + NSRR XML ``shhs<V>-<id>-nsrr.xml``.

Laid out as NSRR ships it: ``polysomnography/edfs/shhs1/``, ``polysomnography/annotations-events-nsrr/
shhs1/`` (and ``shhs2/`` for the second visit), ``datasets/shhs1-dataset-*.csv``; files beside each
other work too. The finder takes one visit (``visit=1`` by default: SHHS-2 nights are a later night of
the same subjects and are not mixed in); the reader takes the visit from the file name.

Labels: the NSRR XML, else the Compumedics ``-profusion.xml`` NSRR ships beside it (in
``annotations-events-profusion/``). Age (``age_s1``/``age_s2``) and sex (``gender``) come from the
visit's dataset CSV, read once per file (:func:`_csv_table`), not once per night. Ids: the subject is
the NSRR id (``200001``, the same person at both visits), the recording the file's stem under its
folder relative to the dataset root, NSRR's own ``polysomnography/edfs/shhs<V>`` folders left out.
"""

from __future__ import annotations

import csv
import functools
import re
from pathlib import Path

from psgvlm.io.hypnograms import read_nsrr_hypnogram
from psgvlm.io.readers.pairing import make_recording
from psgvlm.io.readers.signal_files import read_edf_signals
from psgvlm.io.recording import Recording

VISITS = (1, 2)
_LABEL_KINDS = (("nsrr", "annotations-events-nsrr"), ("profusion", "annotations-events-profusion"))


def _check_visit(visit) -> int:
    if isinstance(visit, bool) or visit not in VISITS:
        raise ValueError(f"visit={visit!r}; SHHS has visits {list(VISITS)}")
    return int(visit)


def _recording_id(edf: Path, root: Path) -> str:
    """The file's stem under its folder relative to ``root``, NSRR's ``[polysomnography/]edfs/shhs<V>`` left out."""
    folder = list(edf.parent.relative_to(root).parts)
    if folder[-2:] == ["edfs", edf.parent.name] and re.fullmatch(r"shhs\d", edf.parent.name):
        folder = folder[:-2]
        if folder[-1:] == ["polysomnography"]:
            folder = folder[:-1]
    return "/".join([*folder, edf.stem])


def find_shhs(root: Path, *, visit: int = 1) -> list[tuple[Path, Path | None, str, str]]:
    """Every ``shhs<visit>-*.edf`` under ``root`` with its NSRR XML (else Profusion XML) found anywhere
    under ``root``, and its ids."""
    visit = _check_visit(visit)
    xml = {p.name: p for p in root.rglob(f"shhs{visit}-*.xml")}
    found = []
    for edf in root.rglob(f"shhs{visit}-*.edf"):
        label = next((xml[n] for n in (f"{edf.stem}-{kind}.xml" for kind, _ in _LABEL_KINDS) if n in xml), None)
        found.append((edf, label, _recording_id(edf, root), _nsrr_id(edf)))
    return found


def _nsrr_id(path: Path) -> str:
    return path.stem.split("-", 1)[1] if "-" in path.stem else path.stem


def _shhs_xml_for(path: Path) -> Path:
    """The NSRR XML beside the EDF or in the NSRR layout, else the Profusion XML there; else the NSRR name beside it."""
    for kind, folder in _LABEL_KINDS:
        name = f"{path.stem}-{kind}.xml"
        if path.with_name(name).is_file():
            return path.with_name(name)
        # NSRR layout: polysomnography/edfs/shhs1/x.edf and polysomnography/annotations-events-nsrr/shhs1/x-nsrr.xml
        for up in path.parents[:3]:
            cand = up / folder / path.parent.name / name
            if cand.is_file():
                return cand
    return path.with_name(f"{path.stem}-nsrr.xml")


@functools.lru_cache(maxsize=16)
def _csv_table(csv_path: str, mtime_ns: int, size: int) -> dict[str, dict[str, str]]:
    """``nsrrid -> {age_s1/age_s2/gender: value}`` of one NSRR dataset CSV, parsed once per file version."""
    keep = ("age_s1", "age_s2", "gender")
    with open(csv_path, newline="", encoding="utf-8", errors="replace") as f:
        return {row.get("nsrrid", "").strip(): {k: row[k].strip() for k in keep if (row.get(k) or "").strip()}
                for row in csv.DictReader(f)}


def _csv_rows(path: Path, visit: int, sid: str) -> list[dict[str, str]]:
    """The subject's rows in ``datasets/shhs<visit>-dataset*.csv`` (then SHHS-1's, for sex) above ``path``."""
    out = []
    for v in dict.fromkeys((visit, 1)):
        for up in path.parents[:4]:
            folder = up / "datasets"
            for csv_path in sorted(folder.glob(f"shhs{v}-dataset*.csv")) if folder.is_dir() else []:
                st = csv_path.stat()
                row = _csv_table(str(csv_path), st.st_mtime_ns, st.st_size).get(sid)
                if row:
                    out.append(row)
    return out


def _shhs_csv_meta(path: Path, visit: int, sid: str) -> dict:
    """Age at this visit and sex of an SHHS subject from the NSRR dataset CSVs, if present."""
    meta: dict = {}
    for row in _csv_rows(path, visit, sid):
        if "age" not in meta and row.get(f"age_s{visit}"):
            meta["age"] = float(row[f"age_s{visit}"])
        sex = {"1": "M", "2": "F"}.get(row.get("gender", ""))
        if sex and "sex" not in meta:
            meta["sex"] = sex
    return meta


def read_shhs(path, hypnogram=None, *, channels=None, nonfinite="raise") -> Recording:
    """SHHS: ``shhs<V>-<id>.edf`` + NSRR XML ``shhs<V>-<id>-nsrr.xml`` or ``-profusion.xml`` (beside it or
    in the NSRR layout); the visit ``V`` from the file name sets which age (``age_s<V>``) is read."""
    path = Path(path)
    sid = _nsrr_id(path)
    m = re.match(r"shhs(\d)-", path.name)
    visit = int(m.group(1)) if m else 1
    hyp = Path(hypnogram) if hypnogram else _shhs_xml_for(path)
    if not hyp.is_file():
        raise FileNotFoundError(f"hypnogram {hyp} not found (SHHS labels are in 'shhs{visit}-<id>-nsrr.xml' or "
                                f"'-profusion.xml')")
    chans, meta, _ = read_edf_signals(path, channels=channels, nonfinite=nonfinite, dataset="shhs")
    meta.update(_shhs_csv_meta(path, visit, sid))
    meta["visit"] = visit
    return make_recording(chans, subject=sid, recording=path.stem, dataset="shhs", source=path, meta=meta,
                          hypnogram=read_nsrr_hypnogram(hyp))
