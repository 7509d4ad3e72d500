"""Recordings -> a Hugging Face dataset of 336x336 epoch images, with splits and provenance.

    psgvlm render --format isruc --input data/isruc --out data/isruc_img --num-proc 2
    python -m render --format sleepedf --input SC4001E0-PSG.edf --hypnogram SC4001EC-Hypnogram.edf --out x

What it writes (``DIR``): ``datasets.DatasetDict.save_to_disk`` output (splits train/validation/test
by subject, or ``all``), and ``DIR/meta.json`` (settings, channel order, split manifest, per-split
stage counts, dropped epochs with reasons, per-recording pairing reports, versions, git SHA).

Crash safety: each finished recording is saved under ``.DIR.partial/`` beside ``DIR`` with the
settings hash; a re-run with the same settings skips them (resume). The final dataset is written to
a temporary folder and renamed into place, so ``DIR`` is either absent or complete.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

from psgvlm.image.dataset import META_KIND, META_VERSION, features, is_dataset_dir
from psgvlm.provenance import provenance, read_json, write_json_atomic
from psgvlm.splits import SPLIT_KINDS, split_epochs, split_subjects
from psgvlm.stages import STAGES, UNSCORED, stage_counts

# Target rate per dataset when --fs is not given: the rate of the dataset's EEG (DESIGN section 3).
TARGET_SFREQ: dict[str, float] = {
    "isruc": 200.0, "mass": 256.0, "shhs": 125.0, "sleepedf": 100.0, "dreams": 200.0, "prerau": 100.0,
}
PNG_COMPRESS_LEVEL = 1  # PNG stays lossless; level 1 encodes ~5x faster than 6 for ~15% more bytes


class DatasetExistsError(FileExistsError):
    pass


# ------------------------------------------------------------------------------------------------
# Rows
# ------------------------------------------------------------------------------------------------
def _encode_png(img: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buf.getvalue()


def _render_chunk(args) -> list[bytes]:
    """Worker: render epochs ``[lo, hi)`` of a scaled-epoch memmap to PNG bytes."""
    from psgvlm.image.renderer import render_epoch

    path, shape, lo, hi, settings = args
    x = np.load(path, mmap_mode="r")
    assert x.shape == shape
    return [_encode_png(render_epoch(np.asarray(x[i]), settings)) for i in range(lo, hi)]


# ------------------------------------------------------------------------------------------------
# One recording
# ------------------------------------------------------------------------------------------------
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


def render_rows(x, stages, starts_s, summary, *, channels: list[str], settings, pool=None, n_chunks: int = 1,
                progress: bool = True):
    """Render cut epochs to dataset rows; returns ``(rows, dropped)``.

    Unscored epochs are dropped with reason ``unscored``; unlabelled recordings keep every epoch
    with label None (they can be staged but not trained on). ``x`` is scaled in place.
    """
    from tqdm.auto import tqdm

    from psgvlm.signal.epochs import minmax_scale

    n_total = len(x)
    keep = np.arange(n_total) if stages is None else np.flatnonzero(stages != UNSCORED)
    dropped = [{"recording": summary["recording"], "epoch": int(i), "start_s": float(starts_s[i]),
                "reason": "unscored"} for i in np.setdiff1d(np.arange(n_total), keep)]
    if len(keep) < n_total:
        x = x[keep]
    x = minmax_scale(x, out=x)
    images: list[bytes] = []
    if len(x):
        with tempfile.TemporaryDirectory(prefix="psgvlm-render-") as tmp:
            # workers read the epochs from a memory map instead of receiving pickled copies
            path = os.path.join(tmp, "epochs.npy")
            np.save(path, x)
            shape = x.shape
            del x
            bounds = np.linspace(0, len(keep), max(1, n_chunks) + 1).astype(int)
            jobs = [(path, shape, int(lo), int(hi), settings) for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo]
            results = pool.map(_render_chunk, jobs) if pool is not None else map(_render_chunk, jobs)
            with tqdm(total=len(keep), desc=f"render {summary['recording']}", unit="epoch", disable=not progress,
                      leave=False) as bar:
                for chunk in results:
                    images.extend(chunk)
                    bar.update(len(chunk))
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


def render_recording(rec, *, channels: list[str], sfreq: float, settings, pool=None, n_chunks: int = 1,
                     progress: bool = True):
    """Cut and render one recording; returns ``(rows, dropped, summary)`` (see :func:`render_rows`)."""
    x, stages, starts_s, summary = cut_recording(rec, channels=channels, sfreq=sfreq)
    rows, dropped = render_rows(x, stages, starts_s, summary, channels=channels, settings=settings, pool=pool,
                                n_chunks=n_chunks, progress=progress)
    return rows, dropped, summary


# ------------------------------------------------------------------------------------------------
# The whole dataset
# ------------------------------------------------------------------------------------------------
def _settings_hash(d: dict) -> str:
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


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
        Worker processes for rendering.
    transform : callable, optional
        ``transform(rec) -> Recording`` applied after reading (corruption, channel dropping).
    scorer : int, optional
        Which scorer's labels for datasets with several (ISRUC: 1 or 2).
    label_channels : bool
        Draw each band's channel name in a left margin (``settings.labels`` set to the channel order).
    """
    import datasets

    from psgvlm.image.renderer import RENDERER_VERSION, RenderSettings
    from psgvlm.io.readers import READERS, find_recordings, read_recording

    t0 = time.perf_counter()
    if not progress:
        datasets.disable_progress_bars()
    if fmt not in READERS:
        raise ValueError(f"unknown format {fmt!r}; choose from {sorted(READERS)}")
    if split not in SPLIT_KINDS:
        raise ValueError(f"unknown split {split!r}; choose from {SPLIT_KINDS}")
    if num_proc < 1:
        raise ValueError(f"num_proc must be >= 1, got {num_proc!r}")
    settings = settings or RenderSettings()
    input, out = Path(input), Path(out)
    if not input.exists():
        raise FileNotFoundError(f"input {str(input)!r} does not exist")
    if out.exists():
        if is_dataset_dir(out) and not overwrite:
            raise DatasetExistsError(f"{out} already holds a finished dataset; pass --overwrite to replace it")
        if not is_dataset_dir(out) and any(out.iterdir()):
            raise FileExistsError(f"{out} exists and is not a psgvlm dataset; choose an empty or new folder")

    opts = {} if scorer is None else {"scorer": scorer}
    if input.is_dir():
        if hypnogram is not None:
            raise ValueError("--hypnogram goes with a single recording file, not a folder")
        jobs = find_recordings(fmt, input)
        if not jobs:
            raise FileNotFoundError(f"no {fmt} recordings found under {input}")
    else:
        jobs = [{"path": input, "hypnogram": hypnogram}]
    jobs = [{**j, **opts} for j in jobs]

    target = float(sfreq) if sfreq else TARGET_SFREQ.get(fmt)
    run_settings = {"format": fmt, "channels": channels, "sfreq": target, "render": settings.as_dict(),
                    "renderer_version": RENDERER_VERSION, "scorer": scorer, "label_channels": label_channels,
                    "transform": getattr(transform, "description", None if transform is None else repr(transform))}
    key = _settings_hash(run_settings)
    partial = out.parent / f".{out.name}.partial"
    partial.mkdir(parents=True, exist_ok=True)
    (partial / "settings.json").write_text(json.dumps(run_settings, indent=2, default=str))

    summaries, dropped_all = [], []
    order = None
    try:
        from tqdm.auto import tqdm

        for job in tqdm(jobs, desc=f"render {fmt}", unit="rec", disable=not progress):
            name = Path(job["path"]).stem.replace(" ", "_")
            shard = partial / f"rec-{name}-{key}"
            if (shard / "done.json").is_file():  # resume: finished before a crash/interrupt
                done = read_json(shard / "done.json")
                summaries.append(done["summary"])
                dropped_all += done["dropped"]
                order = order or done["channels"]
                continue
            # read only the requested channels (memory: a night of 20 signals is ~1 GB as float64)
            rec = read_recording(fmt, **job, **({"channels": list(channels)} if channels else {}))
            if transform is not None:
                rec = transform(rec)
            chans = resolve_channels(rec, channels or order, fmt)
            if order is None:
                order = chans
            elif chans != order:
                raise ValueError(f"{rec.source}: channels {chans} differ from the dataset's order {order}")
            if target is None:
                target = max(c.sfreq for c in rec.channels if c.modality == "EEG") if any(
                    c.modality == "EEG" for c in rec.channels) else max(c.sfreq for c in rec.channels)
                run_settings["sfreq"] = target
            rec_settings = replace(settings, labels=tuple(chans)) if label_channels else settings
            x, stages, starts_s, summary = cut_recording(rec, channels=chans, sfreq=target)
            del rec  # the raw night is no longer needed while rendering
            # workers live for one recording: memory they held is returned before the next night
            with ProcessPoolExecutor(num_proc) if num_proc > 1 else contextlib.nullcontext() as pool:
                rows, dropped = render_rows(x, stages, starts_s, summary, channels=chans, settings=rec_settings,
                                            pool=pool, n_chunks=4 * num_proc, progress=progress)
            del x
            tmp = shard.with_name(shard.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            datasets.Dataset.from_dict(rows, features=features()).save_to_disk(str(tmp))
            write_json_atomic(tmp / "done.json", {"summary": summary, "dropped": dropped, "channels": chans})
            os.replace(tmp, shard)
            summaries.append(summary)
            dropped_all += dropped
            del rows
            _release_freed_memory()
    except BaseException:
        # finished recordings stay for a resume; a run that finished none leaves nothing behind
        if not any(partial.glob("rec-*")):
            shutil.rmtree(partial, ignore_errors=True)
        raise

    # -- splits -----------------------------------------------------------------------------------
    parts = [datasets.load_from_disk(str(partial / f"rec-{Path(j['path']).stem.replace(' ', '_')}-{key}"))
             for j in jobs]
    full = datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    subjects = sorted({s["subject"] for s in summaries})
    if split == "subject" and len(subjects) < 3:
        print(f"psgvlm render: {len(subjects)} subject(s) < 3, so no subject-wise split: one split 'all'")
        split = "none"
    unlabelled = any(lbl is None for lbl in full["label"][:1]) if len(full) else False
    if split == "subject":
        manifest = split_subjects(subjects, seed=split_seed)
        subj = np.asarray(full["subject"])
        dd = datasets.DatasetDict({
            name: full.select(np.flatnonzero(np.isin(subj, manifest[name]))) for name in manifest
        })
        split_meta = {"kind": "subject", "seed": split_seed, **manifest}
    elif split == "epoch":
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            idx = split_epochs(len(full), seed=split_seed)
        print("psgvlm render: WARNING epoch-level split puts epochs of the same subject in train and test "
              "(subject leakage); metrics will be optimistic", file=sys.stderr)
        dd = datasets.DatasetDict({name: full.select(ix) for name, ix in idx.items()})
        split_meta = {"kind": "epoch", "seed": split_seed, "leaks_subjects": True,
                      **{name: sorted(set(dd[name]["subject"])) for name in idx}}
    else:
        dd = datasets.DatasetDict({"all": full})
        split_meta = {"kind": "none", "all": subjects}

    counts = {}
    for name, ds in dd.items():
        labels = np.asarray([v for v in ds["label"] if v is not None], dtype=int)
        counts[name] = stage_counts(labels) if len(labels) else {}
        counts[name].pop("UNS", None)
        counts[name]["n_subjects"] = len(set(ds["subject"]))
        counts[name]["n_epochs"] = len(ds)

    first = summaries[0]
    meta = {
        "kind": META_KIND, "version": META_VERSION, "format": fmt,
        "settings": {**run_settings, "split": split, "split_seed": split_seed},
        "channels": order,
        "modalities": {c: first["channels"][c]["modality"] for c in order},
        "sfreq": target, "epoch_s": 30.0, "size": settings.size,
        "split": split_meta, "counts": counts, "labelled": not unlabelled,
        "dropped": {"n": len(dropped_all), "by_reason": _by_reason(dropped_all), "epochs": dropped_all},
        "recordings": summaries,
        "input": {"path": str(input), "hypnogram": None if hypnogram is None else str(hypnogram)},
        "provenance": provenance(),
        "build_s": None,
    }

    # -- atomic write -----------------------------------------------------------------------------
    tmp_out = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp_out, ignore_errors=True)
    shard_mb = "200MB"
    dd.save_to_disk(str(tmp_out), max_shard_size=shard_mb)
    meta["build_s"] = round(time.perf_counter() - t0, 3)
    write_json_atomic(tmp_out / "meta.json", meta)
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
        os.replace(tmp_out, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp_out, out)
    shutil.rmtree(partial, ignore_errors=True)
    return meta


