"""Writing a rendered dataset: one Arrow shard per finished recording, then the splits, then the rename.

The shards (``.DIR.partial/rec-*/rows.arrow`` + ``done.json``) make a build resumable; the final
folder is written by ``datasets`` (``DatasetDict.save_to_disk``) beside ``DIR`` and renamed into
place by :func:`finish`, so ``DIR`` is either absent or complete.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from psgvlm.image.dataset import features
from psgvlm.provenance import write_json_atomic
from psgvlm.splits import split_epochs, split_subjects
from psgvlm.stages import stage_counts

SHARD_FILE = "rows.arrow"  # one finished recording's rows (Arrow IPC stream) in .DIR.partial/rec-*/


def rows_table(rows: dict):
    """``rows`` as a ``pyarrow.Table`` of the dataset's schema, built a column at a time."""
    import pyarrow as pa

    schema = features().arrow_schema
    image = pa.StructArray.from_arrays(
        [pa.array([r["bytes"] for r in rows["image"]], pa.binary()),
         pa.array([r["path"] for r in rows["image"]], pa.string())], names=["bytes", "path"])
    return pa.Table.from_arrays([image if f.name == "image" else pa.array(rows[f.name], f.type) for f in schema],
                                schema=schema)


def write_shard(shard: Path, rows: dict, done: dict) -> None:
    """Save one recording's rows (one Arrow IPC stream) and ``done.json`` atomically (temp dir, rename)."""
    import pyarrow as pa

    table = rows_table(rows)
    tmp = shard.with_name(shard.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with pa.OSFile(str(tmp / SHARD_FILE), "wb") as f, pa.ipc.new_stream(f, table.schema) as writer:
        writer.write_table(table)
    write_json_atomic(tmp / "done.json", done)
    shutil.rmtree(shard, ignore_errors=True)
    os.replace(tmp, shard)


def write_dataset(shards: list[Path], subjects: list[str], tmp_out: Path, *, split: str, split_seed: int,
                  progress: bool = True) -> tuple[dict, dict, bool]:
    """Concatenate the recordings' shards, split them and save the DatasetDict to ``tmp_out``.

    Returns ``(split_meta, counts, labelled)``; ``split`` is "subject", "epoch" or "none".
    """
    import datasets

    if not progress:
        datasets.disable_progress_bars()
    info = datasets.DatasetInfo(features=features())
    parts = [datasets.Dataset.from_file(str(s / SHARD_FILE), info=info) for s in shards]
    full = datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]
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
    shutil.rmtree(tmp_out, ignore_errors=True)
    dd.save_to_disk(str(tmp_out), max_shard_size="200MB")
    return split_meta, counts, not unlabelled


def finish(out: Path, tmp_out: Path, meta: dict, t0: float) -> None:
    """Write ``meta.json`` (with the build time) into the written dataset and rename it to ``out``."""
    meta["build_s"] = round(time.perf_counter() - t0, 3)
    write_json_atomic(tmp_out / "meta.json", meta)
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
        os.replace(tmp_out, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp_out, out)
