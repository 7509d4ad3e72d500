"""Metrics suite, evaluate module, bootstrap CIs and seed summaries, cross-checked against
scikit-learn. Run: python -m pytest -q tests/test_evals_metrics.py"""

import json

import numpy as np
import pytest
import sklearn.metrics as sk  # noqa: E402
from test_evals_common import write_run, write_run_for

from evals.__main__ import main as evals_main
from evals.metrics import load_sleep_staging
from psgvlm.image.dataset import load_dataset
from psgvlm.metrics import bootstrap_ci, paired_bootstrap_delta, seed_summary, stage_metrics


def noisy(seed, n=600, acc=0.7, n_subjects=8):
    rng = np.random.default_rng(seed)
    y = rng.choice(5, n, p=[0.2, 0.1, 0.4, 0.15, 0.15])
    p = np.where(rng.random(n) < acc, y, rng.integers(0, 5, n))
    subjects = np.array([f"s{i}" for i in rng.integers(0, n_subjects, n)])
    return y, p, subjects


def test_evaluate_module_matches_sklearn():
    y, p, _ = noisy(0)
    y = y.copy()
    y[:7] = -1  # unscored: excluded and counted
    got = load_sleep_staging().compute(predictions=p.tolist(), references=y.tolist())
    yy, pp = y[7:], p[7:]
    assert got["n_unscored"] == 7 and got["n_epochs"] == len(yy)
    assert got["accuracy"] == pytest.approx(sk.accuracy_score(yy, pp))
    assert got["balanced_accuracy"] == pytest.approx(sk.balanced_accuracy_score(yy, pp))
    assert got["kappa"] == pytest.approx(sk.cohen_kappa_score(yy, pp))
    assert got["weighted_f1"] == pytest.approx(sk.f1_score(yy, pp, average="weighted"))
    assert got["macro_f1"] == pytest.approx(sk.f1_score(yy, pp, average="macro"))
    assert list(got["per_class_f1"].values()) == pytest.approx(sk.f1_score(yy, pp, average=None).tolist())
    assert got["confusion"] == sk.confusion_matrix(yy, pp, labels=range(5)).tolist()


def test_bootstrap_ci_seeded_and_covers_estimate():
    y, p, s = noisy(1)
    a = bootstrap_ci(y, p, s, n_boot=300, seed=5)
    assert a == bootstrap_ci(y, p, s, n_boot=300, seed=5)
    assert a != bootstrap_ci(y, p, s, n_boot=300, seed=6)
    point = stage_metrics(y, p)
    for k in ("accuracy", "kappa", "macro_f1", "weighted_f1", "balanced_accuracy"):
        lo, hi = a[k]
        assert lo < point[k] < hi and hi - lo < 0.2
    # fewer subjects -> wider intervals (the subject, not the epoch, is the resampling unit)
    y2, p2, s2 = noisy(1, n_subjects=2)
    b = bootstrap_ci(y2, p2, np.where(s2 == "s0", "a", "b"), n_boot=300, seed=5)
    assert b["n_subjects"] == 2 and a["n_subjects"] == 8
    d = paired_bootstrap_delta(y, y, p, s, n_boot=200, seed=0)
    assert d["accuracy"]["delta"] == pytest.approx(point["accuracy"] - 1.0)
    assert d["accuracy"]["ci"][1] < 0


def test_seed_summary_mean_sd():
    res = [stage_metrics(*noisy(k)[:2]) for k in range(3)]
    s = seed_summary(res)
    accs = [r["accuracy"] for r in res]
    assert s["accuracy"]["mean"] == pytest.approx(np.mean(accs))
    assert s["accuracy"]["sd"] == pytest.approx(np.std(accs, ddof=1))
    assert s["accuracy"]["n"] == 3 and seed_summary(res[:1])["kappa"]["sd"] == 0.0


