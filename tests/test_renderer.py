"""psgvlm.image.renderer: the fast numpy renderer, the matplotlib reference, settings validation.

Run: python -m pytest -q tests/test_renderer.py
"""

import matplotlib
import numpy as np
import pytest

from psgvlm.image.renderer import (
    RENDERER_VERSION,
    RenderSettings,
    colors_for_modalities,
    image_agreement,
    render_epoch,
    render_epoch_reference,
    scale_epochs,
)
from psgvlm.signal.epochs import minmax_scale


def _psg_like(n_chans=12, sfreq=200.0, seed=0):
    """One scaled 30-s epoch: 1/f-ish background, alpha / spindle bursts, slow waves, EMG-like noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(30 * sfreq)) / sfreq
    rows = []
    for k in range(n_chans):
        brown = np.cumsum(rng.standard_normal(t.size)) / 20
        tone = np.sin(2 * np.pi * (0.7 + 1.3 * k) * t + k) * (1 + np.sin(2 * np.pi * t / 7))
        rows.append(brown + tone + (0.8 if k % 4 == 3 else 0.1) * rng.standard_normal(t.size))
    return minmax_scale(np.stack(rows))


def test_shape_dtype_and_determinism():
    x = _psg_like()
    s = RenderSettings()
    a = render_epoch(x, s)
    assert a.shape == (336, 336, 3) and a.dtype == np.uint8
    assert a.tobytes() == render_epoch(x.copy(), s).tobytes()
    b = render_epoch_reference(x, s)
    assert b.shape == (336, 336, 3) and b.dtype == np.uint8
    assert b.tobytes() == render_epoch_reference(x, s).tobytes()


def test_fast_agrees_with_matplotlib_reference():
    s = RenderSettings()
    for seed in (0, 1):
        x = _psg_like(seed=seed)
        agree = image_agreement(render_epoch(x, s), render_epoch_reference(x, s))
        assert agree["ssim"] > 0.95, agree
        assert agree["mad"] < 8.0, agree
    # the metric itself separates different drawings
    other = image_agreement(render_epoch(_psg_like(seed=0), s), render_epoch(_psg_like(seed=1), s))
    assert other["ssim"] < 0.6, other


def test_reference_leaves_matplotlib_global_state_alone():
    before = dict(matplotlib.rcParams)
    render_epoch_reference(_psg_like(n_chans=2), RenderSettings(size=64))
    assert dict(matplotlib.rcParams) == before


def _band_rows(n_chans, s: RenderSettings):
    band_h = (s.size - s.band_gap_px * (n_chans - 1)) / n_chans
    return [(k * (band_h + s.band_gap_px), k * (band_h + s.band_gap_px) + band_h) for k in range(n_chans)]


@pytest.mark.parametrize("renderer", [render_epoch, render_epoch_reference])
def test_each_channel_ink_stays_in_its_band(renderer):
    n = 6
    s0 = RenderSettings(size=120, line_width_px=1.5)
    rows = _band_rows(n, s0)
    t = np.arange(3000)
    x = np.where((t // 37) % 2 == 0, 1.0, -1.0)  # square wave: full-height steep strokes, both extremes
    x = np.tile(x, (n, 1))
    for k in (0, 2, n - 1):
        colors = ["white"] * n
        colors[k] = "black"
        img = renderer(x, RenderSettings(size=120, line_width_px=1.5, line_colors=tuple(colors)))
        ink_rows = np.flatnonzero((img < 250).any(axis=(1, 2)))
        top, bottom = rows[k]
        assert ink_rows.min() >= np.floor(top) and ink_rows.max() <= np.ceil(bottom) - 1, (k, ink_rows, rows[k])
        # and the stroke reaches both ends of the band (square wave spans [-1, 1])
        assert ink_rows.min() <= top + 1.5 and ink_rows.max() >= bottom - 2.5


def test_top_band_is_first_channel():
    x = np.zeros((3, 600))
    x[0] = np.sin(np.arange(600) / 3)  # only channel 0 wiggles
    img = render_epoch(x, RenderSettings(size=90, band_gap_px=3.0)).astype(int)
    ink = 255 - img[..., 0]
    per_band = [ink[0:28].sum(), ink[31:59].sum(), ink[62:90].sum()]
    assert per_band[0] > 3 * per_band[1] and per_band[1] == pytest.approx(per_band[2], rel=0.05)


def test_flat_channel_renders_as_a_flat_line():
    raw = np.zeros((2, 6000), np.float32)
    raw[1] = np.random.default_rng(0).standard_normal(6000)
    x = minmax_scale(raw)  # channel 0 is flat -> 0, not NaN
    assert np.all(np.isfinite(x))
    s = RenderSettings(size=100)
    for renderer in (render_epoch, render_epoch_reference):
        img = renderer(x, s)
        band0 = img[: 49]  # (100 - 2) / 2 = 49 px per band
        ink_rows = np.flatnonzero((band0 < 200).any(axis=(1, 2)))
        assert 1 <= len(ink_rows) <= 2 and abs(ink_rows.mean() - 24.5) <= 1.0
        # the flat line spans the width
        assert (band0[ink_rows].min(axis=(0, 2)) < 200)[1:-1].all()


def test_labels_colors_and_settings_dict():
    x = _psg_like(n_chans=3)
    mods = ["EEG", "EOG", "EMG"]
    s = RenderSettings(labels=("C3", "LOC", "EMG"), line_colors=colors_for_modalities(mods))
    img = render_epoch(x, s)
    plain = render_epoch(x, RenderSettings(line_colors=colors_for_modalities(mods)))
    margin = slice(0, s.label_margin_px)
    assert (img[:, margin] != 255).any()  # text drawn in the margin...
    assert (img[:, margin] != 255).sum() < 0.5 * (plain[:, margin] != 255).sum()  # ...instead of waveform
    # EOG band (middle) is blue-ish, EMG band (bottom) red-ish
    mid, bot = img[120:210, 40:], img[240:, 40:]
    assert mid[..., 2].astype(int).mean() > mid[..., 0].astype(int).mean()
    assert bot[..., 0].astype(int).mean() > bot[..., 2].astype(int).mean()
    d = s.as_dict()
    assert d["renderer_version"] == RENDERER_VERSION and d["labels"] == ["C3", "LOC", "EMG"]
    assert RenderSettings.from_dict(d) == s


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"size": 0}, r"size=0"),
    ({"size": 336.0}, r"size=336.0"),
    ({"supersample": 0}, r"supersample=0"),
    ({"line_width_px": -1.0}, r"line_width_px=-1.0"),
    ({"line_width_px": float("nan")}, r"line_width_px=nan"),
    ({"band_gap_px": -2}, r"band_gap_px=-2"),
    ({"background": "notacolour"}, r"background='notacolour'"),
    ({"line_colors": ("black", "nope")}, r"line_colors\[1\]='nope'"),
    ({"labels": True}, r"labels=True"),
    ({"labels": ("a",), "label_margin_px": 0}, r"label_margin_px=0"),
    ({"scaling": "zscore"}, r"scaling='zscore' not allowed; choose from \['minmax', 'physical', 'recording'\]"),
    ({"physical_range_uv": (("EEG", -5.0),)}, r"physical_range_uv=.*microvolts > 0"),
    ({"physical_range_uv": {"EEG": 100.0}}, r"physical_range_uv=.*tuple"),
    ({"recording_span_sd": 0}, r"recording_span_sd=0"),
])
def test_bad_settings_rejected_by_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RenderSettings(**kwargs)


def test_bad_epochs_rejected():
    s = RenderSettings()
    with pytest.raises(ValueError, match=r"outside \[-1, 1\].*minmax_scale"):
        render_epoch(np.full((2, 100), 50.0), s)
    x = np.zeros((2, 100))
    x[1, 7] = np.nan
    with pytest.raises(ValueError, match=r"channel 1, sample 7"):
        render_epoch(x, s)
    with pytest.raises(ValueError, match=r"shape \(n_chans >= 1, n_times >= 2\); got \(100,\)"):
        render_epoch(np.zeros(100), s)
    with pytest.raises(ValueError, match=r"line_colors has 1 entries for 2 channels"):
        render_epoch(np.zeros((2, 100)), RenderSettings(line_colors=("red",)))
    with pytest.raises(ValueError, match=r"200 channels in 336 px"):
        render_epoch(np.zeros((200, 100)), s)
    with pytest.raises(ValueError, match=r"settings must be a RenderSettings; got dict"):
        render_epoch(np.zeros((2, 100)), {"size": 336})
    with pytest.raises(ValueError, match=r"no colour for modalities \['XYZ'\]"):
        colors_for_modalities(["EEG", "XYZ"])
    with pytest.raises(ValueError, match=r"unknown render settings \['dpi'\]"):
        RenderSettings.from_dict({"dpi": 3})


def test_scale_epochs_minmax_and_physical():
    t = np.arange(3000) / 100.0
    wave = np.sin(2 * np.pi * t)
    mods = ["EEG", "EEG", "EOG", "EMG", "RESP"]
    x = np.stack([30 * wave + 5, 150 * wave, 100 * wave, 25 * wave, 0.4 * wave + 3]).astype(np.float32)[None]
    mm = scale_epochs(x, mods, RenderSettings())
    np.testing.assert_array_equal(mm, minmax_scale(x))  # the paper's scaling, unchanged
    ph = scale_epochs(x, mods, RenderSettings(scaling="physical"))
    # EEG +-100 uV, EOG +-200, EMG +-50; a modality without a range (RESP) keeps min-max
    np.testing.assert_allclose(ph[0].max(-1), [0.3, 1.0, 0.5, 0.5, 1.0], atol=2e-3)
    assert np.mean(np.abs(ph[0, 1]) == 1.0) > 0.2  # 150 uV on a 100-uV range: clipped
    np.testing.assert_allclose(ph[0, 0].mean(), 0.0, atol=1e-4)  # the offset is removed
    # slow waves keep their size relative to a low-voltage epoch; min-max makes both full height
    quiet = (10 * wave)[None, None].astype(np.float32)
    assert scale_epochs(quiet, ["EEG"], RenderSettings(scaling="physical")).max() < 0.11
    assert scale_epochs(quiet, ["EEG"], RenderSettings()).max() == pytest.approx(1.0)
    inplace = x.copy()
    assert scale_epochs(inplace, mods, RenderSettings(scaling="physical"), out=inplace) is inplace
    np.testing.assert_array_equal(inplace, ph)
    custom = RenderSettings(scaling="physical", physical_range_uv=(("EEG", 300.0),))
    np.testing.assert_allclose(scale_epochs(x[:, :1], ["EEG"], custom).max(), 0.1, atol=1e-3)
    with pytest.raises(ValueError, match="one modality per channel"):
        scale_epochs(x, ["EEG"], RenderSettings())


def test_scaling_settings_round_trip_and_old_metas_read_as_minmax():
    s = RenderSettings(scaling="physical", physical_range_uv=(("EEG", 150.0), ("EOG", 300.0)))
    d = s.as_dict()
    assert d["scaling"] == "physical" and d["physical_range_uv"] == {"EEG": 150.0, "EOG": 300.0}
    assert RenderSettings.from_dict(d) == s
    old = {k: v for k, v in RenderSettings().as_dict().items() if k not in ("scaling", "physical_range_uv")}
    assert RenderSettings.from_dict(old).scaling == "minmax"


def test_recording_scaling_keeps_amplitude_relative_to_the_night():
    t = np.arange(3000) / 100.0
    wave = np.sin(2 * np.pi * t)
    amps = np.array([10.0, 10.0, 10.0, 30.0, 5.0])  # a night of five epochs: three alike, one tall, one small
    x = (amps[:, None, None] * np.stack([wave, 0.5 * wave])[None]).astype(np.float32)  # (5, 2, 3000): EEG, RESP
    s = RenderSettings(scaling="recording")
    y = scale_epochs(x, ["EEG", "RESP"], s)
    sd = 10.0 / np.sqrt(2)  # the median epoch's SD
    np.testing.assert_allclose(y[:, 0].max(-1), np.minimum(amps / (5.0 * sd), 1.0), atol=2e-3)
    np.testing.assert_allclose(y[:, 1].max(-1), 1.0, atol=1e-3)  # not microvolts: min-max
    # a quieter amplifier draws the same night the same way (the point of this scaling)
    np.testing.assert_allclose(scale_epochs(0.3 * x, ["EEG", "RESP"], s), y, atol=1e-5)
    flat = np.zeros((3, 1, 100), np.float32)
    np.testing.assert_array_equal(scale_epochs(flat, ["EEG"], s), 0.0)
    with pytest.raises(ValueError, match=r"every epoch of the recording.*got \(2, 3000\)"):
        scale_epochs(x[0], ["EEG", "RESP"], s)
