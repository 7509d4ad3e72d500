"""Tests of the VLM stack: tiny LLaVA-NeXT, LoRA targets, collator masking, label scoring, recipe,
resume, predict, bad inputs, and the real 7B tokenizer/processor (files only, no weights).

    python -m pytest -q tests/test_vlm.py

Hermetic: the model is built in code (``psgvlm tiny-model``), the dataset is a handful of synthetic
images in the ``psgvlm render`` format whose class is visible (sine waves whose frequency is set by the
stage), and HF_HUB_OFFLINE is set so nothing can reach the hub.
"""

from __future__ import annotations

import json
import os
import runpy
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from psgvlm.stages import STAGES

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # also set by conftest.py, before any test module

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "llava_isruc.py"


# --------------------------------------------------------------------------- fixtures (test data only)


def wave_image(label: int, rng, size: int = 336):
    """A fake PSG image: 4 bands of noisy sines whose frequency encodes the stage (a known answer)."""
    from PIL import Image

    img = np.full((size, size, 3), 255, np.uint8)
    t = np.arange(size)
    for band in range(4):
        freq = (1.5 + 2.5 * label) * (1 + 0.1 * band)
        y = np.sin(2 * np.pi * freq * t / size + rng.uniform(0, 6.28)) * 30 + rng.normal(0, 4, size)
        yc = (size // 8 + band * size // 4 + y).clip(0, size - 2).astype(int)
        img[yc, t] = 0
        img[yc + 1, t] = 0
    return Image.fromarray(img)


def make_image_dataset(out: Path, *, n_subjects: int = 6, per_subject: int = 10, seed: int = 0) -> Path:
    """A DatasetDict (train/validation/test by subject) + meta.json in the `psgvlm render` format."""
    import datasets

    rng = np.random.default_rng(seed)
    feats = datasets.Features({
        "image": datasets.Image(), "label": datasets.ClassLabel(names=list(STAGES)),
        "stage": datasets.Value("string"), "subject": datasets.Value("string"),
        "recording": datasets.Value("string"), "epoch": datasets.Value("int32"),
        "start_s": datasets.Value("float64"), "dataset": datasets.Value("string"),
        "channels": datasets.Value("string")})
    subjects = [str(i + 1) for i in range(n_subjects)]
    split = {"train": subjects[:-2], "validation": subjects[-2:-1], "test": subjects[-1:]}
    dd = {}
    for name, subs in split.items():
        rows = []
        for s in subs:
            for e in range(per_subject):
                lab = e % 5
                rows.append({"image": wave_image(lab, rng), "label": lab, "stage": STAGES[lab], "subject": s,
                             "recording": s, "epoch": e, "start_s": 30.0 * e, "dataset": "isruc",
                             "channels": "C3,C4,LOC,EMG"})
        dd[name] = datasets.Dataset.from_list(rows, features=feats)
    datasets.DatasetDict(dd).save_to_disk(str(out))
    meta = {"kind": "psgvlm-image-dataset", "version": 1, "settings": {"render": {"size": 336}}, "channels": ["C3", "C4", "LOC", "EMG"],
            "split": {"kind": "subject", "seed": 0, **split}}
    (out / "meta.json").write_text(json.dumps(meta))
    return out


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    from psgvlm.vlm.model import tiny_model_main

    out = tmp_path_factory.mktemp("tiny-llava")
    # a 112-px vision tile keeps tests fast (136 image tokens); the 336-px default is checked separately.
    assert tiny_model_main(["--out", str(out), "--image-size", "112", "--overwrite"]) == 0
    return out


@pytest.fixture(scope="session")
def image_ds(tmp_path_factory) -> Path:
    return make_image_dataset(tmp_path_factory.mktemp("ds") / "img")


@pytest.fixture(scope="session")
def tiny(tiny_dir):
    from psgvlm.vlm.model import load_model

    model, processor = load_model(str(tiny_dir))
    return model.eval(), processor


def _run_recipe(tmp, tiny_dir, image_ds, *extra):
    """Run recipes/llava_isruc.py in-process (as ``accelerate launch`` would on one CPU); its globals."""
    cfg = tmp / "cfg.yaml"
    cfg.write_text(f"dataset: {image_ds}\nmodel: {tiny_dir}\nprompt: short\nper_device_train_batch_size: 4\n"
                   "gradient_accumulation_steps: 2\nlearning_rate: 0.005\nlora_r: 8\nlora_alpha: 16\n"
                   "num_train_epochs: 2\neval_batch_size: 8\nlora_dropout: 0.1\n")
    argv = sys.argv
    sys.argv = [str(RECIPE), "--config", str(cfg), *extra]
    try:
        return runpy.run_path(str(RECIPE), run_name="__main__")
    finally:
        sys.argv = argv


# --------------------------------------------------------------------------- model + LoRA


def test_tiny_model_loads_through_from_pretrained(tiny_dir, tiny):
    model, processor = tiny
    assert (tiny_dir / "config.json").exists() and (tiny_dir / "tokenizer.json").exists()
    assert model.config.image_grid_pinpoints == [[112, 112]]
    assert processor.tokenizer.image_token_id == model.config.image_token_index


def test_lora_targets_skip_projector_head_and_unused_vision_layer(tiny):
    from psgvlm.vlm.model import lora_target_modules, unused_vision_layers

    model, _ = tiny
    assert unused_vision_layers(model.config) == [1]  # 2 layers, vision_feature_layer=-2
    targets = lora_target_modules(model)
    assert any(t.startswith("model.vision_tower.encoder.layers.0.") for t in targets)
    assert not any(t.startswith("model.vision_tower.encoder.layers.1.") for t in targets)
    assert not any("multi_modal_projector" in t or t == "lm_head" for t in targets)
    assert any(t.endswith("mlp.down_proj") for t in targets) and any(t.endswith("self_attn.q_proj") for t in targets)


def test_collator_masks_all_but_answer_tokens(tiny):
    from psgvlm.vlm.data import VLMCollator, get_template

    model, processor = tiny
    col = VLMCollator(processor, get_template("short"))
    rng = np.random.default_rng(0)
    batch = col([{"image": wave_image(1, rng), "label": 1}, {"image": wave_image(4, rng), "label": 4}])
    labels, ids = batch["labels"], batch["input_ids"]
    assert processor.tokenizer.padding_side == "right"
    n_img = (ids == model.config.image_token_index).sum(1)
    assert n_img.tolist() == [136, 136]  # 8x8 base tile + 8x8 grid tile + 8 newlines
    assert not bool((labels[ids == model.config.image_token_index] != -100).any())
    for i, lab in enumerate([1, 4]):
        kept = labels[i][labels[i] != -100].tolist()
        assert kept == col.answers[lab]
    score_batch = VLMCollator(processor, get_template("short"), mode="score")([{"image": wave_image(0, rng)}])
    assert processor.tokenizer.padding_side == "left" and "labels" not in score_batch


def test_tiny_default_patch14_gives_1176_image_tokens(tmp_path):
    from psgvlm.vlm.data import VLMCollator, get_template
    from psgvlm.vlm.model import build_tiny_model

    model, processor = build_tiny_model()
    batch = VLMCollator(processor, get_template(), mode="score")([{"image": wave_image(0, np.random.default_rng(0))}])
    assert int((batch["input_ids"] == model.config.image_token_index).sum()) == 1176


# --------------------------------------------------------------------------- label scoring


def test_label_scoring_equals_brute_force_with_left_padding(tiny):
    """Two-pass scoring == five separate full forward passes, with prompts of different lengths."""
    from PIL import Image

    from psgvlm.vlm.data import VLMCollator, get_template
    from psgvlm.vlm.scoring import score_batch, score_dataset

    model, processor = tiny
    template = get_template("short")
    rng = np.random.default_rng(1)
    # A 336x200 image unpads to fewer grid tokens: the batch needs left padding.
    rows = [{"image": wave_image(2, rng)}, {"image": Image.fromarray(np.asarray(wave_image(3, rng))[:200])}]
    col = VLMCollator(processor, template, mode="score")
    batch = col(rows)
    assert bool((batch["attention_mask"][:, 0] == 0).any()), "expected left padding in this batch"
    ll = score_batch(model, batch, col.answers)
    train_col = VLMCollator(processor, template, mode="train")
    brute = torch.zeros(2, 5)
    for i, r in enumerate(rows):
        for j in range(5):
            b = train_col([{"image": r["image"], "label": j}])
            with torch.no_grad():
                logits = model(**{k: v for k, v in b.items() if k != "labels"}).logits
            lp = torch.log_softmax(logits[0, :-1].float(), -1)
            lab = b["labels"][0, 1:]
            keep = lab != -100
            brute[i, j] = lp[keep].gather(-1, lab[keep].unsqueeze(-1)).sum()
    torch.testing.assert_close(ll, brute, atol=2e-4, rtol=1e-4)
    probs = score_dataset(model, col, rows, batch_size=2, progress=False)
    assert probs.shape == (2, 5) and np.allclose(probs.sum(1), 1)


def test_scoring_uses_two_forward_passes(tiny):
    from psgvlm.vlm.data import VLMCollator, get_template
    from psgvlm.vlm.scoring import score_batch

    model, processor = tiny
    col = VLMCollator(processor, get_template("short"), mode="score")
    calls = []
    handle = model.model.language_model.register_forward_hook(lambda *a: calls.append(1))
    try:
        score_batch(model, col([{"image": wave_image(k, np.random.default_rng(k))} for k in range(3)]), col.answers)
    finally:
        handle.remove()
    assert len(calls) == 2


def test_parse_stage_and_unparseable_rate():
    from psgvlm.vlm.scoring import parse_stage, unparseable_rate

    assert [parse_stage(t) for t in ["N2", " REM.", "Stage: N3", "wake", "W", "n1", "R"]] == [2, 4, 3, 0, 0, 1, 4]
    assert parse_stage("The image shows") is None and parse_stage("") is None and parse_stage("N4") is None
    assert unparseable_rate(["N1", "nonsense", "W", "??"]) == 0.5


def test_unparseable_generations_are_counted_and_never_scored_as_w(tmp_path):
    """An unparseable answer is no answer: pred -1, probs null, out of every metric, counted; not W."""
    from psgvlm.predictions import (
        NO_PREDICTION,
        make_rows,
        metrics_from_rows,
        read_predictions,
        write_predictions,
    )
    from psgvlm.vlm.scoring import generation_probs, parse_stage

    texts = ["N2", "The image shows", "REM", "??", "N3", "N2"]
    labels = [2, 1, 4, 0, 3, 0]
    probs = generation_probs([parse_stage(t) for t in texts])
    assert np.isnan(probs[[1, 3]]).all() and np.array_equal(probs[[0, 2, 4, 5]].argmax(1), [2, 4, 3, 2])
    rows = make_rows(dataset="d", subjects=["a"] * 3 + ["b"] * 3, recordings=["a"] * 3 + ["b"] * 3,
                     epochs=range(6), starts_s=[30.0 * i for i in range(6)], labels=labels, probs=probs)
    assert [r["pred"] for r in rows] == [2, NO_PREDICTION, 4, NO_PREDICTION, 3, 2]
    assert rows[1]["probs"] is None and rows[0]["probs"] == [0, 0, 1, 0, 0]
    m = write_predictions(tmp_path, rows)
    assert m["n_no_prediction"] == 2 and m["no_prediction_rate"] == pytest.approx(2 / 6)
    # metrics over the 4 answered epochs (3 right): both unparseable epochs would be W, and epoch 3 is W
    assert m["pooled"]["n_epochs"] == 4 and m["pooled"]["accuracy"] == pytest.approx(0.75)
    assert set(m["per_subject"]) == {"a", "b"} and m["per_subject"]["b"]["n_epochs"] == 2
    back = read_predictions(tmp_path)
    assert [r["pred"] for r in back] == [r["pred"] for r in rows] and back[3]["probs"] is None
    assert metrics_from_rows(back)["pooled"] == m["pooled"]


def test_predict_generate_mode_leaves_unparseable_out(tmp_path, tiny_dataset, monkeypatch):
    """``psgvlm predict --mode generate``: unparseable texts are counted and left out, the rest scored."""
    from psgvlm.vlm import predict
    from psgvlm.vlm.scoring import parse_stage

    def generate(self, images, batch_size=8, max_new_tokens=5):  # a model whose answers are known
        texts = ["N2", "hmm", "W", "I cannot tell"][:len(images)]
        return texts, [parse_stage(t) for t in texts]

    monkeypatch.setattr(predict.Predictor, "generate", generate)
    out = tmp_path / "g"
    assert predict.main(["--dataset", str(tiny_dataset), "--split", "all", "--out", str(out), "--mode", "generate",
                         "--max-samples", "4"]) == 0
    rows = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    metrics = json.loads((out / "metrics.json").read_text())
    assert [r["pred"] for r in rows] == [2, -1, 0, -1] and rows[1]["probs"] is None
    assert metrics["meta"]["n_unparseable"] == 2 and metrics["meta"]["unparseable_rate"] == 0.5
    assert metrics["n_no_prediction"] == 2 and metrics["pooled"]["n_epochs"] == 2


# --------------------------------------------------------------------------- recipe + resume + predict


@pytest.fixture
def hub_calls(monkeypatch):
    """Every Hub call the recipe makes, recorded instead of made."""
    import huggingface_hub

    calls = []
    monkeypatch.setattr(huggingface_hub, "create_repo", lambda *a, **k: calls.append(("create_repo", k)))
    monkeypatch.setattr(huggingface_hub, "upload_folder", lambda *a, **k: calls.append(("upload_folder", k)))
    return calls


def test_recipe_trains_lora_only_and_loss_falls(tmp_path, tiny_dir, image_ds, tiny, hub_calls):
    out = tmp_path / "run"
    g = _run_recipe(tmp_path, tiny_dir, image_ds, "--output_dir", str(out), "--max_steps", "8",
                    "--eval_every", "4", "--save_every", "100")
    trained = g["accelerator"].unwrap_model(g["model"])
    base, _ = tiny
    base_sd = base.state_dict()
    lora_changed = frozen_same = 0
    for name, p in trained.named_parameters():
        if "lora_B" in name:
            lora_changed += int(p.abs().sum() > 0)  # lora_B starts at zero
            continue
        if "lora_" in name:
            continue
        key = name.replace("base_model.model.", "").replace(".base_layer", "")
        assert torch.equal(p.detach(), base_sd[key]), f"frozen weight {key} changed"
        frozen_same += 1
    assert lora_changed > 10 and frozen_same > 50
    assert not any(p.requires_grad for n, p in trained.named_parameters() if "multi_modal_projector" in n)
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if "loss" in r]
    assert len(losses) == 8 and np.mean(losses[-3:]) < np.mean(losses[:3])
    assert all(r["grad_norm"] > 0 and r["samples_per_s"] > 0 for r in log if "loss" in r)
    kappas = {r["step"]: r["val_kappa"] for r in log if "val_kappa" in r}
    assert sorted(kappas) == [4, 8]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["kind"] == "psgvlm-vlm-run" and meta["provenance"]["versions"]["transformers"]
    # the best checkpoint by validation kappa (the first on a tie) is kept beside the last
    best = meta["checkpoints"]["best"]
    assert best["step"] == max(kappas, key=lambda s: (kappas[s], -s)) and meta["checkpoints"]["last"] == "checkpoints/step-8"
    assert (out / best["checkpoint"] / "run_config.json").exists() and (out / "checkpoints/step-8/run_config.json").exists()
    for f in ("adapter/adapter_config.json", "processor/processor_config.json", "loss_curve.png",
              "predictions.jsonl", "metrics.json", "README.md", "confusion.png"):
        assert (out / f).exists(), f
    assert f"- base model: `{tiny_dir.resolve()}`" in (out / "README.md").read_text() and hub_calls == []  # no upload unless asked

    # doctor on the run and on the bare model: every check passes
    from psgvlm.vlm.doctor import main as doctor

    assert doctor(["--run", str(out), "--dataset", str(image_ds), "--json", str(tmp_path / "doc.json")]) == 0
    report = json.loads((tmp_path / "doc.json").read_text())
    assert report["checks"]["image_tokens"]["image_tokens"] == report["checks"]["image_tokens"]["image_features"]
    assert 0 < report["checks"]["loss_tokens"]["share"] < 0.05
    assert doctor(["--model", str(tiny_dir), "--dataset", str(image_ds)]) == 0

    # predict through the public entry point, same run dir
    from psgvlm.vlm.predict import load_predictor, main

    assert main(["--run", str(out), "--dataset", str(image_ds), "--split", "test", "--out", str(tmp_path / "p"),
                 "--max-samples", "4"]) == 0
    rows = [json.loads(x) for x in (tmp_path / "p" / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(abs(sum(r["probs"]) - 1) < 1e-4 for r in rows)
    assert main(["--run", str(out), "--dataset", str(image_ds), "--out", str(tmp_path / "g"), "--mode", "generate",
                 "--max-samples", "4"]) == 0
    gen_metrics = json.loads((tmp_path / "g" / "metrics.json").read_text())
    gen_meta = gen_metrics["meta"]
    assert 0.0 <= gen_meta["unparseable_rate"] <= 1.0 and (tmp_path / "g" / "generated.txt").exists()
    gen_rows = [json.loads(x) for x in (tmp_path / "g" / "predictions.jsonl").read_text().splitlines()]
    assert sum(r["pred"] == -1 for r in gen_rows) == gen_meta["n_unparseable"] == gen_metrics["n_no_prediction"]
    pred = load_predictor(out)
    assert pred.kind == "vlm" and pred.dataset_meta["channels"] == ["C3", "C4", "LOC", "EMG"]
    # the merged predictor reproduces the recipe's own test predictions
    recipe_rows = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()][:4]
    np.testing.assert_allclose([r["probs"] for r in rows], [r["probs"] for r in recipe_rows], atol=1e-4)


def test_resume_from_latest_continues_exactly_and_refuses_other_config(tmp_path, tiny_dir, image_ds):
    """A run stopped at step 3 and resumed with ``latest`` ends with the weights and the loss log of an
    uninterrupted 6-step run (same validation and save schedule)."""
    a, b = tmp_path / "a", tmp_path / "b"
    common = ["--save_every", "3", "--eval_every", "3"]
    ga = _run_recipe(tmp_path, tiny_dir, image_ds, "--output_dir", str(a), "--max_steps", "6", *common)
    _run_recipe(tmp_path, tiny_dir, image_ds, "--output_dir", str(b), "--max_steps", "3", *common)
    gb = _run_recipe(tmp_path, tiny_dir, image_ds, "--output_dir", str(b), "--max_steps", "6", *common,
                     "--resume_from_checkpoint", "latest")
    wa = {n: p for n, p in ga["accelerator"].unwrap_model(ga["model"]).named_parameters() if "lora_" in n}
    wb = dict(gb["accelerator"].unwrap_model(gb["model"]).named_parameters())
    for n, p in wa.items():
        torch.testing.assert_close(wb[n], p, rtol=0, atol=1e-6, msg=f"{n} differs after resume")

    def untimed(run):
        return [{k: v for k, v in json.loads(x).items() if k not in ("samples_per_s", "elapsed_s")}
                for x in (run / "train_log.jsonl").read_text().splitlines()]

    log_a, log_b = untimed(a), untimed(b)
    assert [r["step"] for r in log_b] == [r["step"] for r in log_a] and len(log_a) == 8  # 6 steps + 2 validations
    for ra, rb in zip(log_a, log_b):
        assert ra.keys() == rb.keys()
        np.testing.assert_allclose([ra[k] for k in ra if k != "epoch"], [rb[k] for k in rb if k != "epoch"],
                                   rtol=1e-5, err_msg=f"log differs at step {ra['step']}")
    ckpt = a / "checkpoints" / "step-3"
    with pytest.raises(ValueError, match="learning_rate"):
        _run_recipe(tmp_path, tiny_dir, image_ds, "--output_dir", str(tmp_path / "c"), "--learning_rate", "0.01",
                    "--resume_from_checkpoint", str(ckpt))


def test_recipe_zero_shot_scores_the_untuned_model_and_pushes_when_asked(tmp_path, tiny_dir, image_ds, hub_calls):
    from psgvlm.vlm.predict import load_predictor

    out = tmp_path / "zs"
    g = _run_recipe(tmp_path, tiny_dir, image_ds, "--output_dir", str(out), "--train", "false",
                    "--push_to_hub", "--hub_model_id", "someone/zero-shot")
    assert g["step"] == 0 and not (out / "adapter").exists()
    assert [c[0] for c in hub_calls] == ["create_repo", "upload_folder"]
    upload = hub_calls[1][1]
    assert upload["repo_id"] == "someone/zero-shot" and upload["folder_path"] == str(out)
    assert {"adapter/*", "processor/*", "README.md", "meta.json"} <= set(upload["allow_patterns"])
    assert "zero-shot" in (out / "README.md").read_text()
    meta = json.loads((out / "meta.json").read_text())
    assert meta["adapter"] is None and meta["trainable_parameters"]["trainable"] == 0
    assert len((out / "predictions.jsonl").read_text().splitlines()) == 10
    assert load_predictor(out).predict_proba([wave_image(0, np.random.default_rng(0))]).shape == (1, 5)


# --------------------------------------------------------------------------- bad input


def test_bad_dataset_dirs(tmp_path):
    from psgvlm.image.dataset import load_dataset
    from psgvlm.vlm.predict import main

    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"missing \['meta.json', 'dataset_dict.json'\]"):
        load_dataset(tmp_path / "empty")
    assert main(["--dataset", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2


def test_model_id_not_available_offline_fails_fast(monkeypatch, tmp_path):
    from psgvlm.vlm.model import ModelNotAvailableError, load_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    # Fails fast: the error comes before any connection attempt (no network retries to wait through).
    attempts = []
    monkeypatch.setattr(socket.socket, "connect", lambda self, address: attempts.append(address))
    monkeypatch.setattr(socket, "create_connection", lambda address, *a, **kw: attempts.append(address))
    with pytest.raises(ModelNotAvailableError, match="not in the Hugging Face cache"):
        load_model("llava-hf/llava-v1.6-mistral-7b-hf")
    assert attempts == []
    with pytest.raises(ModelNotAvailableError, match="no config.json"):
        load_model(str(tmp_path))


def test_prompt_without_image_placeholder_is_refused(tmp_path):
    from psgvlm.vlm.data import get_template, load_prompts

    with pytest.raises(ValueError, match="image placeholder"):
        get_template("Which sleep stage is this? <img>")
    bad = tmp_path / "p.yaml"
    bad.write_text("templates:\n  a: 'no image here'\n")
    with pytest.raises(ValueError, match=r"prompt 'a' must contain the image placeholder"):
        load_prompts(bad)
    with pytest.raises(ValueError, match="not found; choose from"):
        get_template("nonexistent_name")


def test_bitsandbytes_requested_where_it_cannot_run(tiny_dir):
    from psgvlm.vlm.model import load_model

    with pytest.raises(RuntimeError, match="quantization='4bit'"):
        load_model(str(tiny_dir), quantization="4bit")
    with pytest.raises(ValueError, match="quantization '8bit' not allowed"):
        load_model(str(tiny_dir), quantization="8bit")


# --------------------------------------------------------------------------- the embedded default run


def test_default_run_loads_and_predicts():
    from psgvlm.vlm.predict import DEFAULT_RUN, load_predictor

    assert (DEFAULT_RUN / "meta.json").exists(), f"embedded default run missing at {DEFAULT_RUN}"
    size_mb = sum(f.stat().st_size for f in DEFAULT_RUN.rglob("*") if f.is_file()) / 1e6
    assert size_mb < 5, f"default run is {size_mb:.1f} MB"
    pred = load_predictor()
    assert pred.kind == "vlm" and pred.dataset_meta["channels"][:3] == ["F3", "C3", "O1"]
    # Its quality is checked by re-scoring regenerated held-out data (the slow test below), not by
    # reading the metrics.json committed beside it.
    probs = pred.predict_proba([wave_image(0, np.random.default_rng(0)), wave_image(3, np.random.default_rng(1))],
                               batch_size=2)
    assert probs.shape == (2, 5) and np.allclose(probs.sum(1), 1)


@pytest.mark.slow
def test_default_run_reproduces_its_test_kappa_on_regenerated_data(tmp_path):
    """Regenerate the default's synthetic ISRUC data (seed 0; subjects, length, bands and scaling read from its
    meta.json, as its README's commands make them) and re-score its held-out subjects."""
    from psgvlm.cli import main as cli
    from psgvlm.vlm.predict import DEFAULT_RUN

    dataset = json.loads((DEFAULT_RUN / "meta.json").read_text())["dataset"]
    recordings = dataset["recordings"]
    minutes = recordings[0]["n_epochs"] / 2
    assert cli(["synth", "--format", "isruc", "--out", str(tmp_path / "raw"), "--subjects", str(len(recordings)),
                "--minutes", f"{minutes:g}", "--seed", "0", "--quiet"]) == 0
    assert cli(["render", "--format", "isruc", "--input", str(tmp_path / "raw"), "--out", str(tmp_path / "img"),
                "--channels", *dataset["channels"], "--scaling", dataset["settings"]["render"]["scaling"],
                "--quiet"]) == 0
    assert cli(["predict", "--run", str(DEFAULT_RUN), "--dataset", str(tmp_path / "img"), "--split", "test",
                "--out", str(tmp_path / "pred")]) == 0
    got = json.loads((tmp_path / "pred" / "metrics.json").read_text())["pooled"]
    assert got["kappa"] >= 0.5  # (equal to the recorded figure while psgvlm synth is unchanged)


@pytest.mark.slow
def test_tiny_cpu_recipe_learns_on_synthetic_isruc(tmp_path):
    """The quickstart's recipe from scratch: kappa >= 0.5 on held-out synthetic subjects (~2-8 min)."""
    from psgvlm.cli import main as cli

    assert cli(["synth", "--format", "isruc", "--out", str(tmp_path / "raw"), "--subjects", "12", "--minutes", "30",
                "--seed", "0", "--quiet"]) == 0
    assert cli(["render", "--format", "isruc", "--input", str(tmp_path / "raw"), "--out", str(tmp_path / "img"),
                "--quiet"]) == 0
    assert cli(["tiny-model", "--out", str(tmp_path / "tiny"), "--image-size", "112"]) == 0
    argv = sys.argv
    sys.argv = [str(RECIPE), "--config", str(ROOT / "recipes/configs/llava_tiny_cpu.yaml"), "--dataset",
                str(tmp_path / "img"), "--model", str(tmp_path / "tiny"), "--output_dir", str(tmp_path / "run")]
    try:
        runpy.run_path(str(RECIPE), run_name="__main__")
    finally:
        sys.argv = argv
    pooled = json.loads((tmp_path / "run" / "metrics.json").read_text())["pooled"]
    assert pooled["kappa"] >= 0.5, pooled


@pytest.mark.slow
def test_recipe_runs_data_parallel_on_two_cpu_processes(tmp_path, tiny_dir, image_ds):
    """DDP (gloo, 2 CPU processes via torchrun): training, per-process RNG checkpoints, gathered scoring."""
    import shutil
    import subprocess

    if shutil.which("torchrun") is None:
        pytest.skip("torchrun not on PATH")
    out = tmp_path / "ddp"
    # PYTHONPATH: torchrun may be another interpreter's script, without this checkout installed
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    # --standalone: a free rendezvous port, so a busy default port 29500 cannot fail the run
    cmd = ["torchrun", "--standalone", "--nproc_per_node", "2", str(RECIPE), "--dataset", str(image_ds), "--model", str(tiny_dir),
           "--output_dir", str(out), "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "1",
           "--max_steps", "4", "--save_every", "2", "--eval_every", "2", "--lora_r", "4"]
    proc = subprocess.run(cmd, env=env, cwd=ROOT, timeout=600, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (out / "checkpoints" / "step-2" / "random_states_1.pkl").exists()
    assert len((out / "predictions.jsonl").read_text().splitlines()) == 10  # both halves gathered
    # validation gathered on both processes: one log row per validation, the best chosen identically
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "val_kappa" in r] == [2, 4]
    assert json.loads((out / "meta.json").read_text())["checkpoints"]["best"]["step"] in (2, 4)
    assert (out / "README.md").exists() and (out / "confusion.png").exists()
