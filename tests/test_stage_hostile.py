"""Hostile inputs to `psgvlm stage` (issue 11, classes 4, 6, 7, 8), each generated in code.

- class 4: an expert hypnogram covering part of the night never shrinks the staged span;
- class 6: bad option values exit 2 with one line naming the option and the value;
- class 7: a reused --out keeps no output of the previous recording, and no file it does not own is touched;
- class 8: flat (all-zero / constant) channels are refused, flat epochs left unscored and reported.

Run: python -m pytest -q tests/test_stage_hostile.py
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from test_stage import recording_from, synthetic_night, write_edf

from psgvlm.stages import STAGES, UNSCORED

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def write_labels(path, rows) -> str:
    """A CSV hypnogram of ``(init_sec, duration_sec, stage name)`` rows."""
    lines = ["init_sec,duration_sec,stage"] + [f"{a:g},{d:g},{s}" for a, d, s in rows]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def night10(tmp_path_factory):
    """A 10-epoch (5-minute) EDF and its true stages."""
    signals, stages = synthetic_night(10, seed=7)
    return write_edf(tmp_path_factory.mktemp("n10") / "night.edf", signals), stages


def one_error_line(err: str) -> bool:
    """Exactly one ``psgvlm stage:`` line and no traceback (model-loading progress bars aside)."""
    return sum(line.startswith("psgvlm stage:") for line in err.splitlines()) == 1 and "Traceback" not in err


def run_cli(argv, capsys):
    from psgvlm.night.cli_stage import main

    code = main([str(a) for a in argv])
    got = capsys.readouterr()
    return code, got.out, got.err


# ------------------------------------------------------------------------------------------------
# Class 4: the whole recording, always; expert labels paired by time
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("rows, matched, unmatched", [
    ([(0, 30, "W"), (30, 30, "N2")], [0, 1], 0),  # 2 of 10 epochs
    ([(120 + 30 * i, 30, "N2") for i in range(6)], list(range(4, 10)), 0),  # starting at 120 s
    ([(240 + 30 * i, 30, "N3") for i in range(6)], [8, 9], 4),  # running 2 min past the signal end
    ([(86400, 30, "W")], [], 1),  # a day after the recording
])
def test_partial_hypnogram_stages_whole_night(tmp_path, capsys, night10, rows, matched, unmatched):
    edf, _ = night10
    hyp = write_labels(tmp_path / "h.csv", rows)
    code, out, err = run_cli(["--edf", edf, "--hypnogram", hyp, "--out", tmp_path / "o"], capsys)
    assert code == 0, err
    assert "staged 10 epochs" in out and "5 min" in out
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["n_epochs"] == 10 and summary["sleep_statistics"]["TIB"] == 5.0
    tsv = (tmp_path / "o" / "hypnogram.tsv").read_text().splitlines()[1:]
    assert [float(line.split("\t")[0]) for line in tsv] == [30.0 * k for k in range(10)]
    csv = [line.split(",") for line in (tmp_path / "o" / "hypnogram.csv").read_text().splitlines()[1:]]
    has_label = [k for k, row in enumerate(csv) if row[-1] != "UNS"]
    assert has_label == matched
    report = summary["checks"]["expert"]
    assert report["n_matched"] == len(matched) and report["n_epochs_without_label"] == 10 - len(matched)
    assert report["unmatched_label_epochs"] == unmatched
    if unmatched:
        assert f"{unmatched} of " in err and "outside the staged recording" in err
    if matched:  # agreement over the labelled epochs only; the rest count as unscored
        assert summary["agreement"]["n_epochs"] == len(matched)
        assert summary["agreement"]["n_unscored"] == 10 - len(matched)
    else:
        assert summary["agreement"] is None and not (tmp_path / "o" / "metrics.json").exists()


def test_negative_text_onset_is_refused_by_name(tmp_path, capsys, night10):
    """A text hypnogram's times count from the signal start: a negative onset is a user error (exit 2)."""
    edf, _ = night10
    hyp = write_labels(tmp_path / "h.csv", [(-60, 30, "W"), (-30, 30, "W"), (0, 30, "N1")])
    code, out, err = run_cli(["--edf", edf, "--hypnogram", hyp, "--out", tmp_path / "o"], capsys)
    assert code == 2 and "h.csv" in err and "onset -60" in err and "negative" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "o" / "summary.json").exists()


