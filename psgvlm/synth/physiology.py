"""Synthetic polysomnography: one night's signals, generated from a hypnogram by AASM physiology.

``synth_night(channels, minutes=..., seed=...)`` returns a ``SynthNight``: (n_times,) float32 arrays
in physical units per channel and the stages behind them; no file formats here (the datasets'
on-disk layouts are ``psgvlm.synth.layouts``).

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

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction

import numpy as np
import scipy.signal

from psgvlm.stages import EPOCH_S, N2, N3, N_STAGES, W
from psgvlm.synth.hypnogram import second_scorer, synth_hypnogram
from psgvlm.synth.noise import band_noise, child_rng, events_from_rate, pink, place, slow_noise
from psgvlm.synth.sources import NightSources

MIN_MINUTES = 5.0  # shortest night that still holds all five stages

# Scalp gains per location (mastoid-referenced unless bipolar): relative size of each rhythm and
# event there. "side": -1 left hemisphere, 1 right, 0 midline; "eog": eye-movement pickup.
_REGION = {
    "Fp": dict(alpha=0.2, theta=0.7, delta=1.05, beta=1.0, sp_fast=0.35, sp_slow=0.8, kc=0.85, vertex=0.45, saw=0.6, eog=0.55),
    "F": dict(alpha=0.35, theta=0.9, delta=1.0, beta=0.9, sp_fast=0.55, sp_slow=1.0, kc=1.0, vertex=0.75, saw=0.85, eog=0.14),
    "T": dict(alpha=0.45, theta=0.7, delta=0.6, beta=0.9, sp_fast=0.4, sp_slow=0.4, kc=0.5, vertex=0.35, saw=0.5, eog=0.1),
    "C": dict(alpha=0.45, theta=1.0, delta=0.8, beta=0.8, sp_fast=1.0, sp_slow=0.7, kc=0.85, vertex=1.0, saw=1.0, eog=0.04),
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
    kind: str  # one of the keys of _KINDS below (eeg, eog, emg, emg_env, leg, ecg, hr, thor, ...)
    where: str = ""  # scalp location for eeg ("C3"), side for eog/leg ("L"/"R"), variant for emg
    sfreq: float = 200.0  # Hz (stored as float)
    unit: str = "uV"
    transducer: str = ""
    prefiltering: str = ""
    physical_range: tuple[float, float] | None = None
    digital_range: tuple[int, int] = (-32768, 32767)
    scale: float = 1.0  # physical units per generator unit (0.001 for ECG written in mV)

    def __post_init__(self):
        object.__setattr__(self, "sfreq", float(self.sfreq))


_ELECTRODE = frozenset({"eeg", "eog", "emg", "ecg", "leg"})

DEFAULT_CHANNELS: tuple[ChannelSpec, ...] = tuple(
    [ChannelSpec(c, "eeg", c) for c in ("F3", "C3", "O1", "F4", "C4", "O2")]
    + [ChannelSpec("LOC", "eog", "L"), ChannelSpec("ROC", "eog", "R"), ChannelSpec("EMG", "emg", "chin1"),
       ChannelSpec("ECG", "ecg")]
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


def draw_subject(rng: np.random.Generator, age_range: tuple[float, float]) -> dict:
    """One subject's parameters: age (years), sex, rhythm frequencies (Hz), amplitudes (uV), event rates
    (per minute), heart rate (bpm), SpO2 (%); those with no unit in the name are relative factors."""
    age = float(rng.uniform(*age_range))
    young = float(np.clip((60 - age) / 40, 0.3, 1.2))
    ln = rng.lognormal
    subject = {
        "age": round(age, 1),
        "sex": str(rng.choice(["F", "M"])),
        "alpha_hz": float(np.clip(rng.normal(10.0, 0.7) - 0.01 * (age - 40), 8.3, 11.7)),
        "alpha_uv": float(17.0 * ln(0, 0.45)),
        "theta_uv": float(5.5 * ln(0, 0.2)),
        "delta_uv": float(22.0 * (0.8 + 0.2 * young) * ln(0, 0.15)),
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
    subject.update(_recording_variety(rng))  # drawn last: the draws above keep their values
    return subject


def _recording_variety(rng: np.random.Generator) -> dict:
    """How one night's recording differs from another's beyond physiology: amplifier gain and filters,
    montage, artefacts, eyes-open habit; factors unless the name carries a unit.

    Real uploads differ in exactly these ways (a 35-Hz low-pass, a 50-Hz-sampled file with nothing above
    25 Hz, a noisy mastoid with ECG on it, sweat sway, electrode pops), and a stager trained on one clean
    montage falls over on them.
    """
    lowpass = float(rng.uniform(18.0, 40.0))
    return {
        "eeg_gain": float(np.clip(rng.lognormal(0, 0.25), 0.6, 1.6)),  # all EEG (electrodes, skull, amplifier)
        "bg_slope": float(rng.uniform(0.55, 1.05)),  # exponent of the EEG background's 1/f amplitude spectrum
        "lowpass_hz": lowpass if rng.random() < 0.65 else 0.0,  # EEG/EOG amplifier low-pass (0: none)
        "montage_mix": float(rng.uniform(0.0, 0.35)),  # largest share of another region mixed into a lead
        "ecg_pick": float(np.clip(0.004 * rng.lognormal(0.7, 0.9), 0.002, 0.06)),  # ECG on the EEG (reference)
        "muscle_pick": float(rng.lognormal(0, 0.5)),  # scalp muscle on the EEG
        "sweat_uv": float(rng.uniform(5.0, 25.0)) if rng.random() < 0.3 else 0.0,  # slow sway in spells
        "pops_per_min": float(rng.uniform(0.02, 0.2)) if rng.random() < 0.4 else 0.0,  # electrode pops per lead
        "eyes_open_bias": float(rng.uniform(-1.0, 1.5)),  # > 0: wake spent more with eyes open (less alpha)
    }


# ----------------------------------------------------------------------------------------------
# Channels: one function per kind, (night, spec, n_times, rng) -> samples in generator units
# ----------------------------------------------------------------------------------------------
def _eeg(night: NightSources, spec: ChannelSpec, n: int, rng) -> np.ndarray:
    """Scalp EEG at ``spec.where``: background, rhythms and graphoelements by region, eye, muscle and
    cardiac pickup, movement artefact."""
    fs, p, src = spec.sfreq, night.p, night.source
    if spec.where not in _LOCATIONS:
        raise ValueError(f"channel {spec.label!r}: EEG location {spec.where!r} not in {sorted(_LOCATIONS)}")
    region, side, gain = _LOCATIONS[spec.where]
    # Montage variety: each lead takes up to `montage_mix` of another region's mixture (electrode
    # placement, reference) and a gain of its own; from a stream of its own (the lead's is untouched).
    mrng = child_rng(night.seed, night.subject, f"montage:{spec.label}")
    other, share = _REGION[str(mrng.choice(sorted(_REGION)))], mrng.uniform(0.0, p["montage_mix"])
    g = {k: (1 - share) * v + share * other[k] for k, v in _REGION[region].items()}
    gain *= p["eeg_gain"] * float(mrng.lognormal(0, 0.12))
    sd = {-1: "L", 1: "R", 0: "M"}[side]
    x = pink(rng, n, fs, p["bg_uv"], slope=p["bg_slope"]) * night.at_rate(night.ctrl["bg"], fs)
    for band in ("alpha", "theta", "delta"):
        x += g[band] * src(f"{band}_{sd}", fs)
    x += g["beta"] * src("beta", fs)
    x += g["sp_fast"] * src("sp_fast", fs) + g["sp_slow"] * src("sp_slow", fs)
    x += g["kc"] * src("kc", fs) + g["vertex"] * src("vertex", fs) + g["saw"] * src("saw", fs)
    x += g["eog"] * (src("eye_v", fs) + 0.3 * side * src("eye_h", fs))
    # Muscle and cardiac pickup, movement artefact.
    emg_pick = (0.12 if region in ("T", "Fp", "F") else 0.04) * p["muscle_pick"]
    x += emg_pick * src(f"muscle_{sd}", fs) + p["ecg_pick"] * src("ecg", fs) + 60 * src("move", fs)
    x += _artefacts(night, spec, n, mrng)
    x *= gain
    return x


def _artefacts(night: NightSources, spec: ChannelSpec, n: int, rng) -> np.ndarray:
    """Recording artefacts on one EEG lead (uV): the night's sweat sway and electrode pops (a sharp step
    decaying over 0.2-1 s)."""
    fs, p = spec.sfreq, night.p
    x = np.zeros(n, np.float32)
    if p["sweat_uv"] > 0:
        x += rng.uniform(0.5, 1.5) * night.source("sweat", fs)
    if p["pops_per_min"] > 0:
        onsets = events_from_rate(rng, np.full(night.n_s, p["pops_per_min"]))
        if len(onsets):
            t = np.arange(int(2.0 * fs)) / fs
            tau = rng.uniform(0.2, 1.0, len(onsets))[:, None]
            uv = rng.uniform(50.0, 250.0, len(onsets)) * rng.choice([-1.0, 1.0], len(onsets))
            place(x, np.round(onsets * fs).astype(int), uv[:, None] * np.exp(-t / tau))
    return x


def _eog(night: NightSources, spec: ChannelSpec, n: int, rng) -> np.ndarray:
    """EOG: one eye against a mastoid ("L"/"R", eye movements out of phase) or Sleep-EDF's bipolar "H"."""
    fs, src = spec.sfreq, night.source
    if spec.where == "H":  # one bipolar horizontal derivation (Sleep-EDF): EEG mostly cancels
        x = 1.6 * src("eye_h", fs) + 0.35 * src("eye_v", fs)
        x += 0.2 * (src("delta_M", fs) + src("kc", fs)) + pink(rng, n, fs, 5.0)
        x += 0.1 * src("muscle_M", fs) + 150 * src("move", fs)
    else:
        sgn = 1.0 if spec.where == "L" else -1.0
        sd = "L" if spec.where == "L" else "R"
        x = sgn * src("eye_h", fs) - sgn * 0.6 * src("eye_v", fs)
        # Frontal EEG reaches both eyes in phase (delta, K-complexes); eye movements out of phase.
        x += 0.55 * src(f"delta_{sd}", fs) + 0.5 * src("kc", fs) + 0.25 * src(f"theta_{sd}", fs)
        x += 0.15 * src(f"alpha_{sd}", fs) + 0.3 * src("sp_slow", fs)
        x += pink(rng, n, fs, 4.0) + 0.1 * src(f"muscle_{sd}", fs) + 150 * src("move", fs)
    if fs >= 2:
        x = scipy.signal.sosfilt(scipy.signal.butter(1, 0.3, "highpass", fs=fs, output="sos"), x)
    return x


