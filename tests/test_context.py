"""Sequence context (``--context K``): strips of neighbouring epochs composed at load time.

Run: python -m pytest -q tests/test_context.py   (about a minute; the end-to-end test trains a tiny model)
"""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from psgvlm.image.dataset import neighbour_index
from psgvlm.stages import N_STAGES, STAGES
from psgvlm.vlm.context import (
    CONTEXT_ALPHA,
    CONTEXT_RGB,
    PAD_RGB,
    ContextDataset,
    compose_strip,
    context_template,
    night_strips,
    scored_columns,
)

ROOT = Path(__file__).resolve().parents[1]
SIZE = 28
SHARED_7B = ROOT.parent / "shared" / "models" / "llava-v1.6-mistral-7b-hf"


def epoch_image(value: int) -> np.ndarray:
    """A distinct (SIZE, SIZE, 3) image per epoch: a dark trace at a height set by ``value``."""
    img = np.full((SIZE, SIZE, 3), 255, np.uint8)
    img[value % SIZE, :] = 0
    img[:, value % SIZE, 2] = 40
    return img


def tint(img: np.ndarray) -> np.ndarray:
    return np.rint(img * (1 - CONTEXT_ALPHA) + CONTEXT_RGB * CONTEXT_ALPHA).astype(np.uint8)


def columns(recs, epochs):
    return {"dataset": ["d"] * len(recs), "subject": recs, "recording": recs, "epoch": epochs}


def image_split(recs, epochs):
    import datasets

    rows = [{"image": Image.fromarray(epoch_image(10 * i + 3)), "label": i % N_STAGES, "subject": r,
             "recording": r, "epoch": e, "dataset": "d", "start_s": 30.0 * e} for i, (r, e) in enumerate(zip(recs, epochs))]
    return datasets.Dataset.from_list(rows)


# --------------------------------------------------------------------------- composition


def test_strip_puts_neighbours_in_time_order_tints_context_and_marks_edges():
    a, b, c = epoch_image(3), epoch_image(9), epoch_image(17)
    strip = compose_strip([a, b, c], 1)
    assert strip.shape == (SIZE, 3 * SIZE, 3) and strip.dtype == np.uint8
    assert np.array_equal(strip[:, SIZE:2 * SIZE], b)  # the scored epoch exactly as without context
    assert np.array_equal(strip[:, :SIZE], tint(a)) and np.array_equal(strip[:, 2 * SIZE:], tint(c))
    assert not np.array_equal(strip[:, :SIZE], a)  # context is marked, not drawn like the scored epoch
    edge = compose_strip([None, None, b, c, None], 2)  # the night's first epoch: two blank panels before it
    assert (edge[:, :2 * SIZE] == PAD_RGB).all() and (edge[:, 4 * SIZE:] == PAD_RGB).all()
    assert np.array_equal(edge[:, 2 * SIZE:3 * SIZE], b) and np.array_equal(edge[:, 3 * SIZE:4 * SIZE], tint(c))
    assert np.array_equal(edge[:, scored_columns(edge.shape[1], 2)], b)
    # A blank panel differs from any tinted epoch (white background tints to 223, not 128).
    assert not np.array_equal(compose_strip([None, b, c], 1), compose_strip([a, b, c], 1))
    assert np.array_equal(compose_strip([b], 0), b)  # K=0: the epoch's own image
    with pytest.raises(ValueError, match="expected 3"):
        compose_strip([a, b], 1)
    with pytest.raises(ValueError, match="middle"):
        compose_strip([a, None, c], 1)
    with pytest.raises(ValueError, match="context=9"):
        compose_strip([b] * 19, 9)


def test_prompt_gets_one_sentence_and_keeps_one_placeholder():
    base = "<image>\nWhich sleep stage is it? Answer with one of W, N1, N2, N3, REM."
    assert context_template(base, 0) == base
    text = context_template(base, 1)
    assert text.count("<image>") == 1 and text.startswith("<image>\n") and text.endswith(base.split("\n")[1])
    assert "3 consecutive 30-second epochs" in text and "middle" in text
    assert "5 consecutive" in context_template(base, 2)


