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
from psgvlm.locks import out_lock, pid_alive
from psgvlm.metrics import stage_metrics
from psgvlm.night.sleepstats import format_statistics, sleep_statistics
from psgvlm.plots import plot_night
from psgvlm.provenance import provenance, write_json_atomic
from psgvlm.stages import STAGES, UNSCORED, stage_counts

if TYPE_CHECKING:
    from psgvlm.night.stage import StageResult

# EDF+ annotation texts, the Sleep-EDF / MNE convention EDFbrowser's hypnogram view understands.
EDF_STAGE_TEXT = {"W": "Sleep stage W", "N1": "Sleep stage N1", "N2": "Sleep stage N2",
                  "N3": "Sleep stage N3", "REM": "Sleep stage R", "UNS": "Sleep stage ?"}
OUTPUT_FILES = ("hypnogram.tsv", "hypnogram.csv", "hypnodensity.npy", "hypnogram_annotations.edf",
                "hypnogram.png", "summary.json")
OPTIONAL_FILES = ("metrics.json",)  # written only with an expert hypnogram
OWNED_FILES = OUTPUT_FILES + OPTIONAL_FILES  # what a rerun into the same folder replaces or removes
TMP_PREFIX = ".psgvlm-stage-tmp-"  # the folder a run writes into before moving its files in place


def _name(code) -> str:
    return "UNS" if int(code) == UNSCORED else STAGES[int(code)]


def summarize(result: StageResult) -> dict:
    """Statistics, agreement and facts as written to ``summary.json``."""
    pred = result.stages
    out = {
        "notice": result.model["notice"],
        "model": result.model,
        "n_epochs": result.n_epochs,
        "epoch_s": result.epoch_s,
        "stage_counts": stage_counts(pred),
        "mean_confidence": float(result.confidence[pred != UNSCORED].mean()) if (pred != UNSCORED).any() else None,
        "sleep_statistics": sleep_statistics(pred, result.epoch_s),
        "channels": [{"band": b, "recording_channel": m} for b, m in zip(result.bands, result.channel_map)],
        "flat_bands": [b for b, m in zip(result.bands, result.channel_map) if m is None],
        "render": {"sfreq": result.sfreq, "settings": result.settings},
        "recording": result.recording,
        # Epochs left unscored for lack of EEG signal, flat epochs per band, how expert labels were paired.
        "checks": result.checks,
        "timings_s": result.timings_s,
    }
    if result.expert is not None:
        # Agreement over epochs both scored: no expert label, or no EEG signal (model UNS), are left out.
        truth = np.where(pred == UNSCORED, UNSCORED, result.expert)
        out["expert_stage_counts"] = stage_counts(result.expert)
        out["expert_sleep_statistics"] = sleep_statistics(result.expert, result.epoch_s)
        out["agreement"] = stage_metrics(truth, pred) if (truth != UNSCORED).any() else None
    return out


def hypnogram_tsv(result: StageResult) -> str:
    """U-Sleep's layout: ``init_sec  duration_sec  stage``, one row per epoch."""
    lines = ["init_sec\tduration_sec\tstage"]
    for start, code in zip(result.starts_s, result.stages):
        lines.append(f"{start:g}\t{result.epoch_s:g}\t{_name(code)}")
    return "\n".join(lines) + "\n"


def hypnogram_csv(result: StageResult) -> str:
    """``epoch, start_s, stage, confidence, p_W..p_REM`` (and ``expert``), one row per epoch."""
    head = ["epoch", "start_s", "stage", "confidence", *[f"p_{s}" for s in STAGES]]
    if result.expert is not None:
        head.append("expert")
    lines = [",".join(head)]
    for i, (start, code, p) in enumerate(zip(result.starts_s, result.stages, result.probs)):
        row = [str(i), f"{start:g}", _name(code), f"{p.max():.4f}", *[f"{v:.4f}" for v in p]]
        if result.expert is not None:
            row.append(_name(result.expert[i]))
        lines.append(",".join(row))
    return "\n".join(lines) + "\n"


def write_outputs(result: StageResult, out) -> dict[str, Path]:
    """Write every output file of a staged night into ``out``; returns name -> path.

    Holds ``out``'s lock (:func:`psgvlm.locks.out_lock`, ``out/.psgvlm.lock``) throughout: a second
    writer is refused (:class:`psgvlm.locks.LockedError`) and a stale lock of a dead run is taken over.
    The files are written into a temporary folder inside ``out`` first; then every file this command
    owns (:data:`OWNED_FILES`) left in ``out`` by an earlier run is removed (a previous recording's
    ``metrics.json`` must not sit beside a night without an expert hypnogram) and the new files are
    moved in. Other files in ``out`` are never touched. Temporary folders of runs that died are removed.
    """
    import os
    import shutil
    import tempfile

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with out_lock(out, command="psgvlm stage", inside=True):
        for stale in out.glob(f"{TMP_PREFIX}*"):  # left by a killed run (pid in the name, no longer alive)
            if stale.is_dir() and not pid_alive(stale.name[len(TMP_PREFIX):].split("-")[0]):
                shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-", dir=out))
        try:
            staged = _write_files(result, tmp)
            for name in OWNED_FILES:
                old = out / name
                if (old.is_file() or old.is_symlink()) and name not in staged:
                    old.unlink()
            paths = {}
            for name, path in staged.items():
                os.replace(path, out / name)
                paths[name] = out / name
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return paths


def _write_files(result: StageResult, out: Path) -> dict[str, Path]:
    """Every output file of a staged night, written into the (new, empty) folder ``out``."""
    paths = {name: out / name for name in OUTPUT_FILES}
    paths["hypnogram.tsv"].write_text(hypnogram_tsv(result))
    paths["hypnogram.csv"].write_text(hypnogram_csv(result))
    np.save(paths["hypnodensity.npy"], result.probs.astype(np.float32))
    texts = [EDF_STAGE_TEXT[_name(c)] for c in result.stages]
    write_annotations_edf(paths["hypnogram_annotations.edf"], onsets_s=result.starts_s,
                          durations_s=np.full(result.n_epochs, result.epoch_s), texts=texts)
    plot_night(result.stages, result.probs, result.starts_s, paths["hypnogram.png"], expert=result.expert,
               epoch_s=result.epoch_s, notice=result.model["notice"])
    summary = summarize(result)
    if result.expert is not None and summary.get("agreement"):
        paths["metrics.json"] = out / "metrics.json"
        write_json_atomic(paths["metrics.json"], {"agreement": summary["agreement"], "notice": summary["notice"]})
    summary["files"] = sorted(paths)
    summary["provenance"] = provenance()
    write_json_atomic(paths["summary.json"], summary)
    return paths


def statistics_table(result: StageResult) -> list[list[str]]:
    """Rows ``[statistic, model, expert]`` (:func:`psgvlm.night.sleepstats.format_statistics`); expert "" if none."""
    pred = format_statistics(sleep_statistics(result.stages, result.epoch_s))
    if result.expert is None:
        return [[name, value, ""] for name, value in pred]
    exp = format_statistics(sleep_statistics(result.expert, result.epoch_s))
    return [[a[0], a[1], b[1]] for a, b in zip(pred, exp)]
