"""Epoch -> 336x336 RGB waveform image: a fast numpy rasteriser and a matplotlib reference.

Scaling (:func:`scale_epochs`, chosen by ``RenderSettings.scaling``): ``"minmax"`` is the PSG-image
paper's per-epoch, per-channel min-max to [-1, 1]; ``"physical"`` keeps amplitude: each channel's
epoch mean is removed and a fixed range per modality (``physical_range_uv``) maps to the band's
edge, larger excursions clipped; ``"recording"`` keeps amplitude relative to the rest of the night:
the range is ``recording_span_sd`` times the channel's median epoch standard deviation over the
recording, so a quiet amplifier or an old sleeper's small slow waves are drawn like anyone else's
while N3 still stands taller than N2. Whatever the scaling, a flat (or missing) channel is 0, the
band's mid-line.

Layout (both renderers, one geometry function): each channel gets its own horizontal band, top to
bottom in the given order, separated by ``band_gap_px``; a scaled sample ``v`` in [-1, 1] is drawn at
the top of its band for +1 and at the bottom for -1, inset by half the line width so the ink stays
inside the band; sample ``i`` of ``n`` sits at ``x = left + i * (right - left) / (n - 1)``. Optional
channel labels go in a left margin of ``label_margin_px``.

Both renderers draw at ``supersample`` times the output size and reduce with an area (box) filter,
the anti-aliasing downsampling step of the PSG-image paper's "render high, resize to 336" pipeline.

Why a hand-written rasteriser: a matplotlib figure per epoch costs ~0.1 s of CPU at 1344 px, i.e.
minutes per night and hours per dataset. The fast path exploits the one thing a waveform plot is --
a function of x. The stroke is the polyline swept by a round pen of diameter ``line_width_px``; at
each high-resolution sub-column it covers one vertical interval: the min..max of the line over the
pen's horizontal reach (samples inside it and the line where it crosses cell edges), padded by the
pen's half-height at each offset. Each output pixel's vertical coverage by those intervals is exact
(interval overlap, accumulated for all channels at once with one ``bincount`` + ``cumsum``); the
horizontal anti-aliasing is the mean over the ``supersample`` sub-columns (the area filter). Colours
come from a lookup table. Everything that depends only on (settings, n_chans, n_times) is computed
once per process (``_plan``). The matplotlib reference draws the same polylines with round caps and
joins at the same width; ``benchmarks/render.py`` measures speed and agreement (MAD, SSIM).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageColor, ImageDraw, ImageFont

RENDERER_VERSION = "1.1.0"  # 1.1: scaling and physical_range_uv settings (drawing unchanged)

# Default line colour per modality, for settings built with colors_for_modalities (dark, distinct,
# all readable on white).
MODALITY_COLORS: dict[str, str] = {
    "EEG": "#000000",
    "EOG": "#1f4e9c",
    "EMG": "#9c1f1f",
    "ECG": "#1f7a2e",
    "RESP": "#6a3d9a",
    "SPO2": "#b15928",
    "OTHER": "#404040",
}

SCALINGS = ("minmax", "physical", "recording")
# Half the displayed span per modality under scaling="physical", microvolts (the readers' unit for
# electrode channels). Chosen for a ~26-px band (12 bands in 336 px; ~9 px once the tiny model's
# processor shrinks the image to 112 px): EEG 100 uV puts N3's slow waves (>= 75 uV peak to peak,
# often 100-200) at 3/8 of the band or more while wake/REM background (10-30 uV) stays a thin trace,
# and clips only K-complexes and artefacts; EOG 200 uV holds eye movements and blinks (50-300 uV);
# chin EMG 50 uV shows wake tone filling the band and REM atonia as a near-flat line; ECG 1 mV an R
# wave. Modalities without an entry (respiration, SpO2, other) are not in microvolts: min-max scaled
# (under "recording" too, which scales the modalities listed here).
PHYSICAL_RANGE_UV: tuple[tuple[str, float], ...] = (("ECG", 1000.0), ("EEG", 100.0), ("EMG", 50.0), ("EOG", 200.0))


def _rgb(color: str, field: str) -> tuple[int, int, int]:
    try:
        return ImageColor.getrgb(color)[:3]
    except (ValueError, AttributeError, TypeError):
        raise ValueError(
            f"{field}={color!r} is not a colour; use a name ('black') or hex ('#1f4e9c')"
        ) from None


@dataclass(frozen=True)
class RenderSettings:
    """How an epoch becomes an image; written into the dataset's ``meta.json`` via :meth:`as_dict`."""

    size: int = 336  # output width = height, pixels
    supersample: int = 4  # high-resolution stage is size * supersample pixels, then area-downsampled
    line_width_px: float = 1.0  # stroke width in output pixels
    background: str = "white"  # any PIL/matplotlib colour name or hex
    line_color: str = "black"  # colour of every channel unless line_colors is given
    line_colors: tuple[str, ...] = ()  # optional, one per channel (see colors_for_modalities)
    band_gap_px: float = 2.0  # empty space between two channels' bands, output pixels
    labels: tuple[str, ...] = ()  # optional channel labels drawn in the left margin, one per channel
    label_margin_px: int = 28  # width of the label margin, output pixels (used only with labels)
    label_font_px: int = 9  # label text height, output pixels
    scaling: str = "minmax"  # "minmax" (per epoch and channel, the paper), "physical" or "recording" (see above)
    physical_range_uv: tuple[tuple[str, float], ...] = PHYSICAL_RANGE_UV  # (modality, half span uV); physical only
    recording_span_sd: float = 5.0  # "recording": half span in the night's median epoch SD of the channel

    def __post_init__(self):
        if not isinstance(self.size, int) or isinstance(self.size, bool) or not 16 <= self.size <= 4096:
            raise ValueError(f"size={self.size!r}: must be an integer number of pixels in [16, 4096]")
        if not isinstance(self.supersample, int) or isinstance(self.supersample, bool) or not 1 <= self.supersample <= 16:
            raise ValueError(f"supersample={self.supersample!r}: must be an integer in [1, 16]")
        if not (isinstance(self.line_width_px, int | float) and np.isfinite(self.line_width_px)
                and 0 < self.line_width_px <= self.size / 8):
            raise ValueError(f"line_width_px={self.line_width_px!r}: must be > 0 and <= size / 8 = {self.size / 8}")
        if not (isinstance(self.band_gap_px, int | float) and np.isfinite(self.band_gap_px)
                and 0 <= self.band_gap_px < self.size / 4):
            raise ValueError(f"band_gap_px={self.band_gap_px!r}: must be >= 0 and < size / 4 = {self.size / 4}")
        for name in ("line_colors", "labels"):
            if not isinstance(getattr(self, name), tuple):
                raise ValueError(f"{name}={getattr(self, name)!r}: must be a tuple (the settings are hashable)")
        if self.scaling not in SCALINGS:
            raise ValueError(f"scaling={self.scaling!r} not allowed; choose from {list(SCALINGS)}")
        if not isinstance(self.physical_range_uv, tuple) or not all(
                isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) and isinstance(p[1], int | float)
                and not isinstance(p[1], bool) and np.isfinite(p[1]) and p[1] > 0 for p in self.physical_range_uv):
            raise ValueError(f"physical_range_uv={self.physical_range_uv!r}: must be a tuple of (modality, microvolts "
                             f"> 0) pairs, e.g. {PHYSICAL_RANGE_UV}")
        if not (isinstance(self.recording_span_sd, int | float) and np.isfinite(self.recording_span_sd)
                and self.recording_span_sd > 0):
            raise ValueError(f"recording_span_sd={self.recording_span_sd!r}: must be a positive number")
        _rgb(self.background, "background")
        _rgb(self.line_color, "line_color")
        for i, c in enumerate(self.line_colors):
            _rgb(c, f"line_colors[{i}]")
        if self.labels:
            if not (isinstance(self.label_margin_px, int) and 0 < self.label_margin_px <= self.size // 3):
                raise ValueError(f"label_margin_px={self.label_margin_px!r}: must be an integer in [1, size // 3]")
            if not (isinstance(self.label_font_px, int) and 4 <= self.label_font_px <= 64):
                raise ValueError(f"label_font_px={self.label_font_px!r}: must be an integer in [4, 64]")

    def as_dict(self) -> dict:
        """Plain JSON-able dict of every field plus ``renderer_version``."""
        d = asdict(self)
        d["line_colors"] = list(self.line_colors)
        d["labels"] = list(self.labels)
        d["physical_range_uv"] = {m: float(v) for m, v in self.physical_range_uv}
        d["renderer_version"] = RENDERER_VERSION
        return d

    @classmethod
    def from_dict(cls, d: dict) -> RenderSettings:
        """Inverse of :meth:`as_dict` (``renderer_version`` ignored; unknown keys rejected; settings written
        before ``scaling`` existed read as ``"minmax"``)."""
        d = {k: v for k, v in d.items() if k != "renderer_version"}
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown render settings {unknown}; allowed: {sorted(known)}")
        for k in ("line_colors", "labels"):
            if k in d:
                d[k] = tuple(d[k])
        if isinstance(d.get("physical_range_uv"), dict):
            d["physical_range_uv"] = tuple(sorted((str(m), v) for m, v in d["physical_range_uv"].items()))
        return cls(**d)


def colors_for_modalities(modalities, palette: dict[str, str] | None = None) -> tuple[str, ...]:
    """Per-channel line colours from per-channel modalities (e.g. ``["EEG", "EOG", "EMG"]``)."""
    palette = MODALITY_COLORS if palette is None else palette
    missing = sorted({m for m in modalities if m not in palette})
    if missing:
        raise ValueError(f"no colour for modalities {missing}; palette has {sorted(palette)}")
    return tuple(palette[m] for m in modalities)


def scale_epochs(x: np.ndarray, modalities, settings: RenderSettings, *, out: np.ndarray | None = None) -> np.ndarray:
    """Scale raw epochs to [-1, 1] for drawing, as ``settings.scaling`` says.

    Parameters
    ----------
    x : np.ndarray, shape (..., n_chans, n_times)
        Raw samples in the channels' units (microvolts for EEG/EOG/EMG/ECG), e.g. (n_epochs, n_chans,
        n_times); not modified unless passed as ``out``. Under ``"recording"``, shape (n_epochs,
        n_chans, n_times) holding every epoch of the recording (the scale is its median epoch).
    modalities : sequence of str or None, length n_chans
        Each channel's modality ("EEG", "EOG", ...); picks its range under ``"physical"``. None: a blank
        band (no channel drawn in it), left as it is (zeros: the band's mid-line).
    settings : RenderSettings
        ``scaling="minmax"``: :func:`psgvlm.signal.epochs.minmax_scale` per epoch and channel;
        ``"physical"``: :func:`psgvlm.signal.epochs.physical_scale` with ``physical_range_uv`` of the
        channel's modality, channels of a modality without a range min-max scaled; ``"recording"``:
        the same with range ``recording_span_sd`` x the median over epochs of the channel's epoch SD
        (a channel flat throughout stays 0).
    out : np.ndarray, optional
        float32 array of ``x``'s shape to write into (``out=x`` scales in place).

    Returns
    -------
    np.ndarray, same shape, float32, in [-1, 1]; a flat channel is 0 under either scaling.
    """
    from psgvlm.signal.epochs import minmax_scale, physical_scale

    x = np.asarray(x)
    modalities = list(modalities)
    if x.ndim < 2 or x.shape[-2] != len(modalities):
        raise ValueError(f"x of shape {x.shape} needs one modality per channel (axis -2); got {modalities}")
    if None in modalities:  # blank bands stay as they are; the drawn ones are scaled and put back
        drawn = [i for i, m in enumerate(modalities) if m is not None]
        result = np.array(x, dtype=np.float32) if out is None else out
        if result is not x:
            result[...] = x
        part = x[..., drawn, :]  # fancy indexing copies: scaled in place
        result[..., drawn, :] = scale_epochs(part, [modalities[i] for i in drawn], settings, out=part)
        return result
    if settings.scaling == "minmax":
        return minmax_scale(x, out=out)
    ranges = dict(settings.physical_range_uv)
    fixed = [i for i, m in enumerate(modalities) if m in ranges]
    other = [i for i, m in enumerate(modalities) if m not in ranges]
    span = np.array([ranges[modalities[i]] for i in fixed], dtype=np.float64)
    if settings.scaling == "recording" and fixed:
        if x.ndim != 3:
            raise ValueError(f"scaling='recording' needs every epoch of the recording, shape (n_epochs, n_chans, "
                             f"n_times); got {x.shape}")
        sd = np.median(x[:, fixed, :].std(axis=-1, dtype=np.float64), axis=0)  # (n_fixed,) the night's median epoch
        span = np.where(sd > 0, settings.recording_span_sd * sd, 1.0)  # flat throughout: 0 whatever the span
    if not other:
        return physical_scale(x, span, out=out)
    result = np.empty(x.shape, np.float32) if out is None else out
    scaled_other = minmax_scale(x[..., other, :])  # fancy indexing copies: safe when out is x
    if fixed:
        result[..., fixed, :] = physical_scale(x[..., fixed, :], span)
    result[..., other, :] = scaled_other
    return result


# -- geometry shared by both renderers -------------------------------------------------------------
@dataclass(frozen=True)
class _Layout:
    left: float  # x of the first sample, output px
    right: float  # x of the last sample
    tops: np.ndarray  # (n_chans,) y of +1 per band, output px
    scale: float  # output px per unit of scaled signal (half the drawable band height)
    band_tops: np.ndarray  # (n_chans,) top of each band
    band_h: float  # band height, output px


def band_layout(n_chans: int, settings: RenderSettings) -> _Layout:
    """Pixel geometry of the channel bands (public: evals maps attribution patches onto it)."""
    s = settings
    gap = s.band_gap_px
    band_h = (s.size - gap * (n_chans - 1)) / n_chans
    lw = s.line_width_px
    if band_h < 2 * lw:
        raise ValueError(
            f"{n_chans} channels in {s.size} px with band_gap_px={gap} leave {band_h:.2f} px per band, "
            f"less than twice line_width_px={lw}; use fewer channels, a larger size or thinner lines"
        )
    band_tops = np.arange(n_chans) * (band_h + gap)
    half = lw / 2
    x0 = (s.label_margin_px if s.labels else 0) + half
    return _Layout(left=x0, right=s.size - half, tops=band_tops + half, scale=(band_h - lw) / 2,
                   band_tops=band_tops, band_h=band_h)


def _check_epoch(x_scaled: np.ndarray, settings: RenderSettings, dtype=np.float64) -> np.ndarray:
    if not isinstance(settings, RenderSettings):
        raise ValueError(f"settings must be a RenderSettings; got {type(settings).__name__} {settings!r}")
    x = np.asarray(x_scaled)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 2:
        raise ValueError(f"x_scaled must have shape (n_chans >= 1, n_times >= 2); got {x.shape}")
    if not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"x_scaled must be numeric; got dtype {x.dtype}")
    lo, hi = float(x.min()), float(x.max())
    if not (np.isfinite(lo) and np.isfinite(hi)):
        bad = np.argwhere(~np.isfinite(x))[0]
        raise ValueError(f"x_scaled has non-finite values (first at channel {bad[0]}, sample {bad[1]})")
    if lo < -1.001 or hi > 1.001:
        raise ValueError(
            f"x_scaled spans [{lo:.4g}, {hi:.4g}], outside [-1, 1]; scale it first "
            f"(psgvlm.image.renderer.scale_epochs or psgvlm.signal.epochs.minmax_scale)"
        )
    n = x.shape[0]
    for name in ("line_colors", "labels"):
        val = getattr(settings, name)
        if val and len(val) != n:
            raise ValueError(f"settings.{name} has {len(val)} entries for {n} channels: {list(val)}")
    x = x.astype(dtype, copy=False)
    return np.clip(x, -1.0, 1.0) if lo < -1.0 or hi > 1.0 else x


