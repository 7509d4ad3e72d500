"""The files of a staged night: hypnogram TSV/CSV, EDF+ annotations, hypnodensity, plots, summary, metrics,
and the YASA / BIDS exports (:mod:`psgvlm.night.exports`).

:func:`write_outputs` writes every file of a :class:`psgvlm.night.stage.StageResult` into one
folder (each file atomically, mode 0644 under the default umask); the layouts are described in
:mod:`psgvlm.night.cli_stage`'s docstring.
The night's files carry the primary predictor's stages and name it; ``predictors/<name>/`` holds each
predictor's own ``hypnogram.tsv`` and ``hypnodensity.npy``. :func:`summarize` is ``summary.json``
without provenance: sleep statistics of the primary (and of the expert hypnogram), every predictor
(kind, channels, stage counts, agreement with the expert), their pairwise agreement, the review list,
channels (the file's own labels and how each band was chosen), model, recording facts (start date-time,
time in bed) and timings. Statistics cover time in bed (``result.lights``; the whole night without
it). :func:`statistics_table` is the same statistics as rows for a table (the app's).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from psgvlm.io.edf import write_annotations_edf
from psgvlm.locks import out_lock, pid_alive
from psgvlm.night.exports import bids_events_sidecar, bids_events_tsv, yasa_hypnogram_dict
from psgvlm.night.predictors import PREDICTORS, REVIEW_CONFIDENCE, agreement, pairwise_agreement, stages_of
from psgvlm.night.sleepstats import format_statistics, sleep_statistics
from psgvlm.plots import plot_confusion, plot_night
from psgvlm.provenance import provenance, write_json_atomic
from psgvlm.stages import STAGES, UNSCORED, stage_counts

if TYPE_CHECKING:
    from psgvlm.night.stage import StageResult

# EDF+ annotation texts, the Sleep-EDF / MNE convention EDFbrowser's hypnogram view understands.
EDF_STAGE_TEXT = {"W": "Sleep stage W", "N1": "Sleep stage N1", "N2": "Sleep stage N2",
                  "N3": "Sleep stage N3", "REM": "Sleep stage R", "UNS": "Sleep stage ?"}
OUTPUT_FILES = ("hypnogram.tsv", "hypnogram.csv", "hypnodensity.npy", "hypnogram_annotations.edf",
                "hypnogram.png", "hypnogram_yasa.json", "hypnogram_events.tsv", "hypnogram_events.json",
                "summary.json")
OPTIONAL_FILES = ("metrics.json", "confusion.png")  # written only with an expert hypnogram
OWNED_FILES = OUTPUT_FILES + OPTIONAL_FILES  # what a rerun into the same folder replaces or removes
PREDICTORS_DIR = "predictors"  # predictors/<name>/{hypnogram.tsv, hypnodensity.npy}; replaced whole by a rerun
TMP_PREFIX = ".psgvlm-stage-tmp-"  # the folder a run writes into before moving its files in place


def _name(code) -> str:
    return "UNS" if int(code) == UNSCORED else STAGES[int(code)]


def _labels(result: StageResult, names) -> list[str]:
    """The file's own labels of canonical channel names (the name itself when unknown)."""
    label = {c["name"]: c.get("label", c["name"]) for c in result.recording.get("channels", [])}
    return [label.get(n, n) for n in names]


def _clock(result: StageResult, seconds: float) -> str | None:
    """Clock time ``seconds`` after the recording start (ISO, or HH:MM:SS without a date), or None."""
    import datetime as dt

    if result.start is None or result.start.time is None:
        return None
    t = dt.datetime.combine(result.start.date or dt.date(2000, 1, 1), result.start.time) + dt.timedelta(seconds=seconds)
    return t.isoformat() if result.start.date is not None else t.time().isoformat()


def _time_of_day(iso: str):
    import datetime as dt

    return dt.time.fromisoformat(iso.split("T")[-1])


