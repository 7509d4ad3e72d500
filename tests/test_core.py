"""Core types: stages, splits, metrics, predictions contract. Run: python -m pytest tests/test_core.py"""

import numpy as np
import pytest
import sklearn.metrics as sk

from psgvlm.metrics import stage_metrics
from psgvlm.predictions import make_rows, read_predictions, write_predictions
from psgvlm.splits import split_subjects, split_warnings
from psgvlm.stages import ISRUC_CODES, UNSCORED, map_codes


def test_map_codes_rejects_unknown():
    assert map_codes([0, 1, 5], ISRUC_CODES, source="x").tolist() == [0, 1, 4]
    with pytest.raises(ValueError, match="unknown stage code 7"):
        map_codes([0, 7], ISRUC_CODES, source="x.txt")


def test_split_subjects_disjoint_and_seeded():
    subs = [f"s{i}" for i in range(10)]
    a = split_subjects(subs, seed=0)
    assert a == split_subjects(subs, seed=0)
    assert a != split_subjects(subs, seed=1)
    assert len(a["test"]) == 2 and len(a["validation"]) == 1 and len(a["train"]) == 7
    assert not (set(a["train"]) & set(a["test"])) and not (set(a["validation"]) & set(a["test"]))
    with pytest.raises(ValueError, match="needs >= 3 subjects"):
        split_subjects(["a", "b"])


def test_split_warnings_name_splits_under_two_subjects_and_what_was_done():
    three = {"kind": "subject", "seed": 0, **split_subjects(["a", "b", "c"], seed=0)}
    (line,) = split_warnings(three)
    assert line.startswith("3 subjects were split 1 train / 1 validation / 1 test by subject (seed 0): "
                           "train (1), validation (1), test (1) hold fewer than 2 subjects")
    assert "--split none" in line
    (line,) = split_warnings({"kind": "subject", "seed": 3, **split_subjects([f"s{i}" for i in range(10)], seed=3)})
    assert ": validation (1) holds fewer than 2 subjects," in line
    assert split_warnings({"kind": "subject", **split_subjects([f"s{i}" for i in range(20)])}) == []
    assert split_warnings({"kind": "epoch", "train": ["a"], "validation": ["a"], "test": ["a"]}) == []


def test_stage_metrics_against_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 500)
    p = np.where(rng.random(500) < 0.7, y, rng.integers(0, 5, 500))
    m = stage_metrics(np.r_[y, UNSCORED], np.r_[p, 0])
    assert m["n_unscored"] == 1
    assert m["accuracy"] == pytest.approx(sk.accuracy_score(y, p))
    assert m["kappa"] == pytest.approx(sk.cohen_kappa_score(y, p))
    assert m["macro_f1"] == pytest.approx(sk.f1_score(y, p, average="macro"))
    assert m["weighted_f1"] == pytest.approx(sk.f1_score(y, p, average="weighted"))
    assert m["balanced_accuracy"] == pytest.approx(sk.balanced_accuracy_score(y, p))


def test_predictions_roundtrip(tmp_path):
    probs = np.eye(5)[[0, 1, 2, 3, 4, 2]] * 0.9 + 0.02
    rows = make_rows(dataset="isruc", subjects=["a"] * 6, recordings=["a"] * 6, epochs=range(6),
                     starts_s=np.arange(6) * 30.0, labels=[0, 1, 2, 3, 4, UNSCORED], probs=probs)
    metrics = write_predictions(tmp_path, rows)
    assert metrics["pooled"]["accuracy"] == 1.0 and metrics["n_unscored"] == 1
    assert read_predictions(tmp_path) == rows
