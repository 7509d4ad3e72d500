"""The fast paths of a night's staging (issue 10 item 6) give what the plain paths give.

- :class:`psgvlm.vlm.predict.FastScoreCollator`: the batches of ``VLMCollator(mode="score")`` bit for
  bit (pixel values, token ids, masks, image sizes), so the VLM's scores are the same numbers;
- lazy EDF channels (:class:`psgvlm.io.recording.LazyChannel`): the same samples, read on first use;
- :func:`psgvlm.night.grid.flat_epochs` and :func:`~psgvlm.night.grid.band_epochs` without whole-night copies;
- GSSC's ResNet as channels-last 2-D convolutions: its 1-D net's outputs to float32 rounding;
- the reference stagers in a forked worker process: the night they give in this process.
"""

from __future__ import annotations

import dataclasses
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from test_stage import recording_from, synthetic_night, write_edf

from psgvlm.image.renderer import RenderSettings, render_epoch, scale_epochs


@pytest.fixture(scope="module")
def vlm():
    from psgvlm.vlm.predict import DEFAULT_RUN, load_predictor

    return load_predictor(DEFAULT_RUN)


def _epoch_images(vlm, n: int, seed: int = 0) -> list[np.ndarray]:
    from psgvlm.night.stage import render_settings

    settings = RenderSettings.from_dict(render_settings(vlm.dataset_meta))
    n_bands = len(vlm.dataset_meta["channels"])
    x = np.clip(np.random.default_rng(seed).normal(0, 0.4, (n, n_bands, 6000)), -1, 1).astype(np.float32)
    return [render_epoch(xi, settings) for xi in x]


def _same(a: dict, b: dict) -> None:
    import torch

    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert torch.equal(a[k], b[k]), k


def test_fast_score_batches_are_the_processors_bit_for_bit(vlm):
    from PIL import Image

    from psgvlm.vlm.predict import FastScoreCollator

    fast = FastScoreCollator(vlm.collator)
    grey = _epoch_images(vlm, 7)  # rendered epochs: black ink on white
    rng = np.random.default_rng(1)
    colour = [rng.integers(0, 256, g.shape, dtype=np.uint8) for g in grey[:3]]
    for images in (grey, colour, grey[:1]):
        rows = [{"image": im} for im in images]
        _same(fast(rows), vlm.collator([{"image": Image.fromarray(im)} for im in images]))
        _same(fast([{"image": Image.fromarray(im)} for im in images]), vlm.collator(
            [{"image": Image.fromarray(im)} for im in images]))  # PIL images too
    assert fast._checked[grey[0].shape] is not None  # the rendered size takes the fast path
    # Another size: checked against the processor, which builds it when the fast path does not apply.
    odd = [{"image": rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)} for _ in range(2)]
    _same(fast(odd), vlm.collator([{"image": Image.fromarray(r["image"])} for r in odd]))
    assert (200, 300, 3) in fast._checked


def test_fast_path_scores_equal_the_processors(vlm):
    """Same batches, same model, same threads: the same probabilities, exactly."""
    from psgvlm.vlm.scoring import score_dataset

    rows = [{"image": im} for im in _epoch_images(vlm, 5, seed=2)]
    fast = vlm.predict_proba([r["image"] for r in rows], batch_size=4)
    from PIL import Image

    slow = score_dataset(vlm.model, vlm.collator, [{"image": Image.fromarray(r["image"])} for r in rows],
                         batch_size=4, progress=False)
    assert np.array_equal(fast, slow)


def test_fast_path_refuses_what_it_does_not_know(vlm):
    from psgvlm.vlm.predict import FastScoreCollator, _fast_patch_plan

    class Other:  # a processor without LLaVA-NeXT's single-pinpoint layout
        image_processor = object()

    assert _fast_patch_plan(Other()) is None
    with pytest.raises(ValueError, match="scoring collator"):
        FastScoreCollator(dataclasses.replace(vlm.collator, mode="train"))
    with pytest.raises(ValueError, match=r"\(height, width, 3\) uint8"):
        FastScoreCollator(vlm.collator)([{"image": np.zeros((4, 4), np.float32)}])


