"""Standard sleep statistics from a hypnogram of 30-s epochs (AASM definitions, as YASA computes them).

The hypnogram is assumed to span time in bed (lights off to lights on: :func:`time_in_bed` crops a night
to it as ``yasa.Hypnogram.crop`` does), one AASM code per epoch
(:mod:`psgvlm.stages`; ``UNSCORED`` epochs count in time in bed but never as sleep or wake). The
definitions follow ``yasa.sleep_statistics`` (YASA >= 0.5) so numbers agree with what YASA users
get; the test suite checks that equality. We add the AASM REM latency (from sleep onset), which
YASA leaves to the user as ``Lat_REM - SOL``.

- TIB: time in bed, the whole hypnogram.
- SPT: sleep period time, first to last sleep epoch inclusive.
- WASO: wake within SPT.
- TST: N1 + N2 + N3 + REM within SPT (unscored epochs are not sleep).
- SE = TST / TIB * 100; SME = TST / SPT * 100.
- SOL: sleep-onset latency, start of recording to the first sleep epoch.
- Lat_<stage>: start of recording to the first epoch of that stage (YASA's convention).
- REM_latency: AASM REM latency, sleep onset to the first REM epoch.
- <stage>: minutes in that stage; %<stage>: percent of TST (sleep stages), %W: percent of TIB.
"""

from __future__ import annotations

import numpy as np

from psgvlm.stages import EPOCH_S, N1, N2, N3, N_STAGES, REM, STAGES, UNSCORED, W

_SLEEP = {"N1": N1, "N2": N2, "N3": N3, "REM": REM}


def sleep_statistics(stages, epoch_s: float = EPOCH_S) -> dict[str, float | None]:
    """Sleep statistics of one night.

    Parameters
    ----------
    stages : array-like of int, shape (n_epochs,)
        AASM codes 0..4 (W, N1, N2, N3, REM) or ``UNSCORED`` (-1), one per epoch, time in bed only.
    epoch_s : float
        Epoch length in seconds.

    Returns
    -------
    dict
        Durations and latencies in minutes, ``SE``/``SME``/``%...`` in percent (see the module
        docstring); ``None`` where a value is undefined (latencies of a stage that never occurs,
        WASO/SOL/SME/percentages of a night without sleep). ``n_unscored`` counts unscored epochs.
    """
    hypno = np.asarray(stages, dtype=int)
    if hypno.ndim != 1 or hypno.size == 0:
        raise ValueError(f"stages must be a non-empty 1-D array of codes; got shape {hypno.shape}")
    bad = sorted(set(np.unique(hypno).tolist()) - set(range(N_STAGES)) - {UNSCORED})
    if bad:
        raise ValueError(f"stages hold codes {bad}; allowed: 0..{N_STAGES - 1} and {UNSCORED} (unscored)")
    if not epoch_s > 0:
        raise ValueError(f"epoch_s={epoch_s!r} must be > 0 seconds")
    to_min = epoch_s / 60.0
    is_sleep = (hypno >= N1) & (hypno <= REM)
    idx_sleep = np.flatnonzero(is_sleep)
    has_sleep = idx_sleep.size > 0
    spt = hypno[idx_sleep[0]: idx_sleep[-1] + 1] if has_sleep else hypno[:0]

    def first(code):
        idx = np.flatnonzero(hypno == code)
        return float(idx[0] * to_min) if idx.size else None

    out: dict[str, float | None] = {
        "TIB": hypno.size * to_min,
        "SPT": spt.size * to_min,
        "WASO": float(np.count_nonzero(spt == W) * to_min) if has_sleep else None,
        "TST": float(np.count_nonzero((spt >= N1) & (spt <= REM)) * to_min),
        "W": float(np.count_nonzero(hypno == W) * to_min),
    }
    for name, code in _SLEEP.items():
        out[name] = float(np.count_nonzero(hypno == code) * to_min)
    out["NREM"] = out["N1"] + out["N2"] + out["N3"]
    out["SOL"] = float(idx_sleep[0] * to_min) if has_sleep else None
    for name, code in _SLEEP.items():
        out[f"Lat_{name}"] = first(code)
    out["REM_latency"] = (out["Lat_REM"] - out["SOL"]) if out["Lat_REM"] is not None and has_sleep else None
    for name in [*_SLEEP, "NREM"]:
        out[f"%{name}"] = 100.0 * out[name] / out["TST"] if out["TST"] > 0 else None
    out["%W"] = 100.0 * out["W"] / out["TIB"]
    out["SE"] = 100.0 * out["TST"] / out["TIB"]
    out["SME"] = 100.0 * out["TST"] / out["SPT"] if has_sleep else None
    out["n_unscored"] = int(np.count_nonzero(hypno == UNSCORED))
    return out


def time_in_bed(starts_s, lights_off_s: float, lights_on_s: float) -> tuple[int, int]:
    """The epochs in bed: ``(first epoch, number of epochs)`` of those that start within
    [``lights_off_s``, ``lights_on_s``], both inclusive.

    The rule of ``yasa.Hypnogram.crop(start=lights_off, end=lights_on)`` with timestamps (a label slice of
    the epoch-start index): an epoch that starts before lights off is out even if lights go off inside it,
    and the epoch that starts exactly at lights on is in. :func:`sleep_statistics` of
    ``stages[first:first + n]`` then equals YASA's statistics of the cropped hypnogram.

    Parameters
    ----------
    starts_s : array-like of float, shape (n_epochs,)
        Epoch starts, seconds from the recording start, increasing.
    lights_off_s, lights_on_s : float
        Seconds from the recording start.

    Raises
    ------
    ValueError
        Lights on before lights off, or no epoch starts in between (naming the staged span).
    """
    starts = np.asarray(starts_s, dtype=np.float64)
    if not lights_on_s >= lights_off_s:
        raise ValueError(f"lights on ({lights_on_s:g} s from the start) is before lights off ({lights_off_s:g} s)")
    inside = np.flatnonzero((starts >= lights_off_s - 1e-9) & (starts <= lights_on_s + 1e-9))
    if inside.size == 0:
        span = f"{starts[0]:g} to {starts[-1]:g} s" if starts.size else "nothing"
        raise ValueError(f"no epoch starts between lights off ({lights_off_s:g} s) and lights on ({lights_on_s:g} s) "
                         f"from the start; the staged epochs start at {span}")
    return int(inside[0]), int(inside.size)


def format_statistics(stats: dict) -> list[list[str]]:
    """Rows ``[name, value]`` for display, in the order a sleep report lists them."""
    rows = []
    labels = [
        ("TIB", "Time in bed (min)"), ("TST", "Total sleep time (min)"), ("SE", "Sleep efficiency (%)"),
        ("SOL", "Sleep-onset latency (min)"), ("WASO", "Wake after sleep onset (min)"),
        ("REM_latency", "REM latency from sleep onset (min)"), ("SPT", "Sleep period time (min)"),
        ("SME", "Sleep maintenance efficiency (%)"),
    ]
    for key, label in labels:
        value = stats.get(key)
        rows.append([label, "n/a" if value is None else f"{value:.1f}"])
    for stage in STAGES:
        minutes = stats.get(stage)
        pct = stats.get(f"%{stage}")
        where = "TIB" if stage == "W" else "TST"
        rows.append([f"{stage} (min, % of {where})",
                     f"{minutes:.1f} ({'n/a' if pct is None else f'{pct:.1f}%'})"])
    return rows
