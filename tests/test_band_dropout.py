"""Band dropout (training) draws exactly what `psgvlm stage` draws for a missing channel; physical scaling end to end.

Run: python -m pytest -q tests/test_band_dropout.py   (a few seconds)
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from psgvlm.image.renderer import RenderSettings, colors_for_modalities, render_epoch, scale_epochs
from psgvlm.io.recording import Channel, Recording
from psgvlm.night.grid import band_epochs
from psgvlm.vlm.data import BandDropout, BandDropoutDataset

BANDS = ["F3", "C3", "O1", "F4", "C4", "O2", "LOC", "ROC", "EMG", "ECG", "LEG1", "LEG2"]
MODS = {**{b: "EEG" for b in BANDS[:6]}, "LOC": "EOG", "ROC": "EOG", "EMG": "EMG", "ECG": "ECG", "LEG1": "EMG",
        "LEG2": "EMG"}
SFREQ = 100.0
N_TIMES = int(30 * SFREQ)


def _meta(settings: RenderSettings) -> dict:
    return {"channels": BANDS, "modalities": MODS, "sfreq": SFREQ, "epoch_s": 30.0,
            "settings": {"render": settings.as_dict()}}


def _recording(names, n_epochs=3, seed=0) -> Recording:
    """A recording holding the bands ``names``: each a mix of a slow wave and noise, in microvolts."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(n_epochs * 30 * SFREQ)) / SFREQ
    chans = []
    for i, name in enumerate(BANDS):
        x = (40 + 10 * i) * np.sin(2 * np.pi * (0.5 + 0.3 * i) * t) + rng.normal(0, 8, len(t))
        if name in names:
            chans.append(Channel(name=name, canonical=name, modality=MODS[name], sfreq=SFREQ,
                                 data=(x + 30).astype(np.float32)))  # a DC offset: physical scaling removes it
    return Recording(channels=chans, subject="s", recording="r", dataset="generic", source="r.edf")


SETTINGS = {
    "default": RenderSettings(),
    "colours_labels": RenderSettings(line_colors=colors_for_modalities([MODS[b] for b in BANDS]), labels=tuple(BANDS)),
    "physical_224_thick": RenderSettings(size=224, scaling="physical", line_width_px=1.5, band_gap_px=1.0),
}


@pytest.mark.parametrize("name", list(SETTINGS))
def test_dropout_equals_rendering_the_bands_flat(name):
    settings = SETTINGS[name]
    rng = np.random.default_rng(1)
    raw = rng.normal(0, 30, (len(BANDS), N_TIMES)).astype(np.float32)
    x = scale_epochs(raw, [MODS[b] for b in BANDS], settings)
    image = Image.fromarray(render_epoch(x, settings))
    bd = BandDropout(_meta(settings), p=1.0)
    for seed in range(6):
        flat = bd.draw(np.random.default_rng(seed))
        assert flat.any() and not flat.all()
        want = x.copy()
        want[flat] = 0.0  # what psgvlm stage renders for a band it has no channel for
        got = np.asarray(bd.apply(image, flat))
        assert np.array_equal(got, render_epoch(want, settings)), (name, flat)
    # Negative control: blanking a band to the background (no mid-line) is not what stage draws.
    flat = np.zeros(len(BANDS), bool)
    flat[3] = True
    blank = np.asarray(image).copy()
    b = bd.bands[3]
    blank[b["top"]:b["bottom"]] = 255
    assert not np.array_equal(blank, np.asarray(bd.apply(image, flat)))


@pytest.mark.parametrize("scaling", ["minmax", "physical", "recording"])
def test_dropout_equals_what_stage_draws_for_a_recording_without_those_channels(scaling):
    settings = RenderSettings(scaling=scaling)
    full = _recording(BANDS)
    few = ["C3", "LOC", "EMG"]
    x_full, *_ = band_epochs(full, list(BANDS), SFREQ, settings)
    x_few, *_ = band_epochs(_recording(few), [b if b in few else None for b in BANDS], SFREQ, settings)
    bd = BandDropout(_meta(settings), p=1.0)
    flat = np.array([b not in few for b in BANDS])
    for k in range(len(x_full)):
        staged = render_epoch(x_few[k], settings)
        dropped = np.asarray(bd.apply(Image.fromarray(render_epoch(x_full[k], settings)), flat))
        assert np.array_equal(dropped, staged)


