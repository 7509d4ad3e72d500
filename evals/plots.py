"""PNG plots only the eval suites draw: pure functions (data in, file out), no pyplot global state.

Each function builds a figure with :func:`psgvlm.plots.new_figure` (a ``Figure`` with its own
``FigureCanvasAgg``) and writes one PNG with :func:`psgvlm.plots.save_png`. Hypnograms,
hypnodensities and confusion matrices, which ``psgvlm stage`` and the recipes draw too, are
:mod:`psgvlm.plots`' (one stage palette); ``plot_confusion`` is re-exported here for the suites.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from psgvlm.plots import new_figure, plot_confusion, save_png

__all__ = ["plot_confusion", "plot_heatmap", "plot_metric_bars", "plot_training_loss"]


def plot_heatmap(image, scores, path, *, top_frac: float = 0.3, bands: list[dict] | None = None,
                 title: str = "") -> Path:
    """The epoch image with its attribution: top ``top_frac`` patches overlaid, and the raw map.

    Parameters
    ----------
    image : np.ndarray, shape (H, W, 3) uint8
    scores : np.ndarray, shape (n_rows, n_cols)
        Min-max normalised patch scores in [0, 1].
    bands : list of dict, optional
        :func:`psgvlm.image.dataset.band_layout` output; band edges and channel names are drawn.
    """
    image = np.asarray(image)
    scores = np.asarray(scores, dtype=float)
    h, w = image.shape[:2]
    up = np.kron(scores, np.ones((h // scores.shape[0], w // scores.shape[1])))
    cut = np.quantile(scores, 1 - top_frac) if scores.size else 0.0
    shown = np.ma.masked_where(up < cut, up)
    fig = new_figure(10, 4.6)
    for k, (sub, overlay) in enumerate([(f"top {int(top_frac * 100)}% patches", shown), ("raw map", None)]):
        ax = fig.add_subplot(1, 2, k + 1)
        if overlay is not None:
            ax.imshow(image)
            ax.imshow(overlay, cmap="jet", alpha=0.45, vmin=0, vmax=1, extent=(0, w, h, 0))
        else:
            im = ax.imshow(scores, cmap="viridis", vmin=0, vmax=1, extent=(0, w, h, 0), interpolation="nearest")
            fig.colorbar(im, ax=ax, fraction=0.046)
        for b in bands or []:
            ax.axhline(b["top"], color="white", lw=0.4, alpha=0.6)
            ax.text(2, (b["top"] + b["bottom"]) / 2, b["channel"], color="tab:orange", fontsize=6, va="center")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{title} {sub}".strip(), fontsize=9)
    return save_png(fig, path, tight=True)


def plot_training_loss(train_log, path, title: str = "") -> Path | None:
    """Training (and eval, when logged) loss against step from a run's ``train_log.jsonl``; None if absent."""
    from psgvlm.training import plot_loss_curve

    return plot_loss_curve(train_log, path, title=title)


def plot_metric_bars(table: dict[str, dict[str, float]], path, title: str = "", errors=None) -> Path:
    """Grouped bars: ``table[setting][metric] -> value``; ``errors`` the same shape of [low, high]."""
    settings = list(table)
    metrics = list(next(iter(table.values()))) if table else []
    fig = new_figure(max(6, 1.2 * len(metrics) * max(1, len(settings)) / 2), 3.5, layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(1, len(settings))
    for k, s in enumerate(settings):
        vals = [table[s][m] for m in metrics]
        x = np.arange(len(metrics)) + k * width
        yerr = None
        if errors is not None:
            lo = [vals[i] - errors[s][m][0] for i, m in enumerate(metrics)]
            hi = [errors[s][m][1] - vals[i] for i, m in enumerate(metrics)]
            yerr = np.abs(np.array([lo, hi]))
        ax.bar(x, vals, width, label=s, yerr=yerr, capsize=2)
    ax.set_xticks(np.arange(len(metrics)) + width * (len(settings) - 1) / 2, metrics, fontsize=8)
    ax.axhline(0, color="black", lw=0.5)
    ax.set_title(title, fontsize=9)
    fig.legend(loc="outside right upper", fontsize=7, frameon=False)  # beside the bars, never over them
    return save_png(fig, path, tight=True)