def time_in_bed_facts(result: StageResult) -> dict:
    """``lights_off_s``/``lights_on_s`` (and their clock times), first epoch and epochs in bed."""
    bed = result.in_bed
    lights = result.lights or {}
    off_s = lights.get("off_s", 0.0)
    on_s = lights.get("on_s")
    return {"lights_off_s": off_s, "lights_on_s": on_s, "lights_off": _clock(result, off_s),
            "lights_on": None if on_s is None else _clock(result, on_s),
            "first_epoch": bed.start, "n_epochs": bed.stop - bed.start, "given": result.lights is not None,
            "rule": lights.get("rule", "no lights off/on given: the whole staged night")}


def summarize(result: StageResult) -> dict:
    """Statistics, agreement, every predictor and facts as written to ``summary.json``."""
    pred = result.stages
    bed = result.in_bed
    out = {
        "notice": result.notice,
        "primary": result.primary,
        "model": result.model,
        "start": result.recording.get("start"),
        "n_epochs": result.n_epochs,
        "epoch_s": result.epoch_s,
        "stage_counts": stage_counts(pred),
        "mean_confidence": float(result.confidence[pred != UNSCORED].mean()) if (pred != UNSCORED).any() else None,
        "time_in_bed": time_in_bed_facts(result),
        "sleep_statistics": sleep_statistics(pred[bed], result.epoch_s),
        "channels": [{"band": c["band"], "recording_channel": c["label"], "canonical": c["canonical"],
                      "modality": c["modality"], "how": c["how"]} for c in result.channels]
        or [{"band": b, "recording_channel": m} for b, m in zip(result.bands, result.channel_map)],
        "channel_substitutions": [c for c in result.channels if c["how"] in ("substitute", "flat")],
        "flat_bands": [b for b, m in zip(result.bands, result.channel_map) if m is None],
        "render": {"sfreq": result.sfreq, "settings": result.settings},
        "recording": result.recording,
        # Epochs left unscored for lack of EEG signal, flat epochs per band, how expert labels were paired.
        "checks": result.checks,
        "timings_s": result.timings_s,
    }
    predictors = {}
    for name, hyp in result.predictions.items():
        codes = stages_of(hyp)
        entry = {"kind": PREDICTORS[name].kind, "ran": True, "primary": name == result.primary,
                 "channels": _labels(result, hyp.channels), "stage_counts": stage_counts(codes),
                 "mean_confidence": float(hyp.probs[~hyp.unscored].max(1).mean()) if (~hyp.unscored).any() else None,
                 "n_unscored": int(hyp.unscored.sum()), "streams": sorted(hyp.streams),
                 "info": {k: v for k, v in hyp.info.items() if k not in ("checks", "timings_s", "model", "settings")},
                 "notes": hyp.notes, "files": [f"{PREDICTORS_DIR}/{name}/hypnogram.tsv",
                                               f"{PREDICTORS_DIR}/{name}/hypnodensity.npy"]}
        if result.expert is not None:
            entry["agreement"] = agreement(result.expert, codes)
        predictors[name] = entry
    for name, reason in result.failed.items():
        predictors[name] = {"kind": PREDICTORS[name].kind, "ran": False, "reason": reason}
    out["predictors"] = predictors
    out["pairwise_agreement"] = pairwise_agreement(result.predictions)
    flagged = [k for k, why in enumerate(result.review) if why]
    out["review"] = {"n_epochs": len(flagged), "epochs": flagged, "confidence_below": REVIEW_CONFIDENCE,
                     "rule": "predictors (consensus aside) disagree, or the primary's probability is below "
                             f"{REVIEW_CONFIDENCE:g}"}
    if result.expert is not None:
        # Agreement over epochs both scored (the whole staged night): no expert label, or not scored by
        # the primary, are left out.
        out["expert_stage_counts"] = stage_counts(result.expert)
        out["expert_sleep_statistics"] = sleep_statistics(result.expert[bed], result.epoch_s)
        out["agreement"] = agreement(result.expert, pred)
    return out


