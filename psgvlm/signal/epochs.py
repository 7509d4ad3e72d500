"""Signal operations that turn a recording into scaled 30-s epochs for rendering.

Three pure functions, in pipeline order (the PSG-image paper's steps 1-3):

- :func:`resample` -- one channel (or a stack) to a target rate with scipy's polyphase FIR
  (``scipy.signal.resample_poly``), which low-passes below the new Nyquist before decimating;
- :func:`epochs_from_recording` -- every requested channel resampled once, whole, then cut into
  30-s epochs by *time* from ``rec.onset_s`` and paired with ``rec.stages``;
- :func:`minmax_scale` -- per epoch, per channel, to [-1, 1] (a flat channel becomes 0); or
  :func:`physical_scale` -- per epoch, per channel, mean removed and divided by a fixed range in the
  channel's units, clipped to [-1, 1] (amplitude kept: a 150-uV slow wave stays taller than 20-uV alpha).

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


class UpsampledChannelWarning(UserWarning):
    """A channel was sampled below the target rate and was upsampled (interpolated) to it."""


def resample_ratio(sfreq: float, target_sfreq: float) -> tuple[int, int]:
    """The integer ``(up, down)`` polyphase factors that take ``sfreq`` to ``target_sfreq``.

    Parameters
    ----------
    sfreq, target_sfreq : float
        Source and target sampling rates, Hz, both > 0.

    Returns
    -------
    up, down : int
        Coprime factors with ``sfreq * up / down == target_sfreq`` to a relative error below 1e-6
        (e.g. 125 -> 200 Hz is (8, 5), 256 -> 200 Hz is (25, 32), 10 -> 200 Hz is (20, 1)).

    Raises
    ------
    ValueError
        If a rate is not a positive finite number, or no ratio with a denominator up to 10000
        approximates ``target_sfreq / sfreq`` well enough.
    """
    for name, value in (("sfreq", sfreq), ("target_sfreq", target_sfreq)):
        if not (np.isfinite(value) and value > 0):
            raise ValueError(f"{name}={value!r} Hz: a sampling rate must be a positive finite number")
    ratio = Fraction(target_sfreq / sfreq).limit_denominator(_MAX_DENOMINATOR)
    error = abs(float(ratio) * sfreq - target_sfreq) / target_sfreq
    if ratio == 0 or error > _MAX_RATE_ERROR:
        raise ValueError(
            f"cannot resample {sfreq!r} Hz to {target_sfreq!r} Hz with an integer up/down ratio "
            f"(best {ratio.numerator}/{ratio.denominator}, rate error {error:.2e}); "
            f"choose a target rate with a simpler ratio to {sfreq!r} Hz"
        )
    return ratio.numerator, ratio.denominator


def resample(x: np.ndarray, sfreq: float, target_sfreq: float) -> np.ndarray:
    """Resample along the last axis with an anti-aliasing polyphase FIR filter.

    Parameters
    ----------
    x : np.ndarray, shape (..., n_times)
        Samples in physical units (e.g. microvolts), finite.
    sfreq : float
        Rate of ``x``, Hz.
    target_sfreq : float
        Wanted rate, Hz. Below ``sfreq`` the signal is low-passed at the new Nyquist frequency
        (Kaiser-window FIR, ``scipy.signal.resample_poly``) before decimation, so a tone above
        ``target_sfreq / 2`` is suppressed instead of aliased; above ``sfreq`` the same filter
        interpolates (band-limited, nothing above the old Nyquist is invented).

    Returns
    -------
    np.ndarray, shape (..., n_out), float32
        ``n_out = ceil(n_times * up / down)`` with ``(up, down) = resample_ratio(sfreq,
        target_sfreq)``; sample ``m`` is at time ``m / target_sfreq`` s (same time origin as ``x``).
        A new array even when the rates are equal.
    """
    x = np.asarray(x)
    if x.ndim == 0 or x.shape[-1] == 0:
        raise ValueError(f"resample needs at least one sample along the last axis; got shape {x.shape}")
    up, down = resample_ratio(sfreq, target_sfreq)
    if up == down:
        return np.array(x, dtype=np.float32, copy=True)
    from scipy.signal import resample_poly  # ~1 s to import: only when a channel needs resampling

    # float32 in -> float32 filtering in scipy >= 1.11 (half the memory of float64 for an 8-h night).
    y = resample_poly(np.asarray(x, dtype=np.float32), up, down, axis=-1)
    return y.astype(np.float32, copy=False)


def resample_plan(rec: Recording, channels: list[str], sfreq: float) -> list[dict]:
    """What :func:`epochs_from_recording` does to each channel, for ``meta.json``.

    Parameters
    ----------
    rec : Recording
    channels : list of str
        Canonical (or file) channel names, in rendering order.
    sfreq : float
        Target rate, Hz.

    Returns
    -------
    list of dict
        One per channel: ``channel`` (canonical name), ``sfreq`` (source rate, Hz), ``target_sfreq``,
        ``up``, ``down`` and ``action`` -- ``"unchanged"``, ``"downsampled"`` (anti-aliased) or
        ``"upsampled"`` (band-limited interpolation of a channel sampled below the target).
    """
    plan = []
    for name in channels:
        ch = rec.channel(name)
        up, down = resample_ratio(ch.sfreq, sfreq)
        action = "unchanged" if up == down else ("upsampled" if up > down else "downsampled")
        plan.append({"channel": ch.canonical, "sfreq": float(ch.sfreq), "target_sfreq": float(sfreq),
                     "up": up, "down": down, "action": action})
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
    channels : list of str
        Canonical (or file) names, in the order the image bands will use; no duplicates.
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
        Unknown or duplicate channel (lists what is available), non-finite samples (names the
        channel, how many and the first time), or an epoch length that is not whole samples.

    Warns
    -----
    UpsampledChannelWarning
        Once per channel sampled below ``sfreq``, naming it and its rate.
    """
    if not channels:
        raise ValueError(f"no channels requested; available in {rec.recording!r}: {rec.ch_names}")
    dup = sorted({c for c in channels if list(channels).count(c) > 1})
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
    picked = [rec.channel(name) for name in channels]  # raises naming the missing one
    plan = resample_plan(rec, channels, sfreq)

    start = int(round(rec.onset_s * sfreq))
    if start < 0:
        raise ValueError(f"recording {rec.recording!r}: onset_s={rec.onset_s!r} s is negative")
    # Whole epochs available in every resampled channel (lengths are exact: ceil(n * up / down)).
    n_out = [int(-(-len(ch.data) * p["up"] // p["down"])) for ch, p in zip(picked, plan)]
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

    x = np.empty((n_epochs, len(picked), n_times), dtype=np.float32)
    stop = start + n_epochs * n_times
    for i, (ch, p) in enumerate(zip(picked, plan)):
        if p["action"] == "upsampled":
            warnings.warn(
                f"recording {rec.recording!r}: channel {ch.canonical!r} is sampled at {ch.sfreq:g} Hz, "
                f"below the target {sfreq:g} Hz; upsampled by polyphase interpolation "
                f"(x{p['up']}/{p['down']}), no content above {ch.sfreq / 2:g} Hz",
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
