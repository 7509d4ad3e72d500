"""Dry run of the real 7B LLaVA-NeXT on the meta device: LoRA targets and trainable-parameter counts.

    python benchmarks/dry_run_7b.py [--model-dir ../shared/models/llava-v1.6-mistral-7b-hf]

No weights are needed: the architecture is instantiated from ``config.json`` on the meta device (the
config shipped beside this script, ``llava_v1.6_mistral_7b_config.json``, is used when the model folder
is absent), LoRA is attached exactly as ``recipes/llava_isruc.py`` does (rank 16), and the counts are
written to ``benchmarks/results/dry_run_7b.json``. With the model folder present, the processor's
image-token counts and the answers' tokenisation are added.
"""

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import torch
from peft import get_peft_model
from transformers import LlavaNextConfig, LlavaNextForConditionalGeneration

from psgvlm.provenance import provenance, write_json_atomic
from psgvlm.vlm.model import lora_config, trainable_parameters, unused_vision_layers

HERE = Path(__file__).resolve().parent
DEFAULT_DIR = HERE.parent.parent / "shared" / "models" / "llava-v1.6-mistral-7b-hf"

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--model-dir", default=str(DEFAULT_DIR))
p.add_argument("--lora-r", type=int, default=16)
p.add_argument("--out", default=str(HERE / "results" / "dry_run_7b.json"))
args = p.parse_args()

model_dir = Path(args.model_dir)
config_path = model_dir / "config.json" if model_dir.is_dir() else HERE / "llava_v1.6_mistral_7b_config.json"
config = LlavaNextConfig.from_dict(json.loads(config_path.read_text()))
with torch.device("meta"):
    model = LlavaNextForConditionalGeneration(config)
total = sum(p.numel() for p in model.parameters())
lcfg = lora_config(model, r=args.lora_r, alpha=2 * args.lora_r)
targets = sorted(lcfg.target_modules)
with torch.device("meta"):
    peft_model = get_peft_model(model, lcfg)
params = trainable_parameters(peft_model)
kinds = Counter(("vision:" if ".vision_tower." in t else "language:") + t.rsplit(".", 1)[-1] for t in targets)
result = {
    "config": str(config_path),
    "total_parameters_base": total,
    "lora_r": args.lora_r,
    "n_lora_target_modules": len(targets),
    "lora_target_kinds": dict(sorted(kinds.items())),
    "unused_vision_layers_without_lora": unused_vision_layers(config),
    "vision_feature_layer": config.vision_feature_layer,
    "first_targets": targets[:4],
    "last_targets": targets[-4:],
    "trainable": params,
}
if model_dir.is_dir():
    import numpy as np
    from PIL import Image

    from psgvlm.stages import STAGES
    from psgvlm.vlm.data import VLMCollator, answer_token_ids, get_template
    from psgvlm.vlm.model import load_processor

    img = Image.fromarray(np.full((336, 336, 3), 255, np.uint8))
    for name, pin in [("default_anyres_grid", False), ("pinned_336", True)]:
        proc = load_processor(str(model_dir), pin_grid=pin)
        b = VLMCollator(proc, get_template(), mode="score")([{"image": img}])
        result[f"image_tokens_{name}"] = int((b["input_ids"] == config.image_token_index).sum())
        result[f"tiles_{name}"] = int(b["pixel_values"].shape[1])
        result[f"prompt_tokens_{name}"] = int(b["input_ids"].shape[1])
    answers = answer_token_ids(proc, get_template())
    result["answer_tokens"] = {s: proc.tokenizer.convert_ids_to_tokens(a) for s, a in zip(STAGES, answers)}
result["provenance"] = provenance()
write_json_atomic(args.out, result)
print(json.dumps({k: v for k, v in result.items() if k != "provenance"}, indent=1))
sys.exit(0)
