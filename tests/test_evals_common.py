"""Shared eval helpers and the test-local helpers of the eval tests (run dirs, a stand-in predictor).
Run: python -m pytest -q tests/test_evals_common.py

Datasets come from the real builder (``tiny_dataset`` in conftest.py: ``psgvlm synth`` + ``psgvlm
render``). ``PixelPredictor`` is a test stand-in, not product code: a deterministic function of image
pixels exposing ``predict_proba(images) -> (n, 5)``.
"""

import numpy as np
import pytest

from evals.common import check_match, load_run
from psgvlm.image.dataset import band_layout, image_size, load_dataset
from psgvlm.predictions import make_rows, write_predictions
from psgvlm.provenance import write_json_atomic


def write_run(path, *, labels, preds, subjects, dataset="isruc", name="model", seed=0, probs=None, kind="vlm"):
    """A run dir in the predictions contract (predictions.jsonl, metrics.json, meta.json)."""
    labels = np.asarray(labels)
    n = len(labels)
    if probs is None:
        probs = np.full((n, 5), 0.05)
        probs[np.arange(n), preds] = 0.8
    epochs = np.zeros(n, int)
    for s in set(subjects):
        idx = [i for i in range(n) if subjects[i] == s]
        epochs[idx] = np.arange(len(idx))
    rows = make_rows(dataset=dataset, subjects=subjects, recordings=subjects, epochs=epochs,
                     starts_s=epochs * 30.0, labels=labels.tolist(), probs=probs)
    write_predictions(path, rows)
    write_json_atomic(path / "meta.json", {"kind": kind, "config": {"name": name, "seed": seed}})
    return path


def write_run_for(path, ds, preds, *, subjects=None, name="model", kind="vlm"):
    """A run dir predicting ``preds`` for every row of the dataset split ``ds`` (subjects renamed by the
    ``subjects`` dict when given), in the predictions contract."""
    cols = ds.select_columns(["dataset", "subject", "recording", "epoch", "start_s", "label"]).to_dict()
    subs = [(subjects or {}).get(s, s) for s in cols["subject"]]
    rows = make_rows(dataset=cols["dataset"], subjects=subs, recordings=subs, epochs=cols["epoch"],
                     starts_s=cols["start_s"], labels=cols["label"], probs=np.eye(5)[np.asarray(preds, int)])
    write_predictions(path, rows)
    write_json_atomic(path / "meta.json", {"kind": kind, "config": {"name": name, "seed": 0}})
    return path


class PixelPredictor:
    """Deterministic image -> probabilities: logits from the ink (dark pixels) in each band."""

    def __init__(self, meta, weights=None):
        self.dataset_meta = meta
        self.bands = band_layout(meta)
        rng = np.random.default_rng(0)
        self.weights = rng.standard_normal((len(self.bands), 5)) * 40 if weights is None else weights
        self.n_calls = 0

    def predict_proba(self, images, batch_size=64):
        out = []
        for im in images:
            a = np.asarray(im)
            rows = a.sum(axis=(1, 2), dtype=np.int64) / (a.shape[1] * a.shape[2] * 255.0)  # brightness per row
            ink = np.array([1 - rows[b["top"]:b["bottom"]].mean() for b in self.bands])
            z = ink @ self.weights
            z = np.exp(z - z.max())
            out.append(z / z.sum())
            self.n_calls += 1
        return np.array(out)


def test_band_layout_matches_the_ink_of_real_images(tiny_dataset):
    ds, meta = load_dataset(tiny_dataset, "all")
    bands = band_layout(meta)
    assert [b["channel"] for b in bands] == meta["channels"] and bands[6]["modality"] == "EOG"
    inside = np.zeros(image_size(meta), bool)
    for b in bands:
        inside[b["top"]:b["bottom"]] = True
    for i in (0, 15):
        ink = (np.asarray(ds[i]["image"].convert("L")) < 128).any(axis=1)  # rows holding a trace
        assert ink.any() and not (ink & ~inside).any()  # every trace lies inside a band
        assert all(ink[b["top"]:b["bottom"]].any() for b in bands)  # and every band holds one
    with pytest.raises(ValueError, match="no 'channels'"):
        band_layout({"settings": meta["settings"]})


def test_check_match_names_subjects(tmp_path):
    rows = [{"subject": "1", "recording": "1", "epoch": i} for i in range(3)]
    check_match(rows, [("1", "1", i) for i in range(3)])
    with pytest.raises(ValueError, match=r"only in predictions \['1'\], only in dataset \['2'\]"):
        check_match(rows, [("2", "2", i) for i in range(3)])
    with pytest.raises(ValueError, match=r"1 only in dataset \(e.g. \[\(.1., .1., 3\)\]"):
        check_match(rows, [("1", "1", i) for i in range(4)])


def test_load_run_reads_name_and_seed(tmp_path):
    write_run(tmp_path / "r", labels=[0, 1, 2], preds=[0, 1, 1], subjects=["a", "a", "b"], name="m", seed=3)
    run = load_run(tmp_path / "r")
    assert (run.name, run.seed, run.kind, run.datasets) == ("m", 3, "vlm", ["isruc"])
    with pytest.raises(FileNotFoundError):
        load_run(tmp_path / "missing")


def test_trained_render_kwargs_are_render_command_options():
    from evals.inference import trained_render_kwargs
    from psgvlm.image.renderer import RenderSettings

    meta = {"channels": ["C3", "LOC"], "sfreq": 100.0, "split": {"kind": "subject", "seed": 4},
            "settings": {"render": RenderSettings(size=224).as_dict(), "label_channels": True}}
    assert trained_render_kwargs(meta) == {"channels": ["C3", "LOC"], "size": 224, "sfreq": 100.0, "split": "subject",
                                           "split_seed": 4, "label_channels": True}
    meta["settings"]["render"]["line_color"] = "red"  # not expressible as a `psgvlm render` option: refused
    with pytest.raises(ValueError, match="rendered with {'line_color': 'red'}"):
        trained_render_kwargs(meta)
    with pytest.raises(ValueError, match="no channel order"):
        trained_render_kwargs({"settings": meta["settings"]})
