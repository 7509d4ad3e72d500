"""Readers on the real public recordings in ../shared/data/real (DREAMS excerpts, the Prerau example, a
Sleep-EDF crop, a Nox fragment); every test skips with a reason when that folder is absent. Tiny files
written in each format, the READERS registry and bad inputs are in tests/test_readers.py.

Run: python -m pytest -q tests/test_readers_real.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from psgvlm.io.channels import DATASET_CHANNELS, pick_default_channels
from psgvlm.io.readers import find_recordings, info_main, read_recording
from psgvlm.io.recording import MODALITIES

DREAMS_EXPECTED = {1: (10, 1, 36, 13, 0), 2: (0, 4, 32, 24, 0), 3: (6, 12, 39, 3, 0), 4: (18, 14, 24, 4, 0),
                   5: (6, 2, 35, 17, 0), 6: (2, 2, 40, 16, 0)}


def _counts(rec):
    c = rec.stage_counts()
    return tuple(c[k] for k in ("W", "N1", "N2", "N3", "REM"))


@pytest.mark.parametrize("n", sorted(DREAMS_EXPECTED))
def test_dreams_text_excerpts(real_data_dir, n):
    rec = read_recording("dreams", real_data_dir / "dreams_spindles" / f"excerpt{n}.txt")
    assert rec.n_epochs == 60 and _counts(rec) == DREAMS_EXPECTED[n]
    assert rec.stage_counts()["UNS"] == 0
    (ch,) = rec.channels
    assert ch.modality == "EEG" and ch.canonical in ("C3", "Cz") and ch.unit == "uV"
    assert 3 < float(np.std(ch.data)) < 300  # microvolts, not volts
    assert rec.pairing["n_paired"] == 60 and rec.pairing["dropped_label_epochs"] == 0


def test_dreams_excerpt3_edf_units_and_rates(real_data_dir):
    rec = read_recording("dreams", real_data_dir / "dreams_spindles" / "excerpt3.edf")
    assert rec.n_epochs == 60 and _counts(rec) == DREAMS_EXPECTED[3]
    assert len(rec.channels) == 20
    c3 = rec.channel("C3")
    assert c3.name == "C3-A1" and c3.sfreq == 50.0 and c3.unit == "uV"
    assert 5 < float(np.std(c3.data)) < 200  # header says "UV": microvolts, not 1e6 off
    txt = read_recording("dreams", real_data_dir / "dreams_spindles" / "excerpt3.txt")
    np.testing.assert_allclose(c3.data[:1000], txt.channels[0].data[:1000], atol=0.1)  # same signal
    assert rec.channel("hypnogram").sfreq == 1.0  # per-channel rates kept
    assert {"LOC", "ROC", "EMG", "ECG", "Fp1", "O1", "SpO2"} <= set(rec.ch_names)
    assert rec.meta.get("sex") == "M" and "name" not in rec.meta
    assert pick_default_channels(rec) == DATASET_CHANNELS["dreams"]


def test_prerau(real_data_dir):
    rec = read_recording("prerau", real_data_dir / "prerau" / "segment_data.csv")
    assert rec.onset_s == pytest.approx(10.01)
    assert rec.n_epochs == 167 and _counts(rec) == (2, 7, 95, 37, 26)
    assert rec.channels[0].sfreq == 100.0 and rec.channels[0].data.size == 502_600
    assert rec.ch_names == ["EEG"] and pick_default_channels(rec) == DATASET_CHANNELS["prerau"]
    assert rec.pairing["dropped_signal_s"] == pytest.approx(5026 - 167 * 30)


def test_sleepedf_crop_pairs_by_time(real_data_dir):
    d = real_data_dir / "sleepedf_crop"
    rec = read_recording("sleepedf", d / "short_psg.edf", d / "SC4001EC-Hypnogram.edf")
    assert rec.n_epochs == 10 and _counts(rec) == (10, 0, 0, 0, 0)
    p = rec.pairing
    assert p["n_signal_epochs"] == 10 and p["n_paired"] == 10
    assert p["n_label_epochs"] > 1000 and p["dropped_label_epochs"] == p["n_label_epochs"] - 10
    assert rec.channel("Fpz-Cz").sfreq == 100.0 and rec.channel("EMG").sfreq == 1.0
    assert rec.meta == {"sex": "F", "age": 33}
    assert find_recordings("sleepedf", d) == [{"path": str(d / "short_psg.edf"),
                                               "hypnogram": str(d / "SC4001EC-Hypnogram.edf"),
                                               "recording": "short_psg", "subject": "short_psg"}]


def test_nox_unlabelled_89_channels(real_data_dir):
    rec = read_recording("generic", real_data_dir / "nox_unlabeled" / "subject1.edf")
    assert len(rec.channels) == 89 and rec.stages is None and rec.n_epochs == 4
    names = [c.name for c in rec.channels]
    assert "1 Impédance" in names and "Jambe droite Imp" in names  # UTF-8 labels decoded, not mojibake
    assert len(set(rec.ch_names)) == 89
    assert all(c.modality in MODALITIES for c in rec.channels)
    mods = {c.name: c.modality for c in rec.channels}
    assert mods["1 Impédance"] == "OTHER" and mods["C3 Impédance"] == "OTHER"
    assert mods["C3-M2"] == "EEG" and mods["E1-M2"] == "EOG" and mods["ECG"] == "ECG"
    assert mods["Saturation"] == "SPO2" and mods["Abdomen"] == "RESP" and mods["1-2"] == "EMG"
    assert rec.channel("C3").name == "C3-M2" and rec.channel("LOC").name == "E1-M2"
    assert rec.pick(pick_default_channels(rec)).channels[0].name == "C3-M2"
    assert rec.ch_names.index("C3 #15") == rec.ch_names.index("C3") + 1  # moved after the one it shadowed
    by_canonical = {c.canonical: c for c in rec.channels}
    assert by_canonical["C3"].name == "C3-M2"  # the referenced derivation wins the canonical name
    assert by_canonical["C3 #15"].name == "C3"  # the bare electrode keeps a unique name
    assert 1 < float(np.std(by_canonical["C3"].data)) < 1000  # volts in the file -> microvolts
    assert pick_default_channels(rec) == ["C3", "C4", "F3", "F4", "O1", "O2", "LOC", "ROC", "EMG"]  # central first


def test_find_real(real_data_dir):
    dreams = find_recordings("dreams", real_data_dir / "dreams_spindles")
    assert [Path(d["path"]).name for d in dreams] == [f"excerpt{i}.txt" for i in range(1, 7)]
    assert all(d["hypnogram"] for d in dreams)
    edf = find_recordings("dreams", real_data_dir / "dreams_spindles", source="edf")
    assert [Path(d["path"]).name for d in edf] == ["excerpt3.edf"]
    (prerau,) = find_recordings("prerau", real_data_dir / "prerau")
    assert prerau["hypnogram"].endswith("segment_stages.csv")


def test_info_cli(real_data_dir, capsys):
    d = real_data_dir / "sleepedf_crop"
    assert info_main(["--format", "sleepedf", str(d / "short_psg.edf"), "--hypnogram",
                      str(d / "SC4001EC-Hypnogram.edf"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_epochs"] == 10 and out["stage_counts"]["W"] == 10 and out["pairing"]["dropped_label_epochs"] > 0
    assert info_main(["--format", "dreams", str(real_data_dir / "dreams_spindles" / "excerpt1.txt")]) == 0
    text = capsys.readouterr().out
    assert "C3-A1" in text and "100 Hz" in text and "'N2': 36" in text


def test_reader_options_checked(real_data_dir):
    txt = real_data_dir / "dreams_spindles" / "excerpt1.txt"
    with pytest.raises(ValueError, match=r"option\(s\) \['scorer'\] not accepted by the 'dreams' reader; allowed"):
        read_recording("dreams", txt, scorer=2)
    with pytest.raises(ValueError, match=r"nonfinite='drop'; allowed: 'raise', 'zero'"):
        read_recording("dreams", txt, nonfinite="drop")
    with pytest.raises(ValueError, match=r"400000 samples at 200 Hz|180000 samples at 200 Hz"):
        read_recording("dreams", txt, sfreq=200.0)  # excerpt1 is 100 Hz: the length check catches it
