"""psgvlm.signal.epochs: polyphase resampling, time-paired epochs, min-max and physical scaling.

Run: python -m pytest -q tests/test_signal.py
"""

import warnings

import numpy as np
import pytest

from psgvlm.io.recording import Channel, Recording
from psgvlm.signal.epochs import (
    UpsampledChannelWarning,
    epochs_from_recording,
    minmax_scale,
    physical_scale,
    resample,
    resample_plan,
    resample_ratio,
)


@pytest.mark.parametrize(("sfreq", "up", "down"), [(125, 8, 5), (256, 25, 32), (50, 4, 1), (10, 20, 1),
                                                  (200, 1, 1), (128, 25, 16), (512, 25, 64)])
def test_resample_ratio_and_exact_lengths(sfreq, up, down):
    assert resample_ratio(sfreq, 200.0) == (up, down)
    n = int(sfreq * 30 * 3)  # three 30-s epochs
    y = resample(np.zeros(n, np.float32), sfreq, 200.0)
    assert y.dtype == np.float32
    assert len(y) == 200 * 30 * 3
    # lengths that do not divide evenly: ceil(n * up / down)
    y = resample(np.zeros(n + 1, np.float32), sfreq, 200.0)
    assert len(y) == -(-(n + 1) * up // down)


def test_resample_suppresses_tone_above_new_nyquist_and_keeps_tone_below():
    fs = 256.0
    t = np.arange(int(fs * 60)) / fs
    alias = np.sin(2 * np.pi * 120.0 * t).astype(np.float32)  # above 100 Hz, would alias to 80 Hz
    kept = np.sin(2 * np.pi * 10.0 * t).astype(np.float32)
    y_alias = resample(alias, fs, 200.0)[400:-400]
    y_kept = resample(kept, fs, 200.0)
    assert np.sqrt(np.mean(y_alias ** 2)) < 0.01  # input RMS is 0.707
    t2 = np.arange(len(y_kept)) / 200.0
    expect = np.sin(2 * np.pi * 10.0 * t2)
    assert np.max(np.abs(y_kept - expect)[400:-400]) < 0.01


def test_resample_along_last_axis_of_a_stack():
    x = np.random.default_rng(0).standard_normal((3, 1250)).astype(np.float32)
    y = resample(x, 125.0, 200.0)
    assert y.shape == (3, 2000)
    np.testing.assert_allclose(y[1], resample(x[1], 125.0, 200.0), atol=1e-5)


@pytest.mark.parametrize("bad", [0, -5.0, float("nan"), float("inf")])
def test_resample_rejects_bad_rates_by_value(bad):
    with pytest.raises(ValueError, match=r"sfreq=.*Hz"):
        resample(np.zeros(10, np.float32), bad, 200.0)


def _clock(t):
    """A band-limited signal that tells the time: a 0.5 Hz tone (a 1-sample shift at 200 Hz moves it
    by up to 0.016) plus a 170-s wave (a 30-s shift moves it by far more)."""
    return np.sin(2 * np.pi * 0.5 * t) + 0.5 * np.sin(2 * np.pi * t / 170.0)


def _ramp_recording(onset_s=10.0, seconds=100.0, n_labels=3):
    """Channels carrying _clock(time) at 200, 100 and 50 Hz."""
    chans = []
    for name, mod, fs in (("C3", "EEG", 200.0), ("LOC", "EOG", 100.0), ("EMG", "EMG", 50.0)):
        t = np.arange(int(seconds * fs)) / fs
        chans.append(Channel(name=name, canonical=name, modality=mod, sfreq=fs,
                             data=_clock(t).astype(np.float32)))
    stages = np.array([0, 2, 4, 3][:n_labels], np.int8)
    return Recording(channels=chans, subject="s1", recording="r1", dataset="test", source="mem",
                     stages=stages, onset_s=onset_s)


def test_epochs_are_paired_by_time_from_onset():
    rec = _ramp_recording(onset_s=10.0, seconds=100.0, n_labels=4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        x, stages, starts_s = epochs_from_recording(rec, ["C3", "LOC", "EMG"], 200.0)
    # (100 - 10) / 30 = 3 whole epochs; the 4th label has no full signal epoch and is dropped
    assert x.shape == (3, 3, 6000) and x.dtype == np.float32
    np.testing.assert_array_equal(stages, [0, 2, 4])
    assert stages.dtype == np.int8
    np.testing.assert_allclose(starts_s, [10.0, 40.0, 70.0])
    # sample j of epoch k is at time onset + 30 k + j / 200, in every channel after resampling
    for k in range(3):
        expect = _clock(10.0 + 30.0 * k + np.arange(6000) / 200.0)
        for c in range(3):
            np.testing.assert_allclose(x[k, c, 200:-200], expect[200:-200], atol=3e-3)
    msgs = [str(w.message) for w in caught if issubclass(w.category, UpsampledChannelWarning)]
    assert len(msgs) == 2 and any("'LOC'" in m and "100 Hz" in m for m in msgs)
    assert any("'EMG'" in m and "50 Hz" in m for m in msgs)


def test_labels_shorter_than_signal_and_unlabelled():
    rec = _ramp_recording(onset_s=0.0, seconds=100.0, n_labels=2)
    x, stages, starts_s = epochs_from_recording(rec, ["C3"], 200.0)
    assert x.shape[0] == 2 and len(stages) == 2
    rec.stages = None
    x, stages, starts_s = epochs_from_recording(rec, ["C3"], 200.0)
    assert x.shape[0] == 3 and stages is None and len(starts_s) == 3


def test_resample_plan_reports_what_happens_per_channel():
    rec = _ramp_recording()
    plan = resample_plan(rec, ["C3", "LOC", "EMG"], 100.0)
    assert [p["action"] for p in plan] == ["downsampled", "unchanged", "upsampled"]
    assert plan[2] == {"channel": "EMG", "sfreq": 50.0, "target_sfreq": 100.0, "up": 2, "down": 1,
                       "action": "upsampled"}


def test_epochs_bad_input_named():
    rec = _ramp_recording()
    with pytest.raises(ValueError, match=r"'F3' not in recording.*available.*C3"):
        epochs_from_recording(rec, ["F3"], 200.0)
    with pytest.raises(ValueError, match=r"duplicate channels.*C3"):
        epochs_from_recording(rec, ["C3", "C3"], 200.0)
    with pytest.raises(ValueError, match=r"whole number"):
        epochs_from_recording(rec, ["C3"], 200.0 / 7)
    rec.channels[0].data[4321] = np.nan
    with pytest.raises(ValueError, match=r"channel 'C3' has 1 non-finite.*21\.605 s"):
        epochs_from_recording(rec, ["C3"], 200.0)


def test_minmax_scale_range_flat_and_input_untouched():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 600)).astype(np.float32) * 50 + 7
    x[1, 2] = 42.0  # flat channel in one epoch
    before = x.copy()
    y = minmax_scale(x)
    np.testing.assert_array_equal(x, before)
    assert y.dtype == np.float32 and y.shape == x.shape
    assert np.all(np.isfinite(y))
    np.testing.assert_array_equal(y[1, 2], 0.0)
    mask = np.ones((4, 3), bool)
    mask[1, 2] = False
    np.testing.assert_allclose(y.min(-1)[mask], -1.0, atol=1e-6)
    np.testing.assert_allclose(y.max(-1)[mask], 1.0, atol=1e-6)
    # affine: the scaled row is a positive affine map of the raw row
    np.testing.assert_allclose(np.corrcoef(x[0, 0], y[0, 0])[0, 1], 1.0, atol=1e-6)


