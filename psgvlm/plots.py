"""The project's one stage palette and hypnogram/hypnodensity plots: pure functions, no pyplot state.

Every figure is a ``matplotlib.figure.Figure`` with its own ``FigureCanvasAgg`` (nothing touches
``plt`` or ``rcParams``) written to PNG through a temporary file, so a reader never sees half a file.
``psgvlm stage`` and the app draw a night with :func:`plot_night`; the eval suites draw per-subject
hypnograms with :func:`plot_hypnogram` and :func:`plot_hypnodensity`; recipes, eval suites and stage
outputs draw confusion matrices with :func:`plot_confusion`; eval-only plots (attribution maps, metric
bars) build on :func:`new_figure` and :func:`save_png`. Stage colours come from :data:`STAGE_COLORS`
only, and legends sit outside the axes, never over data.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from psgvlm.metrics import row_normalised
from psgvlm.stages import EPOCH_S, STAGES, UNSCORED

# One colour per stage, in STAGES order (W, N1, N2, N3, REM): light for wake, darkening with depth, red REM.
STAGE_COLORS: tuple[str, ...] = ("#f4d03f", "#85c1e9", "#2e86c1", "#1b2631", "#e74c3c")
# Hypnogram convention: W at the top, REM drawn between W and N1, N3 at the bottom.
HYPNOGRAM_LEVELS: dict[int, int] = {0: 4, 4: 3, 1: 2, 2: 1, 3: 0}
_HYPNO_TICKS = ([4, 3, 2, 1, 0], ["W", "REM", "N1", "N2", "N3"])
_REM_LEVEL = HYPNOGRAM_LEVELS[STAGES.index("REM")]


def new_figure(width_in: float, height_in: float, *, dpi: int = 100, layout: str | None = None):
    """A ``Figure`` of ``width_in`` x ``height_in`` inches with its own Agg canvas (no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=dpi, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def save_png(fig, path, *, tight: bool = False) -> Path:
    """Write ``fig`` to ``path`` as PNG (parent folders created, temp file then rename); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, format="png", bbox_inches="tight" if tight else None)
    tmp.replace(path)
    fig.clear()
    return path


def epoch_edges_h(start_s, epoch_s: float = EPOCH_S) -> np.ndarray:
    """(n_epochs + 1,) epoch edges in hours: each epoch's start, then the end of the last one."""
    t = np.asarray(start_s, dtype=float)
    return np.append(t, t[-1] + epoch_s if len(t) else epoch_s) / 3600.0


def draw_hypnogram(ax, codes, edges_h, *, color: str = "black", linewidth: float = 1.0, label=None,
                   rem_color: str | None = None) -> None:
    """Draw one hypnogram as stairs on ``ax``: W top, REM, N1, N2, N3 bottom; unscored epochs as gaps.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
    codes : array-like, shape (n_epochs,)
        AASM stage codes (:data:`psgvlm.stages.STAGES` indices; ``UNSCORED`` = -1 left blank).
    edges_h : array-like, shape (n_epochs + 1,)
        Epoch edges on the time axis (:func:`epoch_edges_h`).
    rem_color : str, optional
        Draw REM epochs again, thick, in this colour (as sleep reports do).
    """
    codes = np.asarray(codes)
    edges_h = np.asarray(edges_h, dtype=float)
    level = np.array([np.nan if int(c) == UNSCORED else HYPNOGRAM_LEVELS.get(int(c), np.nan) for c in codes],
                     dtype=float)
    ax.stairs(level, edges_h, baseline=None, color=color, linewidth=linewidth, label=label)
    if rem_color is not None:
        is_rem = level == _REM_LEVEL
        ax.hlines(np.full(int(is_rem.sum()), float(_REM_LEVEL)), edges_h[:-1][is_rem], edges_h[1:][is_rem],
                  color=rem_color, linewidth=2.5 * linewidth)
    ax.set_yticks(*_HYPNO_TICKS)
    ax.set_ylim(-0.5, 4.5)


def draw_hypnodensity(ax, probs, edges_h, *, legend: bool = True) -> None:
    """Stack the per-epoch stage probabilities (n_epochs, 5) as steps over ``edges_h`` (n_epochs + 1,)."""
    probs = np.asarray(probs, dtype=float)
    edges_h = np.asarray(edges_h, dtype=float)
    x = np.repeat(edges_h, 2)[1:-1]  # each epoch's probabilities held flat from its start to its end
    ax.stackplot(x, *[np.repeat(probs[:, k], 2) for k in range(probs.shape[1])], labels=STAGES,
                 colors=STAGE_COLORS)
    ax.set_ylim(0, 1)
    ax.set_xlim(edges_h[0], edges_h[-1])
    if legend:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)