def _colors(n_chans: int, settings: RenderSettings) -> list[tuple[int, int, int]]:
    if settings.line_colors:
        return [_rgb(c, "line_colors") for c in settings.line_colors]
    return [_rgb(settings.line_color, "line_color")] * n_chans


def _font(settings: RenderSettings, scale: int = 1):
    return ImageFont.load_default(size=settings.label_font_px * scale)


def _draw_labels(img: Image.Image, lay: _Layout, settings: RenderSettings, scale: int) -> None:
    """Labels in the left margin, vertically centred in their band (scale = pixels per output px)."""
    draw = ImageDraw.Draw(img)
    font = _font(settings, scale)
    for k, (text, color) in enumerate(zip(settings.labels, _colors(len(settings.labels), settings))):
        y = (lay.band_tops[k] + lay.band_h / 2) * scale
        draw.text((2 * scale, y), text, fill=color, font=font, anchor="lm")


# -- fast renderer ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Plan:
    """Everything render_epoch needs that depends only on (settings, n_chans, n_times)."""

    lay: _Layout
    w_hi: int  # high-res width, sub-columns
    win: int  # pen width in sub-columns (cells per column window)
    i0: np.ndarray  # (n_cells + 1,) sample left of each cell edge
    f: np.ndarray  # (n_cells + 1,) float32 interpolation weight at each cell edge
    inside: slice  # samples that fall in some cell
    seg: np.ndarray | None  # (k, n_occupied) sample index within `inside`, k per occupied cell (repeated)
    cells: np.ndarray | slice  # the occupied cells (a slice when contiguous)
    outside: np.ndarray  # (n_cells,) bool, cells wholly outside the drawn x-range
    hk: np.ndarray  # (win,) float32 pen half-height per cell offset, output px
    cols: np.ndarray  # (w_hi,) output column of each sub-column
    lut: np.ndarray  # (n_colours * 256, 3) uint8 colour per (colour, coverage level)
    row_lut: np.ndarray | None  # (size, 1) offset into lut per row, None for one colour


