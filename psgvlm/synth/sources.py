"""The shared sources of one synthetic night: per-stage controls, event lists and the signals channels mix.

``PROFILE`` holds one value per stage for every generator control (rhythm amplitudes, event rates,
chin tone, heart rate, breathing); ``NightSources`` turns a hypnogram into 1-Hz controls with ramps
at stage changes, ambiguous epochs and per-epoch variability, draws the events (spindles,
K-complexes, eye movements, twitches, arousals, hypopneas), and makes each shared signal once per
sampling rate.
"""

from __future__ import annotations

import numpy as np
import scipy.signal

from psgvlm.stages import EPOCH_S, N1, N2, N3, REM, W
from psgvlm.synth.hypnogram import CONFUSABLE
from psgvlm.synth.noise import band_noise, child_rng, events_from_rate, pink, place, slow_noise, smooth

# Stage profiles: one value per stage (W, N1, N2, N3, REM) for every generator control.
# Rates are multiplied by the subject's own density, amplitudes by the subject's own amplitude.
PROFILE: dict[str, tuple[float, float, float, float, float]] = {
    "alpha": (1.0, 0.35, 0.30, 0.30, 0.20),  # occipital 8-12 Hz, x subject alpha std (sleep keeps some: flat 4-12 Hz)
    "theta": (0.25, 1.0, 0.65, 0.55, 0.55),  # 4-7 Hz
    "delta": (0.06, 0.22, 0.30, 1.1, 0.12),  # 0.5-2 Hz, N3 further scaled by its slow-wave fraction
    "beta": (1.0, 0.5, 0.35, 0.3, 0.6),  # 15-25 Hz
    "bg": (0.75, 0.8, 1.0, 1.15, 0.6),  # 1/f background
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


def _ambiguous_epochs(stages: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    """Epochs whose features sit part-way to a neighbouring or confusable stage.

    Returns (n_epochs,) clarity (1 for a clean epoch) and (n_epochs,) the other stage it leans to.
    """
    n_ep = len(stages)
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
        alts, probs = CONFUSABLE[int(stages[i])]
        alt[i] = alts[rng.choice(len(alts), p=probs)]
    clarity[other] = rng.uniform(0.4, 0.85, other.sum())
    return clarity, alt


def _epoch_profiles(stages, alt, clarity, swf, subj: dict, rng) -> np.ndarray:
    """(n_epochs, n_features) generator controls per epoch: the stage's profile blended with ``alt``'s,
    varied epoch to epoch and per subject."""
    n_ep = len(stages)
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
    return prof


class NightSources:
    """One night's shared sources: stage controls at 1 Hz, event lists, and signals cached per rate.

    ``source(name, fs)`` gives a signal every channel of a kind draws on (a rhythm on one side of the
    head, an event train, eye position, chin tone, ECG, breathing) at ``fs`` Hz, made once per rate;
    channels mix these with their own gains and noise.
    """

    def __init__(self, stages, swf, movement, seed, subject, subj, line_hz):
        self.seed, self.subject, self.p, self.line_hz = seed, subject, subj, line_hz
        rng = child_rng(seed, subject, "controls")
        self.n_s = int(len(stages) * EPOCH_S)
        self.stage_s = np.repeat(stages, int(EPOCH_S))
        self.clarity, alt = _ambiguous_epochs(stages, rng)
        prof = _epoch_profiles(stages, alt, self.clarity, swf, subj, rng)
        self.ctrl = self._controls(prof, rng)
        arousals = self._add_arousals(rng)
        # Movement-time epochs: large artefacts on every channel.
        self.movement_s = np.repeat(movement, int(EPOCH_S)).astype(float)
        self.ctrl["emg"] += 2.5 * self.movement_s
        self.events: dict[str, np.ndarray] = {"arousal": arousals}
        self._event_lists(rng)
        self._cache: dict[tuple, np.ndarray] = {}

    # -- controls -------------------------------------------------------------------------------
    def _controls(self, prof: np.ndarray, rng) -> dict[str, np.ndarray]:
        """Per-second controls from the (n_epochs, n_features) profile: ramps, eyes, phasic REM."""
        n_s = self.n_s
        per_s = np.repeat(prof, int(EPOCH_S), axis=0)  # (n_s, n_features)
        ctrl = {f: smooth(per_s[:, i], 15) for f, i in _F.items()}
        ctrl["hr"] = smooth(per_s[:, _F["hr"]], 45)
        # Eyes open/closed in wake: alpha when closed, blinks and saccades when open.
        eyes_open = 1 / (1 + np.exp(-1.5 * slow_noise(rng, n_s, 6) - self.p.get("eyes_open_bias", 0.0)))
        ctrl["alpha"] *= 0.25 + 1.1 * (1 - eyes_open)
        ctrl["blink"] *= 0.3 + 1.4 * eyes_open
        ctrl["saccade"] *= 0.2 + 1.6 * eyes_open
        # Phasic vs tonic REM.
        phasic = np.exp(0.8 * slow_noise(rng, n_s, 8))
        for f in ("rem", "saw", "twitch", "hrv", "resp_irreg"):
            ctrl[f] *= np.where(self.stage_s == REM, phasic, 1.0)
        return ctrl

    def _add_arousals(self, rng) -> np.ndarray:
        """Arousals: 3-12 s of alpha, beta, chin tone and heart rate; returns (n, 2) onset_s, duration_s."""
        ctrl, n_s = self.ctrl, self.n_s
        ar_on = events_from_rate(rng, ctrl["arousal"])
        ar_dur = rng.uniform(3, 12, len(ar_on))
        bump = np.zeros(n_s)
        for o, d in zip(ar_on, ar_dur):
            bump[int(o):min(int(o + d), n_s)] = 1.0
        bump = smooth(bump, 3)
        ctrl["alpha"] += 0.8 * bump
        ctrl["beta"] += 0.6 * bump
        ctrl["emg"] += 0.35 * bump
        ctrl["hr"] += 6 * bump
        return np.c_[ar_on, ar_dur]

    # -- events ---------------------------------------------------------------------------------
    def _event_lists(self, rng):
        """Draw every event train from the controls (onsets in s), in a fixed order: same seed, same events."""
        c, p = self.ctrl, self.p
        sp = events_from_rate(rng, c["spindle"] * p["spindle_per_min"])
        kc = events_from_rate(rng, c["kc"] * p["kc_per_min"])
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
        vx = events_from_rate(rng, c["vertex"])
        self.vertex = dict(onset=vx, uv=rng.uniform(45, 100, len(vx)))
        sw = events_from_rate(rng, c["saw"])
        self.saw = dict(onset=sw, hz=rng.uniform(2.0, 3.5, len(sw)), n=rng.integers(3, 9, len(sw)),
                        uv=rng.uniform(20, 45, len(sw)))
        self.blinks = dict(onset=events_from_rate(rng, c["blink"]))
        self.blinks["uv"] = p["eog_uv"] * rng.uniform(1.2, 2.5, len(self.blinks["onset"]))
        # Eye movements: waking saccades and REM bursts as targets of a stepping eye position.
        sac = events_from_rate(rng, c["saccade"])
        bursts = events_from_rate(rng, c["rem"])
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
        tw = events_from_rate(rng, c["twitch"])
        self.twitch = dict(onset=tw, dur=rng.uniform(0.05, 0.25, len(tw)), gain=rng.uniform(4, 15, len(tw)))
        mvb = events_from_rate(rng, 1.2 * (self.stage_s == W) + 0.1 * (self.stage_s != W))
        self.body_mv = dict(onset=mvb, dur=rng.uniform(0.5, 3.0, len(mvb)), gain=rng.uniform(1.5, 4, len(mvb)))
        legs = events_from_rate(rng, c["leg"] * p["leg_per_min"])
        self.legs = dict(onset=legs, dur=rng.uniform(0.5, 5.0, len(legs)), uv=rng.uniform(15, 60, len(legs)))
        hyp = events_from_rate(rng, c["resp_event"] * p["ahi_factor"] / 6)
        self.hypopneas = dict(onset=hyp, dur=rng.uniform(10, 35, len(hyp)), depth=rng.uniform(0.3, 0.8, len(hyp)))
        self.events.update({
            "spindle": np.c_[sp, self.spindles["dur"]], "kcomplex": np.c_[kc, np.full(len(kc), 1.0)],
            "vertex": np.c_[vx, np.full(len(vx), 0.3)], "sawtooth": np.c_[sw, self.saw["n"] / self.saw["hz"]],
            "rem": np.c_[b_t, np.full(len(b_t), 0.2)], "hypopnea": np.c_[hyp, self.hypopneas["dur"]],
        })

    # -- per-rate sources -----------------------------------------------------------------------
    def at_rate(self, ctrl: np.ndarray, fs: float) -> np.ndarray:
        """A 1-Hz control held over each second's samples (controls are smooth: no steps show)."""
        k = int(round(fs))
        if abs(k - fs) > 1e-9:
            raise ValueError(f"sampling rate {fs!r} Hz: only whole-Hz rates are synthesised")
        return np.repeat(ctrl.astype(np.float32), k)

    def source(self, name: str, fs: float) -> np.ndarray:
        """Shared source ``name`` at ``fs`` Hz, (n_times,) float32, made once per rate."""
        key = (name, fs)
        if key not in self._cache:
            self._cache[key] = self._make(name, fs)
        return self._cache[key]

    def _make(self, name: str, fs: float) -> np.ndarray:
        """Source ``name`` at ``fs`` Hz, (n_times,) float32, from a random stream of its own."""
        n = int(round(self.n_s * fs))
        rng = child_rng(self.seed, self.subject, f"{name}@{fs}")
        if name.startswith(("alpha", "theta", "delta")) or name == "beta":
            return self._rhythm(name, fs, n, rng)
        if name in ("sp_fast", "sp_slow", "kc", "vertex", "saw"):
            return self._transients(name, fs, n)
        if name == "eye_h":  # horizontal eye position (uV at the electrodes): steps + slow rolls
            return self._eye_position(fs, n, rng)
        if name == "eye_v":  # blinks (vertical)
            return self._blinks(fs, n)
        if name == "emg_env":  # chin EMG amplitude envelope (uV RMS) with twitches and movements
            return self._chin_tone(fs)
        if name == "ecg":
            return self._ecg(fs, n)
        if name == "resp":  # (unit amplitude) breathing: phase-driven, stage-dependent regularity
            return self._resp(fs, n)
        if name == "muscle_M":
            return 0.5 * (self.source("muscle_L", fs) + self.source("muscle_R", fs))
        if name.startswith("muscle_"):  # scalp/eye muscle pickup, following chin tone
            return self.source("emg_env", fs) * band_noise(rng, n, fs, 20, min(0.45 * fs, 90))
        if name == "move":  # movement-time artefact: large slow swings
            return self.at_rate(self.movement_s, fs) * band_noise(rng, n, fs, 0.3, 5, slope=1.0)
        if name == "pink":  # low-level 1/f floor shared by the non-EEG electrode channels
            return pink(rng, n, fs, 1.0)
        if name == "sweat":  # sweat sway shared by the scalp leads (uV), 0.05-0.4 Hz, in spells of minutes
            spells = np.clip(slow_noise(rng, self.n_s, 120), 0, None) * self.p.get("sweat_uv", 0.0)
            return band_noise(rng, n, fs, 0.05, 0.4, slope=0.5) * self.at_rate(spells, fs)
        if name == "line":
            return np.sin(2 * np.pi * self.line_hz * np.arange(n) / fs).astype(np.float32)
        raise KeyError(name)

    def _rhythm(self, name: str, fs: float, n: int, rng) -> np.ndarray:
        """Alpha, theta or delta on one side (``<band>_L``/``_R``/``_M``), or beta, scaled by its control."""
        p, c = self.p, self.ctrl
        if name == "beta":
            return band_noise(rng, n, fs, 15, min(25, fs / 2), slope=0.5) * self.at_rate(c["beta"] * p["beta_uv"], fs)
        band, side = name.split("_")
        if side == "R":  # right hemisphere: correlated, not identical
            return 0.8 * self.source(f"{band}_L", fs) + 0.6 * self._make(f"{band}_X", fs)
        if side == "M":
            return 0.5 * (self.source(f"{band}_L", fs) + self.source(f"{band}_R", fs)) * 1.12
        if band == "alpha":
            x = band_noise(rng, n, fs, 6.5, 13.5, peak=p["alpha_hz"], width=0.55)
            return x * self.at_rate(c["alpha"] * p["alpha_uv"], fs)
        if band == "theta":
            return band_noise(rng, n, fs, 3.8, 7.5, peak=5.6, width=0.9) * self.at_rate(c["theta"] * p["theta_uv"], fs)
        return band_noise(rng, n, fs, 0.4, 2.2, slope=0.6) * self.at_rate(c["delta"] * p["delta_uv"], fs)

    def _transients(self, name: str, fs: float, n: int) -> np.ndarray:
        """Trains of EEG graphoelements: fast/slow spindles, K-complexes, vertex waves, saw-tooth waves."""
        if name in ("sp_fast", "sp_slow"):
            s = self.spindles
            sel = s["slow"] if name == "sp_slow" else ~s["slow"]
            return self._spindle_train(fs, n, s["onset"][sel], s["dur"][sel], s["hz"][sel], s["uv"][sel], s["phase"][sel])
        x = np.zeros(n, np.float32)
        if name == "kc":
            t = np.arange(int(1.4 * fs)) / fs
            k = self.kcs
            w = k["width"][:, None]
            waves = k["uv"][:, None] * (-np.exp(-0.5 * ((t - 0.22 * w) / (0.07 * w)) ** 2)
                                        + 0.55 * np.exp(-0.5 * ((t - 0.65 * w) / (0.17 * w)) ** 2))
            place(x, np.round(k["onset"] * fs).astype(int), waves)
        elif name == "vertex":
            t = np.arange(int(0.6 * fs)) / fs
            v = self.vertex
            waves = v["uv"][:, None] * (-np.exp(-0.5 * ((t - 0.12) / 0.045) ** 2)
                                        + 0.3 * np.exp(-0.5 * ((t - 0.3) / 0.07) ** 2))
            place(x, np.round(v["onset"] * fs).astype(int), waves)
        elif len(self.saw["onset"]):
            s = self.saw
            L = int(np.ceil((s["n"] / s["hz"]).max() * fs)) + 1
            t = np.arange(L) / fs
            dur = (s["n"] / s["hz"])[:, None]
            env = np.where(t < dur, np.sin(np.pi * np.clip(t / dur, 0, 1)) ** 0.5, 0.0)
            waves = s["uv"][:, None] * env * scipy.signal.sawtooth(2 * np.pi * s["hz"][:, None] * t, width=0.85)
            place(x, np.round(s["onset"] * fs).astype(int), waves)
        return x

    def _eye_position(self, fs: float, n: int, rng) -> np.ndarray:
        """Horizontal eye position: saccade steps (waking gaze, REM bursts) plus slow rolling movements."""
        p, c = self.p, self.ctrl
        x = np.zeros(n, np.float32)
        s = self.sacc
        if len(s["onset"]):
            idx = np.clip(np.round(s["onset"] * fs).astype(int), 0, n - 1)
            jumps = np.diff(np.r_[0.0, s["target"]])
            x += np.bincount(idx, weights=jumps, minlength=n).astype(np.float32)
            x = np.cumsum(x, dtype=np.float32)
            rise = max(1, int(0.08 * fs))  # a saccade takes ~50-100 ms
            x = smooth(x, rise).astype(np.float32)
        sem = band_noise(rng, n, fs, 0.1, 0.5, slope=0.5) * self.at_rate(c["sem"] * p["eog_uv"] * 0.4, fs)
        return x + sem

    def _blinks(self, fs: float, n: int) -> np.ndarray:
        """Vertical eye signal: blinks, plus the vertical part of REM eye movements."""
        x = np.zeros(n, np.float32)
        b = self.blinks
        t = np.arange(int(0.6 * fs)) / fs
        waves = b["uv"][:, None] * np.exp(-0.5 * ((t - 0.2) / 0.06) ** 2)
        place(x, np.round(b["onset"] * fs).astype(int), waves)
        return x + 0.25 * self.source("eye_h", fs) * (self.at_rate(self.ctrl["rem"], fs) > 0.05)

    def _chin_tone(self, fs: float) -> np.ndarray:
        """Chin EMG envelope (uV RMS): stage tone, REM twitches and body movements."""
        p = self.p
        env = self.at_rate(self.ctrl["emg"] * p["emg_uv"], fs)
        for ev, base in ((self.twitch, 0.08 * p["emg_uv"]), (self.body_mv, p["emg_uv"])):
            if len(ev["onset"]):
                L = int(np.ceil(ev["dur"].max() * fs)) + 1
                t = np.arange(L) / fs
                d = ev["dur"][:, None]
                waves = np.where(t < d, np.sin(np.pi * np.clip(t / d, 0, 1)), 0.0) * (ev["gain"][:, None] * base)
                place(env, np.round(ev["onset"] * fs).astype(int), waves)
        return env

    def _spindle_train(self, fs, n, onset, dur, hz, uv, phase):
        """Sine bursts under a sin^2 envelope, one per spindle (onset and duration in s, uV)."""
        x = np.zeros(n, np.float32)
        if len(onset):
            t = np.arange(int(np.ceil(dur.max() * fs)) + 1) / fs
            d = dur[:, None]
            env = np.where(t < d, np.sin(np.pi * np.clip(t / d, 0, 1)) ** 2, 0.0)
            waves = uv[:, None] * env * np.sin(2 * np.pi * hz[:, None] * t + phase[:, None])
            place(x, np.round(onset * fs).astype(int), waves)
        return x

    def beats(self) -> np.ndarray:
        """R-peak times (s): stage-dependent rate, variability and respiratory sinus arrhythmia."""
        if "beats" not in self._cache:
            rng = child_rng(self.seed, self.subject, "beats")
            c = self.ctrl
            t = np.arange(self.n_s) + 0.5
            resp_phase = self.resp_phase(1.0)
            hr = (self.p["hr_bpm"] + c["hr"] + c["hrv"] * slow_noise(rng, self.n_s, 4)
                  + 1.5 * c["hrv"] / 2 * np.sin(resp_phase))
            hr = np.clip(hr, 38, 130)
            cum = np.r_[0.0, np.cumsum(hr / 60.0)]
            k = np.arange(1, int(cum[-1]))
            self._cache["beats"] = np.interp(k, cum, np.r_[0.0, t + 0.5])
            self._cache["hr"] = hr
        return self._cache["beats"]

    def _ecg(self, fs, n):
        """ECG in uV: a P-QRS-T template at every beat plus respiratory baseline wander."""
        beats = self.beats()
        t = np.arange(int(-0.3 * fs), int(0.45 * fs)) / fs
        g = lambda mu, sd, a: a * np.exp(-0.5 * ((t - mu) / sd) ** 2)  # noqa: E731
        tpl = g(-0.2, 0.025, 0.12) + g(-0.03, 0.010, -0.12) + g(0.0, 0.011, 1.0) + g(0.03, 0.011, -0.25) \
            + g(0.24, 0.05, 0.3)
        x = np.zeros(n, np.float32)
        starts = np.round(beats * fs).astype(int) + int(-0.3 * fs)
        place(x, starts, np.broadcast_to(tpl * self.p["ecg_uv"] * self.p["ecg_sign"], (len(starts), len(tpl))))
        wander = np.interp(np.arange(n) / fs, np.arange(self.n_s * 10) / 10.0, self.source("resp", 10.0))
        return x + (0.04 * self.p["ecg_uv"]) * wander.astype(np.float32)

    def resp_phase(self, fs: float) -> np.ndarray:
        """Breathing phase (radians) at ``fs`` Hz: stage-dependent rate and irregularity."""
        key = ("resp_phase", fs)
        if key not in self._cache:
            rng = child_rng(self.seed, self.subject, "resp")
            c = self.ctrl
            rate = (c["resp_rate"] + self.p["resp_bpm_offset"]) * (1 + c["resp_irreg"] * slow_noise(rng, self.n_s, 3))
            f = np.repeat(np.clip(rate, 6, 30) / 60.0, int(round(fs))) if fs >= 1 else rate / 60
            self._cache[key] = (2 * np.pi * np.cumsum(f) / fs).astype(np.float64)
        return self._cache[key]

    def _resp(self, fs, n):
        """Unit-amplitude breathing, shallower during hypopneas."""
        rng = child_rng(self.seed, self.subject, "resp_amp")
        c = self.ctrl
        amp = c["resp_amp"] * (1 + 0.8 * c["resp_irreg"] * slow_noise(rng, self.n_s, 5))
        h = self.hypopneas
        for o, d, dep in zip(h["onset"], h["dur"], h["depth"]):
            amp[int(o):min(int(o + d), self.n_s)] *= 1 - dep
        ph = self.resp_phase(fs)
        return (self.at_rate(np.clip(amp, 0.05, None), fs) * (np.sin(ph) + 0.2 * np.sin(2 * ph + 0.5))).astype(np.float32)

    def spo2(self) -> np.ndarray:
        """SpO2 in % at 1 Hz: baseline, slow wander, desaturations ~20 s after hypopneas."""
        rng = child_rng(self.seed, self.subject, "spo2")
        x = self.p["spo2_pct"] + 0.4 * slow_noise(rng, self.n_s, 60)
        h = self.hypopneas
        t = np.arange(self.n_s)
        for o, d, dep in zip(h["onset"], h["dur"], h["depth"]):
            drop = 2.0 + 4.0 * dep
            tt = t - (o + d * 0.6 + 15)
            x -= drop * np.exp(-0.5 * (tt / 8.0) ** 2)
        return np.clip(np.round(x), 70, 100)