def test_hypnogram_labels_land_on_their_epochs(default_predictor_run):
    """Labels from 120 s: expert[k] is the label of [30k, 30k + 30), not shifted to epoch 0."""
    from psgvlm.io.recording import Recording
    from psgvlm.night.stage import stage_recording

    run_dir, predictor = default_predictor_run
    signals, stages = synthetic_night(8, seed=2)
    rec = recording_from(signals, None)
    labelled = Recording(channels=rec.channels, subject="s", recording="r", dataset="generic", source="mem",
                         stages=np.array([1, 2, 3], np.int8), onset_s=120.0)
    res = stage_recording(labelled, run_dir=run_dir, predictor=predictor)
    assert res.n_epochs == 8 and res.starts_s[0] == 0.0
    assert res.expert.tolist() == [UNSCORED] * 4 + [1, 2, 3, UNSCORED]


@pytest.fixture(scope="module")
def default_predictor_run():
    from psgvlm.vlm.predict import DEFAULT_RUN, load_predictor

    return DEFAULT_RUN, load_predictor(DEFAULT_RUN)


# ------------------------------------------------------------------------------------------------
# Class 6: option values
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["0", "-3", "nan", "1e9", "abc", "2.5", "100000"])
def test_bad_batch_size_exit_2_one_line(tmp_path, capsys, night10, value):
    edf, _ = night10
    code, out, err = run_cli(["--edf", edf, "--out", tmp_path / "o", "--batch-size", value], capsys)
    assert code == 2 and one_error_line(err)
    assert "--batch-size" in err and repr(value) in err and "1..1024" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_out_is_a_file_refused_before_work(tmp_path, capsys, night10):
    edf, _ = night10
    (tmp_path / "o").write_text("not a folder")
    code, _, err = run_cli(["--edf", edf, "--out", tmp_path / "o"], capsys)
    assert code == 2 and "--out" in err and "not a directory" in err and one_error_line(err)
    assert (tmp_path / "o").read_text() == "not a folder"


def test_bad_channels_exit_2_one_line(tmp_path, capsys, night10):
    edf, _ = night10
    code, _, err = run_cli(["--edf", edf, "--out", tmp_path / "o", "--channels", "C3", "C4"], capsys)
    assert code == 2 and "--channels" in err and "night.edf" in err and one_error_line(err)


# ------------------------------------------------------------------------------------------------
# Class 7: a reused --out
# ------------------------------------------------------------------------------------------------
def test_reused_out_keeps_no_previous_outputs(tmp_path, capsys, night10):
    edf, stages = night10
    out = tmp_path / "o"
    hyp = write_labels(tmp_path / "h.csv", [(30 * i, 30, STAGES[int(s)]) for i, s in enumerate(stages)])
    assert run_cli(["--edf", edf, "--hypnogram", hyp, "--out", out], capsys)[0] == 0
    assert (out / "metrics.json").is_file()
    (out / "notes.txt").write_text("mine")  # not the command's: must survive
    (out / "sub").mkdir()
    (out / ".psgvlm-stage-tmp-999999999-dead").mkdir()  # a killed run's temp folder
    signals, _ = synthetic_night(6, seed=9)
    edf2 = write_edf(tmp_path / "other.edf", signals)
    code, printed, _ = run_cli(["--edf", edf2, "--out", out], capsys)
    assert code == 0 and "staged 6 epochs" in printed
    names = {p.name for p in out.iterdir()}
    assert names == {"hypnogram.tsv", "hypnogram.csv", "hypnodensity.npy", "hypnogram_annotations.edf",
                     "hypnogram.png", "hypnogram_yasa.json", "hypnogram_events.tsv", "hypnogram_events.json",
                     "summary.json", "predictors", "notes.txt", "sub"}  # no metrics.json, no confusion.png
    assert (out / "notes.txt").read_text() == "mine"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_epochs"] == 6 and "agreement" not in summary and "metrics.json" not in summary["files"]
    assert len(np.load(out / "hypnodensity.npy")) == 6


# ------------------------------------------------------------------------------------------------
# Class 8: flat channels and flat epochs
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fill", [0.0, 37.5])
def test_all_flat_recording_refused(tmp_path, capsys, fill):
    signals, _ = synthetic_night(6)
    flat = {name: np.full_like(x, fill) for name, x in signals.items()}
    edf = write_edf(tmp_path / "flat.edf", flat)
    code, out, err = run_cli(["--edf", edf, "--out", tmp_path / "o"], capsys)
    assert code == 2 and one_error_line(err) and "Traceback" not in err
    assert "flat.edf" in err and "flat" in err and "'C3'" in err and "'C4'" in err
    assert not (tmp_path / "o").exists() and "staged" not in out


def test_flat_eeg_with_live_eog_refused(default_predictor_run):
    from psgvlm.night.stage import stage_recording

    run_dir, predictor = default_predictor_run
    signals, _ = synthetic_night(4)
    signals["C3-A2"][:] = 0.0
    signals["C4-A1"][:] = 0.0
    with pytest.raises(ValueError, match="nothing to stage.*EEG"):
        stage_recording(recording_from(signals, None), run_dir=run_dir, predictor=predictor)