def test_draw_policy():
    bd = BandDropout(_meta(RenderSettings()), p=0.6, single_eeg_prob=0.5)
    eeg = np.arange(6)
    draws = np.array([bd.draw(np.random.default_rng([7, i])) for i in range(2000)])
    touched = draws.any(1)
    assert 0.55 < touched.mean() < 0.65
    assert np.all((~draws[:, eeg]).any(1))  # an EEG band is always kept
    alone = draws[touched].sum(1) == len(BANDS) - 1
    assert 0.4 < alone.mean() < 0.6  # about half of them keep one EEG band alone
    assert not BandDropout(_meta(RenderSettings()), p=0.0).draw(np.random.default_rng(0)).any()
    only = BandDropout(_meta(RenderSettings()), p=1.0, single_eeg_prob=1.0)
    kept = [np.flatnonzero(~only.draw(np.random.default_rng(i))) for i in range(60)]
    assert all(len(k) == 1 and k[0] < 6 for k in kept) and len({int(k[0]) for k in kept}) == 6


def test_dataset_view_is_seeded_per_image():
    settings = RenderSettings()
    rng = np.random.default_rng(0)
    images = [Image.fromarray(render_epoch(rng.uniform(-1, 1, (len(BANDS), 300)).astype(np.float32), settings))
              for _ in range(4)]
    rows = [{"image": im, "label": i % 5} for i, im in enumerate(images)]
    bd = BandDropout(_meta(settings), p=1.0)
    a = BandDropoutDataset(rows, bd, seed=(0, 0))
    b = BandDropoutDataset(rows, bd, seed=(0, 0))
    c = BandDropoutDataset(rows, bd, seed=(0, 1))  # the next pass over the data draws again
    assert len(a) == 4 and a[2]["label"] == 2
    order = [3, 1, 2, 0]
    first = {i: np.asarray(a[i]["image"]) for i in order}  # any order, same images
    assert all(np.array_equal(first[i], np.asarray(b[i]["image"])) for i in range(4))
    assert any(not np.array_equal(first[i], np.asarray(c[i]["image"])) for i in range(4))
    assert all(not np.array_equal(first[i], np.asarray(images[i])) for i in range(4))
    assert rows[0]["image"] is images[0]  # the source rows are untouched


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match=r"band_dropout=1.5.*\[0, 1\]"):
        BandDropout(_meta(RenderSettings()), p=1.5)
    with pytest.raises(ValueError, match="single_eeg_prob"):
        BandDropout(_meta(RenderSettings()), p=0.5, single_eeg_prob=-0.1)
    with pytest.raises(ValueError, match="band_gap_px >= 1"):
        BandDropout(_meta(replace(RenderSettings(), band_gap_px=0.5)), p=0.5)
    meta = {**_meta(RenderSettings()), "modalities": {b: "EOG" for b in BANDS}}
    with pytest.raises(ValueError, match="has none"):
        BandDropout(meta, p=0.5)
    bd = BandDropout(_meta(RenderSettings()), p=1.0)
    with pytest.raises(ValueError, match="224x224 px.*336 px"):
        bd.apply(Image.new("RGB", (224, 224), "white"), np.ones(len(BANDS), bool))


def test_stage_draws_with_the_runs_scaling(tmp_path):
    """A run trained on physically scaled images is staged with physical scaling (its dataset meta says so)."""
    from psgvlm.night.stage import stage_recording

    class Fixed:  # a predictor with the run's dataset meta; the scores do not matter here
        def __init__(self, settings):
            self.dataset_meta = {**_meta(settings), "sfreq": SFREQ}

        def predict_proba(self, images, batch_size=16):
            return np.full((len(images), 5), 0.2, np.float32)

    rec = _recording(["C3", "EMG"], n_epochs=2)
    out = {}
    for scaling in ("minmax", "physical"):
        path = tmp_path / f"{scaling}.npy"
        res = stage_recording(rec, run_dir=tmp_path, predictor=Fixed(RenderSettings(scaling=scaling)), epochs_path=path)
        assert res.settings["scaling"] == scaling
        out[scaling] = np.load(path).astype(np.float32)
    c3 = rec.channel("C3").data[: N_TIMES]
    assert np.allclose(out["physical"][0, 1], np.clip((c3 - c3.mean()) / 100.0, -1, 1), atol=2e-3)  # EEG: +-100 uV
    assert out["minmax"][0, 1].max() == pytest.approx(1.0, abs=1e-3)
    assert np.abs(out["physical"][:, [0, 2, 3]]).max() == 0  # missing bands: the mid-line under either scaling
    json.dumps(res.settings)  # the summary can hold it
