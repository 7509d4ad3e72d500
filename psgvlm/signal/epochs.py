"""Signal operations that turn a recording into scaled 30-s epochs for rendering.

Three pure functions, in pipeline order (the PSG-image paper's steps 1-3):

- :func:`resample` -- one channel (or a stack) to a target rate with scipy's polyphase FIR
  (``scipy.signal.resample_poly``), which low-passes below the new Nyquist before decimating;
- :func:`epochs_from_recording` -- every requested channel resampled once, whole, then cut into
  30-s epochs by *time* from ``rec.onset_s`` and paired with ``rec.stages``;
- :func:`minmax_scale` -- per epoch, per channel, to [-1, 1] (a flat channel becomes 0); or
  :func:`physical_scale` -- per epoch, per channel, mean removed and divided by a fixed range in the
  channel's units, clipped to [-1, 1] (amplitude kept: a 150-uV slow wave stays taller than 20-uV alpha).

Rates are snapped before the ratio is taken: a rate within 1e-4 (relative) of an integer is that
integer for resampling (MASS writes "256 Hz with decimals", e.g. 256.0017 Hz; treating it as 256 Hz
moves the end of an 8-h night by 0.19 s, as public MASS loaders do); the exact rate stays on the
channel and in :func:`resample_plan`. A pair of rates with no small integer ratio (denominator
<= 10000, rate error <= 1e-6) is resampled by the Fourier method (``scipy.signal.resample``, exact
length, ideal low-pass) instead of being refused.

Channels sampled *below* the target rate (SHHS EOG at 50 Hz, respiration at 10 Hz, when the target is
200 Hz) are upsampled by the same polyphase interpolation: no information is invented (the
interpolation filter keeps only the band the channel had), and every such channel is reported by a
:class:`UpsampledChannelWarning` naming the channel and its rate, and in :func:`resample_plan`, whose
output the dataset builder writes into ``meta.json``.
"""

from __future__ import annotations

import warnings
from fractions import Fraction

import numpy as np

from psgvlm.io.recording import Recording
from psgvlm.stages import EPOCH_S

# Largest denominator accepted for the up/down ratio. Real PSG rates (10, 50, 100, 125, 128, 200, 250,
# 256, 500, 512 Hz) give small ratios; odd EDF rates (e.g. 99.99 Hz) still get an exact-enough ratio.
_MAX_DENOMINATOR = 10_000
# Relative rate error tolerated from the rational approximation: 1e-6 is 0.03 s over an 8-h night.
_MAX_RATE_ERROR = 1e-6
# A rate this close (relative) to an integer is that integer for resampling (see the module docstring).
SNAP_REL_TOL = 1e-4


class UpsampledChannelWarning(UserWarning):
    """A channel was sampled below the target rate and was upsampled (interpolated) to it."""


def snap_rate(sfreq: float) -> float:
    """``sfreq`` (Hz) as the integer it is within :data:`SNAP_REL_TOL` (relative) of, else unchanged.

    256.0017 -> 256.0; 99.99 -> 99.99 (1e-4 away: kept); 200.0 -> 200.0.
    """
    whole = round(float(sfreq))
    return float(whole) if whole > 0 and abs(sfreq - whole) <= SNAP_REL_TOL * abs(sfreq) else float(sfreq)


def _check_rates(sfreq: float, target_sfreq: float) -> None:
    for name, value in (("sfreq", sfreq), ("target_sfreq", target_sfreq)):
        if not (np.isfinite(value) and value > 0):
            raise ValueError(f"{name}={value!r} Hz: a sampling rate must be a positive finite number")


def _polyphase_ratio(sfreq: float, target_sfreq: float) -> tuple[int, int] | None:
    """Coprime ``(up, down)`` taking the snapped ``sfreq`` to the snapped target, or None if none is close enough."""
    _check_rates(sfreq, target_sfreq)
    src, dst = snap_rate(sfreq), snap_rate(target_sfreq)
    ratio = Fraction(dst / src).limit_denominator(_MAX_DENOMINATOR)
    if ratio == 0 or abs(float(ratio) * src - dst) / dst > _MAX_RATE_ERROR:
        return None
    return ratio.numerator, ratio.denominator


