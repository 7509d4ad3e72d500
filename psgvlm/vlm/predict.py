"""Predict sleep stages with a trained run: ``psgvlm predict`` and :func:`load_predictor`.

    psgvlm predict --run runs/llava_isruc --dataset data/isruc_img --split test --out runs/llava_isruc/test
    psgvlm predict --run psgvlm/assets/default_run --dataset data/synth_isruc_img --out out/ --mode generate

``load_predictor(run_dir)`` works for VLM runs (``meta.json`` kind ``psgvlm-vlm-run``: base model +
LoRA adapter + processor, label scoring) and image-classifier runs (``psgvlm-image-classifier-run``).
``DEFAULT_RUN`` is the embedded default (a tiny LLaVA-NeXT + adapter trained on synthetic
ISRUC-format data; see its README.md): it shows the pipeline working, it is not a sleep scorer.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

from psgvlm.provenance import read_json
from psgvlm.stages import N_STAGES
from psgvlm.vlm.classifiers import RUN_KIND as CLASSIFIER_RUN

DEFAULT_RUN = Path(__file__).resolve().parent.parent / "assets" / "default_run"
VLM_RUN = "psgvlm-vlm-run"
CHUNK = 256  # epochs decoded at a time by `psgvlm predict`


def read_run_meta(run_dir) -> dict:
    """``run_dir/meta.json`` with a clear error when the folder is not a psgvlm run."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run dir {str(run_dir)!r} does not exist")
    if not (run_dir / "meta.json").exists():
        raise ValueError(f"{run_dir} is not a psgvlm run: no meta.json")
    meta = read_json(run_dir / "meta.json")
    if meta.get("kind") not in (VLM_RUN, CLASSIFIER_RUN):
        raise ValueError(f"{run_dir}/meta.json has kind {meta.get('kind')!r}; expected {VLM_RUN!r} or "
                         f"{CLASSIFIER_RUN!r}")
    return meta


def resolve_base_model(run_dir, name: str) -> str:
    """A run's base model: a folder inside the run dir when it exists there, else the id/path as saved."""
    inside = Path(run_dir) / name
    return str(inside) if inside.is_dir() else name


class Predictor:
    """Stage probabilities for epoch images with a trained run.

    Attributes
    ----------
    kind : str
        ``"vlm"`` or ``"image-classifier"``.
    dataset_meta : dict
        The training dataset's ``meta.json`` (render settings, channel order, sfreq): render new
        recordings with the same settings before predicting.
    meta : dict
        The run's ``meta.json``.
    """

    def __init__(self, run_dir, *, merge_adapter: bool = True):
        self.run_dir = Path(run_dir)
        self.meta = read_run_meta(self.run_dir)
        self.dataset_meta = self.meta.get("dataset", {})
        self.context = 0  # K: each image is the strip of epochs e-K..e+K (psgvlm.vlm.context)
        if self.meta["kind"] == VLM_RUN:
            self.kind = "vlm"
            self._load_vlm(merge_adapter)
        else:
            from psgvlm.vlm.classifiers import load_classifier_run

            self.kind = "image-classifier"
            self.model, self.image_processor = load_classifier_run(self.run_dir)

    def _load_vlm(self, merge_adapter: bool) -> None:
        from transformers import AutoProcessor

        from psgvlm.vlm.context import pin_strip_grid, run_context
        from psgvlm.vlm.data import VLMCollator
        from psgvlm.vlm.model import load_model

        base = resolve_base_model(self.run_dir, self.meta["base_model"])
        model, _ = load_model(base, pin_grid=bool(self.meta.get("pin_grid")), dtype="auto")
        if self.meta.get("adapter"):
            from peft import PeftModel

            with warnings.catch_warnings():  # peft reads a property transformers 5 deprecates: not the user's concern
                warnings.filterwarnings("ignore", category=FutureWarning, message=".*is_gradient_checkpointing")
                model = PeftModel.from_pretrained(model, self.run_dir / self.meta["adapter"])
            if merge_adapter:
                model = model.merge_and_unload()
        processor = AutoProcessor.from_pretrained(self.run_dir / "processor")
        self.context = run_context(self.meta)
        if self.context and self.meta.get("pin_grid"):  # the grid the run trained with: one tile per epoch
            pin_strip_grid(model, processor, self.context)
        model.eval()
        self.model, self.processor = model, processor
        self.collator = VLMCollator(processor, self.meta["prompt"]["template"], mode="score")

    def predict_proba(self, images, batch_size: int = 8, progress: bool = False) -> np.ndarray:
        """Hypnodensity for PIL images: ``(n_images, 5)`` float64, rows sum to 1 (W, N1, N2, N3, REM).

        With ``context`` K > 0 each image is a strip of 2K+1 epochs (:mod:`psgvlm.vlm.context`).
        """
        images = list(images)
        if not images:
            return np.zeros((0, N_STAGES))
        if self.kind == "vlm":
            from psgvlm.vlm.scoring import score_dataset

            return score_dataset(self.model, self.collator, [{"image": im} for im in images],
                                 batch_size=batch_size, progress=progress)
        from psgvlm.vlm.classifiers import predict_proba

        return predict_proba(self.model, self.image_processor, images, batch_size=batch_size, progress=progress)

    def generate(self, images, batch_size: int = 8, max_new_tokens: int = 5) -> tuple[list[str], list]:
        """Free generation (VLM runs only): ``(texts, codes)``, code None where unparseable."""
        if self.kind != "vlm":
            raise ValueError("free generation needs a VLM run; this is an image-classifier run")
        from psgvlm.vlm.scoring import generate_dataset

        return generate_dataset(self.model, self.collator, [{"image": im} for im in images],
                                batch_size=batch_size, max_new_tokens=max_new_tokens, progress=False)


