"""Hostile input to ``psgvlm render``: option bounds, recording ids, recordings that yield no epoch.

- :func:`check_options`: ``--fs``, ``--size`` and ``--num-proc`` are checked before any work, and a
  bad one is refused naming the flag, the value and what is allowed.
- :func:`relative_id` / :func:`shard_name`: a recording is known by its path relative to ``--input``
  (``subjA/night``), so two files named alike in different folders never share a shard.
- :func:`unique_ids`: the readers' recording ids are kept unless two recordings would share one;
  then the relative path decides (and the subject, where the reader named it after the file).
- :class:`NoEpochsError` / :func:`no_epoch_reason`: why a recording has nothing to render.
- :func:`clean_stale`: temporary folders and shards left beside ``--out`` by runs that were killed.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np

from psgvlm.locks import pid_alive
from psgvlm.stages import UNSCORED

# PSG EEG is recorded at 100-1024 Hz (2048 Hz on some research amplifiers). A 30-s epoch at 4096 Hz
# is already 122,880 samples per channel drawn into a few hundred pixel columns; a higher rate only
# costs memory (1e7 Hz would need ~56 GiB for one night), so it is refused as a typo.
FS_MAX_HZ = 4096.0
# Each render worker is a forked copy of the building process; beyond a few hundred the forks cost
# more than they render on any machine this runs on.
NUM_PROC_MAX = 256
SIZE_RANGE = (16, 4096)  # pixels, the renderer's own bounds (RenderSettings.size)


class NoEpochsError(ValueError):
    """A recording (or a whole input) has no 30-s epoch to render."""


def check_sfreq(value, name: str = "sfreq") -> float:
    """``value`` as a float rate in Hz, or ValueError naming ``name``, the value and the allowed range."""
    try:
        fs = float(value)
    except (TypeError, ValueError):
        fs = math.nan
    if not (math.isfinite(fs) and 0 < fs <= FS_MAX_HZ):
        raise ValueError(f"{name} {value!r}: must be a finite rate in Hz with 0 < {name} <= {FS_MAX_HZ:g}")
    return fs


def _check_int(name: str, value, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{name} {value!r}: must be an integer in [{lo}, {hi}]")


def check_options(*, fs, size: int, num_proc: int) -> None:
    """Refuse a bad ``--fs`` / ``--size`` / ``--num-proc`` (ValueError naming the flag) before any work."""
    if fs is not None:
        check_sfreq(fs, "--fs")
    _check_int("--size", size, *SIZE_RANGE)
    _check_int("--num-proc", num_proc, 1, NUM_PROC_MAX)


def relative_id(path, input) -> str:
    """``path`` relative to ``input`` without its extension (``subjA/night``); the stem for a file input."""
    path, input = Path(path), Path(input)
    if input.is_dir():
        try:
            return path.relative_to(input).with_suffix("").as_posix()
        except ValueError:  # a label file's finder may point outside; the absolute path is still unique
            return path.with_suffix("").as_posix()
    return path.stem


def shard_name(rel_id: str, key: str) -> str:
    """A folder name unique to ``rel_id``: readable part + hash (``night 1`` and ``night_1`` differ)."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", rel_id)[-60:]
    digest = hashlib.sha256(rel_id.encode()).hexdigest()[:10]
    return f"rec-{readable}-{digest}-{key}"


def unique_ids(summaries: list[dict], rel_ids: list[str]) -> list[tuple[str, str]]:
    """``(recording, subject)`` per recording: the reader's, unless two recordings share a recording id.

    Those that would collide are named by their path relative to ``--input``; their subject too when
    the reader named the subject after the file (subject == recording id), else the reader's subject.
    """
    counts = Counter(s["recording"] for s in summaries)
    ids = []
    for s, rel in zip(summaries, rel_ids):
        if counts[s["recording"]] > 1:
            ids.append((rel, rel if s["subject"] == s["recording"] else s["subject"]))
        else:
            ids.append((s["recording"], s["subject"]))
    if len({r for r, _ in ids}) != len(ids):  # a reader id equal to another's relative path
        ids = [(rel, s) for rel, (_, s) in zip(rel_ids, ids)]
    return ids


def no_epoch_reason(rec, n_epochs: int, stages) -> str | None:
    """Why ``rec`` yields no epoch to render (None when it yields some)."""
    if n_epochs and (stages is None or np.any(stages != UNSCORED)):
        return None
    if n_epochs:
        return f"every one of its {n_epochs} epochs is unscored ('?')"
    if rec.duration_s < 30.0:
        return f"its signal lasts {rec.duration_s:.1f} s, less than one 30-s epoch"
    if rec.stages is not None:
        hyp = rec.pairing.get("hypnogram", "its hypnogram")
        return f"{hyp} pairs with no 30-s epoch of the {rec.duration_s:.0f}-s signal (labels outside it in time)"
    return "no 30-s epoch"


def clean_stale(out: Path, key: str | None = None) -> None:
    """Remove what dead runs left beside ``out`` (called under ``out``'s lock, so no live run owns them).

    ``.OUT.tmp-PID`` / ``.OUT.old-PID`` folders of dead processes; in ``.OUT.partial/``, half-written
    shards (``*.tmp``) and, given the settings hash ``key``, shards rendered under other settings
    (they can never be resumed). Finished shards of ``key`` stay: the run resumes from them.
    """
    for p in out.parent.glob(f".{out.name}.*-*"):
        m = re.fullmatch(rf"\.{re.escape(out.name)}\.(tmp|old)-(\d+)", p.name)
        if m and int(m.group(2)) != os.getpid() and not pid_alive(m.group(2)):
            shutil.rmtree(p, ignore_errors=True)
    partial = out.parent / f".{out.name}.partial"
    if partial.is_dir():
        for p in partial.iterdir():
            if p.is_dir() and (p.name.endswith(".tmp") or (key is not None and not p.name.endswith(f"-{key}"))):
                shutil.rmtree(p, ignore_errors=True)
