"""``psgvlm doctor``: check a VLM set-up on one real batch before spending GPU hours on it.

    psgvlm doctor --run runs/llava_isruc --dataset data/isruc_img
    psgvlm doctor --model llava-hf/llava-v1.6-mistral-7b-hf --dataset data/isruc_img
    psgvlm doctor --model runs/tiny-smolvlm --dataset data/isruc_img     # any family in psgvlm.vlm.families

Checks (exit 1 when one fails), for the model's family (read from its config): image-token count ==
image-feature count per example (and == the processor's accounting); which tokens
carry loss (their share and text: only the answer must); padding side (right for training, left for
scoring); LoRA targets and trainable-parameter counts (no projector, no unused vision layer); the five
answers W/N1/N2/N3/REM distinguishable by the scorer (distinct token sequences, distinct scores).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from psgvlm.stages import STAGES


def run_checks(model, processor, template: str, rows: list[dict], *, add_lora: bool) -> dict:
    """All checks on one batch; returns ``{"checks": {name: {"ok": bool, ...}}, "ok": bool}``."""
    import torch

    from psgvlm.vlm.data import IGNORE_INDEX, VLMCollator
    from psgvlm.vlm.families import family_of, get_family
    from psgvlm.vlm.model import lora_config, trainable_parameters
    from psgvlm.vlm.scoring import image_inputs, score_batch

    checks = {}
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    family = family_of(base.config)
    facts = get_family(family)
    checks["family"] = {"ok": VLMCollator(processor, template, mode="score").family == family, "family": family,
                        "processor": type(processor).__name__, "model": type(base).__name__}
    train_col = VLMCollator(processor, template, mode="train")
    batch = train_col(rows)
    tok = processor.tokenizer
    checks["padding_train"] = {"ok": tok.padding_side == "right", "padding_side": tok.padding_side}
    score_col = VLMCollator(processor, template, mode="score")
    sbatch = score_col(rows)
    checks["padding_score"] = {"ok": tok.padding_side == "left" and bool((sbatch["attention_mask"][:, -1] == 1).all()),
                               "padding_side": tok.padding_side}

    # image tokens vs features (the collator has checked them against the processor's accounting)
    image_id = base.config.image_token_id
    n_tokens = (batch["input_ids"] == image_id).sum(1).tolist()
    inputs = {k: v for k, v in image_inputs(batch, base.device, base.dtype).items()
              if k not in ("token_type_ids", "mm_token_type_ids")}
    with torch.no_grad():
        feats = base.model.get_image_features(**inputs).pooler_output
    if isinstance(feats, list | tuple):  # one (n_features, dim) per image
        n_feats = [int(f.reshape(-1, f.shape[-1]).shape[0]) for f in feats]
    else:  # (images x tiles, features per tile, dim)
        per_row = feats.shape[0] // len(rows) * feats.shape[-2] if feats.dim() == 3 else feats.shape[0] // len(rows)
        n_feats = [int(per_row)] * len(rows)
    checks["image_tokens"] = {"ok": n_tokens == n_feats, "image_tokens": n_tokens, "image_features": n_feats,
                              "pixel_values": list(batch["pixel_values"].shape),
                              "grid": getattr(base.config, "image_grid_pinpoints", None)}

    # loss tokens
    labels = batch["labels"]
    real = batch["attention_mask"].bool()
    carry = labels != IGNORE_INDEX
    texts = [tok.decode(labels[i][carry[i]]) for i in range(len(rows))]
    expected = [train_col.answers[int(r["label"])] for r in rows]
    only_answer = all(labels[i][carry[i]].tolist() == expected[i] for i in range(len(rows)))
    no_image = not bool(carry[batch["input_ids"] == image_id].any())
    checks["loss_tokens"] = {"ok": only_answer and no_image, "share": float(carry.sum() / real.sum()),
                             "n_loss_tokens": int(carry.sum()), "n_tokens": int(real.sum()), "texts": texts}

    # LoRA
    if add_lora:
        from peft import get_peft_model

        model = get_peft_model(model, lora_config(model))
    targets = sorted({n.rsplit(".lora_", 1)[0].replace("base_model.model.", "")
                      for n, _ in model.named_parameters() if ".lora_" in n})
    skip = [f"{facts.vision_prefix}.{facts.vision_layers}.{i}." for i in facts.unused_vision_layers(base.config)]
    bad = [t for t in targets if t.startswith(facts.projector_prefix + ".") or t.startswith("lm_head")
           or any(t.startswith(s) for s in skip)]
    params = trainable_parameters(model)
    checks["lora"] = {"ok": bool(targets) and not bad and params["per_part"][params["projector"]] == 0,
                      "trainable_params": params["trainable"], "total_params": params["total"],
                      "n_targets": len(targets), "bad_targets": bad, "unused_vision_layers": [s[:-1] for s in skip],
                      "example_targets": targets[:3] + targets[-3:], "trainable": params}

    # answers distinguishable
    answers = train_col.answers
    first = {s: a[0] for s, a in zip(STAGES, answers)}
    with torch.no_grad():
        lls = score_batch(model, sbatch, answers, family).numpy()
    distinct = len({tuple(a) for a in answers}) == len(STAGES) and all(len(set(np.round(r, 6))) == len(STAGES) for r in lls)
    checks["answers"] = {"ok": distinct, "tokens": {s: tok.convert_ids_to_tokens(a) for s, a in zip(STAGES, answers)},
                         "shared_first_token": len(set(first.values())) < len(STAGES),
                         "log_likelihood_first_row": dict(zip(STAGES, lls[0].round(3).tolist()))}
    return {"checks": checks, "ok": all(c["ok"] for c in checks.values())}


def main(argv: list[str] | None = None) -> int:
    """``psgvlm doctor``: image tokens, loss masking, padding, LoRA targets, answer scoring on one batch."""
    from psgvlm.image.dataset import load_dataset
    from psgvlm.vlm.data import get_template
    from psgvlm.vlm.model import ModelNotAvailableError, load_model

    p = argparse.ArgumentParser(prog="psgvlm doctor", description=main.__doc__)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", help="a VLM run dir (base model + adapter)")
    src.add_argument("--model", help="hub id or local model dir (LoRA added as the recipe would)")
    p.add_argument("--dataset", required=True, help="`psgvlm render` dataset dir")
    p.add_argument("--split", default=None, help="split to draw the batch from (default: the first)")
    p.add_argument("--prompt", default="default", help="prompt name (with --model)")
    p.add_argument("--no-pin-grid", action="store_true", help="keep the model's own anyres grid (with --model)")
    p.add_argument("--batch-size", type=int, default=2, help="epoch images in the batch checked")
    p.add_argument("--json", help="also write the report as JSON here")
    args = p.parse_args(argv)
    try:
        dsd, meta = load_dataset(args.dataset)
        split = args.split or next(iter(dsd))
        if split not in dsd:
            raise ValueError(f"split {split!r} not in {args.dataset}; available: {sorted(dsd)}")
        ds = dsd[split]
        rows = [ds[i] for i in range(min(args.batch_size, len(ds)))]
        if args.run:
            from psgvlm.vlm.predict import Predictor

            pred = Predictor(args.run, merge_adapter=False)
            if pred.kind != "vlm":
                raise ValueError(f"{args.run} is an image-classifier run; doctor checks VLM runs")
            model, processor, template, add_lora = pred.model, pred.processor, pred.meta["prompt"]["template"], False
        else:
            model, processor = load_model(args.model, pin_grid=not args.no_pin_grid)
            template, add_lora = get_template(args.prompt, channels=meta.get("channels")), True
    except (FileNotFoundError, ValueError, ModelNotAvailableError) as err:
        print(f"psgvlm doctor: {err}", file=sys.stderr)
        return 2
    report = run_checks(model, processor, template, rows, add_lora=add_lora)
    for name, c in report["checks"].items():
        detail = {k: v for k, v in c.items() if k != "ok"}
        print(f"[{'ok' if c['ok'] else 'FAIL'}] {name}: {json.dumps(detail, default=str)[:400]}")
    if args.json:
        from psgvlm.provenance import write_json_atomic

        write_json_atomic(args.json, report)
    print("all checks passed" if report["ok"] else "some checks FAILED")
    return 0 if report["ok"] else 1