_FULL_ROW = float(2**24)  # one row's coverage by one sub-column in render_epoch's fixed-point sums


@lru_cache(maxsize=16)
def _plan(settings: RenderSettings, n_chans: int, n_times: int) -> _Plan:
    lay = band_layout(n_chans, settings)
    s, size, lw = settings.supersample, settings.size, settings.line_width_px
    w_hi = size * s
    dx = (lay.right - lay.left) / (n_times - 1)
    win = max(1, int(round(lw * s)))
    off = 0.5 / s - win / (2 * s)  # output x of the first cell edge
    n_cells = w_hi + win - 1
    edges = off + np.arange(n_cells + 1) / s  # output px
    t = np.clip((edges - lay.left) / dx, 0.0, n_times - 1)
    i0 = np.minimum(t.astype(np.int64), n_times - 2)
    f = (t - i0).astype(np.float32)
    cell = np.floor((lay.left + np.arange(n_times) * dx - off) * s).astype(np.int64)
    inside_idx = np.flatnonzero((cell >= 0) & (cell < n_cells))
    seg, cells, inside = None, slice(0, 0), slice(0, 0)
    if inside_idx.size:
        inside = slice(int(inside_idx[0]), int(inside_idx[-1]) + 1)
        cell_in = cell[inside]
        starts = np.flatnonzero(np.r_[True, cell_in[1:] != cell_in[:-1]])  # samples sorted by x
        ends = np.r_[starts[1:], len(cell_in)]
        # the samples of each occupied cell as k gathers, a cell's last sample repeated up to k (the
        # min/max of k equal-width gathers is faster than reduceat over ~1,300 short segments)
        seg = np.minimum(starts + np.arange(int((ends - starts).max()))[:, None], ends - 1)
        cells = cell_in[starts]
        if np.all(np.diff(cells) == 1):
            cells = slice(int(cells[0]), int(cells[-1]) + 1)
    outside = (edges[1:] <= lay.left) | (edges[:-1] >= lay.right)
    half = lw / 2
    dxk = (np.arange(win) + 0.5 - win / 2) / s
    hk = np.sqrt(np.maximum(half * half - dxk * dxk, 0.0)).astype(np.float32)
    # Colour lookup: coverage level (0..255) -> RGB per distinct colour; rows take the colour of
    # the lowest band starting above the row's bottom edge. Exact when band_gap_px >= 1 (no row
    # holds two bands' ink); with a smaller gap and per-channel colours a shared row takes the
    # lower band's colour.
    bg = np.asarray(_rgb(settings.background, "background"), dtype=np.float64)
    colors = np.asarray(_colors(n_chans, settings), dtype=np.float64)
    uniq, band_lut = np.unique(colors, axis=0, return_inverse=True)
    levels = np.arange(256)[None, :, None] / 255.0
    lut = np.rint(bg + levels * (uniq[:, None, :] - bg)).astype(np.uint8).reshape(-1, 3)
    row_lut = None
    if len(uniq) > 1:
        row_band = np.searchsorted(lay.band_tops, np.arange(size) + 1.0, side="left") - 1
        row_lut = 256 * band_lut.ravel()[np.clip(row_band, 0, n_chans - 1)][:, None]
    for a in (i0, f, hk, lut, outside, *([] if seg is None else [seg])):
        a.flags.writeable = False
    return _Plan(lay=lay, w_hi=w_hi, win=win, i0=i0, f=f, inside=inside, seg=seg, cells=cells,
                 outside=outside, hk=hk, cols=np.arange(w_hi) // s, lut=lut, row_lut=row_lut)


def render_epoch(x_scaled: np.ndarray, settings: RenderSettings = RenderSettings()) -> np.ndarray:  # noqa: B008
    """Render one scaled epoch as an RGB image with the numpy rasteriser.

    Parameters
    ----------
    x_scaled : np.ndarray, shape (n_chans, n_times)
        Each channel scaled to [-1, 1] (:func:`scale_epochs`); channel 0 is drawn in the top band.
    settings : RenderSettings

    Returns
    -------
    np.ndarray, shape (size, size, 3), uint8
        A new array; the same input and settings always give the same bytes.
    """
    x = _check_epoch(x_scaled, settings, np.float32)
    n_chans, n_times = x.shape
    p = _plan(settings, n_chans, n_times)
    lay, s, size, w_hi = p.lay, settings.supersample, settings.size, p.w_hi

    # Sample y in output px (float32 is ample: 1e-4 px at 336), growing downwards.
    y = (1.0 - x) * np.float32(lay.scale)
    y += lay.tops[:, None].astype(np.float32)  # (n_chans, n_times)

    # The stroke is the polyline swept by a round pen of diameter lw. Sub-column c (centre at
    # output x = (c + 0.5) / s) sees the pen from line points within lw/2 of its centre; split that
    # window into `win` cells of width 1/s, take the line's y-interval in each cell (its y at the
    # cell edges plus every sample inside), and pad each cell's interval by the pen's half-height
    # at the cell's offset from the column centre.
    y0, y1 = y[:, p.i0], y[:, p.i0 + 1]
    y_edge = y0 + (y1 - y0) * p.f  # (n_chans, n_cells + 1)
    cmin = np.minimum(y_edge[:, :-1], y_edge[:, 1:])
    cmax = np.maximum(y_edge[:, :-1], y_edge[:, 1:])
    if p.seg is not None:
        y_seg = y[:, p.inside][:, p.seg]  # (n_chans, k, n_occupied)
        cmin[:, p.cells] = np.minimum(cmin[:, p.cells], y_seg.min(axis=1))
        cmax[:, p.cells] = np.maximum(cmax[:, p.cells], y_seg.max(axis=1))
    cmin[:, p.outside] = np.inf  # cells wholly outside the drawn x-range carry no ink
    cmax[:, p.outside] = -np.inf
    hk = p.hk
    lo = cmin[:, 0:w_hi] - hk[0]
    hi = cmax[:, 0:w_hi] + hk[0]
    for k in range(1, p.win):
        np.minimum(lo, cmin[:, k:k + w_hi] - hk[k], out=lo)
        np.maximum(hi, cmax[:, k:k + w_hi] + hk[k], out=hi)

    # Exact vertical coverage of each output pixel (interval overlap, averaged over the s
    # sub-columns) without touching every pixel of every sub-column: the coverage of row r by
    # [lo, hi] is F(hi)[r] - F(lo)[r] with F(y)[r] = clip(y - r, 0, 1), and F(y) is the reverse
    # cumulative sum of frac(y) at row floor(y) and 1 - frac(y) at the row above. All channels
    # and sub-columns add into one histogram (bincount), then one cumsum over rows.
    keep = hi > lo  # sub-columns with ink; the others contribute F(0) - F(0) = 0
    ends = np.stack([np.where(keep, hi, 0.0), np.where(keep, lo, 0.0)])  # (2, n_chans, w_hi)
    fl = np.floor(ends)
    # Fixed point: a whole row is _FULL_ROW (an integer held exactly in float64), frac(y) is rounded
    # to it and the row above gets the exact remainder, so each end adds exactly +-_FULL_ROW and an
    # interval's ends cancel exactly below it: every band's pixels depend on its own channel alone
    # (band dropout in training relies on it), not on float rounding left by the bands below.
    sign = np.array([1.0, -1.0])[:, None, None]
    fr = np.rint((ends - fl) * _FULL_ROW) * sign
    # Rows are stored reversed (index size - row) so a forward cumsum gives the reverse cumulative
    # sum; the (floor - 1) row is the next index.
    row = fl.astype(np.intp)
    np.clip(row, 0, size, out=row)
    base = (size - row) * size + p.cols
    g = np.bincount(np.concatenate([base.ravel(), base.ravel() + size]),
                    weights=np.concatenate([fr.ravel(), (sign * _FULL_ROW - fr).ravel()]),
                    minlength=(size + 2) * size)
    cov = np.cumsum(g.reshape(size + 2, size), axis=0)
    cov *= 255.0 / (_FULL_ROW * s)  # coverage in 1/255, averaged over the s sub-columns
    # Coverage in 0..255 (clip: rounding noise only), then a colour lookup table: one gather.
    np.clip(cov, 0.0, 255.0, out=cov)
    cov += 0.5
    q = cov.astype(np.intp)[size:0:-1]  # (rows, cols)
    if p.row_lut is not None:
        q += p.row_lut
    out = np.take(p.lut, q, axis=0)  # (size, size, 3) uint8
    if settings.labels:
        pil = Image.fromarray(out)
        _draw_labels(pil, lay, settings, 1)
        out = np.asarray(pil).copy()
    return out


def _area_downsample(hi_res: np.ndarray, s: int) -> np.ndarray:
    h, w, c = hi_res.shape
    return hi_res.reshape(h // s, s, w // s, s, c).mean(axis=(1, 3))


def render_epoch_reference(x_scaled: np.ndarray, settings: RenderSettings = RenderSettings()) -> np.ndarray:  # noqa: B008
    """Render one scaled epoch with matplotlib (``Figure`` + ``FigureCanvasAgg``), for comparison.

    Same layout and stroke width (in output pixels) as :func:`render_epoch`: the figure is
    ``size * supersample`` pixels square, axes fill it with limits in output-pixel coordinates, and
    the result is area-downsampled by ``supersample``. No global matplotlib state is touched
    (``rc_context`` pins the few rc values that affect the drawing). Channel labels, when set, are
    drawn with the same PIL text call as the fast renderer, so a comparison isolates the waveforms.

    Parameters
    ----------
    x_scaled : np.ndarray, shape (n_chans, n_times)
        Each channel scaled to [-1, 1].
    settings : RenderSettings

    Returns
    -------
    np.ndarray, shape (size, size, 3), uint8
    """
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    x = _check_epoch(x_scaled, settings)
    n_chans, n_times = x.shape
    s = settings.supersample
    size = settings.size
    lay = band_layout(n_chans, settings)
    dpi = 100.0
    xs = lay.left + np.arange(n_times) * ((lay.right - lay.left) / (n_times - 1))
    ys = lay.tops[:, None] + (1.0 - x) * lay.scale
    colors = [tuple(v / 255 for v in c) for c in _colors(n_chans, settings)]
    rc = {"path.simplify": False, "lines.antialiased": True, "agg.path.chunksize": 0,
          "lines.solid_capstyle": "round", "lines.solid_joinstyle": "round"}
    with matplotlib.rc_context(rc):
        fig = Figure(figsize=(size * s / dpi, size * s / dpi), dpi=dpi,
                     facecolor=tuple(v / 255 for v in _rgb(settings.background, "background")))
        canvas = FigureCanvasAgg(fig)
        ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
        ax.set_axis_off()
        ax.set_xlim(0, size)
        ax.set_ylim(size, 0)  # rows grow downwards, as in the image
        lw_pt = settings.line_width_px * s * 72.0 / dpi
        for k in range(n_chans):
            ax.plot(xs, ys[k], color=colors[k], linewidth=lw_pt)
        canvas.draw()
        hi_res = np.asarray(canvas.buffer_rgba())[..., :3].astype(np.float32)
    out = np.rint(_area_downsample(hi_res, s)).astype(np.uint8)
    if settings.labels:
        pil = Image.fromarray(out)
        _draw_labels(pil, lay, settings, 1)
        out = np.asarray(pil).copy()
    return out


# -- agreement between two renderings ----------------------------------------------------------------
def image_agreement(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """How alike two RGB renderings are: mean absolute pixel difference and SSIM.

    Written here (a few lines of scipy) rather than pulling scikit-image in for one metric.

    Parameters
    ----------
    a, b : np.ndarray, shape (H, W, 3) or (n, H, W, 3), uint8

    Returns
    -------
    dict
        ``mad``: mean |a - b| over pixels and channels, in 0..255 levels; ``ssim``: mean structural
        similarity (Wang et al. 2004: Gaussian window sigma 1.5, K1 0.01, K2 0.03, L 255) of the
        luma images, averaged over the batch; 1.0 means identical.
    """
    from scipy.ndimage import gaussian_filter

    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim not in (3, 4) or a.shape[-1] != 3:
        raise ValueError(f"need two RGB images of one shape (H, W, 3) or (n, H, W, 3); got {a.shape} and {b.shape}")
    mad = float(np.abs(a - b).mean())
    luma = np.array([0.299, 0.587, 0.114])
    ya, yb = a @ luma, b @ luma
    if ya.ndim == 2:
        ya, yb = ya[None], yb[None]
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    sig = (0, 1.5, 1.5)  # no smoothing across the batch axis
    mu_a, mu_b = gaussian_filter(ya, sig), gaussian_filter(yb, sig)
    var_a = gaussian_filter(ya * ya, sig) - mu_a ** 2
    var_b = gaussian_filter(yb * yb, sig) - mu_b ** 2
    cov = gaussian_filter(ya * yb, sig) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return {"mad": mad, "ssim": float(ssim_map.mean())}
