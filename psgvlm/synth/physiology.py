"""Synthetic polysomnography written in each dataset's true on-disk format.

    psgvlm synth --format isruc --subjects 4 --minutes 60 --seed 0 --out data/synth/isruc

writes ``<out>/<id>/<id>.rec`` + ``<id>_1.txt`` + ``<id>_2.txt`` (ISRUC-Sleep S1/S3), and likewise
MASS-SS3 (``01-03-00NN PSG.edf`` + ``Base.edf``), SHHS-1 (``edfs/shhs1/shhs1-2000NN.edf`` + NSRR XML
+ a subject CSV) and Sleep-EDF Expanded (``SC4NN1E0-PSG.edf`` + ``SC4NN1EC-Hypnogram.edf``), with the
real files' channel labels, sampling rates, units and label files, plus ``synth.json`` (config,
subjects, stage counts, provenance).

The physiology follows the AASM manual so that stages are learnable but not trivial: wake has
occipital alpha, high chin EMG, blinks and saccades; N1 theta, slow rolling eye movements and vertex
sharp waves; N2 spindles (11-16 Hz, 0.5-2 s, central) and K-complexes; N3 high-amplitude 0.5-2 Hz
frontal delta; REM low-voltage mixed activity, saw-tooth waves, rapid conjugate eye movements and
chin atonia with twitches. ECG rate, respiration and SpO2 follow the stage. Every channel carries
1/f background. Features ramp over ~15 s at stage changes, some epochs are mixtures of two stages,
events are random in number and size, and subjects differ (age, sex, alpha frequency, spindle
density, amplitudes), so a good stager reaches a kappa well below 1. Generation is vectorised numpy
(band-limited noise drawn in the frequency domain); the same seed gives the same bytes.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import functools
import sys
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import scipy.fft
import scipy.signal

from psgvlm.io.edf import EdfChannel, edf_patient, write_annotations_edf, write_edf
from psgvlm.provenance import provenance, write_json_atomic, write_text_atomic
from psgvlm.stages import EPOCH_S, N1, N2, N3, N_STAGES, REM, UNSCORED, W, stage_counts

FORMATS: tuple[str, ...] = ("isruc", "mass", "shhs", "sleepedf")
MIN_MINUTES = 5.0  # shortest night that still holds all five stages

# ----------------------------------------------------------------------------------------------
# Stage profiles: one value per stage (W, N1, N2, N3, REM) for every generator control.
# Rates are multiplied by the subject's own density, amplitudes by the subject's own amplitude.
# ----------------------------------------------------------------------------------------------
PROFILE: dict[str, tuple[float, float, float, float, float]] = {
    "alpha": (1.0, 0.30, 0.06, 0.04, 0.18),  # occipital 8-12 Hz, x subject alpha std
    "theta": (0.25, 1.0, 0.65, 0.55, 0.75),  # 4-7 Hz
    "delta": (0.12, 0.22, 0.35, 1.0, 0.18),  # 0.5-2 Hz, N3 further scaled by its slow-wave fraction
    "beta": (1.0, 0.5, 0.35, 0.3, 0.6),  # 15-25 Hz
    "bg": (0.85, 0.8, 1.0, 1.15, 0.72),  # 1/f background
    "spindle": (0.0, 0.08, 1.0, 0.35, 0.02),  # per minute, x subject spindle density
    "kc": (0.0, 0.08, 1.0, 0.45, 0.0),  # K-complexes per minute, x subject density
    "vertex": (0.0, 3.0, 0.3, 0.0, 0.1),  # vertex sharp waves per minute
    "saw": (0.0, 0.0, 0.0, 0.0, 1.2),  # saw-tooth trains per minute
    "emg": (1.0, 0.55, 0.42, 0.38, 0.08),  # chin tone, x subject awake RMS
    "twitch": (0.0, 0.5, 0.3, 0.1, 12.0),  # chin twitches per minute
    "blink": (14.0, 2.5, 0.0, 0.0, 0.2),  # per minute
    "saccade": (20.0, 3.0, 0.0, 0.0, 0.0),  # waking gaze shifts per minute
    "sem": (0.1, 1.0, 0.15, 0.0, 0.05),  # slow eye movements, x subject amplitude
    "rem": (0.0, 0.0, 0.0, 0.0, 3.0),  # rapid-eye-movement bursts per minute
    "hr": (7.0, 3.0, 0.0, -4.0, 3.5),  # heart-rate offset, bpm
    "hrv": (3.0, 2.0, 1.2, 0.8, 4.5),  # heart-rate variability, bpm
    "resp_rate": (15.5, 14.5, 14.0, 13.5, 16.0),  # breaths per minute
    "resp_irreg": (0.25, 0.15, 0.07, 0.03, 0.30),  # relative breath-to-breath variability
    "resp_amp": (1.0, 0.9, 1.0, 1.1, 0.8),
    "snore": (0.0, 0.2, 0.8, 1.0, 0.3),
    "leg": (1.0, 0.8, 0.5, 0.1, 0.05),  # leg movements per minute, x subject rate
    "arousal": (0.0, 0.05, 0.12, 0.04, 0.15),  # EEG arousals (3-12 s) per minute
    "resp_event": (0.0, 0.1, 0.15, 0.05, 0.25),  # hypopneas per minute, x subject AHI factor
}
_FEATURES = tuple(PROFILE)
_PROF = np.array([PROFILE[f] for f in _FEATURES], dtype=np.float64).T  # (5 stages, n_features)
_F = {name: i for i, name in enumerate(_FEATURES)}
# Stages a scorer (or an epoch's features) can be confused with, and how often.
_CONFUSABLE = {W: ((N1,), (1.0,)), N1: ((W, N2, REM), (0.4, 0.35, 0.25)), N2: ((N1, N3), (0.55, 0.45)),
               N3: ((N2,), (1.0,)), REM: ((N1, N2), (0.6, 0.4))}

# Scalp gains per location (mastoid-referenced unless bipolar): relative size of each rhythm and
# event there. "side": -1 left hemisphere, 1 right, 0 midline; "eog": eye-movement pickup.
_REGION = {
    "Fp": dict(alpha=0.2, theta=0.7, delta=1.05, beta=1.0, sp_fast=0.35, sp_slow=0.8, kc=0.85, vertex=0.45, saw=0.6, eog=0.55),
    "F": dict(alpha=0.35, theta=0.9, delta=1.0, beta=0.9, sp_fast=0.55, sp_slow=1.0, kc=1.0, vertex=0.75, saw=0.85, eog=0.14),
    "T": dict(alpha=0.45, theta=0.7, delta=0.6, beta=0.9, sp_fast=0.4, sp_slow=0.4, kc=0.5, vertex=0.35, saw=0.5, eog=0.1),
    "C": dict(alpha=0.55, theta=1.0, delta=0.8, beta=0.8, sp_fast=1.0, sp_slow=0.7, kc=0.85, vertex=1.0, saw=1.0, eog=0.04),
    "P": dict(alpha=0.85, theta=0.8, delta=0.65, beta=0.7, sp_fast=0.95, sp_slow=0.45, kc=0.6, vertex=0.7, saw=0.7, eog=0.02),
    "O": dict(alpha=1.0, theta=0.6, delta=0.55, beta=0.6, sp_fast=0.45, sp_slow=0.3, kc=0.45, vertex=0.4, saw=0.5, eog=0.01),
    "A": dict(alpha=0.12, theta=0.12, delta=0.12, beta=0.3, sp_fast=0.1, sp_slow=0.1, kc=0.12, vertex=0.1, saw=0.1, eog=0.03),
}
_LOCATIONS: dict[str, tuple[str, int, float]] = {  # location -> (region, side, overall gain)
    "Fp1": ("Fp", -1, 1.0), "Fp2": ("Fp", 1, 1.0), "F7": ("T", -1, 0.9), "F8": ("T", 1, 0.9),
    "F3": ("F", -1, 1.0), "F4": ("F", 1, 1.0), "Fz": ("F", 0, 1.05), "T3": ("T", -1, 0.85),
    "T4": ("T", 1, 0.85), "C3": ("C", -1, 1.0), "C4": ("C", 1, 1.0), "Cz": ("C", 0, 1.05),
    "T5": ("T", -1, 0.85), "T6": ("T", 1, 0.85), "P3": ("P", -1, 1.0), "P4": ("P", 1, 1.0),
    "Pz": ("P", 0, 1.0), "O1": ("O", -1, 1.0), "O2": ("O", 1, 1.0), "Oz": ("O", 0, 1.0),
    "A2": ("A", 1, 1.0),
    # Sleep-EDF bipolar derivations: smaller overall; Fpz-Cz keeps frontal delta and eye
    # artefacts, Pz-Oz keeps alpha.
    "Fpz-Cz": ("Fp", 0, 0.7), "Pz-Oz": ("O", 0, 0.6),
}


@dataclass(frozen=True)
class ChannelSpec:
    """A channel to synthesise: its label in the file, what it measures, and its rate."""

    label: str
    kind: str  # eeg eog emg emg_env leg ecg hr thor abdo flow therm snore spo2 position light oxstat temp marker dc
    where: str = ""  # scalp location for eeg ("C3"), side for eog/leg ("L"/"R"), variant for emg
    sfreq: float = 200.0
    unit: str = "uV"
    transducer: str = ""
    prefiltering: str = ""
    physical_range: tuple[float, float] | None = None
    digital_range: tuple[int, int] = (-32768, 32767)
    scale: float = 1.0  # physical units per generator unit (0.001 for ECG written in mV)


_ELECTRODE = frozenset({"eeg", "eog", "emg", "ecg", "leg"})


def _ch(label, kind, where="", sfreq=200.0, unit="uV", **kw) -> ChannelSpec:
    return ChannelSpec(label=label, kind=kind, where=where, sfreq=float(sfreq), unit=unit, **kw)


DEFAULT_CHANNELS: tuple[ChannelSpec, ...] = tuple(
    [_ch(c, "eeg", c) for c in ("F3", "C3", "O1", "F4", "C4", "O2")]
    + [_ch("LOC", "eog", "L"), _ch("ROC", "eog", "R"), _ch("EMG", "emg", "chin1"), _ch("ECG", "ecg")]
)


@dataclass
class SynthNight:
    """One synthetic night: signals in physical units and the stages that generated them."""

    stages: np.ndarray  # (n_epochs,) int8 AASM codes as scorer 1 scored them
    stages_scorer2: np.ndarray  # (n_epochs,) int8, a second scorer (~15-20 % disagreement)
    deep: np.ndarray  # (n_epochs,) bool, N3 epochs with > 50 % slow waves (R&K stage 4)
    movement: np.ndarray  # (n_epochs,) bool, movement-time epochs (scored W; "Movement time" in R&K)
    signals: dict[str, np.ndarray]  # label -> (n_times,) float32, physical units
    sfreq: dict[str, float]  # label -> Hz
    meta: dict  # subject: age, sex and the generator's per-subject parameters
    events: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (n, 2) onset_s, duration_s

    @property
    def n_epochs(self) -> int:
        return len(self.stages)


# ----------------------------------------------------------------------------------------------
# Hypnogram
# ----------------------------------------------------------------------------------------------
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


def _second_scorer(stages: np.ndarray, clarity: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A second expert: disagrees mostly at transitions, on N1 and on ambiguous epochs."""
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
            alts, probs = _CONFUSABLE[int(stages[i])]
            out[i] = alts[rng.choice(len(alts), p=probs)]
    return out


