"""Synthetic polysomnography written in each dataset's true on-disk format.

    psgvlm synth --format isruc --subjects 4 --minutes 60 --seed 0 --out data/synth/isruc

writes ``<out>/<id>/<id>.rec`` + ``<id>_1.txt`` + ``<id>_2.txt`` (ISRUC-Sleep S1/S3), and likewise
MASS-SS3 (``01-03-00NN PSG.edf`` + ``Base.edf``), SHHS-1 (``edfs/shhs1/shhs1-2000NN.edf`` + NSRR XML
+ a subject CSV) and Sleep-EDF Expanded (``SC4NN1E0-PSG.edf`` + ``SC4NN1EC-Hypnogram.edf``), with the
real files' channel labels, sampling rates, units and label files, plus ``synth.json`` (config,
subjects, stage counts, provenance). The signals come from ``psgvlm.synth.physiology``; this module
only knows each dataset's channel sets, file names and label files. Label spellings come from the
tables in ``psgvlm.stages`` that the readers use.

``--layout download`` writes a root laid out as the download is, with the variants the real files
have (:data:`DOWNLOAD_VARIANTS`), beside ``--subjects`` regular nights per group:

- isruc: ``Subgroup_1/<id>/``, ``Subgroup_2/<subject>/<1|2>/`` (two nights), ``Subgroup_3/<id>/``; a
  night without F3-A2/F4-A1 (subgroup 1 subject 8), one with bare electrodes F3 ... O2, LOC, ROC, A1,
  A2 (subject 40), one whose chin EMG is labelled ``24``; A1/A2 and M1/M2 spellings;
- mass: ``SS3/biosignals/<id> PSG.edf`` and ``SS3/annotations/<id> Base.edf``; CLE and LER montages,
  ``ECG I``, a night at 256.0018 Hz (256 samples per 0.999993-s record), a night without ``EMG Chin3``;
- shhs: ``polysomnography/edfs/shhs1|shhs2/``, ``annotations-events-nsrr/``,
  ``annotations-events-profusion/`` and ``datasets/shhs1|shhs2-dataset-*.csv``; ``NEWAIR``, ``SOUND``
  and ``EEG (sec)`` spellings, a night with only its Profusion XML, a night without ``ABDO RES``,
  ``Unsure|Unsure`` respiratory events, the first subject's second visit;
- sleepedf: ``sleep-cassette/SC4ssN??-PSG.edf`` (two nights per subject, ``E0``/``F0``/``G0`` files
  with ``EC``/``FC``/``GV``... hypnograms) and ``sleep-telemetry/ST7ssNJ0-PSG.edf`` (100-Hz EMG).

``synth.json`` lists each night's files, the ids the readers give it (``recording``, ``subject``),
its ``variant`` and the default channels it lacks (``missing_channels``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from psgvlm.io.channels import DATASET_CHANNELS, lookup
from psgvlm.io.edf import EdfChannel, edf_patient, write_annotations_edf, write_edf
from psgvlm.provenance import provenance, write_json_atomic, write_text_atomic
from psgvlm.stages import (
    EPOCH_S,
    ISRUC_CODES,
    NSRR_CONCEPTS,
    PROFUSION_CODES,
    RK_ANNOTATIONS,
    UNSCORED,
    stage_counts,
    writer_labels,
)
from psgvlm.synth.noise import child_rng
from psgvlm.synth.physiology import MIN_MINUTES, ChannelSpec, SynthNight, check_minutes, synth_night

FORMATS: tuple[str, ...] = ("isruc", "mass", "shhs", "sleepedf")
LAYOUTS: tuple[str, ...] = ("tidy", "download")

# ----------------------------------------------------------------------------------------------
# Channel sets: the real files' labels, rates, units and header fields
# ----------------------------------------------------------------------------------------------
_ISRUC_KINDS = {
    "LOC": ("eog", "L"), "ROC": ("eog", "R"), "E1": ("eog", "L"), "E2": ("eog", "R"),
    "X1": ("emg", "chin"), "X2": ("ecg", ""), "X3": ("leg", "L"), "X4": ("leg", "R"), "X5": ("snore", ""),
    "X6": ("flow", ""), "X7": ("abdo", ""), "X8": ("thor", ""), "SaO2": ("spo2", ""), "SpO2": ("spo2", ""),
}
# Subgroup-1 style (A1/A2 references) and the M1/M2 spelling other ISRUC recordings use.
ISRUC_LABELS_A = ("LOC-A2", "ROC-A1", "F3-A2", "C3-A2", "O1-A2", "F4-A1", "C4-A1", "O2-A1", "X1", "X2",
                  "X3", "X4", "X5", "X6", "DC3", "X7", "X8", "SaO2", "DC8")
ISRUC_LABELS_M = ("E1-M2", "E2-M1", "F3-M2", "C3-M2", "O1-M2", "F4-M1", "C4-M1", "O2-M1", "X1", "X2",
                  "X3", "X4", "X5", "X6", "DC4", "X7", "X8", "SpO2", "DC8", "DC7")


def _isruc_channels(subject: int) -> list[ChannelSpec]:
    """ISRUC's 19-20 channels at 200 Hz; odd subjects use the M1/M2 spelling."""
    labels = ISRUC_LABELS_M if subject % 2 else ISRUC_LABELS_A
    out = []
    for label in labels:
        head = label.split("-")[0]
        if label.startswith("DC"):
            out.append(ChannelSpec(label, "dc", "", 200, "mV"))
        elif head in _ISRUC_KINDS:
            kind, where = _ISRUC_KINDS[head]
            out.append(ChannelSpec(label, kind, where, 200, "%" if kind == "spo2" else "uV",
                                   scale=60.0 if kind in ("flow", "abdo", "thor") else 1.0))
        else:
            out.append(ChannelSpec(label, "eeg", head, 200))
    return out


