"""Recordings -> a Hugging Face dataset of square epoch images, with splits and provenance.

    psgvlm render --format isruc --input data/isruc --out data/isruc_img --num-proc 2
    python -m render --format sleepedf --input SC4001E0-PSG.edf --hypnogram SC4001EC-Hypnogram.edf --out x

What it writes (``DIR``): ``datasets.DatasetDict.save_to_disk`` output (splits train/validation/test
by subject, or ``all``), and ``DIR/meta.json`` (settings, channel order, split manifest, per-split
stage counts, dropped epochs with reasons, per-recording pairing reports, recordings skipped with
their reason, versions, git SHA), in the format :mod:`psgvlm.image.dataset` reads back.

Hostile input (:mod:`.inputs`): bad ``--fs``/``--size``/``--num-proc`` are refused before any work; a
recording with no scored 30-s epoch (too short, all ``?``, labels that pair with nothing) is skipped
with a warning, and an input where none yields one is refused (exit 2, nothing written); two
recordings the readers would name alike (``subjA/night.edf``, ``subjB/night.edf``) are named by their
path relative to ``--input``. User errors exit 2 with one line on stderr.

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
from psgvlm.provenance import provenance, read_json
from psgvlm.splits import SPLIT_KINDS
from psgvlm.stages import STAGES, UNSCORED, stage_counts

from .inputs import (
    NoEpochsError,
    check_options,
    check_sfreq,
    clean_stale,
    no_epoch_reason,
    relative_id,
    shard_name,
    unique_ids,
)
from .workers import join_preloads, preload, release_freed_memory, render_images, reusing_freed_memory
from .write import SHARD_FILE, finish, relabel_shard, write_dataset, write_shard

# Target rate per dataset when --fs is not given: the rate of the dataset's EEG (DESIGN section 3).
TARGET_SFREQ: dict[str, float] = {
    "isruc": 200.0, "mass": 256.0, "shhs": 125.0, "sleepedf": 100.0, "dreams": 200.0, "prerau": 100.0,
}


class DatasetExistsError(FileExistsError):
    pass


# ------------------------------------------------------------------------------------------------
# One recording
# ------------------------------------------------------------------------------------------------
def read_for_dataset(fmt: str, job: dict, *, channels: list[str] | None, order: list[str] | None,
                     transform=None):
    """Read one recording with only the channels the dataset renders, when that is known.

    ``channels`` (the user's list) is read as asked, a missing one an error naming what is there.
    Otherwise the dataset's order so far, or the format's default channels, are read when all are
    present; else (or with a ``transform``, which may use any channel) every signal is read and
    :func:`resolve_channels` picks. A night's 20 signals are ~1 GB as float64 while being read.
    """
    from psgvlm.io.channels import DATASET_CHANNELS
    from psgvlm.io.readers import read_recording

    if channels:
        return read_recording(fmt, **job, channels=list(channels))
    wanted = None if transform is not None else (order or DATASET_CHANNELS.get(fmt))
    if wanted:
        try:
            return read_recording(fmt, **job, channels=list(wanted))
        except ValueError:
            pass  # one is absent (or the file is bad: the full read below says so)
    return read_recording(fmt, **job)


def resolve_channels(rec, channels: list[str] | None, fmt: str) -> list[str]:
    """The channel order to render: the requested list, else the dataset default, else all EEG/EOG/EMG."""
    if channels:
        missing = [c for c in channels if c not in rec.ch_names and c not in [ch.name for ch in rec.channels]]
        if missing:
            raise ValueError(
                f"{rec.source}: requested channel(s) {missing} not in recording; available: {rec.ch_names}"
            )
        return [rec.channel(c).canonical for c in channels]
    from psgvlm.io.channels import DATASET_CHANNELS, pick_default_channels

    default = DATASET_CHANNELS.get(fmt)
    if default:
        present = [c for c in default if c in rec.ch_names]
        if present:
            return present
    return list(pick_default_channels(rec))


def cut_recording(rec, *, channels: list[str], sfreq: float):
    """Resampled 30-s epochs of ``channels`` and the recording's summary for ``meta.json``.

    Returns ``(x (n_epochs, n_chans, n_times) float32 raw units, stages or None, starts_s, summary)``;
    the caller may drop ``rec`` afterwards (the night's signals are the largest thing in memory).
    """
    import warnings as _w

    from psgvlm.signal.epochs import epochs_from_recording, resample_plan

    with _w.catch_warnings(record=True) as caught:
        _w.simplefilter("always")
        x, stages, starts_s = epochs_from_recording(rec, channels, sfreq)
    for w in caught:  # shown once to the user and kept in meta.json
        _w.warn_explicit(w.message, w.category, w.filename, w.lineno)
    summary = {
        "recording": rec.recording, "subject": rec.subject, "dataset": rec.dataset, "source": rec.source,
        "meta": rec.meta,
        "channels": {c: {"name": rec.channel(c).name, "sfreq": rec.channel(c).sfreq,
                         "modality": rec.channel(c).modality} for c in channels},
        "resample": resample_plan(rec, channels, sfreq),
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
    x = scale_epochs(x, [summary["channels"][c]["modality"] for c in channels], settings, out=x)
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


def discover_recordings(fmt: str, input: Path, *, hypnogram=None, scorer: int | None = None) -> list[dict]:
    """Reader jobs (``{"path", "hypnogram", ...}``): a dataset folder's recordings, or the one file."""
    from psgvlm.io.readers import find_recordings

    if not input.exists():
        raise FileNotFoundError(f"input {str(input)!r} does not exist")
    if input.is_dir():
        if hypnogram is not None:
            raise ValueError("--hypnogram goes with a single recording file, not a folder")
        jobs = find_recordings(fmt, input)
        if not jobs:
            raise FileNotFoundError(f"no {fmt} recordings found under {input}")
    else:
        jobs = [{"path": input, "hypnogram": hypnogram}]
    opts = {} if scorer is None else {"scorer": scorer}
    return [{**j, **opts} for j in jobs]


def render_job(fmt: str, job: dict, *, channels: list[str] | None, order: list[str] | None,
               sfreq: float | None, settings, label_channels: bool = False, transform=None, num_proc: int = 1,
               progress: bool = True) -> tuple[dict, dict, float]:
    """Read, cut and render one recording of a dataset being built.

    Returns ``(rows, done, sfreq)``: the rows (:func:`render_rows`), ``{"summary", "dropped",
    "channels"}`` for ``done.json``, and the target rate (``sfreq``, else the recording's).
    Raises :class:`NoEpochsError` (the reason) when the recording has no scored 30-s epoch.
    """
    with reusing_freed_memory():  # reading and cutting allocate and free ~2 GB of arrays
        rec = read_for_dataset(fmt, job, channels=channels, order=order, transform=transform)
        if transform is not None:
            rec = transform(rec)
        chans = resolve_channels(rec, channels or order, fmt)
        if order is not None and chans != order:
            raise ValueError(f"{rec.source}: channels {chans} differ from the dataset's order {order}")
        if sfreq is None:
            eeg = [c.sfreq for c in rec.channels if c.modality == "EEG"]
            sfreq = max(eeg) if eeg else max(c.sfreq for c in rec.channels)
        x, stages, starts_s, summary = cut_recording(rec, channels=chans, sfreq=sfreq)
        reason = no_epoch_reason(rec, len(x), stages)
        if reason:
            raise NoEpochsError(reason)
        del rec  # the raw night is no longer needed while rendering
    rec_settings = replace(settings, labels=tuple(chans)) if label_channels else settings
    rows, dropped = render_rows(x, stages, starts_s, summary, channels=chans, settings=rec_settings,
                                num_proc=num_proc, progress=progress)
    return rows, {"summary": summary, "dropped": dropped, "channels": chans}, sfreq


def build_dataset(*, fmt: str, input, out, hypnogram=None, channels: list[str] | None = None,
                  settings=None, sfreq: float | None = None, split: str = "subject", split_seed: int = 0,
                  num_proc: int = 1, overwrite: bool = False, transform=None, scorer: int | None = None,
                  label_channels: bool = False, progress: bool = True) -> dict:
    """Render recordings to ``out`` as a DatasetDict + ``meta.json``; returns the meta dict.

    Parameters
    ----------
    fmt : str
        Reader name (a key of ``psgvlm.io.readers.READERS``).
    input : path
        A dataset folder (recordings discovered as the dataset lays them out) or one recording file.
    out : path
        Output folder; must not hold a finished dataset unless ``overwrite``.
    hypnogram : path, optional
        Label file for a single-file ``input`` (generic EDF, Sleep-EDF pair...).
    channels : list of str, optional
        Canonical channel names in band order (top to bottom); default: the dataset's order.
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
    label_channels : bool
        Draw each band's channel name in a left margin (``settings.labels`` set to the channel order).
    """
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
    jobs = discover_recordings(fmt, input, hypnogram=hypnogram, scorer=scorer)

    target = sfreq if sfreq is not None else TARGET_SFREQ.get(fmt)
    run_settings = {"format": fmt, "channels": channels, "sfreq": target, "render": settings.as_dict(),
                    "renderer_version": RENDERER_VERSION, "scorer": scorer, "label_channels": label_channels,
                    "transform": getattr(transform, "description", None if transform is None else repr(transform))}
    key = _settings_hash(run_settings)
    partial = out.parent / f".{out.name}.partial"
    clean_stale(out)
    partial.mkdir(parents=True, exist_ok=True)
    (partial / "settings.json").write_text(json.dumps(run_settings, indent=2, default=str))

    try:
        dones, shards, rel_ids, skipped, order, target = _render_all(
            fmt, jobs, input, partial, key, target, tqdm, channels=channels, settings=settings,
            label_channels=label_channels, transform=transform, num_proc=num_proc, progress=progress)
        run_settings["sfreq"] = target
    except BaseException:
        # finished recordings stay for a resume; a run that finished none leaves nothing behind
        if not any(partial.glob("rec-*")):
            shutil.rmtree(partial, ignore_errors=True)
        raise

    join_preloads()
    summaries, dropped_all = _unique_names(dones, shards, rel_ids)
    subjects = sorted({s["subject"] for s in summaries})
    if split == "subject" and len(subjects) < 3:
        print(f"psgvlm render: {len(subjects)} subject(s) < 3, so no subject-wise split: one split 'all'")
        split = "none"
    tmp_out = out.parent / f".{out.name}.tmp-{os.getpid()}"
    split_meta, counts, labelled = write_dataset(shards, subjects, tmp_out,
                                                 split=split, split_seed=split_seed, progress=progress)
    first = summaries[0]
    meta = {
        "kind": META_KIND, "version": META_VERSION, "format": fmt,
        "settings": {**run_settings, "split": split, "split_seed": split_seed},
        "channels": order,
        "modalities": {c: first["channels"][c]["modality"] for c in order},
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
                progress: bool, **render_kw):
    """Render (or resume) every job's shard under ``partial``; skip those with no epoch (warned).

    Returns ``(dones, shards, rel_ids, skipped, order, target)`` of the rendered recordings in job
    order; raises :class:`NoEpochsError` when none yields an epoch.
    """
    dones, shards, rel_ids, skipped, order = [], [], [], [], None
    for job in tqdm(jobs, desc=f"render {fmt}", unit="rec", disable=not progress):
        rel = relative_id(job["path"], input)
        shard = partial / shard_name(rel, key)
        done = _finished(shard)  # resume: finished before a crash/interrupt
        if done is None:
            try:
                rows, done, target = render_job(fmt, job, order=order, sfreq=target, progress=progress, **render_kw)
            except NoEpochsError as err:  # one such file must not sink the folder
                print(f"psgvlm render: WARNING skipped {rel} ({job['path']}): {err}", file=sys.stderr)
                skipped.append({"recording": rel, "path": str(job["path"]), "reason": str(err)})
                continue
            join_preloads()
            write_shard(shard, rows, done)
            del rows
            release_freed_memory()
        elif target is None and done["summary"].get("resample"):
            target = done["summary"]["resample"][0]["target_sfreq"]  # the rate the killed run chose
        dones.append(done)
        shards.append(shard)
        rel_ids.append(rel)
        order = order or done["channels"]
    if not dones:
        reasons = "; ".join(f"{s['recording']}: {s['reason']}" for s in skipped[:3])
        more = f"; and {len(skipped) - 3} more" if len(skipped) > 3 else ""
        raise NoEpochsError(f"input {str(input)!r}: no recording yields a 30-s epoch to render ({reasons}{more})")
    return dones, shards, rel_ids, skipped, order, target


def _finished(shard: Path) -> dict | None:
    """A finished shard's ``done.json``, or None (absent, or left unreadable by a killed run: redone)."""
    if not ((shard / "done.json").is_file() and (shard / SHARD_FILE).is_file()):
        return None
    try:
        done = read_json(shard / "done.json")
    except (OSError, ValueError):
        return None
    return done if isinstance(done, dict) and {"summary", "dropped", "channels"} <= set(done) else None


def _unique_names(dones: list[dict], shards: list[Path], rel_ids: list[str]) -> tuple[list[dict], list[dict]]:
    """Summaries and dropped epochs under unique recording ids (:func:`unique_ids`); shards relabelled to match."""
    summaries, dropped = [], []
    for done, shard, (rec_id, subject) in zip(dones, shards, unique_ids([d["summary"] for d in dones], rel_ids)):
        summary = done["summary"]
        if (rec_id, subject) != (summary["recording"], summary["subject"]):
            relabel_shard(shard, recording=rec_id, subject=subject)
        summaries.append({**summary, "recording": rec_id, "subject": subject})
        dropped += [{**d, "recording": rec_id} for d in done["dropped"]]
    return summaries, dropped


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
    p.add_argument("--labels", action="store_true", help="draw channel names in the left margin")
    p.add_argument("--scaling", default="minmax", choices=SCALINGS,
                   help="minmax: each epoch and channel stretched to its band (the paper); physical: fixed "
                        "microvolt range per modality, clipped, amplitude kept; recording: range from the "
                        "channel's median epoch in the night, relative amplitude kept (default %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace a finished dataset at --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--transform", metavar="SPEC.json",
                   help="signal transform applied after reading (psgvlm.signal.corruption.save_transform)")
    args = p.parse_args(argv)
    try:
        check_options(fs=args.fs, size=args.size, num_proc=args.num_proc)
        transform = load_transform(args.transform) if args.transform else None
        settings = replace(RenderSettings(), size=args.size, scaling=args.scaling)
        meta = build_dataset(fmt=args.format, input=args.input, out=args.out, hypnogram=args.hypnogram,
                             channels=args.channels, settings=settings, sfreq=args.fs, split=args.split,
                             split_seed=args.split_seed, num_proc=args.num_proc, overwrite=args.overwrite,
                             scorer=args.scorer, label_channels=args.labels, progress=not args.quiet,
                             transform=transform)
    except (ValueError, FileNotFoundError, FileExistsError, OSError) as err:
        print(f"psgvlm render: error: {err}", file=sys.stderr)
        return 2  # a user error: one line, no traceback
    sizes = ", ".join(f"{k}: {v['n_epochs']} epochs / {v['n_subjects']} subjects" for k, v in meta["counts"].items())
    print(f"wrote {args.out} ({sizes}; {meta['dropped']['n']} epochs dropped {meta['dropped']['by_reason']}) "
          f"in {meta['build_s']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