def hypnogram_tsv(result: StageResult, name: str | None = None, *, clock_time: bool = False) -> str:
    """U-Sleep's layout ``init_sec  duration_sec  stage``, one row per epoch, plus the predictor's name
    (and ``clock_time`` when asked: :meth:`psgvlm.night.stage.StageResult.clock_times`).

    ``name`` picks a predictor of the night (default: the primary).
    """
    name = name or result.primary
    codes = result.stages if name == result.primary else stages_of(result.predictions[name])
    clock = _clock_column(result, clock_time)
    lines = ["init_sec\tduration_sec\tstage\tpredictor" + ("\tclock_time" if clock else "")]
    for i, (start, code) in enumerate(zip(result.starts_s, codes)):
        lines.append(f"{start:g}\t{result.epoch_s:g}\t{_name(code)}\t{name}" + (f"\t{clock[i]}" if clock else ""))
    return "\n".join(lines) + "\n"


def _clock_column(result: StageResult, clock_time: bool) -> list[str] | None:
    if not clock_time:
        return None
    clock = result.clock_times()
    if clock is None:
        raise ValueError("a clock-time column was asked for, but the recording's header gives no start time "
                         "(anonymised)")
    return clock


def hypnogram_csv(result: StageResult, *, clock_time: bool = False) -> str:
    """``epoch, start_s[, clock_time], stage, confidence, p_W..p_REM, primary, review`` (the primary's), one
    stage column per predictor (``stage_<name>``), ``expert``, and ``in_bed`` (1/0) when lights off/on
    were given; one row per epoch."""
    others = {name: stages_of(hyp) for name, hyp in result.predictions.items()}
    clock = _clock_column(result, clock_time)
    head = ["epoch", "start_s", *(["clock_time"] if clock else []), "stage", "confidence",
            *[f"p_{s}" for s in STAGES], "primary", "review", *[f"stage_{n}" for n in others]]
    if result.expert is not None:
        head.append("expert")
    if result.lights is not None:
        head.append("in_bed")
    bed = result.in_bed
    lines = [",".join(head)]
    review = result.review or [""] * result.n_epochs
    for i, (start, code, p) in enumerate(zip(result.starts_s, result.stages, result.probs)):
        row = [str(i), f"{start:g}", *([clock[i]] if clock else []), _name(code), f"{p.max():.4f}",
               *[f"{v:.4f}" for v in p], result.primary, review[i], *[_name(c[i]) for c in others.values()]]
        if result.expert is not None:
            row.append(_name(result.expert[i]))
        if result.lights is not None:
            row.append("1" if bed.start <= i < bed.stop else "0")
        lines.append(",".join(row))
    return "\n".join(lines) + "\n"