_MASS_EEG = ("Fp1", "Fp2", "F7", "F8", "F3", "F4", "T3", "T4", "C3", "C4", "T5", "T6", "P3", "P4", "O1",
             "O2", "Fz", "Cz", "Pz", "Oz", "A2")


def _mass_channels(subject: int) -> list[ChannelSpec]:
    """MASS-SS3's 20-channel EEG montage plus EOG, chin EMG, ECG and belts at 256 Hz."""
    # Most SS3 nights are referenced to linked ears (CLE); a few to a single ear (LER).
    ref = "LER" if subject % 4 == 3 else "CLE"
    out = [ChannelSpec(f"EEG {loc}-{ref}", "eeg", loc, 256) for loc in _MASS_EEG]
    out += [ChannelSpec("EOG Left Horiz", "eog", "L", 256), ChannelSpec("EOG Right Horiz", "eog", "R", 256)]
    out += [ChannelSpec(f"EMG Chin{i}", "emg", f"chin{i}", 256) for i in (1, 2, 3)]
    out += [ChannelSpec("ECG ECGI", "ecg", "", 256),
            ChannelSpec("Resp Belt Thor", "thor", "", 256, scale=100.0),
            ChannelSpec("Resp Belt Abdo", "abdo", "", 256, scale=100.0)]
    return out


SHHS_CHANNELS: tuple[ChannelSpec, ...] = (
    ChannelSpec("SaO2", "spo2", "", 1, "%"), ChannelSpec("H.R.", "hr", "", 1, "bpm"),
    ChannelSpec("EEG(sec)", "eeg", "C3", 125), ChannelSpec("ECG", "ecg", "", 125, "mV", scale=0.001),
    ChannelSpec("EMG", "emg", "chin", 125), ChannelSpec("EOG(L)", "eog", "L", 50),
    ChannelSpec("EOG(R)", "eog", "R", 50), ChannelSpec("EEG", "eeg", "C4", 125),
    ChannelSpec("THOR RES", "thor", "", 10, ""), ChannelSpec("ABDO RES", "abdo", "", 10, ""),
    ChannelSpec("POSITION", "position", "", 1, ""), ChannelSpec("LIGHT", "light", "", 1, ""),
    ChannelSpec("AIRFLOW", "flow", "", 10, ""),
    ChannelSpec("OX stat", "oxstat", "", 1, "", physical_range=(0.0, 3.0)),
)
_SEDF_EEG = dict(transducer="Ag-AgCl electrodes", prefiltering="HP:0.5Hz LP:100Hz [enhanced cassette BW]",
                 digital_range=(-2048, 2047))
SLEEPEDF_CHANNELS: tuple[ChannelSpec, ...] = (
    ChannelSpec("EEG Fpz-Cz", "eeg", "Fpz-Cz", 100, **_SEDF_EEG),
    ChannelSpec("EEG Pz-Oz", "eeg", "Pz-Oz", 100, **_SEDF_EEG),
    ChannelSpec("EOG horizontal", "eog", "H", 100, **_SEDF_EEG),
    ChannelSpec("Resp oro-nasal", "therm", "", 1, "", transducer="Oral-nasal thermistors",
                prefiltering="HP:0.03Hz LP:0.9Hz", digital_range=(-2048, 2047), scale=400.0),
    ChannelSpec("EMG submental", "emg_env", "", 1, "uV", transducer="Ag-AgCl electrodes",
                prefiltering="HP:16Hz Rectification LP:0.7Hz", digital_range=(-2500, 2500)),
    ChannelSpec("Temp rectal", "temp", "", 1, "DegC", transducer="Rectal thermistor",
                physical_range=(34.0, 40.0), digital_range=(-2849, 2731)),
    ChannelSpec("Event marker", "marker", "", 1, "", transducer="Marker button",
                prefiltering="Hold during 2 seconds", physical_range=(-2047.0, 2048.0),
                digital_range=(-2047, 2048)),
)

