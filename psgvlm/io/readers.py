"""Readers: PSG recordings in each dataset's native on-disk format -> :class:`psgvlm.io.recording.Recording`.

``READERS`` is the registry (format -> reader function); :func:`read_recording` is the entry point,
:func:`find_recordings` discovers recordings in a dataset folder laid out as the dataset ships, and
:func:`info_main` is ``psgvlm info --format F PATH [--hypnogram H]``.

EDF, EDF+ and BDF are read with edfio, which keeps every signal at its own sampling rate (mne would
upsample all of them to the highest rate) and decodes only the signals asked for. Own code is kept
to the small text formats (ISRUC scorer files, DREAMS text excerpts and 5-s hypnograms, the Prerau
CSV pair, NSRR XML, CSV/TSV hypnograms) and to a 256-byte header check that gives clear errors for
files that are not EDF or are truncated.

Pairing rule (every format): labels become time intervals in signal seconds; 30-s epochs are cut on
a grid that starts at the first scored instant (``rec.onset_s``); an epoch takes the stage that
covers at least 20 s of it (DREAMS: 4 of 6 five-second slots; 20-s MASS scoring: the 20-s epoch
inside it), otherwise it is unscored. Label epochs past the end of the signal and signal past the
last label are dropped (the unmatched tail); the counts go to ``rec.pairing``.

Refused with an error naming the file and value: not EDF/BDF, truncated (file size vs header),
discontinuous EDF+D (gaps would shift labels), duplicate channel labels, NaN/inf samples (unless
``nonfinite="zero"``), unknown stage codes, a missing hypnogram, a requested channel that is absent.

Units: voltage channels are converted to microvolts whatever the header says (``V``, ``mV``, ``uV``,
and upper-case spellings such as DREAMS' ``UV``, which means microvolts, not volts). EEG/EOG/EMG/ECG
channels with an empty or unknown unit are taken as microvolts and listed in
``rec.meta["unit_assumed_uv"]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import inspect
import json
import math
import re
import sys
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from psgvlm.io.channels import canonical_names
from psgvlm.io.edf import parse_edf_header
from psgvlm.io.recording import Channel, Recording
from psgvlm.stages import (
    DREAMS_CODES,
    EPOCH_S,
    GENERIC_LABELS,
    ISRUC_CODES,
    NSRR_CONCEPTS,
    PRERAU_CODES,
    RK_ANNOTATIONS,
    UNSCORED,
    map_codes,
    stage_counts,
)

MIN_COVER_S = 20.0  # seconds of a 30-s epoch one stage must cover to label it (2/3, = 4 of 6 DREAMS slots)
# DREAMS text excerpts do not state their rate; these are the rates given with the database.
DREAMS_TXT_SFREQ: dict[int, float] = {1: 100.0, 2: 200.0, 3: 50.0, 4: 200.0, 5: 200.0, 6: 200.0}
DREAMS_EXCERPT_S = 1800.0  # every DREAMS excerpt is 30 minutes
PRERAU_SFREQ = 100.0
# Generic hypnograms accept the plain names and the EDF+ R&K annotation texts.
GENERIC_TABLE: dict = {**GENERIC_LABELS, **RK_ANNOTATIONS}
_UV_PER_UNIT = {"uv": 1.0, "µv": 1.0, "μv": 1.0, "mv": 1e3, "v": 1e6, "nv": 1e-3}
_ELECTRO = ("EEG", "EOG", "EMG", "ECG")


# ==================================================================================================
# EDF
# ==================================================================================================
def check_edf(path: Path) -> dict:
    """Validate an EDF/BDF header and the file size; return the header fields used for checks.

    Raises ValueError naming the file and the bad value for files that are not EDF/BDF, have a
    malformed header, are discontinuous (EDF+D) or are shorter than their header says (truncated).
    A partial trailing data record is tolerated (readers drop it).
    """
    path = Path(path)
    try:
        h = parse_edf_header(path)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    if h.kind.endswith("+D"):
        # Discontinuous files have gaps between data records; reading them as continuous would
        # shift every label after the first gap, so refuse rather than mis-pair.
        raise ValueError(
            f"{path}: discontinuous {h.kind} file (gaps between records) is not supported; "
            f"convert it to a continuous EDF (e.g. with the gaps filled) first"
        )
    size, record_bytes, n_records = h.file_bytes, h.record_bytes, h.n_records
    if n_records >= 0:
        expected = h.header_bytes + n_records * record_bytes
        if size > expected + record_bytes:
            raise ValueError(
                f"{path}: {size} bytes, but the header describes {expected} ({n_records} data records); "
                f"the number-of-records field is wrong or the file holds something else"
            )
        if size < expected:
            whole = (size - h.header_bytes) // record_bytes if record_bytes else 0
            raise ValueError(
                f"{path}: truncated {h.base} file: {size} bytes, the header promises {expected} "
                f"({n_records} data records of {h.record_s:g} s; only {whole} complete)"
            )
    return {"kind": h.base, "n_records": n_records, "record_s": h.record_s, "n_signals": len(h.labels)}


def _read_edfio(path: Path):
    import edfio

    is_bdf = check_edf(path)["kind"] == "BDF"
    last = None
    # EDF headers are ASCII by the standard; clinical exports write UTF-8 (Nox: "Impédance") or latin-1.
    for encoding in ("utf-8", "latin-1"):
        try:
            if is_bdf:
                return edfio.read_bdf(path, header_encoding=encoding)
            return edfio.read_edf(path, lazy_load_data=True, header_encoding=encoding)
        except UnicodeDecodeError as err:
            last = err
        except Exception as err:  # edfio raises ValueError/others on non-compliant headers
            raise ValueError(f"{path}: cannot be read as EDF/BDF: {err}") from err
    raise ValueError(f"{path}: header is neither UTF-8 nor latin-1: {last}")


def _uv_factor(unit: str) -> float | None:
    return _UV_PER_UNIT.get(unit.strip().replace(" ", "").casefold())


def _parse_patient(patient: str, start: dt.date | None) -> dict:
    """Age and sex from an EDF patient field; the name and birth date are read, never returned."""
    meta: dict = {}
    parts = patient.split()
    if len(parts) >= 4 and parts[1] in ("M", "F", "X"):  # EDF+: code sex birthdate name [additional]
        if parts[1] in ("M", "F"):
            meta["sex"] = parts[1]
        try:
            birth = dt.datetime.strptime(parts[2], "%d-%b-%Y").date()
        except ValueError:
            birth = None
        if birth is not None and start is not None:
            meta["age"] = start.year - birth.year - ((start.month, start.day) < (birth.month, birth.day))
    text = patient.casefold()
    if "sex" not in meta:
        if re.search(r"(?<![a-z])(female|woman)(?![a-z])", text):
            meta["sex"] = "F"
        elif re.search(r"(?<![a-z])(male|man)(?![a-z])", text):
            meta["sex"] = "M"
    if "age" not in meta:
        m = re.search(r"(\d{1,3})\s*(?:yrs?|years?)\b", text)
        if m:
            meta["age"] = int(m.group(1))
        elif start is not None:  # free-text birth date (DREAMS: "man - 28/03/1957 - ...")
            m = re.search(r"\b(\d{2})/(\d{2})/(\d{4})\b", text)
            if m:
                try:
                    birth = dt.date(int(m.group(3)), int(m.group(2)), int(m.group(1)))
                except ValueError:
                    birth = None
                if birth is not None and birth < start:
                    meta["age"] = start.year - birth.year - ((start.month, start.day) < (birth.month, birth.day))
    if "age" in meta and not 0 <= meta["age"] <= 120:
        del meta["age"]
    return meta


def _edf_start(edf) -> dt.datetime | None:
    try:
        return dt.datetime.combine(edf.startdate, edf.starttime)
    except Exception:  # anonymised or malformed start date
        return None


def _channels_from_signals(
    source: Path, labels: list[str], sfreqs: list[float], units: list[str], getters: list,
    *, channels: list[str] | None, nonfinite: str, meta: dict, dataset: str | None = None,
) -> list[Channel]:
    """Build Channels (canonical names, microvolts) from per-signal data getters, checking input."""
    if nonfinite not in ("raise", "zero"):
        raise ValueError(f"nonfinite={nonfinite!r}; allowed: 'raise', 'zero'")
    stripped = [lab.strip() for lab in labels]
    dup = sorted({lab for lab in stripped if stripped.count(lab) > 1})
    if dup:
        raise ValueError(f"{source}: duplicate channel names {dup} in {stripped}")
    names = canonical_names(stripped, units, dataset=dataset)
    wanted = range(len(stripped))
    if channels is not None:
        index = {}
        for i, (canon, _) in enumerate(names):
            index.setdefault(canon, i)
        for i, lab in enumerate(stripped):
            index.setdefault(lab, i)
        missing = [c for c in channels if c not in index]
        if missing:
            raise ValueError(
                f"{source}: requested channels {missing} not in the recording; available: "
                f"{[n for n, _ in names]} (file labels {stripped})"
            )
        wanted = [index[c] for c in channels]
    out = []
    for i in wanted:
        canon, modality = names[i]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            x = np.asarray(getters[i](), dtype=np.float64)
        for w in caught:  # e.g. edfio: "digital minimum equals digital maximum ... uncalibrated"
            meta.setdefault("read_warnings", []).append(str(w.message))
        unit = units[i].strip()
        factor = _uv_factor(unit)
        if factor is not None:
            x, unit = x * factor, "uV"
        elif modality in _ELECTRO:
            meta.setdefault("unit_assumed_uv", []).append(f"{stripped[i]} ({unit!r})")
            unit = "uV"
        if x.size == 0:
            raise ValueError(f"{source}: channel {stripped[i]!r} has no samples")
        x = x.astype(np.float32)
        bad = ~np.isfinite(x)
        if unit == "uV" and modality in _ELECTRO and not bad.any():
            peak = float(np.max(np.abs(x)))
            if peak > 1e5:  # > 100 mV: no scalp or skin potential is that large; the header unit is suspect
                meta.setdefault("unit_warnings", []).append(
                    f"{stripped[i]}: peak {peak:.0f} uV from header unit {units[i].strip()!r} is implausible"
                )
        if bad.any():
            n_bad = int(bad.sum())
            if nonfinite == "raise":
                raise ValueError(
                    f"{source}: channel {stripped[i]!r} has {n_bad} NaN/inf samples of {x.size} "
                    f"(pass nonfinite='zero' to replace them with 0)"
                )
            x[bad] = 0.0
            meta.setdefault("nonfinite_zeroed", {})[stripped[i]] = n_bad
        out.append(Channel(name=stripped[i], canonical=canon, modality=modality, sfreq=float(sfreqs[i]),
                           data=x, unit=unit))
    # Recording.channel(name) matches canonical or file names in channel order. A bare electrode
    # labelled "C3" beside "C3-M2" (canonical "C3") would shadow it, so such a channel is moved right
    # after the channel whose canonical name it carries; every other channel keeps file order.
    owner = {c.canonical: k for k, c in enumerate(out)}
    keys = [max(k, owner[c.name] + 0.5) if owner.get(c.name, k) != k else k for k, c in enumerate(out)]
    return [out[k] for k in sorted(range(len(out)), key=keys.__getitem__)]


def read_edf_signals(path, *, channels: list[str] | None = None, nonfinite: str = "raise",
                     dataset: str | None = None) -> tuple[list[Channel], dict, object]:
    """Read an EDF/EDF+/BDF file into Channels (own rates, microvolts) and subject metadata.

    Parameters
    ----------
    path : str or Path
        The file (any extension: ISRUC's ``.rec`` is an EDF).
    channels : list of str, optional
        Canonical or file names to read (in that order); all signals when None.
    nonfinite : {"raise", "zero"}
        What to do with NaN/inf samples.
    dataset : str, optional
        Reader name, for dataset-specific channel aliases (SHHS "EEG" is C4).

    Returns
    -------
    channels : list of Channel
    meta : dict
        ``age``/``sex`` when the header gives them, unit notes.
    edf : edfio.Edf
        The open file (annotations, start time).
    """
    path = Path(path)
    edf = _read_edfio(path)
    signals = list(edf.signals)
    if not signals:
        raise ValueError(f"{path}: EDF holds no signals (an annotation-only file? pass it as the hypnogram)")
    start = _edf_start(edf)
    try:
        patient_field = str(edf.local_patient_identification)
    except Exception:  # malformed field
        patient_field = ""
    meta = _parse_patient(patient_field, start.date() if start else None)
    chans = _channels_from_signals(
        path, [s.label for s in signals], [s.sampling_frequency for s in signals],
        [s.physical_dimension for s in signals], [lambda s=s: s.data for s in signals],
        channels=channels, nonfinite=nonfinite, meta=meta, dataset=dataset,
    )
    return chans, meta, edf


# ==================================================================================================
# Labels -> stages by time
# ==================================================================================================
def pair_by_time(
    onsets_s, durations_s, codes, signal_s: float, *, onset_s: float | None = None,
    epoch_s: float = EPOCH_S, min_cover_s: float = MIN_COVER_S, source: str = "",
) -> tuple[np.ndarray, float, dict]:
    """Turn labelled time intervals into one stage per 30-s epoch, paired with the signal by time.

    Parameters
    ----------
    onsets_s, durations_s : array-like of float
        Label intervals in signal seconds.
    codes : array-like of int
        AASM codes (UNSCORED allowed), one per interval.
    signal_s : float
        Signal duration, seconds (shortest channel).
    onset_s : float, optional
        Start of the epoch grid; default the first interval's onset.
    epoch_s, min_cover_s : float
        Epoch length and the coverage one stage needs to label an epoch.
    source : str
        Hypnogram file, for messages.

    Returns
    -------
    stages : np.ndarray of int8, shape (n_paired,)
    onset_s : float
    pairing : dict
        n_label_epochs, n_signal_epochs, n_paired, dropped_label_epochs, dropped_signal_s,
        n_gap_epochs (no label at all), n_unscored, onset_s, rule.
    """
    onsets = np.asarray(onsets_s, dtype=float)
    durs = np.asarray(durations_s, dtype=float)
    codes = np.asarray(codes, dtype=int)
    if onsets.size == 0:
        raise ValueError(f"{source}: hypnogram holds no sleep-stage labels")
    if np.any(durs <= 0):
        i = int(np.argmax(durs <= 0))
        raise ValueError(f"{source}: stage label {i} has duration {durs[i]!r} s; durations must be > 0")
    order = np.argsort(onsets, kind="stable")
    onsets, durs, codes = onsets[order], durs[order], codes[order]
    grid0 = float(onsets[0]) if onset_s is None else float(onset_s)
    dropped_head = 0
    if grid0 < 0:  # labels that start before the signal: move the grid to the first epoch inside it
        dropped_head = math.ceil(-grid0 / epoch_s - 1e-9)
        grid0 += dropped_head * epoch_s
    label_end = float(np.max(onsets + durs))
    n_label = max(0, int(math.floor((label_end - grid0) / epoch_s + 1e-6)))
    n_signal = max(0, int(math.floor((signal_s - grid0) / epoch_s + 1e-6)))
    n = min(n_label, n_signal)
    cover = np.zeros((n, 7))  # seconds covered per code + 1 (UNSCORED -> column 0)
    for on, du, code in zip(onsets, durs, codes):
        a, b = (on - grid0) / epoch_s, (on + du - grid0) / epoch_s
        for k in range(max(0, int(math.floor(a))), min(n, int(math.ceil(b)))):
            overlap = min(on + du, grid0 + (k + 1) * epoch_s) - max(on, grid0 + k * epoch_s)
            if overlap > 0:
                cover[k, code + 1] += overlap
    best = cover.argmax(axis=1)
    stages = np.where(cover.max(axis=1) >= min_cover_s - 1e-6, best - 1, UNSCORED).astype(np.int8)
    gaps = int(np.sum(cover.sum(axis=1) <= 1e-9))
    pairing = {
        "n_label_epochs": n_label + dropped_head,
        "n_signal_epochs": n_signal,
        "n_paired": n,
        "dropped_label_epochs": n_label - n + dropped_head,
        "dropped_signal_s": round(float(signal_s - n * epoch_s), 6),
        "onset_s": grid0,
        "n_gap_epochs": gaps,
        "n_unscored": int(np.sum(stages == UNSCORED)),
        "rule": (
            f"paired by time on a {epoch_s:g}-s grid from onset_s; an epoch takes the stage covering "
            f">= {min_cover_s:g} s of it, else unscored; label epochs past the signal end and signal "
            f"before onset_s or past the last label are dropped"
        ),
    }
    return stages, grid0, pairing


def _per_epoch_intervals(codes: np.ndarray, step_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    k = np.arange(len(codes))
    return k * step_s, np.full(len(codes), step_s), codes


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"hypnogram {path} not found")
    return [ln.strip() for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]


def _edf_annotation_intervals(path: Path, signal_start: dt.datetime | None, table: dict):
    """Sleep-stage intervals from an EDF+ annotation file, shifted into the signal's time base."""
    edf = _read_edfio(path)
    shift = 0.0
    hyp_start = _edf_start(edf)
    if signal_start is not None and hyp_start is not None:
        shift = (hyp_start - signal_start).total_seconds()
    on, du, raw, other = [], [], [], 0
    for a in edf.annotations:
        text = a.text.strip()
        if not (text.casefold().startswith("sleep stage") or text.casefold().startswith("movement")):
            other += text != ""
            continue
        if a.duration is None or a.duration <= 0:
            raise ValueError(f"{path}: stage annotation {text!r} at {a.onset:g} s has no duration")
        on.append(a.onset + shift)
        du.append(a.duration)
        raw.append(text)
    codes = map_codes(raw, table, source=str(path))
    return np.asarray(on), np.asarray(du), codes, {"hypnogram_shift_s": shift, "other_annotations": other}


# ==================================================================================================
# Format readers
# ==================================================================================================
def _finish(chans, *, subject, recording, dataset, source, meta, labels=None, label_source="", extra=None,
            onset_s=None):
    rec = Recording(channels=chans, subject=subject, recording=recording, dataset=dataset,
                    source=str(source), meta=meta)
    if labels is not None:
        on, du, codes = labels
        stages, grid0, pairing = pair_by_time(on, du, codes, rec.duration_s, onset_s=onset_s,
                                              source=str(label_source))
        pairing["hypnogram"] = str(label_source)
        pairing.update(extra or {})
        rec.stages, rec.onset_s, rec.pairing = stages, grid0, pairing
    return rec


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
    raw = _read_lines(hyp)
    try:
        ints = [int(v) for v in raw]
    except ValueError:
        bad = next(v for v in raw if not re.fullmatch(r"-?\d+", v))
        raise ValueError(f"{hyp}: unknown stage code {bad!r}; known codes: {sorted(ISRUC_CODES)}") from None
    codes = map_codes(ints, ISRUC_CODES, source=str(hyp))
    meta["scorer"] = scorer
    return _finish(chans, subject=sid, recording=sid, dataset="isruc", source=path, meta=meta,
                   labels=_per_epoch_intervals(codes, EPOCH_S), label_source=hyp)


def read_mass(path, hypnogram=None, *, channels=None, nonfinite="raise") -> Recording:
    """MASS: ``<id> PSG.edf`` + ``<id> Base.edf`` (EDF+ annotations "Sleep stage W/1/2/3/4/R/?")."""
    path = Path(path)
    sid = re.sub(r"\s*PSG$", "", path.stem)
    hyp = Path(hypnogram) if hypnogram else path.with_name(f"{sid} Base.edf")
    if not hyp.is_file():
        raise FileNotFoundError(f"hypnogram {hyp} not found (MASS labels are in '<id> Base.edf')")
    chans, meta, edf = read_edf_signals(path, channels=channels, nonfinite=nonfinite)
    on, du, codes, extra = _edf_annotation_intervals(hyp, _edf_start(edf), RK_ANNOTATIONS)
    if du.size:
        extra["scoring_epoch_s"] = float(np.median(du))
    return _finish(chans, subject=sid, recording=sid, dataset="mass", source=path, meta=meta,
                   labels=(on, du, codes), label_source=hyp, extra=extra)


def _nsrr_xml_intervals(path: Path):
    if not path.is_file():
        raise FileNotFoundError(f"hypnogram {path} not found")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise ValueError(f"{path}: not a valid NSRR XML file: {err}") from err
    on, du, raw = [], [], []
    for ev in root.iter("ScoredEvent"):
        etype = (ev.findtext("EventType") or "").strip()
        if not etype.startswith("Stages"):
            continue
        concept = (ev.findtext("EventConcept") or "").strip()
        try:
            on.append(float(ev.findtext("Start")))
            du.append(float(ev.findtext("Duration")))
        except (TypeError, ValueError):
            raise ValueError(
                f"{path}: stage event {concept!r} has Start {ev.findtext('Start')!r} / Duration "
                f"{ev.findtext('Duration')!r}; both must be numbers (seconds)"
            ) from None
        raw.append(concept)
    codes = map_codes(raw, NSRR_CONCEPTS, source=str(path))
    return np.asarray(on), np.asarray(du), codes


def _shhs_xml_for(path: Path) -> Path:
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
    import csv

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
    return _finish(chans, subject=sid, recording=path.stem, dataset="shhs", source=path, meta=meta,
                   labels=_nsrr_xml_intervals(hyp), label_source=hyp)


def _sleepedf_hypnogram_for(path: Path) -> Path | None:
    cands = sorted(path.parent.glob(f"{path.name[:6]}*-Hypnogram.edf"))
    if len(cands) == 1:
        return cands[0]
    every = sorted(path.parent.glob("*-Hypnogram.edf"))
    psgs = [p for p in path.parent.glob("*.edf") if not p.name.endswith("-Hypnogram.edf")]
    if len(every) == 1 and len(psgs) == 1:  # a lone pair (e.g. a cropped file renamed)
        return every[0]
    return None


def read_sleepedf(path, hypnogram=None, *, channels=None, nonfinite="raise") -> Recording:
    """Sleep-EDF Expanded: ``<rec>-PSG.edf`` + ``<rec[:6]>??-Hypnogram.edf`` (EDF+ annotations)."""
    path = Path(path)
    hyp = Path(hypnogram) if hypnogram else _sleepedf_hypnogram_for(path)
    if hyp is None or not hyp.is_file():
        raise FileNotFoundError(
            f"hypnogram for {path} not found (expected '{path.name[:6]}??-Hypnogram.edf' beside it; pass hypnogram=)"
        )
    chans, meta, edf = read_edf_signals(path, channels=channels, nonfinite=nonfinite)
    on, du, codes, extra = _edf_annotation_intervals(hyp, _edf_start(edf), RK_ANNOTATIONS)
    rec_id = path.name.removesuffix("-PSG.edf").removesuffix(".edf")
    m = re.match(r"(S[CT]\d\d\d)\d", rec_id)
    subject = m.group(1) if m else rec_id  # SC4ssN: subject ss, night N
    return _finish(chans, subject=subject, recording=rec_id, dataset="sleepedf", source=path, meta=meta,
                   labels=(on, du, codes), label_source=hyp, extra=extra)


def _read_numbers(path: Path, *, skip_header: bool) -> np.ndarray:
    """One number per line (NaN/inf allowed: checked later, per channel)."""
    lines = path.read_text(encoding="utf-8", errors="replace").split("\n", 1 if skip_header else 0)
    body = lines[-1] if skip_header else lines[0]
    try:
        return np.array(body.split(), dtype=np.float64)
    except ValueError as err:
        raise ValueError(f"{path}: expected one number per line: {err}") from err


def read_dreams(path, hypnogram=None, *, sfreq: float | None = None, channels=None,
                nonfinite="raise") -> Recording:
    """DREAMS excerpt: ``excerptN.edf`` or ``excerptN.txt`` + ``Hypnogram_excerptN.txt`` (5-s R&K codes).

    The text excerpt holds one channel (``[C3-A1]`` then microvolts); its rate is ``sfreq`` or the
    database's rate for excerpt N (:data:`DREAMS_TXT_SFREQ`), checked against the 30-min length.
    """
    path = Path(path)
    m = re.search(r"excerpt(\d+)", path.stem)
    if not m:
        raise ValueError(f"{path}: DREAMS files are named 'excerptN.txt' or 'excerptN.edf'")
    n = int(m.group(1))
    hyp = Path(hypnogram) if hypnogram else path.with_name(f"Hypnogram_excerpt{n}.txt")
    meta: dict = {}
    if path.suffix.lower() == ".txt":
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
        with open(path, encoding="utf-8", errors="replace") as f:
            first = f.readline().strip()
        if not (first.startswith("[") and first.endswith("]")):
            raise ValueError(f"{path}: first line {first!r} should be the channel name in brackets, e.g. '[C3-A1]'")
        rate = sfreq or DREAMS_TXT_SFREQ.get(n)
        if rate is None:
            raise ValueError(f"{path}: rate of excerpt {n} unknown; pass sfreq= (Hz)")
        x = _read_numbers(path, skip_header=True)
        if abs(x.size / rate - DREAMS_EXCERPT_S) > 2.0:
            raise ValueError(
                f"{path}: {x.size} samples at {rate:g} Hz is {x.size / rate:.1f} s, not the "
                f"{DREAMS_EXCERPT_S:g}-s excerpt; pass the right sfreq="
            )
        chans = _channels_from_signals(path, [first[1:-1]], [rate], ["uV"], [lambda: x], channels=channels,
                                       nonfinite=nonfinite, meta=meta)
    else:
        chans, meta, _ = read_edf_signals(path, channels=channels, nonfinite=nonfinite)
    lines = _read_lines(hyp)
    if lines and lines[0].startswith("["):
        lines = lines[1:]
    try:
        ints = [int(v) for v in lines]
    except ValueError:
        bad = next(v for v in lines if not re.fullmatch(r"-?\d+", v))
        raise ValueError(f"{hyp}: unknown stage code {bad!r}; known codes: {sorted(DREAMS_CODES)}") from None
    codes = map_codes(ints, DREAMS_CODES, source=str(hyp))
    return _finish(chans, subject=f"excerpt{n}", recording=f"excerpt{n}", dataset="dreams", source=path,
                   meta=meta, labels=_per_epoch_intervals(codes, 5.0), label_source=hyp,
                   extra={"label_step_s": 5.0}, onset_s=0.0)


def read_prerau(path, hypnogram=None, *, sfreq: float = PRERAU_SFREQ, channels=None,
                nonfinite="raise") -> Recording:
    """Prerau-lab CSV: ``segment_data.csv`` (one EEG value per line) + ``segment_stages.csv``.

    The stage file lists ``Time,Stage`` changes (1=N3, 2=N2, 3=N1, 4=REM, 5=W); its last row marks
    the end. The epoch grid's phase is taken from the change times (all on one 30-s grid, checked);
    the partial epoch before it is dropped.
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
    x = _read_numbers(path, skip_header=has_header)
    chans = _channels_from_signals(path, ["EEG"], [sfreq], ["uV"], [lambda: x], channels=channels,
                                   nonfinite=nonfinite, meta=meta)
    rows = _read_lines(hyp)
    if rows and not re.match(r"[-+0-9.]", rows[0]):
        rows = rows[1:]
    try:
        times = np.array([float(r.split(",")[0]) for r in rows])
        raw = [int(float(r.split(",")[1])) for r in rows]
    except (ValueError, IndexError):
        raise ValueError(f"{hyp}: expected 'Time,Stage' rows of numbers") from None
    if len(times) < 2 or np.any(np.diff(times) <= 0):
        raise ValueError(f"{hyp}: stage-change times must be >= 2 and strictly increasing")
    codes = map_codes(raw[:-1], PRERAU_CODES, source=str(hyp))
    inner = times[1:-1] if len(times) > 2 else times[:1]
    phase = round(float(inner[0] % EPOCH_S), 6)
    off = (inner - phase) / EPOCH_S
    if np.any(np.abs(off - np.round(off)) > 1e-3):
        raise ValueError(f"{hyp}: stage changes {inner.tolist()} do not fall on one {EPOCH_S:g}-s grid")
    onset = phase if times[0] < phase else float(times[0])
    name = path.parent.name or "prerau"  # one segment per folder, as the example ships
    return _finish(chans, subject=name, recording=name, dataset="prerau",
                   source=path, meta=meta, labels=(times[:-1], np.diff(times), codes), label_source=hyp,
                   onset_s=onset)


def _generic_labels(hyp: Path, signal_start):
    suffix = hyp.suffix.lower()
    if suffix in (".edf", ".bdf"):
        on, du, codes, extra = _edf_annotation_intervals(hyp, signal_start, RK_ANNOTATIONS)
        return (on, du, codes), extra
    if suffix == ".xml":
        return _nsrr_xml_intervals(hyp), {}
    lines = _read_lines(hyp)
    if not lines:
        raise ValueError(f"{hyp}: empty hypnogram")
    sep = "\t" if "\t" in lines[0] else ("," if "," in lines[0] else None)
    if sep is None:  # one label per line, each a 30-s epoch from the start of the signal
        codes = map_codes(lines, GENERIC_TABLE, source=str(hyp))
        return _per_epoch_intervals(codes, EPOCH_S), {"hypnogram_kind": "one label per 30-s epoch"}
    rows = [[c.strip() for c in ln.split(sep)] for ln in lines]
    header = [c.casefold() for c in rows[0]]
    if "stage" in header or "init_sec" in header or "onset" in header:
        cols = header
        rows = rows[1:]
        try:
            i_on = next(cols.index(c) for c in ("init_sec", "onset", "start", "start_s") if c in cols)
            i_du = next(cols.index(c) for c in ("duration_sec", "duration", "duration_s") if c in cols)
            i_st = next(cols.index(c) for c in ("stage", "label", "description") if c in cols)
        except StopIteration:
            raise ValueError(
                f"{hyp}: header {rows and lines[0]!r} needs onset (init_sec), duration (duration_sec) and "
                f"stage columns"
            ) from None
    else:
        i_on, i_du, i_st = 0, 1, 2
    try:
        on = np.array([float(r[i_on]) for r in rows])
        du = np.array([float(r[i_du]) for r in rows])
    except (ValueError, IndexError):
        raise ValueError(f"{hyp}: expected rows 'init_sec{sep}duration_sec{sep}stage' with numbers") from None
    codes = map_codes([r[i_st] for r in rows], GENERIC_TABLE, source=str(hyp))
    return (on, du, codes), {"hypnogram_kind": "intervals init_sec,duration_sec,stage"}


def read_generic(path, hypnogram=None, *, channels=None, nonfinite="raise") -> Recording:
    """Any EDF/BDF, optionally with a hypnogram: CSV/TSV ``init_sec,duration_sec,stage`` (header
    optional), one label per line (30-s epochs), EDF+ annotations or NSRR XML. Without a hypnogram
    the recording is unlabelled (``stages`` None)."""
    path = Path(path)
    chans, meta, edf = read_edf_signals(path, channels=channels, nonfinite=nonfinite)
    stem = path.stem
    if hypnogram is None:
        return _finish(chans, subject=stem, recording=stem, dataset="generic", source=path, meta=meta)
    hyp = Path(hypnogram)
    if not hyp.is_file():
        raise FileNotFoundError(f"hypnogram {hyp} not found")
    labels, extra = _generic_labels(hyp, _edf_start(edf))
    return _finish(chans, subject=stem, recording=stem, dataset="generic", source=path, meta=meta,
                   labels=labels, label_source=hyp, extra=extra)


READERS: dict = {
    "isruc": read_isruc,
    "mass": read_mass,
    "shhs": read_shhs,
    "sleepedf": read_sleepedf,
    "dreams": read_dreams,
    "prerau": read_prerau,
    "generic": read_generic,
}


def read_recording(fmt: str, path, hypnogram=None, **opts) -> Recording:
    """Read one recording in a dataset's native format.

    Parameters
    ----------
    fmt : str
        One of ``READERS``: isruc, mass, shhs, sleepedf, dreams, prerau, generic.
    path : str or Path
        The signal file (see each reader for the layout).
    hypnogram : str or Path, optional
        Label file; default found beside the signal as the dataset ships it.
    **opts
        Reader options: ``channels`` (list of names to read), ``nonfinite`` ("raise"/"zero"),
        ``scorer`` (ISRUC), ``sfreq`` (DREAMS text, Prerau).

    Returns
    -------
    Recording
    """
    if fmt not in READERS:
        raise ValueError(f"format {fmt!r} unknown; choose from {sorted(READERS)}")
    reader = READERS[fmt]
    allowed = [n for n, p in inspect.signature(reader).parameters.items() if p.kind is p.KEYWORD_ONLY]
    unknown = sorted(set(opts) - set(allowed))
    if unknown:
        raise ValueError(f"option(s) {unknown} not accepted by the {fmt!r} reader; allowed: {allowed}")
    return reader(path, hypnogram, **opts)


# ==================================================================================================
# Discovery
# ==================================================================================================
def _natural(p: Path):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(p))]


def find_recordings(fmt: str, input_dir, **opts) -> list[dict]:
    """Recordings in a dataset folder laid out as the dataset ships, as kwargs for :func:`read_recording`.

    Parameters
    ----------
    fmt : str
        One of ``READERS``.
    input_dir : str or Path
        Dataset root (searched recursively), or one signal file.
    **opts
        ``scorer`` for ISRUC (1 or 2); ``source`` for DREAMS ("txt", default, the six one-channel
        excerpts; "edf", excerpts with a full-PSG EDF).

    Returns
    -------
    list of dict
        ``{"path": str, "hypnogram": str | None}`` sorted naturally; ``hypnogram`` is None where no
        label file was found (reading such an entry raises for labelled formats; generic reads it
        unlabelled).
    """
    if fmt not in READERS:
        raise ValueError(f"format {fmt!r} unknown; choose from {sorted(READERS)}")
    root = Path(input_dir)
    if not root.exists():
        raise FileNotFoundError(f"input {root} does not exist")
    if root.is_file():
        return [{"path": str(root), "hypnogram": None}]

    def hyp_or_none(p: Path | None):
        return str(p) if p is not None and p.is_file() else None

    found: list[dict] = []
    if fmt == "isruc":
        scorer = int(opts.get("scorer", 1))
        for rec in sorted(root.rglob("*.rec"), key=_natural):
            found.append({"path": str(rec), "hypnogram": hyp_or_none(rec.with_name(f"{rec.stem}_{scorer}.txt"))})
    elif fmt == "mass":
        for psg in sorted(root.rglob("* PSG.edf"), key=_natural):
            found.append({"path": str(psg),
                          "hypnogram": hyp_or_none(psg.with_name(psg.name.replace(" PSG.edf", " Base.edf")))})
    elif fmt == "shhs":
        xml = {p.name: p for p in root.rglob("*-nsrr.xml")}
        for edf in sorted(root.rglob("shhs*.edf"), key=_natural):
            found.append({"path": str(edf), "hypnogram": hyp_or_none(xml.get(f"{edf.stem}-nsrr.xml"))})
    elif fmt == "sleepedf":
        psgs = sorted(root.rglob("*-PSG.edf"), key=_natural)
        if not psgs:
            psgs = sorted((p for p in root.rglob("*.edf") if not p.name.endswith("-Hypnogram.edf")), key=_natural)
        for psg in psgs:
            found.append({"path": str(psg), "hypnogram": hyp_or_none(_sleepedf_hypnogram_for(psg))})
    elif fmt == "dreams":
        source = opts.get("source", "txt")
        if source not in ("txt", "edf"):
            raise ValueError(f"source={source!r}; allowed: 'txt', 'edf'")
        for sig in sorted(root.rglob(f"excerpt*.{source}"), key=_natural):
            n = re.search(r"excerpt(\d+)", sig.stem)
            if n:
                found.append({"path": str(sig),
                              "hypnogram": hyp_or_none(sig.with_name(f"Hypnogram_excerpt{n.group(1)}.txt"))})
    elif fmt == "prerau":
        for sig in sorted(root.rglob("segment_data.csv"), key=_natural):
            found.append({"path": str(sig), "hypnogram": hyp_or_none(sig.with_name("segment_stages.csv"))})
    else:  # generic
        for sig in sorted((p for ext in ("edf", "bdf", "EDF", "BDF") for p in root.rglob(f"*.{ext}")), key=_natural):
            if sig.name.endswith(("-Hypnogram.edf", " Base.edf")):
                continue
            hyp = None
            for cand in (f"{sig.stem}.csv", f"{sig.stem}.tsv", f"{sig.stem}.ids", f"{sig.stem}_hypnogram.csv",
                         f"{sig.stem}-hypnogram.csv", f"{sig.stem}_hypnogram.txt", f"{sig.stem}.txt"):
                if (sig.with_name(cand)).is_file():
                    hyp = sig.with_name(cand)
                    break
            found.append({"path": str(sig), "hypnogram": hyp_or_none(hyp)})
    if not found:
        raise FileNotFoundError(f"no {fmt} recordings found under {root}")
    return found


# ==================================================================================================
# psgvlm info
# ==================================================================================================
def describe(rec: Recording) -> dict:
    """A JSON-able summary of a recording: channels, rates, duration, stages, pairing."""
    return {
        "recording": rec.recording, "subject": rec.subject, "dataset": rec.dataset, "source": rec.source,
        "meta": rec.meta, "duration_s": round(rec.duration_s, 3), "onset_s": rec.onset_s,
        "n_epochs": rec.n_epochs,
        "channels": [{"name": c.name, "canonical": c.canonical, "modality": c.modality, "sfreq": c.sfreq,
                      "unit": c.unit, "n_samples": int(c.data.size)} for c in rec.channels],
        "stage_counts": stage_counts(rec.stages[: rec.n_epochs]) if rec.stages is not None else None,
        "pairing": rec.pairing,
    }


def info_main(argv: list[str] | None = None) -> int:
    """``psgvlm info --format F PATH [--hypnogram H] [--scorer N] [--json]``."""
    p = argparse.ArgumentParser(prog="psgvlm info", description="Read a recording; print channels, rates, "
                                "duration, stage counts and how labels were paired with the signal.")
    p.add_argument("--format", required=True, choices=sorted(READERS))
    p.add_argument("path")
    p.add_argument("--hypnogram", default=None)
    p.add_argument("--scorer", type=int, default=None, help="ISRUC scorer (1 or 2)")
    p.add_argument("--sfreq", type=float, default=None, help="rate of a text signal (DREAMS txt, Prerau)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = p.parse_args(argv)
    opts = {}
    if args.scorer is not None:
        opts["scorer"] = args.scorer
    if args.sfreq is not None:
        opts["sfreq"] = args.sfreq
    try:
        rec = read_recording(args.format, args.path, args.hypnogram, **opts)
    except (ValueError, FileNotFoundError, TypeError) as err:
        print(f"psgvlm info: {err}", file=sys.stderr)
        return 1
    d = describe(rec)
    if args.json:
        print(json.dumps(d, indent=2, ensure_ascii=False))
        return 0
    print(f"{rec!r}\nsource: {rec.source}\nmeta: {rec.meta}")
    print(f"duration: {rec.duration_s:.1f} s ({rec.duration_s / 3600:.2f} h), onset_s {rec.onset_s:g}")
    width = max(len(c.name) for c in rec.channels)
    print(f"{len(rec.channels)} channels:")
    for c in rec.channels:
        print(f"  {c.name:<{width}}  -> {c.canonical:<12} {c.modality:<6} {c.sfreq:>8g} Hz  {c.unit}")
    if rec.stages is None:
        print("stages: none (unlabelled)")
    else:
        print(f"epochs: {rec.n_epochs}  stages: {d['stage_counts']}")
        print("pairing: " + json.dumps(rec.pairing, ensure_ascii=False))
    return 0