def resample_ratio(sfreq: float, target_sfreq: float) -> tuple[int, int]:
    """The integer ``(up, down)`` polyphase factors that take ``sfreq`` to ``target_sfreq``.

    Parameters
    ----------
    sfreq, target_sfreq : float
        Source and target sampling rates, Hz, both > 0; each snapped to an integer within 1e-4
        (:func:`snap_rate`) first.

    Returns
    -------
    up, down : int
        Coprime factors with ``sfreq * up / down == target_sfreq`` to a relative error below 1e-6
        (e.g. 125 -> 200 Hz is (8, 5), 256 -> 200 Hz is (25, 32), 10 -> 200 Hz is (20, 1),
        256.0017 -> 256 Hz is (1, 1)).

    Raises
    ------
    ValueError
        If a rate is not a positive finite number, or no ratio with a denominator up to 10000
        approximates ``target_sfreq / sfreq`` well enough (:func:`resample` then uses the Fourier
        method).
    """
    ratio = _polyphase_ratio(sfreq, target_sfreq)
    if ratio is None:
        raise ValueError(
            f"no integer up/down ratio (denominator <= {_MAX_DENOMINATOR}) takes {sfreq!r} Hz to "
            f"{target_sfreq!r} Hz within a rate error of {_MAX_RATE_ERROR:g}"
        )
    return ratio


