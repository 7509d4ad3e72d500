"""Readers and channel names on tiny files written here in each dataset's true on-disk format (ISRUC .rec +
scorer txt, MASS PSG/Base EDF+, SHHS EDF + NSRR XML, Sleep-EDF PSG/Hypnogram EDF+, DREAMS and Prerau text,
generic EDF + CSV/TSV), the READERS registry (a case per entry), and the bad inputs of issue 2. The real
recordings in ../shared/data/real are read in tests/test_readers_real.py.

Run: python -m pytest -q tests/test_readers.py
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from edfio import Edf, EdfAnnotation, EdfSignal, Patient
from edfio import Recording as EdfRecording

from psgvlm.io.channels import (
    ALIASES,
    DATASET_CHANNELS,
    canonical_names,
    infer_modality,
    lookup,
    pick_default_channels,
)
from psgvlm.io.readers import READERS, find_recordings, info_main, read_recording
from psgvlm.io.readers.pairing import pair_by_time
from psgvlm.io.recording import MODALITIES
from psgvlm.stages import N1, N2, N3, REM, UNSCORED, W

START = dt.date(2020, 5, 1)


# -- writers for the true on-disk formats (test fixtures, edfio) -------------------------------------
def _signal(label, sfreq, seconds, *, unit="uV", seed=0):
    amp = {"uV": 30.0, "mV": 0.5}.get(unit, 5.0)
    x = np.random.default_rng(seed).normal(0, amp, int(round(sfreq * seconds)))
    rng = (-500.0, 500.0) if unit == "uV" else (float(x.min()) - 1, float(x.max()) + 1)
    return EdfSignal(x, sfreq, label=label, physical_dimension=unit, physical_range=rng)


def write_edf(path: Path, channels, seconds, *, starttime=dt.time(22, 0, 0), patient=None):
    """channels: list of (label, sfreq) or (label, sfreq, unit)."""
    sigs = [_signal(c[0], c[1], seconds, unit=c[2] if len(c) > 2 else "uV", seed=i) for i, c in enumerate(channels)]
    edf = Edf(sigs, patient=patient, recording=EdfRecording(startdate=START), starttime=starttime)
    tmp = path.with_suffix(".tmp.edf")
    edf.write(tmp)
    tmp.rename(path)  # ISRUC's .rec is an EDF under another extension
    return path


def write_annotations(path: Path, annotations, *, starttime=dt.time(22, 0, 0)):
    """An annotation-only EDF+ (Sleep-EDF *-Hypnogram.edf, MASS * Base.edf)."""
    edf = Edf([], annotations=[EdfAnnotation(o, d, t) for o, d, t in annotations],
              recording=EdfRecording(startdate=START), starttime=starttime)
    edf.write(path)
    return path


ISRUC_A = [("LOC-A2", 200), ("ROC-A1", 200), ("F3-A2", 200), ("C3-A2", 200), ("O1-A2", 200), ("F4-A1", 200),
           ("C4-A1", 200), ("O2-A1", 200), ("X1", 200), ("X2", 200), ("X3", 200), ("X4", 200), ("SaO2", 200, "%")]
ISRUC_M = [("E1-M2", 200), ("E2-M1", 200), ("F3-M2", 200), ("C3-M2", 200), ("O1-M2", 200), ("F4-M1", 200),
           ("C4-M1", 200), ("O2-M1", 200), ("X1", 200), ("X2", 200), ("X3", 200), ("X4", 200), ("SaO2", 200, "%")]
SCORER1 = [0, 0, 1, 2, 2, 3, 3, 5, 5, 2]  # 10 epochs; the signal has 12 (ISRUC files stop short)
SCORER2 = [0, 1, 1, 2, 2, 3, 2, 5, 5, 0]


@pytest.fixture(scope="module")
def isruc_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("isruc")
    for sid, chans in (("7", ISRUC_A), ("12", ISRUC_M)):
        (root / sid).mkdir()
        write_edf(root / sid / f"{sid}.rec", chans, 12 * 30)
        (root / sid / f"{sid}_1.txt").write_text("\n".join(map(str, SCORER1)) + "\n\n")
        (root / sid / f"{sid}_2.txt").write_text("\n".join(map(str, SCORER2)) + "\n")
    return root


MASS_CHANS = [(f"EEG {e}-CLE", 256) for e in ("F3", "C3", "O1", "F4", "C4", "O2")] + [
    ("EOG Left Horiz", 256), ("EOG Right Horiz", 256), ("EMG Chin1", 256), ("EMG Chin2", 256),
    ("EMG Chin3", 256), ("ECG ECGI", 256), ("Resp Belt Thor", 64)]


@pytest.fixture(scope="module")
def mass_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("mass")
    write_edf(root / "01-03-0001 PSG.edf", MASS_CHANS, 200,
              patient=Patient(sex="M", birthdate=dt.date(1970, 6, 1), name="X"))
    # Scoring starts 4 s into the signal (as in MASS); 30-s epochs; "?" is unscored.
    stages = ["W", "1", "2", "2", "3", "4", "R", "?"]
    write_annotations(root / "01-03-0001 Base.edf",
                      [(4.0 + 30 * k, 30.0, f"Sleep stage {s}") for k, s in enumerate(stages)])
    return root


def _nsrr_xml(events) -> str:
    rows = "".join(
        f"<ScoredEvent><EventType>{t}</EventType><EventConcept>{c}</EventConcept><Start>{s}</Start>"
        f"<Duration>{d}</Duration></ScoredEvent>" for t, c, s, d in events)
    return ('<?xml version="1.0" encoding="UTF-8" standalone="no"?><PSGAnnotation><SoftwareVersion>Compumedics'
            "</SoftwareVersion><EpochLength>30</EpochLength><ScoredEvents><ScoredEvent><EventType/>"
            "<EventConcept>Recording Start Time</EventConcept><Start>0</Start><Duration>300.0</Duration>"
            f"<ClockTime>00.00.00 22.00.00</ClockTime></ScoredEvent>{rows}</ScoredEvents></PSGAnnotation>")


SHHS_CHANS = [("SaO2", 1, "%"), ("H.R.", 1, "bpm"), ("EEG(sec)", 125), ("ECG", 125, "mV"), ("EMG", 125),
              ("EOG(L)", 50), ("EOG(R)", 50), ("EEG", 125), ("THOR RES", 10, ""), ("ABDO RES", 10, ""),
              ("POSITION", 1, ""), ("LIGHT", 1, ""), ("AIRFLOW", 10, ""), ("OX stat", 1, "")]
SHHS_CONCEPTS = ["Wake|0", "Stage 1 sleep|1", "Stage 2 sleep|2", "Stage 3 sleep|3", "Stage 4 sleep|4",
                 "REM sleep|5", "Unscored|9"]


@pytest.fixture(scope="module")
def shhs_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("shhs") / "polysomnography"
    (root / "edfs" / "shhs1").mkdir(parents=True)
    (root / "annotations-events-nsrr" / "shhs1").mkdir(parents=True)
    write_edf(root / "edfs" / "shhs1" / "shhs1-200001.edf", SHHS_CHANS, 240)
    events = [("Stages|Stages", c, 30.0 * k, 30.0) for k, c in enumerate(SHHS_CONCEPTS)]
    events.insert(3, ("Respiratory|Respiratory", "Hypopnea|Hypopnea", 61.5, 12.0))
    (root / "annotations-events-nsrr" / "shhs1" / "shhs1-200001-nsrr.xml").write_text(_nsrr_xml(events))
    (root.parent / "datasets").mkdir()
    (root.parent / "datasets" / "shhs1-dataset-0.21.0.csv").write_text("nsrrid,age_s1,gender\n200001,63,2\n")
    return root.parent


@pytest.fixture(scope="module")
def sleepedf_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("sleepedf")
    chans = [("EEG Fpz-Cz", 100), ("EEG Pz-Oz", 100), ("EOG horizontal", 100), ("Resp oro-nasal", 1),
             ("EMG submental", 1), ("Temp rectal", 1, "DegC"), ("Event marker", 1, "")]
    write_edf(root / "SC4011E0-PSG.edf", chans, 270, patient=Patient(name="Male_58yr"))
    # The hypnogram starts 60 s after the PSG and runs past its end.
    write_annotations(root / "SC4011EH-Hypnogram.edf",
                      [(0, 90, "Sleep stage W"), (90, 30, "Sleep stage 1"), (120, 60, "Sleep stage 2"),
                       (180, 30, "Movement time"), (210, 600, "Sleep stage ?")],
                      starttime=dt.time(22, 1, 0))
    return root


# -- true-format synthetic files -----------------------------------------------------------------------
def test_isruc_both_spellings_and_scorers(isruc_dir):
    found = find_recordings("isruc", isruc_dir)
    assert [Path(d["path"]).name for d in found] == ["7.rec", "12.rec"]  # natural order
    a = read_recording("isruc", **found[0])
    m = read_recording("isruc", isruc_dir / "12")  # the <id> folder works too
    assert a.ch_names[:12] == m.ch_names[:12]
    assert set(DATASET_CHANNELS["isruc"]) <= set(a.ch_names)
    assert pick_default_channels(m) == DATASET_CHANNELS["isruc"]
    assert a.channel("LOC").name == "LOC-A2" and m.channel("LOC").name == "E1-M2"
    assert a.channel("EMG").name == "X1" and a.channel("ECG").name == "X2" and a.channel("LEG1").modality == "EMG"
    assert a.channel("SpO2").modality == "SPO2" and a.channel("SpO2").unit == "%"
    assert a.stages.tolist() == [W, W, N1, N2, N2, N3, N3, REM, REM, N2]
    assert a.pairing["n_signal_epochs"] == 12 and a.pairing["dropped_signal_s"] == 60.0
    b = read_recording("isruc", found[0]["path"], scorer=2)
    assert b.stages.tolist() == [W, N1, N1, N2, N2, N3, N2, REM, REM, W]
    assert find_recordings("isruc", isruc_dir, scorer=2)[0]["hypnogram"].endswith("7_2.txt")
    with pytest.raises(ValueError, match="scorer=3"):
        read_recording("isruc", found[0]["path"], scorer=3)


def test_mass_offset_annotations(mass_dir):
    (found,) = find_recordings("mass", mass_dir)
    rec = read_recording("mass", **found)
    assert rec.subject == "01-03-0001" and rec.onset_s == 4.0
    assert rec.stages.tolist() == [W, N1, N2, N2, N3, N3]  # 6 whole epochs after 4 s; "R", "?" past the end
    assert rec.pairing["n_label_epochs"] == 8 and rec.pairing["dropped_label_epochs"] == 2
    assert rec.channel("C3").name == "EEG C3-CLE" and rec.channel("LOC").modality == "EOG"
    assert rec.channel("THOR").sfreq == 64.0 and rec.channel("C3").sfreq == 256.0
    assert rec.meta == {"sex": "M", "age": 49}


def test_mass_20s_epochs_by_time(tmp_path):
    write_edf(tmp_path / "01-01-0001 PSG.edf", [("EEG C3-LER", 256)], 120)
    labels = ["W", "W", "2", "2", "R", "R"]  # 20-s scoring (MASS SS1/SS2 style)
    write_annotations(tmp_path / "01-01-0001 Base.edf",
                      [(20.0 * k, 20.0, f"Sleep stage {s}") for k, s in enumerate(labels)])
    rec = read_recording("mass", tmp_path / "01-01-0001 PSG.edf")
    assert rec.stages.tolist() == [W, N2, N2, REM]  # each 30-s epoch: the 20-s epoch inside it
    assert rec.pairing["scoring_epoch_s"] == 20.0


def test_shhs_rates_xml_and_csv_meta(shhs_dir):
    (found,) = find_recordings("shhs", shhs_dir)
    assert found["hypnogram"].endswith("shhs1-200001-nsrr.xml")
    rec = read_recording("shhs", found["path"])  # XML found in the NSRR layout
    assert rec.subject == "200001"
    assert rec.stages.tolist() == [W, N1, N2, N3, N3, REM, UNSCORED]
    assert rec.pairing["n_paired"] == 7 and rec.pairing["dropped_signal_s"] == 30.0
    rates = {c.canonical: c.sfreq for c in rec.channels}
    assert rates["C4"] == 125 and rates["C3"] == 125 and rates["LOC"] == 50 and rates["THOR"] == 10
    assert rates["SpO2"] == 1 and rec.channel("EEG").canonical == "C4"
    assert rec.channel("ECG").unit == "uV" and 400 < float(np.std(rec.channel("ECG").data)) < 600  # mV -> uV
    assert rec.meta == {"age": 63.0, "sex": "F", "visit": 1}
    assert pick_default_channels(rec) == DATASET_CHANNELS["shhs"]


def test_sleepedf_hypnogram_shift(sleepedf_dir):
    (found,) = find_recordings("sleepedf", sleepedf_dir)
    rec = read_recording("sleepedf", **found)
    assert rec.subject == "SC401" and rec.recording == "SC4011E0"
    assert rec.onset_s == 60.0 and rec.pairing["hypnogram_shift_s"] == 60.0
    # 270-s signal from 60 s: 7 epochs; W W W N1 N2 N2 MT
    assert rec.stages.tolist() == [W, W, W, N1, N2, N2, UNSCORED]
    assert rec.meta == {"age": 58, "sex": "M"}
    assert rec.channel("EMG").sfreq == 1.0


def test_generic_hypnogram_forms(tmp_path):
    write_edf(tmp_path / "night.edf", [("C4-M1", 128), ("E1-M2", 128), ("Chin", 128)], 150)
    (tmp_path / "night.csv").write_text("init_sec,duration_sec,stage\n0,30,W\n30,30,N1\n60,60,N2\n120,30,REM\n")
    (found,) = find_recordings("generic", tmp_path)
    rec = read_recording("generic", **found)
    assert rec.stages.tolist() == [W, N1, N2, N2, REM] and rec.ch_names == ["C4", "LOC", "EMG"]
    lines = tmp_path / "labels.txt"
    lines.write_text("W\nN1\nS2\n3\nR\n?\nN2\n")  # longer than the signal
    rec = read_recording("generic", tmp_path / "night.edf", lines)
    assert rec.stages.tolist() == [W, N1, N2, N3, REM]
    assert rec.pairing["dropped_label_epochs"] == 2 and rec.pairing["n_label_epochs"] == 7
    tsv = tmp_path / "short.tsv"
    tsv.write_text("0\t30\tSleep stage W\n30\t30\tSleep stage 2\n")  # shorter than the signal
    rec = read_recording("generic", tmp_path / "night.edf", tsv)
    assert rec.stages.tolist() == [W, N2] and rec.pairing["dropped_signal_s"] == 90.0
    assert read_recording("generic", tmp_path / "night.edf").stages is None


def test_pair_by_time_rules():
    # DREAMS-like 5-s labels: an epoch needs 4 of 6 slots, else unscored
    codes = np.array([W] * 3 + [N2] * 3 + [N2] * 4 + [W] * 2)
    stages, onset, p = pair_by_time(np.arange(12) * 5.0, np.full(12, 5.0), codes, 100.0, onset_s=0.0)
    assert stages.tolist() == [UNSCORED, N2] and onset == 0.0 and p["n_unscored"] == 1
    # a gap in the labels is unscored and counted
    stages, _, p = pair_by_time([0.0, 90.0], [30.0, 30.0], [W, REM], 1000.0)
    assert stages.tolist() == [W, UNSCORED, UNSCORED, REM] and p["n_gap_epochs"] == 2
    # labels before the signal start: grid moves into the signal, head counted as dropped
    stages, onset, p = pair_by_time([-30.0, 0.0, 30.0], [30.0] * 3, [W, N1, N2], 60.0)
    assert stages.tolist() == [N1, N2] and onset == 0.0 and p["dropped_label_epochs"] == 1


def test_channel_tables():
    assert all(mod in MODALITIES for _, mod in ALIASES.values())
    for spelling_a, spelling_m in zip(ISRUC_A[:8], ISRUC_M[:8]):
        assert ALIASES[spelling_a[0]] == ALIASES[spelling_m[0]]
    assert ALIASES["EEG C3-CLE"] == ALIASES["EEG C3-LER"] == ("C3", "EEG")
    assert ALIASES["EOG Left Horiz"] == ("LOC", "EOG") and ALIASES["ECG ECGI"] == ("ECG", "ECG")
    assert ALIASES["EEG Fpz-Cz"] == ("Fpz-Cz", "EEG") and ALIASES["CZ-A1"] == ("Cz", "EEG")
    assert infer_modality("Fp2-M1") == "EEG" and infer_modality("EOG gauche") == "EOG"
    assert infer_modality("EMG menton") == "EMG" and infer_modality("Thorax") == "RESP"
    assert infer_modality("Débit nasal") == "RESP" and infer_modality("SpO2 B-B") == "SPO2"
    assert infer_modality("O2 Impédance", "Ohm") == "OTHER" and infer_modality("Pulse") == "OTHER"
    assert infer_modality("C3", "Ohm") == "OTHER"
    assert lookup("EEG")[:2] == ("EEG", "EEG") and lookup("EEG", dataset="shhs")[:2] == ("C4", "EEG")
    assert canonical_names(["C3", "C3-M2", "E1"]) == [("C3 #0", "EEG"), ("C3", "EEG"), ("LOC", "EOG")]


# -- bad input ----------------------------------------------------------------------------------------
def test_not_an_edf(tmp_path):
    bad = tmp_path / "fake.edf"
    bad.write_text("this is a CSV, not an EDF\n" * 20)
    with pytest.raises(ValueError, match=r"fake\.edf: not an EDF/BDF file"):
        read_recording("generic", bad)


def test_truncated_edf(tmp_path):
    good = write_edf(tmp_path / "good.edf", [("C3-A2", 200)], 60)
    cut = tmp_path / "cut.edf"
    cut.write_bytes(good.read_bytes()[:-5000])
    with pytest.raises(ValueError, match=r"cut\.edf: truncated EDF file: .* bytes, the header promises"):
        read_recording("generic", cut)


def test_unknown_stage_codes(isruc_dir, tmp_path, shhs_dir):
    d = tmp_path / "3"
    shutil.copytree(isruc_dir / "7", d)
    (d / "7.rec").rename(d / "3.rec")
    (d / "3_1.txt").write_text("0\n2\n7\n")
    with pytest.raises(ValueError, match=r"3_1\.txt: unknown stage code 7 at epoch 2"):
        read_recording("isruc", d / "3.rec")
    xml = tmp_path / "x-nsrr.xml"
    xml.write_text(_nsrr_xml([("Stages|Stages", "Stage 9 sleep|9", 0, 30)]))
    edf = next((shhs_dir / "polysomnography").rglob("*.edf"))
    with pytest.raises(ValueError, match=r"unknown stage code 'Stage 9 sleep\|9'"):
        read_recording("shhs", edf, xml)


def test_missing_hypnogram_and_channel(isruc_dir, tmp_path):
    d = tmp_path / "5"
    d.mkdir()
    shutil.copy(isruc_dir / "7" / "7.rec", d / "5.rec")
    with pytest.raises(FileNotFoundError, match=r"5_1\.txt not found"):
        read_recording("isruc", d / "5.rec")
    with pytest.raises(ValueError, match=r"requested channels \['Cz'\] not in the recording; available: .*'C3'"):
        read_recording("isruc", isruc_dir / "7" / "7.rec", channels=["C3", "Cz"])
    rec = read_recording("isruc", isruc_dir / "7" / "7.rec", channels=["EMG", "C3-A2"])
    assert rec.ch_names == ["EMG", "C3"]


def test_duplicate_channel_names(tmp_path):
    write_edf(tmp_path / "dup.edf", [("EMG", 100), ("C3", 100), ("EMG", 100)], 30)
    with pytest.raises(ValueError, match=r"dup\.edf: duplicate channel names \['EMG'\]"):
        read_recording("generic", tmp_path / "dup.edf")


def test_nonfinite_samples(tmp_path):
    x = np.random.default_rng(0).normal(0, 20, 50 * 1800)
    x[[5, 70, 900]] = [np.nan, np.inf, -np.inf]
    sig = tmp_path / "excerpt3.txt"
    sig.write_text("[C3-A1]\n" + "\n".join(f"{v:.4f}" for v in x) + "\n")
    (tmp_path / "Hypnogram_excerpt3.txt").write_text("[Hypnogram]\n" + "2\n" * 360)
    with pytest.raises(ValueError, match=r"excerpt3\.txt: channel 'C3-A1' has 3 NaN/inf samples"):
        read_recording("dreams", sig)
    rec = read_recording("dreams", sig, nonfinite="zero")
    assert np.isfinite(rec.channels[0].data).all() and rec.meta["nonfinite_zeroed"] == {"C3-A1": 3}
    assert rec.stage_counts()["N2"] == 60


def test_bad_format_and_info_exit_code(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"format 'edf' unknown; choose from"):
        read_recording("edf", tmp_path / "x.edf")
    bad = tmp_path / "fake.edf"
    bad.write_bytes(b"\x00" * 300)
    assert info_main(["--format", "generic", str(bad)]) != 0
    assert "fake.edf: not an EDF/BDF file" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="no sleepedf recordings found"):
        find_recordings("sleepedf", tmp_path / "nothing" if (tmp_path / "nothing").mkdir() is None else tmp_path)
    with pytest.raises(ValueError, match=r"option\(s\) \['scorer'\] not accepted by the 'mass' finder; allowed: \[\]"):
        find_recordings("mass", tmp_path, scorer=2)


def test_bdf_and_cli_entry(tmp_path, capsys):
    from edfio import Bdf, BdfSignal

    from psgvlm.cli import main as cli

    x = np.random.default_rng(1).normal(0, 20, 256 * 60)
    Bdf([BdfSignal(x, 256, label="Cz-M1", physical_dimension="uV", physical_range=(-400, 400))]).write(
        tmp_path / "rec.bdf")
    rec = read_recording("generic", tmp_path / "rec.bdf")
    assert rec.ch_names == ["Cz"] and rec.channels[0].sfreq == 256.0
    np.testing.assert_allclose(rec.channels[0].data, x, atol=1e-3)  # 24-bit: tiny quantisation
    assert cli(["info", "--format", "generic", str(tmp_path / "rec.bdf")]) == 0
    assert "Cz-M1" in capsys.readouterr().out
    assert cli(["info", "--format", "generic", str(tmp_path / "missing.edf")]) != 0
    assert "missing.edf: no such file" in capsys.readouterr().err


def test_discontinuous_edf_refused(tmp_path):
    good = write_edf(tmp_path / "c.edf", [("C3-A2", 100)], 30)
    b = bytearray(good.read_bytes())
    b[192:197] = b"EDF+D"
    (tmp_path / "d.edf").write_bytes(bytes(b))
    with pytest.raises(ValueError, match=r"d\.edf: discontinuous EDF\+D file"):
        read_recording("generic", tmp_path / "d.edf")


SYNTH_FORMATS = ("isruc", "mass", "shhs", "sleepedf")


@pytest.fixture(scope="module")
def synth_out(tmp_path_factory):
    """``psgvlm synth --format F`` output (2 subjects, 5 minutes), written once per format and module."""
    from psgvlm.cli import main as cli

    written = {}

    def get(fmt: str) -> Path:
        if fmt not in written:
            out = tmp_path_factory.mktemp("synth") / fmt
            argv = ["synth", "--format", fmt, "--subjects", "2", "--minutes", "5", "--seed", "3", "--out", str(out)]
            assert cli([*argv, "--quiet"]) == 0
            written[fmt] = out
        return written[fmt]

    return get


@pytest.mark.parametrize("fmt", SYNTH_FORMATS)
def test_synth_round_trip(fmt, synth_out):
    """``psgvlm synth`` output (true on-disk formats) reads back with its manifest's channels and stages."""
    out = synth_out(fmt)
    manifest = json.loads((out / "synth.json").read_text())
    found = find_recordings(fmt, out)
    assert len(found) == len(manifest["recordings"]) == 2
    for job, expect in zip(found, manifest["recordings"]):
        assert Path(job["path"]) == out / expect["files"]["signal"]
        rec = read_recording(fmt, **job)
        assert [c.name for c in rec.channels] == expect["channels"]
        assert {c.name: c.sfreq for c in rec.channels} == expect["sfreq"]
        assert rec.n_epochs == expect["n_epochs"] and rec.stage_counts() == expect["stage_counts"]
        assert rec.meta["sex"] == expect["sex"] and abs(rec.meta["age"] - expect["age"]) <= 1
        assert pick_default_channels(rec) == DATASET_CHANNELS[fmt]
        for c in rec.channels:
            if c.modality in ("EEG", "EOG") and c.sfreq >= 50:
                assert c.unit == "uV" and 2 < float(np.std(c.data)) < 300, c.name  # microvolts


