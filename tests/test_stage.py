"""Tests of `psgvlm stage`, sleep statistics and upload validation.

Run: python -m pytest -q tests/test_stage.py
"""

from __future__ import annotations

import datetime as dt
import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from psgvlm.io.recording import Channel, Recording
from psgvlm.night.predictors import PREDICTORS
from psgvlm.night.sleepstats import sleep_statistics
from psgvlm.night.uploads import (
    UploadError,
    read_edf_header,
    validate_hypnogram_upload,
    validate_recording_upload,
)
from psgvlm.stages import N_STAGES, STAGES, UNSCORED

os.environ.setdefault("HF_HUB_OFFLINE", "1")

PATIENT_NAME = "Doe_Jane"
PATIENT_CODE = "MRN-4711"
BIRTHDATE = dt.date(1961, 3, 14)
HOSPITAL_CODE = "HOSP-0815"


# ------------------------------------------------------------------------------------------------
# Helpers: a small synthetic PSG written as a real EDF, carrying identifying header fields
# ------------------------------------------------------------------------------------------------
def synthetic_night(n_epochs: int, seed: int = 0, sfreq: float = 100.0):
    """(signals dict label -> uV array, stages) with stage-dependent rhythms; tiny and seeded."""
    rng = np.random.default_rng(seed)
    stages = np.repeat(rng.integers(0, N_STAGES, size=max(1, n_epochs // 4)), 4)[:n_epochs]
    stages = np.pad(stages, (0, n_epochs - len(stages)), mode="edge")
    n = int(sfreq * 30)
    t = np.arange(n) / sfreq
    freq = {0: 10.0, 1: 6.0, 2: 13.0, 3: 1.5, 4: 5.0}
    amp = {0: 20.0, 1: 30.0, 2: 40.0, 3: 90.0, 4: 25.0}
    eeg = np.concatenate([amp[int(s)] * np.sin(2 * np.pi * freq[int(s)] * t) for s in stages])
    eeg += rng.normal(0, 5, eeg.size)
    eog = np.concatenate([(60.0 if s in (0, 4) else 5.0) * np.sin(2 * np.pi * 0.4 * t) for s in stages])
    emg = rng.normal(0, 1, eeg.size) * np.repeat([20.0 if s == 0 else 3.0 for s in stages], n)
    signals = {"C3-A2": eeg, "C4-A1": eeg[::-1].copy(), "LOC-A2": eog, "ROC-A1": -eog,
               "EMG Chin": emg}
    return signals, stages


def write_edf(path, signals: dict, sfreq: float = 100.0, *, bdf: bool = False) -> Path:
    """Write ``signals`` as EDF with a patient name, birth date and hospital code in the header."""
    import edfio

    sigs = [edfio.EdfSignal(np.asarray(x, float), sfreq, label=label, physical_dimension="uV",
                            physical_range=(-500.0, 500.0)) for label, x in signals.items()]
    edf = edfio.Edf(
        sigs,
        patient=edfio.Patient(code=PATIENT_CODE, sex="F", birthdate=BIRTHDATE, name=PATIENT_NAME),
        recording=edfio.Recording(startdate=dt.date(2020, 1, 2), hospital_administration_code=HOSPITAL_CODE),
        starttime=dt.time(22, 30),
    )
    edf.write(path)
    return Path(path)


def write_hypnogram_csv(path, stages) -> Path:
    lines = ["init_sec,duration_sec,stage"] + [f"{30 * i},30,{STAGES[int(s)]}" for i, s in enumerate(stages)]
    Path(path).write_text("\n".join(lines) + "\n")
    return Path(path)


def recording_from(signals: dict, stages, sfreq: float = 100.0) -> Recording:
    from psgvlm.io.channels import canonical_names

    names = canonical_names(list(signals))
    chans = [Channel(name=label, canonical=c, modality=m, sfreq=sfreq, data=np.asarray(x, np.float32))
             for (label, x), (c, m) in zip(signals.items(), names)]
    return Recording(channels=chans, subject="s", recording="r", dataset="generic", source="mem",
                     stages=None if stages is None else np.asarray(stages, np.int8))


class CountingPredictor:
    """The real predictor, counting its calls (a test-local wrapper; the scoring is the default run's)."""

    def __init__(self, predictor):
        self.inner, self.dataset_meta, self.calls = predictor, predictor.dataset_meta, 0

    def predict_proba(self, images, batch_size=8):
        self.calls += 1
        return self.inner.predict_proba(images, batch_size=batch_size)


@pytest.fixture(scope="module")
def default_predictor():
    from psgvlm.vlm.predict import DEFAULT_RUN, load_predictor

    return DEFAULT_RUN, load_predictor(DEFAULT_RUN)


# ------------------------------------------------------------------------------------------------
# Sleep statistics
# ------------------------------------------------------------------------------------------------
def test_sleep_statistics_match_yasa():
    import yasa
    rng = np.random.default_rng(1)
    for trial in range(20):
        hyp = rng.choice([UNSCORED, 0, 1, 2, 3, 4], size=rng.integers(2, 400),
                         p=[0.05, 0.25, 0.1, 0.3, 0.15, 0.15])
        if trial == 0:
            hyp[:] = 0  # no sleep at all
        ours = sleep_statistics(hyp)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = yasa.sleep_statistics(np.where(hyp == UNSCORED, -2, hyp), sf_hyp=1 / 30)
        for key, value in ref.items():
            if key in ("SOL_5min", "Lat_N1", "Lat_N2", "Lat_N3", "Lat_REM") and np.isnan(value):
                assert ours[key] is None
                continue
            if np.isnan(value):
                assert ours[key] is None, key
            else:
                assert ours[key] == pytest.approx(value), (key, trial)


def test_sleep_statistics_known_night():
    # 2 W, 2 N1, 4 N2, 2 W (WASO), 2 REM, 1 W: 30-s epochs.
    hyp = [0, 0, 1, 1, 2, 2, 2, 2, 0, 0, 4, 4, 0]
    s = sleep_statistics(hyp)
    assert s["TIB"] == 6.5 and s["SOL"] == 1.0 and s["TST"] == 4.0 and s["WASO"] == 1.0
    assert s["Lat_REM"] == 5.0 and s["REM_latency"] == 4.0  # AASM: from sleep onset
    assert s["SE"] == pytest.approx(100 * 4 / 6.5) and s["%N2"] == 50.0 and s["%REM"] == 25.0
    with pytest.raises(ValueError, match="codes \\[7\\]"):
        sleep_statistics([0, 7])


# ------------------------------------------------------------------------------------------------
# Upload validation
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_edf(tmp_path_factory):
    signals, stages = synthetic_night(4)
    path = write_edf(tmp_path_factory.mktemp("edf") / "night.edf", signals)
    return path, stages


def test_upload_accepts_edf_and_case_insensitive_extension(small_edf, tmp_path):
    path, _ = small_edf
    header = validate_recording_upload(path)
    assert header.duration_s == 120.0 and "C3-A2" in header.labels
    upper = tmp_path / "NIGHT.EDF"
    upper.write_bytes(path.read_bytes())
    assert validate_recording_upload(upper).duration_s == 120.0
    # The header object keeps nothing that identifies the patient.
    assert PATIENT_NAME not in repr(header) and "1961" not in repr(header) and PATIENT_CODE not in repr(header)


def test_upload_type_by_content_not_name(small_edf, tmp_path):
    fake = tmp_path / "fake.edf"
    fake.write_bytes(b"PK\x03\x04" + b"\x00" * 600)  # a zip renamed .edf
    with pytest.raises(UploadError, match="first 8 bytes"):
        validate_recording_upload(fake)
    renamed = tmp_path / "night.txt"
    renamed.write_bytes(small_edf[0].read_bytes())
    with pytest.raises(UploadError, match="extension '.txt'"):
        validate_recording_upload(renamed)


def test_upload_truncated_and_padded(small_edf, tmp_path):
    data = small_edf[0].read_bytes()
    cut = tmp_path / "cut.edf"
    cut.write_bytes(data[: len(data) - 1000])
    with pytest.raises(UploadError, match="truncated"):
        validate_recording_upload(cut)
    head_only = tmp_path / "head.edf"
    head_only.write_bytes(data[:300])
    with pytest.raises(UploadError, match="truncated"):
        validate_recording_upload(head_only)
    padded = tmp_path / "pad.edf"
    padded.write_bytes(data + b"\x00" * 10)
    with pytest.raises(UploadError, match="more than the header describes"):
        validate_recording_upload(padded)


def test_upload_size_and_duration_limits(small_edf):
    path, _ = small_edf
    with pytest.raises(UploadError, match="limit is"):
        validate_recording_upload(path, max_bytes=1000)
    with pytest.raises(UploadError, match="at least 300 s"):
        validate_recording_upload(path, min_duration_s=300)
    with pytest.raises(UploadError, match="limit is 0 h"):
        validate_recording_upload(path, max_duration_s=60)


def test_upload_bdf_magic(tmp_path, small_edf):
    # A BDF header: 0xFF "BIOSEMI", 24-bit samples (3 bytes each).
    header = bytearray(small_edf[0].read_bytes()[: 256 * 6])
    header[:8] = b"\xffBIOSEMI"
    n_records = int(header[236:244].decode())
    spr = sum(int(header[256 + 216 * 5 + 8 * i: 256 + 216 * 5 + 8 * (i + 1)].decode()) for i in range(5))
    path = tmp_path / "x.BDF"
    path.write_bytes(bytes(header) + b"\x00" * (3 * spr * n_records))
    assert read_edf_header(path).kind == "BDF"


def test_hypnogram_upload(tmp_path):
    ok = write_hypnogram_csv(tmp_path / "h.csv", [0, 1, 2])
    assert validate_hypnogram_upload(ok) == "table"
    binary = tmp_path / "h.txt"
    binary.write_bytes(b"\x00\x01\x02")
    with pytest.raises(UploadError, match="binary"):
        validate_hypnogram_upload(binary)
    with pytest.raises(UploadError, match="extension"):
        validate_hypnogram_upload(ok, name="h.exe")


def test_real_edf_headers(real_data_dir):
    h = validate_recording_upload(real_data_dir / "sleepedf_crop" / "short_psg.edf")
    assert h.duration_s == 300.0 and "EEG Fpz-Cz" in h.labels
    nox = read_edf_header(real_data_dir / "nox_unlabeled" / "subject1.edf")
    assert nox.kind == "EDF+C" and "1 Impédance" in nox.labels
    assert validate_hypnogram_upload(real_data_dir / "sleepedf_crop" / "SC4001EC-Hypnogram.edf") == "edf"


# ------------------------------------------------------------------------------------------------
# Channel mapping and scoring
# ------------------------------------------------------------------------------------------------
def test_auto_channels_by_name_then_modality():
    from psgvlm.night.bands import auto_channels, resolve_channel_map

    signals, stages = synthetic_night(2)
    rec = recording_from(signals, stages)
    bands = ["C3", "C4", "LOC", "ROC", "EMG"]
    mods = {"C3": "EEG", "C4": "EEG", "LOC": "EOG", "ROC": "EOG", "EMG": "EMG"}
    assert auto_channels(rec, bands, mods) == ["C3", "C4", "LOC", "ROC", "EMG"]
    # A Sleep-EDF style montage: bands filled by modality; a missing EOG band stays flat.
    other = recording_from({"EEG Fpz-Cz": signals["C3-A2"], "EEG Pz-Oz": signals["C4-A1"],
                            "EOG horizontal": signals["LOC-A2"], "EMG submental": signals["EMG Chin"]}, None)
    mapping = auto_channels(other, bands, mods)
    assert mapping[0] in ("Fpz-Cz", "Pz-Oz") and mapping[2] is not None and mapping[3] is None
    assert mapping[4] is not None
    with pytest.raises(ValueError, match="5 bands"):
        resolve_channel_map(rec, bands, mods, ["C3"])
    with pytest.raises(ValueError, match="not in recording"):
        resolve_channel_map(rec, bands, mods, ["C3", "Cz", "LOC", "ROC", "EMG"])
    with pytest.raises(ValueError, match="more than one band"):
        resolve_channel_map(rec, bands, mods, ["C3", "C3", "LOC", "ROC", "EMG"])
    with pytest.raises(ValueError, match="no EEG channel"):
        resolve_channel_map(rec, bands, mods, ["-", "-", "LOC", "ROC", "EMG"])


def test_stage_recording_and_outputs(tmp_path, default_predictor):
    from psgvlm.night.outputs import write_outputs
    from psgvlm.night.stage import stage_recording
    from psgvlm.night.viewer import render_one

    run_dir, predictor = default_predictor
    signals, stages = synthetic_night(12, seed=3)
    rec = recording_from(signals, stages)
    pred = CountingPredictor(predictor)
    seen = []
    res = stage_recording(rec, run_dir=run_dir, predictor=pred, batch_size=5, predictors=["vlm"],
                          epochs_path=tmp_path / "epochs.npy", progress=lambda d, t: seen.append((d, t)))
    assert res.primary == "vlm" and list(res.predictions) == ["vlm"]
    assert res.probs.shape == (12, N_STAGES) and np.allclose(res.probs.sum(1), 1, atol=1e-5)
    assert seen[-1] == (12, 12) and pred.calls == 3
    # The default run's six bands: same names first, then same modality (F3 takes the unused C4), the rest flat.
    assert res.bands == ["F3", "C3", "O1", "LOC", "ROC", "EMG"]
    assert res.channel_map == ["C4", "C3", None, "LOC", "ROC", "EMG"]
    assert any("upsampled" in w for w in res.recording["warnings"])  # 100 Hz signals, a 200 Hz model
    assert (res.expert == stages).all()
    # Re-rendering an epoch for the viewer gives the image that was scored.
    from PIL import Image

    again = predictor.predict_proba([Image.fromarray(render_one(res, 4))])
    assert np.allclose(again[0], res.probs[4], atol=1e-3)
    paths = write_outputs(res, tmp_path / "out")
    tsv = (tmp_path / "out" / "hypnogram.tsv").read_text().splitlines()
    assert tsv[0] == "init_sec\tduration_sec\tstage\tpredictor" and tsv[2].split("\t")[:2] == ["30", "30"]
    assert len(tsv) == 13 and all(line.split("\t")[2] in STAGES and line.endswith("\tvlm") for line in tsv[1:])
    csv = (tmp_path / "out" / "hypnogram.csv").read_text().splitlines()
    assert csv[0].split(",") == ["epoch", "start_s", "stage", "confidence", "p_W", "p_N1", "p_N2", "p_N3",
                                 "p_REM", "primary", "review", "stage_vlm", "expert"]
    assert np.allclose(np.load(paths["hypnodensity.npy"]), res.probs)
    import mne

    ann = mne.read_annotations(paths["hypnogram_annotations.edf"])
    assert len(ann) == 13 and set(ann.description[:12]) <= {"Sleep stage W", "Sleep stage N1", "Sleep stage N2",
                                                            "Sleep stage N3", "Sleep stage R"}
    assert np.allclose(ann.onset[:12], res.starts_s) and np.allclose(ann.duration[:12], 30.0)
    assert ann.description[12] == "psgvlm: stages by predictor vlm" and ann.onset[12] == 360.0
    from psgvlm.io.hypnogram_formats import read_generic_hypnogram

    back = read_generic_hypnogram(paths["hypnogram_annotations.edf"])  # the note is skipped, the stages read
    assert list(back.codes) == list(res.stages)
    summary = json.loads(paths["summary.json"].read_text())
    assert summary["agreement"]["n_epochs"] == 12 and "kappa" in summary["agreement"]
    assert "not for clinical use" in summary["notice"] and summary["model"]["is_default"]
    assert summary["sleep_statistics"]["TIB"] == 6.0
    assert Image.open(paths["hypnogram.png"]).size[0] > 500


def test_no_pyplot_figures_left_open(tmp_path, default_predictor):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from psgvlm.night.stage import stage_recording
    from psgvlm.plots import plot_night

    signals, stages = synthetic_night(4)
    run_dir, predictor = default_predictor
    res = stage_recording(recording_from(signals, stages), run_dir=run_dir, predictor=predictor, predictors=["vlm"])
    before = plt.get_fignums()
    plot_night(res.stages, res.probs, res.starts_s, tmp_path / "h.png", expert=res.expert, notice="n")
    assert plt.get_fignums() == before == []


# ------------------------------------------------------------------------------------------------
# The command line, with the real embedded default run
# ------------------------------------------------------------------------------------------------
def test_cli_bad_input_exits_with_message(tmp_path, capsys, small_edf):
    from psgvlm.night.cli_stage import main

    assert main(["--edf", str(tmp_path / "missing.edf"), "--out", str(tmp_path / "o")]) == 2
    assert "missing.edf" in capsys.readouterr().err
    cut = tmp_path / "cut.edf"
    cut.write_bytes(small_edf[0].read_bytes()[:1000])
    assert main(["--edf", str(cut), "--out", str(tmp_path / "o")]) == 2  # a user error (issue 11): exit 2
    err = capsys.readouterr().err
    assert "truncated" in err and "cut.edf" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_cli_stages_with_default_run(tmp_path, capsys):
    from psgvlm.night.cli_stage import main
    from psgvlm.vlm.predict import DEFAULT_RUN

    signals, stages = synthetic_night(10, seed=4)
    edf = write_edf(tmp_path / "night.edf", signals)
    hyp = write_hypnogram_csv(tmp_path / "night.csv", stages)
    out = tmp_path / "out"
    assert main(["--edf", str(edf), "--hypnogram", str(hyp), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "staged 10 epochs" in printed and "not for clinical use" in printed
    names = {p.name for p in out.iterdir()}
    assert {"hypnogram.tsv", "hypnogram.csv", "hypnodensity.npy", "hypnogram_annotations.edf", "hypnogram.png",
            "summary.json", "metrics.json", "predictors"} <= names
    summary = json.loads((out / "summary.json").read_text())
    # Every predictor this install has ran; the synthetic default VLM is never the automatic primary.
    assert set(summary["predictors"]) == set(PREDICTORS) and summary["primary"] != "vlm"
    assert summary["model"]["is_default"] and "synthetic" in summary["model"]["notice"]
    assert f"{summary['primary']} (primary)" in printed and "vs expert: accuracy" in printed
    assert summary["agreement"]["n_epochs"] == 10 and summary["provenance"]["git_sha"]
    assert summary["channels"][0]["band"] == read_json_channels(DEFAULT_RUN)[0]
    probs = np.load(out / "hypnodensity.npy")
    assert probs.shape == (10, N_STAGES) and np.allclose(probs.sum(1), 1, atol=1e-4)
    # No patient-identifying header field in any output.
    for f in (p for p in out.rglob("*") if p.is_file()):
        data = f.read_bytes()
        for secret in (PATIENT_NAME, PATIENT_CODE, HOSPITAL_CODE, BIRTHDATE.strftime("%d-%b-%Y").upper()):
            assert secret.encode() not in data, (f.name, secret)


def read_json_channels(run_dir) -> list[str]:
    return json.loads((Path(run_dir) / "meta.json").read_text())["dataset"]["channels"]
