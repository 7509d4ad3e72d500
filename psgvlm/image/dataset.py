"""A rendered image dataset on disk: its columns, its ``meta.json``, and loading it back.

``psgvlm render`` writes a folder holding ``datasets.DatasetDict.save_to_disk`` output (splits by
subject, or ``all``) and ``meta.json`` (kind, version, settings with the renderer's settings under
``settings.render``, channel order, modalities, splits, counts, provenance). This module is the one
place that knows that layout: the builder writes it with :func:`features` and :data:`META_KIND`,
recipes, evals, the app and ``psgvlm predict`` read it with :func:`load_dataset`, and the image
geometry (side, channel bands) comes from the meta's render settings only.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from psgvlm.stages import STAGES

META_KIND = "psgvlm-image-dataset"
META_VERSION = 1
META_FILE = "meta.json"
DATASET_FILE = "dataset_dict.json"  # written by DatasetDict.save_to_disk
REQUIRED_COLUMNS = ("image", "label", "subject", "epoch")


class NotADatasetError(FileNotFoundError, ValueError):
    """``path`` is not a finished ``psgvlm render`` folder (a missing file, or not a folder at all)."""


def features():
    """The dataset's column types (``datasets`` is imported here, not at module import time)."""
    import datasets

    return datasets.Features({
        "image": datasets.Image(),
        "label": datasets.ClassLabel(names=list(STAGES)),
        "stage": datasets.Value("string"),
        "subject": datasets.Value("string"),
        "recording": datasets.Value("string"),
        "epoch": datasets.Value("int32"),
        "start_s": datasets.Value("float64"),
        "dataset": datasets.Value("string"),
        "channels": datasets.Value("string"),
    })


def is_dataset_dir(path) -> bool:
    """Whether ``path`` holds a finished dataset (both ``meta.json`` and ``dataset_dict.json``)."""
    path = Path(path)
    return (path / META_FILE).is_file() and (path / DATASET_FILE).is_file()


def read_dataset_meta(path) -> dict:
    """The validated ``meta.json`` of the dataset folder ``path``.

    Parameters
    ----------
    path : path
        A ``psgvlm render`` output folder.

    Returns
    -------
    dict
        The meta as written by the builder. Its kind and version are checked, and so is the image
        side (``settings.render.size``), so later :func:`image_size` calls cannot fail.

    Raises
    ------
    NotADatasetError
        ``path`` does not exist, is a file, or lacks ``meta.json`` / ``dataset_dict.json`` (a
        ``FileNotFoundError`` and a ``ValueError``; the message names the path and the missing files).
    ValueError
        ``meta.json`` is not valid JSON, has another kind or version, or lacks the render settings.
    """
    path = Path(path)
    if not path.exists():
        raise NotADatasetError(f"dataset dir {str(path)!r} does not exist; build one with `psgvlm render`")
    if not path.is_dir():
        raise NotADatasetError(f"dataset path {str(path)!r} is a file, expected a `psgvlm render` directory")
    missing = [n for n in (META_FILE, DATASET_FILE) if not (path / n).is_file()]
    if missing:
        raise NotADatasetError(f"{path} is not a psgvlm dataset: missing {missing} (expected the output of "
                               f"`psgvlm render`: DatasetDict.save_to_disk + {META_FILE})")
    file = path / META_FILE
    try:
        meta = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{file} is not valid JSON: {err}") from None
    if not isinstance(meta, dict) or meta.get("kind") != META_KIND:
        kind = meta.get("kind") if isinstance(meta, dict) else type(meta).__name__
        raise ValueError(f"{file} has kind {kind!r}, expected {META_KIND!r}")
    if meta.get("version") != META_VERSION:
        raise ValueError(f"{file} has version {meta.get('version')!r}; this psgvlm reads version {META_VERSION} "
                         f"(re-render the dataset with `psgvlm render`)")
    image_size(meta, where=file)
    return meta


def load_dataset(path, split: str | None = None):
    """A rendered dataset and its meta.

    Parameters
    ----------
    path : path
        A ``psgvlm render`` output folder.
    split : str, optional
        One split's name (``train``, ``validation``, ``test`` or ``all``); default: every split.

    Returns
    -------
    (datasets.DatasetDict, dict), or (datasets.Dataset, dict) when ``split`` is given
        The images with their columns (:func:`features`), and the meta of :func:`read_dataset_meta`.
    """
    import datasets

    meta = read_dataset_meta(path)
    dsd = datasets.load_from_disk(str(path))
    for name, ds in dsd.items():
        absent = [c for c in REQUIRED_COLUMNS if c not in ds.column_names]
        if absent:
            raise ValueError(f"{path} split {name!r} lacks columns {absent}; has {ds.column_names}")
    if split is None:
        return dsd, meta
    if split not in dsd:
        raise ValueError(f"split {split!r} not in {path}; available: {sorted(dsd)}")
    return dsd[split], meta


