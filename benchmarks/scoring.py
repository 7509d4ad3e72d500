"""Label scoring vs free generation on CPU with the tiny LLaVA-NeXT: epochs/s and forward passes.

    python benchmarks/scoring.py [--n 32] [--batch-size 8] [--image-size 336] [--patch-size 14]

Builds the tiny model in code (the 14-px default gives 1,176 image tokens per 336x336 epoch, as the
real model does), then times label scoring (two forward passes per batch: prompt with KV cache, then the
five continuations) against greedy generation of 4 tokens + parsing and against naive scoring (one
full prompt+answer pass per stage), and counts the language-model forward calls of each. Writes ``benchmarks/results/scoring.json``. Timings on a shared machine are
pessimistic; the pass counts are exact.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from psgvlm.provenance import provenance, write_json_atomic
from psgvlm.vlm.data import VLMCollator, get_template
from psgvlm.vlm.model import build_tiny_model
from psgvlm.vlm.scoring import generate_dataset, score_dataset

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--n", type=int, default=32, help="number of epoch images")
p.add_argument("--batch-size", type=int, default=8)
p.add_argument("--image-size", type=int, default=336)
p.add_argument("--patch-size", type=int, default=14)
p.add_argument("--max-new-tokens", type=int, default=4)
p.add_argument("--repeats", type=int, default=3, help="best of N timings (the machine is shared)")
p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "scoring.json"))
args = p.parse_args()

model, processor = build_tiny_model(image_size=args.image_size, patch_size=args.patch_size)
model.eval()
rng = np.random.default_rng(0)
rows = [{"image": Image.fromarray(rng.integers(0, 255, (336, 336, 3), dtype=np.uint8))} for _ in range(args.n)]
collator = VLMCollator(processor, get_template(), mode="score")
calls = []
model.model.language_model.register_forward_hook(lambda *a: calls.append(1))
n_batches = -(-args.n // args.batch_size)

score_dataset(model, collator, rows[: args.batch_size], batch_size=args.batch_size, progress=False)  # warm-up


def best_of(name, fn):
    """(best wall time over --repeats runs, language-model forward calls of one run)."""
    times = []
    for _ in range(args.repeats):
        calls.clear()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    print(f"{name}: {[round(t, 2) for t in times]} s", flush=True)
    return min(times), len(calls)


t_score, calls_score = best_of("label scoring", lambda: score_dataset(model, collator, rows, batch_size=args.batch_size,
                                                     progress=False))
t_gen, calls_gen = best_of("generate", lambda: generate_dataset(model, collator, rows, batch_size=args.batch_size,
                                                    max_new_tokens=args.max_new_tokens, progress=False))

# Naive reference: one full forward pass of prompt + answer per stage (5 passes per batch).
train_collator = VLMCollator(processor, get_template(), mode="train")


def naive():
    with torch.no_grad():
        for i in range(0, args.n, args.batch_size):
            chunk = rows[i:i + args.batch_size]
            for j in range(5):
                model(**train_collator([{**r, "label": j} for r in chunk]))


t_naive, calls_naive = best_of("naive 5 passes", naive)

result = {
    "n_epochs": args.n, "batch_size": args.batch_size, "image_tokens": int(
        (collator(rows[:1])["input_ids"] == model.config.image_token_index).sum()),
    "scoring_epochs_per_s": args.n / t_score, "generate_epochs_per_s": args.n / t_gen,
    "naive_5pass_epochs_per_s": args.n / t_naive,
    "scoring_forward_passes_per_batch": calls_score / n_batches,
    "naive_forward_passes_per_batch": calls_naive / n_batches,
    "generate_forward_passes_per_batch": calls_gen / n_batches,
    "generate_max_new_tokens": args.max_new_tokens,
    "note": "random tiny model: generated text is not meaningful, only its cost; shared 2-core machine",
    "load_average": list(__import__("os").getloadavg()),
    "provenance": provenance(),
}
write_json_atomic(args.out, result)
print(json.dumps({k: v for k, v in result.items() if k != "provenance"}, indent=1))