def resampled_length(n_times: int, sfreq: float, target_sfreq: float) -> int:
    """Samples :func:`resample` returns for ``n_times`` samples: ``ceil(n_times * up / down)`` (polyphase),
    else ``ceil(n_times * target / sfreq)`` on the snapped rates (Fourier)."""
    ratio = _polyphase_ratio(sfreq, target_sfreq)
    if ratio is not None:
        return int(-(-n_times * ratio[0] // ratio[1]))
    return int(np.ceil(n_times * snap_rate(target_sfreq) / snap_rate(sfreq) - 1e-9))


def resample(x: np.ndarray, sfreq: float, target_sfreq: float) -> np.ndarray:
    """Resample along the last axis with an anti-aliasing polyphase FIR filter.

    Parameters
    ----------
    x : np.ndarray, shape (..., n_times)
        Samples in physical units (e.g. microvolts), finite.
    sfreq : float
        Rate of ``x``, Hz (snapped to an integer within 1e-4 first, :func:`snap_rate`).
    target_sfreq : float
        Wanted rate, Hz. Below ``sfreq`` the signal is low-passed at the new Nyquist frequency
        (Kaiser-window FIR, ``scipy.signal.resample_poly``) before decimation, so a tone above
        ``target_sfreq / 2`` is suppressed instead of aliased; above ``sfreq`` the same filter
        interpolates (band-limited, nothing above the old Nyquist is invented). Rates with no small
        integer ratio (:func:`resample_ratio` raises) are resampled by the Fourier method
        (``scipy.signal.resample`` of the signal followed by its mirror image: ideal low-pass, no
        wrap-around step at the ends; the output count is whole, so sample times drift by at most
        half a sample over the whole signal).

    Returns
    -------
    np.ndarray, shape (..., n_out), float32
        ``n_out = resampled_length(n_times, sfreq, target_sfreq)``; sample ``m`` is at time
        ``m / target_sfreq`` s (same time origin as ``x``). A new array even when the rates are equal.
    """
    x = np.asarray(x)
    if x.ndim == 0 or x.shape[-1] == 0:
        raise ValueError(f"resample needs at least one sample along the last axis; got shape {x.shape}")
    ratio = _polyphase_ratio(sfreq, target_sfreq)
    if ratio is not None and ratio[0] == ratio[1]:
        return np.array(x, dtype=np.float32, copy=True)
    import scipy.signal  # ~1 s to import: only when a channel needs resampling

    if ratio is None:
        # The Fourier method takes the signal as periodic; mirrored at its end it is continuous where it
        # wraps, so the ends do not ring for seconds (only a kink is left: ringing falls off as 1/n^2).
        n, n_out = x.shape[-1], resampled_length(x.shape[-1], sfreq, target_sfreq)
        both = np.concatenate([x, np.flip(x, axis=-1)], axis=-1).astype(np.float64)
        y = scipy.signal.resample(both, int(round(2 * n * snap_rate(target_sfreq) / snap_rate(sfreq))), axis=-1)
        return y[..., :n_out].astype(np.float32)
    # float32 in -> float32 filtering in scipy >= 1.11 (half the memory of float64 for an 8-h night).
    y = scipy.signal.resample_poly(np.asarray(x, dtype=np.float32), ratio[0], ratio[1], axis=-1)
    return y.astype(np.float32, copy=False)


def resample_plan(rec: Recording, channels: list[str], sfreq: float) -> list[dict]:
    """What :func:`epochs_from_recording` does to each channel, for ``meta.json``.

    Parameters
    ----------
    rec : Recording
    channels : list of str
        Canonical (or file) channel names, in rendering order (None entries, blank bands, are skipped).
    sfreq : float
        Target rate, Hz.

    Returns
    -------
    list of dict
        One per channel: ``channel`` (canonical name), ``sfreq`` (source rate, Hz, exact),
        ``target_sfreq``, ``up``, ``down`` and ``action`` -- ``"unchanged"``, ``"downsampled"``
        (anti-aliased) or ``"upsampled"`` (band-limited interpolation of a channel sampled below the
        target); ``snapped_sfreq`` when the rate was snapped to an integer for resampling
        (:func:`snap_rate`), and ``method: "fourier"`` (``up``/``down`` None) where no small integer
        ratio exists.
    """
    plan = []
    for name in channels:
        if name is None:
            continue
        ch = rec.channel(name)
        ratio = _polyphase_ratio(ch.sfreq, sfreq)
        src, dst = snap_rate(ch.sfreq), snap_rate(sfreq)
        action = "unchanged" if src == dst else ("upsampled" if src < dst else "downsampled")
        entry = {"channel": ch.canonical, "sfreq": float(ch.sfreq), "target_sfreq": float(sfreq),
                 "up": ratio[0] if ratio else None, "down": ratio[1] if ratio else None, "action": action}
        if src != ch.sfreq:
            entry["snapped_sfreq"] = src
        if ratio is None:
            entry["method"] = "fourier"
        plan.append(entry)
    return plan


def epochs_from_recording(
    rec: Recording, channels: list[str], sfreq: float, *, epoch_s: float = EPOCH_S
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Resample ``channels`` to ``sfreq`` and cut 30-s epochs paired by time with ``rec.stages``.

    Epoch ``k`` covers signal time ``[rec.onset_s + k * epoch_s, rec.onset_s + (k + 1) * epoch_s)``,
    the same window ``rec.stages[k]`` scores. The onset is rounded to the nearest sample at
    ``sfreq``. A trailing partial epoch (signal or labels shorter) is dropped, as
    :attr:`Recording.n_epochs` states. Each channel is resampled once, whole (not per epoch), so the
    filter never sees an epoch edge.

    Parameters
    ----------
    rec : Recording
        Channels in physical units, each at its own rate.
    channels : list of str or None
        Canonical (or file) names, in the order the image bands will use; no duplicates. None is a
        blank band: zeros (min-max scaled, a flat band), for a channel the recording lacks.
    sfreq : float
        Target rate, Hz; ``epoch_s * sfreq`` must be a whole number of samples.
    epoch_s : float
        Epoch length, seconds (30 for AASM scoring; must equal ``rec.epoch_s`` when labelled).

    Returns
    -------
    x : np.ndarray, shape (n_epochs, n_chans, n_times), float32
        Raw (unscaled) samples in the channels' units, ``n_times = epoch_s * sfreq``.
    stages : np.ndarray, shape (n_epochs,), int8, or None
        ``rec.stages[:n_epochs]`` (UNSCORED = -1 kept), None for an unlabelled recording.
    starts_s : np.ndarray, shape (n_epochs,), float64
        Start of each epoch in signal time, seconds.

    Raises
    ------
    ValueError
        Unknown or duplicate channel (lists what is available), only blank bands, non-finite samples
        (names the channel, how many and the first time), or an epoch length that is not whole samples.

    Warns
    -----
    UpsampledChannelWarning
        Once per channel sampled below ``sfreq``, naming it and its rate.
    """
    if not channels or all(c is None for c in channels):
        raise ValueError(f"no channels requested; available in {rec.recording!r}: {rec.ch_names}")
    dup = sorted({c for c in channels if c is not None and list(channels).count(c) > 1})
    if dup:
        raise ValueError(f"duplicate channels requested: {dup} in {list(channels)}")
    if not (np.isfinite(epoch_s) and epoch_s > 0):
        raise ValueError(f"epoch_s={epoch_s!r} s must be a positive number")
    if rec.stages is not None and abs(epoch_s - rec.epoch_s) > 1e-9:
        raise ValueError(f"epoch_s={epoch_s!r} s differs from the recording's scoring epoch {rec.epoch_s!r} s")
    n_times_f = epoch_s * sfreq
    n_times = int(round(n_times_f))
    if n_times < 2 or abs(n_times - n_times_f) > 1e-6:
        raise ValueError(
            f"epoch_s * sfreq = {epoch_s!r} s * {sfreq!r} Hz = {n_times_f!r} samples; "
            f"it must be a whole number >= 2"
        )
    bands = [i for i, name in enumerate(channels) if name is not None]
    picked = [rec.channel(channels[i]) for i in bands]  # raises naming the missing one
    plan = resample_plan(rec, channels, sfreq)

    start = int(round(rec.onset_s * sfreq))
    if start < 0:
        raise ValueError(f"recording {rec.recording!r}: onset_s={rec.onset_s!r} s is negative")
    # Whole epochs available in every resampled channel (lengths are exact: see resampled_length).
    n_out = [resampled_length(len(ch.data), ch.sfreq, sfreq) for ch in picked]
    n_epochs = max(0, (min(n_out) - start) // n_times)
    if rec.stages is not None:
        n_epochs = min(n_epochs, len(rec.stages))
    # Never more than the time-based count of the recording itself (shortest channel, labels).
    duration_s = min(ch.duration_s for ch in picked)
    n_epochs = min(n_epochs, max(0, int(np.floor((duration_s - rec.onset_s) / epoch_s + 1e-9))))

    for ch in picked:
        bad = ~np.isfinite(ch.data)
        if bad.any():
            first = int(np.argmax(bad))
            raise ValueError(
                f"recording {rec.recording!r}: channel {ch.canonical!r} has {int(bad.sum())} non-finite "
                f"samples (NaN/inf), the first at {first / ch.sfreq:.3f} s (value {ch.data[first]!r})"
            )

    x = np.empty((n_epochs, len(channels), n_times), dtype=np.float32)
    if len(bands) < len(channels):
        x[:, [i for i, name in enumerate(channels) if name is None], :] = 0.0  # blank bands
    stop = start + n_epochs * n_times
    for i, ch, p in zip(bands, picked, plan):
        if p["action"] == "upsampled":
            how = "the Fourier method" if p["up"] is None else f"polyphase interpolation (x{p['up']}/{p['down']})"
            warnings.warn(
                f"recording {rec.recording!r}: channel {ch.canonical!r} is sampled at {ch.sfreq:g} Hz, "
                f"below the target {sfreq:g} Hz; upsampled by {how}, no content above {ch.sfreq / 2:g} Hz",
                UpsampledChannelWarning, stacklevel=2,
            )
        if n_epochs == 0:
            continue
        if p["action"] == "unchanged":
            y = ch.data
        else:
            y = resample(ch.data, ch.sfreq, sfreq)
        x[:, i, :] = y[start:stop].reshape(n_epochs, n_times)
        del y
    stages = None if rec.stages is None else np.asarray(rec.stages[:n_epochs], dtype=np.int8)
    starts_s = start / sfreq + np.arange(n_epochs, dtype=np.float64) * epoch_s
    return x, stages, starts_s


def minmax_scale(x: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
    """Min-max scale each epoch of each channel to [-1, 1] (the PSG-image paper's eq. 3).

    Parameters
    ----------
    x : np.ndarray, shape (..., n_times)
        E.g. (n_epochs, n_chans, n_times) or (n_chans, n_times), any units; not modified unless
        passed as ``out``.
    out : np.ndarray, optional
        float32 array of ``x``'s shape to write into; ``out=x`` scales in place, which saves a copy of
        a whole night (8 h x 12 channels x 200 Hz is 265 MB in float32).

    Returns
    -------
    np.ndarray, same shape, float32
        ``out`` when given, else a new array.
        ``2 (x - min) / (max - min) - 1`` over the last axis; a flat row (max == min) maps to 0,
        never NaN.

    Raises
    ------
    ValueError
        If ``x`` holds NaN or inf; the message names the first offending index (epoch, channel).
    """
    x = np.asarray(x)
    if x.ndim == 0 or x.shape[-1] == 0:
        raise ValueError(f"minmax_scale needs at least one sample along the last axis; got shape {x.shape}")
    lo = x.min(axis=-1, keepdims=True)
    hi = x.max(axis=-1, keepdims=True)
    # NaN propagates to min/max and inf shows in them, so checking the extremes checks every sample.
    _check_rows("minmax_scale", x, np.isfinite(lo) & np.isfinite(hi), out)
    lo = lo.astype(np.float64)
    span = hi.astype(np.float64) - lo
    gain = np.divide(2.0, span, out=np.zeros_like(span), where=span > 0)
    return _centre_and_clip(x, lo + span / 2.0, gain, out)


def physical_scale(x: np.ndarray, range_uv, *, out: np.ndarray | None = None) -> np.ndarray:
    """Scale each epoch of each channel by a fixed physical range: ``(x - mean) / range``, clipped to [-1, 1].

    The alternative to :func:`minmax_scale` that keeps amplitude: a channel's ``range_uv`` (its units,
    microvolts for EEG/EOG/EMG/ECG) maps to the band's edge, larger excursions are clipped, and the
    epoch's mean (the DC offset, which carries no stage information) is removed first, so a flat
    channel becomes 0 (the band's mid-line), as under min-max scaling.

    Parameters
    ----------
    x : np.ndarray, shape (..., n_times)
        E.g. (n_epochs, n_chans, n_times), physical units; not modified unless passed as ``out``.
    range_uv : float or array-like broadcastable to ``x.shape[:-1]``
        Half the displayed span per row (e.g. one value per channel, shape (n_chans,)); > 0, finite.
    out : np.ndarray, optional
        float32 array of ``x``'s shape to write into (``out=x`` scales in place).

    Returns
    -------
    np.ndarray, same shape, float32, in [-1, 1]
        ``out`` when given, else a new array.

    Raises
    ------
    ValueError
        A range that is not positive and finite, or non-finite samples (names the first row).
    """
    x = np.asarray(x)
    if x.ndim == 0 or x.shape[-1] == 0:
        raise ValueError(f"physical_scale needs at least one sample along the last axis; got shape {x.shape}")
    r = np.asarray(range_uv, dtype=np.float64)
    if r.size == 0 or not np.all(np.isfinite(r) & (r > 0)):
        raise ValueError(f"range_uv={range_uv!r}: every range must be a positive finite number")
    try:
        gain = np.broadcast_to(1.0 / r, x.shape[:-1])[..., None]
    except ValueError:
        raise ValueError(f"range_uv of shape {r.shape} does not broadcast to the rows {x.shape[:-1]}") from None
    mean = x.mean(axis=-1, keepdims=True, dtype=np.float64)
    _check_rows("physical_scale", x, np.isfinite(mean), out)
    return _centre_and_clip(x, mean, gain, out)


def _check_rows(name: str, x: np.ndarray, finite: np.ndarray, out) -> None:
    """Raise naming the first row (epoch, channel) whose statistic is not finite, or a wrong ``out``."""
    bad = ~finite
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad[..., 0])[0])
        raise ValueError(
            f"{name}: non-finite samples (NaN/inf) in row {where} of an array of shape {x.shape} "
            f"(leading axes are (epoch, channel)); {int(bad.sum())} rows affected"
        )
    if out is not None and (not isinstance(out, np.ndarray) or out.dtype != np.float32 or out.shape != x.shape):
        raise ValueError(
            f"out must be a float32 array of shape {x.shape}; got "
            f"{getattr(out, 'dtype', type(out).__name__)} {getattr(out, 'shape', '')}"
        )


def _centre_and_clip(x: np.ndarray, centre: np.ndarray, gain: np.ndarray, out) -> np.ndarray:
    """``clip((x - centre) * gain, -1, 1)`` in float32, into ``out`` when given (per-row centre and gain)."""
    out = np.subtract(x, centre.astype(np.float32), out=out, dtype=np.float32)
    out *= gain.astype(np.float32)
    np.clip(out, -1.0, 1.0, out=out)
    return out