# ----------------------------------------------------------------------------------------------
# Signal building blocks
# ----------------------------------------------------------------------------------------------
def _band_noise(rng, n: int, sfreq: float, lo: float, hi: float, *, slope: float = 0.0,
                peak: float | None = None, width: float = 1.0) -> np.ndarray:
    """Unit-std Gaussian noise band-limited to [lo, hi] Hz, drawn in the frequency domain.

    ``slope`` shapes the amplitude spectrum as f**-slope (0.5 gives 1/f power: pink); ``peak`` and
    ``width`` give a Gaussian spectral peak instead (an alpha or spindle rhythm).
    """
    hi = min(hi, sfreq / 2)
    q = int(sfreq // (4 * hi))
    if q >= 3 and n >= 64 * q:  # slow band: draw at a lower rate, then interpolate (same spectrum)
        n_low = n // q + 2
        x_low = _band_noise(rng, n_low, sfreq / q, lo, hi, slope=slope, peak=peak, width=width)
        return np.interp(np.arange(n, dtype=np.float32) / np.float32(q), np.arange(n_low, dtype=np.float32),
                         x_low).astype(np.float32)
    k0, k1, amp = _band_shape(n, float(sfreq), float(lo), float(hi), float(slope), peak, float(width))
    spec = np.zeros(n // 2 + 1, dtype=np.complex64)
    m = k1 - k0
    z = rng.standard_normal(2 * m, dtype=np.float32)
    spec[k0:k1].real = z[:m] * amp
    spec[k0:k1].imag = z[m:] * amp
    return scipy.fft.irfft(spec, n=n, overwrite_x=True).astype(np.float32, copy=False)


@functools.lru_cache(maxsize=32)
def _band_shape(n, sfreq, lo, hi, slope, peak, width):
    """Bins and amplitude spectrum of a band, scaled so the noise comes out with unit std."""
    k0 = int(np.ceil(lo * n / sfreq))
    k1 = int(np.ceil(hi * n / sfreq))
    f = np.arange(k0, k1) * (sfreq / n)
    amp = np.exp(-0.5 * ((f - peak) / width) ** 2) if peak is not None else np.maximum(f, 1e-3) ** -slope
    power = 2.0 * float(np.sum(amp**2)) / n**2
    amp = (amp / np.sqrt(max(power, 1e-30))).astype(np.float32)
    amp.setflags(write=False)
    return k0, k1, amp


def _place(x: np.ndarray, starts: np.ndarray, waves: np.ndarray) -> None:
    """Add each row of ``waves`` (n_events, n) into ``x`` from sample ``starts[i]`` (clipped at the end)."""
    n, L = len(x), waves.shape[1]
    waves = waves.astype(np.float32, copy=False)
    for i, s in enumerate(np.asarray(starts, dtype=np.int64)):  # slices: far cheaper than a scatter
        a, b = max(s, 0), min(s + L, n)
        if a < b:
            x[a:b] += waves[i, a - s:b - s]


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    """Moving average with edge padding (the ramps of features at stage changes)."""
    if width <= 1:
        return x.astype(float)
    pad = np.pad(x.astype(float), (width // 2, width - width // 2 - 1), mode="edge")
    c = np.cumsum(np.r_[0.0, pad])
    return (c[width:] - c[:-width]) / width


def _slow_noise(rng, n_s: int, width_s: int) -> np.ndarray:
    """Unit-std slowly varying noise at 1 Hz (waxing and waning of rhythms, eyes open/closed)."""
    z = _smooth(rng.standard_normal(n_s + 2 * width_s), width_s)[width_s:width_s + n_s]
    return z / max(z.std(), 1e-9)


def _events_from_rate(rng, rate_per_min: np.ndarray) -> np.ndarray:
    """Event onsets (s) from a 1-Hz rate control (events per minute): Poisson per second."""
    counts = rng.poisson(np.clip(rate_per_min, 0, None) / 60.0)
    sec = np.repeat(np.arange(len(rate_per_min)), counts)
    return np.sort(sec + rng.random(len(sec)))


def _child(seed: int, subject: int, name: str) -> np.random.Generator:
    """A generator of its own for one stream, so adding a channel changes no other channel."""
    return np.random.default_rng([int(seed), int(subject), zlib.crc32(name.encode())])


# ----------------------------------------------------------------------------------------------
# The night generator
# ----------------------------------------------------------------------------------------------
def _draw_subject(rng, age_range: tuple[float, float]) -> dict:
    age = float(rng.uniform(*age_range))
    young = float(np.clip((60 - age) / 40, 0.3, 1.2))
    ln = rng.lognormal
    return {
        "age": round(age, 1),
        "sex": str(rng.choice(["F", "M"])),
        "alpha_hz": float(np.clip(rng.normal(10.0, 0.7) - 0.01 * (age - 40), 8.3, 11.7)),
        "alpha_uv": float(17.0 * ln(0, 0.45)),
        "theta_uv": float(8.0 * ln(0, 0.2)),
        "delta_uv": float(36.0 * (0.8 + 0.2 * young) * ln(0, 0.15)),
        "bg_uv": float(8.0 * ln(0, 0.2)),
        "beta_uv": float(2.5 * ln(0, 0.2)),
        "spindle_hz": float(np.clip(rng.normal(13.2, 0.5), 12.2, 14.5)),
        "spindle_per_min": float(4.5 * (0.6 + 0.4 * young) * ln(0, 0.3)),
        "spindle_uv": float(22.0 * ln(0, 0.25)),
        "kc_per_min": float(1.3 * ln(0, 0.3)),
        "kc_uv": float(110.0 * ln(0, 0.2)),
        "emg_uv": float(16.0 * ln(0, 0.35)),
        "emg_nrem": float(rng.uniform(0.6, 1.2)),
        "emg_rem": float(rng.uniform(0.8, 2.2)),
        "eog_uv": float(110.0 * ln(0, 0.2)),
        "hr_bpm": float(np.clip(rng.normal(63, 6), 48, 82)),
        "ecg_uv": float(1000.0 * ln(0, 0.25)),
        "resp_bpm_offset": float(rng.normal(0, 1.2)),
        "spo2_pct": float(rng.uniform(95.0, 97.8)),
        "ahi_factor": float(rng.uniform(0.2, 1.5) * (1.0 + max(age - 50, 0) / 40)),
        "leg_per_min": float(rng.uniform(0.1, 1.0)),
        "snorer": bool(rng.random() < 0.4),
        "line_uv": float(rng.uniform(0.0, 1.5)),
        "ecg_sign": float(rng.choice([1.0, 1.0, 1.0, -1.0])),
    }


class _Night:
    """Per-night state: stage controls at 1 Hz, event lists, and per-rate source caches."""

    def __init__(self, stages, swf, movement, seed, subject, subj, line_hz):
        self.seed, self.subject, self.p, self.line_hz = seed, subject, subj, line_hz
        rng = _child(seed, subject, "controls")
        n_ep = len(stages)
        self.n_s = n_s = int(n_ep * EPOCH_S)
        # Ambiguous epochs: features part-way to a neighbouring / confusable stage.
        prev = np.r_[stages[:1], stages[:-1]]
        nxt = np.r_[stages[1:], stages[-1:]]
        alt = stages.copy()
        clarity = np.ones(n_ep)
        at_change = (prev != stages) | (nxt != stages)
        u = rng.random(n_ep)
        pick = at_change & (u < 0.65)
        alt[pick] = np.where(prev[pick] != stages[pick], prev[pick], nxt[pick])
        clarity[pick] = rng.uniform(0.3, 0.8, pick.sum())
        other = ~at_change & (u < 0.15)
        for i in np.flatnonzero(other):
            alts, probs = _CONFUSABLE[int(stages[i])]
            alt[i] = alts[rng.choice(len(alts), p=probs)]
        clarity[other] = rng.uniform(0.4, 0.85, other.sum())
        self.clarity = clarity
        prof = clarity[:, None] * _PROF[stages] + (1 - clarity[:, None]) * _PROF[alt]
        # Epoch-to-epoch variability: no two epochs of a stage look alike.
        for f in ("alpha", "theta", "delta", "beta", "bg", "emg", "sem"):
            prof[:, _F[f]] *= rng.lognormal(0, 0.22, n_ep)
        for f in ("spindle", "kc", "vertex", "rem", "blink", "saccade", "saw", "twitch"):
            prof[:, _F[f]] *= rng.lognormal(0, 0.4, n_ep)
        # Chin tone differs between people (how far NREM and REM sit below wake) and falls
        # across the night.
        nrem = np.isin(stages, (N1, N2, N3))
        prof[nrem, _F["emg"]] *= subj["emg_nrem"]
        prof[stages == REM, _F["emg"]] *= subj["emg_rem"]
        prof[:, _F["emg"]] *= np.linspace(1.0, 0.75, n_ep)
        # N3 delta grows with the epoch's slow-wave fraction; N2 near N3 gets a little more.
        deltafac = np.where(stages == N3, 0.45 + 0.95 * swf, 1.0 + 1.2 * swf * (stages == N2))
        prof[:, _F["delta"]] *= deltafac
        per_s = np.repeat(prof, int(EPOCH_S), axis=0)  # (n_s, n_features)
        ctrl = {f: _smooth(per_s[:, i], 15) for f, i in _F.items()}
        ctrl["hr"] = _smooth(per_s[:, _F["hr"]], 45)
        # Eyes open/closed in wake: alpha when closed, blinks and saccades when open.
        eyes_open = 1 / (1 + np.exp(-1.5 * _slow_noise(rng, n_s, 6)))
        ctrl["alpha"] *= 0.25 + 1.1 * (1 - eyes_open)
        ctrl["blink"] *= 0.3 + 1.4 * eyes_open
        ctrl["saccade"] *= 0.2 + 1.6 * eyes_open
        # Phasic vs tonic REM.
        phasic = np.exp(0.8 * _slow_noise(rng, n_s, 8))
        for f in ("rem", "saw", "twitch", "hrv", "resp_irreg"):
            ctrl[f] *= np.where(np.repeat(stages, int(EPOCH_S)) == REM, phasic, 1.0)
        # Arousals: 3-12 s of alpha, beta, chin tone and heart rate.
        ar_on = _events_from_rate(rng, ctrl["arousal"])
        ar_dur = rng.uniform(3, 12, len(ar_on))
        bump = np.zeros(n_s)
        for o, d in zip(ar_on, ar_dur):
            bump[int(o):min(int(o + d), n_s)] = 1.0
        bump = _smooth(bump, 3)
        ctrl["alpha"] += 0.8 * bump
        ctrl["beta"] += 0.6 * bump
        ctrl["emg"] += 0.35 * bump
        ctrl["hr"] += 6 * bump
        # Movement-time epochs: large artefacts on every channel.
        mv = np.repeat(movement, int(EPOCH_S)).astype(float)
        ctrl["emg"] += 2.5 * mv
        self.movement_s = mv
        self.ctrl = ctrl
        self.stage_s = np.repeat(stages, int(EPOCH_S))
        self.events: dict[str, np.ndarray] = {"arousal": np.c_[ar_on, ar_dur]}
        self._event_lists(rng)
        self._cache: dict[tuple, np.ndarray] = {}

    # -- events ---------------------------------------------------------------------------------
    def _event_lists(self, rng):
        c, p = self.ctrl, self.p
        sp = _events_from_rate(rng, c["spindle"] * p["spindle_per_min"])
        kc = _events_from_rate(rng, c["kc"] * p["kc_per_min"])
        # A third of K-complexes carry a spindle on their tail.
        tail = kc[rng.random(len(kc)) < 0.33] + 0.6
        sp = np.sort(np.r_[sp, tail])
        n_sp = len(sp)
        self.spindles = dict(
            onset=sp, dur=0.5 + 1.5 * rng.beta(2.0, 3.0, n_sp),
            slow=rng.random(n_sp) < 0.3,
            hz=np.clip(p["spindle_hz"] + rng.normal(0, 0.5, n_sp), 11.0, 16.0),
            uv=p["spindle_uv"] * rng.lognormal(0, 0.3, n_sp), phase=rng.uniform(0, 2 * np.pi, n_sp),
        )
        self.spindles["hz"] = np.where(self.spindles["slow"], np.clip(self.spindles["hz"] - 1.8, 11.0, 12.5),
                                       self.spindles["hz"])
        self.kcs = dict(onset=kc, uv=p["kc_uv"] * rng.lognormal(0, 0.25, len(kc)),
                        width=rng.uniform(0.8, 1.2, len(kc)))
        vx = _events_from_rate(rng, c["vertex"])
        self.vertex = dict(onset=vx, uv=rng.uniform(45, 100, len(vx)))
        sw = _events_from_rate(rng, c["saw"])
        self.saw = dict(onset=sw, hz=rng.uniform(2.0, 3.5, len(sw)), n=rng.integers(3, 9, len(sw)),
                        uv=rng.uniform(20, 45, len(sw)))
        self.blinks = dict(onset=_events_from_rate(rng, c["blink"]))
        self.blinks["uv"] = p["eog_uv"] * rng.uniform(1.2, 2.5, len(self.blinks["onset"]))
        # Eye movements: waking saccades and REM bursts as targets of a stepping eye position.
        sac = _events_from_rate(rng, c["saccade"])
        bursts = _events_from_rate(rng, c["rem"])
        b_n = rng.integers(2, 9, len(bursts))
        b_t = np.repeat(bursts, b_n) + np.concatenate([np.cumsum(rng.uniform(0.25, 1.0, k)) for k in b_n]) \
            if len(bursts) else np.zeros(0)
        self.sacc = dict(onset=np.r_[sac, b_t], rem=np.r_[np.zeros(len(sac), bool), np.ones(len(b_t), bool)])
        order = np.argsort(self.sacc["onset"], kind="stable")
        self.sacc = {k: v[order] for k, v in self.sacc.items()}
        m = len(order)
        sign = np.where(rng.random(m) < 0.75, -1.0, 1.0)  # eyes tend to swing back
        target = np.cumprod(sign) * rng.uniform(0.3, 1.2, m) * p["eog_uv"]
        self.sacc["target"] = np.where(self.sacc["rem"], target * 0.9, target * 0.6)
        tw = _events_from_rate(rng, c["twitch"])
        self.twitch = dict(onset=tw, dur=rng.uniform(0.05, 0.25, len(tw)), gain=rng.uniform(4, 15, len(tw)))
        mvb = _events_from_rate(rng, 1.2 * (self.stage_s == W) + 0.1 * (self.stage_s != W))
        self.body_mv = dict(onset=mvb, dur=rng.uniform(0.5, 3.0, len(mvb)), gain=rng.uniform(1.5, 4, len(mvb)))
        legs = _events_from_rate(rng, c["leg"] * p["leg_per_min"])
        self.legs = dict(onset=legs, dur=rng.uniform(0.5, 5.0, len(legs)), uv=rng.uniform(15, 60, len(legs)))
        hyp = _events_from_rate(rng, c["resp_event"] * p["ahi_factor"] / 6)
        self.hypopneas = dict(onset=hyp, dur=rng.uniform(10, 35, len(hyp)), depth=rng.uniform(0.3, 0.8, len(hyp)))
        self.events.update({
            "spindle": np.c_[sp, self.spindles["dur"]], "kcomplex": np.c_[kc, np.full(len(kc), 1.0)],
            "vertex": np.c_[vx, np.full(len(vx), 0.3)], "sawtooth": np.c_[sw, self.saw["n"] / self.saw["hz"]],
            "rem": np.c_[b_t, np.full(len(b_t), 0.2)], "hypopnea": np.c_[hyp, self.hypopneas["dur"]],
        })

    # -- per-rate sources -----------------------------------------------------------------------
    def _up(self, ctrl: np.ndarray, fs: float) -> np.ndarray:
        """A 1-Hz control held over each second's samples (controls are smooth: no steps show)."""
        k = int(round(fs))
        if abs(k - fs) > 1e-9:
            raise ValueError(f"sampling rate {fs!r} Hz: only whole-Hz rates are synthesised")
        return np.repeat(ctrl.astype(np.float32), k)

    def source(self, name: str, fs: float) -> np.ndarray:
        key = (name, fs)
        if key not in self._cache:
            self._cache[key] = self._make(name, fs)
        return self._cache[key]

    def _make(self, name: str, fs: float) -> np.ndarray:
        p, c = self.p, self.ctrl
        n = int(round(self.n_s * fs))
        rng = _child(self.seed, self.subject, f"{name}@{fs}")
        nyq = fs / 2
        if name.startswith(("alpha", "theta", "delta")):
            band, side = name.split("_")
            if side == "R":  # right hemisphere: correlated, not identical
                return 0.8 * self.source(f"{band}_L", fs) + 0.6 * self._make(f"{band}_X", fs)
            if side == "M":
                return 0.5 * (self.source(f"{band}_L", fs) + self.source(f"{band}_R", fs)) * 1.12
            if band == "alpha":
                x = _band_noise(rng, n, fs, 6.5, 13.5, peak=p["alpha_hz"], width=0.55)
                return x * self._up(c["alpha"] * p["alpha_uv"], fs)
            if band == "theta":
                return _band_noise(rng, n, fs, 3.8, 7.5, peak=5.6, width=0.9) * self._up(c["theta"] * p["theta_uv"], fs)
            return _band_noise(rng, n, fs, 0.4, 2.2, slope=0.6) * self._up(c["delta"] * p["delta_uv"], fs)
        if name == "beta":
            return _band_noise(rng, n, fs, 15, min(25, nyq), slope=0.5) * self._up(c["beta"] * p["beta_uv"], fs)
        if name in ("sp_fast", "sp_slow"):
            s = self.spindles
            sel = s["slow"] if name == "sp_slow" else ~s["slow"]
            return self._spindle_train(fs, n, s["onset"][sel], s["dur"][sel], s["hz"][sel], s["uv"][sel], s["phase"][sel])
        if name == "kc":
            x = np.zeros(n, np.float32)
            t = np.arange(int(1.4 * fs)) / fs
            k = self.kcs
            w = k["width"][:, None]
            waves = k["uv"][:, None] * (-np.exp(-0.5 * ((t - 0.22 * w) / (0.07 * w)) ** 2)
                                        + 0.55 * np.exp(-0.5 * ((t - 0.65 * w) / (0.17 * w)) ** 2))
            _place(x, np.round(k["onset"] * fs).astype(int), waves)
            return x
        if name == "vertex":
            x = np.zeros(n, np.float32)
            t = np.arange(int(0.6 * fs)) / fs
            v = self.vertex
            waves = v["uv"][:, None] * (-np.exp(-0.5 * ((t - 0.12) / 0.045) ** 2)
                                        + 0.3 * np.exp(-0.5 * ((t - 0.3) / 0.07) ** 2))
            _place(x, np.round(v["onset"] * fs).astype(int), waves)
            return x
        if name == "saw":
            x = np.zeros(n, np.float32)
            s = self.saw
            if len(s["onset"]):
                L = int(np.ceil((s["n"] / s["hz"]).max() * fs)) + 1
                t = np.arange(L) / fs
                dur = (s["n"] / s["hz"])[:, None]
                env = np.where(t < dur, np.sin(np.pi * np.clip(t / dur, 0, 1)) ** 0.5, 0.0)
                waves = s["uv"][:, None] * env * scipy.signal.sawtooth(2 * np.pi * s["hz"][:, None] * t, width=0.85)
                _place(x, np.round(s["onset"] * fs).astype(int), waves)
            return x
        if name == "eye_h":  # horizontal eye position (uV at the electrodes): steps + slow rolls
            x = np.zeros(n, np.float32)
            s = self.sacc
            if len(s["onset"]):
                idx = np.clip(np.round(s["onset"] * fs).astype(int), 0, n - 1)
                jumps = np.diff(np.r_[0.0, s["target"]])
                x += np.bincount(idx, weights=jumps, minlength=n).astype(np.float32)
                x = np.cumsum(x, dtype=np.float32)
                rise = max(1, int(0.08 * fs))  # a saccade takes ~50-100 ms
                x = _smooth(x, rise).astype(np.float32)
            sem = _band_noise(rng, n, fs, 0.1, 0.5, slope=0.5) * self._up(c["sem"] * p["eog_uv"] * 0.4, fs)
            return x + sem
        if name == "eye_v":  # blinks (vertical)
            x = np.zeros(n, np.float32)
            b = self.blinks
            t = np.arange(int(0.6 * fs)) / fs
            waves = b["uv"][:, None] * np.exp(-0.5 * ((t - 0.2) / 0.06) ** 2)
            _place(x, np.round(b["onset"] * fs).astype(int), waves)
            return x + 0.25 * self.source("eye_h", fs) * (self._up(c["rem"], fs) > 0.05)
        if name == "emg_env":  # chin EMG amplitude envelope (uV RMS) with twitches and movements
            env = self._up(c["emg"] * p["emg_uv"], fs)
            for ev, base in ((self.twitch, 0.08 * p["emg_uv"]), (self.body_mv, p["emg_uv"])):
                if len(ev["onset"]):
                    L = int(np.ceil(ev["dur"].max() * fs)) + 1
                    t = np.arange(L) / fs
                    d = ev["dur"][:, None]
                    waves = np.where(t < d, np.sin(np.pi * np.clip(t / d, 0, 1)), 0.0) * (ev["gain"][:, None] * base)
                    _place(env, np.round(ev["onset"] * fs).astype(int), waves)
            return env
        if name == "ecg":
            return self._ecg(fs, n)
        if name == "resp":  # (unit amplitude) breathing: phase-driven, stage-dependent regularity
            return self._resp(fs, n)
        if name == "muscle_M":
            return 0.5 * (self.source("muscle_L", fs) + self.source("muscle_R", fs))
        if name.startswith("muscle_"):  # scalp/eye muscle pickup, following chin tone
            return self.source("emg_env", fs) * _band_noise(rng, n, fs, 20, min(0.45 * fs, 90))
        if name == "move":  # movement-time artefact: large slow swings
            return self._up(self.movement_s, fs) * _band_noise(rng, n, fs, 0.3, 5, slope=1.0)
        if name == "pink":  # low-level 1/f floor shared by the non-EEG electrode channels
            return _pink(rng, n, fs, 1.0)
        if name == "line":
            return np.sin(2 * np.pi * self.line_hz * np.arange(n) / fs).astype(np.float32)
        raise KeyError(name)

    def _spindle_train(self, fs, n, onset, dur, hz, uv, phase):
        x = np.zeros(n, np.float32)
        if len(onset):
            t = np.arange(int(np.ceil(dur.max() * fs)) + 1) / fs
            d = dur[:, None]
            env = np.where(t < d, np.sin(np.pi * np.clip(t / d, 0, 1)) ** 2, 0.0)
            waves = uv[:, None] * env * np.sin(2 * np.pi * hz[:, None] * t + phase[:, None])
            _place(x, np.round(onset * fs).astype(int), waves)
        return x

    def beats(self) -> np.ndarray:
        """R-peak times (s): stage-dependent rate, variability and respiratory sinus arrhythmia."""
        if "beats" not in self._cache:
            rng = _child(self.seed, self.subject, "beats")
            c = self.ctrl
            t = np.arange(self.n_s) + 0.5
            resp_phase = self.resp_phase(1.0)
            hr = (self.p["hr_bpm"] + c["hr"] + c["hrv"] * _slow_noise(rng, self.n_s, 4)
                  + 1.5 * c["hrv"] / 2 * np.sin(resp_phase))
            hr = np.clip(hr, 38, 130)
            cum = np.r_[0.0, np.cumsum(hr / 60.0)]
            k = np.arange(1, int(cum[-1]))
            self._cache["beats"] = np.interp(k, cum, np.r_[0.0, t + 0.5])
            self._cache["hr"] = hr
        return self._cache["beats"]

    def _ecg(self, fs, n):
        beats = self.beats()
        t = np.arange(int(-0.3 * fs), int(0.45 * fs)) / fs
        g = lambda mu, sd, a: a * np.exp(-0.5 * ((t - mu) / sd) ** 2)  # noqa: E731
        tpl = g(-0.2, 0.025, 0.12) + g(-0.03, 0.010, -0.12) + g(0.0, 0.011, 1.0) + g(0.03, 0.011, -0.25) \
            + g(0.24, 0.05, 0.3)
        x = np.zeros(n, np.float32)
        starts = np.round(beats * fs).astype(int) + int(-0.3 * fs)
        _place(x, starts, np.broadcast_to(tpl * self.p["ecg_uv"] * self.p["ecg_sign"], (len(starts), len(tpl))))
        wander = np.interp(np.arange(n) / fs, np.arange(self.n_s * 10) / 10.0, self.source("resp", 10.0))
        return x + (0.04 * self.p["ecg_uv"]) * wander.astype(np.float32)

    def resp_phase(self, fs: float) -> np.ndarray:
        key = ("resp_phase", fs)
        if key not in self._cache:
            rng = _child(self.seed, self.subject, "resp")
            c = self.ctrl
            rate = (c["resp_rate"] + self.p["resp_bpm_offset"]) * (1 + c["resp_irreg"] * _slow_noise(rng, self.n_s, 3))
            f = np.repeat(np.clip(rate, 6, 30) / 60.0, int(round(fs))) if fs >= 1 else rate / 60
            self._cache[key] = (2 * np.pi * np.cumsum(f) / fs).astype(np.float64)
        return self._cache[key]

    def _resp(self, fs, n):
        rng = _child(self.seed, self.subject, "resp_amp")
        c = self.ctrl
        amp = c["resp_amp"] * (1 + 0.8 * c["resp_irreg"] * _slow_noise(rng, self.n_s, 5))
        h = self.hypopneas
        for o, d, dep in zip(h["onset"], h["dur"], h["depth"]):
            amp[int(o):min(int(o + d), self.n_s)] *= 1 - dep
        ph = self.resp_phase(fs)
        return (self._up(np.clip(amp, 0.05, None), fs) * (np.sin(ph) + 0.2 * np.sin(2 * ph + 0.5))).astype(np.float32)

    def spo2(self) -> np.ndarray:
        """SpO2 in % at 1 Hz: baseline, slow wander, desaturations ~20 s after hypopneas."""
        rng = _child(self.seed, self.subject, "spo2")
        x = self.p["spo2_pct"] + 0.4 * _slow_noise(rng, self.n_s, 60)
        h = self.hypopneas
        t = np.arange(self.n_s)
        for o, d, dep in zip(h["onset"], h["dur"], h["depth"]):
            drop = 2.0 + 4.0 * dep
            tt = t - (o + d * 0.6 + 15)
            x -= drop * np.exp(-0.5 * (tt / 8.0) ** 2)
        return np.clip(np.round(x), 70, 100)


def _pink(rng, n, fs, uv):
    return _band_noise(rng, n, fs, 0.3, min(0.45 * fs, 45), slope=0.75) * np.float32(uv)


def _channel(night: _Night, spec: ChannelSpec) -> np.ndarray:
    """One channel's samples in generator units (uV for electrodes)."""
    fs, kind = spec.sfreq, spec.kind
    n = int(round(night.n_s * fs))
    rng = _child(night.seed, night.subject, f"ch:{spec.label}")
    p, c = night.p, night.ctrl
    src = night.source
    if kind == "eeg":
        if spec.where not in _LOCATIONS:
            raise ValueError(f"channel {spec.label!r}: EEG location {spec.where!r} not in {sorted(_LOCATIONS)}")
        region, side, gain = _LOCATIONS[spec.where]
        g = _REGION[region]
        sd = {-1: "L", 1: "R", 0: "M"}[side]
        x = _pink(rng, n, fs, p["bg_uv"]) * night._up(c["bg"], fs)
        for band in ("alpha", "theta", "delta"):
            x += g[band] * src(f"{band}_{sd}", fs)
        x += g["beta"] * src("beta", fs)
        x += g["sp_fast"] * src("sp_fast", fs) + g["sp_slow"] * src("sp_slow", fs)
        x += g["kc"] * src("kc", fs) + g["vertex"] * src("vertex", fs) + g["saw"] * src("saw", fs)
        x += g["eog"] * (src("eye_v", fs) + 0.3 * side * src("eye_h", fs))
        # Muscle and cardiac pickup, movement artefact.
        emg_pick = 0.12 if region in ("T", "Fp", "F") else 0.04
        x += emg_pick * src(f"muscle_{sd}", fs) + 0.004 * src("ecg", fs) + 60 * src("move", fs)
        x *= gain
    elif kind == "eog":
        if spec.where == "H":  # one bipolar horizontal derivation (Sleep-EDF): EEG mostly cancels
            x = 1.6 * src("eye_h", fs) + 0.35 * src("eye_v", fs)
            x += 0.2 * (src("delta_M", fs) + src("kc", fs)) + _pink(rng, n, fs, 5.0)
            x += 0.1 * src("muscle_M", fs) + 150 * src("move", fs)
        else:
            sgn = 1.0 if spec.where == "L" else -1.0
            sd = "L" if spec.where == "L" else "R"
            x = sgn * src("eye_h", fs) - sgn * 0.6 * src("eye_v", fs)
            # Frontal EEG reaches both eyes in phase (delta, K-complexes); eye movements out of phase.
            x += 0.55 * src(f"delta_{sd}", fs) + 0.5 * src("kc", fs) + 0.25 * src(f"theta_{sd}", fs)
            x += 0.15 * src(f"alpha_{sd}", fs) + 0.3 * src("sp_slow", fs)
            x += _pink(rng, n, fs, 4.0) + 0.1 * src(f"muscle_{sd}", fs) + 150 * src("move", fs)
        if fs >= 2:
            x = scipy.signal.sosfilt(scipy.signal.butter(1, 0.3, "highpass", fs=fs, output="sos"), x)
    elif kind == "emg":
        x = src("emg_env", fs) * _band_noise(rng, n, fs, 10, min(0.45 * fs, 100))
        x += 1.0 * src("pink", fs) + 0.008 * src("ecg", fs)
    elif kind == "emg_env":  # Sleep-EDF: high-passed, rectified, low-passed chin EMG at 1 Hz
        hi = 100.0
        e = night.source("emg_env", hi) * _band_noise(rng, int(night.n_s * hi), hi, 16, 45)
        x = np.abs(e).reshape(night.n_s, int(hi)).mean(axis=1)
        x = np.repeat(x, int(round(fs))) if fs > 1 else x
    elif kind == "leg":
        env = np.full(n, 2.5, np.float32)
        lg = night.legs
        if len(lg["onset"]):
            L = int(np.ceil(lg["dur"].max() * fs)) + 1
            t = np.arange(L) / fs
            d = lg["dur"][:, None]
            _place(env, np.round(lg["onset"] * fs).astype(int),
                   np.where(t < d, np.sin(np.pi * np.clip(t / d, 0, 1)), 0.0) * lg["uv"][:, None])
        env += 20 * night._up(night.movement_s, fs)
        x = env * _band_noise(rng, n, fs, 10, min(0.45 * fs, 100)) + 1.0 * src("pink", fs)
    elif kind == "ecg":
        x = src("ecg", fs) + 8.0 * src("pink", fs) + 0.05 * src("emg_env", fs) * _band_noise(rng, n, fs, 20, min(0.45 * fs, 90))
    elif kind in ("thor", "abdo", "flow", "therm") and fs > 10:  # slow signals: make at 10 Hz
        x10 = _channel(night, replace(spec, sfreq=10.0, scale=1.0))
        t = np.arange(n, dtype=np.float64) / fs
        x = np.interp(t, np.arange(len(x10)) / 10.0, x10)
    elif kind in ("thor", "abdo", "flow", "therm"):
        base = src("resp", fs) if fs >= 2 else _decimate_1hz(night.source("resp", 10.0), 10)
        if kind == "abdo":  # the abdomen lags the chest by a fraction of a breath
            lag = max(1, int(round(0.3 * fs)))
            base = np.r_[np.repeat(base[:1], lag), base[:-lag]]
        gain = {"thor": 1.0, "abdo": 0.8, "flow": 1.2, "therm": 1.0}[kind]
        x = gain * base + _band_noise(rng, n, fs, 0.02, min(0.45 * fs, 3), slope=1.0) * 0.05
        x += 0.5 * night._up(night.movement_s, fs) * _band_noise(rng, n, fs, 0.05, min(0.45 * fs, 3), slope=0.5)
    elif kind == "snore":
        if not p["snorer"]:
            return (2.0 * spec.scale) * src("pink", fs)
        ph = night.resp_phase(fs)
        insp = np.clip(np.sin(ph), 0, None) ** 2
        x = night._up(c["snore"], fs) * insp * _band_noise(rng, n, fs, 30, min(0.45 * fs, 90)) * 40
        x += 2.0 * src("pink", fs)
    elif kind == "spo2":
        x = np.repeat(night.spo2(), int(round(fs))) if fs >= 1 else night.spo2()
    elif kind == "hr":
        beats = night.beats()
        inst = 60.0 / np.diff(beats)
        x = np.interp(np.arange(night.n_s) + 0.5, beats[1:], inst)
        x = np.repeat(np.round(x, 1), int(round(fs)))
    elif kind == "position":  # changes at awakenings only
        ch = np.flatnonzero(np.diff(night.stage_s == W, prepend=0) > 0)
        pos = np.zeros(night.n_s)
        vals = rng.integers(0, 4, len(ch) + 1)
        for i, start in enumerate(ch):
            if rng.random() < 0.5:
                pos[start:] = vals[i + 1]
        x = np.repeat(pos, int(round(fs)))
    elif kind == "light":
        x = np.zeros(night.n_s)
        x[: int(rng.integers(30, 120))] = 1.0
        x = np.repeat(x, int(round(fs)))
    elif kind in ("oxstat", "marker"):
        x = np.zeros(n)
    elif kind == "temp":  # rectal temperature falls across the night
        t = np.arange(night.n_s) / max(night.n_s, 1)
        x = 37.1 - 0.6 * np.sin(np.pi * t * 0.8) + 0.03 * _slow_noise(rng, night.n_s, 120)
        x = np.repeat(x, int(round(fs)))
    elif kind == "dc":
        x = 5.0 * _slow_noise(rng, night.n_s, 300) + rng.uniform(-50, 50)
        x = np.repeat(x, int(round(fs)))
    else:
        raise ValueError(f"channel {spec.label!r}: unknown kind {kind!r}")
    if kind in ("eeg", "eog", "emg", "ecg", "leg") and p["line_uv"] > 0 and night.line_hz < fs / 2:
        x = x + p["line_uv"] * rng.uniform(0.2, 1.0) * src("line", fs)
    x = np.asarray(x, dtype=np.float32)
    return x if spec.scale == 1.0 else (x.astype(np.float64) * spec.scale).astype(np.float32)


def _decimate_1hz(x: np.ndarray, k: int) -> np.ndarray:
    return x.reshape(-1, k).mean(axis=1).astype(np.float32)


def synth_night(channels: Sequence[ChannelSpec] | None = None, *, minutes: float = 480.0, seed: int = 0,
                subject: int = 0, age_range: tuple[float, float] = (20.0, 80.0),
                stages: Sequence[int] | None = None, line_hz: float = 50.0) -> SynthNight:
    """Generate one night of PSG and the hypnogram behind it.

    Parameters
    ----------
    channels : sequence of ChannelSpec, optional
        What to synthesise (label, kind, location, rate); default F3 C3 O1 F4 C4 O2, LOC, ROC, chin
        EMG and ECG at 200 Hz.
    minutes : float
        Night length; rounded down to whole 30-s epochs, at least ``MIN_MINUTES``.
    seed, subject : int
        The night is a pure function of (seed, subject, channels, minutes).
    age_range : (float, float)
        Years, for the subject's age.
    stages : sequence of int, optional
        AASM codes (0..4) per epoch to use instead of a generated hypnogram (``minutes`` is then
        ignored: the night lasts ``30 * len(stages)`` s).
    line_hz : float
        Mains frequency for the (small, subject-dependent) line noise.

    Returns
    -------
    SynthNight
    """
    if stages is None:
        _check_minutes(minutes)
    channels = list(DEFAULT_CHANNELS if channels is None else channels)
    labels = [c.label for c in channels]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise ValueError(f"duplicate channel labels {dup}")
    rng = _child(seed, subject, "subject")
    subj = _draw_subject(rng, age_range)
    n_epochs = int(minutes * 60 // EPOCH_S)
    hyp_rng = _child(seed, subject, "hypnogram")
    if stages is None:
        st, swf = synth_hypnogram(n_epochs, hyp_rng, age=subj["age"])
    else:
        st = np.asarray(stages, dtype=np.int8)
        if st.ndim != 1 or len(st) == 0 or st.min() < 0 or st.max() >= N_STAGES:
            raise ValueError(f"stages must be a 1-d sequence of codes 0..{N_STAGES - 1}; got {st!r}")
        swf = np.where(st == N3, hyp_rng.uniform(0.25, 0.9, len(st)), np.where(st == N2, 0.08, 0.0))
        n_epochs = len(st)
    # Movement time: a few epochs at awakenings out of sleep.
    mv_rng = _child(seed, subject, "movement")
    wake_after_sleep = np.flatnonzero((st == W) & (np.r_[W, st[:-1]] != W))
    movement = np.zeros(n_epochs, bool)
    if len(wake_after_sleep) and n_epochs > 120:
        k = min(len(wake_after_sleep), int(mv_rng.integers(0, 4)))
        movement[mv_rng.choice(wake_after_sleep, size=k, replace=False)] = True
    night = _Night(st, swf, movement, seed, subject, subj, line_hz)
    # Electrode channels share one generation rate (the highest asked for) so that, say, SHHS's
    # 50-Hz EOG carries the same frontal delta as its 125-Hz EEG; slower ones are then resampled.
    base_fs = max((c.sfreq for c in channels if c.kind in _ELECTRODE), default=None)
    signals, sfreq = {}, {}
    for spec in channels:
        if spec.kind in _ELECTRODE and spec.sfreq != base_fs:
            ratio = Fraction(spec.sfreq / base_fs).limit_denominator(1000)
            x = _channel(night, replace(spec, sfreq=base_fs))
            x = scipy.signal.resample_poly(x, ratio.numerator, ratio.denominator).astype(np.float32)
        else:
            x = _channel(night, spec)
        signals[spec.label] = x
        sfreq[spec.label] = spec.sfreq
    s2 = _second_scorer(st, night.clarity, _child(seed, subject, "scorer2"))
    meta = dict(subj)
    meta["agreement_scorer2"] = round(float(np.mean(s2 == st)), 4)
    return SynthNight(stages=st, stages_scorer2=s2, deep=(st == N3) & (swf > 0.5), movement=movement,
                      signals=signals, sfreq=sfreq, meta=meta, events=night.events)


def _check_minutes(minutes) -> None:
    if not (isinstance(minutes, int | float) and np.isfinite(minutes) and minutes >= MIN_MINUTES):
        raise ValueError(f"minutes {minutes!r}: must be a number >= {MIN_MINUTES} (all five stages need room)")


# ----------------------------------------------------------------------------------------------
# Dataset layouts: the real files' names, channel labels, rates, units and label files
# ----------------------------------------------------------------------------------------------
_ISRUC_KINDS = {
    "LOC": ("eog", "L"), "ROC": ("eog", "R"), "E1": ("eog", "L"), "E2": ("eog", "R"),
    "X1": ("emg", "chin"), "X2": ("ecg", ""), "X3": ("leg", "L"), "X4": ("leg", "R"), "X5": ("snore", ""),
    "X6": ("flow", ""), "X7": ("abdo", ""), "X8": ("thor", ""), "SaO2": ("spo2", ""), "SpO2": ("spo2", ""),
}
# Subgroup-1 style (A1/A2 references) and the M1/M2 spelling other ISRUC recordings use.
ISRUC_LABELS_A = ("LOC-A2", "ROC-A1", "F3-A2", "C3-A2", "O1-A2", "F4-A1", "C4-A1", "O2-A1", "X1", "X2",
                  "X3", "X4", "X5", "X6", "DC3", "X7", "X8", "SaO2", "DC8")
ISRUC_LABELS_M = ("E1-M2", "E2-M1", "F3-M2", "C3-M2", "O1-M2", "F4-M1", "C4-M1", "O2-M1", "X1", "X2",
                  "X3", "X4", "X5", "X6", "DC4", "X7", "X8", "SpO2", "DC8", "DC7")
ISRUC_CODES = {W: 0, N1: 1, N2: 2, N3: 3, REM: 5}


def _isruc_channels(subject: int) -> list[ChannelSpec]:
    labels = ISRUC_LABELS_M if subject % 2 else ISRUC_LABELS_A
    out = []
    for label in labels:
        head = label.split("-")[0]
        if label.startswith("DC"):
            out.append(_ch(label, "dc", "", 200, "mV"))
        elif head in _ISRUC_KINDS:
            kind, where = _ISRUC_KINDS[head]
            out.append(_ch(label, kind, where, 200, "%" if kind == "spo2" else "uV",
                           scale=60.0 if kind in ("flow", "abdo", "thor") else 1.0))
        else:
            out.append(_ch(label, "eeg", head, 200))
    return out


_MASS_EEG = ("Fp1", "Fp2", "F7", "F8", "F3", "F4", "T3", "T4", "C3", "C4", "T5", "T6", "P3", "P4", "O1",
             "O2", "Fz", "Cz", "Pz", "Oz", "A2")


def _mass_channels(subject: int) -> list[ChannelSpec]:
    # Most SS3 nights are referenced to linked ears (CLE); a few to a single ear (LER).
    ref = "LER" if subject % 4 == 3 else "CLE"
    out = [_ch(f"EEG {loc}-{ref}", "eeg", loc, 256) for loc in _MASS_EEG]
    out += [_ch("EOG Left Horiz", "eog", "L", 256), _ch("EOG Right Horiz", "eog", "R", 256)]
    out += [_ch(f"EMG Chin{i}", "emg", f"chin{i}", 256) for i in (1, 2, 3)]
    out += [_ch("ECG ECGI", "ecg", "", 256), _ch("Resp Belt Thor", "thor", "", 256, scale=100.0),
            _ch("Resp Belt Abdo", "abdo", "", 256, scale=100.0)]
    return out


SHHS_CHANNELS: tuple[ChannelSpec, ...] = (
    _ch("SaO2", "spo2", "", 1, "%"), _ch("H.R.", "hr", "", 1, "bpm"), _ch("EEG(sec)", "eeg", "C3", 125),
    _ch("ECG", "ecg", "", 125, "mV", scale=0.001), _ch("EMG", "emg", "chin", 125),
    _ch("EOG(L)", "eog", "L", 50), _ch("EOG(R)", "eog", "R", 50), _ch("EEG", "eeg", "C4", 125),
    _ch("THOR RES", "thor", "", 10, ""), _ch("ABDO RES", "abdo", "", 10, ""),
    _ch("POSITION", "position", "", 1, ""), _ch("LIGHT", "light", "", 1, ""),
    _ch("AIRFLOW", "flow", "", 10, ""), _ch("OX stat", "oxstat", "", 1, "", physical_range=(0.0, 3.0)),
)
_SEDF_EEG = dict(transducer="Ag-AgCl electrodes", prefiltering="HP:0.5Hz LP:100Hz [enhanced cassette BW]",
                 digital_range=(-2048, 2047))
SLEEPEDF_CHANNELS: tuple[ChannelSpec, ...] = (
    _ch("EEG Fpz-Cz", "eeg", "Fpz-Cz", 100, **_SEDF_EEG), _ch("EEG Pz-Oz", "eeg", "Pz-Oz", 100, **_SEDF_EEG),
    _ch("EOG horizontal", "eog", "H", 100, **_SEDF_EEG),
    _ch("Resp oro-nasal", "therm", "", 1, "", transducer="Oral-nasal thermistors",
        prefiltering="HP:0.03Hz LP:0.9Hz", digital_range=(-2048, 2047), scale=400.0),
    _ch("EMG submental", "emg_env", "", 1, "uV", transducer="Ag-AgCl electrodes",
        prefiltering="HP:16Hz Rectification LP:0.7Hz", digital_range=(-2500, 2500)),
    _ch("Temp rectal", "temp", "", 1, "DegC", transducer="Rectal thermistor", physical_range=(34.0, 40.0),
        digital_range=(-2849, 2731)),
    _ch("Event marker", "marker", "", 1, "", transducer="Marker button", prefiltering="Hold during 2 seconds",
        physical_range=(-2047.0, 2048.0), digital_range=(-2047, 2048)),
)

# Per format: subject ages, mains frequency, most subjects the real dataset naming allows.
_FORMAT_INFO = {
    "isruc": dict(age_range=(20.0, 85.0), line_hz=50.0, max_subjects=9999, date=_dt.date(2009, 3, 2)),
    "mass": dict(age_range=(20.0, 69.0), line_hz=60.0, max_subjects=9999, date=_dt.date(2000, 1, 1)),
    "shhs": dict(age_range=(40.0, 89.0), line_hz=60.0, max_subjects=9999, date=_dt.date(1985, 1, 1)),
    "sleepedf": dict(age_range=(25.0, 101.0), line_hz=50.0, max_subjects=100, date=_dt.date(1989, 4, 24)),
}


def format_channels(fmt: str, subject: int = 0) -> list[ChannelSpec]:
    """The channel list a format's real files carry (labels, rates, units) for one subject."""
    _check_format(fmt)
    if fmt == "isruc":
        return _isruc_channels(subject)
    if fmt == "mass":
        return _mass_channels(subject)
    return list(SHHS_CHANNELS if fmt == "shhs" else SLEEPEDF_CHANNELS)


def scored_stages(night: SynthNight, fmt: str) -> np.ndarray:
    """The AASM stages a reader should get back from a format's label file (movement time is
    unscored only where the format has a label for it: Sleep-EDF)."""
    _check_format(fmt)
    out = night.stages.astype(np.int8).copy()
    if fmt == "sleepedf":
        out[night.movement] = UNSCORED
    return out


def _rk_texts(night: SynthNight, fmt: str) -> list[str]:
    names = {W: "Sleep stage W", N1: "Sleep stage 1", N2: "Sleep stage 2", N3: "Sleep stage 3", REM: "Sleep stage R"}
    texts = [names[int(s)] for s in night.stages]
    for i in np.flatnonzero(night.deep):
        if fmt == "sleepedf":  # R&K: > 50 % slow waves is stage 4 (MASS-SS3 was scored AASM: no 4)
            texts[i] = "Sleep stage 4"
    if fmt == "sleepedf":
        for i in np.flatnonzero(night.movement):
            texts[i] = "Movement time"
    return texts


_NSRR = {W: "Wake|0", N1: "Stage 1 sleep|1", N2: "Stage 2 sleep|2", N3: "Stage 3 sleep|3", REM: "REM sleep|5"}


def _nsrr_xml(night: SynthNight, start: _dt.datetime) -> str:
    """NSRR PSGAnnotation XML: recording start, stage runs, arousals, hypopneas and desaturations."""
    dur = night.n_epochs * EPOCH_S
    lines = ['<?xml version="1.0" encoding="UTF-8" standalone="no"?>', "<PSGAnnotation>",
             "<SoftwareVersion>Compumedics</SoftwareVersion>", "<EpochLength>30</EpochLength>",
             "<ScoredEvents>", "<ScoredEvent>", "<EventType/>", "<EventConcept>Recording Start Time</EventConcept>",
             "<Start>0</Start>", f"<Duration>{dur:.1f}</Duration>",
             f"<ClockTime>00.00.00 {start:%H.%M.%S}</ClockTime>", "</ScoredEvent>"]
    concepts = [_NSRR[int(s)] for s in night.stages]
    for i in np.flatnonzero(night.deep):
        concepts[i] = "Stage 4 sleep|4"
    events = []
    i = 0
    while i < len(concepts):
        j = i
        while j < len(concepts) and concepts[j] == concepts[i]:
            j += 1
        events.append((i * EPOCH_S, (j - i) * EPOCH_S, "Stages|Stages", concepts[i], None))
        i = j
    for o, d in night.events.get("arousal", np.zeros((0, 2))):
        events.append((o, d, "Arousals|Arousals", "Arousal|Arousal ()", "EEG"))
    for o, d in night.events.get("hypopnea", np.zeros((0, 2))):
        events.append((o, d, "Respiratory|Respiratory", "Hypopnea|Hypopnea", "ABDO RES"))
        events.append((o + d * 0.6 + 8, 20.0, "Respiratory|Respiratory", "SpO2 desaturation|SpO2 desaturation", "SaO2"))
    stage_events = [e for e in events if e[2] == "Stages|Stages"]
    others = sorted((e for e in events if e[2] != "Stages|Stages"), key=lambda e: e[0])
    for o, d, etype, concept, loc in others + stage_events:  # NSRR files list stages last
        if o + d > dur:
            continue
        lines += ["<ScoredEvent>", f"<EventType>{etype}</EventType>", f"<EventConcept>{concept}</EventConcept>",
                  f"<Start>{o:.1f}</Start>", f"<Duration>{d:.1f}</Duration>"]
        if loc:
            lines.append(f"<SignalLocation>{loc}</SignalLocation>")
        lines.append("</ScoredEvent>")
    lines += ["</ScoredEvents>", "</PSGAnnotation>"]
    return "\n".join(lines) + "\n"


def _paths(fmt: str, out: Path, subject: int) -> dict[str, Path]:
    """Files one subject's recording occupies, keyed by role."""
    if fmt == "isruc":
        sid = str(subject + 1)
        d = out / sid
        return {"signal": d / f"{sid}.rec", "scorer1": d / f"{sid}_1.txt", "scorer2": d / f"{sid}_2.txt"}
    if fmt == "mass":
        sid = f"01-03-{subject + 1:04d}"
        return {"signal": out / f"{sid} PSG.edf", "hypnogram": out / f"{sid} Base.edf"}
    if fmt == "shhs":
        sid = f"shhs1-{200001 + subject}"
        return {"signal": out / "edfs" / "shhs1" / f"{sid}.edf",
                "hypnogram": out / "annotations-events-nsrr" / "shhs1" / f"{sid}-nsrr.xml"}
    sid = f"SC4{subject:02d}1"
    return {"signal": out / f"{sid}E0-PSG.edf", "hypnogram": out / f"{sid}EC-Hypnogram.edf"}


def _edf_channels(night: SynthNight, specs: Sequence[ChannelSpec]) -> list[EdfChannel]:
    return [EdfChannel(label=s.label, sfreq=s.sfreq, data=night.signals[s.label], unit=s.unit,
                       transducer=s.transducer, prefiltering=s.prefiltering, physical_range=s.physical_range,
                       digital_range=s.digital_range) for s in specs]


def _write_subject(fmt: str, out: Path, subject: int, *, minutes: float, seed: int) -> dict:
    info = _FORMAT_INFO[fmt]
    specs = format_channels(fmt, subject)
    night = synth_night(specs, minutes=minutes, seed=seed, subject=subject, age_range=info["age_range"],
                        line_hz=info["line_hz"])
    paths = _paths(fmt, out, subject)
    rng = _child(seed, subject, "header")
    start = _dt.datetime.combine(info["date"] + _dt.timedelta(days=int(subject)),
                                 _dt.time(21, 0)) + _dt.timedelta(minutes=int(rng.integers(0, 150)))
    age, sex = night.meta["age"], night.meta["sex"]
    birth = start.date() - _dt.timedelta(days=int(age * 365.25))
    chans = _edf_channels(night, specs)
    if fmt == "isruc":
        write_edf(paths["signal"], chans, patient=edf_patient(sex=sex, birthdate=birth), startdatetime=start)
        for key, st in (("scorer1", night.stages), ("scorer2", night.stages_scorer2)):
            write_text_atomic(paths[key], "".join(f"{ISRUC_CODES[int(s)]}\n" for s in st))
    elif fmt == "mass":
        write_edf(paths["signal"], chans, patient=edf_patient(sex=sex, birthdate=birth), startdatetime=start,
                  edf_plus=True)
        texts = _rk_texts(night, fmt)
        n = len(texts)
        write_annotations_edf(paths["hypnogram"], np.arange(n) * EPOCH_S, np.full(n, EPOCH_S), texts,
                              startdatetime=start, patient=edf_patient(sex=sex, birthdate=birth))
    elif fmt == "shhs":
        write_edf(paths["signal"], chans, patient=edf_patient(sex=sex, birthdate=birth), startdatetime=start)
        write_text_atomic(paths["hypnogram"], _nsrr_xml(night, start))
    else:
        name = f"{'Female' if sex == 'F' else 'Male'}_{int(age)}yr"
        write_edf(paths["signal"], chans, patient=edf_patient(sex=sex, name=name), startdatetime=start,
                  data_record_duration=30.0)
        texts = _rk_texts(night, fmt)
        onsets, durs, runs = [], [], []
        for i, t in enumerate(texts):  # runs of equal stages, as the real hypnograms
            if runs and runs[-1] == t:
                durs[-1] += EPOCH_S
            else:
                onsets.append(i * EPOCH_S)
                durs.append(EPOCH_S)
                runs.append(t)
        # The real hypnograms end with a "?" stretch that runs past the signal.
        onsets.append(len(texts) * EPOCH_S)
        durs.append(float(EPOCH_S * rng.integers(10, 200)))
        runs.append("Sleep stage ?")
        write_annotations_edf(paths["hypnogram"], onsets, durs, runs, startdatetime=start,
                              patient=edf_patient(sex=sex, name=name))
    counts = stage_counts(scored_stages(night, fmt))
    recording = {"isruc": str(subject + 1), "mass": paths["signal"].name[:10],
                 "shhs": paths["signal"].stem, "sleepedf": paths["signal"].name[:8]}[fmt]
    return {
        "recording": recording,
        "files": {k: str(v.relative_to(out)) for k, v in paths.items()},
        "age": age, "sex": sex, "n_epochs": night.n_epochs, "stage_counts": counts,
        "channels": [s.label for s in specs], "sfreq": {s.label: s.sfreq for s in specs},
        "agreement_scorer2": night.meta["agreement_scorer2"],
        "start": start.isoformat(),
    }


def _check_format(fmt) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} not supported by synth; choose from {list(FORMATS)}")


def synth_dataset(fmt: str, out, *, subjects: int, minutes: float, seed: int = 0,
                  overwrite: bool = False, progress: bool = True) -> list[Path]:
    """Write ``subjects`` synthetic nights in ``fmt``'s on-disk layout under ``out``.

    Parameters
    ----------
    fmt : str
        One of ``FORMATS``.
    out : str or Path
        Output folder (created).
    subjects : int
        Number of subjects, one night each (1..9999; Sleep-EDF names allow 100).
    minutes : float
        Night length (>= ``MIN_MINUTES``), rounded down to whole 30-s epochs.
    seed : int
        Same seed, same bytes.
    overwrite : bool
        Replace recordings already there; otherwise an existing file is an error.
    progress : bool
        Show a tqdm bar over subjects.

    Returns
    -------
    list of Path
        The signal files (``.rec`` / ``PSG.edf`` / ``.edf``), one per subject.
    """
    _check_format(fmt)
    if isinstance(subjects, bool) or not isinstance(subjects, int | np.integer) or subjects < 1:
        raise ValueError(f"subjects {subjects!r}: must be an integer >= 1")
    if subjects > _FORMAT_INFO[fmt]["max_subjects"]:
        raise ValueError(f"subjects {subjects}: {fmt} file names allow at most {_FORMAT_INFO[fmt]['max_subjects']}")
    _check_minutes(minutes)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed {seed!r}: must be an integer >= 0")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} exists and is not a folder")
    if not overwrite:
        taken = [p for i in range(subjects) for p in _paths(fmt, out, i).values() if p.exists()]
        if taken:
            raise FileExistsError(f"{len(taken)} output files already exist (first: {taken[0]}); "
                                  "pass overwrite=True / --overwrite to replace them")
    out.mkdir(parents=True, exist_ok=True)
    from tqdm.auto import tqdm

    records = []
    for i in tqdm(range(subjects), desc=f"synth {fmt}", unit="night", disable=not progress):
        records.append(_write_subject(fmt, out, i, minutes=float(minutes), seed=int(seed)))
    if fmt == "shhs":  # SHHS keeps age and sex in a dataset CSV (gender: 1 male, 2 female)
        rows = ["nsrrid,age_s1,gender"] + [
            f"{r['recording'].split('-')[1]},{int(r['age'])},{1 if r['sex'] == 'M' else 2}" for r in records]
        write_text_atomic(out / "datasets" / "shhs1-dataset-synthetic.csv", "\n".join(rows) + "\n")
    write_json_atomic(out / "synth.json", {
        "kind": "psgvlm-synthetic-psg", "format": fmt,
        "config": {"subjects": int(subjects), "minutes": float(minutes), "seed": int(seed)},
        "recordings": records, "provenance": provenance(),
    })
    return [out / r["files"]["signal"] for r in records]


def main(argv: list[str] | None = None) -> int:
    """``psgvlm synth``: write synthetic recordings in a dataset's true on-disk format."""
    parser = argparse.ArgumentParser(prog="psgvlm synth", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--format", required=True, choices=FORMATS, help="on-disk layout to write")
    parser.add_argument("--subjects", type=int, default=1, help="number of subjects (one night each)")
    parser.add_argument("--minutes", type=float, default=480.0, help=f"night length (>= {MIN_MINUTES:g})")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same bytes)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--overwrite", action="store_true", help="replace recordings already in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        paths = synth_dataset(args.format, args.out, subjects=args.subjects, minutes=args.minutes,
                              seed=args.seed, overwrite=args.overwrite, progress=not args.quiet)
    except (ValueError, FileExistsError) as err:
        print(f"psgvlm synth: {err}", file=sys.stderr)
        return 2
    print(f"wrote {len(paths)} {args.format} recording(s) to {args.out} (manifest: synth.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
