"""Time feature-ablation attribution of one epoch image (576 patches of 14x14, batched).

    python benchmarks/attribution.py                   # the tiny random LLaVA-NeXT built in code
    python benchmarks/attribution.py --run RUN_DIR     # any run psgvlm.vlm.predict.load_predictor can load
    python benchmarks/attribution.py --threads 2 --batch-size 64 --epochs 3

Prints seconds per epoch, forward passes per epoch (the original + every non-background patch) and
images per second. Target: <= 10 s per epoch with the tiny model on 2 CPU cores. On a shared
machine the figures are pessimistic.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

# Run as a script, this folder is sys.path[0] and its render.py would shadow the render package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]


class TinyVLMPredictor:
    """predict_proba over the tiny LLaVA-NeXT via label scoring (psgvlm.vlm.scoring)."""

    def __init__(self, batch_size: int):
        from psgvlm.vlm.data import VLMCollator, get_template
        from psgvlm.vlm.model import build_tiny_model

        self.model, processor = build_tiny_model()
        self.model.eval()
        self.collator = VLMCollator(processor, get_template(), mode="score")
        self.batch_size = batch_size

    def predict_proba(self, images, batch_size=None):
        import torch

        from psgvlm.vlm.scoring import score_dataset

        with torch.inference_mode():
            return score_dataset(self.model, self.collator, [{"image": im} for im in images],
                                 batch_size=batch_size or self.batch_size, progress=False)


def synthetic_epoch(n_chans: int = 12, sfreq: float = 200.0, seed: int = 0) -> np.ndarray:
    """A rendered 12-channel epoch of noise with a spindle burst in the second band."""
    from psgvlm.image.renderer import RenderSettings, render_epoch

    rng = np.random.default_rng(seed)
    t = np.arange(int(30 * sfreq)) / sfreq
    x = 0.3 * rng.standard_normal((n_chans, len(t)))
    x[1] += ((t > 10) & (t < 20)) * np.sin(2 * np.pi * 13 * t)
    x /= np.abs(x).max(1, keepdims=True)
    return render_epoch(x.astype(np.float32), RenderSettings())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", help="run dir (default: tiny random model built in code)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--patch-px", type=int, default=14, help="14: the paper's 576 patches; 28: 144 patches")
    args = ap.parse_args()

    import torch

    from psgvlm.image.attribution import feature_ablation

    torch.set_num_threads(args.threads)
    if args.run:
        from psgvlm.vlm.predict import load_predictor

        predictor = load_predictor(args.run)
    else:
        predictor = TinyVLMPredictor(args.batch_size)
    predictor.predict_proba([__import__("PIL.Image").Image.fromarray(synthetic_epoch())])  # warm-up
    times = []
    for k in range(args.epochs):
        img = synthetic_epoch(seed=k)
        t0 = time.perf_counter()
        res = feature_ablation(predictor.predict_proba, img, batch_size=args.batch_size, patch_px=args.patch_px)
        times.append(time.perf_counter() - t0)
        print(f"epoch {k}: {times[-1]:.2f} s, {res['n_forward']} forward passes "
              f"({res['n_forward'] / times[-1]:.0f} images/s)")
    print(f"attribution: {np.median(times):.2f} s per epoch (median of {len(times)}, {args.threads} threads, "
          f"batch {args.batch_size}, {args.patch_px}-px patches); target <= 10 s; load average "
          f"{__import__('os').getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
