"""Random building blocks of the synthetic signals: band-limited noise, event trains, seeded streams.

Every function takes its ``numpy.random.Generator`` explicitly; ``child_rng`` gives each stream
(a channel, a source, the hypnogram) a generator of its own, so the same seed gives the same bytes
and adding a channel changes no other channel.
"""

from __future__ import annotations

import functools
import zlib

import numpy as np
import scipy.fft


def band_noise(rng, n: int, sfreq: float, lo: float, hi: float, *, slope: float = 0.0,
               peak: float | None = None, width: float = 1.0) -> np.ndarray:
    """Unit-std Gaussian noise band-limited to [lo, hi] Hz, drawn in the frequency domain.

    ``slope`` shapes the amplitude spectrum as f**-slope (0.5 gives 1/f power: pink); ``peak`` and
    ``width`` give a Gaussian spectral peak instead (an alpha or spindle rhythm).
    """
    hi = min(hi, sfreq / 2)
    q = int(sfreq // (4 * hi))
    if q >= 3 and n >= 64 * q:  # slow band: draw at a lower rate, then interpolate (same spectrum)
        n_low = n // q + 2
        x_low = band_noise(rng, n_low, sfreq / q, lo, hi, slope=slope, peak=peak, width=width)
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


def place(x: np.ndarray, starts: np.ndarray, waves: np.ndarray) -> None:
    """Add each row of ``waves`` (n_events, n) into ``x`` from sample ``starts[i]`` (clipped at the end)."""
    n, L = len(x), waves.shape[1]
    waves = waves.astype(np.float32, copy=False)
    for i, s in enumerate(np.asarray(starts, dtype=np.int64)):  # slices: far cheaper than a scatter
        a, b = max(s, 0), min(s + L, n)
        if a < b:
            x[a:b] += waves[i, a - s:b - s]


def smooth(x: np.ndarray, width: int) -> np.ndarray:
    """Moving average with edge padding (the ramps of features at stage changes)."""
    if width <= 1:
        return x.astype(float)
    pad = np.pad(x.astype(float), (width // 2, width - width // 2 - 1), mode="edge")
    c = np.cumsum(np.r_[0.0, pad])
    return (c[width:] - c[:-width]) / width


def slow_noise(rng, n_s: int, width_s: int) -> np.ndarray:
    """Unit-std slowly varying noise at 1 Hz (waxing and waning of rhythms, eyes open/closed)."""
    z = smooth(rng.standard_normal(n_s + 2 * width_s), width_s)[width_s:width_s + n_s]
    return z / max(z.std(), 1e-9)


def events_from_rate(rng, rate_per_min: np.ndarray) -> np.ndarray:
    """Event onsets (s) from a 1-Hz rate control (events per minute): Poisson per second."""
    counts = rng.poisson(np.clip(rate_per_min, 0, None) / 60.0)
    sec = np.repeat(np.arange(len(rate_per_min)), counts)
    return np.sort(sec + rng.random(len(sec)))


def child_rng(seed: int, subject: int, name: str) -> np.random.Generator:
    """A generator of its own for one stream, so adding a channel changes no other channel."""
    return np.random.default_rng([int(seed), int(subject), zlib.crc32(name.encode())])


def pink(rng, n: int, fs: float, uv: float, *, slope: float = 0.75) -> np.ndarray:
    """1/f background noise of ``uv`` microvolts std, 0.3-45 Hz, ``n`` samples at ``fs`` Hz; amplitude
    spectrum f**-slope (0.75 by default; a subject's EEG draws its own)."""
    return band_noise(rng, n, fs, 0.3, min(0.45 * fs, 45), slope=slope) * np.float32(uv)
