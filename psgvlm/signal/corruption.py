"""Signal corruption for the robustness and channel-loss evals, applied to a Recording before rendering.

Failure injection follows the PSG-image paper (section 2.3.1): a seeded random ``round(0.7 * n)`` of
the subjects are affected, and each affected subject gets ONE random failure time ``t_fail`` (uniform
over the scored span of the night, drawn as a fraction of it, so both nights of a two-night subject
fail at the same relative time); from ``t_fail`` on, every present core EEG channel (C3, C4, F3, F4,
O1, O2) is white noise (Gaussian, matched to the channel's standard deviation before the failure) or
zeros. The paper says the choice between noise and zeros "was made randomly" without saying per what;
here it is drawn once per subject with the onset (``per="subject"``, the default): the subject's
headbox fails, all core channels alike. ``per="channel"`` is the named variant in which each core
channel draws its own onset and kind (what this module did before; not the paper's protocol).

Every random draw comes from ``np.random.default_rng`` seeded with ``[seed, crc32(subject), ...]`` (plus
``crc32(channel)`` for per-channel draws and the noise), so a subject's failure does not depend on
which other recordings were processed, in which order or in which worker process: the same seed
gives bit-for-bit the same signals and manifest. The injector is a picklable callable
``transform(rec) -> Recording`` for the dataset builder and for the signal baselines alike. Stages
hand a transform to ``psgvlm render --transform SPEC.json`` as a file: :func:`save_transform` writes
its settings as JSON (``per`` included), :func:`load_transform` rebuilds it.

Channel loss: :func:`drop_channels` removes channels (by name or whole modality) from a recording;
:func:`blank_bands` paints a channel's band of an already-rendered image with the background, so
the image keeps its layout with the band empty.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np

from psgvlm.io.recording import MODALITIES, Recording
from psgvlm.provenance import write_json_atomic

CORE_EEG: tuple[str, ...] = ("C3", "C4", "F3", "F4", "O1", "O2")
FAILURE_KINDS: tuple[str, ...] = ("noise", "zeros")
# What one failure draw (onset and kind) covers: a whole subject (the paper's one t_fail per subject,
# the default) or one channel (each core channel its own onset and kind: the named variant).
FAILURE_UNITS: tuple[str, ...] = ("subject", "channel")
_SUBJECT_DRAW = 0x0F5E7  # tags the per-subject stream (apart from selection and per-channel streams)


def _crc(text: str) -> int:
    return zlib.crc32(str(text).encode("utf-8"))


def select_subjects(subjects, *, fraction: float = 0.7, seed: int = 0) -> list[str]:
    """A seeded random ``round(fraction * n)`` of the distinct subjects, sorted.

    Parameters
    ----------
    subjects : iterable of str
    fraction : float in [0, 1]
        Share of subjects that get failures (0.7 in the paper; 1.0 corrupts everyone).
    seed : int
    """
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must be in [0, 1], got {fraction!r}")
    subs = sorted(set(map(str, subjects)))
    rng = np.random.default_rng([seed, 0x5E1EC7])
    n = int(round(fraction * len(subs)))
    return sorted(subs[i] for i in rng.permutation(len(subs))[:n])


class ChannelFailure:
    """Seeded failure injection on core EEG channels: ``transform(rec) -> corrupted copy``.

    Parameters
    ----------
    seed : int
        Seed of every draw (subject selection, onset, kind, noise).
    subjects : iterable of str, optional
        All subjects of the evaluation; exactly ``round(fraction * n)`` of them are selected. When
        None, each subject is selected independently with probability ``fraction`` (use this only
        when the subject list is unknown up front: the share is then approximate).
    fraction : float
        Share of subjects affected (paper: ~0.70).
    channels : sequence of str
        Channels eligible for failure; those absent from a recording are skipped.
    kinds : sequence of str
        Failure kinds drawn from, uniformly: "noise" and/or "zeros".
    min_onset_frac : float
        The onset is uniform over ``[min_onset_frac, 1)`` of the scored span of the recording.
    per : {"subject", "channel"}
        ``"subject"`` (default, the paper): one onset and one kind per subject, shared by all its
        core channels. ``"channel"``: each core channel draws its own onset and kind.
    manifest_dir : path, optional
        If given, each corrupted recording's manifest entries are also written to
        ``manifest_dir/<subject>__<recording>.json`` (collects manifests across worker processes).

    Attributes
    ----------
    manifest : list of dict
        Entries ``{"subject", "recording", "channel", "onset_s", "kind", "per", "std_uv"}`` of every
        recording corrupted by this instance in this process (with ``per="subject"`` the entries of
        one recording share ``onset_s`` and ``kind``).
    """

    def __init__(self, *, seed: int, subjects=None, fraction: float = 0.7, channels=CORE_EEG,
                 kinds=FAILURE_KINDS, min_onset_frac: float = 0.0, per: str = "subject", manifest_dir=None):
        bad = sorted(set(kinds) - set(FAILURE_KINDS))
        if bad or not kinds:
            raise ValueError(f"failure kinds {list(kinds)!r} invalid; allowed: {list(FAILURE_KINDS)}")
        if not 0 <= fraction <= 1:
            raise ValueError(f"fraction must be in [0, 1], got {fraction!r}")
        if not 0 <= min_onset_frac < 1:
            raise ValueError(f"min_onset_frac must be in [0, 1), got {min_onset_frac!r}")
        if per not in FAILURE_UNITS:
            raise ValueError(f"per={per!r}: a failure is drawn per one of {list(FAILURE_UNITS)}")
        self.per = per
        self.seed = int(seed)
        self.fraction = float(fraction)
        self.channels = tuple(channels)
        self.kinds = tuple(kinds)
        self.min_onset_frac = float(min_onset_frac)
        self.subjects = None if subjects is None else sorted(set(map(str, subjects)))
        self.selected = None if subjects is None else set(select_subjects(self.subjects, fraction=fraction, seed=seed))
        self.manifest_dir = None if manifest_dir is None else Path(manifest_dir)
        self.manifest: list[dict] = []

    @property
    def description(self) -> str:
        """Stable text of the settings (the dataset builder hashes it to key resumable shards)."""
        return f"ChannelFailure({json.dumps(self.config(), sort_keys=True)})"

    def config(self) -> dict:
        return {"seed": self.seed, "fraction": self.fraction, "channels": list(self.channels),
                "kinds": list(self.kinds), "min_onset_frac": self.min_onset_frac, "per": self.per,
                "selected_subjects": None if self.selected is None else sorted(self.selected)}

    def spec(self) -> dict:
        """JSON-able settings that :func:`load_transform` turns back into an equal injector."""
        return {"kind": "channel_failure", "seed": self.seed, "subjects": self.subjects, "fraction": self.fraction,
                "channels": list(self.channels), "kinds": list(self.kinds), "min_onset_frac": self.min_onset_frac,
                "per": self.per, "manifest_dir": None if self.manifest_dir is None else str(self.manifest_dir)}

    def is_selected(self, subject: str) -> bool:
        if self.selected is not None:
            return str(subject) in self.selected
        return bool(np.random.default_rng([self.seed, _crc(subject)]).random() < self.fraction)

    def _draw(self, rng) -> tuple[float, str]:
        """(onset as a fraction of the scored span, kind) from one stream."""
        u = self.min_onset_frac + (1 - self.min_onset_frac) * rng.random()
        return u, self.kinds[int(rng.integers(len(self.kinds)))]

    def plan(self, rec: Recording) -> list[dict]:
        """The failures this injector puts on ``rec`` (empty when its subject is not selected)."""
        if not self.is_selected(rec.subject):
            return []
        span_s = rec.n_epochs * rec.epoch_s if rec.n_epochs > 0 else rec.duration_s - rec.onset_s
        shared = self._draw(np.random.default_rng([self.seed, _crc(rec.subject), _SUBJECT_DRAW]))
        entries = []
        for name in self.channels:
            if name not in rec.ch_names:
                continue
            u, kind = shared if self.per == "subject" else self._draw(
                np.random.default_rng([self.seed, _crc(rec.subject), _crc(name)]))
            entries.append({"subject": str(rec.subject), "recording": str(rec.recording), "channel": name,
                            "onset_s": float(rec.onset_s + u * span_s), "kind": kind, "per": self.per})
        return entries

    def __call__(self, rec: Recording) -> Recording:
        entries = self.plan(rec)
        if not entries:
            return rec
        by_channel = {e["channel"]: e for e in entries}
        channels = []
        for ch in rec.channels:
            e = by_channel.get(ch.canonical)
            if e is None:
                channels.append(ch)
                continue
            data = np.array(ch.data, dtype=np.float32, copy=True)
            start = min(len(data), max(0, int(np.ceil(e["onset_s"] * ch.sfreq))))
            std = float(np.std(data[:start])) if start > 1 else float(np.std(data))
            e["std_uv"] = std
            if e["kind"] == "zeros":
                data[start:] = 0
            else:
                # A separate stream from the plan's draws, so the noise never shifts onset or kind.
                rng = np.random.default_rng([self.seed, _crc(rec.subject), _crc(ch.canonical), 1])
                data[start:] = (rng.standard_normal(len(data) - start) * std).astype(np.float32)
            channels.append(replace(ch, data=data))
        self.manifest.extend(entries)
        if self.manifest_dir is not None:
            write_json_atomic(self.manifest_dir / f"{rec.subject}__{rec.recording}.json", entries)
        return Recording(channels=channels, subject=rec.subject, recording=rec.recording, dataset=rec.dataset,
                         source=rec.source, stages=rec.stages, onset_s=rec.onset_s, epoch_s=rec.epoch_s,
                         meta=dict(rec.meta), pairing={**rec.pairing, "corruption": entries})


def collect_manifest(manifest_dir) -> list[dict]:
    """All entries written under ``manifest_dir`` by :class:`ChannelFailure`, sorted."""
    entries = []
    for path in sorted(Path(manifest_dir).glob("*.json")):
        entries.extend(json.loads(path.read_text(encoding="utf-8")))
    return sorted(entries, key=lambda e: (e["subject"], e["recording"], e["channel"]))


def resolve_drop(names_or_modalities, available: dict[str, str]) -> list[str]:
    """Channels named by ``names_or_modalities`` (canonical names or modalities like "EOG").

    Parameters
    ----------
    names_or_modalities : iterable of str
    available : dict channel -> modality
        What the recording or dataset holds.

    Returns
    -------
    list of channel names to drop, in ``available`` order; ValueError naming any entry that is
    neither a channel nor a modality present there.
    """
    wanted = [str(x).strip() for x in names_or_modalities if str(x).strip()]
    if not wanted:
        raise ValueError("nothing to drop: give channel names or modalities")
    drop = set()
    for w in wanted:
        if w in available:
            drop.add(w)
        elif w.upper() in MODALITIES:
            hits = {c for c, m in available.items() if m == w.upper()}
            if not hits:
                raise ValueError(f"modality {w!r} has no channel here; modalities present: "
                                 f"{sorted(set(available.values()))}")
            drop |= hits
        else:
            raise ValueError(f"channel {w!r} not available; channels: {list(available)}; "
                             f"or a modality among {sorted(set(available.values()))}")
    return [c for c in available if c in drop]


def drop_channels(rec: Recording, names_or_modalities) -> Recording:
    """A copy of ``rec`` without the named channels or modalities (ValueError if all would go)."""
    drop = resolve_drop(names_or_modalities, rec.modalities)
    keep = [c for c in rec.ch_names if c not in drop]
    if not keep:
        raise ValueError(f"dropping {drop} leaves recording {rec.recording!r} with no channel")
    return rec.pick(keep)


class DropChannels:
    """Picklable ``transform(rec)`` that drops channels or modalities (for ``build_dataset``)."""

    def __init__(self, names_or_modalities):
        self.names = list(names_or_modalities)

    @property
    def description(self) -> str:
        return f"DropChannels({self.names})"

    def spec(self) -> dict:
        """JSON-able settings that :func:`load_transform` turns back into an equal transform."""
        return {"kind": "drop_channels", "names_or_modalities": list(self.names)}

    def __call__(self, rec: Recording) -> Recording:
        return drop_channels(rec, self.names)


# Literal registry of the transforms a spec file can name: spec "kind" -> class.
TRANSFORMS = {"channel_failure": ChannelFailure, "drop_channels": DropChannels}


def save_transform(transform, path) -> Path:
    """Write ``transform`` (a :data:`TRANSFORMS` instance) as a JSON spec file; returns ``path``.

    The file holds the transform's settings only (for a :class:`ChannelFailure`: seed, subject list,
    share, channels, kinds, onset floor, ``per`` -- one failure per subject or per channel -- and
    manifest folder), so another process rebuilds the same transform from it with
    :func:`load_transform` and draws the same failures.
    """
    spec = transform.spec() if hasattr(transform, "spec") else None
    if not isinstance(spec, dict) or spec.get("kind") not in TRANSFORMS:
        raise ValueError(f"{transform!r} cannot be saved as a spec file; transforms that can: {list(TRANSFORMS)}")
    path = Path(path)
    write_json_atomic(path, spec)
    return path


def load_transform(path):
    """The transform described by the JSON spec file ``path`` (written by :func:`save_transform`).

    Returns
    -------
    ChannelFailure or DropChannels
        A picklable ``transform(rec) -> Recording``.

    A ``channel_failure`` spec without ``per`` was written before the setting existed, when every
    core channel drew its own onset and kind: it is rebuilt with ``per="channel"``, so it draws the
    failures it drew then.

    Raises
    ------
    ValueError
        The file is not JSON, names no known ``kind`` (the message lists :data:`TRANSFORMS`), or
        holds settings that transform does not take.
    """
    path = Path(path)
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"transform spec {str(path)!r} is not valid JSON: {err}") from None
    kind = spec.get("kind") if isinstance(spec, dict) else None
    if kind not in TRANSFORMS:
        raise ValueError(f"transform spec {str(path)!r} has kind {kind!r}; allowed: {list(TRANSFORMS)}")
    params = {k: v for k, v in spec.items() if k != "kind"}
    if kind == "channel_failure":
        params.setdefault("per", "channel")  # written before ``per`` existed: per-channel draws
    try:
        return TRANSFORMS[kind](**params)
    except TypeError as err:
        raise ValueError(f"transform spec {str(path)!r}: bad settings for {kind!r}: {err}") from None


def background_color(image) -> np.ndarray:
    """The most frequent RGB value of an image (the renderer's background), shape (3,) uint8."""
    flat = np.asarray(image).reshape(-1, np.asarray(image).shape[-1])
    values, counts = np.unique(flat, axis=0, return_counts=True)
    return values[int(np.argmax(counts))].astype(np.uint8)


def blank_bands(image, bands: list[dict], channels, color=None) -> np.ndarray:
    """A copy of ``image`` with the bands of ``channels`` painted in the background colour.

    Parameters
    ----------
    image : np.ndarray, shape (H, W, 3) uint8
    bands : list of dict
        Band layout (``psgvlm.image.dataset.band_layout``): {"channel", "top", "bottom"} pixel rows.
    channels : iterable of str
        Channels whose band is blanked; ValueError naming one the layout lacks.
    color : array-like of 3 uint8, optional
        Fill colour; default the image's most frequent colour.
    """
    image = np.array(image, copy=True)
    by_name = {b["channel"]: b for b in bands}
    fill = background_color(image) if color is None else np.asarray(color, dtype=np.uint8)
    for ch in channels:
        if ch not in by_name:
            raise ValueError(f"channel {ch!r} has no band in this image; bands: {list(by_name)}")
        b = by_name[ch]
        image[b["top"]:b["bottom"]] = fill
    return image
