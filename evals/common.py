"""What every suite shares: reading run dirs and image datasets, matching them, writing results.

A results dir holds ``results.json`` (config, provenance, numbers), ``samples.jsonl`` (one line per
scored item) and PNG plots. Suites never import a recipe: they read run dirs and dataset dirs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from psgvlm.predictions import read_predictions
from psgvlm.provenance import provenance, read_json, write_json_atomic, write_text_atomic
from psgvlm.stages import EPOCH_S


@dataclass
class Run:
    """A run dir (or a bare predictions.jsonl): its rows and what its meta.json says about it."""

    path: Path
    rows: list[dict]
    meta: dict = field(default_factory=dict)
    name: str = ""  # model name shown in tables
    seed: int | None = None

    @property
    def kind(self) -> str:
        return str(self.meta.get("kind", "unknown"))

    @property
    def datasets(self) -> list[str]:
        return sorted({str(r["dataset"]) for r in self.rows})


def load_run(path, name: str | None = None) -> Run:
    """Read ``predictions.jsonl`` (+ ``meta.json`` when present) of a run dir or a predictions file.

    The model name is ``name``, else ``meta["config"]["name"]``/``["model"]``, else ``meta["kind"]``,
    else the folder name; the seed is ``config["seed"]`` (else ``split_seed``) when present.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"run {path} does not exist")
    run_dir = path if path.is_dir() else path.parent
    rows = read_predictions(path)
    meta = read_json(run_dir / "meta.json") if (run_dir / "meta.json").exists() else {}
    config = meta.get("config") or {}
    if name is None:
        name = config.get("name") or config.get("model") or config.get("model_name")
        name = str(name) if name else str(meta.get("kind") or run_dir.name)
    seed = config.get("seed", config.get("split_seed"))
    return Run(path=run_dir, rows=rows, meta=meta, name=name, seed=None if seed is None else int(seed))


def load_image_dataset(path, split: str | None = None):
    """An image dataset written by ``psgvlm render``: (split dataset or DatasetDict, meta dict).

    ``split`` None returns the whole DatasetDict; otherwise that split, or a ValueError naming the
    splits there are.
    """
    import datasets

    path = Path(path)
    if not (path / "meta.json").exists():
        raise FileNotFoundError(f"{path} is not a psgvlm image dataset (no meta.json); build one with psgvlm render")
    meta = read_json(path / "meta.json")
    dd = datasets.load_from_disk(str(path))
    if split is None:
        return dd, meta
    if split not in dd:
        raise ValueError(f"split {split!r} not in dataset {path}; available: {list(dd)}")
    return dd[split], meta


def row_key(row: dict) -> tuple[str, str, int]:
    return (str(row["subject"]), str(row["recording"]), int(row["epoch"]))


def check_match(rows: list[dict], keys: list[tuple[str, str, int]], *, what: str = "dataset") -> None:
    """Refuse predictions that do not cover exactly the epochs of ``keys`` (subject, recording, epoch).

    The error names the subjects only on one side and a few epochs missing on each side.
    """
    pred_keys = [row_key(r) for r in rows]
    dup = len(pred_keys) - len(set(pred_keys))
    if dup:
        raise ValueError(f"predictions hold {dup} duplicate (subject, recording, epoch) rows")
    a, b = set(pred_keys), set(keys)
    if a == b:
        return
    sa, sb = {k[0] for k in a}, {k[0] for k in b}
    only_pred, only_data = sorted(a - b), sorted(b - a)
    raise ValueError(
        f"predictions and {what} do not match: subjects only in predictions {sorted(sa - sb)}, "
        f"only in {what} {sorted(sb - sa)}; {len(only_pred)} epochs only in predictions "
        f"(e.g. {only_pred[:3]}), {len(only_data)} only in {what} (e.g. {only_data[:3]})"
    )


def dataset_keys(ds) -> list[tuple[str, str, int]]:
    cols = ds.select_columns(["subject", "recording", "epoch"]).to_dict()
    return list(zip(map(str, cols["subject"]), map(str, cols["recording"]), map(int, cols["epoch"])))


