"""NSRR's SHHS-1: ``shhs1-<id>.edf`` + NSRR XML ``shhs1-<id>-nsrr.xml``, beside it or in the NSRR layout
(``polysomnography/edfs/shhs1/`` and ``polysomnography/annotations-events-nsrr/shhs1/``); age and sex
from ``datasets/shhs1-dataset-*.csv`` when present."""

from __future__ import annotations

import csv
from pathlib import Path

from psgvlm.io.hypnograms import read_nsrr_hypnogram
from psgvlm.io.readers.pairing import make_recording
from psgvlm.io.readers.signal_files import read_edf_signals
from psgvlm.io.recording import Recording


def find_shhs(root: Path) -> list[tuple[Path, Path | None]]:
    """Every ``shhs*.edf`` under ``root`` with the ``<stem>-nsrr.xml`` found anywhere under ``root``."""
    xml = {p.name: p for p in root.rglob("*-nsrr.xml")}
    return [(edf, xml.get(f"{edf.stem}-nsrr.xml")) for edf in root.rglob("shhs*.edf")]


def _shhs_xml_for(path: Path) -> Path:
    """The XML beside the EDF, or where the NSRR layout puts it."""
    name = f"{path.stem}-nsrr.xml"
    beside = path.with_name(name)
    if beside.is_file():
        return beside
    # NSRR layout: polysomnography/edfs/shhs1/x.edf and polysomnography/annotations-events-nsrr/shhs1/x-nsrr.xml
    for up in path.parents[:3]:
        cand = up / "annotations-events-nsrr" / path.parent.name / name
        if cand.is_file():
            return cand
    return beside


def _shhs_csv_meta(path: Path, sid: str) -> dict:
    """Age/sex of an SHHS subject from the NSRR dataset CSV (``datasets/shhs1-dataset-*.csv``) if present."""
    for up in path.parents[:4]:
        for csv_path in sorted((up / "datasets").glob("shhs1-dataset*.csv")) if (up / "datasets").is_dir() else []:
            with open(csv_path, newline="", encoding="utf-8", errors="replace") as f:
                for row in csv.DictReader(f):
                    if row.get("nsrrid", "").strip() == sid:
                        meta = {}
                        if row.get("age_s1", "").strip():
                            meta["age"] = float(row["age_s1"])
                        sex = {"1": "M", "2": "F"}.get(row.get("gender", "").strip())
                        if sex:
                            meta["sex"] = sex
                        return meta
    return {}


def read_shhs(path, hypnogram=None, *, channels=None, nonfinite="raise") -> Recording:
    """SHHS-1: ``shhs1-<id>.edf`` + NSRR XML ``shhs1-<id>-nsrr.xml`` (beside it or in the NSRR layout)."""
    path = Path(path)
    sid = path.stem.split("-", 1)[1] if "-" in path.stem else path.stem
    hyp = Path(hypnogram) if hypnogram else _shhs_xml_for(path)
    if not hyp.is_file():
        raise FileNotFoundError(f"hypnogram {hyp} not found (SHHS labels are in 'shhs1-<id>-nsrr.xml')")
    chans, meta, _ = read_edf_signals(path, channels=channels, nonfinite=nonfinite, dataset="shhs")
    meta.update(_shhs_csv_meta(path, sid))
    return make_recording(chans, subject=sid, recording=path.stem, dataset="shhs", source=path, meta=meta,
                          hypnogram=read_nsrr_hypnogram(hyp))