def plot_hypnogram(truth, pred, start_s, path, title: str = "", *, epoch_s: float = EPOCH_S) -> Path:
    """Expert (black) and predicted (red) hypnograms on one time axis (hours); unscored truth as gaps.

    ``truth``, ``pred``: (n_epochs,) stage codes; ``start_s``: (n_epochs,) epoch starts, seconds.
    """
    edges = epoch_edges_h(start_s, epoch_s)
    fig = new_figure(10, 3)
    ax = fig.add_subplot(1, 1, 1)
    draw_hypnogram(ax, truth, edges, color="black", linewidth=1.2, label="expert")
    draw_hypnogram(ax, pred, edges, color="tab:red", linewidth=0.9, label="model")
    ax.set_xlabel("time (h)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)  # right of the axes
    ax.set_title(title, fontsize=9)
    return save_png(fig, path, tight=True)


def plot_hypnodensity(probs, start_s, path, title: str = "", *, epoch_s: float = EPOCH_S) -> Path:
    """Stacked per-epoch stage probabilities (n_epochs, 5) over the night (hours)."""
    fig = new_figure(10, 2.6)
    ax = fig.add_subplot(1, 1, 1)
    draw_hypnodensity(ax, probs, epoch_edges_h(start_s, epoch_s))
    ax.set_xlabel("time (h)")
    ax.set_ylabel("probability")
    ax.set_title(title, fontsize=9)
    return save_png(fig, path, tight=True)


def plot_night(pred, probs, start_s, path, *, expert=None, epoch_s: float = EPOCH_S, notice: str = "",
               pred_label: str = "Predicted", others=(), clock_start=None, lights_h=None) -> Path:
    """A staged night: predicted hypnogram (and the expert one below it) over the hypnodensity.

    Parameters
    ----------
    pred : array-like, shape (n_epochs,)
        Predicted stage codes.
    probs : array-like, shape (n_epochs, 5)
        Stage probabilities, columns :data:`psgvlm.stages.STAGES`.
    start_s : array-like, shape (n_epochs,)
        Epoch starts, seconds; the time axis reads hours from the first epoch.
    path : path-like
        PNG to write.
    expert : array-like, shape (n_epochs,), optional
        Expert stage codes (``UNSCORED`` drawn as gaps).
    notice : str
        Printed small above the plots (what the model is, not for clinical use).
    pred_label : str
        Y label of the predicted hypnogram (e.g. the name of the predictor it comes from).
    others : sequence of (str, array-like (n_epochs,))
        More hypnograms drawn below the predicted one (other predictors of the same night).
    clock_start : datetime.time or datetime.datetime, optional
        Clock time of the first epoch: the time axis then reads clock time (HH:MM).
    lights_h : (float, float), optional
        Lights off and on, hours from the first epoch: time out of bed is shaded grey.
    """
    start_s = np.asarray(start_s, dtype=float)
    edges = epoch_edges_h(start_s - (start_s[0] if len(start_s) else 0.0), epoch_s)
    rows = [(pred_label, pred), *others] + ([("Expert", expert)] if expert is not None else [])
    fig = new_figure(10, 1.9 * len(rows) + 2.2, layout="constrained")
    axes = fig.subplots(len(rows) + 1, 1, sharex=True, gridspec_kw={"height_ratios": [1] * len(rows) + [1.1]})
    for ax, (title, codes) in zip(axes, rows):
        draw_hypnogram(ax, codes, edges, rem_color="tab:red")
        ax.set_ylabel(title)
        ax.grid(axis="y", alpha=0.3)
    draw_hypnodensity(axes[-1], probs, edges)
    axes[-1].set_ylabel("Hypnodensity")
    axes[-1].set_xlabel("Time from first epoch (h)")
    if lights_h is not None and len(edges):
        for ax in axes:
            for lo, hi in ((edges[0], lights_h[0]), (lights_h[1], edges[-1])):
                if hi > lo:
                    ax.axvspan(lo, hi, color="0.5", alpha=0.25, linewidth=0)
    if clock_start is not None:
        from matplotlib.ticker import FuncFormatter, MultipleLocator

        t0 = clock_start.hour + clock_start.minute / 60 + clock_start.second / 3600
        span_h = float(edges[-1] - edges[0]) if len(edges) else 0.0
        step = next((s for s in (1 / 60, 1 / 12, 0.25, 0.5, 1, 2) if span_h / s <= 10), 2)  # at most ~10 ticks
        axes[-1].xaxis.set_major_locator(MultipleLocator(step, offset=-t0 % step))
        def clock(h, _pos):
            minutes = int(round((t0 + h) * 60)) % (24 * 60)
            return f"{minutes // 60:02d}:{minutes % 60:02d}"

        axes[-1].xaxis.set_major_formatter(FuncFormatter(clock))
        axes[-1].set_xlabel(f"Clock time (recording started {clock_start.strftime('%H:%M:%S')})"
                            + ("; grey: out of bed" if lights_h is not None else ""))
    if notice:
        fig.suptitle(textwrap.fill(notice, 110), fontsize=8, color="dimgray")
    return save_png(fig, path)


def plot_confusion(cm, path, title: str = "") -> Path:
    """Counts and row-normalised confusion matrices side by side (rows expert, columns predicted).

    Parameters
    ----------
    cm : array-like, shape (5, 5)
        Counts, rows the expert stage and columns the predicted one, in :data:`STAGES` order
        (:func:`psgvlm.metrics.confusion_matrix`, or ``stage_metrics(...)["confusion"]``).
    path : path-like
        PNG to write (``confusion.png`` in recipe run dirs, ``confusion_*.png`` in eval outputs).
    title : str
        Printed above each panel with "counts" / "row-normalised".

    Both panels are shaded by the row-normalised value, so a rare stage reads as clearly as a common one;
    tick labels are the stage names coloured with :data:`STAGE_COLORS` markers.
    """
    cm = np.asarray(cm)
    norm = row_normalised(cm)
    fig = new_figure(9, 4)
    for k, (mat, fmt, sub) in enumerate([(cm, "d", "counts"), (norm, ".2f", "row-normalised")]):
        ax = fig.add_subplot(1, 2, k + 1)
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        for i in range(mat.shape[0]):
            for j in range(mat.shape[1]):
                ax.text(j, i, format(mat[i, j], fmt), ha="center", va="center",
                        color="white" if norm[i, j] > 0.5 else "black", fontsize=8)
        ax.set_xticks(range(len(STAGES)), STAGES)
        ax.set_yticks(range(len(STAGES)), STAGES)
        ax.tick_params(length=0, pad=14)  # room for the stage-colour markers between labels and cells
        for i, color in enumerate(STAGE_COLORS):
            ax.plot(-0.68, i, "s", color=color, markersize=7, clip_on=False)
            ax.plot(i, len(STAGES) - 0.32, "s", color=color, markersize=7, clip_on=False)
        ax.set_xlim(-0.5, len(STAGES) - 0.5)
        ax.set_ylim(len(STAGES) - 0.5, -0.5)
        ax.set_xlabel("predicted")
        ax.set_ylabel("expert")
        ax.set_title(f"{title} ({sub})" if title else sub, fontsize=9)
    return save_png(fig, path, tight=True)