def band_layout(meta: dict) -> list[dict]:
    """Pixel rows of each channel band of a dataset's images, from its ``meta.json``.

    The renderer draws each channel in its own horizontal band, top to bottom in ``meta["channels"]``
    order. With the renderer's settings in ``meta["settings"]["render"]`` (what ``psgvlm render``
    writes) the bands come from the renderer's own geometry (band gaps, label margin); otherwise
    bands are equal slices of ``size`` (``settings["band_edges_px"]`` overrides).

    Returns
    -------
    list of {"channel", "modality", "top", "bottom", "left", "right"}: band rows (pixels, bottom
    exclusive, fractional edges rounded outwards) and the x of the epoch's first and last sample.
    """
    channels = list(meta.get("channels") or [])
    if not channels:
        raise ValueError("dataset meta has no 'channels' list; cannot map image rows to channels")
    settings = meta.get("settings") or {}
    modalities = meta.get("modalities") or {}
    render = settings.get("render")
    if render is not None:
        from psgvlm.image.renderer import RenderSettings
        from psgvlm.image.renderer import band_layout as _render_bands

        lay = _render_bands(len(channels), RenderSettings.from_dict(render))
        tops = [float(t) for t in lay.band_tops]
        edges = [(t, t + lay.band_h) for t in tops]
        left, right = float(lay.left), float(lay.right)
    else:
        size = int(settings.get("size", meta.get("size", 336)))
        e = settings.get("band_edges_px")
        if e is None:
            e = np.linspace(0, size, len(channels) + 1).tolist()
        if len(e) != len(channels) + 1:
            raise ValueError(f"band_edges_px has {len(e)} edges for {len(channels)} channels")
        edges = list(zip(e[:-1], e[1:]))
        left, right = 0.0, float(size)
    return [{"channel": ch, "modality": modalities.get(ch, "?"), "top": int(np.floor(a + 1e-6)),
             "bottom": int(np.ceil(b - 1e-6)), "left": left, "right": right}
            for ch, (a, b) in zip(channels, edges)]


def image_size(meta: dict) -> int:
    settings = meta.get("settings") or {}
    return int((settings.get("render") or {}).get("size") or settings.get("size") or meta.get("size") or 336)


def epoch_seconds(meta: dict) -> float:
    return float(meta.get("epoch_s") or (meta.get("settings") or {}).get("epoch_s") or EPOCH_S)


def write_results(out_dir, suite: str, config: dict, results: dict, samples: list[dict] | None = None) -> Path:
    """Write ``results.json`` (suite, config, provenance, results) and ``samples.jsonl`` atomically."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / "results.json",
                      {"suite": suite, "config": config, "provenance": provenance(), **results})
    if samples is not None:
        write_text_atomic(out_dir / "samples.jsonl", "".join(json.dumps(s) + "\n" for s in samples))
    return out_dir / "results.json"


# Run kinds that score signals, not images: no image predictor exists for them.
SIGNAL_KINDS = ("sleep2vec", "sdreamer", "nap", "soft_vote", "yasa")


def load_predictor_for(run: str | Path):
    """``psgvlm.vlm.predict.load_predictor(run)``, or a ValueError naming the run's kind when it has none."""
    run = Path(run)
    meta = read_json(run / "meta.json") if (run / "meta.json").exists() else {}
    if meta.get("kind") in SIGNAL_KINDS:
        raise ValueError(
            f"run {run} is a {meta['kind']!r} signal model: this suite scores images and needs an image model "
            "(VLM or image classifier). Signal baselines run the metrics suite and the train-corrupted "
            "robustness setting (the recipe applies the same ChannelFailure to the signals)")
    try:
        from psgvlm.vlm.predict import load_predictor
    except ImportError as err:  # the VLM engineer's module is not installed in this tree
        raise RuntimeError(f"psgvlm.vlm.predict is not available ({err}); image suites need it") from err
    try:
        return load_predictor(run)
    except (ValueError, NotImplementedError, KeyError) as err:
        raise ValueError(
            f"run {run} (kind {meta.get('kind', 'unknown')!r}) cannot be scored on images: {err}. "
            "This suite needs an image model (VLM or image classifier); signal baselines run only "
            "the metrics suite and the train-and-test-corrupted robustness setting"
        ) from err