def load_predictor(run_dir=DEFAULT_RUN) -> Predictor:
    """A :class:`Predictor` for a VLM or image-classifier run dir (the embedded default by default)."""
    return Predictor(run_dir)


def main(argv: list[str] | None = None) -> int:
    """``psgvlm predict``: score a dataset split with a run -> predictions.jsonl + metrics.json."""
    from tqdm.auto import tqdm

    from psgvlm.image.dataset import load_dataset
    from psgvlm.predictions import make_rows, write_predictions
    from psgvlm.provenance import provenance, write_json_atomic, write_text_atomic
    from psgvlm.vlm.scoring import generation_probs, unparseable_rate

    p = argparse.ArgumentParser(prog="psgvlm predict", description=main.__doc__)
    p.add_argument("--run", default=str(DEFAULT_RUN), help="run dir (default: the embedded default run)")
    p.add_argument("--dataset", required=True, help="`psgvlm render` dataset dir")
    p.add_argument("--split", default="test", help="dataset split to score")
    p.add_argument("--out", required=True, help="output dir for predictions.jsonl + metrics.json")
    p.add_argument("--batch-size", type=int, default=8, help="epoch images per forward pass")
    p.add_argument("--max-samples", type=int, default=0, help="first N epochs only (0: all)")
    p.add_argument("--mode", choices=["scoring", "generate"], default="scoring",
                   help="label scoring (hypnodensity) or free generation + parser (unparseable answers are "
                        "counted and left out of the metrics)")
    p.add_argument("--max-new-tokens", type=int, default=5,
                   help="tokens generated per epoch with --mode generate (the rationale prompt needs ~96)")
    args = p.parse_args(argv)
    try:
        if args.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
        ds, dataset_meta = load_dataset(args.dataset, args.split)
        predictor = load_predictor(args.run)
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        print(f"psgvlm predict: {err}", file=sys.stderr)
        return 2
    from psgvlm.vlm.context import with_context

    ds = with_context(ds, predictor.context)  # a run trained with --context K reads strips of neighbours
    if args.max_samples:
        ds = ds.select(range(min(args.max_samples, len(ds))))
    extra = {"run": str(args.run), "dataset": str(args.dataset), "split": args.split, "mode": args.mode,
             "provenance": provenance()}
    # Decode images a chunk at a time: a full test split would not fit in memory as PIL images.
    chunks = [range(i, min(i + CHUNK, len(ds))) for i in range(0, len(ds), CHUNK)]
    if args.mode == "scoring":
        probs = np.concatenate([predictor.predict_proba(ds.select(c)["image"], batch_size=args.batch_size)
                                for c in tqdm(chunks, desc="predict", unit="chunk")] or [np.zeros((0, N_STAGES))])
    else:
        texts, codes = [], []
        for c in tqdm(chunks, desc="generate", unit="chunk"):
            t, k = predictor.generate(ds.select(c)["image"], batch_size=args.batch_size,
                                      max_new_tokens=args.max_new_tokens)
            texts, codes = texts + t, codes + k
        # One-hot where the text parses; no answer (pred -1, left out of the metrics) where it does not.
        probs = generation_probs(codes)
        extra["unparseable_rate"] = unparseable_rate(texts)
        extra["n_unparseable"] = sum(c is None for c in codes)
        write_text_atomic(Path(args.out) / "generated.txt", "".join(t.replace("\n", " ") + "\n" for t in texts))
    rows = make_rows(dataset=ds["dataset"], subjects=ds["subject"], recordings=ds["recording"],
                     epochs=ds["epoch"], starts_s=ds["start_s"], labels=list(ds["label"]), probs=probs)
    metrics = write_predictions(args.out, rows, extra_meta=extra)
    write_json_atomic(Path(args.out) / "meta.json", {"kind": "psgvlm-predictions", **extra,
                                                      "run_meta": predictor.meta, "dataset_meta": dataset_meta})
    pooled = metrics.get("pooled") or {}
    if pooled:
        print(f"{args.split}: kappa {pooled['kappa']:.3f} macro-F1 {pooled['macro_f1']:.3f} "
              f"accuracy {pooled['accuracy']:.3f} ({pooled['n_epochs']} epochs with an answer of {len(rows)}) "
              f"-> {args.out}")
    if "unparseable_rate" in extra:
        print(f"unparseable generations: {extra['n_unparseable']} of {len(rows)} ({extra['unparseable_rate']:.1%}), "
              "left out of the metrics")
    return 0
