"""``python -m evals realdata`` (the real-data scorecard): its scoring rules, its refusals, and runs on the
shared real recordings (skipped with the reason when ``../shared/data/real`` is absent).

Run: python -m pytest -q tests/test_realdata.py            (fast: ~30 s with the real data)
     python -m pytest -q -m slow tests/test_realdata.py    (every row, --quick training: ~15 min on 2 cores)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evals.__main__ import main as evals_main
from evals.metrics import load_sleep_staging
from evals.suites import realdata
from evals.suites.realdata import ROWS, epoch_rows, find_recordings, score_row
from psgvlm.night.predictors import PREDICTORS
from psgvlm.stages import UNSCORED

REPO = Path(__file__).resolve().parents[1]


def _fake(key: str, expert) -> realdata.RealRecording:
    """A RealRecording around a stand-in night with only what the scoring reads."""
    class Rec:
        stages = np.asarray(expert)
        onset_s, epoch_s, n_epochs = 0.0, 30.0, len(expert)
    return realdata.RealRecording(key, key, "dreams", Path(key), Path(key), True, rec=Rec())


def test_an_unscored_prediction_counts_as_wrong_and_unlabelled_epochs_are_left_out():
    rec = _fake("dreams1", [0, 2, 2, UNSCORED, 3])
    rows = epoch_rows("x", rec, np.array([0, UNSCORED, 2, 1, 3]))
    assert [r["epoch"] for r in rows] == [0, 1, 2, 4]  # the expert's unscored epoch is not scored
    assert [r["pred"] != r["label"] for r in rows] == [False, True, False, False]
    assert [r["unscored"] for r in rows] == [False, True, False, False]
    with pytest.raises(RuntimeError, match="gave 4 epochs"):
        epoch_rows("x", rec, np.zeros(4, int))


def test_pooled_scores_per_recording_dreams_pool_and_recording_bootstrap():
    a, b = _fake("dreams1", [0, 1, 2, 3, 4, 2]), _fake("prerau", [2, 2, 3, 3])
    by_rec = {"dreams1": epoch_rows("x", a, np.array([0, 1, 2, 3, 4, 2])),  # all right
              "prerau": epoch_rows("x", b, np.array([2, 2, 2, 2]))}  # half right
    metric = load_sleep_staging()
    s = score_row(by_rec, ["dreams1", "prerau"], n_boot=50, seed=0, metric=metric)
    assert s["n_epochs"] == 10 and s["pooled"]["accuracy"] == pytest.approx(0.8)
    assert s["recordings"]["dreams1"]["accuracy"] == 1.0 and s["recordings"]["prerau"]["accuracy"] == 0.5
    assert s["pooled_dreams"] == {"n_epochs": 6, "accuracy": 1.0, "kappa": 1.0, "macro_f1": 1.0}
    assert s["ci"]["unit"] == "subject" and s["ci"]["n_subjects"] == 2
    lo, hi = s["ci"]["accuracy"]
    assert lo == pytest.approx(0.5) and hi == pytest.approx(1.0)  # resamples of {all right, half right}


def test_rows_registry_names_real_predictors_and_protocols():
    assert {"vlm", "yasa", "gssc", "vote"} <= set(ROWS)
    for name, (protocol, describe, fn) in ROWS.items():
        assert protocol in ("pretrained", "LORO", "zero-shot") and describe and callable(fn)
        if protocol == "pretrained":
            assert name in PREDICTORS, f"pretrained row {name!r} is no entry of PREDICTORS"


def test_missing_data_folder_is_one_line_and_exit_2(tmp_path, capsys):
    assert evals_main(["realdata", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nowhere" in err and "absent" in err
    assert not (tmp_path / "o").exists()


def test_psgvlm_eval_realdata_reaches_the_suite(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "psgvlm.cli", "eval", "realdata", "--data", str(tmp_path / "no"),
                           "--out", str(tmp_path / "o")], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2 and proc.stderr.startswith("evals realdata: --data") and "Traceback" not in proc.stderr


def test_bad_options_are_refused(tmp_path, capsys):
    assert evals_main(["realdata", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--rows", "nap9"]) == 2
    assert "--rows ['nap9'] not allowed" in capsys.readouterr().err
    assert evals_main(["realdata", "--data", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "none of the expected recordings" in capsys.readouterr().err
    assert evals_main(["realdata", "--data", str(tmp_path), "--out", str(tmp_path / "o"),
                       "--vlm-run", "x=" + str(tmp_path / "missing")]) == 2
    assert "give NAME=DIR" in capsys.readouterr().err


def test_finds_every_shared_recording(real_data_dir):
    recs = find_recordings(real_data_dir)
    assert [r.key for r in recs] == ["dreams1", "dreams2", "dreams3", "dreams4", "dreams5", "dreams6", "prerau",
                                     "sleepedf", "dreams3_edf"]
    assert [r.pooled for r in recs] == [True] * 8 + [False]
    n = {r.key: int((r.load().expert != UNSCORED).sum()) for r in recs}
    assert n == {**{f"dreams{i}": 60 for i in range(1, 7)}, "prerau": 167, "sleepedf": 10, "dreams3_edf": 60}


def test_reference_rows_on_two_real_recordings(real_data_dir, tmp_path):
    out = tmp_path / "sc"
    assert evals_main(["realdata", "--data", str(real_data_dir), "--out", str(out), "--rows", "yasa", "gssc",
                       "--recordings", "dreams1", "sleepedf", "--n-boot", "50"]) == 0
    res = json.loads((out / "scorecard.json").read_text())
    assert res["suite"] == "realdata" and "git_sha" in res["provenance"]
    yasa = res["rows"]["yasa"]
    assert yasa["n_epochs"] == 70 and yasa["recordings"]["dreams1"]["n_epochs"] == 60
    assert yasa["recordings"]["sleepedf"]["accuracy"] == 1.0  # 10 wake epochs, recorded awake
    assert yasa["pooled"]["accuracy"] > 0.6 and yasa["pooled"]["kappa"] > 0.4  # ~0.73 / 0.56 measured
    assert set(yasa["pooled"]["per_class_f1"]) == {"W", "N1", "N2", "N3", "REM"}
    assert set(res["rows"]) | set(res["not_run"]) == {"yasa", "gssc"}
    if PREDICTORS["gssc"].missing() is not None:
        assert res["not_run"]["gssc"]  # the reason the extra is not there
    md = (out / "scorecard.md").read_text()
    assert "| yasa | pretrained | 70 |" in md and "DREAMS 1 (60)" in md
    lines = (out / "samples.jsonl").read_text().splitlines()
    assert len(lines) == sum(v["n_epochs"] for v in res["rows"].values())
    assert not (out / "work").exists()


@pytest.mark.slow
def test_every_row_on_every_recording_quick(real_data_dir, tmp_path):
    out = tmp_path / "sc"
    assert evals_main(["realdata", "--data", str(real_data_dir), "--out", str(out), "--quick", "--n-boot", "100"]) == 0
    res = json.loads((out / "scorecard.json").read_text())
    assert set(res["rows"]) | set(res["not_run"]) == set(ROWS)
    assert {"vlm", "yasa", "sdreamer", "sleep2vec", "vlm_tiny"} <= set(res["rows"])
    for name, row in res["rows"].items():
        assert row["n_epochs"] == 537, name  # DREAMS 6 x 60 + Prerau 167 + Sleep-EDF crop 10
        assert -1 <= row["pooled"]["kappa"] <= 1 and row["ci"]["n_subjects"] == 8
    md = (out / "scorecard.md").read_text()
    assert all(f"| {name} |" in md for name in res["rows"])
