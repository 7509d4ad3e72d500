"""The files of a staged night: hypnogram TSV/CSV, EDF+ annotations, hypnodensity, plot, summary, metrics.

:func:`write_outputs` writes every file of a :class:`psgvlm.night.stage.StageResult` into one
folder (each file atomically); the layouts are described in :mod:`psgvlm.night.stage`'s docstring.
:func:`summarize` is ``summary.json`` without provenance: sleep statistics of the prediction (and of
the expert hypnogram), agreement with the expert (:func:`psgvlm.metrics.stage_metrics`), channels,
model, recording facts and timings. :func:`statistics_table` is the same statistics as rows for a
table (the app's).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from psgvlm.io.edf import write_annotations_edf
from psgvlm.metrics import stage_metrics
from psgvlm.night.sleepstats import format_statistics, sleep_statistics
from psgvlm.plots import plot_night
from psgvlm.provenance import provenance, write_json_atomic, write_text_atomic
from psgvlm.stages import STAGES, UNSCORED, stage_counts

if TYPE_CHECKING:
    from psgvlm.night.stage import StageResult

# EDF+ annotation texts, the Sleep-EDF / MNE convention EDFbrowser's hypnogram view understands.
EDF_STAGE_TEXT = {"W": "Sleep stage W", "N1": "Sleep stage N1", "N2": "Sleep stage N2",
                  "N3": "Sleep stage N3", "REM": "Sleep stage R"}
OUTPUT_FILES = ("hypnogram.tsv", "hypnogram.csv", "hypnodensity.npy", "hypnogram_annotations.edf",
                "hypnogram.png", "summary.json")


def summarize(result: StageResult) -> dict:
    """Statistics, agreement and facts as written to ``summary.json``."""
    pred = result.stages
    out = {
        "notice": result.model["notice"],
        "model": result.model,
        "n_epochs": result.n_epochs,
        "epoch_s": result.epoch_s,
        "stage_counts": stage_counts(pred),
        "mean_confidence": float(result.confidence.mean()),
        "sleep_statistics": sleep_statistics(pred, result.epoch_s),
        "channels": [{"band": b, "recording_channel": m} for b, m in zip(result.bands, result.channel_map)],
        "flat_bands": [b for b, m in zip(result.bands, result.channel_map) if m is None],
        "render": {"sfreq": result.sfreq, "settings": result.settings},
        "recording": result.recording,
        "timings_s": result.timings_s,
    }
    if result.expert is not None:
        scored = result.expert != UNSCORED
        out["expert_stage_counts"] = stage_counts(result.expert)
        out["expert_sleep_statistics"] = sleep_statistics(result.expert, result.epoch_s)
        out["agreement"] = stage_metrics(result.expert, pred) if scored.any() else None
    return out


def hypnogram_tsv(result: StageResult) -> str:
    """U-Sleep's layout: ``init_sec  duration_sec  stage``, one row per epoch."""
    lines = ["init_sec\tduration_sec\tstage"]
    for start, code in zip(result.starts_s, result.stages):
        lines.append(f"{start:g}\t{result.epoch_s:g}\t{STAGES[int(code)]}")
    return "\n".join(lines) + "\n"


def hypnogram_csv(result: StageResult) -> str:
    """``epoch, start_s, stage, confidence, p_W..p_REM`` (and ``expert``), one row per epoch."""
    head = ["epoch", "start_s", "stage", "confidence", *[f"p_{s}" for s in STAGES]]
    if result.expert is not None:
        head.append("expert")
    lines = [",".join(head)]
    for i, (start, code, p) in enumerate(zip(result.starts_s, result.stages, result.probs)):
        row = [str(i), f"{start:g}", STAGES[int(code)], f"{p.max():.4f}", *[f"{v:.4f}" for v in p]]
        if result.expert is not None:
            e = int(result.expert[i])
            row.append("UNS" if e == UNSCORED else STAGES[e])
        lines.append(",".join(row))
    return "\n".join(lines) + "\n"


def write_outputs(result: StageResult, out) -> dict[str, Path]:
    """Write every output file of a staged night into ``out``; returns name -> path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in OUTPUT_FILES}
    write_text_atomic(paths["hypnogram.tsv"], hypnogram_tsv(result))
    write_text_atomic(paths["hypnogram.csv"], hypnogram_csv(result))
    tmp = out / ".hypnodensity.tmp.npy"
    np.save(tmp, result.probs.astype(np.float32))
    tmp.replace(paths["hypnodensity.npy"])
    texts = [EDF_STAGE_TEXT[STAGES[int(c)]] for c in result.stages]
    write_annotations_edf(paths["hypnogram_annotations.edf"], onsets_s=result.starts_s,
                          durations_s=np.full(result.n_epochs, result.epoch_s), texts=texts)
    plot_night(result.stages, result.probs, result.starts_s, paths["hypnogram.png"], expert=result.expert,
               epoch_s=result.epoch_s, notice=result.model["notice"])
    summary = summarize(result)
    summary["files"] = sorted(paths)
    summary["provenance"] = provenance()
    write_json_atomic(paths["summary.json"], summary)
    if result.expert is not None and summary.get("agreement"):
        paths["metrics.json"] = out / "metrics.json"
        write_json_atomic(paths["metrics.json"], {"agreement": summary["agreement"], "notice": summary["notice"]})
    return paths


def statistics_table(result: StageResult) -> list[list[str]]:
    """Rows ``[statistic, model, expert]`` (:func:`psgvlm.night.sleepstats.format_statistics`); expert "" if none."""
    pred = format_statistics(sleep_statistics(result.stages, result.epoch_s))
    if result.expert is None:
        return [[name, value, ""] for name, value in pred]
    exp = format_statistics(sleep_statistics(result.expert, result.epoch_s))
    return [[a[0], a[1], b[1]] for a, b in zip(pred, exp)]
