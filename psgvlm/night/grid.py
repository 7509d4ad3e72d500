"""The epoch grid `psgvlm stage` scores: the whole recording from 0 s, expert labels placed on it, flat epochs.

:func:`band_epochs` cuts the night into the scaled epochs the run's image bands show, with the two
checks below.

:func:`expert_on_grid` moves a recording's expert stages (paired by the reader on a grid that starts at
the first label) onto the staged grid, which always starts at signal time 0 and runs to the last whole
epoch of the signal: epochs no label covers are ``UNSCORED`` (left out of the agreement) and labels
outside the recording are counted as unmatched. :func:`flat_epochs` finds, per band and epoch, a mapped
channel whose samples are all equal (a disconnected or zero-filled channel) or not finite at all.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np

from psgvlm.image.renderer import RenderSettings, scale_epochs
from psgvlm.signal.epochs import epochs_from_recording
from psgvlm.stages import EPOCH_S, UNSCORED


def expert_on_grid(rec, n_epochs: int, epoch_s: float = EPOCH_S) -> tuple[np.ndarray | None, dict | None]:
    """Expert stages of ``rec`` on the staged grid ``[k * epoch_s, (k + 1) * epoch_s)``, k < ``n_epochs``.

    Parameters
    ----------
    rec : psgvlm.io.recording.Recording
        ``rec.stages[j]`` scores ``[rec.onset_s + j * rec.epoch_s, ...)`` (the readers' pairing).
    n_epochs : int
        Epochs staged, from signal time 0.
    epoch_s : float
        Epoch length, seconds.

    Returns
    -------
    expert : np.ndarray, shape (n_epochs,), int8, or None
        The label covering at least 20 s of each staged epoch (:func:`psgvlm.io.readers.pairing.pair_by_time`),
        else ``UNSCORED``; None for an unlabelled recording.
    report : dict or None
        ``n_label_epochs`` (expert epochs in the file), ``n_staged_epochs``, ``n_matched`` (staged epochs
        with an expert stage), ``n_epochs_without_label`` (staged epochs left unscored in the agreement),
        ``unmatched_label_epochs`` (expert epochs outside the staged span: before 0 s, past the signal
        end or in its trailing partial epoch).
    """
    if rec.stages is None:
        return None, None
    from psgvlm.io.readers.pairing import pair_by_time

    labels = np.asarray(rec.stages, dtype=np.int64)
    pairing = rec.pairing or {}
    dropped_by_reader = int(pairing.get("dropped_label_epochs", 0))
    expert = np.full(n_epochs, UNSCORED, dtype=np.int8)
    outside = len(labels)
    if len(labels) and n_epochs:
        onsets = rec.onset_s + np.arange(len(labels)) * rec.epoch_s
        stages, _, _ = pair_by_time(onsets, np.full(len(labels), rec.epoch_s), labels, n_epochs * epoch_s,
                                    onset_s=0.0, epoch_s=epoch_s, source=str(rec.source))
        stages = stages[:n_epochs]
        expert[: len(stages)] = stages
        span_end = n_epochs * epoch_s
        inside = (onsets + rec.epoch_s > 1e-6) & (onsets < span_end - 1e-6)
        outside = int(np.count_nonzero(~inside))
    matched = int(np.count_nonzero(expert != UNSCORED))
    report = {
        "n_label_epochs": int(pairing.get("n_label_epochs", len(labels) + dropped_by_reader)),
        "n_staged_epochs": int(n_epochs),
        "n_matched": matched,
        "n_epochs_without_label": int(n_epochs - matched),
        "unmatched_label_epochs": int(outside + dropped_by_reader),
    }
    return expert, report


def flat_epochs(rec, mapping: list[str | None], n_epochs: int, epoch_s: float = EPOCH_S, *,
                onset_s: float = 0.0) -> np.ndarray:
    """Which band is flat in which epoch, from each channel's own samples (before any resampling).

    Parameters
    ----------
    rec : psgvlm.io.recording.Recording
    mapping : list of str or None
        The recording channel drawn in each band; None (an unmapped band) counts as flat.
    n_epochs : int
        Epochs from signal time ``onset_s``.
    epoch_s : float
        Epoch length, seconds.
    onset_s : float
        Start of epoch 0 in signal time, seconds (0 for ``psgvlm stage``'s whole-night grid).

    Returns
    -------
    np.ndarray, shape (n_epochs, n_bands), bool
        True where every sample of the band's channel in that epoch is equal (peak-to-peak 0; resampling
        is skipped so a filter's edge ripple cannot hide a constant), or where it has no finite sample.
    """
    flat = np.ones((n_epochs, len(mapping)), dtype=bool)
    if n_epochs == 0:
        return flat
    for b, name in enumerate(mapping):
        if name is None:
            continue
        ch = rec.channel(name)
        bounds = np.round((onset_s + np.arange(n_epochs + 1) * epoch_s) * ch.sfreq).astype(np.int64)
        bounds = np.minimum(bounds, len(ch.data))
        data = np.asarray(ch.data[bounds[0]: bounds[-1]])
        bounds = bounds - bounds[0]
        if data.size and np.isfinite(data.min()) and np.isfinite(data.max()):  # NaN and inf show in the extremes
            hi = lo = data  # every sample finite: the extremes are the samples' own (no copies of a night)
        else:
            data = data.astype(np.float64)
            finite = np.isfinite(data)
            hi = np.where(finite, data, -np.inf)
            lo = np.where(finite, data, np.inf)
        starts = bounds[:-1]
        ok = starts < bounds[1:]  # an epoch with samples (always, unless the channel is short)
        mx = np.full(n_epochs, -np.inf)
        mn = np.full(n_epochs, np.inf)
        if ok.any():
            mx[ok] = np.maximum.reduceat(hi, starts[ok])[: int(ok.sum())]
            mn[ok] = np.minimum.reduceat(lo, starts[ok])[: int(ok.sum())]
        flat[:, b] = ~np.isfinite(mx) | (mx <= mn)  # max - min <= 0, without its overflow
    return flat


def band_epochs(rec, mapping: list[str | None], sfreq: float, settings=None):
    """The whole night, from signal time 0, cut into scaled epochs, one row per band of the run's image.

    The grid comes from the recording, never from the expert hypnogram: every whole 30-s epoch of the
    signal is staged (expert labels are placed on it by time by the caller, :func:`expert_on_grid`).

    Parameters
    ----------
    rec : psgvlm.io.recording.Recording
    mapping : list of str or None
        The recording channel drawn in each band (None = a flat band), :func:`psgvlm.night.bands.resolve_channel_map`.
    sfreq : float
        The run's rate, Hz.
    settings : psgvlm.image.renderer.RenderSettings, optional
        The run's render settings; their ``scaling`` is applied (default: min-max, the paper's).

    Returns
    -------
    x : np.ndarray, shape (n_epochs, n_bands, n_times), float32
        Cut by :func:`psgvlm.signal.epochs.epochs_from_recording`, scaled per epoch and channel to
        [-1, 1] by :func:`psgvlm.image.renderer.scale_epochs`; unmapped bands are 0 (the band's mid-line).
    starts_s : np.ndarray, shape (n_epochs,), float64
    notes : list of str
        Warnings raised while cutting (e.g. a channel upsampled to the run's rate, flat channels), for
        the summary and the console.
    checks : dict
        ``flat`` (n_epochs, n_bands) bool (:func:`flat_epochs`), ``no_eeg`` (n_epochs,)
        bool (every mapped EEG band flat: the epoch is left unscored).

    Raises
    ------
    ValueError
        When no whole epoch exists, or every mapped EEG channel is flat in every epoch (nothing to stage).
    """

    present = [m for m in mapping if m is not None]
    name = Path(str(rec.source)).name
    n_guess = int(np.floor(min(rec.channel(m).duration_s for m in present) / rec.epoch_s + 1e-9))
    flat = flat_epochs(rec, mapping, n_guess, rec.epoch_s)
    eeg = [b for b, m in enumerate(mapping) if m is not None and rec.channel(m).modality == "EEG"]
    if n_guess and flat[:, eeg].all():
        raise ValueError(
            f"{name}: nothing to stage: the EEG channel(s) {[mapping[b] for b in eeg]} are flat (constant, zero or "
            f"not finite) in every epoch; flat channels used: "
            f"{[m for b, m in enumerate(mapping) if m is not None and flat[:, b].all()]}; "
            f"choose channels with signal (--channels)")
    unlabelled = dataclasses.replace(rec, stages=None, onset_s=0.0)  # the grid starts at 0 s, whatever the labels
    with warnings.catch_warnings(record=True) as caught:  # e.g. a channel upsampled: reported in the summary
        warnings.simplefilter("always")
        x, _, starts_s = epochs_from_recording(unlabelled, mapping, sfreq)  # None bands: zeros
    n_epochs = len(x)
    if n_epochs == 0:
        raise ValueError(f"{name}: the recording holds no whole 30-s epoch ({rec.duration_s:.1f} s of signal)")
    flat = np.vstack([flat, np.ones((max(0, n_epochs - len(flat)), len(mapping)), bool)])[:n_epochs]
    # In place (a night of epochs is large); unmapped bands stay 0 = mid-line.
    scale_epochs(x, [None if m is None else rec.channel(m).modality for m in mapping], settings or RenderSettings(),
                 out=x)
    notes = [str(w.message) for w in caught]
    for b, m in enumerate(mapping):
        if m is not None and flat[:, b].any():
            notes.append(f"channel {m!r} (band {b}) is flat (constant, zero or not finite) in "
                         f"{int(flat[:, b].sum())} of {n_epochs} epochs")
    no_eeg = flat[:, eeg].all(1)
    if no_eeg.any():
        notes.append(f"{int(no_eeg.sum())} of {n_epochs} epochs have no EEG signal (every EEG channel flat); "
                     f"they are left unscored (stage UNS, probabilities 0)")
    return x, starts_s, notes, {"flat": flat, "no_eeg": no_eeg}