# -- registry completeness: every READERS entry finds and reads tiny files of its format --------------------
# A case writes recordings in the format's on-disk layout (psgvlm synth for the four PSG datasets, written
# here for the others) and returns their folder and each recording's (n_epochs, stage_counts).
def _synth_case(fmt):
    def case(root: Path, synth_out) -> tuple[Path, list[tuple[int, dict]]]:
        manifest = json.loads((synth_out(fmt) / "synth.json").read_text())
        return synth_out(fmt), [(r["n_epochs"], r["stage_counts"]) for r in manifest["recordings"]]

    return case


def _dreams_case(root: Path, synth_out) -> tuple[Path, list[tuple[int, dict]]]:
    # excerpt3 (50 Hz: 90000 samples over 30 min), 60 epochs of six 5-s R&K codes; the last epoch is split 3/3
    x = np.random.default_rng(2).normal(0, 20, 50 * 1800)
    (root / "excerpt3.txt").write_text("[C3-A1]\n" + "\n".join(f"{v:.3f}" for v in x) + "\n")
    per_epoch = [5] * 10 + [3] * 10 + [2] * 20 + [1] * 5 + [0] * 5 + [4] * 9
    codes = [c for c in per_epoch for _ in range(6)] + [5, 5, 5, 4, 4, 4]
    (root / "Hypnogram_excerpt3.txt").write_text("[Hypnogram]\n" + "\n".join(map(str, codes)) + "\n")
    return root, [(60, {"W": 10, "N1": 10, "N2": 20, "N3": 10, "REM": 9, "UNS": 1})]


