"""One epoch of a staged night, again: its image (re-rendered from the saved epochs) and its attribution.

:func:`render_one` redraws the image the model scored; :func:`attribution_overlay` masks its patches
one at a time (:func:`psgvlm.image.attribution.feature_ablation`) and reads the map in signal terms
(channel band x time window) through the run's band geometry, :func:`psgvlm.image.dataset.band_layout`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from psgvlm.stages import STAGES

if TYPE_CHECKING:
    from psgvlm.night.stage import StageResult


def render_one(result: StageResult, epoch: int) -> np.ndarray:
    """Re-render the image the VLM scored for epoch ``epoch`` (needs ``epochs_path``): (size, size, 3) uint8,
    or for a run with ``--context K`` the strip of epochs ``epoch - K .. epoch + K``, (size, (2K+1) size, 3)."""
    from psgvlm.image.renderer import RenderSettings, render_epoch
    from psgvlm.vlm.context import night_strips

    if result.epochs_path is None:
        raise ValueError("this result kept no epochs (stage_recording(..., epochs_path=None))")
    if not 0 <= epoch < result.n_epochs:
        raise ValueError(f"epoch {epoch!r} out of range; the night has epochs 0..{result.n_epochs - 1}")
    x = np.load(result.epochs_path, mmap_mode="r")
    settings = RenderSettings.from_dict(result.settings)
    context = (result.model or {}).get("context", 0)
    strip = night_strips([epoch], len(x), context, lambda i: render_epoch(np.asarray(x[i], dtype=np.float32), settings))
    return np.asarray(strip[0])


def attribution_overlay(predictor, image) -> tuple[np.ndarray, str]:
    """(overlay (H, W, 3) uint8, note): the feature-ablation map of ``image`` drawn over it, and its reading.

    576 patches of 14x14 are masked one at a time with the background colour; a patch's score is the
    Euclidean distance between the stage probabilities before and after. The note reads the map in
    signal terms (channel band and time window).

    Parameters
    ----------
    predictor
        Anything with ``predict_proba(list[PIL.Image]) -> (n, 5)`` and ``dataset_meta``.
    image : PIL.Image.Image
        The rendered epoch, or the strip of a run with ``--context K`` (``predictor.context``): the whole
        strip is masked, the note reads the scored (middle) epoch's part of the map.
    """
    from matplotlib import colormaps

    from psgvlm.image.attribution import band_time_scores, describe, feature_ablation
    from psgvlm.image.dataset import band_layout
    from psgvlm.vlm.context import scored_columns

    out = feature_ablation(predictor.predict_proba, image, batch_size=64)
    norm = out["norm"]
    img = np.asarray(image.convert("RGB"), dtype=np.float32)
    size, width = img.shape[:2]
    pix = np.kron(norm, np.ones((size // norm.shape[0], width // norm.shape[1])))
    heat = colormaps["jet"](pix)[..., :3] * 255.0
    alpha = 0.5 * pix[..., None]  # unimportant patches stay clear, so the waveform stays readable
    overlay = (img * (1 - alpha) + heat * alpha).clip(0, 255).astype(np.uint8)
    stage = STAGES[int(np.argmax(out["probs"]))]
    try:
        scored = norm[:, scored_columns(norm.shape[1], getattr(predictor, "context", 0))]
        where = describe(stage, band_time_scores(scored, band_layout(predictor.dataset_meta), size=size))
    except (ValueError, KeyError) as err:
        where = f"(band mapping unavailable: {err})"
    return overlay, (f"Attribution ({out['n_forward']} forward passes, {out['seconds']:.1f} s): red patches "
                     f"change the stage probabilities most when masked. {where}.")