def _emg(night: NightSources, spec: ChannelSpec, n: int, rng) -> np.ndarray:
    """Chin EMG: band noise under the chin-tone envelope, with ECG pickup."""
    fs, src = spec.sfreq, night.source
    x = src("emg_env", fs) * band_noise(rng, n, fs, 10, min(0.45 * fs, 100))
    x += 1.0 * src("pink", fs) + 0.008 * src("ecg", fs)
    return x


def _emg_envelope(night: NightSources, spec: ChannelSpec, n: int, rng) -> np.ndarray:
    """Sleep-EDF's chin EMG: high-passed, rectified and low-passed, at 1 Hz."""
    fs, hi = spec.sfreq, 100.0
    e = night.source("emg_env", hi) * band_noise(rng, int(night.n_s * hi), hi, 16, 45)
    x = np.abs(e).reshape(night.n_s, int(hi)).mean(axis=1)
    return np.repeat(x, int(round(fs))) if fs > 1 else x


def _leg(night: NightSources, spec: ChannelSpec, n: int, rng) -> np.ndarray:
    """Tibialis EMG: bursts at leg movements and movement time."""
    fs = spec.sfreq
    env = np.full(n, 2.5, np.float32)
    lg = night.legs
    if len(lg["onset"]):
        L = int(np.ceil(lg["dur"].max() * fs)) + 1
        t = np.arange(L) / fs
        d = lg["dur"][:, None]
        place(env, np.round(lg["onset"] * fs).astype(int),
              np.where(t < d, np.sin(np.pi * np.clip(t / d, 0, 1)), 0.0) * lg["uv"][:, None])
    env += 20 * night.at_rate(night.movement_s, fs)
    return env * band_noise(rng, n, fs, 10, min(0.45 * fs, 100)) + 1.0 * night.source("pink", fs)