_FORMAT_INFO = {
    "isruc": dict(age_range=(20.0, 85.0), line_hz=50.0, max_subjects=9999, date=_dt.date(2009, 3, 2)),
    "mass": dict(age_range=(20.0, 69.0), line_hz=60.0, max_subjects=9999, date=_dt.date(2000, 1, 1)),
    "shhs": dict(age_range=(40.0, 89.0), line_hz=60.0, max_subjects=9999, date=_dt.date(1985, 1, 1)),
    "sleepedf": dict(age_range=(25.0, 101.0), line_hz=50.0, max_subjects=100, date=_dt.date(1989, 4, 24)),
}


def format_channels(fmt: str, subject: int = 0) -> list[ChannelSpec]:
    """The channel list a format's real files carry (labels, rates, units) for one subject."""
    _check_format(fmt)
    if fmt == "isruc":
        return _isruc_channels(subject)
    if fmt == "mass":
        return _mass_channels(subject)
    return list(SHHS_CHANNELS if fmt == "shhs" else SLEEPEDF_CHANNELS)


def format_night(fmt: str, subject: int, *, minutes: float, seed: int) -> SynthNight:
    """The night ``synth_dataset`` writes for one subject of a format: its channels, the dataset's age
    range and mains frequency."""
    info = _FORMAT_INFO[fmt]
    return synth_night(format_channels(fmt, subject), minutes=minutes, seed=seed, subject=subject,
                       age_range=info["age_range"], line_hz=info["line_hz"])


def scored_stages(night: SynthNight, fmt: str) -> np.ndarray:
    """The AASM stages a reader should get back from a format's label file (movement time is
    unscored only where the format has a label for it: Sleep-EDF)."""
    _check_format(fmt)
    out = night.stages.astype(np.int8).copy()
    if fmt == "sleepedf":
        out[night.movement] = UNSCORED
    return out


# ----------------------------------------------------------------------------------------------
# Label files: spellings from the readers' tables in psgvlm.stages
# ----------------------------------------------------------------------------------------------
ISRUC_FILE_CODES = writer_labels(ISRUC_CODES)  # AASM code -> the integer ISRUC's <id>_1.txt holds
_RK_TEXT = writer_labels(RK_ANNOTATIONS)  # AASM code -> "Sleep stage W/1/2/3/R"
_NSRR_CONCEPT = writer_labels(NSRR_CONCEPTS)  # AASM code -> "Wake|0", "Stage 1 sleep|1", ...
PROFUSION_FILE_CODES = writer_labels(PROFUSION_CODES)  # AASM code -> the Profusion <SleepStage> integer


def _rk_texts(night: SynthNight, fmt: str) -> list[str]:
    """One R&K annotation text per epoch; Sleep-EDF also has stage 4 and movement time."""
    texts = [_RK_TEXT[int(s)] for s in night.stages]
    for i in np.flatnonzero(night.deep):
        if fmt == "sleepedf":  # R&K: > 50 % slow waves is stage 4 (MASS-SS3 was scored AASM: no 4)
            texts[i] = "Sleep stage 4"
    if fmt == "sleepedf":
        for i in np.flatnonzero(night.movement):
            texts[i] = "Movement time"
    return texts


def _nsrr_xml(night: SynthNight, start: _dt.datetime, *, unsure: bool = False) -> str:
    """NSRR PSGAnnotation XML: recording start, stage runs, arousals, hypopneas and desaturations (and,
    with ``unsure``, a respiratory ``Unsure|Unsure`` event a minute in, as real SHHS files have)."""
    dur = night.n_epochs * EPOCH_S
    lines = ['<?xml version="1.0" encoding="UTF-8" standalone="no"?>', "<PSGAnnotation>",
             "<SoftwareVersion>Compumedics</SoftwareVersion>", "<EpochLength>30</EpochLength>",
             "<ScoredEvents>", "<ScoredEvent>", "<EventType/>", "<EventConcept>Recording Start Time</EventConcept>",
             "<Start>0</Start>", f"<Duration>{dur:.1f}</Duration>",
             f"<ClockTime>00.00.00 {start:%H.%M.%S}</ClockTime>", "</ScoredEvent>"]
    concepts = [_NSRR_CONCEPT[int(s)] for s in night.stages]
    for i in np.flatnonzero(night.deep):
        concepts[i] = "Stage 4 sleep|4"
    events = []
    i = 0
    while i < len(concepts):
        j = i
        while j < len(concepts) and concepts[j] == concepts[i]:
            j += 1
        events.append((i * EPOCH_S, (j - i) * EPOCH_S, "Stages|Stages", concepts[i], None))
        i = j
    for o, d in night.events.get("arousal", np.zeros((0, 2))):
        events.append((o, d, "Arousals|Arousals", "Arousal|Arousal ()", "EEG"))
    for o, d in night.events.get("hypopnea", np.zeros((0, 2))):
        events.append((o, d, "Respiratory|Respiratory", "Hypopnea|Hypopnea", "ABDO RES"))
        events.append((o + d * 0.6 + 8, 20.0, "Respiratory|Respiratory", "SpO2 desaturation|SpO2 desaturation", "SaO2"))
    if unsure:
        events.append((60.0, 14.0, "Respiratory|Respiratory", "Unsure|Unsure", "ABDO RES"))
    stage_events = [e for e in events if e[2] == "Stages|Stages"]
    others = sorted((e for e in events if e[2] != "Stages|Stages"), key=lambda e: e[0])
    for o, d, etype, concept, loc in others + stage_events:  # NSRR files list stages last
        if o + d > dur:
            continue
        lines += ["<ScoredEvent>", f"<EventType>{etype}</EventType>", f"<EventConcept>{concept}</EventConcept>",
                  f"<Start>{o:.1f}</Start>", f"<Duration>{d:.1f}</Duration>"]
        if loc:
            lines.append(f"<SignalLocation>{loc}</SignalLocation>")
        lines.append("</ScoredEvent>")
    lines += ["</ScoredEvents>", "</PSGAnnotation>"]
    return "\n".join(lines) + "\n"


