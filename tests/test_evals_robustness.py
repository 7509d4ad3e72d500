"""Robustness and channel-loss suites on synthetic generic-EDF recordings rendered by the real
builder (run as ``psgvlm render``, corruption handed over as a spec file), scored by a deterministic
pixel predictor (test stand-in for an image model).
Run: python -m pytest -q tests/test_evals_robustness.py"""

import json
import sys

import numpy as np
import pytest
from test_evals_common import PixelPredictor

from psgvlm.io.edf import EdfChannel, write_edf

SFREQ = 50.0
LABELS = {"F3-A2": "F3", "C3-A2": "C3", "C4-A1": "C4", "LOC-A2": "LOC", "Chin EMG": "EMG"}
MODS = {"F3": "EEG", "C3": "EEG", "C4": "EEG", "LOC": "EOG", "EMG": "EMG"}


@pytest.fixture(scope="module")
def edf_dir(tmp_path_factory):
    """Four subjects, four 30-s epochs each, as generic EDF + one-label-per-line hypnograms."""
    root = tmp_path_factory.mktemp("edf")
    for k in range(4):
        rng = np.random.default_rng(k)
        n = int(4 * 30 * SFREQ)
        chans = [EdfChannel(label=lab, sfreq=SFREQ, data=rng.standard_normal(n) * (30 if lab != "Chin EMG" else 5))
                 for lab in LABELS]
        write_edf(root / f"sub{k}.edf", chans)
        (root / f"sub{k}.csv").write_text("\n".join(["W", "N2", "N3", "REM"][::(1 if k % 2 else -1)]) + "\n")
    return root


def predictor():
    from psgvlm.image.renderer import RenderSettings

    meta = {"channels": list(MODS), "modalities": MODS, "sfreq": SFREQ,
            "settings": {"render": RenderSettings().as_dict()}, "split": {"kind": "none", "seed": 0}}
    weights = np.random.default_rng(1).standard_normal((len(MODS), 5)) * 3  # ink is ~0.3 per band: no saturation
    return PixelPredictor(meta, weights=weights)


def strip(res):
    res = dict(res)
    res.pop("provenance", None)
    return res


def test_clean_train_corrupted_test_reproducible(edf_dir, tmp_path):
    from evals.suites.robustness import run_clean_train

    a = run_clean_train(predictor(), fmt="generic", input=edf_dir, out=tmp_path / "a", seed=3, n_boot=50)
    saved = json.loads((tmp_path / "a" / "results.json").read_text())
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert a["n_subjects_affected"] == 3  # round(0.7 * 4)
    assert {e["channel"] for e in manifest} <= {"F3", "C3", "C4"} and len(manifest) == 9
    assert all(set(e) >= {"subject", "channel", "onset_s", "kind", "per"} for e in manifest)
    # the paper's protocol: one failure time and kind per subject, shared by its core channels
    assert len({(e["subject"], e["onset_s"], e["kind"]) for e in manifest}) == 3
    assert saved["corruption"]["per"] == "subject"
    assert saved["clean"]["n_epochs"] == saved["corrupted"]["n_epochs"] == 16
    assert a["affected"]["subjects"] == sorted({e["subject"] for e in manifest})
    assert set(a["delta"]["accuracy"]) == {"delta", "ci"}
    assert (tmp_path / "a" / "metrics_clean_vs_corrupted.png").exists()
    b = run_clean_train(predictor(), fmt="generic", input=edf_dir, out=tmp_path / "b", seed=3, n_boot=50)
    assert json.dumps(strip(a), sort_keys=True) == json.dumps(strip(b), sort_keys=True)
    assert (tmp_path / "a" / "samples.jsonl").read_bytes() == (tmp_path / "b" / "samples.jsonl").read_bytes()
    # the corrupted images differ from the clean ones exactly for the affected subjects
    samples = [json.loads(s) for s in (tmp_path / "a" / "samples.jsonl").read_text().splitlines()]
    changed = {s["subject"] for s in samples if s["probs_clean"] != s["probs_corrupted"]}
    assert changed == set(a["affected"]["subjects"])
    from evals.suites.report import run_report

    run_report([tmp_path / "a"], tmp_path / "rep")
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "## Robustness (clean-train)" in md and "| Acc |" in md and "metrics_clean_vs_corrupted" in md


