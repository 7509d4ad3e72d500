"""Synthetic hypnograms: a night's stage sequence and a second scorer who disagrees realistically."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from psgvlm.stages import EPOCH_S, N1, N2, N3, REM, W

# Stages a scorer (or an epoch's features) can be confused with, and how often.
CONFUSABLE = {W: ((N1,), (1.0,)), N1: ((W, N2, REM), (0.4, 0.35, 0.25)), N2: ((N1, N3), (0.55, 0.45)),
               N3: ((N2,), (1.0,)), REM: ((N1, N2), (0.6, 0.4))}


def _round_counts(minutes: Sequence[float], n_epochs: int) -> np.ndarray:
    """Segment lengths in epochs: each >= 1, summing to ``n_epochs`` (largest remainders first)."""
    want = np.asarray(minutes, dtype=float) * 60 / EPOCH_S
    counts = np.maximum(1, np.floor(want)).astype(int)
    short = n_epochs - int(counts.sum())
    if short > 0:
        order = np.argsort(-(want - np.floor(want)), kind="stable")
        np.add.at(counts, order[np.arange(short) % len(order)], 1)
    while counts.sum() > n_epochs:
        counts[int(np.argmax(counts))] -= 1
    return counts


def synth_hypnogram(n_epochs: int, rng: np.random.Generator, *, age: float = 40.0):
    """A plausible hypnogram: sleep onset, ~90-min cycles, N3 early, REM lengthening, awakenings.

    Nights shorter than ~2.5 h become one compressed cycle that still holds all five stages.

    Parameters
    ----------
    n_epochs : int
        Number of 30-s epochs (>= 10).
    rng : numpy Generator
    age : float
        Years; older subjects get less N3.

    Returns
    -------
    stages : (n_epochs,) int8 AASM codes
    swf : (n_epochs,) float, slow-wave fraction of each epoch (> 0.2 in N3, > 0.5 is R&K stage 4)
    """
    if n_epochs < 10:
        raise ValueError(f"n_epochs {n_epochs!r}: need at least 10 epochs (5 minutes) for all stages")
    total = n_epochs * EPOCH_S / 60
    onset = min(rng.uniform(5, 20), max(1.0, 0.12 * total))
    final = min(rng.uniform(5, 15), max(0.5, 0.03 * total))
    sleep = total - onset - final
    n_cycles = max(1, int(round(sleep / 90)))
    lengths = rng.uniform(0.85, 1.15, n_cycles)
    lengths *= sleep / lengths.sum()
    age_n3 = float(np.clip(1.35 - age / 90, 0.55, 1.0))
    segs: list[tuple[int, float]] = [(W, onset)]
    for k, length in enumerate(lengths):
        if n_cycles == 1:
            n3f, remf, n1f = 0.28 * max(age_n3, 0.6), 0.24, 0.07
        else:
            last = k == n_cycles - 1
            n3f = (0.50, 0.36, 0.15, 0.06, 0.03)[min(k, 4)] * age_n3 * rng.uniform(0.8, 1.2)
            remf = (0.13, 0.22, 0.28, 0.33, 0.36)[min(max(k, 3) if last else k, 4)] * rng.uniform(0.85, 1.15)
            n1f = 0.08 if k == 0 else 0.045
        if k > 0 and rng.random() < 0.8:  # awakening between cycles
            wake = min(rng.uniform(1.0, 8.0), 0.08 * length)
            segs.append((W, wake))
            length -= wake
        n2f = 1.0 - n3f - remf - n1f
        segs += [(N1, n1f * length), (N2, 0.55 * n2f * length), (N3, n3f * length),
                 (N2, 0.45 * n2f * length), (REM, remf * length)]
    segs.append((W, final))
    counts = _round_counts([m for _, m in segs], n_epochs)
    stages = np.repeat(np.array([s for s, _ in segs], dtype=np.int8), counts)

    if n_cycles > 1:  # texture of a real night; short nights stay one clean cycle
        u = rng.random(n_epochs)
        inner = np.zeros(n_epochs, bool)
        inner[1:-1] = (stages[1:-1] == N3) & (stages[:-2] == N3) & (stages[2:] == N3)
        stages[inner & (u < 0.07)] = N2  # N3 is patchy
        i = 0
        while i < n_epochs - 4:
            s = stages[i]
            if s in (N2, REM) and u[i] > 0.99:  # spontaneous awakening, then N1
                n_w, n_n1 = rng.integers(1, 7), rng.integers(1, 3)
                stages[i:i + n_w] = W
                stages[i + n_w:i + n_w + n_n1] = N1
                i += n_w + n_n1
            elif s == REM and u[i] > 0.975:
                stages[i] = N1
            i += 1
    swf = np.where(stages == N2, rng.uniform(0.0, 0.16, n_epochs), 0.0)
    # Deeper early in the night and in the middle of N3 runs.
    depth = np.clip(1.1 - np.arange(n_epochs) / n_epochs, 0.3, 1.0)
    swf = np.where(stages == N3, np.clip(rng.uniform(0.25, 0.95, n_epochs) * depth + 0.1, 0.22, 0.95), swf)
    swf = np.where(stages == N3, np.convolve(swf, np.ones(3) / 3, mode="same").clip(0.22, 0.95), swf)
    return stages, swf


def second_scorer(stages: np.ndarray, clarity: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A second expert's (n_epochs,) stages: disagrees mostly at transitions, on N1 and where
    ``clarity`` (n_epochs,), 1 for a clean epoch, is low."""
    n = len(stages)
    prev = np.r_[stages[:1], stages[:-1]]
    nxt = np.r_[stages[1:], stages[-1:]]
    at_change = (prev != stages) | (nxt != stages)
    p = 0.07 + 0.25 * at_change + 0.2 * (stages == N1) + 0.5 * (1 - clarity) + 0.05 * (stages == N3)
    flip = rng.random(n) < np.clip(p, 0, 0.8)
    out = stages.copy()
    for i in np.flatnonzero(flip):
        if at_change[i] and rng.random() < 0.7:
            out[i] = prev[i] if prev[i] != stages[i] else nxt[i]
        else:
            alts, probs = CONFUSABLE[int(stages[i])]
            out[i] = alts[rng.choice(len(alts), p=probs)]
    return out
