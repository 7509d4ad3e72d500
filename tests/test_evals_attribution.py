"""Feature-ablation attribution: known-answer maps and the attribution suite.
Run: python -m pytest -q tests/test_evals_attribution.py"""

import json

import numpy as np
import pytest
from test_evals_common import PixelPredictor

from evals.suites.attribution import run_attribution
from psgvlm.image.attribution import band_time_scores, describe, feature_ablation, minmax
from psgvlm.image.dataset import band_layout, load_dataset

MODS = {"F3": "EEG", "C3": "EEG", "O1": "EEG", "LOC": "EOG", "EMG": "EMG"}


class InkPredictor:
    """N2 probability grows with the total ink in the image (dark pixels), any band alike."""

    def __init__(self):
        self.n_images = 0

    def predict_proba(self, images, batch_size=64):
        out = []
        for im in images:
            ink = (255 - np.asarray(im, dtype=np.float64).mean(-1)).sum() / 255 / 2000
            z = np.array([0.0, 0.0, ink, 0.0, 0.3 * ink])
            z = np.exp(z - z.max())
            out.append(z / z.sum())
            self.n_images += 1
        return np.array(out)


def test_spindles_in_one_band_put_the_mass_there():
    from psgvlm.image.renderer import RenderSettings, render_epoch

    sfreq, chans = 100.0, ["F3", "C3", "O1", "LOC", "EMG"]
    t = np.arange(int(30 * sfreq)) / sfreq
    rng = np.random.default_rng(0)
    x = 0.02 * rng.standard_normal((len(chans), len(t)))
    burst = (t >= 10) & (t < 20)
    x[1] += burst * np.sin(2 * np.pi * 13 * t)  # spindle-like 13 Hz burst, C3 only, seconds 10-20
    x[1, 0], x[1, -1] = 1.0, -1.0
    settings = RenderSettings()
    img = render_epoch(np.clip(x, -1, 1).astype(np.float32), settings)  # other bands: near-flat lines
    pred = InkPredictor()
    res = feature_ablation(pred.predict_proba, img, batch_size=100)
    assert res["raw"].shape == (24, 24) and res["norm"].max() == 1.0 and res["norm"].min() == 0.0
    assert res["n_forward"] <= 577 and pred.n_images == res["n_forward"]
    meta = {"channels": chans, "modalities": MODS, "settings": {"render": settings.as_dict()}}
    cells = band_time_scores(res["norm"], band_layout(meta), size=336)
    assert cells["band_mass"][1] > 0.6, cells["band_mass"]
    assert cells["top"]["channel"] == "C3" and cells["top"]["window_s"] == [10.0, 20.0]
    assert describe("N2", cells).startswith("N2 decided on EEG (C3), seconds 10-20")


def test_predictor_reading_one_band_only(tiny_dataset):
    ds, meta = load_dataset(tiny_dataset, "all")
    loc = meta["channels"].index("LOC")
    weights = np.zeros((len(meta["channels"]), 5))
    weights[loc] = [0, 0, 0, 0, 60]  # only the LOC band's ink moves the output (to REM)
    pred = PixelPredictor(meta, weights=weights)
    img = np.asarray(ds[0]["image"].convert("RGB"))
    res = feature_ablation(pred.predict_proba, img, baseline="background", batch_size=64)
    cells = band_time_scores(res["norm"], band_layout(meta), size=img.shape[0])
    assert cells["band_mass"][loc] > 0.9 and cells["top"]["modality"] == "EOG"
    # black baseline also changes background patches: every patch is scored
    res_black = feature_ablation(pred.predict_proba, img, baseline="black", batch_size=64)
    assert res_black["n_forward"] == 577 and res["n_forward"] < 577


def test_bad_inputs():
    with pytest.raises(ValueError, match="not a whole number of 14x14 patches"):
        feature_ablation(lambda ims: np.full((len(ims), 5), 0.2), np.zeros((30, 30, 3), np.uint8))
    with pytest.raises(ValueError, match="baseline 'grey' unknown"):
        feature_ablation(lambda ims: np.full((len(ims), 5), 0.2), np.zeros((28, 28, 3), np.uint8), baseline="grey")
    with pytest.raises(ValueError, match=r"expected \(1, 5\)"):
        feature_ablation(lambda ims: np.full((len(ims), 3), 0.2), np.zeros((28, 28, 3), np.uint8))
    assert (minmax(np.ones((2, 2))) == 0).all()


def test_attribution_suite(tiny_dataset, tmp_path):
    ds, meta = load_dataset(tiny_dataset, "all")
    pred = PixelPredictor(meta)
    res = run_attribution(pred, tiny_dataset, tmp_path / "out", split="all", per_stage=1, batch_size=128,
                          max_plots_per_stage=1)
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    samples = [json.loads(s) for s in (tmp_path / "out" / "samples.jsonl").read_text().splitlines()]
    n_stages_present = len(set(ds["label"]))
    assert len(samples) == n_stages_present
    assert sum(a["n"] for a in saved["aggregates"].values()) == len(samples)
    assert saved["timing"]["forward_passes_max"] <= 577
    assert all(np.asarray(s["raw_map"]).shape == (24, 24) for s in samples)
    assert any(p.name.startswith("heatmap_") for p in (tmp_path / "out").iterdir())
    assert res["summaries"] and "decided on" in res["summaries"][0]
    other = PixelPredictor({**meta, "channels": [meta["channels"][1], meta["channels"][0], *meta["channels"][2:]]})
    with pytest.raises(ValueError, match="trained on images of channels"):
        run_attribution(other, tiny_dataset, tmp_path / "o2", split="all", per_stage=1)