def test_minmax_scale_in_place():
    x = np.random.default_rng(1).standard_normal((2, 3, 50)).astype(np.float32)
    expect = minmax_scale(x)
    y = minmax_scale(x, out=x)
    assert y is x
    np.testing.assert_array_equal(x, expect)
    with pytest.raises(ValueError, match=r"out must be a float32 array of shape \(2, 3, 50\); got float64"):
        minmax_scale(x, out=np.zeros((2, 3, 50)))


def test_minmax_scale_nan_names_where():
    x = np.zeros((3, 2, 100), np.float32)
    x[2, 1, 50] = np.nan
    with pytest.raises(ValueError, match=r"row \(2, 1\)"):
        minmax_scale(x)
    x[2, 1, 50] = np.inf
    with pytest.raises(ValueError, match=r"non-finite"):
        minmax_scale(x)


def test_physical_scale_keeps_amplitude_removes_offset_and_clips():
    t = np.arange(3000) / 100.0
    x = np.stack([np.stack([a * np.sin(2 * np.pi * t) + 40.0 for a in (20.0, 80.0, 300.0)]),
                  np.full((3, 3000), -12.5)]).astype(np.float32)  # (2 epochs, 3 channels, 3000)
    before = x.copy()
    y = physical_scale(x, np.array([100.0, 100.0, 200.0]))
    np.testing.assert_array_equal(x, before)
    assert y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_allclose(y[0].max(-1), [0.2, 0.8, 1.0], atol=2e-3)  # 20 and 80 uV of 100; 300 of 200 clipped
    np.testing.assert_allclose(y[0].mean(-1)[:2], 0.0, atol=1e-5)  # the DC offset is gone
    np.testing.assert_array_equal(y[1], 0.0)  # a flat channel: the band's mid-line, as min-max draws it
    z = physical_scale(x, 100.0, out=x)
    assert z is x and np.abs(z).max() <= 1.0


@pytest.mark.parametrize(("range_uv", "match"), [(0.0, "positive finite"), ([100.0, -1.0, 5.0], "positive finite"),
                                                 (np.nan, "positive finite"), ([1.0, 2.0], "does not broadcast")])
def test_physical_scale_refuses_bad_ranges(range_uv, match):
    with pytest.raises(ValueError, match=match):
        physical_scale(np.zeros((2, 3, 10), np.float32), range_uv)


def test_physical_scale_nan_names_where():
    x = np.zeros((3, 2, 100), np.float32)
    x[1, 0, 5] = np.nan
    with pytest.raises(ValueError, match=r"row \(1, 0\)"):
        physical_scale(x, 100.0)
