"""Pairing labels with the signal by time, and assembling the :class:`Recording` a reader returns.

The rule (every format): labels are time intervals in signal seconds; 30-s epochs are cut on a grid
that starts at the first scored instant (``rec.onset_s``); an epoch takes the stage that covers at
least 20 s of it (DREAMS: 4 of 6 five-second slots; 20-s MASS scoring: the 20-s epoch inside it),
otherwise it is unscored. Label epochs past the end of the signal and signal past the last label
are dropped (the unmatched tail); the counts go to ``rec.pairing``, with a readable line in
``pairing["warnings"]`` when the labels run far past the signal.

Overlapping labels: rows with the same stage are merged (their union counts once); rows with different
stages for the same time are refused (naming both rows and the overlap), never resolved by a rule.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from psgvlm.io.hypnograms import MAX_LABEL_S, Hypnogram, check_intervals
from psgvlm.io.recording import Channel, Recording
from psgvlm.stages import EPOCH_S, STAGES, UNSCORED

MIN_COVER_S = 20.0  # seconds of a 30-s epoch one stage must cover to label it (2/3, = 4 of 6 DREAMS slots)
OVERLAP_TOL_S = 1e-3  # overlaps shorter than a millisecond are rounding in the file's times, not overlaps
FAR_PAST_S = 300.0  # labels running this far past the signal's end get a line in pairing["warnings"]


def _stage_name(code: int) -> str:
    return STAGES[code] if 0 <= code < len(STAGES) else "unscored"


def _span(seconds: float) -> str:
    """A duration for people: minutes under an hour, else hours."""
    return f"{seconds / 60:.1f} min" if abs(seconds) < 3600 else f"{seconds / 3600:.1f} h"


def merge_overlaps(onsets_s, durations_s, codes, *, source: str = ""):
    """Sort label intervals by onset and merge overlapping rows of the same stage into their union.

    Parameters
    ----------
    onsets_s, durations_s : array-like of float, shape (n_labels,)
        Label intervals, seconds.
    codes : array-like of int, shape (n_labels,)
        AASM codes (UNSCORED allowed).
    source : str
        Hypnogram file, for messages.

    Returns
    -------
    onsets_s, durations_s, codes : np.ndarray, shape (n_merged,)
        Sorted by onset, no two intervals overlapping.

    Raises
    ------
    ValueError
        When two rows with different stages overlap: names the file, both rows (index in the order
        given, from 0; onset; stage) and the overlapping span.
    """
    on = np.asarray(onsets_s, dtype=float)
    du = np.asarray(durations_s, dtype=float)
    codes = np.asarray(codes, dtype=int)
    order = np.argsort(on, kind="stable")
    out_on: list[float] = []
    out_end: list[float] = []
    out_code: list[int] = []
    last = -1  # row (original index) of the merged interval reaching furthest so far
    for i in order:
        a, b, c = float(on[i]), float(on[i] + du[i]), int(codes[i])
        if out_end and a < out_end[-1] - OVERLAP_TOL_S:
            if c != out_code[-1]:
                j = last
                lo, hi = a, min(b, out_end[-1])
                raise ValueError(
                    f"{source}: overlapping labels with different stages: row {j} (onset {on[j]:g} s, "
                    f"{_stage_name(int(codes[j]))}) and row {i} (onset {a:g} s, {_stage_name(c)}) both "
                    f"cover {lo:g}-{hi:g} s ({hi - lo:g} s); each time may carry one stage"
                )
            if b > out_end[-1]:
                out_end[-1], last = b, i
            continue
        out_on.append(a)
        out_end.append(b)
        out_code.append(c)
        last = i
    merged_on = np.asarray(out_on)
    return merged_on, np.asarray(out_end) - merged_on, np.asarray(out_code, dtype=int)


def pair_by_time(
    onsets_s, durations_s, codes, signal_s: float, *, onset_s: float | None = None,
    epoch_s: float = EPOCH_S, min_cover_s: float = MIN_COVER_S, source: str = "",
) -> tuple[np.ndarray, float, dict]:
    """Turn labelled time intervals into one stage per 30-s epoch, paired with the signal by time.

    Parameters
    ----------
    onsets_s, durations_s : array-like of float
        Label intervals in signal seconds.
    codes : array-like of int
        AASM codes (UNSCORED allowed), one per interval.
    signal_s : float
        Signal duration, seconds (shortest channel).
    onset_s : float, optional
        Start of the epoch grid; default the first interval's onset.
    epoch_s, min_cover_s : float
        Epoch length and the coverage one stage needs to label an epoch.
    source : str
        Hypnogram file, for messages.

    Returns
    -------
    stages : np.ndarray of int8, shape (n_paired,)
    onset_s : float
    pairing : dict
        n_label_epochs, n_signal_epochs, n_paired, dropped_label_epochs, dropped_signal_s,
        n_gap_epochs (no label at all), n_unscored, onset_s, rule, and warnings (list of str: labels
        running more than :data:`FAR_PAST_S` past the signal, in minutes/hours and epochs).

    Raises
    ------
    ValueError
        No labels; an onset or duration that is NaN/inf, beyond :data:`psgvlm.io.hypnograms.MAX_LABEL_S`
        or a duration <= 0 (:func:`psgvlm.io.hypnograms.check_intervals`); overlapping labels with
        different stages (:func:`merge_overlaps`).
    """
    if np.asarray(onsets_s).size == 0:
        raise ValueError(f"{source}: hypnogram holds no sleep-stage labels")
    check_intervals(onsets_s, durations_s, source, min_onset_s=-MAX_LABEL_S)
    onsets, durs, codes = merge_overlaps(onsets_s, durations_s, codes, source=source)
    grid0 = float(onsets[0]) if onset_s is None else float(onset_s)
    dropped_head = 0
    if grid0 < 0:  # labels that start before the signal: move the grid to the first epoch inside it
        dropped_head = math.ceil(-grid0 / epoch_s - 1e-9)
        grid0 += dropped_head * epoch_s
    label_end = float(np.max(onsets + durs))
    n_label = max(0, int(math.floor((label_end - grid0) / epoch_s + 1e-6)))
    n_signal = max(0, int(math.floor((signal_s - grid0) / epoch_s + 1e-6)))
    n = min(n_label, n_signal)
    cover = np.zeros((n, 7))  # seconds covered per code + 1 (UNSCORED -> column 0)
    for on, du, code in zip(onsets, durs, codes):
        a, b = (on - grid0) / epoch_s, (on + du - grid0) / epoch_s
        for k in range(max(0, int(math.floor(a))), min(n, int(math.ceil(b)))):
            overlap = min(on + du, grid0 + (k + 1) * epoch_s) - max(on, grid0 + k * epoch_s)
            if overlap > 0:
                cover[k, code + 1] += overlap
    best = cover.argmax(axis=1)
    stages = np.where(cover.max(axis=1) >= min_cover_s - 1e-6, best - 1, UNSCORED).astype(np.int8)
    gaps = int(np.sum(cover.sum(axis=1) <= 1e-9))
    pairing = {
        "n_label_epochs": n_label + dropped_head,
        "n_signal_epochs": n_signal,
        "n_paired": n,
        "dropped_label_epochs": n_label - n + dropped_head,
        "dropped_signal_s": round(float(signal_s - n * epoch_s), 6),
        "onset_s": grid0,
        "n_gap_epochs": gaps,
        "n_unscored": int(np.sum(stages == UNSCORED)),
        "warnings": [],
        "rule": (
            f"paired by time on a {epoch_s:g}-s grid from onset_s; an epoch takes the stage covering "
            f">= {min_cover_s:g} s of it, else unscored; label epochs past the signal end and signal "
            f"before onset_s or past the last label are dropped"
        ),
    }
    past_s = label_end - max(float(signal_s), grid0)
    if past_s > FAR_PAST_S:
        pairing["warnings"].append(
            f"the labels run {_span(past_s)} ({n_label - n} epochs) past the signal's end at "
            f"{_span(signal_s)}; those label epochs are dropped"
        )
    return stages, grid0, pairing


def layout_id(path, root, name: str) -> str:
    """A recording id unique under ``root``: the folder of ``path`` relative to ``root``, then ``name``.

    ``name`` is the dataset's own name for the file (``SC4001E0`` for ``SC4001E0-PSG.edf``), one per file
    of a folder, so two files named alike in different folders get different ids
    (``sleep-cassette/SC4001E0``, ``copy/SC4001E0``); a file directly under ``root`` is just ``name``.
    """
    folder = Path(path).parent.relative_to(root).as_posix()
    return name if folder in ("", ".") else f"{folder}/{name}"


def make_recording(channels: list[Channel], *, subject: str, recording: str, dataset: str, source,
                   meta: dict, hypnogram: Hypnogram | None = None, notes: dict | None = None) -> Recording:
    """A Recording of ``channels``, with stages paired by time when a hypnogram is given.

    Parameters
    ----------
    channels : list of Channel
        The signals (own rates).
    subject, recording, dataset : str
        Who and what the recording is (``dataset`` is the reader name).
    source : str or Path
        The signal file.
    meta : dict
        Subject metadata and reading notes.
    hypnogram : Hypnogram, optional
        Labels; without them the recording is unlabelled (``stages`` None).
    notes : dict, optional
        Reader facts added to ``rec.pairing`` after the hypnogram's own notes.

    Returns
    -------
    Recording
        ``pairing`` holds :func:`pair_by_time`'s counts, ``hypnogram`` (the label file) and the notes.
    """
    rec = Recording(channels=channels, subject=subject, recording=recording, dataset=dataset,
                    source=str(source), meta=meta)
    if hypnogram is not None:
        h = hypnogram
        stages, grid0, pairing = pair_by_time(h.onsets_s, h.durations_s, h.codes, rec.duration_s,
                                              onset_s=h.onset_s, source=h.source)
        pairing["hypnogram"] = h.source
        pairing.update(h.notes)
        pairing.update(notes or {})
        rec.stages, rec.onset_s, rec.pairing = stages, grid0, pairing
    return rec
