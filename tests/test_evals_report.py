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


# ---- paper layouts (--layout): the paper's numbers beside ours ----------------------------------------------
def _metrics(tmp_path, name, runs, n_boot="20"):
    """``evals metrics`` over ``runs`` = [(run dir, model name)] into tmp_path/name; returns the dir."""
    out = tmp_path / name
    assert evals_main(["metrics", "--runs", *(str(r) for r, _ in runs), "--names", *(n for _, n in runs),
                       "--out", str(out), "--n-boot", n_boot, "--max-subject-plots", "0"]) == 0
    return out


def _noisy_run(path, *, seed, name, dataset="isruc", accuracy=0.8, n=300):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 5, n)
    p = np.where(rng.random(n) < accuracy, y, (y + 1) % 5)
    write_run(path, labels=y, preds=p, subjects=[f"s{i % 6}" for i in range(n)], dataset=dataset, name=name, seed=seed)
    return path, y, p


def _layout_psg_llava_table1(tmp_path):
    epoch, subject, accs = [], [], []
    for seed in (0, 1):
        run, y, p = _noisy_run(tmp_path / f"e{seed}", seed=seed, name="PSG-LLaVA", dataset="isruc")
        epoch.append((run, "PSG-LLaVA"))
        accs.append(float(np.mean(y == p)))
        subject.append((_noisy_run(tmp_path / f"s{seed}", seed=10 + seed, name="x", dataset="mass")[0], "PSG-LLaVA"))
    subject.append((_noisy_run(tmp_path / "sd", seed=5, name="x", dataset="shhs")[0], "sDREAMER"))
    results = [f"epoch split={_metrics(tmp_path, 'me', epoch)}", f"subject split={_metrics(tmp_path, 'ms', subject)}"]
    mean, sd = np.mean(accs), np.std(accs, ddof=1)
    expect = ["| Ours | PSG-LLaVA | paper | 0.8596 | 0.8301 | 0.8172 | 0.8588 | 0.8879 |",
              f"| Ours | PSG-LLaVA | ours, epoch split (n=2) | {mean:.4f} ± {sd:.4f} |",
              "| Image based | MaxViT | paper | 0.7875 |", "| Image based | CLIP (vision encoder) | paper | 0.7700 |",
              "| Not in the paper | sDREAMER | ours, subject split (n=1) | – |"]
    return results, expect


def _layout_sleep2vec_table1(tmp_path):
    run, y, p = _noisy_run(tmp_path / "eeg", seed=3, name="sleep2vec", dataset="shhs")
    cm = np.zeros((5, 5))
    np.add.at(cm, (y, p), 1)
    spec = np.mean([(cm.sum() - cm[k].sum() - cm[:, k].sum() + cm[k, k]) / (cm.sum() - cm[k].sum()) for k in range(5)])
    results = [f"EEG={_metrics(tmp_path, 'eeg_m', [(run, 'sleep2vec')])}"]
    expect = ["| EEG | paper (sleep2vec) | 87.4 | 0.82 | 77.3 | 76.2 | 96.1 | 92.4 |",
              f"| EEG | ours (sleep2vec on shhs; n=1) | {100 * np.mean(y == p):.1f} |", f"| {100 * spec:.1f} |",
              "| IBI & RESP | ours | – |", "| FULL CHANNELS | paper (sleep2vec) | 88.6 | 0.84 | 79.5 |"]
    return results, expect


def _layout_sdreamer_ablation(tmp_path):
    runs = []
    for seed, eeg in ((0, 0.7), (1, 0.8)):
        run, _, _ = _noisy_run(tmp_path / f"sd{seed}", seed=seed, name="x")
        (run / "metrics_single_channel.json").write_text(json.dumps({"eeg": {"accuracy": eeg}, "emg": {"accuracy": 0.3}}))
        runs.append((run, "Sequence sDREAMER"))
    results = [str(_metrics(tmp_path, "sd_m", runs))]
    expect = ["| Sequence sDREAMER | paper (mice, 3 classes) | 91.72 | 87.64 | 88.12 | 83.78 |",
              f"| 75.00 ± {100 * np.std([0.7, 0.8], ddof=1):.2f} | 30.00 ± 0.00 |",
              "| Epoch sDREAMER | ours (n=0) | – | – | – | – |"]
    return results, expect


