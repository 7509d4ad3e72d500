"""What every suite shares: reading run dirs, matching predictions with datasets, writing results.

A results dir holds ``results.json`` (config, provenance, numbers), ``samples.jsonl`` (one line per
scored item) and PNG plots. Suites never import a recipe or the builder: they read run dirs and
dataset dirs (loaded with :mod:`psgvlm.image.dataset`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

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


def load_predictor_for(run: str | Path):
    """``psgvlm.vlm.predict.load_predictor(run)``, or a ValueError naming the run's kind when it has none.

    The run kinds with an image predictor are the VLM's and the image classifiers' (``VLM_RUN``,
    ``CLASSIFIER_RUN`` of :mod:`psgvlm.vlm.predict`); a kind of the signal-model registry
    ``psgvlm.baselines.BASELINES`` is named as such in the error.
    """
    from psgvlm.vlm.predict import CLASSIFIER_RUN, VLM_RUN, load_predictor

    run = Path(run)
    kind = read_json(run / "meta.json").get("kind") if (run / "meta.json").is_file() else None
    if kind is not None and kind not in (VLM_RUN, CLASSIFIER_RUN):
        from psgvlm.baselines import BASELINES
        from psgvlm.vlm.classifiers import CLASSIFIERS

        what = "signal model" if kind in BASELINES else "run"
        raise ValueError(
            f"run {run} is a {kind!r} {what}: this suite scores images and needs an image model (a {VLM_RUN!r} "
            f"or {CLASSIFIER_RUN!r} run: the VLM or one of {sorted(CLASSIFIERS)}). The signal baselines "
            f"{sorted(BASELINES)} run the metrics suite and the robustness suite with --predict-cmd or "
            "--setting train-corrupted (the recipe applies the same ChannelFailure to the signals)")
    return load_predictor(run)