def _ecg(night: NightSources, spec: ChannelSpec, n: int, rng) -> np.ndarray:
    """ECG lead with a 1/f floor and muscle noise."""
    fs, src = spec.sfreq, night.source
    return src("ecg", fs) + 8.0 * src("pink", fs) + 0.05 * src("emg_env", fs) * band_noise(rng, n, fs, 20, min(0.45 * fs, 90))


def _respiration(night: NightSources, spec: ChannelSpec, n: int, rng) -> np.ndarray:
    """Thoracic/abdominal belts, airflow, thermistor: breathing (made at <= 10 Hz, then interpolated)."""
    fs, kind = spec.sfreq, spec.kind
    if fs > 10:  # slow signals: make at 10 Hz
        x10 = _channel(night, replace(spec, sfreq=10.0, scale=1.0))
        t = np.arange(n, dtype=np.float64) / fs
        return np.interp(t, np.arange(len(x10)) / 10.0, x10)
    base = night.source("resp", fs) if fs >= 2 else _decimate_1hz(night.source("resp", 10.0), 10)
    if kind == "abdo":  # the abdomen lags the chest by a fraction of a breath
        lag = max(1, int(round(0.3 * fs)))
        base = np.r_[np.repeat(base[:1], lag), base[:-lag]]
    gain = {"thor": 1.0, "abdo": 0.8, "flow": 1.2, "therm": 1.0}[kind]
    x = gain * base + band_noise(rng, n, fs, 0.02, min(0.45 * fs, 3), slope=1.0) * 0.05
    x += 0.5 * night.at_rate(night.movement_s, fs) * band_noise(rng, n, fs, 0.05, min(0.45 * fs, 3), slope=0.5)
    return x


