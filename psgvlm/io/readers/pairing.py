"""Pairing labels with the signal by time, and assembling the :class:`Recording` a reader returns.

The rule (every format): labels are time intervals in signal seconds; 30-s epochs are cut on a grid
that starts at the first scored instant (``rec.onset_s``); an epoch takes the stage that covers at
least 20 s of it (DREAMS: 4 of 6 five-second slots; 20-s MASS scoring: the 20-s epoch inside it),
otherwise it is unscored. Label epochs past the end of the signal and signal past the last label
are dropped (the unmatched tail); the counts go to ``rec.pairing``.
"""

from __future__ import annotations

import math

import numpy as np

from psgvlm.io.hypnograms import Hypnogram
from psgvlm.io.recording import Channel, Recording
from psgvlm.stages import EPOCH_S, UNSCORED

MIN_COVER_S = 20.0  # seconds of a 30-s epoch one stage must cover to label it (2/3, = 4 of 6 DREAMS slots)


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
        n_gap_epochs (no label at all), n_unscored, onset_s, rule.
    """
    onsets = np.asarray(onsets_s, dtype=float)
    durs = np.asarray(durations_s, dtype=float)
    codes = np.asarray(codes, dtype=int)
    if onsets.size == 0:
        raise ValueError(f"{source}: hypnogram holds no sleep-stage labels")
    if np.any(durs <= 0):
        i = int(np.argmax(durs <= 0))
        raise ValueError(f"{source}: stage label {i} has duration {durs[i]!r} s; durations must be > 0")
    order = np.argsort(onsets, kind="stable")
    onsets, durs, codes = onsets[order], durs[order], codes[order]
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
        "rule": (
            f"paired by time on a {epoch_s:g}-s grid from onset_s; an epoch takes the stage covering "
            f">= {min_cover_s:g} s of it, else unscored; label epochs past the signal end and signal "
            f"before onset_s or past the last label are dropped"
        ),
    }
    return stages, grid0, pairing


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