def test_neighbour_index_edges_gaps_and_recordings():
    recs = ["r1"] * 5 + ["r2"] * 3
    epochs = [0, 1, 2, 4, 5] + [7, 8, 9]  # r1 lacks epoch 3 (unscored, left out); r2 starts at 7
    idx = neighbour_index(columns(recs, epochs), 1)
    assert idx.shape == (8, 3) and idx.dtype == np.int64
    assert idx[:, 1].tolist() == list(range(8))
    assert idx[0].tolist() == [-1, 0, 1]  # start of the night
    assert idx[2].tolist() == [1, 2, -1] and idx[3].tolist() == [-1, 3, 4]  # the gap is a blank on both sides
    assert idx[4].tolist() == [3, 4, -1]  # end of r1: r2's rows are never its neighbours
    assert idx[5].tolist() == [-1, 5, 6] and idx[7].tolist() == [6, 7, -1]
    # Row order does not matter: shuffled rows find the same neighbours.
    perm = np.random.default_rng(0).permutation(8)
    shuffled = neighbour_index(columns([recs[i] for i in perm], [epochs[i] for i in perm]), 1)
    back = np.argsort(perm)
    assert np.array_equal(np.where(shuffled[back] >= 0, perm[np.maximum(shuffled[back], 0)], -1), idx)
    assert neighbour_index(columns(recs, epochs), 0).tolist() == [[i] for i in range(8)]
    with pytest.raises(ValueError, match="twice"):
        neighbour_index(columns(["r1", "r1"], [4, 4]), 1)
    with pytest.raises(ValueError, match="k=-1"):
        neighbour_index(columns(recs, epochs), -1)


def test_context_view_composes_from_the_split_and_stores_no_epoch_twice():
    recs, epochs = ["r1"] * 4 + ["r2"] * 2, [0, 1, 2, 3, 0, 1]
    ds = image_split(recs, epochs)
    view = ContextDataset(ds, 1)
    # The view holds the split itself and an integer index: no image is copied or stored again.
    assert view.ds is ds and len(view) == len(ds) == 6
    assert view.neighbours.shape == (6, 3) and view.neighbours.dtype == np.int64
    assert not [k for k, v in vars(view).items() if k not in ("ds",) and not (
        v is None or isinstance(v, int | tuple) or (isinstance(v, np.ndarray) and v.dtype == np.int64))]
    own = [np.asarray(ds[i]["image"]) for i in range(6)]
    row = view[1]
    assert row["label"] == ds[1]["label"] and row["epoch"] == 1
    assert np.array_equal(np.asarray(row["image"]), compose_strip([own[0], own[1], own[2]], 1))
    assert np.array_equal(np.asarray(view[4]["image"]), compose_strip([None, own[4], own[5]], 1))
    # A subset still sees every neighbour of the whole split; columns follow the subset.
    sub = view.select([3, 1])
    assert len(sub) == 2 and list(sub["epoch"]) == [3, 1] and list(sub.select_columns(["recording"])["recording"]) == ["r1", "r1"]
    assert np.array_equal(np.asarray(sub[1]["image"]), np.asarray(row["image"]))
    assert np.array_equal(np.asarray(sub["image"][0]), compose_strip([own[2], own[3], None], 1))
    batch = view[0:2]
    assert batch["epoch"] == [0, 1] and np.array_equal(np.asarray(batch["image"][1]), np.asarray(row["image"]))
    with pytest.raises(ValueError, match="image"):
        view.select_columns(["image", "label"])


def _dropout_meta():
    from psgvlm.image.renderer import RenderSettings

    chans = ["C3", "C4", "LOC", "EMG"]
    return {"channels": chans, "modalities": {"C3": "EEG", "C4": "EEG", "LOC": "EOG", "EMG": "EMG"}, "sfreq": 50.0,
            "epoch_s": 30.0, "settings": {"render": RenderSettings(size=56, supersample=2).as_dict()}}


