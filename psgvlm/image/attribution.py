"""Feature-ablation attribution on an epoch image (PSG-image paper, section 2.3.2), read in signal terms.

The 336x336 image is cut into a 24x24 grid of 14x14 patches. Each patch is masked with a baseline
value and the model re-run; a patch's score is the Euclidean distance between the five stage
probabilities before and after, and the map is min-max normalised to [0, 1]. Works for anything
with ``predict_proba(list[PIL.Image]) -> (n, 5)`` (the VLM via label scores, image classifiers).

Cost: one forward pass for the original plus one per patch, in batches (<= 577 per epoch). A patch
that already equals the baseline everywhere (pure background in a waveform plot) leaves the image
unchanged, so its score is exactly 0 and its forward pass is skipped.

Signal terms: patches map back to (channel band x time window) through the renderer's layout, so a
map reads "REM decided on EOG (LOC), seconds 10-20".
"""

from __future__ import annotations

import contextlib
import sys
import time

import numpy as np

from psgvlm.stages import EPOCH_S

MASK_BASELINES = ("background", "black", "white", "mean")


def baseline_color(image: np.ndarray, baseline) -> np.ndarray:
    """The (3,) uint8 fill of a masked patch: "background" (most frequent colour), "black", "white",
    "mean" (mean colour of the image) or an int 0..255."""
    if isinstance(baseline, int | np.integer) and not isinstance(baseline, bool):
        if not 0 <= baseline <= 255:
            raise ValueError(f"baseline {baseline!r} must be in 0..255 or one of {MASK_BASELINES}")
        return np.full(3, baseline, np.uint8)
    if baseline == "background":
        from psgvlm.signal.corruption import background_color

        return background_color(image)
    if baseline == "black":
        return np.zeros(3, np.uint8)
    if baseline == "white":
        return np.full(3, 255, np.uint8)
    if baseline == "mean":
        return np.round(image.reshape(-1, image.shape[-1]).mean(0)).astype(np.uint8)
    raise ValueError(f"baseline {baseline!r} unknown; use an int 0..255 or one of {MASK_BASELINES}")


def no_grad():
    """``torch.inference_mode()`` when torch is loaded (a torch predictor then skips autograd
    bookkeeping, ~2x faster on CPU), a no-op otherwise."""
    torch = sys.modules.get("torch")
    return torch.inference_mode() if torch is not None else contextlib.nullcontext()


def minmax(scores: np.ndarray) -> np.ndarray:
    """Min-max scaling to [0, 1]; a constant map becomes all zeros."""
    scores = np.asarray(scores, dtype=np.float64)
    lo, hi = scores.min(), scores.max()
    return np.zeros_like(scores) if hi - lo <= 0 else (scores - lo) / (hi - lo)


def feature_ablation(predict_proba, image, *, patch_px: int = 14, baseline="background", batch_size: int = 32,
                     skip_unchanged: bool = True) -> dict:
    """Feature-ablation map of one image.

    Parameters
    ----------
    predict_proba : callable
        ``predict_proba(list of PIL.Image) -> np.ndarray (n, 5)`` stage probabilities.
    image : PIL.Image.Image or np.ndarray, shape (H, W, 3) uint8
        H and W must be multiples of ``patch_px`` (336 = 24 x 14).
    patch_px : int
        Patch side, pixels.
    baseline : str or int
        Fill of a masked patch, see :func:`baseline_color`.
    batch_size : int
        Masked images per ``predict_proba`` call.
    skip_unchanged : bool
        Skip (score 0) patches that already equal the baseline, whose masked image is the original.

    Returns
    -------
    dict: ``probs`` (5,) original probabilities, ``raw`` (H/patch, W/patch) Euclidean distances,
    ``norm`` the min-max normalised map, ``n_forward`` forward passes used (images scored),
    ``seconds`` wall time.
    """

    t0 = time.perf_counter()
    img = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image)
    if img.ndim != 3 or img.shape[-1] != 3 or img.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8, got shape {img.shape} dtype {img.dtype}")
    h, w = img.shape[:2]
    if h % patch_px or w % patch_px:
        raise ValueError(f"image {h}x{w} is not a whole number of {patch_px}x{patch_px} patches")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    fill = baseline_color(img, baseline)
    n_r, n_c = h // patch_px, w // patch_px
    todo = []
    for k in range(n_r * n_c):
        r, c = divmod(k, n_c)
        block = img[r * patch_px:(r + 1) * patch_px, c * patch_px:(c + 1) * patch_px]
        if not (skip_unchanged and (block == fill).all()):
            todo.append(k)
    with no_grad():
        return _ablate(predict_proba, img, todo, fill, patch_px, batch_size, n_r, n_c, t0)