def test_metrics_suite_cli_several_seeds(tmp_path):
    runs = []
    for seed in (0, 1):
        y, p, s = noisy(seed)
        runs.append(str(write_run(tmp_path / f"run{seed}", labels=y, preds=p, subjects=s.tolist(),
                                  name="psg-llava", seed=seed)))
    log = [{"step": k, "epoch": 0, "loss": 2.0 / (k + 1)} for k in range(1, 6)] + [{"step": 5, "val_kappa": 0.4}]
    (tmp_path / "run0" / "train_log.jsonl").write_text("".join(json.dumps(x) + "\n" for x in log))
    y, p, s = noisy(9, acc=0.4)
    runs.append(str(write_run(tmp_path / "base", labels=y, preds=p, subjects=s.tolist(), name="resnet", seed=0)))
    out = tmp_path / "res"
    assert evals_main(["metrics", "--runs", *runs, "--out", str(out), "--n-boot", "100"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["suite"] == "metrics" and "git_sha" in res["provenance"]
    models = {m["model"]: m for m in res["models"]}
    assert models["psg-llava"]["n_runs"] == 2 and models["psg-llava"]["seeds"] == [0, 1]
    accs = [r["pooled"]["accuracy"] for r in res["runs"][:2]]
    assert models["psg-llava"]["summary"]["accuracy"]["mean"] == pytest.approx(np.mean(accs))
    assert models["resnet"]["summary"]["accuracy"]["mean"] < models["psg-llava"]["summary"]["accuracy"]["mean"]
    r0 = res["runs"][0]
    assert r0["pooled"]["confusion_row_normalised"][2][2] == pytest.approx(
        r0["pooled"]["confusion"][2][2] / sum(r0["pooled"]["confusion"][2]), abs=1e-4)
    assert len(r0["per_subject"]) == 8 and r0["ci"]["unit"] == "subject"
    assert len((out / "samples.jsonl").read_text().splitlines()) == 3 * 600
    assert (out / "confusion_0_psg-llava_isruc.png").stat().st_size > 1000
    assert (out / "training_loss_0_psg-llava.png").exists() and not (out / "training_loss_2_resnet.png").exists()
    assert len(list(out.glob("hypnogram_*.png"))) == 9 and len(list(out.glob("hypnodensity_*.png"))) == 9


def test_metrics_refuses_mismatched_dataset(tiny_dataset, tmp_path, capsys):
    ds, _ = load_dataset(tiny_dataset, "all")
    # subject "2" renamed "c" (not in the dataset); with "3" dropped, "2" and "3" are missing
    run = write_run_for(tmp_path / "run", ds.filter(lambda r: r["subject"] != "3"), [0] * 20, subjects={"2": "c"})
    rc = evals_main(["metrics", "--runs", str(run), "--dataset", str(tiny_dataset), "--split", "all",
                     "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "only in predictions ['c']" in err and "['2', '3']" in err
    rc = evals_main(["metrics", "--runs", str(run), "--dataset", str(tiny_dataset), "--split", "bogus",
                     "--out", str(tmp_path / "o")])
    assert rc == 2 and "split 'bogus' not in" in capsys.readouterr().err


def test_metrics_and_zero_shot_leave_epochs_without_an_answer_out(tmp_path):
    """Unparseable generations (pred -1, probs null) are counted and left out, never scored as W."""
    from evals.suites.zero_shot import run_zero_shot
    from psgvlm.predictions import read_predictions

    y, p, s = noisy(4, n=200, n_subjects=4)
    probs = np.eye(5)[p].astype(float)
    gone = np.arange(0, 200, 4)  # every 4th epoch: no answer
    probs[gone] = np.nan
    run = write_run(tmp_path / "gen", labels=y, preds=p, subjects=s.tolist(), probs=probs)
    out = tmp_path / "res"
    assert evals_main(["metrics", "--runs", str(run), "--out", str(out), "--n-boot", "20"]) == 0
    r = json.loads((out / "results.json").read_text())["runs"][0]
    keep = np.setdiff1d(np.arange(200), gone)
    assert r["n_no_prediction"] == len(gone) and r["no_prediction_rate"] == pytest.approx(0.25)
    assert r["pooled"]["accuracy"] == pytest.approx(float(np.mean(y[keep] == p[keep])), abs=1e-4)
    assert len(list(out.glob("hypnodensity_*.png"))) == 3  # drawn with the gaps
    z = run_zero_shot(read_predictions(run), tmp_path / "z", name="untuned")
    assert z["n_no_prediction"] == len(gone) and z["metrics"]["n_epochs"] == len(keep)
    assert sum(z["collapse"]["counts"].values()) == len(keep)