def image_size(meta: dict, *, where=None) -> int:
    """Side of the dataset's square images in pixels, from ``meta["settings"]["render"]["size"]``.

    ``where`` (the meta's file) goes into the error raised when the meta lacks it.
    """
    size = ((meta.get("settings") or {}).get("render") or {}).get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        raise ValueError(f"{where or 'dataset meta'}: settings.render.size is {size!r}, expected the image side in "
                         f"pixels (written by `psgvlm render`)")
    return size


def band_layout(meta: dict) -> list[dict]:
    """Pixel rows of each channel band of a dataset's images, from its meta.

    The renderer draws each channel in its own horizontal band, top to bottom in ``meta["channels"]``
    order; the bands come from the renderer's own geometry (band gaps, label margin) under the
    settings in ``meta["settings"]["render"]``.

    Returns
    -------
    list of {"channel", "modality", "top", "bottom", "left", "right"}
        Band rows (pixels, bottom exclusive, fractional edges rounded outwards) and the x of the
        epoch's first and last sample.
    """
    from psgvlm.image.renderer import RenderSettings
    from psgvlm.image.renderer import band_layout as render_bands

    channels = list(meta.get("channels") or [])
    if not channels:
        raise ValueError("dataset meta has no 'channels' list; cannot map image rows to channels")
    render = (meta.get("settings") or {}).get("render")
    if render is None:
        raise ValueError("dataset meta has no settings.render; cannot map image rows to channels "
                         "(written by `psgvlm render`)")
    modalities = meta.get("modalities") or {}
    lay = render_bands(len(channels), RenderSettings.from_dict(render))
    tops = [float(t) for t in lay.band_tops]
    return [{"channel": ch, "modality": modalities.get(ch, "?"), "top": int(np.floor(top + 1e-6)),
             "bottom": int(np.ceil(top + lay.band_h - 1e-6)), "left": float(lay.left), "right": float(lay.right)}
            for ch, top in zip(channels, tops)]


def neighbour_index(ds, k: int) -> np.ndarray:
    """Row numbers of each row's ``k`` previous and ``k`` next epochs of the same recording.

    The dataset keeps each epoch once; a model that reads neighbouring epochs (``--context K``,
    :mod:`psgvlm.vlm.context`) finds them through this index at load time instead of storing them again.

    Parameters
    ----------
    ds : datasets.Dataset or dict of columns
        A rendered split (or its columns): ``dataset``, ``subject``, ``recording`` and ``epoch``
        (the epoch's number on the recording's 30-s grid). Only these columns are read, never the images.
    k : int
        Epochs on each side, >= 0.

    Returns
    -------
    np.ndarray, shape (n_rows, 2 * k + 1), int64
        Column ``k + d`` holds the row of epoch ``epoch + d`` of the same recording, or -1 where the
        split has no such epoch (before the start or after the end of the night, or an epoch the
        renderer left out); column ``k`` is the row itself.
    """
    if not isinstance(k, int) or isinstance(k, bool) or k < 0:
        raise ValueError(f"context k={k!r}: must be an integer >= 0")
    names = ("dataset", "subject", "recording", "epoch")
    if isinstance(ds, dict):
        cols = ds
    else:
        absent = [c for c in names if c not in ds.column_names]
        if absent:
            raise ValueError(f"neighbour index needs columns {list(names)}; the split lacks {absent}")
        cols = ds.select_columns(list(names)).to_dict()
    keys = list(zip(cols["dataset"], cols["subject"], cols["recording"]))
    epochs = [int(e) for e in cols["epoch"]]
    row_of = {}
    for row, (key, e) in enumerate(zip(keys, epochs)):
        if (key, e) in row_of:
            raise ValueError(f"epoch {e} of recording {key[2]!r} (subject {key[1]!r}) is in the split twice "
                             f"(rows {row_of[key, e]} and {row})")
        row_of[key, e] = row
    out = np.full((len(epochs), 2 * k + 1), -1, dtype=np.int64)
    for row, (key, e) in enumerate(zip(keys, epochs)):
        for d in range(-k, k + 1):
            out[row, k + d] = row_of.get((key, e + d), -1)
    return out