def _snore(night: NightSources, spec: ChannelSpec, n: int, rng) -> np.ndarray:
    """Snore microphone: inspiratory noise in snorers, the floor alone in others."""
    fs = spec.sfreq
    if not night.p["snorer"]:
        return 2.0 * night.source("pink", fs)
    ph = night.resp_phase(fs)
    insp = np.clip(np.sin(ph), 0, None) ** 2
    x = night.at_rate(night.ctrl["snore"], fs) * insp * band_noise(rng, n, fs, 30, min(0.45 * fs, 90)) * 40
    x += 2.0 * night.source("pink", fs)
    return x


def _spo2(night: NightSources, spec: ChannelSpec, n: int, rng) -> np.ndarray:
    """Oxygen saturation (%), whole numbers like an oximeter."""
    fs = spec.sfreq
    return np.repeat(night.spo2(), int(round(fs))) if fs >= 1 else night.spo2()


def _heart_rate(night: NightSources, spec: ChannelSpec, n: int, rng) -> np.ndarray:
    """Instantaneous heart rate (bpm) from the R peaks, to 0.1 bpm."""
    beats = night.beats()
    inst = 60.0 / np.diff(beats)
    x = np.interp(np.arange(night.n_s) + 0.5, beats[1:], inst)
    return np.repeat(np.round(x, 1), int(round(spec.sfreq)))


def _position(night: NightSources, spec: ChannelSpec, n: int, rng) -> np.ndarray:
    """Body position code 0-3, changing at awakenings only."""
    ch = np.flatnonzero(np.diff(night.stage_s == W, prepend=0) > 0)
    pos = np.zeros(night.n_s)
    vals = rng.integers(0, 4, len(ch) + 1)
    for i, start in enumerate(ch):
        if rng.random() < 0.5:
            pos[start:] = vals[i + 1]
    return np.repeat(pos, int(round(spec.sfreq)))


def _light(night: NightSources, spec: ChannelSpec, n: int, rng) -> np.ndarray:
    """Room light: on for the first 30-120 s."""
    x = np.zeros(night.n_s)
    x[: int(rng.integers(30, 120))] = 1.0
    return np.repeat(x, int(round(spec.sfreq)))


def _flat(night: NightSources, spec: ChannelSpec, n: int, rng) -> np.ndarray:
    """A channel that stays at zero (oximeter status, event marker)."""
    return np.zeros(n)


def _temperature(night: NightSources, spec: ChannelSpec, n: int, rng) -> np.ndarray:
    """Rectal temperature (degC), falling across the night."""
    t = np.arange(night.n_s) / max(night.n_s, 1)
    x = 37.1 - 0.6 * np.sin(np.pi * t * 0.8) + 0.03 * slow_noise(rng, night.n_s, 120)
    return np.repeat(x, int(round(spec.sfreq)))


def _dc(night: NightSources, spec: ChannelSpec, n: int, rng) -> np.ndarray:
    """An unused DC input: an offset and a slow drift."""
    x = 5.0 * slow_noise(rng, night.n_s, 300) + rng.uniform(-50, 50)
    return np.repeat(x, int(round(spec.sfreq)))


_KINDS = {
    "eeg": _eeg, "eog": _eog, "emg": _emg, "emg_env": _emg_envelope, "leg": _leg, "ecg": _ecg,
    "thor": _respiration, "abdo": _respiration, "flow": _respiration, "therm": _respiration,
    "snore": _snore, "spo2": _spo2, "hr": _heart_rate, "position": _position, "light": _light,
    "oxstat": _flat, "marker": _flat, "temp": _temperature, "dc": _dc,
}