def test_lazy_edf_channels_read_on_first_use(tmp_path):
    from psgvlm.io.readers import read_recording
    from psgvlm.io.recording import Channel, LazyChannel

    signals, _ = synthetic_night(4, seed=5)
    path = write_edf(tmp_path / "n.edf", signals)
    eager = read_recording("generic", str(path))
    lazy = read_recording("generic", str(path), lazy=True)
    assert all(isinstance(c, LazyChannel) and not c.loaded for c in lazy.channels)
    assert lazy.duration_s == eager.duration_s and lazy.n_epochs == eager.n_epochs  # from the header
    assert not any(c.loaded for c in lazy.channels)
    c3 = lazy.channel("C3")
    assert np.array_equal(c3.data, eager.channel("C3").data) and c3.data.dtype == np.float32 and c3.loaded
    assert [c.loaded for c in lazy.channels].count(True) == 1  # only what was used was read
    assert [(c.name, c.canonical, c.modality, c.sfreq, c.unit) for c in lazy.channels] == \
        [(c.name, c.canonical, c.modality, c.sfreq, c.unit) for c in eager.channels]
    assert lazy.meta == eager.meta
    # Pickled (a spawned worker) or copied with new samples, a lazy channel is an ordinary one.
    emg = pickle.loads(pickle.dumps(lazy.channel("EMG")))
    assert type(emg) is Channel and np.array_equal(emg.data, eager.channel("EMG").data)
    loc = dataclasses.replace(lazy.channel("LOC"), data=np.zeros(3, np.float32))
    assert loc.duration_s == 3 / loc.sfreq and np.array_equal(loc.data, np.zeros(3))


def test_lazy_channel_runs_the_readers_checks_when_read():
    from psgvlm.io.readers.signal_files import channels_from_signals

    bad = np.ones(50)
    bad[3] = np.nan
    meta: dict = {}
    chans = channels_from_signals("f.edf", ["C3-A2", "EMG"], [10.0, 10.0], ["uV", "mV"],
                                  [lambda: bad, lambda: np.ones(50)], channels=None, nonfinite="raise", meta=meta,
                                  lengths=[50, 50])
    assert chans[0].duration_s == 5.0 and np.array_equal(chans[1].data, np.full(50, 1000.0, np.float32))
    with pytest.raises(ValueError, match=r"'C3-A2' has 1 NaN/inf samples of 50"):
        chans[0].data  # noqa: B018


def _flat_reference(rec, mapping, n_epochs, epoch_s=30.0):
    """flat_epochs as first written: per epoch, no finite sample or finite max == finite min."""
    flat = np.ones((n_epochs, len(mapping)), bool)
    for b, name in enumerate(mapping):
        if name is None:
            continue
        ch = rec.channel(name)
        for k in range(n_epochs):
            lo, hi = round(k * epoch_s * ch.sfreq), min(round((k + 1) * epoch_s * ch.sfreq), len(ch.data))
            seg = np.asarray(ch.data[lo:hi], np.float64)
            seg = seg[np.isfinite(seg)]
            flat[k, b] = seg.size == 0 or seg.max() - seg.min() <= 0
    return flat


def test_flat_epochs_with_and_without_non_finite_samples():
    from psgvlm.night.grid import flat_epochs

    signals, _ = synthetic_night(8, seed=6)
    rec = recording_from(signals, None)
    c3 = rec.channel("C3").data
    c3[3000:6000] = 7.0  # epoch 1 constant
    loc = rec.channel("LOC").data
    loc[6000:9000] = np.nan  # epoch 2: nothing finite
    loc[9000:9010] = np.inf  # epoch 3: finite samples and an inf
    loc[12000:15000] = 1.0
    loc[12005] = -np.inf  # epoch 4: constant beside an inf
    for mapping in (["C3", "EMG"], ["C3", None, "LOC"], ["LOC"]):
        got = flat_epochs(rec, mapping, 8)
        assert np.array_equal(got, _flat_reference(rec, mapping, 8)), mapping
    assert flat_epochs(rec, ["C3"], 8)[1, 0] and flat_epochs(rec, ["LOC"], 8)[[2, 4], 0].all()
    assert not flat_epochs(rec, ["LOC"], 8)[3, 0]


