"""Sequence context (``--context K``): the model reads the scored epoch with its K previous and K next.

Human scorers, the AASM rules (N2 continuation, REM onset) and every strong signal stager look at
neighbouring epochs. Here the 2K+1 rendered epochs go side by side into ONE wider image, a strip
``size`` px high and ``(2K + 1) * size`` px wide in time order, rather than 2K+1 separate images in one
prompt. Why: every model family takes one image per prompt, so the collator, the label scoring and
the answer tokens stay exactly as they are; only the image and one sentence of the prompt change. With
LLaVA-NeXT and ``pin_grid`` the anyres grid is pinned to one row of 2K+1 tiles
(:func:`pin_strip_grid`), so each epoch is one vision tile at its full resolution (the 7B processor's
own default grid already holds the 1 x 3 strip of K=1 at 336 x 1008). Separate images would need a
per-family multi-image prompt and collator; they were not built.

The marking: the scored (middle) epoch is drawn exactly as without context, on its own background;
the context epochs are tinted towards grey (:data:`CONTEXT_ALPHA`), and a missing neighbour -- before
the start or after the end of the night, or an epoch the dataset left out (unscored) -- is a blank
panel filled with :data:`PAD_RGB`. With K=0 the image is the epoch's own image, unchanged.

Rendered datasets keep each epoch once: :class:`ContextDataset` composes the strips at load time from
the split's own rows through :func:`psgvlm.image.dataset.neighbour_index`. A trained run records K in
its ``meta.json`` (``context``); ``psgvlm predict``, the evals, ``psgvlm stage`` (from the night's
rendered epochs, :func:`night_strips`) and the app read it from there (:func:`run_context`).
"""

from __future__ import annotations

import numpy as np

MAX_CONTEXT = 8  # epochs on each side (17 tiles of 576 tokens = 10k image tokens with the 7B)
CONTEXT_RGB = np.array([128, 128, 128], dtype=np.float32)  # the tint of the context epochs
CONTEXT_ALPHA = 0.25  # share of CONTEXT_RGB in a context epoch's pixels (the trace stays readable)
PAD_RGB = (128, 128, 128)  # a blank panel: no epoch there (edge of the night, an epoch left out)