def test_band_dropout_flattens_the_same_bands_in_every_epoch_of_a_strip():
    from psgvlm.image.renderer import RenderSettings, render_epoch
    from psgvlm.vlm.data import BandDropout

    meta = _dropout_meta()
    settings = RenderSettings.from_dict(meta["settings"]["render"])
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (3, 4, 1500)).astype(np.float32)  # three epochs of one recording, four bands
    import datasets

    ds = datasets.Dataset.from_list([{"image": Image.fromarray(render_epoch(x[e], settings)), "label": 0,
                                      "subject": "s", "recording": "s", "epoch": e, "dataset": "d"} for e in range(3)])
    dropout = BandDropout(meta, p=1.0, single_eeg_prob=0.5)
    view = ContextDataset(ds, 1).with_dropout(dropout, seed=(0, 0))
    checked = 0
    for i in range(3):
        flat = dropout.draw(np.random.default_rng([0, 0, i]))
        want = []
        for j in (i - 1, i, i + 1):
            if 0 <= j < 3:
                xf = x[j].copy()
                xf[flat] = 0.0  # what psgvlm stage draws for those missing channels, in every epoch
                want.append(render_epoch(xf, settings))
            else:
                want.append(None)
        assert np.array_equal(np.asarray(view[i]["image"]), compose_strip(want, 1))
        checked += int(flat.any())
    assert checked == 3


def test_night_strips_render_each_epoch_once_and_match_the_dataset_view():
    calls = []

    def render(e):
        calls.append(e)
        return epoch_image(10 * e + 3)

    cache: dict = {}
    strips = night_strips([0, 1, 2], 5, 1, render, cache) + night_strips([3, 4], 5, 1, render, cache)
    assert sorted(calls) == [0, 1, 2, 3, 4]  # each epoch rendered once across batches
    assert max(cache) == 4 and min(cache) >= 3 - 1  # epochs no later strip needs are dropped
    view = ContextDataset(image_split(["r"] * 5, list(range(5))), 1)
    for e in range(5):
        assert np.array_equal(np.asarray(strips[e]), np.asarray(view[e]["image"]))


# --------------------------------------------------------------------------- image tokens


