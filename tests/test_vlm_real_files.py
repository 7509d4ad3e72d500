"""The VLM stack against the real LLaVA-NeXT-Mistral-7B tokenizer, processor and config (files only, no
weights, from ../shared/models): answer tokens, image-token counts, exact two-pass label scoring.

    python -m pytest -q tests/test_vlm_real_files.py

Skips with the reason when ../shared/models is absent. Images are real renderer output of random
signals (the content does not matter here, only the pixel grid).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from psgvlm.stages import STAGES

ROOT = Path(__file__).resolve().parents[1]
REAL_MODEL = ROOT.parent / "shared" / "models" / "llava-v1.6-mistral-7b-hf"


def epoch_image(seed: int):
    """A 336x336 epoch image drawn by the renderer from random 12-channel signals."""
    from PIL import Image

    from psgvlm.image.renderer import RenderSettings, render_epoch

    x = np.random.default_rng(seed).standard_normal((12, 6000)).cumsum(axis=1)
    x = (2 * (x - x.min(axis=1, keepdims=True)) / np.ptp(x, axis=1, keepdims=True) - 1).astype(np.float32)
    return Image.fromarray(render_epoch(x, RenderSettings()))


@pytest.fixture(scope="module")
def real_processor():
    if not REAL_MODEL.is_dir():
        pytest.skip(f"real model files {REAL_MODEL} absent (../shared/models, not in the repo)")
    from psgvlm.vlm.model import load_processor

    return load_processor(str(REAL_MODEL))


def test_real_tokenizer_answers_distinct_and_share_first_token(real_processor):
    from psgvlm.vlm.data import answer_token_ids, get_template

    answers = answer_token_ids(real_processor, get_template())
    tok = real_processor.tokenizer
    first = {s: a[0] for s, a in zip(STAGES, answers)}
    assert first["N1"] == first["N2"] == first["N3"]  # a next-token reader cannot tell them apart
    assert len({tuple(a) for a in answers}) == 5
    assert all(a[-1] == tok.eos_token_id for a in answers)
    assert tok.decode(answers[STAGES.index("N3")], skip_special_tokens=True).strip() == "N3"


def test_real_processor_image_token_counts(real_processor):
    from psgvlm.vlm.data import VLMCollator, get_template
    from psgvlm.vlm.model import load_processor

    img = epoch_image(0)
    for proc, tiles in [(real_processor, 3), (load_processor(str(REAL_MODEL), pin_grid=True), 2)]:
        batch = VLMCollator(proc, get_template(), mode="score")([{"image": img}])
        assert int((batch["input_ids"] == proc.tokenizer.convert_tokens_to_ids("<image>")).sum()) == 1176
        assert batch["pixel_values"].shape[1] == tiles



def test_scoring_with_real_tokenizer_separates_n1_n2_n3(real_processor):
    """A tiny random LLaVA-NeXT over the real 32,064-token vocabulary and real processor: the two-pass
    scores equal full per-answer passes and N1/N2/N3 get different log-likelihoods."""
    from transformers import (
        CLIPVisionConfig,
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        MistralConfig,
    )

    from psgvlm.vlm.data import VLMCollator, get_template
    from psgvlm.vlm.model import load_processor
    from psgvlm.vlm.scoring import score_batch

    real = json.loads((REAL_MODEL / "config.json").read_text())
    torch.manual_seed(0)
    config = LlavaNextConfig(
        vision_config=CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                       num_attention_heads=2, image_size=336, patch_size=14),
        text_config=MistralConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                                  num_key_value_heads=1, vocab_size=real["vocab_size"], initializer_range=0.5),
        image_token_index=real["image_token_index"], image_grid_pinpoints=[[336, 336]])
    model = LlavaNextForConditionalGeneration(config).eval()
    proc = load_processor(str(REAL_MODEL), pin_grid=True)
    template = get_template("short")
    col = VLMCollator(proc, template, mode="score")
    img = epoch_image(2)
    ll = score_batch(model, col([{"image": img}]), col.answers)[0]
    train_col = VLMCollator(proc, template, mode="train")
    for j in range(5):
        b = train_col([{"image": img, "label": j}])
        with torch.no_grad():
            logits = model(**{k: v for k, v in b.items() if k != "labels"}).logits
        lab = b["labels"][0, 1:]
        keep = lab != -100
        brute = torch.log_softmax(logits[0, :-1].float(), -1)[keep].gather(-1, lab[keep].unsqueeze(-1)).sum()
        torch.testing.assert_close(ll[j], brute, atol=2e-4, rtol=1e-4)
    n1, n2, n3 = (ll[STAGES.index(s)].item() for s in ("N1", "N2", "N3"))
    assert len({round(n1, 4), round(n2, 4), round(n3, 4)}) == 3
