"""Frozen pretrained reference stagers (YASA, GSSC) run on one recording, and the predictor contract.

Every predictor of a night (these stagers, the VLM run, a consensus over them) answers one question
the same way: a recording in, a :class:`Hypnodensity` out — per 30-s epoch of the whole-night grid
(epoch ``k`` is ``[30 k, 30 (k + 1))`` s of signal time) the probabilities of W, N1, N2, N3, REM, plus
the recording channels it read. A predictor that cannot run on a recording (no EEG, a rate too low,
an optional extra not installed) raises :class:`PredictorUnavailable` with the reason, which the
caller reports while the others run. The registry of predictors lives in
:mod:`psgvlm.night.predictors`; :mod:`psgvlm.reference.yasa` and :mod:`psgvlm.reference.gssc` are two
of them, :func:`reference_channels` is the channel choice both use.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from psgvlm.stages import N_STAGES

MIN_REFERENCE_SFREQ = 50.0  # Hz; below this an EEG/EOG/EMG channel is refused by the reference stagers


class PredictorUnavailable(Exception):
    """A predictor cannot run on this recording (or in this install); the message says why."""


@dataclass
class Hypnodensity:
    """What every predictor returns for one recording on the whole-night epoch grid.

    Attributes
    ----------
    probs : np.ndarray, shape (n_epochs, 5), float32
        Stage probabilities, columns W, N1, N2, N3, REM; rows sum to 1, except unscored rows (all 0).
    channels : list of str
        Canonical names of the recording channels the predictor read.
    unscored : np.ndarray, shape (n_epochs,), bool
        Epochs the predictor did not score (no EEG signal in them; past the end of its channels).
    streams : dict
        ``{channel set: (n_epochs, 5) probs}``: the per channel (or channel set) hypnodensities it
        combined, e.g. YASA's ``"C3+LOC+EMG"`` (what NAP fuses); empty for a single-stream predictor.
    notes : list of str
        Things the user should know (a channel upsampled, a filter that could not be applied).
    info : dict
        JSON-able facts: the classifier and its version, channel sets, how streams were combined.
    """

    probs: np.ndarray
    channels: list[str]
    unscored: np.ndarray
    streams: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        self.probs = np.asarray(self.probs, dtype=np.float32)
        self.unscored = np.asarray(self.unscored, dtype=bool)
        if self.probs.ndim != 2 or self.probs.shape[1] != N_STAGES:
            raise ValueError(f"probs must have shape (n_epochs, {N_STAGES}), got {self.probs.shape}")
        if self.unscored.shape != (len(self.probs),):
            raise ValueError(f"unscored has shape {self.unscored.shape}, expected ({len(self.probs)},)")

    @property
    def n_epochs(self) -> int:
        return len(self.probs)


def on_grid(probs: np.ndarray, n_epochs: int) -> tuple[np.ndarray, np.ndarray]:
    """``(probs, unscored)`` cut or zero-padded to ``n_epochs`` rows; padded rows are unscored."""
    out = np.zeros((n_epochs, N_STAGES), dtype=np.float32)
    k = min(n_epochs, len(probs))
    out[:k] = probs[:k]
    unscored = np.ones(n_epochs, dtype=bool)
    unscored[:k] = False
    return out, unscored


def reference_channels(rec, *, eeg=None, eog=None, emg=None, max_eeg: int | None = 1) -> dict[str, list[str]]:
    """The channels a reference stager reads: ``{"eeg": [...], "eog": [...], "emg": [...]}``.

    Parameters
    ----------
    rec : psgvlm.io.recording.Recording
    eeg, eog, emg : list of str, optional
        Channels asked for by name (any spelling :meth:`Recording.channel` accepts); default: by the
        one channel-picking rule (:func:`psgvlm.io.channels.rank_channels`: central EEG first, LOC,
        chin EMG), channels sampled at >= 50 Hz.
    max_eeg : int or None
        How many EEG channels the automatic choice takes (best first); None = every EEG channel.
        One EOG and one EMG channel at most are picked automatically.

    Returns
    -------
    dict of str -> list of str
        Canonical names; ``eeg`` is never empty.

    Raises
    ------
    PredictorUnavailable
        No EEG channel (naming the channels present), or a named channel sampled below 50 Hz.
    ValueError
        A named channel that is not in the recording (the message lists what is).
    """
    from psgvlm.io.channels import rank_channels

    out: dict[str, list[str]] = {}
    for modality, asked, limit in (("EEG", eeg, max_eeg), ("EOG", eog, 1), ("EMG", emg, 1)):
        if asked:
            names = [rec.channel(n).canonical for n in asked]
            slow = [f"{n} ({rec.channel(n).sfreq:g} Hz)" for n in names if rec.channel(n).sfreq < MIN_REFERENCE_SFREQ]
            if slow:
                raise PredictorUnavailable(f"channel(s) {slow} sampled below {MIN_REFERENCE_SFREQ:g} Hz")
        else:
            names = rank_channels(rec.channels, modality)
            names = names if limit is None else names[:limit]
        out[modality.lower()] = list(dict.fromkeys(names))
    if not out["eeg"]:
        eeg_any = [f"{c.canonical} ({c.sfreq:g} Hz)" for c in rec.channels if c.modality == "EEG"]
        raise PredictorUnavailable(
            f"no EEG channel sampled at >= {MIN_REFERENCE_SFREQ:g} Hz "
            + (f"(EEG present: {eeg_any})" if eeg_any else f"among {rec.ch_names}"))
    return out

