"""Every registered eval suite (``evals/__main__.py``'s SUITES) runs end to end through ``python -m
evals <suite>``'s ``main`` on the tiny dataset rendered by the real builder and a tiny image-classifier
run; a suite added to SUITES without a case here fails. Run: python -m pytest -q tests/test_evals_suites.py
"""

import json

import numpy as np
import pytest
from test_evals_common import write_run_for

from evals.__main__ import SUITES
from evals.__main__ import main as evals_main
from psgvlm.image.dataset import load_dataset
from psgvlm.signal.corruption import CORE_EEG


def results(out) -> dict:
    return json.loads((out / "results.json").read_text())


def case_metrics(env, out):
    ds, _ = load_dataset(env["dataset"], "all")
    labels = np.asarray(ds["label"])
    run = write_run_for(out.parent / "run", ds, np.where(np.arange(len(ds)) % 3 == 0, 2, labels), name="m")
    assert evals_main(["metrics", "--runs", str(run), "--dataset", str(env["dataset"]), "--split", "all",
                       "--out", str(out), "--n-boot", "20"]) == 0
    res = results(out)
    assert res["runs"][0]["pooled"]["accuracy"] == pytest.approx(np.mean(np.where(np.arange(len(ds)) % 3 == 0, 2,
                                                                                    labels) == labels))
    assert sorted(res["runs"][0]["per_subject"]) == ["1", "2", "3"]


def case_zero_shot(env, out):
    assert evals_main(["zero_shot", "--run", str(env["run"]), "--dataset", str(env["dataset"]), "--split", "all",
                       "--out", str(out)]) == 0
    res = results(out)
    assert res["metrics"]["n_epochs"] == 30 and sum(res["collapse"]["counts"].values()) == 30
    assert res["collapse"]["top_class"] in ("W", "N1", "N2", "N3", "REM")


def case_attribution(env, out):
    assert evals_main(["attribution", "--run", str(env["run"]), "--dataset", str(env["dataset"]), "--split", "all",
                       "--out", str(out), "--per-stage", "1", "--patch-px", "28", "--batch-size", "64"]) == 0
    res = results(out)
    assert res["timing"]["n_epochs"] == 5 and res["timing"]["forward_passes_max"] <= 145  # 12 x 12 patches + 1
    assert [b["channel"] for b in res["bands"]] == json.loads((env["dataset"] / "meta.json").read_text())["channels"]


def case_robustness(env, out):
    assert evals_main(["robustness", "--run", str(env["run"]), "--format", "isruc", "--input", str(env["synth"]),
                       "--out", str(out), "--seed", "0", "--n-boot", "20"]) == 0
    res = results(out)
    assert res["n_subjects_affected"] == 2  # round(0.7 * 3)
    assert {e["channel"] for e in res["manifest"]} == set(CORE_EEG)  # the synthetic ISRUC night has all six
    assert res["clean"]["n_epochs"] == res["corrupted"]["n_epochs"] == 30


def case_channel_loss(env, out):
    assert evals_main(["channel_loss", "--run", str(env["run"]), "--format", "isruc", "--input", str(env["synth"]),
                       "--out", str(out), "--drop", "EOG", "--modes", "blank", "--n-boot", "20"]) == 0
    (table,) = results(out)["tables"]  # rerendering is covered in test_evals_robustness.py
    assert table["name"] == "EOG/blank" and table["dropped"] == ["LOC", "ROC"]
    assert table["dropped_metrics"]["n_epochs"] == 30


def case_report(env, out):
    case_metrics(env, out.parent / "metrics")
    assert evals_main(["report", "--results", str(out.parent / "metrics"), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert "| Model | isruc Acc" in md and any(line.startswith("| m |") for line in md.splitlines())


def case_realdata(env, out):  # the real recordings, not the synthetic env (tests/test_realdata.py covers more)
    from conftest import REAL_DATA_DIR

    if not REAL_DATA_DIR.is_dir():  # absent: the one-line refusal
        assert evals_main(["realdata", "--data", str(REAL_DATA_DIR), "--out", str(out)]) == 2
        return
    assert evals_main(["realdata", "--data", str(REAL_DATA_DIR), "--out", str(out), "--rows", "yasa",
                       "--recordings", "sleepedf", "--n-boot", "20"]) == 0
    assert json.loads((out / "scorecard.json").read_text())["rows"]["yasa"]["n_epochs"] == 10


CASES = {"metrics": case_metrics, "zero_shot": case_zero_shot, "attribution": case_attribution,
         "robustness": case_robustness, "channel_loss": case_channel_loss, "report": case_report,
         "realdata": case_realdata}


@pytest.fixture(scope="module")
def env(tiny_synth, tiny_dataset, tiny_image_run):
    return {"synth": tiny_synth, "dataset": tiny_dataset, "run": tiny_image_run}


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_suite_runs_from_its_main(suite, env, tmp_path, capsys):
    assert suite in CASES, f"suite {suite!r} is registered in SUITES but has no case in tests/test_evals_suites.py"
    with pytest.raises(SystemExit) as exc:
        evals_main([suite, "--help"])
    assert exc.value.code == 0 and f"python -m evals {suite}" in capsys.readouterr().out
    CASES[suite](env, tmp_path / suite)


def test_cases_name_only_registered_suites():
    assert set(CASES) <= set(SUITES), sorted(set(CASES) - set(SUITES))
