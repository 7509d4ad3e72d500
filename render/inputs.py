"""Hostile input to ``psgvlm render``: option bounds, recording ids, recordings that yield no epoch.

- :func:`check_options`: ``--fs``, ``--size`` and ``--num-proc`` are checked before any work, and a
  bad one is refused naming the flag, the value and what is allowed.
- :func:`relative_id` / :func:`shard_name`: a recording's shard is named by its id, which the finders
  take from its path relative to ``--input`` (:func:`psgvlm.io.readers.find_recordings`: ``subjA/night``,
  ``isruc-sg3-1``), so two files named alike in different folders are two recordings by construction.
- :func:`band_order` / :func:`map_bands` / :func:`blank_everywhere`: the bands every image has, the
  recording's channel in each (None: drawn blank), and bands no recording fills.
- :class:`NoEpochsError` / :func:`no_epoch_reason`: why a recording has nothing to render.
- :func:`clean_stale`: temporary folders and shards left beside ``--out`` by runs that were killed.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import shutil
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


def band_order(fmt: str, channels: list[str] | None) -> list[str] | None:
    """The band order known before any recording is read: the user's ``channels`` as canonical names
    (``C3-A2`` -> ``C3``), else the montage of a dataset in :data:`psgvlm.io.channels.MONTAGE_DATASETS`;
    None: the first recording's channels set it."""
    from psgvlm.io.channels import DATASET_CHANNELS, MONTAGE_DATASETS, lookup

    if channels:
        bands = [lookup(c, dataset=fmt)[0] for c in channels]
        dup = sorted({b for b in bands if bands.count(b) > 1})
        if dup:
            raise ValueError(f"--channels {list(channels)} name the channel(s) {dup} twice")
        return bands
    return list(DATASET_CHANNELS[fmt]) if fmt in MONTAGE_DATASETS else None


def first_bands(rec, fmt: str) -> list[str]:
    """The band order the first recording sets when :func:`band_order` gives none: the format's default
    channels it has (DREAMS text excerpts: one), else :func:`psgvlm.io.channels.pick_default_channels`."""
    from psgvlm.io.channels import DATASET_CHANNELS, pick_default_channels

    present = [c for c in DATASET_CHANNELS.get(fmt, ()) if c in rec.ch_names]
    return present or list(pick_default_channels(rec))


def map_bands(rec, bands: list[str], channels: list[str] | None = None) -> list[str | None]:
    """The recording's channel (canonical name) drawn in each band, None where it has none.

    A band is filled by the recording's channel of that canonical name, else (for a user's
    ``channels``) by the channel with the file label the user gave.
    """
    names = {c.name: c.canonical for c in rec.channels}
    asked = list(channels) if channels else [None] * len(bands)
    return [b if b in rec.ch_names else names.get(a) for b, a in zip(bands, asked)]


def blank_everywhere(bands: list[str], summaries: list[dict]) -> list[str]:
    """Bands no rendered recording had a channel for (most likely a misspelt ``--channels`` name)."""
    return [b for b in bands if all(b in s.get("missing_channels", ()) for s in summaries)]


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
