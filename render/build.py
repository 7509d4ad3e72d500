"""Recordings -> a Hugging Face dataset of square epoch images, with splits and provenance.

    psgvlm render --format isruc --input data/isruc --out data/isruc_img --num-proc 2
    python -m render --format sleepedf --input SC4001E0-PSG.edf --hypnogram SC4001EC-Hypnogram.edf --out x

What it writes (``DIR``): ``datasets.DatasetDict.save_to_disk`` output (splits train/validation/test
by subject, or ``all``), and ``DIR/meta.json`` (settings, channel order, split manifest, per-split
stage counts, dropped epochs with reasons, per-recording pairing reports, recordings skipped with
their reason, versions, git SHA), in the format :mod:`psgvlm.image.dataset` reads back.

Hostile input (:mod:`.inputs`): bad ``--fs``/``--size``/``--num-proc`` are refused before any work; a
recording with no scored 30-s epoch (too short, all ``?``, labels that pair with nothing) is skipped
with a warning, and an input where none yields one is refused (exit 2, nothing written). Recordings
and subjects are named by their paths relative to ``--input`` (``subjA/night``, ``isruc-sg3-1``:
:func:`psgvlm.io.readers.find_recordings`), so files named alike in different folders are separate
recordings by construction. A recording without one of the bands' channels gets a blank band, a
warning and ``missing_channels`` in its summary (``--require-channels``: refused); a band no recording
fills is refused. User errors exit 2 with one line on stderr.

Phases (:func:`build_dataset`): discover the recordings; per recording, read + cut + render
(:func:`render_job`; forked workers share the night's epochs and return PNG bytes) and save
its rows as one Arrow shard; write the dataset's splits from the shards (:func:`write_dataset`);
finish (``meta.json``, rename into place).

Crash safety: each finished recording is saved under ``.DIR.partial/`` beside ``DIR`` with the
settings hash; a re-run with the same settings skips them (resume). The final dataset is written to
a temporary folder and renamed into place, so ``DIR`` is either absent or complete.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from psgvlm.image.dataset import META_KIND, META_VERSION, is_dataset_dir
from psgvlm.locks import check_out_dir, out_lock
from psgvlm.provenance import provenance, read_json
from psgvlm.splits import SPLIT_KINDS, split_warnings
from psgvlm.stages import STAGES, UNSCORED, stage_counts

from .inputs import (
    NoEpochsError,
    band_order,
    blank_everywhere,
    check_options,
    check_sfreq,
    clean_stale,
    first_bands,
    map_bands,
    no_epoch_reason,
    relative_id,
    shard_name,
)
from .workers import join_preloads, preload, release_freed_memory, render_images, reusing_freed_memory
from .write import SHARD_FILE, finish, write_dataset, write_shard

# Target rate per dataset when --fs is not given: the rate of the dataset's EEG (DESIGN section 3).
TARGET_SFREQ: dict[str, float] = {
    "isruc": 200.0, "mass": 256.0, "shhs": 125.0, "sleepedf": 100.0, "dreams": 200.0, "prerau": 100.0,
}


class DatasetExistsError(FileExistsError):
    pass


# ------------------------------------------------------------------------------------------------
# One recording
# ------------------------------------------------------------------------------------------------
def read_for_dataset(fmt: str, job: dict, *, bands: list[str] | None, transform=None):
    """Read one recording with only the channels the dataset renders, when that is known.

    ``bands`` (the user's channels, the dataset's montage, or the order the first recording set) are
    read when all are present; else (one is absent, or with a ``transform``, which may use any
    channel) every signal is read and :func:`render.inputs.map_bands` finds what is there. A night's
    20 signals are ~1 GB as float64 while being read.
    """
    from psgvlm.io.readers import read_recording

    if bands and transform is None:
        try:
            return read_recording(fmt, **job, channels=list(bands))
        except ValueError:
            pass  # one is absent (or the file is bad: the full read below says so)
    return read_recording(fmt, **job)


def cut_recording(rec, *, channels: list[str | None], sfreq: float, bands: list[str] | None = None):
    """Resampled 30-s epochs of ``channels`` and the recording's summary for ``meta.json``.

    ``channels`` holds the recording's channel for each band, None where the recording lacks the
    band's channel (drawn blank: flat, with a warning naming the channel and the recording);
    ``bands`` names the bands (default ``channels``). Returns ``(x (n_epochs, n_bands, n_times)
    float32 raw units, stages or None, starts_s, summary)``; the caller may drop ``rec`` afterwards
    (the night's signals are the largest thing in memory).
    """
    import warnings as _w

    from psgvlm.signal.epochs import epochs_from_recording, resample_plan

    bands = list(channels) if bands is None else list(bands)
    missing = [b for b, c in zip(bands, channels) if c is None]
    present = [c for c in channels if c is not None]
    with _w.catch_warnings(record=True) as caught:
        _w.simplefilter("always")
        if missing:
            _w.warn(f"recording {rec.recording!r} ({rec.source}): channel(s) {missing} not in the recording; "
                    f"their band(s) are drawn blank (flat); available: {rec.ch_names}", stacklevel=2)
        if rec.meta.get("derived_channels"):
            _w.warn(f"recording {rec.recording!r}: derived from bare electrodes: "
                    + ", ".join(f"{k} = {v}" for k, v in rec.meta["derived_channels"].items()), stacklevel=2)
        x, stages, starts_s = epochs_from_recording(rec, channels, sfreq)
    for w in caught:  # shown once to the user and kept in meta.json
        _w.warn_explicit(w.message, w.category, w.filename, w.lineno)
    summary = {
        "recording": rec.recording, "subject": rec.subject, "dataset": rec.dataset, "source": rec.source,
        "meta": rec.meta,
        "channels": {b: {"name": rec.channel(c).name, "sfreq": rec.channel(c).sfreq,
                         "modality": rec.channel(c).modality} for b, c in zip(bands, channels) if c is not None},
        "missing_channels": missing,
        **({"available_channels": rec.ch_names} if missing else {}),
        "resample": resample_plan(rec, present, sfreq),
        "warnings": [str(w.message) for w in caught],
        "n_epochs": int(len(x)),
        "stage_counts": stage_counts(stages) if stages is not None else {},
        "pairing": rec.pairing,
    }
    return x, stages, starts_s, summary


def render_rows(x, stages, starts_s, summary, *, channels: list[str], settings, num_proc: int = 1,
                progress: bool = True):
    """Render cut epochs to dataset rows; returns ``(rows, dropped)``.

    Unscored epochs are dropped with reason ``unscored``; unlabelled recordings keep every epoch
    with label None (they can be staged but not trained on). ``x`` is scaled in place, as
    ``settings.scaling`` says (:func:`psgvlm.image.renderer.scale_epochs`).
    """
    from psgvlm.image.renderer import scale_epochs

    n_total = len(x)
    keep = np.arange(n_total) if stages is None else np.flatnonzero(stages != UNSCORED)
    dropped = [{"recording": summary["recording"], "epoch": int(i), "start_s": float(starts_s[i]),
                "reason": "unscored"} for i in np.setdiff1d(np.arange(n_total), keep)]
    # Scaled with every epoch present (scaling="recording" takes the night's median epoch, as stage does).
    # A missing channel's band has no modality (None): it stays 0 = flat.
    x = scale_epochs(x, [summary["channels"].get(c, {}).get("modality") for c in channels], settings, out=x)
    if len(keep) < n_total:
        x = x[keep]
    images = render_images(x, settings, num_proc=num_proc, progress=progress, desc=f"render {summary['recording']}")
    del x
    labels = stages[keep] if stages is not None else None
    n = len(keep)
    rows = {
        "image": [{"bytes": b, "path": None} for b in images],
        "label": [int(v) for v in labels] if labels is not None else [None] * n,
        "stage": [STAGES[int(v)] for v in labels] if labels is not None else [""] * n,
        "subject": [summary["subject"]] * n,
        "recording": [summary["recording"]] * n,
        "epoch": [int(i) for i in keep],
        "start_s": [float(starts_s[i]) for i in keep],
        "dataset": [summary["dataset"]] * n,
        "channels": [",".join(channels)] * n,
    }
    summary["n_images"] = n
    return rows, dropped


# ------------------------------------------------------------------------------------------------
# The whole dataset
# ------------------------------------------------------------------------------------------------
def _settings_hash(d: dict) -> str:
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def discover_recordings(fmt: str, input: Path, *, hypnogram=None, find_opts: dict | None = None,
                        read_opts: dict | None = None) -> list[dict]:
    """Reader jobs (``{"path", "hypnogram", "recording", "subject", **read_opts}``): a dataset folder's
    recordings with ids from their paths relative to it (:func:`psgvlm.io.readers.find_recordings`),
    or the one file (the reader names it)."""
    from psgvlm.io.readers import find_recordings

    if not input.exists():
        raise FileNotFoundError(f"input {str(input)!r} does not exist")
    if input.is_dir():
        if hypnogram is not None:
            raise ValueError("--hypnogram goes with a single recording file, not a folder")
        jobs = find_recordings(fmt, input, **(find_opts or {}))
    else:
        jobs = [{"path": input, "hypnogram": hypnogram}]
    return [{**j, **(read_opts or {})} for j in jobs]


def render_job(fmt: str, job: dict, *, channels: list[str] | None, order: list[str] | None,
               sfreq: float | None, settings, label_channels: bool = False, transform=None, num_proc: int = 1,
               require_channels: bool = False, progress: bool = True) -> tuple[dict, dict, float]:
    """Read, cut and render one recording of a dataset being built.

    ``order`` is the dataset's band order when known (:func:`render.inputs.band_order`, or the first
    recording's); ``channels`` the user's names for those bands. A band whose channel the recording
    lacks is drawn blank (warned, listed in the summary's ``missing_channels``), or refused with
    ``require_channels``. Returns ``(rows, done, sfreq)``: the rows (:func:`render_rows`),
    ``{"summary", "dropped", "channels"}`` for ``done.json`` (``channels``: the band order), and the
    target rate (``sfreq``, else the recording's highest EEG rate, snapped to a whole rate).
    Raises :class:`NoEpochsError` (the reason) when the recording has no scored 30-s epoch or none
    of the bands' channels.
    """
    from psgvlm.signal.epochs import snap_rate

    with reusing_freed_memory():  # reading and cutting allocate and free ~2 GB of arrays
        rec = read_for_dataset(fmt, job, bands=order, transform=transform)
        if transform is not None:
            rec = transform(rec)
        bands = order or first_bands(rec, fmt)
        mapping = map_bands(rec, bands, channels)
        missing = [b for b, m in zip(bands, mapping) if m is None]
        if missing and require_channels:
            raise ValueError(f"{rec.source}: requested channel(s) {missing} not in recording {rec.recording!r} "
                             f"(--require-channels); available: {rec.ch_names}")
        if len(missing) == len(bands):
            raise NoEpochsError(f"none of the channels {bands} is in it; available: {rec.ch_names}")
        if sfreq is None:
            eeg = [c.sfreq for c in rec.channels if c.modality == "EEG"]
            sfreq = snap_rate(max(eeg) if eeg else max(c.sfreq for c in rec.channels))
        x, stages, starts_s, summary = cut_recording(rec, channels=mapping, sfreq=sfreq, bands=bands)
        reason = no_epoch_reason(rec, len(x), stages)
        if reason:
            raise NoEpochsError(reason)
        del rec  # the raw night is no longer needed while rendering
    rec_settings = replace(settings, labels=tuple(bands)) if label_channels else settings
    rows, dropped = render_rows(x, stages, starts_s, summary, channels=bands, settings=rec_settings,
                                num_proc=num_proc, progress=progress)
    return rows, {"summary": summary, "dropped": dropped, "channels": bands}, sfreq


def build_dataset(*, fmt: str, input, out, hypnogram=None, channels: list[str] | None = None,
                  settings=None, sfreq: float | None = None, split: str = "subject", split_seed: int = 0,
                  num_proc: int = 1, overwrite: bool = False, transform=None, scorer: int | None = None,
                  visit: int | None = None, trim_tail_epochs: int = 0, require_channels: bool = False,
                  label_channels: bool = False, subjects=None, progress: bool = True, nonfinite: str = "raise") -> dict:
    """Render recordings to ``out`` as a DatasetDict + ``meta.json``; returns the meta dict.

    ``out`` is checked before any work (a file, a folder that is not writable, a live writer) and its
    lock (:func:`psgvlm.locks.out_lock`, ``.OUT.lock`` beside it) is held throughout: a second writer is
    refused naming the lock and its PID, a stale lock of a dead run is taken over with a message, and
    the temporary folders of dead runs are removed (:func:`.inputs.clean_stale`).

    Parameters
    ----------
    fmt : str
        Reader name (a key of ``psgvlm.io.readers.READERS``).
    input : path
        A dataset folder (recordings discovered as the dataset lays them out, named by their paths
        relative to it: :func:`psgvlm.io.readers.find_recordings`) or one recording file.
    out : path
        Output folder; must not hold a finished dataset unless ``overwrite``.
    hypnogram : path, optional
        Label file for a single-file ``input`` (generic EDF, Sleep-EDF pair...).
    channels : list of str, optional
        Channel names in band order (top to bottom); default: the dataset's montage
        (``DATASET_CHANNELS`` for isruc, mass, shhs, sleepedf), else the first recording's channels.
        A recording without one gets a blank (flat) band, warned and listed in its
        ``missing_channels``; a band blank in every recording is refused.
    settings : psgvlm.image.renderer.RenderSettings, optional
    sfreq : float, optional
        Target rate in Hz; default ``TARGET_SFREQ[fmt]`` or the first recording's highest EEG rate.
    split : {"subject", "epoch", "none"}
        ``subject``: 8:2 train/test by subject then 10% of train subjects to validation (falls back
        to ``none`` with fewer than 3 subjects, said on stdout). ``epoch``: the paper's leaky
        epoch-level split (warned). ``none``: one split ``all``.
    num_proc : int
        Worker processes for rendering (see :func:`render_images`).
    transform : callable, optional
        ``transform(rec) -> Recording`` applied after reading (corruption, channel dropping).
    scorer : int, optional
        Which scorer's labels for datasets with several (ISRUC: 1 or 2).
    visit : int, optional
        SHHS visit to render (1, the default, or 2).
    trim_tail_epochs : int
        ISRUC: label epochs dropped at the end of each night (published benchmarks drop 30).
    require_channels : bool
        Refuse (ValueError) a recording that lacks a band's channel instead of drawing it blank.
    label_channels : bool
        Draw each band's channel name in a left margin (``settings.labels`` set to the channel order).
    nonfinite : {"raise", "zero"}
        NaN/inf samples in a text signal (DREAMS, Prerau): refuse the recording, or render them as 0.
    subjects : list of str or path, optional
        Render only these subjects of a dataset folder: ids, or a selection file (ids, or a rule:
        :func:`psgvlm.io.subjects.resolve_subjects`); an id not found under ``input`` is refused. The
        selection goes to ``meta.json`` (``settings.subjects``).
    """
    params = dict(locals())  # every parameter, handed on whole: one list of them, the signature's
    bad_out = check_out_dir(out, beside=True, inside_lock=False)
    if bad_out:
        raise ValueError(bad_out)
    with out_lock(out, command="psgvlm render", inside=False):
        return _build_dataset(**params)


def _build_dataset(*, fmt, input, out, hypnogram, channels, settings, sfreq, split, split_seed, num_proc,
                   overwrite, transform, scorer, visit, trim_tail_epochs, require_channels, label_channels, subjects,
                   progress, nonfinite) -> dict:
    """:func:`build_dataset`'s work, under the ``--out`` lock."""
    from tqdm.auto import tqdm

    from psgvlm.image.renderer import RENDERER_VERSION, RenderSettings
    from psgvlm.io.readers import READERS

    t0 = time.perf_counter()
    preload("datasets")  # ~1 s of imports first needed to write: done while the first night is read
    if fmt not in READERS:
        raise ValueError(f"unknown format {fmt!r}; choose from {sorted(READERS)}")
    if split not in SPLIT_KINDS:
        raise ValueError(f"unknown split {split!r}; choose from {SPLIT_KINDS}")
    if num_proc < 1:
        raise ValueError(f"num_proc must be >= 1, got {num_proc!r}")
    if sfreq is not None:
        sfreq = check_sfreq(sfreq)
    settings = settings or RenderSettings()
    input, out = Path(input), Path(out)
    if not input.exists():
        raise FileNotFoundError(f"input {str(input)!r} does not exist")
    if out.exists():
        if is_dataset_dir(out) and not overwrite:
            raise DatasetExistsError(f"{out} already holds a finished dataset; pass --overwrite to replace it")
        if not is_dataset_dir(out) and any(out.iterdir()):
            raise FileExistsError(f"{out} exists and is not a psgvlm dataset; choose an empty or new folder")
    find_opts = {k: v for k, v in (("scorer", scorer), ("visit", visit)) if v is not None}
    read_opts = {k: v for k, v in (("scorer", scorer), ("trim_tail_epochs", trim_tail_epochs)) if v}
    if nonfinite != "raise":  # readers of formats that cannot hold NaN refuse the option by name
        read_opts["nonfinite"] = nonfinite
    jobs = discover_recordings(fmt, input, hypnogram=hypnogram, find_opts=find_opts, read_opts=read_opts)
    chosen = None
    if subjects is not None:
        from psgvlm.io.subjects import resolve_subjects, select_jobs

        ids, chosen = resolve_subjects(subjects, input)
        jobs = select_jobs(jobs, ids, input=input)

    target = sfreq if sfreq is not None else TARGET_SFREQ.get(fmt)
    run_settings = {"format": fmt, "channels": channels, "sfreq": target, "render": settings.as_dict(),
                    "renderer_version": RENDERER_VERSION, "scorer": scorer, "visit": visit,
                    "trim_tail_epochs": trim_tail_epochs, "require_channels": require_channels,
                    "label_channels": label_channels,
                    "transform": getattr(transform, "description", None if transform is None else repr(transform))}
    key = _settings_hash(run_settings)
    partial = out.parent / f".{out.name}.partial"
    clean_stale(out, key)
    partial.mkdir(parents=True, exist_ok=True)
    (partial / "settings.json").write_text(json.dumps(run_settings, indent=2, default=str))

    try:
        dones, shards, skipped, order, target = _render_all(
            fmt, jobs, input, partial, key, target, tqdm, channels=channels, settings=settings,
            label_channels=label_channels, transform=transform, num_proc=num_proc,
            require_channels=require_channels, progress=progress)
        run_settings["sfreq"] = target
        blank = blank_everywhere(order, [d["summary"] for d in dones])
        if blank:  # a typo in --channels, most likely: the shards cannot serve a corrected run (other hash)
            shutil.rmtree(partial, ignore_errors=True)
            first = dones[0]["summary"]
            raise ValueError(f"channel(s) {blank} are in none of the {len(dones)} recording(s) under {str(input)!r}; "
                             f"available in {first['recording']!r}: {first['available_channels']}")
    except BaseException:
        # finished recordings stay for a resume; a run that finished none leaves nothing behind
        if not any(partial.glob("rec-*")):
            shutil.rmtree(partial, ignore_errors=True)
        raise

    join_preloads()
    summaries = [d["summary"] for d in dones]
    dropped_all = [e for d in dones for e in d["dropped"]]
    subjects = sorted({s["subject"] for s in summaries})
    if split == "subject" and len(subjects) < 3:
        print(f"psgvlm render: {len(subjects)} subject(s) < 3, so no subject-wise split: one split 'all'")
        split = "none"
    tmp_out = out.parent / f".{out.name}.tmp-{os.getpid()}"
    split_meta, counts, labelled = write_dataset(shards, subjects, tmp_out,
                                                 split=split, split_seed=split_seed, progress=progress)
    meta = {
        "kind": META_KIND, "version": META_VERSION, "format": fmt,
        "settings": {**run_settings, "split": split, "split_seed": split_seed, "subjects": chosen},
        "channels": order,
        "modalities": _band_modalities(order, summaries, fmt),
        "sfreq": target, "epoch_s": 30.0, "size": settings.size,
        "split": split_meta, "counts": counts, "labelled": labelled,
        "dropped": {"n": len(dropped_all), "by_reason": _by_reason(dropped_all), "epochs": dropped_all},
        "recordings": summaries,
        "skipped": skipped,
        "input": {"path": str(input), "hypnogram": None if hypnogram is None else str(hypnogram)},
        "provenance": provenance(),
        "build_s": None,
    }
    finish(out, tmp_out, meta, t0)
    shutil.rmtree(partial, ignore_errors=True)
    return meta


def _render_all(fmt: str, jobs: list[dict], input: Path, partial: Path, key: str, target, tqdm, *,
                channels: list[str] | None, progress: bool, **render_kw):
    """Render (or resume) every job's shard under ``partial``; skip those with nothing to render (warned).

    Returns ``(dones, shards, skipped, order, target)`` of the rendered recordings in job order
    (``order``: the band order); raises :class:`NoEpochsError` when none yields an epoch.
    """
    dones, shards, skipped, order = [], [], [], band_order(fmt, channels)
    for job in tqdm(jobs, desc=f"render {fmt}", unit="rec", disable=not progress):
        rec_id = job.get("recording") or relative_id(job["path"], input)
        shard = partial / shard_name(rec_id, key)
        done = _finished(shard)  # resume: finished before a crash/interrupt
        if done is None:
            try:
                rows, done, target = render_job(fmt, job, channels=channels, order=order, sfreq=target,
                                                progress=progress, **render_kw)
            except NoEpochsError as err:  # one such file must not sink the folder
                if len(jobs) > 1:  # with one recording, the error below says it once
                    print(f"psgvlm render: WARNING skipped {rec_id} ({job['path']}): {err}", file=sys.stderr)
                skipped.append({"recording": rec_id, "path": str(job["path"]), "reason": str(err)})
                continue
            join_preloads()
            write_shard(shard, rows, done)
            del rows
            release_freed_memory()
        elif target is None and done["summary"].get("resample"):
            target = done["summary"]["resample"][0]["target_sfreq"]  # the rate the killed run chose
        dones.append(done)
        shards.append(shard)
        order = order or done["channels"]
    if not dones:
        reasons = "; ".join(f"{s['recording']}: {s['reason']}" for s in skipped[:3])
        more = f"; and {len(skipped) - 3} more" if len(skipped) > 3 else ""
        raise NoEpochsError(f"input {str(input)!r}: no recording yields a 30-s epoch to render ({reasons}{more})")
    return dones, shards, skipped, order, target


def _finished(shard: Path) -> dict | None:
    """A finished shard's ``done.json``, or None (absent, or left unreadable by a killed run: redone)."""
    if not ((shard / "done.json").is_file() and (shard / SHARD_FILE).is_file()):
        return None
    try:
        done = read_json(shard / "done.json")
    except (OSError, ValueError):
        return None
    return done if isinstance(done, dict) and {"summary", "dropped", "channels"} <= set(done) else None


def _band_modalities(bands: list[str], summaries: list[dict], fmt: str) -> dict[str, str]:
    """Each band's modality: from the first recording that has its channel, else from its name."""
    from psgvlm.io.channels import lookup

    out = {}
    for b in bands:
        found = next((s["channels"][b]["modality"] for s in summaries if b in s["channels"]), None)
        out[b] = found or lookup(b, dataset=fmt)[1]
    return out


def _by_reason(dropped: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in dropped:
        out[d["reason"]] = out.get(d["reason"], 0) + 1
    return out


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    from psgvlm.image.renderer import SCALINGS, RenderSettings
    from psgvlm.io.readers import READERS
    from psgvlm.io.subjects import parse_subjects
    from psgvlm.signal.corruption import load_transform

    p = argparse.ArgumentParser(prog="psgvlm render", description=__doc__.split("\n\n")[0])
    p.add_argument("--format", required=True, choices=sorted(READERS), help="dataset / file format")
    p.add_argument("--input", required=True, help="dataset folder or one recording file")
    p.add_argument("--hypnogram", help="label file for a single recording")
    p.add_argument("--out", required=True, help="output dataset folder")
    p.add_argument("--channels", nargs="+", help="canonical channel names, top to bottom")
    p.add_argument("--size", type=int, default=RenderSettings().size, help="image side, pixels (default %(default)s)")
    p.add_argument("--fs", type=float, help="target sampling rate, Hz, in (0, 4096] (default: per dataset)")
    p.add_argument("--num-proc", type=int, default=1, help="render worker processes")
    p.add_argument("--split", default="subject", choices=SPLIT_KINDS,
                   help="subject: train/validation/test by subject; epoch: the paper's leaky epoch split; none: one split")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the split (default %(default)s)")
    p.add_argument("--scorer", type=int, help="scorer for datasets with several (ISRUC: 1 or 2)")
    p.add_argument("--visit", type=int, choices=(1, 2),
                   help="SHHS visit to render: 1 (default, shhs1-*) or 2 (shhs2-*, age_s2 from its CSV)")
    p.add_argument("--trim-tail-epochs", type=int, default=0, metavar="N",
                   help="ISRUC: drop the last N label epochs of each night (published benchmarks drop 30; "
                        "default %(default)s)")
    p.add_argument("--require-channels", action="store_true",
                   help="refuse a recording that lacks one of the channels instead of drawing its band blank")
    p.add_argument("--subjects", nargs="+", metavar="ID|FILE",
                   help="render only these subjects: ids (a b, or a,b) or a file of ids (one a line) or a rule "
                        "(.yaml); the paper's selections are in recipes/configs/subjects/")
    p.add_argument("--labels", action="store_true", help="draw channel names in the left margin")
    p.add_argument("--scaling", default="minmax", choices=SCALINGS,
                   help="minmax: each epoch and channel stretched to its band (the paper); physical: fixed "
                        "microvolt range per modality, clipped, amplitude kept; recording: range from the "
                        "channel's median epoch in the night, relative amplitude kept (default %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace a finished dataset at --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--transform", metavar="SPEC.json",
                   help="signal transform applied after reading (psgvlm.signal.corruption.save_transform)")
    p.add_argument("--nonfinite", choices=("refuse", "zero"), default="refuse",
                   help="NaN/inf samples in a text signal (DREAMS, Prerau): refuse the recording (default) "
                   "or render them as 0")
    args = p.parse_args(argv)
    try:
        check_options(fs=args.fs, size=args.size, num_proc=args.num_proc)
        transform = load_transform(args.transform) if args.transform else None
        subjects = parse_subjects(args.subjects) if args.subjects else None
        settings = replace(RenderSettings(), size=args.size, scaling=args.scaling)
        meta = build_dataset(fmt=args.format, input=args.input, out=args.out, hypnogram=args.hypnogram,
                             channels=args.channels, settings=settings, sfreq=args.fs, split=args.split,
                             split_seed=args.split_seed, num_proc=args.num_proc, overwrite=args.overwrite,
                             scorer=args.scorer, visit=args.visit, trim_tail_epochs=args.trim_tail_epochs,
                             require_channels=args.require_channels, label_channels=args.labels,
                             progress=not args.quiet, transform=transform, subjects=subjects,
                             nonfinite="zero" if args.nonfinite == "zero" else "raise")
    except (ValueError, FileNotFoundError, FileExistsError, OSError) as err:
        print(f"psgvlm render: error: {err}", file=sys.stderr)
        return 2  # a user error: one line, no traceback
    sizes = ", ".join(f"{k}: {v['n_epochs']} epochs / {v['n_subjects']} subjects" for k, v in meta["counts"].items())
    print(f"wrote {args.out} ({sizes}; {meta['dropped']['n']} epochs dropped {meta['dropped']['by_reason']}) "
          f"in {meta['build_s']:.1f} s")
    for line in split_warnings(meta["split"]):  # e.g. 3 subjects split 1/1/1
        print(f"psgvlm render: WARNING {line}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
