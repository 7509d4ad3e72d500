"""The one in-memory type for a PSG recording.

Each channel keeps its own sampling rate (SHHS mixes 125, 50 and 10 Hz), its name as written in the
file, a canonical name (``"C3"``, ``"LOC"``, ``"EMG"``...) and a modality. Expert stages are one code
per 30-s epoch (see :mod:`psgvlm.stages`), aligned so that epoch ``k`` covers signal time
``[onset_s + 30 k, onset_s + 30 (k + 1))`` seconds; the readers pair labels and signal by time and
write what they dropped into ``pairing``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from psgvlm.stages import EPOCH_S, stage_counts

MODALITIES: tuple[str, ...] = ("EEG", "EOG", "EMG", "ECG", "RESP", "SPO2", "OTHER")


@dataclass
class Channel:
    """One signal: samples in physical units (microvolts for EEG/EOG/EMG/ECG)."""

    name: str  # as written in the file
    canonical: str  # canonical name, e.g. "C3", "LOC", "EMG"
    modality: str  # one of MODALITIES
    sfreq: float  # Hz
    data: np.ndarray  # (n_times,) float32
    unit: str = "uV"

    def __post_init__(self):
        if self.modality not in MODALITIES:
            raise ValueError(f"channel {self.name!r}: modality {self.modality!r} not in {MODALITIES}")
        if not self.sfreq > 0:
            raise ValueError(f"channel {self.name!r}: sampling rate {self.sfreq!r} Hz must be > 0")

    @property
    def duration_s(self) -> float:
        return len(self.data) / self.sfreq


class LazyChannel(Channel):
    """A :class:`Channel` whose samples are read from its file the first time ``data`` is used.

    The readers build these with ``lazy=True`` (``psgvlm stage`` reads a whole night's EDF and uses a
    few of its channels): name, modality, rate and length come from the header, and the reader's
    per-channel checks run when the samples are read. Anything else is a plain :class:`Channel`;
    pickled or copied, it is one (with its samples read).
    """

    def __init__(self, name: str, canonical: str, modality: str, sfreq: float, data: np.ndarray | None = None,
                 unit: str = "uV", *, n_times: int | None = None, load=None):
        if (data is None) == (load is None):
            raise ValueError(f"channel {name!r}: give its data or a function that reads it, not both or neither")
        self.name, self.canonical, self.modality, self.sfreq, self.unit = name, canonical, modality, sfreq, unit
        self._data, self._load = data, load
        self._n_times = len(data) if data is not None else int(n_times)
        self.__post_init__()

    @property
    def data(self) -> np.ndarray:
        if self._data is None:
            self._data = self._load()  # raises as the reader would (non-finite samples, ...)
            self._load = None
            self._n_times = len(self._data)
        return self._data

    @data.setter
    def data(self, value) -> None:
        self._data, self._load, self._n_times = value, None, len(value)

    @property
    def loaded(self) -> bool:
        """Whether the samples have been read."""
        return self._data is not None

    @property
    def duration_s(self) -> float:
        return self._n_times / self.sfreq  # from the header until read: no samples read for it

    def __reduce__(self):
        return Channel, (self.name, self.canonical, self.modality, self.sfreq, self.data, self.unit)


@dataclass
class Recording:
    """A PSG recording: channels, expert stages per 30-s epoch, and who it came from.

    ``stages`` is None for unlabelled recordings. ``onset_s`` is the signal time at which the first
    scored epoch starts (0 for most datasets; 10.01 s for the Prerau example). ``meta`` holds
    subject metadata when known (``age`` in years, ``sex`` "F"/"M", ``site``). ``pairing`` says how
    signal and labels were matched (epochs in each, what was dropped and why).
    """

    channels: list[Channel]
    subject: str
    recording: str
    dataset: str
    source: str
    stages: np.ndarray | None = None  # (n_epochs,) int8 AASM codes, UNSCORED = -1
    onset_s: float = 0.0
    epoch_s: float = EPOCH_S
    meta: dict = field(default_factory=dict)
    pairing: dict = field(default_factory=dict)

    def __post_init__(self):
        names = [c.canonical for c in self.channels]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"{self.source}: duplicate channel names {dup} in {names}")

    # -- channel access -------------------------------------------------------------------------
    @property
    def ch_names(self) -> list[str]:
        """Canonical channel names, in file order."""
        return [c.canonical for c in self.channels]

    @property
    def modalities(self) -> dict[str, str]:
        return {c.canonical: c.modality for c in self.channels}

    def channel(self, name: str) -> Channel:
        """A channel by canonical name (first) or by its name in the file."""
        for c in self.channels:
            if name == c.canonical:
                return c
        for c in self.channels:
            if name == c.name:
                return c
        raise ValueError(
            f"channel {name!r} not in recording {self.recording!r}; available: {self.ch_names}"
        )

    def pick(self, names: list[str]) -> Recording:
        """A new recording with only ``names`` (canonical or file names), in that order."""
        picked = [self.channel(n) for n in names]
        return Recording(
            channels=picked, subject=self.subject, recording=self.recording, dataset=self.dataset,
            source=self.source, stages=self.stages, onset_s=self.onset_s, epoch_s=self.epoch_s,
            meta=dict(self.meta), pairing=dict(self.pairing),
        )

    # -- time -----------------------------------------------------------------------------------
    @property
    def duration_s(self) -> float:
        """Length of the shortest channel, seconds."""
        return min(c.duration_s for c in self.channels)

    @property
    def n_epochs(self) -> int:
        """Whole 30-s epochs available in the signal from ``onset_s`` (and in the labels, if any)."""
        n_sig = int(np.floor((self.duration_s - self.onset_s) / self.epoch_s + 1e-9))
        return n_sig if self.stages is None else min(n_sig, len(self.stages))

    def stage_counts(self) -> dict[str, int]:
        if self.stages is None:
            return {}
        return stage_counts(self.stages[: self.n_epochs])

    def __repr__(self) -> str:
        return (
            f"Recording({self.dataset}:{self.recording}, subject={self.subject!r}, "
            f"{len(self.channels)} channels, {self.duration_s / 3600:.2f} h, {self.n_epochs} epochs)"
        )
