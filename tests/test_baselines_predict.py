"""Predict-only mode of the signal recipes (``--from_run``) and ``evals robustness --predict-cmd`` on it.

Run: python -m pytest -q tests/test_baselines_predict.py     (~1 min on 2 busy cores)

Data: 8 synthetic ISRUC-format subjects of 10 min (``psgvlm synth``, the true on-disk format), a
signal dataset with a subject split (2 test subjects), tiny models trained for a few steps.
"""

import importlib.util
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
CFG = REPO / "recipes" / "configs"


def _recipe(name):
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", REPO / "recipes" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _rows(run):
    rows = [json.loads(x) for x in (Path(run) / "predictions.jsonl").read_text().splitlines()]
    return sorted(rows, key=lambda r: (r["subject"], r["recording"], r["epoch"]))


@pytest.fixture(scope="module")
def isruc(tmp_path_factory):
    """(raw ISRUC dir, signal dataset dir, trained tiny sDREAMER run dir)."""
    from psgvlm.baselines.signal_data import build_signal_dataset
    from psgvlm.cli import main as cli

    tmp = tmp_path_factory.mktemp("isruc")
    assert cli(["synth", "--format", "isruc", "--subjects", "8", "--minutes", "10", "--seed", "0",
                "--out", str(tmp / "raw"), "--quiet"]) == 0
    sig = build_signal_dataset(fmt="isruc", input=tmp / "raw", out=tmp / "sig")
    assert _recipe("sdreamer").main(["--config", str(CFG / "sdreamer_tiny.yaml"), "--signal_data", str(sig),
                                     "--output_dir", str(tmp / "sd"), "--seq_len", "8", "--max_steps", "4",
                                     "--per_device_train_batch_size", "4", "--threads", "1"]) == 0
    return tmp / "raw", sig, tmp / "sd"


def test_sdreamer_predict_only_reproduces_the_runs_own_predictions(isruc, tmp_path):
    _, sig, run = isruc
    assert _recipe("sdreamer").main(["--from_run", str(run), "--signal_data", str(sig),
                                     "--output_dir", str(tmp_path / "p"), "--threads", "1", "--seq_len", "99"]) == 0  # K comes from the run, not flags
    a, b = _rows(run), _rows(tmp_path / "p")
    assert len(a) == len(b) == 40 and len({r["subject"] for r in a}) == 2  # 2 test subjects x 20 epochs
    assert [r["pred"] for r in a] == [r["pred"] for r in b]
    assert [r["probs"] for r in a] == [r["probs"] for r in b]
    meta = json.loads((tmp_path / "p" / "meta.json").read_text())
    assert meta["predict_only"] is True and meta["source_run"] == str(run.resolve())
    assert meta["kind"] == "sdreamer" and meta["config"]["args"]["seq_len"] == 8 and meta["provenance"]["git_sha"]
    assert json.loads((tmp_path / "p" / "metrics.json").read_text())["pooled"] == \
        json.loads((run / "metrics.json").read_text())["pooled"]
    assert not (tmp_path / "p" / "model.pt").exists()


def test_sleep2vec_predict_only_reproduces_the_runs_own_predictions(isruc, tmp_path):
    _, sig, _ = isruc
    common = ["--signal_data", str(sig), "--seq_len", "8", "--max_steps", "2", "--per_device_train_batch_size", "4",
              "--threads", "1"]
    assert _recipe("sleep2vec_pretrain").main(["--config", str(CFG / "sleep2vec_tiny_pretrain.yaml"),
                                               "--output_dir", str(tmp_path / "pre"), *common]) == 0
    ft = _recipe("sleep2vec_finetune")
    assert ft.main(["--config", str(CFG / "sleep2vec_tiny_finetune.yaml"), "--pretrained", str(tmp_path / "pre"),
                    "--output_dir", str(tmp_path / "ft"), *common]) == 0
    assert ft.main(["--from_run", str(tmp_path / "ft"), "--signal_data", str(sig), "--output_dir", str(tmp_path / "p"),
                    "--threads", "1"]) == 0
    a, b = _rows(tmp_path / "ft"), _rows(tmp_path / "p")
    assert len(a) == 40 and [(r["pred"], r["probs"]) for r in a] == [(r["pred"], r["probs"]) for r in b]
    with pytest.raises(ValueError, match="--pretrained .* is needed to fine-tune"):
        ft.main(["--signal_data", str(sig), "--output_dir", str(tmp_path / "x")])
    with pytest.raises(ValueError, match="is a 'sleep2vec' run; this recipe predicts with 'sdreamer' runs"):
        _recipe("sdreamer").main(["--from_run", str(tmp_path / "ft"), "--signal_data", str(sig),
                                  "--output_dir", str(tmp_path / "y")])
    with pytest.raises(FileNotFoundError, match="no model.pt"):
        ft.main(["--from_run", str(tmp_path / "p"), "--signal_data", str(sig), "--output_dir", str(tmp_path / "z")])


def test_evals_robustness_clean_train_with_predict_cmd_on_sdreamer(isruc, tmp_path):
    from evals.__main__ import main as evals

    raw, _, run = isruc
    cmd = (f"{sys.executable} {REPO / 'recipes/sdreamer.py'} --from_run {{run}} --signal_data {{signal_data}} "
           "--output_dir {out} --threads 1")
    out = tmp_path / "rob"
    assert evals(["robustness", "--run", str(run), "--format", "isruc", "--input", str(raw), "--out", str(out),
                  "--predict-cmd", cmd, "--fraction", "0.5", "--seed", "0", "--n-boot", "20"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["setting"] == "clean-train" and res["n_subjects_affected"] == 1
    affected = {e["subject"] for e in res["manifest"]}
    test_subjects = set(json.loads((run / "meta.json").read_text())["dataset"]["split"]["test"])
    assert affected < test_subjects  # only the clean run's test subjects are eligible
    samples = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 40
    intact = [s for s in samples if not s["subject_corrupted"]]
    hit = [s for s in samples if s["subject_corrupted"]]
    # the intact subject's signals are untouched: predict-only reproduces the clean run exactly
    assert intact and all(s["probs_clean"] == s["probs_corrupted"] for s in intact)
    assert any(s["probs_clean"] != s["probs_corrupted"] for s in hit)
    pmeta = json.loads((out / "run_corrupted" / "meta.json").read_text())
    assert pmeta["predict_only"] is True and pmeta["dataset"]["corruption"]["fraction"] == 0.5
    assert np.isfinite(res["delta"]["kappa"]["delta"])