def _layout_nap_zero_shot(tmp_path):
    from psgvlm.metrics import stage_metrics

    runs, mf1 = [], {}
    for seed, (model, acc) in enumerate((("NAP", 0.85), ("soft vote", 0.8), ("YASA", 0.6), ("GSSC", 0.75))):
        run, y, p = _noisy_run(tmp_path / model.replace(" ", "_"), seed=seed, name="x", dataset="sleepedf",
                               accuracy=acc)
        runs.append((run, model))
        mf1[model] = stage_metrics(y, p)["macro_f1"]
    results = [f"SEDF-SC={_metrics(tmp_path, 'nap_m', runs)}"]
    expect = ["| SEDF-SC | paper | 0.734 | – | 0.752 | +0.018 |",
              f"| SEDF-SC | ours (n=1) | {mf1['GSSC']:.3f} (GSSC) | {mf1['soft vote']:.3f} | {mf1['NAP']:.3f} | "
              f"{mf1['NAP'] - mf1['GSSC']:+.3f} |", "| PHYS | paper | 0.693 | – | 0.732 | +0.039 |"]
    return results, expect


def _handmade(tmp_path, name, results):
    (tmp_path / name).mkdir()
    (tmp_path / name / "results.json").write_text(json.dumps(results))
    return tmp_path / name


def _layout_psg_llava_robustness(tmp_path):
    metrics = ("accuracy", "balanced_accuracy", "kappa", "weighted_f1", "macro_f1")
    out = []
    for seed, drop in ((0, 0.1), (1, 0.3)):
        out.append("PSG-LLaVA on isruc=" + str(_handmade(tmp_path, f"rob{seed}", {
            "suite": "robustness", "setting": "clean-train", "n_subjects_affected": 3, "manifest": [],
            "corruption": {"seed": seed, "fraction": 0.7}, "clean": dict.fromkeys(metrics, 0.8),
            "corrupted": dict.fromkeys(metrics, 0.8 - drop),
            "delta": {k: {"delta": -drop, "ci": [-drop - 0.05, -drop + 0.05]} for k in metrics}})))
    expect = ["| PSG-LLaVA on isruc (n=2) | 0.8000 → 0.6000 (-0.2000 ± 0.1414) |", "**train-corrupted**"]
    return out, expect


def _layout_psg_llava_attribution(tmp_path):
    agg = {"correct_REM": {"n": 4, "modality_scores": {"EEG": 0.2, "EOG": 0.7, "EMG": 0.1}, "summary": "REM ...",
                           "top": {"channel": "LOC", "modality": "EOG", "window_s": [10.0, 20.0], "score": 0.9}},
           "correct_W": {"n": 0}}
    path = _handmade(tmp_path, "att", {"suite": "attribution", "aggregates": agg, "summaries": ["REM ..."],
                                       "timing": {"n_epochs": 4, "seconds_per_epoch_mean": 1.0,
                                                  "forward_passes_mean": 577}})
    expect = ["| PSG-LLaVA | REM | fast EOG segments | EOG 0.70 > EEG 0.20 > EMG 0.10 | LOC, s 10-20 | 4 |",
              "| PSG-LLaVA | W | all EEG channels | – | – | 0 |",
              "| PSG-LLaVA | misclassified | away from the regions experts read (Fig. 12) | – | – | 0 |"]
    return [f"PSG-LLaVA={path}"], expect


LAYOUT_CASES = {"psg_llava_table1": _layout_psg_llava_table1, "sleep2vec_table1": _layout_sleep2vec_table1,
                "sdreamer_ablation": _layout_sdreamer_ablation, "nap_zero_shot": _layout_nap_zero_shot,
                "psg_llava_robustness": _layout_psg_llava_robustness,
                "psg_llava_attribution": _layout_psg_llava_attribution}


def test_every_paper_layout_has_a_case():
    from evals.suites.report import LAYOUTS

    assert set(LAYOUT_CASES) == set(LAYOUTS)


@pytest.mark.parametrize("layout", sorted(LAYOUT_CASES))
def test_paper_layout_puts_the_papers_numbers_beside_ours(layout, tmp_path):
    results, expect = LAYOUT_CASES[layout](tmp_path)
    assert evals_main(["report", "--layout", layout, "--results", *results, "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    section = md.split("\n## ")[1]  # the layout's table comes first
    for text in expect:
        assert text in section, f"{text!r} not in\n{section}"
    summary = json.loads((tmp_path / "rep" / "summary.json").read_text())
    assert summary["layout"]["name"] == layout and summary["layout"]["rows"]


def test_labels_qualify_models_and_unknown_layouts_are_refused(tmp_path, capsys):
    run, _, _ = _noisy_run(tmp_path / "r", seed=0, name="m")
    m = _metrics(tmp_path, "m", [(run, "resnet")])
    assert evals_main(["report", "--results", f"my setting={m}", "--out", str(tmp_path / "rep")]) == 0
    assert "| resnet [my setting] |" in (tmp_path / "rep" / "report.md").read_text()
    with pytest.raises(SystemExit):
        evals_main(["report", "--layout", "nope", "--results", str(m), "--out", str(tmp_path / "r2")])
    assert "invalid choice: 'nope'" in capsys.readouterr().err