def _ablate(predict_proba, img, todo, fill, patch_px, batch_size, n_r, n_c, t0) -> dict:
    """The forward passes of :func:`feature_ablation` (original, then masked patches in batches)."""
    from PIL import Image

    probs0 = np.asarray(predict_proba([Image.fromarray(img)]), dtype=np.float64)
    if probs0.shape != (1, 5):
        raise ValueError(f"predict_proba returned shape {probs0.shape} for one image, expected (1, 5)")
    probs0 = probs0[0]
    raw = np.zeros(n_r * n_c)
    for i in range(0, len(todo), batch_size):
        batch = []
        for k in todo[i:i + batch_size]:
            r, c = divmod(k, n_c)
            masked = img.copy()
            masked[r * patch_px:(r + 1) * patch_px, c * patch_px:(c + 1) * patch_px] = fill
            batch.append(Image.fromarray(masked))
        p = np.asarray(predict_proba(batch), dtype=np.float64)
        raw[todo[i:i + batch_size]] = np.linalg.norm(p - probs0, axis=1)
    raw = raw.reshape(n_r, n_c)
    return {"probs": probs0, "raw": raw, "norm": minmax(raw), "n_forward": 1 + len(todo),
            "seconds": time.perf_counter() - t0, "baseline": fill.tolist(), "patch_px": patch_px}


def time_windows(epoch_s: float = EPOCH_S, window_s: float = 10.0) -> list[tuple[float, float]]:
    """Consecutive (start_s, end_s) windows covering the epoch."""
    if not 0 < window_s <= epoch_s:
        raise ValueError(f"window_s must be in (0, {epoch_s}], got {window_s!r}")
    edges = np.arange(0, epoch_s + 1e-9, window_s).tolist()
    if edges[-1] < epoch_s - 1e-9:
        edges.append(epoch_s)
    return list(zip(edges[:-1], edges[1:]))


def band_time_scores(norm_map: np.ndarray, bands: list[dict], *, size: int, epoch_s: float = EPOCH_S,
                     window_s: float = 10.0) -> dict:
    """Mean attribution per (channel band x time window), from a patch map.

    Parameters
    ----------
    norm_map : np.ndarray, shape (n_r, n_c)
        Patch scores (normalised or averaged maps).
    bands : list of dict
        :func:`psgvlm.image.dataset.band_layout` rows (``top``, ``bottom``, ``left``, ``right``).
    size : int
        Image side, pixels.

    Returns
    -------
    dict: ``matrix`` (n_chans, n_windows) mean score per cell, ``channels``, ``modalities``,
    ``windows`` [(start_s, end_s)], ``band_mass`` share of the map's total score in each band,
    ``modality_scores`` (mean over that modality's cells), ``top`` the strongest cell.
    """
    norm_map = np.asarray(norm_map, dtype=np.float64)
    n_r, n_c = norm_map.shape
    pix = np.kron(norm_map, np.ones((size // n_r, size // n_c)))
    windows = time_windows(epoch_s, window_s)
    left, right = bands[0].get("left", 0.0), bands[0].get("right", float(size))
    xs = np.arange(size) + 0.5
    t_of_x = np.clip((xs - left) / (right - left) * epoch_s, 0, epoch_s - 1e-9)
    matrix = np.zeros((len(bands), len(windows)))
    for i, b in enumerate(bands):
        rows = pix[b["top"]:b["bottom"]]
        for j, (a, e) in enumerate(windows):
            cols = (t_of_x >= a) & (t_of_x < e)
            matrix[i, j] = rows[:, cols].mean() if rows.size and cols.any() else 0.0
    total = pix.sum()
    band_mass = [float(pix[b["top"]:b["bottom"]].sum() / total) if total > 0 else 0.0 for b in bands]
    mods = {}
    for i, b in enumerate(bands):
        mods.setdefault(b.get("modality", "?"), []).append(matrix[i].mean())
    i, j = np.unravel_index(int(np.argmax(matrix)), matrix.shape)
    return {"matrix": matrix.round(6).tolist(), "channels": [b["channel"] for b in bands],
            "modalities": [b.get("modality", "?") for b in bands],
            "windows": [[float(a), float(e)] for a, e in windows], "band_mass": [round(m, 6) for m in band_mass],
            "modality_scores": {m: float(np.mean(v)) for m, v in mods.items()},
            "top": {"channel": bands[i]["channel"], "modality": bands[i].get("modality", "?"),
                    "window_s": [float(windows[j][0]), float(windows[j][1])], "score": float(matrix[i, j])}}


def describe(stage: str, cells: dict) -> str:
    """One line in signal terms, e.g. "REM decided on EOG (LOC), seconds 10-20"."""
    top = cells["top"]
    best_mod = max(cells["modality_scores"], key=cells["modality_scores"].get)
    a, e = top["window_s"]
    return (f"{stage} decided on {top['modality']} ({top['channel']}), seconds {a:g}-{e:g}; "
            f"strongest modality overall: {best_mod}")
