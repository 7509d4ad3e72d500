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
import contextlib
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


@contextlib.contextmanager
def _quiet_loading():
    """transformers' "Loading weights" bar and info logs off while a run loads (restored after): a run
    dir's few-MB model is not worth a bar, and staging a night shows one bar of its own."""
    from transformers.utils import logging as hf_logging

    bar, level = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bar:
            hf_logging.enable_progress_bar()

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
        with _quiet_loading():
            model, _ = load_model(base, pin_grid=bool(self.meta.get("pin_grid")), dtype="auto")
            if self.meta.get("adapter"):
                from peft import PeftModel

                with warnings.catch_warnings():  # peft reads a property transformers 5 deprecates: not the user's
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
        self.score_collator = FastScoreCollator(self.collator)

    def predict_proba(self, images, batch_size: int = 8, progress: bool = False) -> np.ndarray:
        """Hypnodensity for images: ``(n_images, 5)`` float64, rows sum to 1 (W, N1, N2, N3, REM).

        ``images``: PIL images or (height, width, 3) uint8 arrays (``render_epoch``'s, which a VLM run
        scores without making PIL images of them). With ``context`` K > 0 each image is a strip of 2K+1
        epochs (:mod:`psgvlm.vlm.context`).
        """
        images = list(images)
        if not images:
            return np.zeros((0, N_STAGES))
        if self.kind == "vlm":
            from psgvlm.vlm.scoring import score_dataset

            return score_dataset(self.model, self.score_collator, [{"image": im} for im in images],
                                 batch_size=batch_size, progress=progress)
        from psgvlm.vlm.classifiers import predict_proba

        images = [row["image"] for row in _pil_rows([{"image": im} for im in images])]
        return predict_proba(self.model, self.image_processor, images, batch_size=batch_size, progress=progress)

    def generate(self, images, batch_size: int = 8, max_new_tokens: int = 5) -> tuple[list[str], list]:
        """Free generation (VLM runs only): ``(texts, codes)``, code None where unparseable."""
        if self.kind != "vlm":
            raise ValueError("free generation needs a VLM run; this is an image-classifier run")
        from psgvlm.vlm.scoring import generate_dataset

        return generate_dataset(self.model, self.collator, [{"image": im} for im in images],
                                batch_size=batch_size, max_new_tokens=max_new_tokens, progress=False)


class FastScoreCollator:
    """A scoring collator that gives the batches of a ``VLMCollator(mode="score")`` bit for bit, faster.

    Every scoring prompt is the same text and every image of one size expands to the same number of
    image tokens, so the text part of a batch is one row repeated. And when the image processor
    turns an image into patches that are all the image resized to the model's input (LLaVA-NeXT with
    one grid pinpoint equal to its input size: the tiny runs), a patch is one PIL resize of the image
    followed by the processor's rescale and normalisation, which act on each channel's uint8 value
    alone: a 256-entry table per channel, computed once by the processor's own ``rescale`` and
    ``normalize``. The transformers processor spends most of a night's scoring time on per-image
    Python; this spends a resize and a table look-up.

    The fast path is taken for an image size only after it reproduced the wrapped collator's batch
    exactly (every key, every value) on the first images of that size seen; otherwise, and for any
    processor it does not recognise, the wrapped collator builds every batch.

    Parameters
    ----------
    collator : psgvlm.vlm.data.VLMCollator
        ``mode="score"``; its ``answers`` and ``mode`` are this collator's.
    """

    def __init__(self, collator):
        if collator.mode != "score":
            raise ValueError(f"FastScoreCollator wraps a scoring collator; got mode={collator.mode!r}")
        self.collator = collator
        self.mode = collator.mode
        self.answers = collator.answers
        self.family = collator.family  # scoring reads the family's facts from the collator
        self._plan = _fast_patch_plan(collator.processor)  # None: never fast
        self._checked: dict[tuple, tuple | None] = {}  # image shape -> (a row's text part, patches, keys) or None

    def __call__(self, rows: list[dict]) -> dict:
        images = [_rgb_array(r["image"]) for r in rows]
        sizes = {im.shape for im in images}
        if self._plan is None or len(sizes) != 1:
            return self.collator(_pil_rows(rows))
        size = sizes.pop()
        if size not in self._checked:
            probe = _pil_rows(rows[:2])
            exact = self.collator(probe)
            text = _repeated_row(exact)
            if text is not None:
                text = (text, exact["pixel_values"].shape[1], list(exact))
                if not _same_batch(self._batch(images[: len(probe)], *text), exact):
                    text = None
            self._checked[size] = text
        text = self._checked[size]
        return self.collator(_pil_rows(rows)) if text is None else self._batch(images, *text)

    def _batch(self, images: list[np.ndarray], text: dict, n_patches: int, keys: list[str]) -> dict:
        import torch
        from PIL import Image

        side, lut, resample = self._plan
        rgb = np.stack(images)  # (n, h, w, 3)
        grey = bool((rgb[..., 1] == rgb[..., 0]).all() and (rgb[..., 2] == rgb[..., 0]).all())
        # PIL resizes every band alike: a grey image's bands are resized once, as one band.
        bands = [np.ascontiguousarray(rgb[..., 0])] if grey else [np.ascontiguousarray(rgb[..., c]) for c in range(3)]
        small = [np.stack([np.asarray(Image.fromarray(im).resize((side, side), resample)) for im in band])
                 for band in bands]  # per band (n, side, side)
        pixels = np.empty((len(images), n_patches, 3, side, side), dtype=lut.dtype)
        for c in range(3):
            pixels[:, 0, c] = lut[c][small[0 if grey else c]]
        pixels[:, 1:] = pixels[:, :1]  # every patch is the resized image (checked against the processor)
        batch = {k: v.repeat(len(images), *[1] * (v.ndim - 1)) for k, v in text.items()}
        batch["pixel_values"] = torch.from_numpy(pixels)
        return {k: batch[k] for k in keys}