@pytest.mark.parametrize("mapping", [["C3", "LOC", "EMG"], ["C3", None, "EMG"]])
@pytest.mark.parametrize("scaling", ["physical", "minmax"])
def test_band_epochs_scaled_in_place_as_before(mapping, scaling):
    from psgvlm.night.grid import band_epochs
    from psgvlm.signal.epochs import epochs_from_recording

    signals, _ = synthetic_night(5, seed=7)
    rec = recording_from(signals, None)
    settings = RenderSettings(scaling=scaling)
    x, _, _, _ = band_epochs(rec, mapping, 100.0, settings)
    raw, _, _ = epochs_from_recording(rec, mapping, 100.0)
    drawn = [b for b, m in enumerate(mapping) if m is not None]
    want = raw.copy()
    want[:, drawn] = scale_epochs(raw[:, drawn], [rec.channel(mapping[b]).modality for b in drawn], settings)
    assert np.array_equal(x, want)


def test_gssc_channels_last_net_matches_its_1d_net():
    pytest.importorskip("gssc", reason="the optional extra psgvlm[gssc] is not installed")
    import torch

    from psgvlm.reference.gssc import channels_last_2d, load_nets, run_signal_net, signal_nets

    net, _ = load_nets()
    x = torch.from_numpy(np.random.default_rng(8).normal(size=(12, 1, 2560)).astype(np.float32))
    with torch.inference_mode():
        for sig, one_d in net.sig_net.items():
            two_d = signal_nets()[sig]
            assert any(isinstance(m, torch.nn.Conv2d) for m in two_d.modules())
            a, b = run_signal_net(one_d, x), run_signal_net(two_d, x)
            assert a.shape == b.shape == (12, a.shape[1], 1)
            assert torch.allclose(a, b, rtol=0, atol=1e-5 * float(a.abs().max())), sig  # measured: ~6e-7
            assert torch.allclose(run_signal_net(two_d, x, batch=5), b, rtol=0, atol=1e-5 * float(a.abs().max()))
    assert channels_last_2d(torch.nn.Sequential(torch.nn.Conv1d(1, 2, 3), torch.nn.ReLU())) is None


def test_forked_worker_gives_the_night_of_this_process():
    """In a fresh process (torch not yet imported) the reference stagers run in a forked worker."""
    script = textwrap.dedent("""
        import sys
        sys.path.insert(0, "tests")
        import numpy as np
        from test_stage import recording_from, synthetic_night
        import psgvlm.night.predictors as P
        signals, _ = synthetic_night(6, seed=3)
        rec = recording_from(signals, None)
        assert "torch" not in sys.modules
        method, used = P._worker_start_method, []
        P._worker_start_method = lambda: used.append(method()) or used[-1]
        names = [n for n in P.PREDICTORS if P.PREDICTORS[n].missing() is None]
        there = P.run_predictors(rec, 6, names, P.PredictorOptions(parallel_min_epochs=1))
        assert used == ["fork"], used
        here = P.run_predictors(rec, 6, names, P.PredictorOptions(), parallel=False)
        assert list(there[0]) == list(here[0]) == names and there[1] == here[1] == {}, (there[1], here[1])
        for n in names:
            if n == "yasa":  # no torch: the same numbers (GSSC and the VLM ran with other thread counts)
                assert np.array_equal(there[0][n].probs, here[0][n].probs), n
            assert there[0][n].channels == here[0][n].channels
            assert np.allclose(there[0][n].probs, here[0][n].probs, atol=1e-5), n
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]