def check_context(k) -> int:
    """``k`` validated: an integer in [0, MAX_CONTEXT] (ValueError naming the value otherwise)."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 0 <= int(k) <= MAX_CONTEXT:
        raise ValueError(f"context={k!r}: must be an integer number of epochs on each side in [0, {MAX_CONTEXT}]")
    return int(k)


def run_context(run_meta: dict) -> int:
    """The K a run was trained with (its ``meta.json`` ``context``; 0 for runs without one)."""
    return check_context(run_meta.get("context", 0) or 0)


def compose_strip(images, k: int) -> np.ndarray:
    """The 2K+1 epoch images side by side, context epochs tinted, missing ones blank.

    Parameters
    ----------
    images : sequence of 2K+1 (PIL.Image, np.ndarray (size, size, 3) uint8, or None)
        The epochs ``e - K .. e + K`` in time order; None where there is no epoch. The middle one is
        the scored epoch and must be given.
    k : int
        Epochs on each side.

    Returns
    -------
    np.ndarray, shape (size, (2K + 1) * size, 3), uint8
        A new array; its middle ``size`` columns equal the scored epoch's image.
    """
    k = check_context(k)
    if len(images) != 2 * k + 1:
        raise ValueError(f"{len(images)} images for context {k}; expected {2 * k + 1}")
    if images[k] is None:
        raise ValueError("the scored (middle) epoch's image is missing")
    arrays = [None if im is None else np.asarray(im.convert("RGB") if hasattr(im, "convert") else im)
              for im in images]
    centre = arrays[k]
    if centre.ndim != 3 or centre.shape[2] != 3 or centre.dtype != np.uint8:
        raise ValueError(f"epoch images must be (H, W, 3) uint8; got {centre.shape} {centre.dtype}")
    if k == 0:
        return centre.copy()
    h, w = centre.shape[:2]
    out = np.empty((h, w * len(arrays), 3), dtype=np.uint8)
    for j, arr in enumerate(arrays):
        cols = slice(j * w, (j + 1) * w)
        if arr is None:
            out[:, cols] = PAD_RGB
        elif arr.shape != centre.shape:
            raise ValueError(f"epoch image {j - k:+d} is {arr.shape}; the scored epoch's is {centre.shape}")
        elif j == k:
            out[:, cols] = arr
        else:
            out[:, cols] = np.rint(arr * (1 - CONTEXT_ALPHA) + CONTEXT_RGB * CONTEXT_ALPHA).astype(np.uint8)
    return out


def scored_columns(width: int, k: int) -> slice:
    """Pixel columns of the scored epoch in a strip ``width`` px wide."""
    n = 2 * check_context(k) + 1
    if width % n:
        raise ValueError(f"a strip {width} px wide is not {n} equal epochs")
    return slice(k * width // n, (k + 1) * width // n)


def context_template(template: str, k: int, placeholder: str = "<image>") -> str:
    """``template`` with one sentence after the image placeholder saying what the strip shows (K=0: as is)."""
    k = check_context(k)
    if k == 0:
        return template
    if template.count(placeholder) != 1:
        raise ValueError(f"prompt must contain the image placeholder {placeholder!r} exactly once: {template!r}")
    sentence = (f"The image is a strip of {2 * k + 1} consecutive 30-second epochs in time order: the middle one, "
                f"on white, is the epoch to score; the grey-tinted epochs beside it are context, and a solid grey "
                f"panel means no epoch there; what follows is about the middle epoch.")
    head, tail = template.split(placeholder)
    sep = "\n" if tail.startswith("\n") else " "
    return f"{head}{placeholder}{sep}{sentence} {tail.lstrip()}" if tail.strip() else f"{head}{placeholder}{sep}{sentence}"


# --------------------------------------------------------------------------- datasets


class ContextDataset:
    """A map-style view of a rendered split whose images are context strips, built at load time.

    Behaves like the ``datasets.Dataset`` it wraps where the recipe, ``psgvlm predict`` and the evals
    use one: ``len``, ``view[i]`` (a row dict), ``view[i:j]`` and ``view["column"]`` (the ``image``
    column composed), ``select``, ``select_columns`` (not the image) and ``column_names``. The
    neighbours come from the whole split, so a subset (``select``) still sees every neighbour.

    Parameters
    ----------
    ds : datasets.Dataset
        A rendered split (:func:`psgvlm.image.dataset.load_dataset`); with ``k=0`` any sequence of rows.
    k : int
        Epochs on each side; 0 gives each row's own image (and the band dropout of ``dropout``).
    dropout : psgvlm.vlm.data.BandDropout, optional
        Training band dropout: ONE draw per row (from ``np.random.default_rng([*seed, i])``, ``i`` the row
        of this view, as :class:`psgvlm.vlm.data.BandDropoutDataset`) flattens the same bands in every
        epoch of the strip, as a channel missing from a recording is missing all night.
    seed : tuple of int
        The dropout's seed (e.g. the run's seed and the pass over the data).
    transform : callable, optional
        ``transform(np.ndarray (H, W, 3) uint8) -> np.ndarray``, applied to each epoch image before the
        strip is composed (the evals' band blanking).
    """

    def __init__(self, ds, k: int, *, dropout=None, seed: tuple[int, ...] = (), transform=None,
                 _rows=None, _neighbours=None):
        from psgvlm.image.dataset import neighbour_index

        self.ds, self.k = ds, check_context(k)
        self.dropout, self.seed, self.transform = dropout, tuple(int(v) for v in seed), transform
        if _neighbours is None:
            _neighbours = neighbour_index(ds, self.k) if self.k else np.arange(len(ds))[:, None]
        self.neighbours = _neighbours
        self.rows = np.arange(len(ds)) if _rows is None else np.asarray(_rows, dtype=np.int64)

    def _view(self, rows=None, **changes) -> ContextDataset:
        kwargs = {"dropout": self.dropout, "seed": self.seed, "transform": self.transform, **changes}
        return ContextDataset(self.ds, self.k, _rows=self.rows if rows is None else rows,
                              _neighbours=self.neighbours, **kwargs)

    def with_dropout(self, dropout, seed: tuple[int, ...]) -> ContextDataset:
        """The same rows with training band dropout (see the class docstring)."""
        return self._view(dropout=dropout, seed=seed)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def column_names(self) -> list[str]:
        return list(self.ds.column_names)

    def select(self, indices) -> ContextDataset:
        """The rows ``indices`` of this view (their neighbours still come from the whole split)."""
        return self._view(self.rows[np.asarray(list(indices), dtype=np.int64)])

    def select_columns(self, columns):
        """The underlying split's ``columns`` for this view's rows (not ``image``: it is composed)."""
        if "image" in columns:
            raise ValueError("select_columns of a context view cannot give the image column; index the view")
        return self.ds.select_columns(list(columns)).select(self.rows)

    def image(self, i: int, own=None):
        """The context strip of row ``i`` of this view (PIL image); ``own``: the row's image if already decoded."""
        from PIL import Image

        row = int(self.rows[int(i)])
        images = [None if j < 0 else own if j == row and own is not None else self.ds[int(j)]["image"]
                  for j in self.neighbours[row]]
        if self.transform is not None:
            images = [None if im is None else self.transform(np.asarray(im.convert("RGB"))) for im in images]
        if self.dropout is not None:
            flat = self.dropout.draw(np.random.default_rng([*self.seed, int(i)]))
            if flat.any():
                images = [None if im is None else self.dropout.apply(_pil(im), flat) for im in images]
        if self.k == 0 and self.transform is None:
            return images[0]  # the row's own image object, untouched
        return Image.fromarray(compose_strip(images, self.k))

    def __getitem__(self, key):
        if isinstance(key, str):
            if key == "image":
                return [self.image(i) for i in range(len(self))]
            return self.ds.select(self.rows)[key]
        if isinstance(key, slice):
            idx = range(*key.indices(len(self)))
            others = [c for c in self.ds.column_names if c != "image"]
            cols = self.ds.select_columns(others).select(self.rows[list(idx)])[:] if others else {}
            return {**cols, "image": [self.image(i) for i in idx]}
        i = int(key)
        if not -len(self) <= i < len(self):
            raise IndexError(f"row {i} out of range for a view of {len(self)} rows")
        i %= len(self)
        row = dict(self.ds[int(self.rows[i])])
        row["image"] = self.image(i, own=row["image"])
        return row


def _pil(image):
    from PIL import Image

    return image if hasattr(image, "convert") else Image.fromarray(image)


def with_context(ds, k: int, *, transform=None):
    """``ds`` itself for K=0 without a transform, else a :class:`ContextDataset` of it."""
    return ds if check_context(k) == 0 and transform is None else ContextDataset(ds, k, transform=transform)


# --------------------------------------------------------------------------- a night (psgvlm stage)


def night_strips(indices, n_epochs: int, k: int, render, cache: dict | None = None) -> list:
    """Context strips (PIL images) of epochs ``indices`` of a night of ``n_epochs``, each epoch rendered once.

    Parameters
    ----------
    indices : sequence of int
        The epochs to score (ascending, as ``psgvlm stage`` walks the night).
    n_epochs : int
        Epochs of the night; neighbours outside 0..n_epochs-1 are blank panels.
    k : int
        Epochs on each side.
    render : callable
        ``render(epoch) -> np.ndarray (size, size, 3) uint8``.
    cache : dict, optional
        Rendered epochs kept between calls (pass the same dict for consecutive batches); entries before
        the first epoch a later batch can need are dropped.
    """
    from PIL import Image

    k = check_context(k)
    cache = {} if cache is None else cache
    out = []
    for e in indices:
        e = int(e)
        wanted = [j if 0 <= j < n_epochs else None for j in range(e - k, e + k + 1)]
        for j in wanted:
            if j is not None and j not in cache:
                cache[j] = render(j)
        out.append(Image.fromarray(compose_strip([None if j is None else cache[j] for j in wanted], k)))
    if len(indices):
        for j in [j for j in cache if j < int(indices[-1]) - k]:
            del cache[j]
    return out


# --------------------------------------------------------------------------- the model's image grid


def pin_strip_grid(model, processor, k: int) -> list | None:
    """Pin a tiling processor to one row of 2K+1 tiles: one vision tile per epoch at its full resolution.

    The strip's counterpart of :func:`psgvlm.vlm.model.pin_processor_grid` (one tile per epoch image).
    LLaVA-NeXT: the anyres grid (processor and model config) becomes ``[[tile, (2K+1) tile]]``, plus the
    base image every anyres model adds. Idefics3/SmolVLM: the longest edge becomes 2K+1 tiles, which
    the processor splits into 1 x (2K+1) tiles plus its global view. Qwen2-VL keeps the image's own size
    (its tokens grow with the width) and PaliGemma resizes to its one square size: nothing is changed
    for them and None is returned.
    """
    from psgvlm.vlm.model import tile_size

    k = check_context(k)
    ip = getattr(processor, "image_processor", None)
    if getattr(ip, "image_grid_pinpoints", None) is not None:
        tile = tile_size(processor)
        grid = [[tile, tile * (2 * k + 1)]]  # (height, width)
        ip.image_grid_pinpoints = grid
        model.config.image_grid_pinpoints = grid
        return grid
    if getattr(ip, "max_image_size", None) and getattr(ip, "do_image_splitting", False):
        tile = int(ip.max_image_size["longest_edge"])
        ip.size = {"longest_edge": tile * (2 * k + 1)}
        return [[tile, tile * (2 * k + 1)]]
    return None


def image_tokens(processor, width: int, height: int, template: str = "<image>") -> int:
    """Image tokens the processor expands one ``width`` x ``height`` image into (a blank one is drawn)."""
    from PIL import Image

    from psgvlm.vlm.data import prompt_text

    image = Image.new("RGB", (int(width), int(height)), "white")
    batch = processor(images=[image], text=[prompt_text(processor, template)], return_tensors="pt")
    token_id = processor.tokenizer.convert_tokens_to_ids(getattr(processor, "image_token", "<image>"))
    return int((batch["input_ids"] == token_id).sum())