def _rgb_array(image) -> np.ndarray:
    """An epoch image as a (H, W, 3) uint8 array: a PIL image converted as the processor does, or such an array."""
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"an image array must be (height, width, 3) uint8; got {image.dtype} {image.shape}")
        return image
    return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))


def _pil_rows(rows: list[dict]) -> list[dict]:
    """Rows whose images are PIL images (what ``VLMCollator`` reads)."""
    from PIL import Image

    return [{**r, "image": Image.fromarray(r["image"])} if isinstance(r["image"], np.ndarray) else r for r in rows]


def _fast_patch_plan(processor):
    """``(side, lut, resample)`` when every patch may be the image resized to ``side``, else None.

    ``lut[c, v]`` is the processor's own ``normalize(rescale(v))`` of uint8 value ``v`` in channel ``c``.
    """
    ip = getattr(processor, "image_processor", None)
    pins = getattr(ip, "image_grid_pinpoints", None)
    size, crop = dict(getattr(ip, "size", None) or {}), dict(getattr(ip, "crop_size", None) or {})
    if type(ip).__name__ != "LlavaNextImageProcessorPil" or not pins or len(pins) != 1:
        return None
    side = int(pins[0][0])
    if list(pins[0]) != [side, side] or size != {"shortest_edge": side} or crop != {"height": side, "width": side}:
        return None
    if not (ip.do_resize and ip.do_rescale and ip.do_normalize and ip.do_convert_rgb):
        return None
    ramp = np.broadcast_to(np.arange(256, dtype=np.uint8), (3, 1, 256)).copy()  # channels first, as the processor
    lut = ip.normalize(ip.rescale(ramp, ip.rescale_factor), ip.image_mean, ip.image_std)[:, 0, :]
    return side, np.ascontiguousarray(lut), int(ip.resample)


def _repeated_row(batch: dict) -> dict | None:
    """Row 0 of every key but the images' (a batch of one), when every row equals it; else None."""
    out = {}
    for k, v in batch.items():
        if k == "pixel_values":
            continue
        if not hasattr(v, "shape") or len(v) != len(batch["pixel_values"]) or not bool((v == v[:1]).all()):
            return None
        out[k] = v[:1]
    return out


def _same_batch(a: dict, b: dict) -> bool:
    """Same keys, and for each the same dtype, shape and values."""
    import torch

    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and torch.equal(a[k], b[k]) for k in a)


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