def write_outputs(result: StageResult, out, *, clock_time: bool = False) -> dict[str, Path]:
    """Write every output file of a staged night into ``out``; returns name -> path.

    ``clock_time`` adds a ``clock_time`` column to the hypnogram TSV/CSV files (ValueError when the
    header gives no start time).

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
            staged = _write_files(result, tmp, clock_time=clock_time)
            for name in OWNED_FILES:
                old = out / name
                if (old.is_file() or old.is_symlink()) and name not in staged:
                    old.unlink()
            old = out / PREDICTORS_DIR
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old)
            elif old.exists() or old.is_symlink():
                old.unlink()
            paths = {}
            for name, path in staged.items():
                if name.startswith(f"{PREDICTORS_DIR}/"):
                    continue
                os.replace(path, out / name)
                paths[name] = out / name
            os.replace(tmp / PREDICTORS_DIR, out / PREDICTORS_DIR)
            for name in staged:
                if name.startswith(f"{PREDICTORS_DIR}/"):
                    paths[name] = out / name
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return paths


def _write_files(result: StageResult, out: Path, *, clock_time: bool = False) -> dict[str, Path]:
    """Every output file of a staged night, written into the (new, empty) folder ``out``."""
    paths = {name: out / name for name in OUTPUT_FILES}
    paths["hypnogram.tsv"].write_text(hypnogram_tsv(result, clock_time=clock_time))
    paths["hypnogram.csv"].write_text(hypnogram_csv(result, clock_time=clock_time))
    np.save(paths["hypnodensity.npy"], result.probs.astype(np.float32))
    write_json_atomic(paths["hypnogram_yasa.json"], yasa_hypnogram_dict(result))
    paths["hypnogram_events.tsv"].write_text(bids_events_tsv(result))
    write_json_atomic(paths["hypnogram_events.json"], bids_events_sidecar(result))
    # The stages, lights off/on when given, then one note at the end of the night naming the predictor they
    # come from (hypnogram readers count and skip annotations that are not "Sleep stage ..." ones). The file
    # starts when the recording did (an anonymised date stays anonymised: EDF+ "Startdate X").
    end = result.starts_s[-1] + result.epoch_s if result.n_epochs else 0.0
    anns = [(s, result.epoch_s, EDF_STAGE_TEXT[_name(c)]) for s, c in zip(result.starts_s, result.stages)]
    if result.lights is not None:
        anns += [(result.lights["off_s"], None, "Lights off"), (result.lights["on_s"], None, "Lights on")]
    anns = sorted(anns, key=lambda a: a[0]) + [(end, None, f"psgvlm: stages by predictor {result.primary}")]
    write_annotations_edf(paths["hypnogram_annotations.edf"], onsets_s=[a[0] for a in anns],
                          durations_s=[a[1] for a in anns], texts=[a[2] for a in anns], start=result.start)
    others = [(name, stages_of(hyp)) for name, hyp in result.predictions.items() if name != result.primary]
    clock = result.clock_times()
    lights_h = None if result.lights is None else tuple(
        (result.lights[k] - result.starts_s[0]) / 3600 for k in ("off_s", "on_s"))
    plot_night(result.stages, result.probs, result.starts_s, paths["hypnogram.png"], expert=result.expert,
               epoch_s=result.epoch_s, notice=result.notice, pred_label=f"{result.primary} (primary)", others=others,
               clock_start=None if clock is None else _time_of_day(clock[0]), lights_h=lights_h)
    for name, hyp in result.predictions.items():
        folder = out / PREDICTORS_DIR / name
        folder.mkdir(parents=True)
        paths[f"{PREDICTORS_DIR}/{name}/hypnogram.tsv"] = folder / "hypnogram.tsv"
        (folder / "hypnogram.tsv").write_text(hypnogram_tsv(result, name, clock_time=clock_time))
        paths[f"{PREDICTORS_DIR}/{name}/hypnodensity.npy"] = folder / "hypnodensity.npy"
        np.save(folder / "hypnodensity.npy", hyp.probs.astype(np.float32))
    (out / PREDICTORS_DIR).mkdir(exist_ok=True)
    summary = summarize(result)
    if result.expert is not None and summary.get("agreement"):
        paths["metrics.json"] = out / "metrics.json"
        write_json_atomic(paths["metrics.json"], {
            "primary": result.primary, "agreement": summary["agreement"], "notice": summary["notice"],
            "predictors": {n: e.get("agreement") for n, e in summary["predictors"].items() if e["ran"]}})
        paths["confusion.png"] = plot_confusion(
            np.asarray(summary["agreement"]["confusion"]), out / "confusion.png",
            title=f"{result.primary} (primary) vs expert: {summary['agreement']['n_epochs']} epochs, "
                  f"kappa {summary['agreement']['kappa']:.2f}")
    summary["files"] = sorted(paths)
    summary["provenance"] = provenance()
    write_json_atomic(paths["summary.json"], summary)
    return paths


def statistics_table(result: StageResult) -> list[list[str]]:
    """Rows ``[statistic, primary, expert]`` (:func:`psgvlm.night.sleepstats.format_statistics`) over time in bed;
    expert "" if none."""
    bed = result.in_bed
    pred = format_statistics(sleep_statistics(result.stages[bed], result.epoch_s))
    if result.expert is None:
        return [[name, value, ""] for name, value in pred]
    exp = format_statistics(sleep_statistics(result.expert[bed], result.epoch_s))
    return [[a[0], a[1], b[1]] for a, b in zip(pred, exp)]