def _channel(night: NightSources, spec: ChannelSpec) -> np.ndarray:
    """One channel's (n_times,) float32 samples in physical units: its kind's signal, mains pickup on
    electrodes, times ``spec.scale``."""
    if spec.kind not in _KINDS:
        raise ValueError(f"channel {spec.label!r}: unknown kind {spec.kind!r}; known kinds: {sorted(_KINDS)}")
    fs, p = spec.sfreq, night.p
    rng = child_rng(night.seed, night.subject, f"ch:{spec.label}")
    x = _KINDS[spec.kind](night, spec, int(round(night.n_s * fs)), rng)
    if spec.kind in _ELECTRODE and p["line_uv"] > 0 and night.line_hz < fs / 2:
        x = x + p["line_uv"] * rng.uniform(0.2, 1.0) * night.source("line", fs)
    if spec.kind in ("eeg", "eog") and 0 < p["lowpass_hz"] < 0.45 * fs:  # the night's amplifier low-pass
        x = scipy.signal.sosfilt(scipy.signal.butter(4, p["lowpass_hz"], fs=fs, output="sos"), x)
    x = np.asarray(x, dtype=np.float32)
    return x if spec.scale == 1.0 else (x.astype(np.float64) * spec.scale).astype(np.float32)


def _decimate_1hz(x: np.ndarray, k: int) -> np.ndarray:
    """Means of ``k`` consecutive samples (10 Hz -> 1 Hz for ``k=10``)."""
    return x.reshape(-1, k).mean(axis=1).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# The night
# ----------------------------------------------------------------------------------------------
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
        check_minutes(minutes)
    channels = list(DEFAULT_CHANNELS if channels is None else channels)
    labels = [c.label for c in channels]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise ValueError(f"duplicate channel labels {dup}")
    subj = draw_subject(child_rng(seed, subject, "subject"), age_range)
    st, swf = _night_stages(stages, minutes, child_rng(seed, subject, "hypnogram"), age=subj["age"])
    movement = _movement_epochs(st, child_rng(seed, subject, "movement"))
    night = NightSources(st, swf, movement, seed, subject, subj, line_hz)
    signals, sfreq = _signals(night, channels)
    s2 = second_scorer(st, night.clarity, child_rng(seed, subject, "scorer2"))
    meta = dict(subj)
    meta["agreement_scorer2"] = round(float(np.mean(s2 == st)), 4)
    return SynthNight(stages=st, stages_scorer2=s2, deep=(st == N3) & (swf > 0.5), movement=movement,
                      signals=signals, sfreq=sfreq, meta=meta, events=night.events)


def _night_stages(stages, minutes: float, rng, *, age: float) -> tuple[np.ndarray, np.ndarray]:
    """(n_epochs,) stages, generated or as given, and their (n_epochs,) slow-wave fractions."""
    if stages is None:
        return synth_hypnogram(int(minutes * 60 // EPOCH_S), rng, age=age)
    st = np.asarray(stages, dtype=np.int8)
    if st.ndim != 1 or len(st) == 0 or st.min() < 0 or st.max() >= N_STAGES:
        raise ValueError(f"stages must be a 1-d sequence of codes 0..{N_STAGES - 1}; got {st!r}")
    swf = np.where(st == N3, rng.uniform(0.25, 0.9, len(st)), np.where(st == N2, 0.08, 0.0))
    return st, swf


def _movement_epochs(st: np.ndarray, rng) -> np.ndarray:
    """(n_epochs,) bool: movement time, a few epochs at awakenings out of sleep (nights > 1 h)."""
    n_epochs = len(st)
    wake_after_sleep = np.flatnonzero((st == W) & (np.r_[W, st[:-1]] != W))
    movement = np.zeros(n_epochs, bool)
    if len(wake_after_sleep) and n_epochs > 120:
        k = min(len(wake_after_sleep), int(rng.integers(0, 4)))
        movement[rng.choice(wake_after_sleep, size=k, replace=False)] = True
    return movement


def _signals(night: NightSources, channels: list[ChannelSpec]) -> tuple[dict, dict]:
    """Every channel's samples (label -> (n_times,) float32) and rate (label -> Hz)."""
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
    return signals, sfreq


def check_minutes(minutes) -> None:
    """Raise ValueError unless ``minutes`` is a finite number >= ``MIN_MINUTES``."""
    if not (isinstance(minutes, int | float) and np.isfinite(minutes) and minutes >= MIN_MINUTES):
        raise ValueError(f"minutes {minutes!r}: must be a number >= {MIN_MINUTES} (all five stages need room)")