def test_train_corrupted_runs_recipe_command(edf_dir, tmp_path):
    from evals.common import load_run
    from evals.inference import render, trained_render_kwargs
    from evals.suites.robustness import run_train_corrupted

    # a stand-in recipe: "trains" on {dataset} and predicts its labels (N2 for REM), writing predictions
    script = tmp_path / "recipe.py"
    script.write_text(
        "import sys, datasets, numpy as np\n"
        "from psgvlm.predictions import make_rows, write_predictions\n"
        "ds = datasets.load_from_disk(sys.argv[1])['all']\n"
        "p = np.eye(5)[[2 if y == 4 else y for y in ds['label']]]\n"
        "write_predictions(sys.argv[2], make_rows(dataset=ds['dataset'], subjects=ds['subject'],"
        " recordings=ds['recording'], epochs=ds['epoch'], starts_s=ds['start_s'], labels=ds['label'], probs=p))\n")
    kw = trained_render_kwargs(predictor().dataset_meta)
    render(fmt="generic", input=edf_dir, out=tmp_path / "clean_ds", **kw)  # the render stage, as a command
    import subprocess

    subprocess.run([sys.executable, str(script), str(tmp_path / "clean_ds"), str(tmp_path / "clean_run")], check=True)
    (tmp_path / "clean_run" / "meta.json").write_text(json.dumps({"kind": "stub", "dataset": predictor().dataset_meta}))
    res = run_train_corrupted(load_run(tmp_path / "clean_run"), fmt="generic", input=edf_dir, out=tmp_path / "o",
                              train_cmd=f"{sys.executable} {script} {{dataset}} {{out}}", render_kwargs=kw, n_boot=20)
    assert res["setting"] == "train-corrupted" and res["n_subjects_affected"] == 3
    assert res["delta"]["accuracy"]["delta"] == 0.0  # the stand-in recipe ignores the signals
    with pytest.raises(RuntimeError, match="train command failed"):
        run_train_corrupted(load_run(tmp_path / "clean_run"), fmt="generic", input=edf_dir, out=tmp_path / "p",
                            train_cmd=f"{sys.executable} -c 'raise SystemExit(3)' {{dataset}}", render_kwargs=kw,
                            n_boot=20)
    with pytest.raises(ValueError, match="must name its data"):
        run_train_corrupted(load_run(tmp_path / "clean_run"), fmt="generic", input=edf_dir, out=tmp_path / "q",
                            train_cmd="python train.py", render_kwargs=kw)


def test_train_corrupted_signal_recipe(edf_dir, tmp_path):
    """The signal-baseline path: {signal_data} gets a corrupted signal dataset with the same split."""
    from evals.common import load_run
    from evals.suites.robustness import run_train_corrupted
    from psgvlm.baselines.signal_data import build_signal_dataset, load_signal_dataset

    script = tmp_path / "signal_recipe.py"
    script.write_text(
        "import sys, numpy as np\n"
        "from psgvlm.baselines.signal_data import load_signal_dataset, select\n"
        "from psgvlm.baselines.common import write_run\n"
        "recs, meta = load_signal_dataset(sys.argv[1])\n"
        "test = select(recs, meta['split']['test'])\n"
        "probs = [np.eye(5)[np.clip(r.stages, 0, 4)] for r in test]\n"
        "write_run(sys.argv[2], kind='sdreamer', config={}, recs=test, probs=probs, dataset_meta=meta)\n")
    build_signal_dataset(fmt="generic", input=edf_dir, out=tmp_path / "clean_sig")
    import subprocess

    subprocess.run([sys.executable, str(script), str(tmp_path / "clean_sig"), str(tmp_path / "clean_run")], check=True)
    res = run_train_corrupted(load_run(tmp_path / "clean_run"), fmt="generic", input=edf_dir, out=tmp_path / "o",
                              train_cmd=f"{sys.executable} {script} {{signal_data}} {{out}}", seed=3, n_boot=20)
    assert res["n_subjects_affected"] == 3 and res["delta"]["accuracy"]["delta"] == 0.0
    clean, _ = load_signal_dataset(tmp_path / "clean_sig")
    bad, meta = load_signal_dataset(tmp_path / "o" / "signal_corrupted")
    affected = {e["subject"] for e in res["manifest"]}
    for a, b in zip(sorted(clean, key=lambda r: r.subject), sorted(bad, key=lambda r: r.subject)):
        assert np.array_equal(a.x["LOC"], b.x["LOC"])
        assert np.array_equal(a.x["C3"], b.x["C3"]) == (a.subject not in affected)
    # clean-train / corrupted-test with a predict command: only the run's test subjects are eligible
    from evals.suites.robustness import run_with_command

    res2 = run_with_command(load_run(tmp_path / "clean_run"), setting="clean-train", fmt="generic", input=edf_dir,
                            out=tmp_path / "ct", command=f"{sys.executable} {script} {{signal_data}} {{out}}",
                            seed=3, n_boot=20)
    test_subjects = json.loads((tmp_path / "clean_run" / "meta.json").read_text())["dataset"]["split"]["test"]
    assert {e["subject"] for e in res2["manifest"]} == set(test_subjects) and res2["setting"] == "clean-train"


def test_channel_loss_blank_and_rerender(edf_dir, tmp_path):
    from evals.suites.channel_loss import run_channel_loss

    res = run_channel_loss(predictor(), fmt="generic", input=edf_dir, out=tmp_path / "cl",
                           drops=[["EOG"], ["C3", "C4"]], n_boot=30)
    names = [t["name"] for t in res["tables"]]
    assert names == ["EOG/blank", "EOG/rerender", "C3+C4/blank", "C3+C4/rerender"]
    t = res["tables"][0]
    assert t["dropped"] == ["LOC"] and t["mode"] == "blank" and set(t["delta"]["kappa"]) == {"delta", "ci"}
    assert res["tables"][1]["channels_rendered"] == ["F3", "C3", "C4", "EMG"]
    again = run_channel_loss(predictor(), fmt="generic", input=edf_dir, out=tmp_path / "cl2", drops=[["EOG"]],
                             n_boot=30)
    assert json.dumps(res["tables"][:2], sort_keys=True) == json.dumps(again["tables"], sort_keys=True)
    from evals.suites.report import run_report

    run_report([tmp_path / "cl"], tmp_path / "rep")
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| EOG | blank |" in md and "| C3+C4 | rerender |" in md
    with pytest.raises(ValueError, match="channel 'Pz' not available"):
        run_channel_loss(predictor(), fmt="generic", input=edf_dir, out=tmp_path / "x", drops=[["Pz"]])
