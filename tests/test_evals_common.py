"""Shared eval helpers and the test-local fixtures of the eval tests (tiny image datasets, stand-in
predictors). Run: python -m pytest -q tests/test_evals_common.py

The stand-ins here are test fixtures, not product code: ``render_stub`` draws each channel as a
polyline in its own equal-height band (the renderer's documented layout) and ``PixelPredictor`` is
a deterministic function of image pixels exposing ``predict_proba(images) -> (n, 5)``.
"""

import json

import numpy as np
import pytest

from evals.common import band_layout, check_match, load_run
from psgvlm.io.recording import Channel, Recording
from psgvlm.predictions import make_rows, write_predictions
from psgvlm.provenance import write_json_atomic

SIZE = 336
CHANNELS = ["F3", "C3", "O1", "LOC", "EMG"]
MODS = {"F3": "EEG", "C3": "EEG", "O1": "EEG", "LOC": "EOG", "EMG": "EMG"}


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


def render_stub(x, size=SIZE):
    """Polyline of each channel (rows of ``x``, any scale) in equal bands of a white image."""
    n_chans, n_times = x.shape
    img = np.full((size, size, 3), 255, np.uint8)
    edges = np.round(np.linspace(0, size, n_chans + 1)).astype(int)
    cols = np.arange(size)
    idx = np.minimum((cols * n_times) // size, n_times - 1)
    for c in range(n_chans):
        seg = x[c]
        lo, hi = seg.min(), seg.max()
        scaled = np.zeros_like(seg) if hi - lo < 1e-12 else 2 * (seg - lo) / (hi - lo) - 1
        top, bottom = edges[c], edges[c + 1]
        mid, half = (top + bottom - 1) / 2, (bottom - top - 2) / 2
        ys = np.clip(np.round(mid - scaled[idx] * half).astype(int), top, bottom - 1)
        for k in range(size - 1):  # vertical segments join consecutive columns
            a, b = sorted((ys[k], ys[k + 1]))
            img[a:b + 1, k] = 0
    return img


def make_recording(subject, n_epochs=6, sfreq=20.0, seed=0, spindle_channel=None):
    """A small Recording; when ``spindle_channel`` is given, N2 epochs carry a 13 Hz burst there."""
    rng = np.random.default_rng(seed)
    stages = rng.integers(0, 5, n_epochs).astype(np.int8)
    n = int(n_epochs * 30 * sfreq)
    t = np.arange(n) / sfreq
    chans = []
    for c in CHANNELS:
        data = rng.standard_normal(n).astype(np.float32) * 10
        chans.append(Channel(name=c, canonical=c, modality=MODS[c], sfreq=sfreq, data=data))
    return Recording(channels=chans, subject=subject, recording=subject, dataset="synthetic",
                     source=f"{subject}.edf", stages=stages), t


def build_stub(*, recordings, out, channels=CHANNELS, transform=None, split=None, sfreq=20.0):
    """Write a tiny image dataset in render.build's documented format (DatasetDict + meta.json)."""
    import datasets

    split = split or {"train": [], "validation": [], "test": sorted({r.subject for r in recordings})}
    cols = {k: [] for k in ("image", "label", "stage", "subject", "recording", "epoch", "start_s", "dataset",
                            "channels")}
    rows_by_split = {k: {kk: [] for kk in cols} for k in split if split[k]}
    stages = ["W", "N1", "N2", "N3", "REM"]
    for rec in recordings:
        rec = transform(rec) if transform else rec
        sp = next(k for k, v in split.items() if rec.subject in v)
        x = np.stack([rec.channel(c).data for c in channels])
        n_t = int(30 * sfreq)
        for e in range(rec.n_epochs):
            if rec.stages[e] < 0:
                continue
            from PIL import Image

            d = rows_by_split[sp]
            d["image"].append(Image.fromarray(render_stub(x[:, e * n_t:(e + 1) * n_t])))
            d["label"].append(int(rec.stages[e]))
            d["stage"].append(stages[rec.stages[e]])
            d["subject"].append(rec.subject)
            d["recording"].append(rec.recording)
            d["epoch"].append(e)
            d["start_s"].append(30.0 * e)
            d["dataset"].append(rec.dataset)
            d["channels"].append(",".join(channels))
    features = datasets.Features({
        "image": datasets.Image(), "label": datasets.ClassLabel(names=stages), "stage": datasets.Value("string"),
        "subject": datasets.Value("string"), "recording": datasets.Value("string"),
        "epoch": datasets.Value("int64"), "start_s": datasets.Value("float64"),
        "dataset": datasets.Value("string"), "channels": datasets.Value("string")})
    dd = datasets.DatasetDict({k: datasets.Dataset.from_dict(v, features=features)
                               for k, v in rows_by_split.items()})
    dd.save_to_disk(str(out))
    meta = {"kind": "psgvlm-image-dataset", "settings": {"size": SIZE}, "channels": list(channels),
            "modalities": {c: MODS[c] for c in channels}, "sfreq": sfreq,
            "split": {"kind": "subject", "seed": 0, **split}}
    (out / "meta.json").write_text(json.dumps(meta))
    return out


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
            a = np.asarray(im, dtype=np.float64).mean(-1) / 255.0
            ink = np.array([1 - a[b["top"]:b["bottom"]].mean() for b in self.bands])
            z = ink @ self.weights
            z = np.exp(z - z.max())
            out.append(z / z.sum())
            self.n_calls += 1
        return np.array(out)


def test_band_layout_equal_bands_and_edges():
    meta = {"channels": CHANNELS, "modalities": MODS, "settings": {"size": 336}}
    bands = band_layout(meta)
    assert [b["channel"] for b in bands] == CHANNELS
    assert bands[0]["top"] == 0 and bands[-1]["bottom"] == 336 and bands[3]["modality"] == "EOG"
    meta["settings"]["band_edges_px"] = [0, 10, 20, 30, 40, 336]
    assert {k: band_layout(meta)[1][k] for k in ("channel", "modality", "top", "bottom")} == {
        "channel": "C3", "modality": "EEG", "top": 10, "bottom": 20}
    with pytest.raises(ValueError, match="no 'channels'"):
        band_layout({"settings": {}})


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
