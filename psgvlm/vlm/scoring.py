"""Label scoring: the log-likelihood of each of the five answers given image and prompt.

Two forward passes per batch, whatever the answers' lengths:

1. the prompt (left padded, images expanded) with ``use_cache=True``; its last-position logits give
   every answer's first token;
2. the key/value cache repeated 5x and one batched pass over the five answer continuations
   (``batch * 5`` rows of at most a few tokens); their logits give the remaining answer tokens.

Each answer's log-likelihood is the sum over all its tokens (including ``</s>``), so answers that share
first tokens (``N1``/``N2``/``N3`` = ``N`` + digit with the Mistral tokenizer) are told apart exactly.
A softmax over the five sums gives the hypnodensity row. Free generation + :func:`parse_stage` is the
alternative read-out; :func:`unparseable_rate` reports how often its text is not a stage, and
:func:`generation_probs` turns the parsed codes into rows: one-hot where the text names a stage, NaN
where it does not (no answer: ``psgvlm.predictions.make_rows`` writes ``pred`` -1 for it, and the
metrics leave it out and count it; it is never read as W, the first column).
"""

from __future__ import annotations

import re

import numpy as np

from psgvlm.stages import STAGE_TO_CODE, STAGES


def _device(model):
    return next(model.parameters()).device


_TEXT_KEYS = ("input_ids", "attention_mask", "labels")


def image_inputs(batch: dict, dev, dtype) -> dict:
    """The processor's image inputs (pixel values and their sizes/grids/masks), floats in the model's dtype."""
    return {k: v.to(dev, dtype=dtype) if v.is_floating_point() else v.to(dev)
            for k, v in batch.items() if k not in _TEXT_KEYS}


def prompt_positions(model, facts, batch: dict, ids, mask):
    """Position ids of a left-padded prompt batch as one unpadded prompt would get them, and the next one.

    ``"from0"``/``"from1"``: 0- or 1-based counts of real tokens (``(n, len)``); ``"mrope"`` (Qwen): the
    model's own 3-D rope index (``(3, n, len)``). Returns ``(positions, next_position (n,))``.
    """
    if facts.positions == "mrope":
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        extra = {k: batch[k].to(ids.device) for k in ("image_grid_thw", "mm_token_type_ids") if k in batch}
        positions, _ = base.model.get_rope_index(ids, attention_mask=mask, **extra)
        return positions, positions.amax(dim=(0, 2)) + 1
    offset = {"from0": 1, "from1": 0}[facts.positions]
    positions = (mask.cumsum(1) - offset).clamp(min=0)
    return positions, positions[:, -1] + 1


def score_batch(model, batch: dict, answers: list[list[int]], family: str = "llava_next"):
    """Log-likelihoods ``(batch, 5)`` (torch float32) of the answers after a left-padded prompt batch.

    Parameters
    ----------
    model : a registered family's ``*ForConditionalGeneration`` (or a peft wrapper)
    batch : dict
        Output of ``VLMCollator(mode="score")``: input_ids, attention_mask and the family's image inputs.
    answers : list of list of int
        Token ids of each stage's answer (``psgvlm.vlm.data.answer_token_ids``).
    family : str
        The model's family in ``psgvlm.vlm.families.FAMILIES`` (position ids of the shared prefix).
    """
    import torch

    from psgvlm.vlm.families import get_family

    facts = get_family(family)
    dev = _device(model)
    ids = batch["input_ids"].to(dev)
    mask = batch["attention_mask"].to(dev)
    if bool((mask[:, -1] == 0).any()):
        raise ValueError("score_batch needs left padding (the last prompt position must be a real token)")
    n, k = ids.shape[0], len(answers)
    with torch.no_grad():
        positions, start = prompt_positions(model, facts, batch, ids, mask)
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions,
                    **image_inputs(batch, dev, model.dtype), use_cache=True, logits_to_keep=1)
        first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)  # (n, vocab)
        max_len = max(len(a) for a in answers)
        scores = torch.stack([first[:, a[0]] for a in answers], dim=1)  # (n, k)
        if max_len == 1:
            return scores
        # Continuations: tokens a[0..L-2] are fed, predicting a[1..L-1]; shorter answers padded.
        pad = 0
        feed = torch.full((k, max_len - 1), pad, dtype=ids.dtype, device=dev)
        target = torch.full((k, max_len - 1), -1, dtype=ids.dtype, device=dev)
        for j, a in enumerate(answers):
            feed[j, : len(a) - 1] = torch.tensor(a[:-1], device=dev)
            target[j, : len(a) - 1] = torch.tensor(a[1:], device=dev)
        cache = out.cache  # transformers 5 names it `cache` (past_key_values is deprecated)
        cache.batch_repeat_interleave(k)  # row i*k + j = example i, answer j
        feed_rows = feed.repeat(n, 1)
        target_rows = target.repeat(n, 1)
        cont_mask = (target_rows >= 0).long()
        full_mask = torch.cat([mask.repeat_interleave(k, 0), cont_mask], dim=1)
        cont_pos = start.repeat_interleave(k).unsqueeze(1) + torch.arange(max_len - 1, device=dev).unsqueeze(0)
        if facts.positions == "mrope":  # text after the image: the three rope axes move together
            cont_pos = cont_pos.unsqueeze(0).expand(3, -1, -1)
        cache_position = torch.arange(ids.shape[1], ids.shape[1] + max_len - 1, device=dev)
        lm = model.get_base_model() if hasattr(model, "get_base_model") else model
        out2 = lm(input_ids=feed_rows, attention_mask=full_mask, position_ids=cont_pos,
                  cache=cache, cache_position=cache_position, use_cache=True)
        logp = torch.log_softmax(out2.logits.float(), dim=-1)  # (n*k, L-1, vocab)
        tok_lp = logp.gather(-1, target_rows.clamp(min=0).unsqueeze(-1)).squeeze(-1) * cont_mask
        return scores + tok_lp.sum(1).view(n, k)


