"""Synthetic polysomnography written in each dataset's true on-disk format.

    psgvlm synth --format isruc --subjects 4 --minutes 60 --seed 0 --out data/synth/isruc

writes ``<out>/<id>/<id>.rec`` + ``<id>_1.txt`` + ``<id>_2.txt`` (ISRUC-Sleep S1/S3), and likewise
MASS-SS3 (``01-03-00NN PSG.edf`` + ``Base.edf``), SHHS-1 (``edfs/shhs1/shhs1-2000NN.edf`` + NSRR XML
+ a subject CSV) and Sleep-EDF Expanded (``SC4NN1E0-PSG.edf`` + ``SC4NN1EC-Hypnogram.edf``), with the
real files' channel labels, sampling rates, units and label files, plus ``synth.json`` (config,
subjects, stage counts, provenance). The signals come from ``psgvlm.synth.physiology``; this module
only knows each dataset's channel sets, file names and label files. Label spellings come from the
tables in ``psgvlm.stages`` that the readers use.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from psgvlm.io.edf import EdfChannel, edf_patient, write_annotations_edf, write_edf
from psgvlm.provenance import provenance, write_json_atomic, write_text_atomic
from psgvlm.stages import (
    EPOCH_S,
    ISRUC_CODES,
    NSRR_CONCEPTS,
    RK_ANNOTATIONS,
    UNSCORED,
    stage_counts,
    writer_labels,
)
from psgvlm.synth.noise import child_rng
from psgvlm.synth.physiology import MIN_MINUTES, ChannelSpec, SynthNight, check_minutes, synth_night

FORMATS: tuple[str, ...] = ("isruc", "mass", "shhs", "sleepedf")

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


def _nsrr_xml(night: SynthNight, start: _dt.datetime) -> str:
    """NSRR PSGAnnotation XML: recording start, stage runs, arousals, hypopneas and desaturations."""
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


def _edf_channels(night: SynthNight, specs: Sequence[ChannelSpec]) -> list[EdfChannel]:
    return [EdfChannel(label=s.label, sfreq=s.sfreq, data=night.signals[s.label], unit=s.unit,
                       transducer=s.transducer, prefiltering=s.prefiltering, physical_range=s.physical_range,
                       digital_range=s.digital_range) for s in specs]


# ----------------------------------------------------------------------------------------------
# Writers: one per format, (paths, night, EDF channels, start, patient, header rng) -> files
# ----------------------------------------------------------------------------------------------
def _write_isruc(paths, night: SynthNight, chans, start, patient, rng) -> None:
    """ISRUC: ``<id>.rec`` (plain EDF) and one integer code per line per scorer."""
    write_edf(paths["signal"], chans, patient=patient, startdatetime=start)
    for key, st in (("scorer1", night.stages), ("scorer2", night.stages_scorer2)):
        write_text_atomic(paths[key], "".join(f"{ISRUC_FILE_CODES[int(s)]}\n" for s in st))


def _write_mass(paths, night: SynthNight, chans, start, patient, rng) -> None:
    """MASS-SS3: EDF+ ``PSG.edf`` and a ``Base.edf`` with one annotation per 30-s epoch."""
    write_edf(paths["signal"], chans, patient=patient, startdatetime=start, edf_plus=True)
    texts = _rk_texts(night, "mass")
    n = len(texts)
    write_annotations_edf(paths["hypnogram"], np.arange(n) * EPOCH_S, np.full(n, EPOCH_S), texts,
                          startdatetime=start, patient=patient)


def _write_shhs(paths, night: SynthNight, chans, start, patient, rng) -> None:
    """SHHS-1: plain EDF and the NSRR XML annotations."""
    write_edf(paths["signal"], chans, patient=patient, startdatetime=start)
    write_text_atomic(paths["hypnogram"], _nsrr_xml(night, start))


def _write_sleepedf(paths, night: SynthNight, chans, start, patient, rng) -> None:
    """Sleep-EDF: plain EDF with 30-s data records and a hypnogram EDF+ of runs of equal stages."""
    write_edf(paths["signal"], chans, patient=patient, startdatetime=start, data_record_duration=30.0)
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
    write_annotations_edf(paths["hypnogram"], onsets, durs, runs, startdatetime=start, patient=patient)


_WRITERS = {"isruc": _write_isruc, "mass": _write_mass, "shhs": _write_shhs, "sleepedf": _write_sleepedf}


def _write_subject(fmt: str, out: Path, subject: int, *, minutes: float, seed: int) -> dict:
    """Synthesise and write one subject's night; returns its ``synth.json`` record."""
    specs = format_channels(fmt, subject)
    night = format_night(fmt, subject, minutes=minutes, seed=seed)
    paths = _paths(fmt, out, subject)
    rng = child_rng(seed, subject, "header")
    start = _dt.datetime.combine(_FORMAT_INFO[fmt]["date"] + _dt.timedelta(days=int(subject)),
                                 _dt.time(21, 0)) + _dt.timedelta(minutes=int(rng.integers(0, 150)))
    age, sex = night.meta["age"], night.meta["sex"]
    if fmt == "sleepedf":  # Sleep-EDF keeps sex and age in the patient name ("Female_33yr")
        patient = edf_patient(sex=sex, name=f"{'Female' if sex == 'F' else 'Male'}_{int(age)}yr")
    else:
        patient = edf_patient(sex=sex, birthdate=start.date() - _dt.timedelta(days=int(age * 365.25)))
    _WRITERS[fmt](paths, night, _edf_channels(night, specs), start, patient, rng)
    recording = {"isruc": str(subject + 1), "mass": paths["signal"].name[:10],
                 "shhs": paths["signal"].stem, "sleepedf": paths["signal"].name[:8]}[fmt]
    return {
        "recording": recording,
        "files": {k: str(v.relative_to(out)) for k, v in paths.items()},
        "age": age, "sex": sex, "n_epochs": night.n_epochs, "stage_counts": stage_counts(scored_stages(night, fmt)),
        "channels": [s.label for s in specs], "sfreq": {s.label: s.sfreq for s in specs},
        "agreement_scorer2": night.meta["agreement_scorer2"],
        "start": start.isoformat(),
    }