def _strip_tokens(model_dir, k):
    from types import SimpleNamespace

    from psgvlm.vlm.context import image_tokens, pin_strip_grid
    from psgvlm.vlm.model import load_processor, tile_size

    proc = load_processor(str(model_dir), pin_grid=True)
    holder = SimpleNamespace(config=SimpleNamespace())
    grid = pin_strip_grid(holder, proc, k)
    tile = tile_size(proc)
    assert grid == holder.config.image_grid_pinpoints == [[tile, tile * (2 * k + 1)]]
    return image_tokens(proc, 336 * (2 * k + 1), 336), tile, proc.patch_size


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A tiny LLaVA-NeXT with a 112-px tile (``psgvlm tiny-model --image-size 112``)."""
    from psgvlm.vlm.model import tiny_model_main

    out = tmp_path_factory.mktemp("context-tiny")
    assert tiny_model_main(["--out", str(out), "--image-size", "112", "--overwrite"]) == 0
    return out


@pytest.mark.parametrize("model", ["tiny", "7b"])
def test_a_pinned_strip_gets_one_full_tile_per_epoch(model, tiny_dir):
    """Image tokens = base tile + (2K+1) tiles side by side + one newline per row (LLaVA-NeXT, unpadded)."""
    if model == "7b":
        if not (SHARED_7B / "preprocessor_config.json").is_file():
            pytest.skip(f"the 7B processor files are absent ({SHARED_7B})")
        model_dir = SHARED_7B
    else:
        model_dir = tiny_dir
    for k in (0, 1, 2):
        n, tile, patch = _strip_tokens(model_dir, k)
        side = tile // patch
        assert n == side * side + side * (side * (2 * k + 1) + 1), (model, k, n)


def test_other_families_strip_pinning():
    """Idefics3/SmolVLM splits a pinned strip into one tile per epoch + its global view; Qwen2-VL (own size)
    and PaliGemma (one square) are left as they are."""
    from psgvlm.vlm.context import image_tokens, pin_strip_grid
    from psgvlm.vlm.families import get_family
    from psgvlm.vlm.model import pin_processor_grid

    model, proc = get_family("idefics3").tiny()
    pin_processor_grid(proc)
    one = image_tokens(proc, 336, 336)  # the epoch's one pinned tile
    for k in (1, 2):
        assert pin_strip_grid(model, proc, k) is not None
        assert image_tokens(proc, 336 * (2 * k + 1), 336) == (2 * k + 2) * one
    for family in ("qwen2_vl", "paligemma"):
        model, proc = get_family(family).tiny()
        before = proc.image_processor.to_dict()
        assert pin_strip_grid(model, proc, 1) is None and proc.image_processor.to_dict() == before


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def split_dataset(tiny_synth, tmp_path_factory):
    """``psgvlm render`` of the shared tiny synthetic nights with a subject split (one subject each)."""
    import subprocess

    out = tmp_path_factory.mktemp("context") / "images"
    proc = subprocess.run([sys.executable, "-m", "psgvlm.cli", "render", "--format", "isruc", "--input", str(tiny_synth),
                           "--out", str(out), "--quiet"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_context_one_end_to_end_train_predict_evals_stage(split_dataset, tiny_synth, tiny_dir, tmp_path):
    from psgvlm.image.dataset import load_dataset
    from psgvlm.io.readers import find_recordings, read_recording
    from psgvlm.night.stage import stage_recording
    from psgvlm.night.viewer import render_one
    from psgvlm.vlm.predict import load_predictor
    from psgvlm.vlm.predict import main as predict_main

    tiny = tiny_dir
    run = tmp_path / "run"
    recipe = ROOT / "recipes" / "llava_isruc.py"
    argv = sys.argv
    sys.argv = [str(recipe), "--config", str(ROOT / "recipes" / "configs" / "llava_tiny_cpu.yaml"),
                "--dataset", str(split_dataset), "--model", str(tiny), "--output_dir", str(run), "--context", "1",
                "--max_steps", "2", "--per_device_train_batch_size", "4", "--band_dropout", "0.5",
                "--predict_splits", "test"]
    try:
        g = runpy.run_path(str(recipe), run_name="__main__")
    finally:
        sys.argv = argv
    meta = json.loads((run / "meta.json").read_text())
    assert meta["context"] == 1 and meta["config"]["context"] == 1
    assert "3 consecutive 30-second epochs" in meta["prompt"]["template"]
    assert g["model"].config.image_grid_pinpoints == [[112, 336]]  # one tile per epoch of the strip
    assert (run / "predictions.jsonl").is_file()
    # The rendered dataset on disk is untouched: each epoch once.
    test, _ = load_dataset(split_dataset, "test")
    assert len({(r, e) for r, e in zip(test["recording"], test["epoch"])}) == len(test)

    # psgvlm predict reads K from the run and scores strips: the same probabilities as the recipe's.
    out = tmp_path / "pred"
    assert predict_main(["--run", str(run), "--dataset", str(split_dataset), "--split", "test", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    ref = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == len(test) and [r["epoch"] for r in rows] == [r["epoch"] for r in ref]
    assert np.allclose([r["probs"] for r in rows], [r["probs"] for r in ref], atol=1e-4)
    predictor = load_predictor(run)
    assert predictor.context == 1
    # The evals score image datasets the same way (strips of the run's K).
    from evals.inference import predict_rows

    evals_rows = predict_rows(predictor, test, batch_size=8)
    assert np.allclose([r["probs"] for r in evals_rows], [r["probs"] for r in ref], atol=1e-4)
    # A strip differs from a single epoch for this model: the context is read, not ignored.
    view = ContextDataset(test, 1)
    p_strip = predictor.predict_proba([view[3]["image"]])
    p_epoch = predictor.predict_proba([test[3]["image"]])
    assert not np.allclose(p_strip, p_epoch, atol=1e-6)

    # psgvlm stage composes the strips from the night's rendered epochs; the viewer shows the strip scored.
    rec = read_recording("isruc", **find_recordings("isruc", tiny_synth)[0])
    res = stage_recording(rec, run_dir=run, predictor=predictor, predictors=["vlm"], batch_size=4,
                          epochs_path=tmp_path / "epochs.npy")
    assert res.probs.shape[1] == len(STAGES) and res.model["context"] == 1
    strip = render_one(res, 0)
    assert strip.shape[1] == 3 * strip.shape[0] and (strip[:, : strip.shape[0]] == PAD_RGB).all()
    scored = ~res.unscored
    k = int(np.flatnonzero(scored)[0])
    again = predictor.predict_proba([Image.fromarray(render_one(res, k))])[0]
    assert np.allclose(again, res.probs[k], atol=2e-3)  # epochs.npy keeps float16 samples