def test_all_nan_channels_refused(default_predictor_run):
    from psgvlm.night.stage import stage_recording

    run_dir, predictor = default_predictor_run
    signals, _ = synthetic_night(4)
    signals = {name: np.full_like(x, np.nan) for name, x in signals.items()}
    with pytest.raises(ValueError, match="nothing to stage"):
        stage_recording(recording_from(signals, None), run_dir=run_dir, predictor=predictor)


def test_flat_epochs_left_unscored_and_reported(tmp_path, capsys):
    """Epochs 2-4 of 8 all-zero (electrodes off): not scored, stage UNS, not sleep, warned about."""
    signals, stages = synthetic_night(8, seed=5)
    for x in signals.values():
        x[2 * 3000: 5 * 3000] = 0.0
    signals["EMG Chin"][:] = 0.0  # a band flat all night: warned about, not a reason to refuse
    edf = write_edf(tmp_path / "gap.edf", signals)
    out = tmp_path / "o"
    code, printed, err = run_cli(["--edf", edf, "--out", out], capsys)
    assert code == 0 and "3 epochs unscored" in printed
    # band 5: EMG in the default run's six bands (F3 C3 O1 LOC ROC EMG)
    assert "3 of 8 epochs have no EEG signal" in err and "'EMG' (band 5) is flat" in err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["checks"]["unscored_epochs"] == [2, 3, 4]
    assert summary["checks"]["n_flat_epochs"]["EMG"] == 8 and summary["checks"]["n_flat_epochs"]["C3"] == 3
    assert summary["stage_counts"]["UNS"] == 3 and summary["sleep_statistics"]["n_unscored"] == 3
    assert summary["sleep_statistics"]["TST"] <= 2.5  # 5 scored epochs at most
    tsv = [line.split("\t")[2] for line in (out / "hypnogram.tsv").read_text().splitlines()[1:]]
    assert [k for k, s in enumerate(tsv) if s == "UNS"] == [2, 3, 4]
    probs = np.load(out / "hypnodensity.npy")
    assert np.all(probs[2:5] == 0) and np.allclose(probs[[0, 1, 5, 6, 7]].sum(1), 1, atol=1e-4)
    import mne

    ann = mne.read_annotations(out / "hypnogram_annotations.edf")
    assert list(ann.description[2:5]) == ["Sleep stage ?"] * 3


def test_flat_detection_ignores_resampling_ripple():
    """A constant non-zero channel at 100 Hz is flat (checked on its own samples, before resampling)."""
    from psgvlm.night.grid import flat_epochs

    signals, _ = synthetic_night(3)
    signals["C3-A2"][:] = 12.5
    signals["C4-A1"][3000:] = -4.0
    rec = recording_from(signals, None)
    flat = flat_epochs(rec, ["C3", "C4", None], 3)
    assert flat.tolist() == [[True, False, True], [True, True, True], [True, True, True]]


def test_flat_epochs_with_expert_left_out_of_agreement(tmp_path, capsys):
    """Flat epochs 0-1 with expert labels: the agreement covers the 4 epochs the model scored."""
    signals, stages = synthetic_night(6, seed=6)
    for x in signals.values():
        x[: 2 * 3000] = 0.0
    edf = write_edf(tmp_path / "gap.edf", signals)
    hyp = write_labels(tmp_path / "h.csv", [(30 * i, 30, STAGES[int(s)]) for i, s in enumerate(stages)])
    code, _, err = run_cli(["--edf", edf, "--hypnogram", hyp, "--out", tmp_path / "o"], capsys)
    assert code == 0, err
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["agreement"]["n_epochs"] == 4 and summary["agreement"]["n_unscored"] == 2
    assert summary["expert_stage_counts"]["UNS"] == 0  # the expert's own hypnogram is kept whole


def test_read_input_places_labels_on_the_whole_night(tmp_path, night10):
    """What the app hands to YASA too: onset 0 s, one stage per whole epoch, labels at their time."""
    from psgvlm.night.stage import read_input

    edf, _ = night10
    hyp = write_labels(tmp_path / "h.csv", [(120, 30, "N1"), (150, 30, "N2"), (400, 30, "W")])
    rec = read_input(edf, hyp)
    assert rec.onset_s == 0.0 and rec.n_epochs == 10
    assert rec.stages.tolist() == [UNSCORED] * 4 + [1, 2] + [UNSCORED] * 4
    # The reader counts epochs of the hypnogram's own grid (120 s to 430 s, gaps included): 4 past 300 s.
    assert rec.pairing["dropped_label_epochs"] == 4 and rec.pairing["n_label_epochs"] == 10
