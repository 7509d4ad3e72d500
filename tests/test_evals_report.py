"""Zero-shot and report suites. Run: python -m pytest -q tests/test_evals_report.py"""

import json

import numpy as np
import pytest
from test_evals_common import write_run, write_run_for

from evals.__main__ import main as evals_main
from evals.suites.zero_shot import collapse
from psgvlm.image.dataset import load_dataset


def test_collapse_statistics():
    c = collapse([2] * 90 + [0] * 8 + [4] * 2)
    assert c["n_classes_predicted"] == 3 and c["top_class"] == "N2" and c["top_share"] == 0.9
    assert c["classes_covering_90pct"] == ["N2"]


def test_zero_shot_and_report(tiny_dataset, tmp_path, capsys):
    rng = np.random.default_rng(0)
    runs = []
    for ds_name in ("isruc", "mass"):
        for seed in (0, 1):
            y = rng.integers(0, 5, 200)
            p = np.where(rng.random(200) < 0.8, y, 2)
            s = [f"s{i % 5}" for i in range(200)]
            runs.append(str(write_run(tmp_path / f"{ds_name}{seed}", labels=y, preds=p, subjects=s,
                                      dataset=ds_name, name="psg-llava", seed=seed)))
    y = rng.integers(0, 5, 200)
    runs.append(str(write_run(tmp_path / "cnn", labels=y, preds=np.where(rng.random(200) < .5, y, 1),
                              subjects=[f"s{i % 5}" for i in range(200)], name="resnet")))
    assert evals_main(["metrics", "--runs", *runs, "--out", str(tmp_path / "m"), "--n-boot", "50",
                       "--max-subject-plots", "1"]) == 0
    # untuned model: everything N2 but a few W
    ds, _ = load_dataset(tiny_dataset, "all")
    zs = write_run_for(tmp_path / "untuned", ds, [2] * (len(ds) - 1) + [0])
    assert evals_main(["zero_shot", "--predictions", str(zs), "--dataset", str(tiny_dataset), "--split", "all",
                       "--out", str(tmp_path / "z")]) == 0
    z = json.loads((tmp_path / "z" / "results.json").read_text())
    assert z["collapse"]["top_class"] == "N2" and z["collapse"]["n_classes_predicted"] == 2
    assert (tmp_path / "z" / "confusion_zero_shot.png").exists()
    assert evals_main(["zero_shot", "--out", str(tmp_path / "z2")]) == 2
    assert "exactly one of --run" in capsys.readouterr().err

    assert evals_main(["report", "--results", str(tmp_path / "m"), str(tmp_path / "z"),
                       "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    summary = json.loads((tmp_path / "rep" / "summary.json").read_text())
    assert "| Model | isruc Acc | isruc B-Acc | isruc κ | isruc W-F1 | isruc MF1 | mass Acc" in md
    row = next(r for r in summary["table1"] if r["model"] == "psg-llava")
    assert row["isruc/Acc"]["n"] == 2 and "± " in md and "(n=2)" in md
    resnet = next(line for line in md.splitlines() if line.startswith("| resnet"))
    assert "[" in resnet and resnet.count("–") == 5  # single run: CI; no mass column values
    assert "Zero-shot (untuned)" in md and "figures/" in md
    for link in [ln[ln.index("(") + 1:-1] for ln in md.splitlines() if ln.startswith("![")]:
        assert (tmp_path / "rep" / link).exists()
    assert evals_main(["report", "--results", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r2")]) == 2


def test_zero_shot_refuses_mismatch(tiny_dataset, tmp_path, capsys):
    zs = write_run(tmp_path / "u", labels=[0, 1, 2], preds=[2, 2, 2], subjects=["zz"] * 3)
    assert evals_main(["zero_shot", "--predictions", str(zs), "--dataset", str(tiny_dataset), "--split", "all",
                       "--out", str(tmp_path / "z")]) == 2
    assert "only in predictions ['zz']" in capsys.readouterr().err


@pytest.mark.parametrize("suite", ["attribution", "robustness", "channel_loss"])
def test_image_suites_refuse_runs_without_image_model(tmp_path, suite, capsys):
    run = write_run(tmp_path / "sig", labels=[0, 1], preds=[0, 1], subjects=["a", "a"], kind="sleep2vec")
    args = {"attribution": ["--dataset", str(tmp_path)],
            "robustness": ["--format", "generic", "--input", str(tmp_path)],
            "channel_loss": ["--format", "generic", "--input", str(tmp_path), "--drop", "EOG"]}[suite]
    assert evals_main([suite, "--run", str(run), "--out", str(tmp_path / "o"), *args]) == 2
    err = capsys.readouterr().err
    assert "is a 'sleep2vec' signal model" in err and "needs an image model" in err
