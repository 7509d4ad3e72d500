"""Image-classifier baselines (ResNet, ConvNeXt, ViT, Swin, CLIP + linear head): every registered
architecture builds, trains a step, saves a run that ``psgvlm.vlm.predict.load_predictor`` reads back.

    python -m pytest -q tests/test_vlm_classifiers.py
"""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from psgvlm.vlm.classifiers import (
    BLOCKS,
    CLASSIFIERS,
    build_classifier,
    save_classifier_run,
    set_trainable_layers,
)

ROOT = Path(__file__).resolve().parents[1]
CASES = {"resnet": {}, "convnext": {}, "vit": {}, "swin": {}, "clip_linear": {"train_encoder": True}}


def _images(n, seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (336, 336, 3), dtype=np.uint8)) for _ in range(n)]


def test_every_registered_classifier_has_a_case():
    assert set(CASES) == set(CLASSIFIERS)


@pytest.mark.parametrize("arch", sorted(CASES))
def test_classifier_trains_saves_and_predicts(arch, tmp_path):
    from psgvlm.vlm.predict import load_predictor

    torch.manual_seed(0)
    model, pre = build_classifier(arch, size="tiny", image_size=112, **CASES[arch])
    images = _images(4)
    labels = torch.tensor([0, 1, 2, 3])
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    out = model(pixel_values=pre(images), labels=labels)
    assert out.logits.shape == (4, 5)
    out.loss.backward()
    opt.step()
    assert any(not torch.equal(before[n], p) for n, p in model.named_parameters() if n in before)
    save_classifier_run(model, pre, tmp_path, arch=arch,
                        meta_extra={"config": {"arch": arch}, "dataset_meta": {"channels": ["C3"]}})
    pred = load_predictor(tmp_path)
    assert pred.kind == "image-classifier" and pred.dataset_meta == {"channels": ["C3"]}
    probs = pred.predict_proba(images, batch_size=3)
    assert probs.shape == (4, 5) and np.allclose(probs.sum(1), 1)
    model.eval()
    with torch.no_grad():
        ref = torch.softmax(model(pixel_values=pre(images)).logits, -1).numpy()
    np.testing.assert_allclose(probs, ref, atol=1e-5)


def test_clip_linear_probe_freezes_encoder():
    model, _ = build_classifier("clip_linear", size="tiny", image_size=112)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["head.weight", "head.bias"]


def test_every_registered_classifier_has_its_blocks_for_partial_fine_tuning():
    assert set(BLOCKS) == set(CLASSIFIERS)


@pytest.mark.parametrize("arch", sorted(CASES))
def test_trainable_layers_train_only_the_last_blocks_and_the_head(arch):
    """Partial fine-tuning (the paper's Table 3): a step changes the last block and the head, nothing else."""
    torch.manual_seed(0)
    model, pre = build_classifier(arch, size="tiny", image_size=112, trainable_layers=1)
    path, tail = BLOCKS[arch]
    blocks = model.get_submodule(path)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    expected = {f"{path}.{len(blocks) - 1}.{n}" for n, _ in blocks[-1].named_parameters()}
    expected |= {f"{t}.{n}" for t in tail for n, _ in model.get_submodule(t).named_parameters()}
    assert trainable == expected
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model(pixel_values=pre(_images(4)), labels=torch.tensor([0, 1, 2, 3])).loss.backward()
    opt.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(before[n], p)}
    assert changed and changed <= expected
    assert any(n.startswith(f"{path}.{len(blocks) - 1}.") for n in changed)  # the block learns, not only the head
    head_only = set_trainable_layers(model, arch, 0)
    assert 0 < head_only["trainable"] < head_only["total"] and head_only["blocks"] == f"0 of {len(blocks)}"
    assert all(not n.startswith(path) for n, p in model.named_parameters() if p.requires_grad)
    with pytest.raises(ValueError, match=rf"trainable_layers {len(blocks) + 1} not allowed for {arch}"):
        set_trainable_layers(model, arch, len(blocks) + 1)


def test_a_pretrained_checkpoint_is_loaded_then_partially_fine_tuned(tmp_path):
    """The paper's recipe offline: weights from a checkpoint (here a local 1000-class one), a new 5-way
    head, the early stages frozen with the checkpoint's weights."""
    from transformers import ResNetConfig, ResNetForImageClassification

    torch.manual_seed(1)
    source = ResNetForImageClassification(ResNetConfig(embedding_size=16, hidden_sizes=[16, 32, 64, 128],
                                                       depths=[1, 1, 1, 1], layer_type="basic", num_labels=1000))
    source.save_pretrained(tmp_path / "ckpt")
    model, _ = build_classifier("resnet", checkpoint=str(tmp_path / "ckpt"), trainable_layers=2)
    ref = dict(source.named_parameters())
    for name, p in model.named_parameters():
        if name.startswith("classifier."):
            assert p.shape[0] == 5 and p.requires_grad
        else:
            assert torch.equal(p, ref[name]), name  # loaded from the checkpoint
            assert p.requires_grad == name.startswith(("resnet.encoder.stages.2.", "resnet.encoder.stages.3."))


def test_unknown_architecture_and_size_are_refused():
    with pytest.raises(ValueError, match="not registered; choose from"):
        build_classifier("alexnet")
    with pytest.raises(ValueError, match="size 'huge' not allowed"):
        build_classifier("resnet", size="huge")


def test_image_classifier_recipe_writes_a_run(tmp_path):
    sys.path.insert(0, str(ROOT / "tests"))
    from test_vlm import make_image_dataset

    ds = make_image_dataset(tmp_path / "img", n_subjects=4, per_subject=5)
    argv = sys.argv
    sys.argv = ["image_classifier.py", "--config", str(ROOT / "recipes/configs/classifier_tiny_cpu.yaml"),
                "--dataset", str(ds), "--output_dir", str(tmp_path / "run"), "--num_train_epochs", "1",
                "--per_device_train_batch_size", "4", "--trainable_layers", "1"]
    try:
        runpy.run_path(str(ROOT / "recipes" / "image_classifier.py"), run_name="__main__")
    finally:
        sys.argv = argv
    run = tmp_path / "run"
    meta = json.loads((run / "meta.json").read_text())
    assert meta["kind"] == "psgvlm-image-classifier-run" and meta["arch"] == "resnet"
    full, _ = build_classifier("resnet", size="tiny", image_size=112)
    counts = meta["trainable_parameters"]  # partial fine-tuning: the last stage and the head
    assert counts["total"] == sum(p.numel() for p in full.parameters()) > counts["trainable"] > 0
    rows = (run / "predictions.jsonl").read_text().splitlines()
    assert len(rows) == 5 and (run / "metrics.json").exists() and (run / "loss_curve.png").exists()