def _release_freed_memory() -> None:
    """Hand freed heap pages back to the OS (glibc keeps them otherwise, so RSS would creep per night)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


def _by_reason(dropped: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in dropped:
        out[d["reason"]] = out.get(d["reason"], 0) + 1
    return out


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    from psgvlm.image.renderer import RenderSettings
    from psgvlm.io.readers import READERS
    from psgvlm.signal.corruption import load_transform

    p = argparse.ArgumentParser(prog="psgvlm render", description=__doc__.split("\n\n")[0])
    p.add_argument("--format", required=True, choices=sorted(READERS), help="dataset / file format")
    p.add_argument("--input", required=True, help="dataset folder or one recording file")
    p.add_argument("--hypnogram", help="label file for a single recording")
    p.add_argument("--out", required=True, help="output dataset folder")
    p.add_argument("--channels", nargs="+", help="canonical channel names, top to bottom")
    p.add_argument("--size", type=int, default=RenderSettings().size, help="image side, pixels (default %(default)s)")
    p.add_argument("--fs", type=float, help="target sampling rate, Hz (default: per dataset)")
    p.add_argument("--num-proc", type=int, default=1, help="render worker processes")
    p.add_argument("--split", default="subject", choices=SPLIT_KINDS)
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--scorer", type=int, help="scorer for datasets with several (ISRUC: 1 or 2)")
    p.add_argument("--labels", action="store_true", help="draw channel names in the left margin")
    p.add_argument("--overwrite", action="store_true", help="replace a finished dataset at --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--transform", metavar="SPEC.json",
                   help="signal transform applied after reading (psgvlm.signal.corruption.save_transform)")
    args = p.parse_args(argv)
    try:
        transform = load_transform(args.transform) if args.transform else None
        settings = replace(RenderSettings(), size=args.size)
        meta = build_dataset(fmt=args.format, input=args.input, out=args.out, hypnogram=args.hypnogram,
                             channels=args.channels, settings=settings, sfreq=args.fs, split=args.split,
                             split_seed=args.split_seed, num_proc=args.num_proc, overwrite=args.overwrite,
                             scorer=args.scorer, label_channels=args.labels, progress=not args.quiet,
                             transform=transform)
    except (ValueError, FileNotFoundError, FileExistsError, OSError) as err:
        print(f"psgvlm render: error: {err}", file=sys.stderr)
        return 1
    sizes = ", ".join(f"{k}: {v['n_epochs']} epochs / {v['n_subjects']} subjects" for k, v in meta["counts"].items())
    print(f"wrote {args.out} ({sizes}; {meta['dropped']['n']} epochs dropped {meta['dropped']['by_reason']}) "
          f"in {meta['build_s']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