def _check_format(fmt) -> None:
    """Raise ValueError unless ``fmt`` is one of ``FORMATS``."""
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} not supported by synth; choose from {list(FORMATS)}")


def synth_dataset(fmt: str, out, *, subjects: int, minutes: float, seed: int = 0,
                  overwrite: bool = False, progress: bool = True) -> list[Path]:
    """Write ``subjects`` synthetic nights in ``fmt``'s on-disk layout under ``out``.

    Parameters
    ----------
    fmt : str
        One of ``FORMATS``.
    out : str or Path
        Output folder (created).
    subjects : int
        Number of subjects, one night each (1..9999; Sleep-EDF names allow 100).
    minutes : float
        Night length (>= ``MIN_MINUTES``), rounded down to whole 30-s epochs.
    seed : int
        Same seed, same bytes.
    overwrite : bool
        Replace recordings already there; otherwise an existing file is an error.
    progress : bool
        Show a tqdm bar over subjects.

    Returns
    -------
    list of Path
        The signal files (``.rec`` / ``PSG.edf`` / ``.edf``), one per subject.
    """
    _check_format(fmt)
    if isinstance(subjects, bool) or not isinstance(subjects, int | np.integer) or subjects < 1:
        raise ValueError(f"subjects {subjects!r}: must be an integer >= 1")
    if subjects > _FORMAT_INFO[fmt]["max_subjects"]:
        raise ValueError(f"subjects {subjects}: {fmt} file names allow at most {_FORMAT_INFO[fmt]['max_subjects']}")
    check_minutes(minutes)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed {seed!r}: must be an integer >= 0")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} exists and is not a folder")
    if not overwrite:
        taken = [p for i in range(subjects) for p in _paths(fmt, out, i).values() if p.exists()]
        if taken:
            raise FileExistsError(f"{len(taken)} output files already exist (first: {taken[0]}); "
                                  "pass overwrite=True / --overwrite to replace them")
    out.mkdir(parents=True, exist_ok=True)
    from tqdm.auto import tqdm

    records = []
    for i in tqdm(range(subjects), desc=f"synth {fmt}", unit="night", disable=not progress):
        records.append(_write_subject(fmt, out, i, minutes=float(minutes), seed=int(seed)))
    if fmt == "shhs":  # SHHS keeps age and sex in a dataset CSV (gender: 1 male, 2 female)
        rows = ["nsrrid,age_s1,gender"] + [
            f"{r['recording'].split('-')[1]},{int(r['age'])},{1 if r['sex'] == 'M' else 2}" for r in records]
        write_text_atomic(out / "datasets" / "shhs1-dataset-synthetic.csv", "\n".join(rows) + "\n")
    write_json_atomic(out / "synth.json", {
        "kind": "psgvlm-synthetic-psg", "format": fmt,
        "config": {"subjects": int(subjects), "minutes": float(minutes), "seed": int(seed)},
        "recordings": records, "provenance": provenance(),
    })
    return [out / r["files"]["signal"] for r in records]


def main(argv: list[str] | None = None) -> int:
    """``psgvlm synth``: write synthetic recordings in a dataset's true on-disk format."""
    parser = argparse.ArgumentParser(prog="psgvlm synth", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--format", required=True, choices=FORMATS, help="on-disk layout to write")
    parser.add_argument("--subjects", type=int, default=1, help="number of subjects (one night each)")
    parser.add_argument("--minutes", type=float, default=480.0, help=f"night length (>= {MIN_MINUTES:g})")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same bytes)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--overwrite", action="store_true", help="replace recordings already in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        paths = synth_dataset(args.format, args.out, subjects=args.subjects, minutes=args.minutes,
                              seed=args.seed, overwrite=args.overwrite, progress=not args.quiet)
    except (ValueError, FileExistsError) as err:
        print(f"psgvlm synth: {err}", file=sys.stderr)
        return 2
    print(f"wrote {len(paths)} {args.format} recording(s) to {args.out} (manifest: synth.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