def _prerau_case(root: Path, synth_out) -> tuple[Path, list[tuple[int, dict]]]:
    # 400 s at 100 Hz; stage changes on a 30-s grid with phase 10 s; the last row marks the end (370 s)
    (root / "seg1").mkdir()
    x = np.random.default_rng(3).normal(0, 20, 100 * 400)
    (root / "seg1" / "segment_data.csv").write_text("\n".join(f"{v:.3f}" for v in x) + "\n")
    changes = [(10, 5), (40, 3), (100, 2), (220, 1), (310, 4), (370, 5)]
    (root / "seg1" / "segment_stages.csv").write_text("Time,Stage\n" + "".join(f"{t},{s}\n" for t, s in changes))
    return root, [(12, {"W": 1, "N1": 2, "N2": 4, "N3": 3, "REM": 2, "UNS": 0})]


def _generic_case(root: Path, synth_out) -> tuple[Path, list[tuple[int, dict]]]:
    write_edf(root / "night.edf", [("C3-M2", 128), ("E1-M2", 128), ("Chin", 64)], 8 * 30)
    (root / "night_hypnogram.txt").write_text("W\nN1\nN2\nN2\nN3\nREM\n?\nW\n")  # one label per 30-s epoch
    write_edf(root / "unlabelled.edf", [("C4-M1", 100)], 3 * 30 + 10)
    return root, [(8, {"W": 2, "N1": 1, "N2": 2, "N3": 1, "REM": 1, "UNS": 1}), (3, {})]


CASES = {fmt: _synth_case(fmt) for fmt in SYNTH_FORMATS} | {
    "dreams": _dreams_case, "prerau": _prerau_case, "generic": _generic_case,
}


def test_every_reader_has_a_case():
    assert set(READERS) == set(CASES), "add a case to CASES for each reader in READERS"


@pytest.mark.parametrize("fmt", sorted(READERS))
def test_reader_reads_its_format(fmt, tmp_path, synth_out):
    """find_recordings finds each recording written in ``fmt``'s layout; each reads back with its stages."""
    root, expected = CASES[fmt](tmp_path, synth_out)
    found = find_recordings(fmt, root)
    assert len(found) == len(expected)
    for job, (n_epochs, counts) in zip(found, expected):
        rec = read_recording(fmt, **job)
        assert rec.dataset == fmt and rec.n_epochs == n_epochs and rec.stage_counts() == counts
        assert (rec.stages is None) == (job["hypnogram"] is None)
