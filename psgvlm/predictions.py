"""The run-dir contract every model shares: ``predictions.jsonl`` + ``metrics.json``.

One JSON line per epoch::

    {"dataset": "isruc", "subject": "1", "recording": "1", "epoch": 0, "start_s": 0.0,
     "label": 2, "pred": 2, "probs": [0.01, 0.05, 0.9, 0.02, 0.02]}

``label`` is the expert AASM code (-1 unscored, or null when there is no expert label), ``pred`` the
argmax of ``probs`` (a hypnodensity row over W, N1, N2, N3, REM summing to 1).

An epoch the model gave no answer for (free generation whose text names no stage) has ``pred`` -1
(:data:`NO_PREDICTION`) and ``probs`` null: it is counted (``n_no_prediction``,
``no_prediction_rate`` in metrics.json) and left out of every metric, never scored as a stage.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from psgvlm.metrics import stage_metrics
from psgvlm.provenance import write_json_atomic, write_text_atomic
from psgvlm.stages import N_STAGES, UNSCORED

KEYS = ("dataset", "subject", "recording", "epoch", "start_s", "label", "pred", "probs")
NO_PREDICTION = -1  # ``pred`` of an epoch without an answer (an unparseable generation); ``probs`` is null


def _pred_and_probs(row: np.ndarray) -> tuple[int, list | None]:
    """(argmax, rounded row), or (NO_PREDICTION, None) for a row that is not all finite (no answer)."""
    if not np.isfinite(row).all():
        return NO_PREDICTION, None
    return int(np.argmax(row)), [round(float(p), 6) for p in row]


def make_rows(*, dataset, subjects, recordings, epochs, starts_s, labels, probs) -> list[dict]:
    """Rows in the predictions schema from parallel sequences; ``probs`` is (n_epochs, 5).

    A ``probs`` row holding NaN is an epoch without an answer: its row gets ``pred``
    :data:`NO_PREDICTION` and ``probs`` None (never the argmax of a placeholder row).
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != N_STAGES:
        raise ValueError(f"probs must have shape (n_epochs, {N_STAGES}), got {probs.shape}")
    n = len(probs)
    for name, seq in [("subjects", subjects), ("recordings", recordings), ("epochs", epochs),
                      ("starts_s", starts_s), ("labels", labels)]:
        if len(seq) != n:
            raise ValueError(f"{name} has {len(seq)} entries but probs has {n} rows")
    datasets = [dataset] * n if isinstance(dataset, str) else list(dataset)
    answers = [_pred_and_probs(row) for row in probs]
    return [
        {"dataset": datasets[i], "subject": str(subjects[i]), "recording": str(recordings[i]),
         "epoch": int(epochs[i]), "start_s": float(starts_s[i]),
         "label": None if labels[i] is None else int(labels[i]),
         "pred": answers[i][0], "probs": answers[i][1]}
        for i in range(n)
    ]


def write_predictions(out_dir, rows: list[dict], extra_meta: dict | None = None) -> dict:
    """Write ``predictions.jsonl`` and ``metrics.json`` (pooled + per subject) atomically.

    Returns the metrics dict (empty ``pooled`` when no row has an expert label).
    """
    out_dir = Path(out_dir)
    write_text_atomic(out_dir / "predictions.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    metrics = metrics_from_rows(rows)
    if extra_meta:
        metrics["meta"] = extra_meta
    write_json_atomic(out_dir / "metrics.json", metrics)
    return metrics


def answered(rows: list[dict]) -> list[dict]:
    """The rows with a prediction (``pred`` is not :data:`NO_PREDICTION`)."""
    return [r for r in rows if r["pred"] != NO_PREDICTION]


def metrics_from_rows(rows: list[dict]) -> dict:
    """Pooled and per-subject metrics over the scored epochs that have a prediction.

    ``n_unscored`` counts epochs without an expert stage; ``n_no_prediction`` the scored epochs
    without an answer (:data:`NO_PREDICTION`, left out of the metrics) and ``no_prediction_rate``
    their share of the scored epochs.
    """
    labelled = [r for r in rows if r["label"] is not None]
    out = {"n_rows": len(rows), "n_unscored": sum(r["label"] == UNSCORED for r in labelled)}
    scored = [r for r in labelled if r["label"] != UNSCORED]
    out["n_no_prediction"] = len(scored) - len(answered(scored))
    out["no_prediction_rate"] = out["n_no_prediction"] / len(scored) if scored else 0.0
    scored = answered(scored)
    if not scored:
        out["pooled"] = {}
        out["per_subject"] = {}
        return out
    out["pooled"] = stage_metrics([r["label"] for r in scored], [r["pred"] for r in scored])
    per_subject = {}
    for s in sorted({r["subject"] for r in scored}):
        sub = [r for r in scored if r["subject"] == s]
        per_subject[s] = stage_metrics([r["label"] for r in sub], [r["pred"] for r in sub])
    out["per_subject"] = per_subject
    return out


def read_predictions(path) -> list[dict]:
    """Rows of a ``predictions.jsonl`` (or of the one inside a run dir), validated."""
    path = Path(path)
    if path.is_dir():
        path = path / "predictions.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"no predictions file at {path}")
    rows = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            missing = [k for k in KEYS if k not in row]
            if missing:
                raise ValueError(f"{path}:{i}: missing keys {missing}")
            if row["probs"] is None and row["pred"] == NO_PREDICTION:
                rows.append(row)  # an epoch without an answer (see the module docstring)
                continue
            if row["probs"] is None or len(row["probs"]) != N_STAGES:
                raise ValueError(f"{path}:{i}: probs has {len(row['probs'] or [])} values, expected {N_STAGES} "
                                 f"(null only with pred {NO_PREDICTION}, an epoch without an answer)")
            rows.append(row)
    return rows
