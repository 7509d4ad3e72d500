"""NAP over a VLM run, an image-classifier run and an sDREAMER run on the same synthetic ISRUC data.

Run: python -m pytest -q tests/test_nap_vlm.py     (~1-1.5 min on 2 busy cores)

The VLM recipe runs with ``recipes/configs/llava_tiny_cpu.yaml`` (its ``predict_splits`` gives the
train/validation/test predictions NAP needs) on a tiny LLaVA-NeXT built locally, for 2 steps. Two
epochs per recording are marked unscored before rendering and before the signal dataset is built:
the image datasets leave them out, the signal dataset keeps them (label -1), so NAP must align the
streams on the shared epochs and report the two it dropped per recording.
"""

import json
import os
import runpy
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
CFG = REPO / "recipes" / "configs"
UNSCORED_EPOCHS = [3, 10]


class MarkUnscored:
    """Builder transform (test fixture): epochs ``UNSCORED_EPOCHS`` of every recording become unscored."""

    description = f"mark epochs {UNSCORED_EPOCHS} unscored"

    def __call__(self, rec):
        from psgvlm.stages import UNSCORED

        rec.stages = np.array(rec.stages, copy=True)
        rec.stages[UNSCORED_EPOCHS] = UNSCORED
        return rec


def _run_script(script, *argv):
    old = sys.argv
    sys.argv = [str(script), *map(str, argv)]
    try:
        return runpy.run_path(str(script), run_name="__main__")
    finally:
        sys.argv = old


def _recipe_main(name, *argv):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"recipe_{name}", REPO / "recipes" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.main(list(map(str, argv)))


def _rows(path):
    return [json.loads(x) for x in Path(path).read_text().splitlines()]


def test_nap_over_vlm_classifier_and_sdreamer_runs_drops_only_unscored_epochs(tmp_path):
    from psgvlm.baselines.signal_data import recording_to_signal, resolve_split, save_signal_dataset
    from psgvlm.cli import main as cli
    from psgvlm.io.readers import find_recordings, read_recording
    from render.build import build_dataset

    raw, img = tmp_path / "raw", tmp_path / "img"
    assert cli(["synth", "--format", "isruc", "--subjects", "5", "--minutes", "10", "--seed", "0",
                "--out", str(raw), "--quiet"]) == 0
    meta = build_dataset(fmt="isruc", input=raw, out=img, transform=MarkUnscored(), progress=False)
    assert meta["counts"]  # 18 scored epochs per recording are images
    recs = [recording_to_signal(MarkUnscored()(read_recording("isruc", **j))) for j in find_recordings("isruc", raw)]
    sig = save_signal_dataset(recs, tmp_path / "sig", split=resolve_split([r.subject for r in recs], split_from=img))
    split = meta["split"]
    assert cli(["tiny-model", "--out", str(tmp_path / "tiny"), "--image-size", "112"]) == 0

    # ---- predictors: VLM (tiny CPU config), image classifier (tiny CPU config), sDREAMER -------------
    vlm, cnn, sd = tmp_path / "vlm", tmp_path / "cnn", tmp_path / "sd"
    _run_script(REPO / "recipes/llava_isruc.py", "--config", CFG / "llava_tiny_cpu.yaml", "--dataset", img,
                "--model", tmp_path / "tiny", "--output_dir", vlm, "--max_steps", "2")
    _run_script(REPO / "recipes/image_classifier.py", "--config", CFG / "classifier_tiny_cpu.yaml", "--dataset", img,
                "--output_dir", cnn, "--num_train_epochs", "1")
    assert _recipe_main("sdreamer", "--config", CFG / "sdreamer_tiny.yaml", "--signal_data", sig, "--output_dir", sd,
                        "--seq_len", "8", "--max_steps", "3", "--per_device_train_batch_size", "4") == 0
    for run in (vlm, cnn):
        for name, target in (("train", run / "predictions_train"), ("validation", run / "predictions_validation"),
                             ("test", run)):
            rows = _rows(target / "predictions.jsonl")
            assert {r["subject"] for r in rows} == set(split[name]), (run, name)
            assert len(rows) == 18 * len(split[name]) and not any(r["epoch"] in UNSCORED_EPOCHS for r in rows)
    assert len(_rows(sd / "predictions.jsonl")) == 20 * len(split["test"])  # the signal stream keeps them

    # ---- NAP: aligned on the shared (recording, epoch), the unscored epochs reported --------------------
    nap = tmp_path / "nap"
    assert _recipe_main("nap", "--config", CFG / "nap_paper.yaml", "--signal_data", sig, "--output_dir", nap,
                        "--predictors", f"vlm={vlm}", f"cnn={cnn}", f"sd={sd}", "--max_steps", "3",
                        "--min_len", "4", "--max_len", "8") == 0
    nap_meta = json.loads((nap / "meta.json").read_text())
    dropped = nap_meta["dropped_unscored"]
    assert len(dropped) == 5 and all(d["epochs"] == UNSCORED_EPOCHS for d in dropped)
    assert all(d["missing_from"] == {"vlm@*": 2, "cnn@*": 2} for d in dropped)
    rows = _rows(nap / "predictions.jsonl")
    assert len(rows) == 18 * len(split["test"]) and {r["subject"] for r in rows} == set(split["test"])
    table = json.loads((nap / "metrics_table.json").read_text())
    assert {"nap", "soft_vote", "vlm@*", "cnn@*", "sd@*", "nap_without_vlm"} <= set(table)

    # ---- real mismatches are still refused ------------------------------------------------------------
    from psgvlm.baselines.nap import load_streams

    partial = tmp_path / "vlm_no_train"
    shutil.copytree(vlm, partial, ignore=shutil.ignore_patterns("predictions_train", "adapter", "processor"))
    with pytest.raises(ValueError, match=r"cover different recordings.*--predict_splits train validation test"):
        load_streams({"vlm": partial, "sd": sd})


def _stream(path, epochs, labels, subject="1"):
    from psgvlm.predictions import make_rows, write_predictions

    probs = np.random.default_rng(len(epochs)).dirichlet(np.ones(5), len(epochs))
    write_predictions(path, make_rows(dataset="d", subjects=[subject] * len(epochs), recordings=["r"] * len(epochs),
                                      epochs=epochs, starts_s=30.0 * np.asarray(epochs), labels=labels, probs=probs))


def test_load_streams_drops_epochs_unscored_where_present_and_refuses_scored_gaps(tmp_path):
    from psgvlm.baselines.nap import load_streams

    labels = [2] * 12
    labels[4] = labels[7] = -1
    _stream(tmp_path / "sig", list(range(12)), labels)  # keeps unscored epochs 4 and 7
    kept = [e for e in range(12) if e not in (4, 7)]
    _stream(tmp_path / "img", kept, [2] * 10)  # leaves them out
    s = load_streams({"img": tmp_path / "img", "sig": tmp_path / "sig"})
    (rec,) = s["recordings"].values()
    assert rec["epochs"].tolist() == kept and rec["probs"].shape == (1, 10, 2, 5)
    assert s["dropped"] == [{"dataset": "d", "subject": "1", "recording": "r", "epochs": [4, 7],
                             "missing_from": {"img@*": 2}}]
    assert load_streams({"sig": tmp_path / "sig", "sig2": tmp_path / "sig"})["dropped"] == []
    _stream(tmp_path / "gap", [e for e in range(12) if e != 5], [2] * 11)  # epoch 5 is scored elsewhere
    with pytest.raises(ValueError, match=r"scored epochs not in both: \[5\]"):
        load_streams({"sig": tmp_path / "sig", "gap": tmp_path / "gap"})
