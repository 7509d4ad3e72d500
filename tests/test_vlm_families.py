"""Every registered VLM family (psgvlm.vlm.families.FAMILIES): a tiny model trains one LoRA step (LoRA
weights move, base and projector do not), label scoring equals per-answer full passes, doctor's checks
pass, tiny-model saves and loads back, and the shipped real-checkpoint configs dry-run on the meta device.

    python -m pytest -q tests/test_vlm_families.py

Hermetic: tiny models are built in code (112-px images, 1 layer), nothing is downloaded.
"""

from __future__ import annotations

import copy
import os

import numpy as np
import pytest
import torch

from psgvlm.stages import STAGES
from psgvlm.vlm.families import FAMILIES, has_torchvision

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SIZE = 112
# One case per family: the completeness test fails when a family is registered without one.
CASES = {"llava_next": {}, "qwen2_vl": {}, "qwen2_5_vl": {}, "idefics3": {}, "paligemma": {}}
DRY_RUN = {  # image tokens of one 336x336 image from the real processor values (pinned to one tile)
    "llava_next": pytest.param("llava_next", 1176, marks=pytest.mark.slow),  # 7B on meta: ~25 s
    "qwen2_vl": ("qwen2_vl", 144), "qwen2_5_vl": ("qwen2_5_vl", 144), "idefics3": ("idefics3", 64),
    "paligemma": ("paligemma", 256),
}


def test_registry_complete():
    import transformers

    from psgvlm.vlm.model import checkpoint_facts

    assert set(CASES) == set(FAMILIES) == set(DRY_RUN)
    for name, facts in FAMILIES.items():
        assert hasattr(transformers, facts.model_class) and hasattr(transformers, facts.processor_class), name
        real = checkpoint_facts(name)
        assert real["config"]["model_type"] == facts.model_type and real["source"], name
        assert facts.train_padding == "right" and facts.score_padding == "left"
        assert facts.positions in ("from0", "from1", "mrope")


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def tiny(request):
    from psgvlm.vlm.model import build_tiny_model

    model, processor = build_tiny_model(family=request.param, image_size=SIZE, n_layers=2, seed=0)
    return request.param, model, processor


def _images(n, seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)) for _ in range(n)]


def test_label_scoring_equals_full_passes(tiny):
    from psgvlm.vlm.data import VLMCollator, get_template
    from psgvlm.vlm.scoring import score_batch

    family, model, processor = tiny
    model.eval()
    score_col = VLMCollator(processor, get_template(), mode="score")
    train_col = VLMCollator(processor, get_template(), mode="train")
    assert score_col.family == family
    # N1/N2/N3 share their first token in every family's tokenizer: the continuation pass is exercised.
    assert len({a[0] for a in score_col.answers}) < len(STAGES)
    images = _images(2)
    with torch.no_grad():
        fast = score_batch(model, score_col([{"image": im} for im in images]), score_col.answers, family)
        full = torch.zeros_like(fast)
        for i, im in enumerate(images):
            for j in range(len(STAGES)):  # one full pass per answer: -(mean answer-token loss) x length
                full[i, j] = -model(**train_col([{"image": im, "label": j}])).loss * len(score_col.answers[j])
    assert torch.allclose(fast, full, atol=1e-4), (fast, full)
    assert not torch.allclose(fast[0], fast[0, :1].expand(5))  # the five answers score differently


def test_one_lora_step_moves_only_lora(tiny):
    from peft import get_peft_model

    from psgvlm.vlm.data import VLMCollator, get_template
    from psgvlm.vlm.families import get_family
    from psgvlm.vlm.model import lora_config, trainable_parameters

    family, model, processor = tiny
    facts = get_family(family)
    net = get_peft_model(copy.deepcopy(model), lora_config(model, r=4, alpha=8, dropout=0.0))
    params = trainable_parameters(net)
    assert params["per_part"][params["projector"]] == 0 and params["per_part"]["lm_head"] == 0
    assert params["per_part"][facts.vision_prefix.rsplit(".", 1)[-1]] > 0
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    col = VLMCollator(processor, get_template(), mode="train")
    batch = col([{"image": im, "label": k} for k, im in enumerate(_images(2, seed=1))])
    assert int((batch["labels"] != -100).sum()) == sum(len(col.answers[k]) for k in range(2))
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-2)
    net.train()
    loss = net(**batch).loss
    loss.backward()
    opt.step()
    moved = {n for n, p in net.named_parameters() if not torch.equal(p.detach(), before[n])}
    lora_b = {n for n in before if "lora_B" in n}
    assert lora_b and lora_b <= moved  # every LoRA B matrix got a gradient step
    assert all("lora_" in n for n in moved), sorted(n for n in moved if "lora_" not in n)[:5]
    projector = [n for n in before if f".{params['projector']}." in n]
    assert projector and not any(n in moved for n in projector)