def score_dataset(model, collator, rows, *, batch_size: int = 8, progress: bool = True) -> np.ndarray:
    """Hypnodensity ``(n, 5)`` (float64, rows sum to 1) for an iterable of ``{"image": ...}`` rows."""
    import torch
    from tqdm.auto import tqdm

    if collator.mode != "score":
        raise ValueError("score_dataset needs a collator with mode='score' (left padding)")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    rows = list(rows) if not hasattr(rows, "__len__") else rows
    was_training = model.training
    model.eval()
    probs = []
    try:
        with torch.inference_mode():  # no autograd bookkeeping at all (score_batch's no_grad is the floor)
            for i in tqdm(range(0, len(rows), batch_size), desc="label scoring", disable=not progress,
                          unit="batch"):
                chunk = [rows[j] for j in range(i, min(i + batch_size, len(rows)))]
                lls = score_batch(model, collator(chunk), collator.answers, collator.family)
                probs.append(torch.softmax(lls, dim=1).double().cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(probs) if probs else np.zeros((0, len(STAGES)))


# --------------------------------------------------------------------------- generation


_STAGE = r"(W|WAKE|N\s?[123]|REM|R)\b"
_STAGE_RE = re.compile(r"^\W*(?:(?:sleep\s+)?stage\s*[:\-]?\s*)?" + _STAGE, re.IGNORECASE)
_LABELLED_RE = re.compile(r"\bstage\s*[:\-]\s*" + _STAGE, re.IGNORECASE)  # "... Stage: N2. Features: ..."
# AASM features the rationale prompt asks for, and the words that name them in free text.
FEATURES = {"spindles": r"spindle", "k_complexes": r"k[\s-]?complex", "slow_waves": r"slow[\s-]?wave|delta",
            "rapid_eye_movements": r"rapid eye|\bREMs\b|eye movement", "alpha": r"alpha",
            "chin_tone": r"chin|\bEMG\b|muscle tone|atonia"}


def parse_stage(text: str | None) -> int | None:
    """Stage code from free text (``"N2"``, ``"Stage: REM"``, ``"wake"``, a rationale ``"... Stage: N2. Features:
    spindles"``), or None when unparseable. A leading stage wins; else the first ``Stage: X`` in the text."""
    if not text:
        return None
    m = _STAGE_RE.match(text.strip()) or _LABELLED_RE.search(text)
    if not m:
        return None
    word = m.group(1).upper().replace(" ", "")
    word = {"WAKE": "W", "R": "REM"}.get(word, word)
    return STAGE_TO_CODE.get(word)


def parse_features(text: str | None) -> list[str]:
    """The AASM features (keys of ``FEATURES``) a rationale's text names after its ``Features:`` label (or anywhere)."""
    if not text:
        return []
    part = re.split(r"features?\s*:", text, maxsplit=1, flags=re.IGNORECASE)[-1]
    return [name for name, pattern in FEATURES.items() if re.search(pattern, part, re.IGNORECASE)]


def unparseable_rate(texts: list[str]) -> float:
    """Share of texts :func:`parse_stage` cannot read (0.0 for an empty list)."""
    return float(np.mean([parse_stage(t) is None for t in texts])) if texts else 0.0


def generate_batch(model, processor, batch: dict, *, max_new_tokens: int = 5) -> list[str]:
    """Greedy generation after a left-padded prompt batch; returns the decoded new text per row."""
    import torch

    dev = _device(model)
    inputs = {"input_ids": batch["input_ids"].to(dev), "attention_mask": batch["attention_mask"].to(dev),
              **image_inputs(batch, dev, model.dtype)}
    tok = processor.tokenizer
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
    return tok.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


def generation_probs(codes) -> np.ndarray:
    """Rows ``(n, 5)`` float64 for parsed generations: one-hot at the code, all NaN where it is None.

    A NaN row is an epoch without an answer; its argmax is never taken (``psgvlm.predictions.make_rows``
    gives it ``pred`` -1 and the metrics leave it out and count it).
    """
    probs = np.full((len(codes), len(STAGES)), np.nan)
    for i, code in enumerate(codes):
        if code is not None:
            probs[i] = np.eye(len(STAGES))[code]
    return probs


def generate_dataset(model, collator, rows, *, batch_size: int = 8, max_new_tokens: int = 5,
                     progress: bool = True) -> tuple[list[str], list[int | None]]:
    """Free-generation read-out: ``(texts, codes)``; a code is None where the text is unparseable
    (:func:`generation_probs` turns the codes into rows without an answer there, never W)."""
    from tqdm.auto import tqdm

    if collator.mode != "score":
        raise ValueError("generate_dataset needs a collator with mode='score' (left padding)")
    model.eval()
    texts = []
    for i in tqdm(range(0, len(rows), batch_size), desc="generate", disable=not progress, unit="batch"):
        chunk = [rows[j] for j in range(i, min(i + batch_size, len(rows)))]
        texts += generate_batch(model, collator.processor, collator(chunk), max_new_tokens=max_new_tokens)
    return texts, [parse_stage(t) for t in texts]