def _paths(fmt: str, out: Path, subject: int) -> dict[str, Path]:
    """Files one subject's recording occupies, keyed by role."""
    if fmt == "isruc":
        sid = str(subject + 1)
        d = out / sid
        return {"signal": d / f"{sid}.rec", "scorer1": d / f"{sid}_1.txt", "scorer2": d / f"{sid}_2.txt"}
    if fmt == "mass":
        sid = f"01-03-{subject + 1:04d}"
        return {"signal": out / f"{sid} PSG.edf", "hypnogram": out / f"{sid} Base.edf"}
    if fmt == "shhs":
        sid = f"shhs1-{200001 + subject}"
        return {"signal": out / "edfs" / "shhs1" / f"{sid}.edf",
                "hypnogram": out / "annotations-events-nsrr" / "shhs1" / f"{sid}-nsrr.xml"}
    sid = f"SC4{subject:02d}1"
    return {"signal": out / f"{sid}E0-PSG.edf", "hypnogram": out / f"{sid}EC-Hypnogram.edf"}


def _edf_channels(night: SynthNight, specs: Sequence[ChannelSpec], record_s: float = 1.0,
                  clock: float = 1.0) -> list[EdfChannel]:
    """The night's signals as EDF channels, cut to whole data records of ``record_s`` seconds, their rates
    written as ``sfreq / clock`` (a recorder whose clock runs off: MASS's "256 Hz with decimals")."""
    n_records = min(int(len(night.signals[s.label]) // round(s.sfreq * record_s)) for s in specs)
    return [EdfChannel(label=s.label, sfreq=s.sfreq / clock,
                       data=night.signals[s.label][: n_records * round(s.sfreq * record_s)],
                       unit=s.unit, transducer=s.transducer, prefiltering=s.prefiltering,
                       physical_range=s.physical_range, digital_range=s.digital_range) for s in specs]


# ----------------------------------------------------------------------------------------------
# Writers: one per format, (paths, night, EDF channels, start, patient, header rng) -> files
# ----------------------------------------------------------------------------------------------
def _write_isruc(plan: _Night, night: SynthNight, chans, start, patient, rng) -> None:
    """ISRUC: ``<id>.rec`` (plain EDF) and one integer code per line per scorer."""
    write_edf(plan.paths["signal"], chans, patient=patient, startdatetime=start)
    for key, st in (("scorer1", night.stages), ("scorer2", night.stages_scorer2)):
        write_text_atomic(plan.paths[key], "".join(f"{ISRUC_FILE_CODES[int(s)]}\n" for s in st))


def _write_mass(plan: _Night, night: SynthNight, chans, start, patient, rng) -> None:
    """MASS-SS3: EDF+ ``PSG.edf`` and a ``Base.edf`` with one annotation per 30-s epoch."""
    write_edf(plan.paths["signal"], chans, patient=patient, startdatetime=start, edf_plus=True,
              data_record_duration=plan.record_s * plan.clock)
    texts = _rk_texts(night, "mass")
    n = len(texts)
    write_annotations_edf(plan.paths["hypnogram"], np.arange(n) * EPOCH_S, np.full(n, EPOCH_S), texts,
                          startdatetime=start, patient=patient)


def _profusion_xml(night: SynthNight) -> str:
    """Compumedics Profusion XML: ``EpochLength``, events, then one ``<SleepStage>`` per epoch (R&K: 4 for deep N3)."""
    codes = [4 if deep else PROFUSION_FILE_CODES[int(s)] for s, deep in zip(night.stages, night.deep)]
    events = "".join(f"<ScoredEvent><Name>Hypopnea</Name><Start>{o:.1f}</Start><Duration>{d:.1f}</Duration>"
                     f"<Input>ABDO RES</Input></ScoredEvent>" for o, d in night.events.get("hypopnea", np.zeros((0, 2))))
    return ('<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n<CMPStudyConfig>\n<EpochLength>30</EpochLength>\n'
            f"<ScoredEvents>{events}</ScoredEvents>\n<SleepStages>\n"
            + "".join(f"<SleepStage>{c}</SleepStage>\n" for c in codes) + "</SleepStages>\n</CMPStudyConfig>\n")


def _write_shhs(plan: _Night, night: SynthNight, chans, start, patient, rng) -> None:
    """SHHS: plain EDF, the NSRR XML annotations and (download layout) the Profusion XML."""
    write_edf(plan.paths["signal"], chans, patient=patient, startdatetime=start)
    if "hypnogram" in plan.paths:
        write_text_atomic(plan.paths["hypnogram"], _nsrr_xml(night, start, unsure=plan.extra.get("unsure", False)))
    if "profusion" in plan.paths:
        write_text_atomic(plan.paths["profusion"], _profusion_xml(night))


def _write_sleepedf(plan: _Night, night: SynthNight, chans, start, patient, rng) -> None:
    """Sleep-EDF: plain EDF with 30-s data records and a hypnogram EDF+ of runs of equal stages."""
    write_edf(plan.paths["signal"], chans, patient=patient, startdatetime=start, data_record_duration=30.0)
    texts = _rk_texts(night, "sleepedf")
    onsets, durs, runs = [], [], []
    for i, t in enumerate(texts):  # runs of equal stages, as the real hypnograms
        if runs and runs[-1] == t:
            durs[-1] += EPOCH_S
        else:
            onsets.append(i * EPOCH_S)
            durs.append(EPOCH_S)
            runs.append(t)
    # The real hypnograms end with a "?" stretch that runs past the signal.
    onsets.append(len(texts) * EPOCH_S)
    durs.append(float(EPOCH_S * rng.integers(10, 200)))
    runs.append("Sleep stage ?")
    write_annotations_edf(plan.paths["hypnogram"], onsets, durs, runs, startdatetime=start, patient=patient)


_WRITERS = {"isruc": _write_isruc, "mass": _write_mass, "shhs": _write_shhs, "sleepedf": _write_sleepedf}


@dataclass(frozen=True)
class _Night:
    """One night to write: where its files go, its channels, and what the readers should make of it."""

    key: int  # the synthetic subject number (physiology and hypnogram are a function of seed and key)
    paths: dict  # role -> Path (signal, hypnogram / scorer1 / scorer2, profusion)
    specs: tuple  # ChannelSpec per signal, in file order
    recording: str  # the id psgvlm.io.readers.find_recordings gives it
    subject: str
    variant: str = ""  # what is unusual about it ("" for a regular night)
    record_s: float = 1.0  # EDF data record duration, seconds
    clock: float = 1.0  # the file's seconds per true second: rates written as sfreq / clock, records as record_s * clock
    extra: dict = field(default_factory=dict)  # writer options (shhs: nsrr_xml False, visit)


# The real files' variants each download layout holds (one night each), for --help and synth.json.
DOWNLOAD_VARIANTS: dict[str, tuple[str, ...]] = {
    "isruc": ("no F3-A2/F4-A1 (subgroup 1 subject 8)", "bare electrodes F3..O2, LOC, ROC, A1, A2 (subject 40)",
              "chin EMG labelled 24", "M1/M2 spelling", "subgroup 2: two nights of one subject"),
    "mass": ("LER reference and ECG I", "rate 256.0018 Hz", "no EMG Chin3"),
    "shhs": ("NEWAIR, SOUND, EEG (sec) spellings", "Profusion XML only", "no ABDO RES", "second visit (SHHS-2)"),
    "sleepedf": ("F0 night (FC hypnogram)", "G0 night (GV hypnogram)", "telemetry ST7ssNJ0 (100-Hz EMG)"),
}


def _with(specs, *, drop=(), rename=None) -> tuple:
    """``specs`` without the labels in ``drop``, relabelled by ``rename``."""
    rename = rename or {}
    return tuple(replace(s, label=rename.get(s.label, s.label)) for s in specs if s.label not in drop)


def _download_isruc(out: Path, n: int) -> list[_Night]:
    def night(key, group, folder, sid, specs, variant="", subject_id=None):
        d = out / f"Subgroup_{group}" / folder
        ids = f"isruc-sg{group}-{folder.split('/')[0]}"
        rec_id = ids if subject_id is None else f"{ids}-{sid}"
        return _Night(key, {"signal": d / f"{sid}.rec", "scorer1": d / f"{sid}_1.txt", "scorer2": d / f"{sid}_2.txt"},
                      tuple(specs), rec_id, ids, variant)

    a, m = _isruc_channels(0), _isruc_channels(1)
    bare = {lab: lab.split("-")[0] for lab in ISRUC_LABELS_A[:8]}
    bare_specs = _with(a, rename=bare) + (ChannelSpec("A1", "eeg", "A2", 200), ChannelSpec("A2", "eeg", "A2", 200))
    regular = [i for i in range(1, 100) if i not in (2, 8, 40)][:n]
    nights = [night(k, 1, str(i), str(i), a) for k, i in enumerate(regular)]
    nights += [night(100, 1, "2", "2", _with(a, rename={"X1": "24"}), "chin EMG labelled 24"),
               night(101, 1, "8", "8", _with(a, drop=("F3-A2", "F4-A1")), "no F3-A2/F4-A1 (subgroup 1 subject 8)"),
               night(102, 1, "40", "40", bare_specs, "bare electrodes F3..O2, LOC, ROC, A1, A2 (subject 40)")]
    for i in range(1, n + 1):  # two nights per subject
        nights += [night(200 + 10 * i + s, 2, f"{i}/{s}", str(s), m, "subgroup 2: two nights of one subject", True)
                   for s in (1, 2)]
    nights += [night(300 + i, 3, str(i), str(i), m, "M1/M2 spelling") for i in range(1, n + 1)]
    return nights


def _download_mass(out: Path, n: int) -> list[_Night]:
    def night(key, i, specs, variant="", clock=1.0):
        sid = f"01-03-{i:04d}"
        return _Night(key, {"signal": out / "SS3" / "biosignals" / f"{sid} PSG.edf",
                            "hypnogram": out / "SS3" / "annotations" / f"{sid} Base.edf"},
                      tuple(specs), f"SS3/biosignals/{sid}", sid, variant, clock=clock)

    cle = _mass_channels(0)
    ler = _with(_mass_channels(3), rename={"ECG ECGI": "ECG I"})
    nights = [night(i, i + 1, cle) for i in range(n)]
    nights += [night(100, n + 1, ler, "LER reference and ECG I"),
               # 256 samples per 0.999993-s record: 256.0018 Hz, "256 Hz with decimals"
               night(101, n + 2, cle, "rate 256.0018 Hz", 0.999993),
               night(102, n + 3, _with(cle, drop=("EMG Chin3",)), "no EMG Chin3")]
    return nights


def _download_shhs(out: Path, n: int) -> list[_Night]:
    psg = out / "polysomnography"

    def night(key, i, specs, variant="", *, visit=1, nsrr=True):
        stem = f"shhs{visit}-{200000 + i}"
        paths = {"signal": psg / "edfs" / f"shhs{visit}" / f"{stem}.edf",
                 "profusion": psg / "annotations-events-profusion" / f"shhs{visit}" / f"{stem}-profusion.xml"}
        if nsrr:
            paths["hypnogram"] = psg / "annotations-events-nsrr" / f"shhs{visit}" / f"{stem}-nsrr.xml"
        return _Night(key, paths, tuple(specs), stem, str(200000 + i), variant,
                      extra={"visit": visit, "unsure": True})

    spelled = _with(SHHS_CHANNELS, rename={"EEG(sec)": "EEG (sec)", "AIRFLOW": "NEWAIR"}) + (
        ChannelSpec("SOUND", "snore", "", 10, ""),)
    nights = [night(i, i + 1, SHHS_CHANNELS) for i in range(n)]
    nights += [night(100, n + 1, spelled, "NEWAIR, SOUND, EEG (sec) spellings"),
               night(101, n + 2, SHHS_CHANNELS, "Profusion XML only", nsrr=False),
               night(102, n + 3, _with(SHHS_CHANNELS, drop=("ABDO RES",)), "no ABDO RES"),
               night(103, 1, SHHS_CHANNELS, "second visit (SHHS-2)", visit=2)]
    return nights


SLEEPEDF_TELEMETRY: tuple[ChannelSpec, ...] = (
    *SLEEPEDF_CHANNELS[:3], ChannelSpec("EMG submental", "emg", "chin", 100, "uV", transducer="Ag-AgCl electrodes",
                                        prefiltering="HP:16Hz LP:100Hz", digital_range=(-2048, 2047)),
    SLEEPEDF_CHANNELS[-1],
)


def _download_sleepedf(out: Path, n: int) -> list[_Night]:
    def night(key, study, subject, n_night, letters, specs, variant=""):
        folder = {"SC4": "sleep-cassette", "ST7": "sleep-telemetry"}[study]
        rec = f"{study}{subject:02d}{n_night}{letters[0]}0"
        hyp = f"{study}{subject:02d}{n_night}{letters}"
        return _Night(key, {"signal": out / folder / f"{rec}-PSG.edf", "hypnogram": out / folder / f"{hyp}-Hypnogram.edf"},
                      tuple(specs), f"{folder}/{rec}", f"{study}{subject:02d}", variant, 30.0)

    nights = []
    for i in range(n):  # two nights per subject; the first subject's second night is an F0 file
        nights += [night(2 * i, "SC4", i, 1, "EC", SLEEPEDF_CHANNELS),
                   night(2 * i + 1, "SC4", i, 2, "FC" if i == 0 else "EH", SLEEPEDF_CHANNELS,
                         "F0 night (FC hypnogram)" if i == 0 else "")]
    nights += [night(100, "SC4", n, 1, "GV", SLEEPEDF_CHANNELS, "G0 night (GV hypnogram)"),
               night(101, "ST7", 1, 1, "JP", SLEEPEDF_TELEMETRY, "telemetry ST7ssNJ0 (100-Hz EMG)"),
               night(102, "ST7", 1, 2, "JA", SLEEPEDF_TELEMETRY, "telemetry ST7ssNJ0 (100-Hz EMG)")]
    return nights


_DOWNLOAD = {"isruc": _download_isruc, "mass": _download_mass, "shhs": _download_shhs, "sleepedf": _download_sleepedf}


def _tidy_nights(fmt: str, out: Path, subjects: int) -> list[_Night]:
    """The default layout: one night per subject, every file in its dataset's own naming."""
    nights = []
    for i in range(subjects):
        paths = _paths(fmt, out, i)
        rec_id = {"isruc": str(i + 1), "mass": paths["signal"].name[:10], "shhs": paths["signal"].stem,
                  "sleepedf": paths["signal"].name[:8]}[fmt]
        subject = rec_id.split("-")[1] if fmt == "shhs" else rec_id[:5] if fmt == "sleepedf" else rec_id
        nights.append(_Night(i, paths, tuple(format_channels(fmt, i)), rec_id, subject,
                             record_s=30.0 if fmt == "sleepedf" else 1.0))
    return nights


def _write_night(fmt: str, out: Path, plan: _Night, *, minutes: float, seed: int) -> dict:
    """Synthesise and write one night; returns its ``synth.json`` record."""
    info = _FORMAT_INFO[fmt]
    night = synth_night(list(plan.specs), minutes=minutes, seed=seed, subject=plan.key,
                        age_range=info["age_range"], line_hz=info["line_hz"])
    rng = child_rng(seed, plan.key, "header")
    start = _dt.datetime.combine(info["date"] + _dt.timedelta(days=int(plan.key)),
                                 _dt.time(21, 0)) + _dt.timedelta(minutes=int(rng.integers(0, 150)))
    age, sex = night.meta["age"], night.meta["sex"]
    if fmt == "sleepedf":  # Sleep-EDF keeps sex and age in the patient name ("Female_33yr")
        patient = edf_patient(sex=sex, name=f"{'Female' if sex == 'F' else 'Male'}_{int(age)}yr")
    else:
        patient = edf_patient(sex=sex, birthdate=start.date() - _dt.timedelta(days=int(age * 365.25)))
    chans = _edf_channels(night, plan.specs, plan.record_s, plan.clock)
    _WRITERS[fmt](plan, night, chans, start, patient, rng)
    n_epochs = min(night.n_epochs, int(min(len(c.data) / c.sfreq for c in chans) // EPOCH_S))
    defaults = DATASET_CHANNELS[fmt]
    present = {lookup(s.label, dataset=fmt)[0] for s in plan.specs}
    return {
        "recording": plan.recording, "subject": plan.subject, "variant": plan.variant,
        "missing_channels": [c for c in defaults if c not in present],
        "files": {k: str(v.relative_to(out)) for k, v in plan.paths.items()},
        "age": age, "sex": sex, "n_epochs": n_epochs,
        "stage_counts": stage_counts(scored_stages(night, fmt)[:n_epochs]),
        "channels": [s.label for s in plan.specs], "sfreq": {c.label: c.sfreq for c in chans},
        "agreement_scorer2": night.meta["agreement_scorer2"],
        "start": start.isoformat(),
    }


def _check_format(fmt) -> None:
    """Raise ValueError unless ``fmt`` is one of ``FORMATS``."""
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} not supported by synth; choose from {list(FORMATS)}")


MAX_DOWNLOAD_SUBJECTS = 20  # regular nights per group in the download layout (its variants come on top)


def synth_dataset(fmt: str, out, *, subjects: int, minutes: float, seed: int = 0, layout: str = "tidy",
                  overwrite: bool = False, progress: bool = True) -> list[Path]:
    """Write synthetic nights in ``fmt``'s on-disk layout under ``out``.

    Parameters
    ----------
    fmt : str
        One of ``FORMATS``.
    out : str or Path
        Output folder (created).
    subjects : int
        ``tidy``: number of subjects, one night each (1..9999; Sleep-EDF names allow 100).
        ``download``: regular nights per group (subgroup, cassette...; 1..20), beside the variants.
    minutes : float
        Night length (>= ``MIN_MINUTES``), rounded down to whole 30-s epochs.
    seed : int
        Same seed, same bytes.
    layout : {"tidy", "download"}
        ``tidy``: one folder of regular nights; ``download``: the dataset's download layout with the
        real files' variants (:data:`DOWNLOAD_VARIANTS`; module docstring).
    overwrite : bool
        Replace recordings already there; otherwise an existing file is an error.
    progress : bool
        Show a tqdm bar over nights.

    Returns
    -------
    list of Path
        The signal files (``.rec`` / ``PSG.edf`` / ``.edf``), one per night.
    """
    _check_format(fmt)
    if layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r}: choose from {list(LAYOUTS)}")
    if isinstance(subjects, bool) or not isinstance(subjects, int | np.integer) or subjects < 1:
        raise ValueError(f"subjects {subjects!r}: must be an integer >= 1")
    limit = _FORMAT_INFO[fmt]["max_subjects"] if layout == "tidy" else MAX_DOWNLOAD_SUBJECTS
    if subjects > limit:
        raise ValueError(f"subjects {subjects}: the {layout} {fmt} layout allows at most {limit}")
    check_minutes(minutes)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed {seed!r}: must be an integer >= 0")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} exists and is not a folder")
    nights = _tidy_nights(fmt, out, int(subjects)) if layout == "tidy" else _DOWNLOAD[fmt](out, int(subjects))
    if not overwrite:
        taken = [p for plan in nights for p in plan.paths.values() if p.exists()]
        if taken:
            raise FileExistsError(f"{len(taken)} output files already exist (first: {taken[0]}); "
                                  "pass overwrite=True / --overwrite to replace them")
    out.mkdir(parents=True, exist_ok=True)
    from tqdm.auto import tqdm

    records = [_write_night(fmt, out, plan, minutes=float(minutes), seed=int(seed))
               for plan in tqdm(nights, desc=f"synth {fmt}", unit="night", disable=not progress)]
    if fmt == "shhs":  # SHHS keeps age and sex in a dataset CSV per visit (gender: 1 male, 2 female)
        version = "synthetic" if layout == "tidy" else "0.21.0"
        for visit in (1, 2):
            rows = [f"{r['subject']},{int(r['age'])},{1 if r['sex'] == 'M' else 2}"
                    for r, plan in zip(records, nights) if plan.extra.get("visit", 1) == visit]
            if rows:
                write_text_atomic(out / "datasets" / f"shhs{visit}-dataset-{version}.csv",
                                  "\n".join([f"nsrrid,age_s{visit},gender", *rows]) + "\n")
    write_json_atomic(out / "synth.json", {
        "kind": "psgvlm-synthetic-psg", "format": fmt,
        "config": {"subjects": int(subjects), "minutes": float(minutes), "seed": int(seed), "layout": layout},
        "recordings": records, "provenance": provenance(),
    })
    return [out / r["files"]["signal"] for r in records]


def main(argv: list[str] | None = None) -> int:
    """``psgvlm synth``: write synthetic recordings in a dataset's true on-disk format."""
    parser = argparse.ArgumentParser(prog="psgvlm synth", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--format", required=True, choices=FORMATS, help="on-disk layout to write")
    parser.add_argument("--subjects", type=int, default=1,
                        help="number of subjects, one night each (--layout download: regular nights per group, "
                             f"1..{MAX_DOWNLOAD_SUBJECTS}, beside the variant nights)")
    parser.add_argument("--minutes", type=float, default=480.0, help=f"night length (>= {MIN_MINUTES:g})")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same bytes)")
    parser.add_argument("--layout", choices=LAYOUTS, default="tidy",
                        help="tidy: one folder of regular nights (default); download: the dataset's download "
                             "layout (ISRUC subgroups, MASS signal/annotation folders, NSRR's SHHS tree with both "
                             "visits, Sleep-EDF cassette and telemetry) with the real files' variants: "
                             + "; ".join(f"{f}: {', '.join(v)}" for f, v in DOWNLOAD_VARIANTS.items()))
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--overwrite", action="store_true", help="replace recordings already in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        paths = synth_dataset(args.format, args.out, subjects=args.subjects, minutes=args.minutes,
                              seed=args.seed, layout=args.layout, overwrite=args.overwrite, progress=not args.quiet)
    except (ValueError, FileExistsError) as err:
        print(f"psgvlm synth: {err}", file=sys.stderr)
        return 2
    print(f"wrote {len(paths)} {args.format} recording(s) to {args.out} (manifest: synth.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
