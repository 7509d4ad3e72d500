"""Night outputs in the ecosystem's language (issue 12 items 2 and 4): clock time, EDF+ start, lights off/on,
channels by role, YASA / BIDS exports, file modes, confusion matrix, quiet runs.

Run: python -m pytest -q tests/test_night_outputs.py
"""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
import warnings
from pathlib import Path

import numpy as np
import pytest
from test_stage import recording_from, synthetic_night  # noqa: E402  (tests/ is on sys.path)

from psgvlm.night.sleepstats import sleep_statistics, time_in_bed
from psgvlm.stages import N_STAGES, UNSCORED

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SLEEPEDF = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real" / "sleepedf_crop"
SLEEPEDF_START = dt.datetime(1989, 4, 24, 16, 13, 0)


@pytest.fixture
def umask_022():
    """The usual umask, so the expected mode (0644) does not depend on the runner's."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(Path(path).stat().st_mode)


# ------------------------------------------------------------------------------------------------
# Start date-time from the header, anonymised headers
# ------------------------------------------------------------------------------------------------
def _annotations_only_edf(path, startdate, starttime):
    import edfio

    edfio.Edf([], recording=edfio.Recording(startdate=startdate), starttime=starttime,
              annotations=[edfio.EdfAnnotation(0, 30, "Sleep stage W")]).write(path)
    return path


def test_read_edf_start_and_anonymised_headers(tmp_path):
    from psgvlm.io.edf import read_edf_start

    known = read_edf_start(_annotations_only_edf(tmp_path / "a.edf", dt.date(2021, 3, 4), dt.time(22, 5, 9)))
    assert known.datetime == dt.datetime(2021, 3, 4, 22, 5, 9) and not known.anonymised
    assert known.as_dict()["datetime"] == "2021-03-04T22:05:09"
    # EDF+ "Startdate X": no date, the time of day kept (a clock time can still be shown).
    anon = read_edf_start(_annotations_only_edf(tmp_path / "b.edf", None, dt.time(23, 0, 0)))
    assert anon.anonymised and anon.date is None and anon.time == dt.time(23, 0) and anon.datetime is None
    # The placeholder 01.01.85 00:00:00 that anonymisers write: neither date nor time.
    blank = read_edf_start(_annotations_only_edf(tmp_path / "c.edf", dt.date(1985, 1, 1), dt.time(0, 0, 0)))
    assert blank.anonymised and blank.date is None and blank.time is None
    # A plain EDF whose 2-digit year is read with the EDF rule (85-99: 19xx, else 20xx).
    raw = bytearray((tmp_path / "a.edf").read_bytes())
    raw[88:168] = b" " * 80
    raw[168:176] = b"24.04.89"
    (tmp_path / "d.edf").write_bytes(bytes(raw))
    assert read_edf_start(tmp_path / "d.edf").date == dt.date(1989, 4, 24)


def test_annotations_edf_keeps_the_start_and_anonymised_date(tmp_path):
    import mne

    from psgvlm.io.edf import EdfStart, read_edf_start, write_annotations_edf

    start = EdfStart(date=dt.date(1989, 4, 24), time=dt.time(16, 13), anonymised=False)
    path = write_annotations_edf(tmp_path / "h.edf", [0, 30], [30, 30], ["Sleep stage W", "Sleep stage N1"],
                                 start=start)
    raw = mne.io.read_raw_edf(path, verbose="error")
    assert raw.info["meas_date"] == SLEEPEDF_START.replace(tzinfo=dt.UTC)
    anon = write_annotations_edf(tmp_path / "x.edf", [0], [30], ["Sleep stage W"],
                                 start=EdfStart(date=None, time=dt.time(23, 30), anonymised=True))
    assert b"Startdate X" in anon.read_bytes()[:256] and read_edf_start(anon).time == dt.time(23, 30)


# ------------------------------------------------------------------------------------------------
# Lights off / on: time in bed as yasa.Hypnogram.crop computes it
# ------------------------------------------------------------------------------------------------
def test_time_in_bed_and_statistics_match_yasa_crop():
    import pandas as pd
    import yasa

    rng = np.random.default_rng(12)
    start = pd.Timestamp("2024-01-01 22:30:00")
    labels = {0: "WAKE", 1: "N1", 2: "N2", 3: "N3", 4: "REM", UNSCORED: "UNS"}
    keys = ["TIB", "SPT", "WASO", "TST", "SE", "SME", "SOL", "Lat_REM", "N1", "N2", "N3", "REM",
            "%N1", "%N2", "%N3", "%REM"]
    for trial in range(25):
        n = int(rng.integers(20, 600))
        hyp = rng.choice([UNSCORED, 0, 1, 2, 3, 4], size=n, p=[0.03, 0.3, 0.1, 0.3, 0.12, 0.15])
        starts_s = np.arange(n) * 30.0
        off = float(rng.uniform(0, n * 15))  # not on an epoch boundary
        on = float(rng.uniform(off + 30, n * 30))
        if trial == 0:
            off, on = 60.0, 300.0  # on boundaries: both inclusive
        first, count = time_in_bed(starts_s, off, on)
        ours = sleep_statistics(hyp[first:first + count])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref_hyp = yasa.Hypnogram([labels[int(c)] for c in hyp], n_stages=5, start=start)
            cropped = ref_hyp.crop(start=start + pd.Timedelta(seconds=off), end=start + pd.Timedelta(seconds=on))
            ref = cropped.sleep_statistics()
        assert cropped.n_epochs == count and (cropped.start - start).total_seconds() == starts_s[first]
        for key in keys:
            if np.isnan(ref[key]):
                assert ours[key] in (None, 0.0) or np.isnan(ours[key]), (key, trial)
            else:
                assert ours[key] == pytest.approx(ref[key], abs=1e-3), (key, trial)
        # The statistics follow: TIB is the crop, not the night.
        assert ours["TIB"] == pytest.approx(count * 0.5)
    with pytest.raises(ValueError, match="before lights off"):
        time_in_bed(np.arange(10) * 30.0, 200, 100)
    with pytest.raises(ValueError, match="no epoch starts"):
        time_in_bed(np.arange(10) * 30.0, 275, 280)


def test_lights_clock_time_or_seconds():
    from psgvlm.io.edf import EdfStart
    from psgvlm.night.stage import time_point_s

    start = EdfStart(date=dt.date(2024, 1, 1), time=dt.time(22, 30), anonymised=False)
    assert time_point_s("23:00", start, "--lights-off") == 1800
    assert time_point_s("06:30:15", start, "--lights-on") == 8 * 3600 + 15  # after midnight
    assert time_point_s("5400", None, "--lights-on") == 5400 and time_point_s(12.5, None, "x") == 12.5
    for bad in ("-3", "nan", "25:00", "soon"):
        with pytest.raises(ValueError, match="--lights-off"):
            time_point_s(bad, start, "--lights-off")
    with pytest.raises(ValueError, match="no start time"):
        time_point_s("23:00", EdfStart(date=None, time=None, anonymised=True), "--lights-off")


# ------------------------------------------------------------------------------------------------
# Channels by role and band=channel, substitutions recorded with the file's labels
# ------------------------------------------------------------------------------------------------
BANDS = ["F3", "C3", "O1", "LOC", "ROC", "EMG"]
MODS = {"F3": "EEG", "C3": "EEG", "O1": "EEG", "LOC": "EOG", "ROC": "EOG", "EMG": "EMG"}


def test_roles_and_band_pairs_choose_the_vlm_bands():
    from psgvlm.night.bands import channel_choices, channel_request, resolve_channel_choices

    signals, stages = synthetic_night(2)
    rec = recording_from(signals, stages)  # C3-A2, C4-A1, LOC-A2, ROC-A1, EMG Chin
    auto, how = resolve_channel_choices(rec, BANDS, MODS)
    assert auto == ["C4", "C3", None, "LOC", "ROC", "EMG"] and how[0] == "substitute" and how[2] == "flat"
    # --eeg C4-A1 --eog ROC-A1: the role's channels go to the band of the same name, else the same
    # region (C4 -> C3), else the first free band of that modality; the rest is automatic.
    mapping, how = resolve_channel_choices(rec, BANDS, MODS, channel_request(eeg=["C4-A1"], eog=["ROC-A1"]))
    assert mapping[1] == "C4" and how[1] == "--eeg" and mapping[4] == "ROC" and how[4] == "--eog"
    assert mapping[0] == "C3" and how[0] == "substitute"
    choices = channel_choices(rec, BANDS, MODS, channel_request(["C3=C4-A1", "LOC=ROC-A1", "EMG=-"]))
    by_band = {c["band"]: c for c in choices}
    assert by_band["C3"]["label"] == "C4-A1" and by_band["C3"]["how"] == "--channels"
    assert by_band["LOC"]["label"] == "ROC-A1" and by_band["EMG"]["label"] is None
    assert by_band["F3"]["label"] == "C3-A2" and by_band["F3"]["how"] == "substitute"  # file label, not "C3"
    with pytest.raises(ValueError, match="mixes"):
        channel_request(["C3=C4-A1", "LOC-A2"])
    with pytest.raises(ValueError, match="no band 'Cz'"):
        resolve_channel_choices(rec, BANDS, MODS, ["Cz=C4-A1"])
    with pytest.raises(ValueError, match="not in recording"):
        resolve_channel_choices(rec, BANDS, MODS, channel_request(eeg=["Fpz"]))


def test_stage_with_roles_records_labels_and_substitutions(default_predictor):
    from psgvlm.night.outputs import summarize
    from psgvlm.night.stage import stage_recording

    run_dir, predictor = default_predictor
    signals, stages = synthetic_night(6, seed=5)
    res = stage_recording(recording_from(signals, stages), run_dir=run_dir, predictor=predictor,
                          predictors=["vlm", "yasa"], primary="yasa", eeg=["C4-A1"], eog=["ROC-A1"], emg=["EMG Chin"])
    summary = summarize(res)
    chans = {c["band"]: c for c in summary["channels"]}
    assert chans["C3"]["recording_channel"] == "C4-A1" and chans["C3"]["how"] == "--eeg"
    assert chans["EMG"]["recording_channel"] == "EMG Chin" and chans["EMG"]["how"] == "--emg"
    assert summary["predictors"]["yasa"]["channels"] == ["C4-A1", "ROC-A1", "EMG Chin"]
    subs = {c["band"] for c in summary["channel_substitutions"]}
    assert subs == {"F3", "O1"}  # automatic: C3-A2 drawn in F3, nothing left for O1 (LOC-A2 is LOC by name)
    assert any("VLM band F3" in w and "'C3-A2'" in w for w in res.recording["warnings"])


# ------------------------------------------------------------------------------------------------
# The command on the real Sleep-EDF crop: start, clock time, lights, exports, modes, one progress bar
# ------------------------------------------------------------------------------------------------
@pytest.mark.skipif(not (SLEEPEDF / "short_psg.edf").is_file(), reason="../shared/data/real/sleepedf_crop absent")
def test_stage_sleepedf_crop_speaks_yasa_bids_and_edfbrowser(tmp_path, capsys, umask_022):
    import mne
    import yasa

    from psgvlm.night.cli_stage import main

    out = tmp_path / "out"
    argv = ["--edf", str(SLEEPEDF / "short_psg.edf"), "--hypnogram", str(SLEEPEDF / "SC4001EC-Hypnogram.edf"),
            "--out", str(out), "--predictors", "vlm", "yasa", "--primary", "yasa", "--clock-time",
            "--lights-off", "16:14", "--lights-on", "240"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(argv) == 0
    assert not [w for w in caught if issubclass(w.category, FutureWarning)], [str(w.message) for w in caught]
    printed = capsys.readouterr()
    assert "recording started 1989-04-24T16:13:00" in printed.out
    assert "Loading weights" not in printed.err and "deprecated" not in printed.err
    assert {line.split(":")[0] for line in printed.err.replace("\r", "\n").splitlines() if "%|" in line} == {"stage"}
    # The Sleep-EDF substitutions are warnings naming the file's labels (Pz-Oz drawn in the C3 band).
    assert "VLM band C3: the recording has no C3; drew EEG channel 'EEG Pz-Oz'" in printed.err

    summary = json.loads((out / "summary.json").read_text())
    assert summary["start"]["datetime"] == "1989-04-24T16:13:00" and not summary["start"]["anonymised"]
    bed = summary["time_in_bed"]
    assert (bed["lights_off_s"], bed["lights_on_s"], bed["first_epoch"], bed["n_epochs"]) == (60.0, 240.0, 2, 7)
    assert bed["lights_off"] == "1989-04-24T16:14:00" and summary["sleep_statistics"]["TIB"] == 3.5
    assert {c["recording_channel"] for c in summary["channels"]} >= {"EEG Fpz-Cz", "EEG Pz-Oz", "EOG horizontal"}
    tsv = (out / "hypnogram.tsv").read_text().splitlines()
    assert tsv[0].endswith("\tclock_time") and tsv[2].endswith("\t1989-04-24T16:13:30")
    csv = (out / "hypnogram.csv").read_text().splitlines()
    assert csv[0].split(",")[2] == "clock_time" and csv[0].endswith(",in_bed")
    assert [row.rsplit(",", 1)[1] for row in csv[1:]] == ["0", "0", *["1"] * 7, "0"]

    # EDFbrowser / MNE: the annotations start when the recording did, lights off/on included.
    raw = mne.io.read_raw_edf(out / "hypnogram_annotations.edf", verbose="error")
    assert raw.info["meas_date"] == SLEEPEDF_START.replace(tzinfo=dt.UTC)
    ann = mne.read_annotations(out / "hypnogram_annotations.edf")
    assert {"Lights off", "Lights on"} <= set(ann.description) and list(ann.description).count("Sleep stage W") == 10
    # YASA in one call: stages, probabilities, start and scorer.
    hyp = yasa.Hypnogram.from_json(out / "hypnogram_yasa.json")
    assert hyp.start == SLEEPEDF_START and hyp.scorer == "yasa" and hyp.proba.shape == (10, N_STAGES)
    assert np.allclose(hyp.proba.to_numpy(), np.load(out / "hypnodensity.npy"), atol=1e-5)
    # BIDS events + sidecar.
    events = (out / "hypnogram_events.tsv").read_text().splitlines()
    assert events[0].split("\t")[:3] == ["onset", "duration", "trial_type"] and len(events) == 11
    assert events[1].split("\t")[2] == "Sleep stage W"
    sidecar = json.loads((out / "hypnogram_events.json").read_text())
    assert set(events[0].split("\t")) <= set(sidecar) | {"onset", "duration"}
    assert (out / "confusion.png").stat().st_size > 1000  # an expert hypnogram was given
    # Colleagues can read every output (0644 under umask 022), JSON written atomically included.
    for f in (p for p in out.rglob("*") if p.is_file()):
        assert _mode(f) == 0o644, (f.name, oct(_mode(f)))


def test_clock_time_refused_without_start(tmp_path, capsys):
    import edfio
    from test_stage import synthetic_night as night

    from psgvlm.night.cli_stage import main

    signals, _ = night(2)
    sigs = [edfio.EdfSignal(np.asarray(x, float), 100.0, label=k, physical_dimension="uV",
                            physical_range=(-500.0, 500.0)) for k, x in signals.items()]
    edfio.Edf(sigs, recording=edfio.Recording(startdate=None), starttime=dt.time(0, 0)).write(tmp_path / "anon.edf")
    assert main(["--edf", str(tmp_path / "anon.edf"), "--out", str(tmp_path / "o"), "--clock-time",
                 "--predictors", "yasa"]) == 2
    err = capsys.readouterr().err
    assert "no start time" in err and len(err.strip().splitlines()) == 1
    assert main(["--edf", str(tmp_path / "anon.edf"), "--out", str(tmp_path / "o"), "--lights-off", "soon"]) == 2
    assert "--lights-off 'soon'" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------
# File modes at the shared atomic-write helper
# ------------------------------------------------------------------------------------------------
def test_atomic_writes_are_readable_by_group_and_others(tmp_path, umask_022):
    from psgvlm.io.edf import EdfChannel, write_edf
    from psgvlm.provenance import write_json_atomic, write_text_atomic

    write_json_atomic(tmp_path / "meta.json", {"a": 1})
    write_text_atomic(tmp_path / "t.txt", "x")
    write_edf(tmp_path / "s.edf", [EdfChannel("C3", 100.0, np.zeros(100))])
    assert {_mode(tmp_path / n) for n in ("meta.json", "t.txt", "s.edf")} == {0o644}
    os.umask(0o077)  # a user who keeps files private still gets private files
    write_json_atomic(tmp_path / "private.json", {})
    assert _mode(tmp_path / "private.json") == 0o600


@pytest.fixture(scope="module")
def default_predictor():
    from psgvlm.vlm.predict import DEFAULT_RUN, load_predictor

    return DEFAULT_RUN, load_predictor(DEFAULT_RUN)
