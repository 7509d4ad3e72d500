"""Shared pytest fixtures. Run the suite: python -m pytest -q tests/"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

# Hermetic: nothing in the suite may reach a hub or send analytics.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

REAL_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """``../shared/data/real`` relative to the repo root; skips the test when that folder is absent."""
    if not REAL_DATA_DIR.is_dir():
        pytest.skip(f"real data folder {REAL_DATA_DIR} is absent (public recordings, not in the repo)")
    return REAL_DATA_DIR


# -- eval fixtures: a tiny synthetic night rendered by the real builder, and a tiny image model ----------
def _psgvlm(*args) -> None:
    """Run a ``psgvlm`` command the way a user does (a fresh process), failing with its stderr."""
    proc = subprocess.run([sys.executable, "-m", "psgvlm.cli", *map(str, args)], capture_output=True, text=True)
    assert proc.returncode == 0, f"psgvlm {' '.join(map(str, args))} failed:\n{proc.stderr[-3000:]}"


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory) -> Path:
    """``psgvlm synth``: three subjects, five minutes (10 epochs, every stage) each, ISRUC layout."""
    root = tmp_path_factory.mktemp("evals") / "synth"
    _psgvlm("synth", "--format", "isruc", "--subjects", 3, "--minutes", 5, "--seed", 0, "--out", root, "--quiet")
    return root


@pytest.fixture(scope="session")
def tiny_dataset(tiny_synth) -> Path:
    """``psgvlm render`` of :func:`tiny_synth` without a split: one split ``all``, 3 subjects x 10 epochs."""
    out = tiny_synth.parent / "images"
    _psgvlm("render", "--format", "isruc", "--input", tiny_synth, "--out", out, "--split", "none", "--quiet")
    return out


@pytest.fixture(scope="session")
def tiny_image_run(tiny_dataset) -> Path:
    """An image-classifier run dir (untrained tiny ResNet, seeded) that ``load_predictor`` reads, with
    :func:`tiny_dataset`'s meta as its training data."""
    import torch

    from psgvlm.image.dataset import read_dataset_meta
    from psgvlm.vlm.classifiers import build_classifier, save_classifier_run

    torch.manual_seed(0)
    model, pre = build_classifier("resnet", size="tiny", image_size=32)  # 32 px: cheap forward passes
    run = tiny_dataset.parent / "resnet_run"
    save_classifier_run(model, pre, run, arch="resnet", meta_extra={
        "config": {"arch": "resnet", "name": "tiny-resnet", "seed": 0},
        "dataset_meta": read_dataset_meta(tiny_dataset)})
    return run