def test_doctor_checks_pass(tiny):
    from psgvlm.vlm.data import get_template
    from psgvlm.vlm.doctor import run_checks

    family, model, processor = tiny
    rows = [{"image": im, "label": k} for k, im in enumerate(_images(2, seed=2))]
    report = run_checks(copy.deepcopy(model), processor, get_template(), rows, add_lora=True)
    failed = {k: v for k, v in report["checks"].items() if not v["ok"]}
    assert report["ok"], failed
    assert report["checks"]["family"]["family"] == family


def test_collator_refuses_a_lost_image_token(tiny):
    from psgvlm.vlm.data import VLMCollator, get_template

    family, model, processor = tiny
    col = VLMCollator(processor, get_template(), mode="score")
    real = col.facts.image_tokens
    object.__setattr__(col, "facts", type(col.facts)(**{**col.facts.__dict__,
                                                       "image_tokens": lambda p, s: [n + 1 for n in real(p, s)]}))
    with pytest.raises(ValueError, match="image tokens per row"):
        col([{"image": _images(1)[0]}])


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_tiny_model_cli_roundtrip(family, tmp_path, capsys):
    from psgvlm.vlm.model import load_model, tiny_model_main

    out = tmp_path / family
    if family.startswith("qwen") and not has_torchvision():
        assert tiny_model_main(["--family", family, "--out", str(out)]) == 2  # said in one line, no traceback
        assert "torchvision" in capsys.readouterr().err
        pytest.skip("transformers saves/loads Qwen2-VL processors only with torchvision (not installed)")
    assert tiny_model_main(["--family", family, "--out", str(out), "--image-size", str(SIZE), "--layers", "1"]) == 0
    model, processor = load_model(str(out), dtype="float32", pin_grid=True)
    assert type(model).__name__ == FAMILIES[family].model_class
    with pytest.raises(ValueError, match="not family"):
        load_model(str(out), family="llava_next" if family != "llava_next" else "paligemma")


def test_tiny_model_help_lists_families(capsys):
    from psgvlm.vlm.model import tiny_model_main

    with pytest.raises(SystemExit):
        tiny_model_main(["--help"])
    text = capsys.readouterr().out
    assert all(name in text for name in FAMILIES)


@pytest.mark.parametrize("family,tokens", list(DRY_RUN.values()))
def test_dry_run_of_shipped_config(family, tokens):
    from psgvlm.vlm.model import dry_run

    r = dry_run(family)
    assert r["image_tokens_336_pinned"] == tokens
    assert r["n_lora_target_modules"] > 0 and not r["projector_targets"]
    per_part = r["trainable"]["per_part"]
    assert per_part[r["trainable"]["projector"]] == 0 and per_part["lm_head"] == 0
    assert 0 < r["trainable"]["share"] < 0.05  # LoRA rank 16: a few percent of the base at most
    assert any(k.startswith("vision:") for k in r["lora_target_kinds"])


def test_family_inferred_from_config():
    from psgvlm.vlm.families import family_of

    assert family_of({"model_type": "qwen2_5_vl"}) == "qwen2_5_vl"
    with pytest.raises(ValueError, match="no registered VLM family"):
        family_of({"model_type": "blip-2"})


def test_rationale_prompt_is_parsed_and_its_failures_counted():
    from psgvlm.vlm.data import get_template
    from psgvlm.vlm.scoring import parse_features, parse_stage, unparseable_rate

    text = get_template("rationale")
    assert "Stage:" in text and "spindles" in text and text.count("<image>") == 1
    answers = ["Stage: N2. Features: sleep spindles, K-complexes", "N3, slow waves throughout",
               "Alpha rhythm and high chin EMG. Stage: W. Features: alpha, chin tone", "no idea", ""]
    assert [parse_stage(a) for a in answers] == [2, 3, 0, None, None]
    assert parse_features(answers[0]) == ["spindles", "k_complexes"]
    assert parse_features(answers[2]) == ["alpha", "chin_tone"]
    assert unparseable_rate(answers) == pytest.approx(0.4)


def test_rationale_generation_runs_on_a_tiny_model():
    from psgvlm.vlm.data import VLMCollator, get_template
    from psgvlm.vlm.model import build_tiny_model
    from psgvlm.vlm.scoring import generate_dataset, generation_probs

    model, processor = build_tiny_model(family="idefics3", image_size=SIZE, n_layers=1)
    col = VLMCollator(processor, get_template("rationale"), mode="score")
    texts, codes = generate_dataset(model, col, [{"image": im} for im in _images(2)], batch_size=2,
                                    max_new_tokens=12, progress=False)
    assert len(texts) == 2 and len(codes) == 2
    probs = generation_probs(codes)  # a random model: rows are one-hot or NaN (no answer), never read as W
    assert all(np.isnan(r).all() or r.sum() == 1 for r in probs)
