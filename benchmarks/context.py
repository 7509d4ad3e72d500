"""Sequence context K=0 vs K>0: test kappa, training and scoring seconds per epoch of trained runs.

    psgvlm synth --format isruc --out data/synth_isruc --subjects 12 --minutes 30 --seed 0
    psgvlm render --format isruc --input data/synth_isruc --out data/synth_isruc_img
    psgvlm tiny-model --out runs/tiny-llava --image-size 112
    for K in 0 1; do OMP_NUM_THREADS=1 accelerate launch --config_file recipes/accelerate/cpu.yaml \
        recipes/llava_isruc.py --config recipes/configs/llava_tiny_cpu.yaml --context $K \
        --output_dir runs/context_k$K --predict_splits test; done
    OMP_NUM_THREADS=1 python benchmarks/context.py --runs runs/context_k0 runs/context_k1 --dataset data/synth_isruc_img

For each run: its K (``meta.json``), the test kappa / macro-F1 it wrote, training seconds per epoch
image (``train_log.jsonl``: elapsed time over samples, validation scoring included), image tokens per
example, and label-scoring seconds per epoch on ``--n`` test epochs (best of ``--repeats``, strips
composed at load time included). Writes ``benchmarks/results/context.json``. Timings on a shared
machine are pessimistic; run the two the same way.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np

from psgvlm.image.dataset import load_dataset
from psgvlm.provenance import provenance, read_json, write_json_atomic
from psgvlm.vlm.context import image_tokens, with_context
from psgvlm.vlm.predict import load_predictor

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--runs", nargs="+", required=True, help="trained VLM run dirs (recipes/llava_isruc.py)")
p.add_argument("--dataset", required=True, help="the `psgvlm render` dataset the runs were trained on")
p.add_argument("--split", default="test", help="split timed for scoring")
p.add_argument("--n", type=int, default=48, help="epochs scored per timing")
p.add_argument("--batch-size", type=int, default=16, help="epochs per scoring batch")
p.add_argument("--repeats", type=int, default=2, help="best of N timings (the machine is shared)")
p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "context.json"))
args = p.parse_args()

split, dataset_meta = load_dataset(args.dataset, args.split)
rows = []
for run in args.runs:
    meta = read_json(Path(run) / "meta.json")
    metrics = read_json(Path(run) / "metrics.json")["pooled"]
    log = [json.loads(line) for line in (Path(run) / "train_log.jsonl").read_text().splitlines() if line.strip()]
    steps = [r for r in log if "samples_per_s" in r]
    cfg = meta["config"]
    samples = len(steps) * cfg["per_device_train_batch_size"] * cfg["gradient_accumulation_steps"]  # one process
    predictor = load_predictor(run)
    n = min(args.n, len(split))
    width, height = with_context(split, predictor.context)[0]["image"].size
    best = np.inf
    for _ in range(args.repeats):  # strips composed from the split's rows inside the timing, as predict does
        t0 = time.perf_counter()
        view = with_context(split, predictor.context)
        predictor.predict_proba([view[i]["image"] for i in range(n)], batch_size=args.batch_size)
        best = min(best, time.perf_counter() - t0)
    rows.append({"run": str(run), "context": predictor.context, "image_px": [width, height],
                 "image_tokens": image_tokens(predictor.processor, width, height),
                 "optimizer_steps": meta.get("optimizer_steps"), "train_images": samples,
                 "train_s_per_image": steps[-1]["elapsed_s"] / samples if samples else None,
                 "test_kappa": metrics["kappa"], "test_macro_f1": metrics["macro_f1"],
                 "test_accuracy": metrics["accuracy"], "n_test": metrics["n_epochs"],
                 "score_s_per_epoch": best / n})
    r = rows[-1]
    print(f"K={r['context']}: test kappa {r['test_kappa']:.3f} macro-F1 {r['test_macro_f1']:.3f} "
          f"({r['n_test']} epochs); {r['image_tokens']} image tokens ({width}x{height} px); train "
          f"{r['train_s_per_image']:.3f} s/image ({r['optimizer_steps']} steps); scoring "
          f"{r['score_s_per_epoch']:.3f} s/epoch")
write_json_atomic(Path(args.out), {"runs": rows, "dataset": args.dataset, "split": args.split,
                                   "provenance": provenance()})
print(f"-> {args.out}")
