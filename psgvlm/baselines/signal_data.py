"""The shared signal dataset of the baselines: 30-s epochs as arrays per channel at the model's rate.

Built from the same recordings (``psgvlm.io.readers``) and the same subject-wise split manifests as the
image datasets, so that the VLM and the baselines are compared on identical subjects. Each channel is
resampled to the rate of its modality (128 Hz for EEG/EOG/EMG/ECG, 4 Hz for RESP/SPO2, as sleep2vec
does), cut into epochs paired by time with the expert stages, and z-scored per recording and channel.

On disk: ``DIR/<recording>.npz`` (one array per channel, ``stages``, ``starts_s``) and ``DIR/meta.json``
(``kind: psgvlm-signal-dataset``, ``version``, channels, modalities, rates, split, per-recording metadata,
provenance). Unscored epochs stay in the arrays (label -1) so that sequences of consecutive epochs keep
their time structure; the losses and metrics skip them.

Read like the image dataset it is compared with (:func:`build_signal_dataset`): the same reader
options (ISRUC ``scorer`` and ``trim_tail_epochs``, SHHS ``visit``) and subject subset, taken from the
image dataset named by ``split_from`` unless given; every recording holds the same channels, a
channel a night lacks being blank (zeros) with a warning and listed in its ``meta["missing_channels"]``,
as ``psgvlm render`` draws a blank band (:meth:`SignalRecording.channels_of` still lists only what the
night has, so a recipe choosing modalities by what every night has chooses as before).

Leakage: the baselines select their training and test recordings by subject, so a split that lists a
subject in two of train/validation/test (the PSG-image paper's epoch-level split, ``psgvlm render
--split epoch``) would train them on their test nights. Such a split is refused
(:class:`SplitLeakError`) wherever a signal dataset gets or reads one: :func:`resolve_split`,
:func:`save_signal_dataset`, :func:`load_signal_dataset`, :func:`read_split`. The paper's epoch split
stays available to the image models, whose rows are epochs.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from psgvlm.provenance import provenance, read_json, write_json_atomic
from psgvlm.signal.epochs import UpsampledChannelWarning, epochs_from_recording, resample_plan
from psgvlm.splits import split_subjects, subjects_in_two_splits
from psgvlm.stages import EPOCH_S, UNSCORED

HIGH_RATE_HZ = 128.0  # electrophysiology (EEG, EOG, EMG, ECG), as in sleep2vec
LOW_RATE_HZ = 4.0  # slow physiology (respiration, SpO2), as in sleep2vec
MODALITY_RATE_HZ = {"EEG": HIGH_RATE_HZ, "EOG": HIGH_RATE_HZ, "EMG": HIGH_RATE_HZ, "ECG": HIGH_RATE_HZ,
                    "RESP": LOW_RATE_HZ, "SPO2": LOW_RATE_HZ}
KIND = "psgvlm-signal-dataset"
# On-disk format version; bump when the arrays of a dataset would differ. 2: epochs cut by
# ``epochs_from_recording`` (a trailing partial epoch dropped instead of edge-padded).
VERSION = 2


@dataclass
class SignalRecording:
    """One recording as epochs: ``x[ch]`` is (n_epochs, n_times) float32, z-scored, at ``sfreq[ch]`` Hz."""

    subject: str
    recording: str
    dataset: str
    x: dict[str, np.ndarray]
    modalities: dict[str, str]  # channel -> modality
    sfreq: dict[str, float]  # channel -> Hz
    stages: np.ndarray  # (n_epochs,) int, UNSCORED = -1
    starts_s: np.ndarray  # (n_epochs,) float, signal time of each epoch's start
    meta: dict = field(default_factory=dict)  # age (years), sex, site when known; upsampled_from_hz

    @property
    def n_epochs(self) -> int:
        return len(self.stages)

    @property
    def missing(self) -> list[str]:
        """Channels blank (zeros) in this recording because the night lacks them."""
        return list(self.meta.get("missing_channels") or [])

    def channels_of(self, modality: str) -> list[str]:
        """Channels of one modality the night has, in dataset order (its blank ones are in :attr:`missing`)."""
        return [c for c, m in self.modalities.items() if m == modality and c not in self.missing]

    def modality_array(self, modality: str, channel: str | None = None) -> np.ndarray:
        """(n_epochs, n_times) of ``channel`` (default: the first channel of ``modality`` the night has).

        A ``channel`` the night lacks but the dataset has (:attr:`missing`) gives its blank (zeros) array,
        as a blank band. Raises ValueError naming the missing modality and what the recording has.
        """
        chans = self.channels_of(modality)
        if channel is not None and channel in self.missing and self.modalities.get(channel) == modality:
            return self.x[channel]
        if not chans:
            raise ValueError(
                f"recording {self.recording!r} has no {modality} channel; present: "
                f"{ {c: m for c, m in self.modalities.items()} }"
            )
        if channel is None:
            return self.x[chans[0]]
        if channel not in chans:
            raise ValueError(f"channel {channel!r} is not a {modality} channel of {self.recording!r}; "
                             f"{modality} channels: {chans}")
        return self.x[channel]


def _zscore(x: np.ndarray) -> np.ndarray:
    """Per-recording z-score (statistics in float64) as float32; a flat channel maps to zeros."""
    x = np.asarray(x, dtype=np.float64)
    sd = float(np.std(x))
    return ((x - float(np.mean(x))) / sd).astype(np.float32) if sd > 1e-8 else np.zeros(x.shape, np.float32)


def recording_to_signal(rec, *, channels=None, rates=None) -> SignalRecording:
    """Cut a :class:`psgvlm.io.recording.Recording` into epochs at the model rates.

    Channels are grouped by the rate of their modality and each group is cut by the project's one
    epoch cutter, :func:`psgvlm.signal.epochs.epochs_from_recording` (resampled whole, epochs paired by
    time with the stages, a trailing partial epoch dropped, never padded). When the groups disagree
    on the number of whole epochs (a resampled channel one sample short), all keep the shortest.
    Each channel is then z-scored over its epochs.

    Parameters
    ----------
    rec : Recording
    channels : list of str, optional
        Channel names to keep, in this order (default: every channel whose modality has a rate). One
        the recording lacks is blank (zeros), with a warning, and listed in ``meta["missing_channels"]``
        (its modality from its name, :func:`psgvlm.io.channels.lookup`).
    rates : dict, optional
        Modality -> Hz (default ``MODALITY_RATE_HZ``).

    Returns
    -------
    SignalRecording with ``x[ch]`` of shape (n_epochs, epoch_s * rate) and ``starts_s`` of the
    highest-rate group (the onset rounded to the nearest sample at that rate).
    """
    from psgvlm.io.channels import lookup

    rates = dict(MODALITY_RATE_HZ if rates is None else rates)
    if rec.stages is None:
        raise ValueError(f"recording {rec.recording!r} has no expert stages; the baselines need labels")
    layout = None  # canonical name -> modality, in the order asked
    if channels is None:
        names = [c.canonical for c in rec.channels if c.modality in rates]
    else:
        layout = {}
        for name in channels:
            try:
                ch = rec.channel(name)
                layout[ch.canonical] = ch.modality
            except ValueError:
                canonical, modality, _ = lookup(name, dataset=rec.dataset)
                if modality not in rates:
                    raise ValueError(f"channel {name!r} (modality {modality!r}, from its name) is not in recording "
                                     f"{rec.recording!r}, and only modalities {sorted(rates)} can stand blank; "
                                     f"available: {rec.ch_names}") from None
                layout[canonical] = modality
        names = [c for c in layout if c in rec.ch_names]
    if not names:
        raise ValueError(f"recording {rec.recording!r} has no channel of modalities {sorted(rates)}"
                         f"{'' if channels is None else f' among {list(channels)}'}; present: {rec.modalities}")
    groups: dict[float, list[str]] = {}  # target Hz -> canonical names, in the order asked
    for name in names:
        ch = rec.channel(name)
        if ch.modality not in rates:
            raise ValueError(f"channel {name!r} has modality {ch.modality!r}; allowed: {sorted(rates)}")
        bad = int(np.sum(~np.isfinite(ch.data)))
        if bad:
            raise ValueError(f"recording {rec.recording!r} channel {name!r} holds {bad} NaN/inf samples")
        groups.setdefault(float(rates[ch.modality]), []).append(ch.canonical)
    # The models fix the rates (sleep2vec's 128 Hz), so upsampling e.g. a 100 Hz EEG is expected here:
    # recorded in ``meta["upsampled_from_hz"]`` instead of a warning per channel and recording.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UpsampledChannelWarning)
        cut = {hz: epochs_from_recording(rec, chans, hz, epoch_s=rec.epoch_s) for hz, chans in groups.items()}
    upsampled = {p["channel"]: p["sfreq"] for hz, chans in groups.items()
                 for p in resample_plan(rec, chans, hz) if p["action"] == "upsampled"}
    n_epochs = min(len(e[0]) for e in cut.values())
    x, mods, sf = {}, {}, {}
    for hz, chans in groups.items():
        for i, name in enumerate(chans):
            x[name] = _zscore(cut[hz][0][:n_epochs, i])
            mods[name] = rec.channel(name).modality
            sf[name] = hz
    _, stages, starts = cut[max(cut)]
    meta = {**{k: rec.meta.get(k) for k in ("age", "sex", "site")}, "upsampled_from_hz": upsampled}
    sig = SignalRecording(subject=str(rec.subject), recording=str(rec.recording), dataset=rec.dataset,
                          x=x, modalities=mods, sfreq=sf, stages=np.asarray(stages[:n_epochs], np.int64),
                          starts_s=starts[:n_epochs], meta=meta)
    return sig if layout is None else conform(sig, layout, rates=rates, available=rec.ch_names)


def conform(sig: SignalRecording, layout: dict[str, str], *, rates=None, available=None) -> SignalRecording:
    """``sig`` with exactly the channels of ``layout`` (name -> modality), in that order.

    A channel the recording lacks becomes zeros (n_epochs, epoch_s * its modality's rate) -- a flat
    channel z-scores to zeros, as :func:`psgvlm.signal.epochs.epochs_from_recording` blanks a band --
    with a warning naming it and the recording, and is listed in ``meta["missing_channels"]``.
    ``available`` (the recording's channel names) goes into the warning.
    """
    rates = dict(MODALITY_RATE_HZ if rates is None else rates)
    missing = [c for c in layout if c not in sig.x]
    if missing:
        have = list(sig.x) if available is None else list(available)
        warnings.warn(f"recording {sig.recording!r}: channel(s) {missing} not in the recording; blank (zeros) in "
                      f"the signal dataset; available: {have}", stacklevel=2)
    n_times = {c: int(round(EPOCH_S * rates[m])) for c, m in layout.items() if c in missing}
    x = {c: sig.x[c] if c in sig.x else np.zeros((sig.n_epochs, n_times[c]), np.float32) for c in layout}
    sfreq = {c: sig.sfreq[c] if c in sig.sfreq else float(rates[m]) for c, m in layout.items()}
    meta = {**sig.meta, "missing_channels": sorted(set(sig.missing) | set(missing), key=list(layout).index)}
    return replace(sig, x=x, modalities=dict(layout), sfreq=sfreq, meta=meta)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


class SplitLeakError(ValueError):
    """A split that would put one subject's recordings in two of train/validation/test."""


def check_no_leak(split: dict, *, source: str = "the split") -> dict:
    """``split`` unchanged, or :class:`SplitLeakError` when a subject is in two of train/validation/test.

    The message names the subjects, where the split came from (``source``), why the baselines cannot
    use it and what to do: render the image dataset with ``--split subject`` (its default) and pass it
    as ``--split_from``, or build without ``--split_from`` (a subject split seeded by ``--split_seed``).
    """
    both = subjects_in_two_splits(split)
    if not both:
        return split
    shown = ", ".join(f"{s} ({'+'.join(w)})" for s, w in list(both.items())[:5])
    kind = split.get("kind")
    why = ("it is the PSG-image paper's epoch-level split (psgvlm render --split epoch), which lists every subject "
           "in every split" if kind == "epoch" else f"its kind is {kind!r}")
    raise SplitLeakError(
        f"--split_from: {source} puts {len(both)} subject(s) in more than one split ({shown}"
        f"{' ...' if len(both) > 5 else ''}): {why}. The signal baselines select recordings by subject, so they "
        "would train on their test nights. Render the image dataset with --split subject and pass it as "
        "--split_from, or omit --split_from (a subject split seeded by --split_seed).")


def read_split(path) -> dict:
    """The ``split`` of a dataset dir's ``meta.json`` (image or signal dataset, or a JSON file holding
    ``{"split": ...}``), checked by :func:`check_no_leak`; ValueError when it has no train/test lists."""
    path = Path(path)
    meta = read_json(path / "meta.json" if path.is_dir() else path)
    split = meta.get("split") if isinstance(meta, dict) else None
    if not isinstance(split, dict):
        raise ValueError(f"--split_from {str(path)!r} holds no split manifest (a meta.json with 'split')")
    check_no_leak(split, source=f"the split of {str(path)!r}")
    if not (isinstance(split.get("train"), list) and isinstance(split.get("test"), list)):
        raise ValueError(f"--split_from {str(path)!r}: its split (kind {split.get('kind')!r}) has no train and test "
                         "subjects; render the image dataset with --split subject")
    return split


def save_signal_dataset(recs: list[SignalRecording], out, *, split: dict, extra: dict | None = None,
                        overwrite: bool = False) -> Path:
    """Write ``recs`` and ``meta.json`` to ``out`` atomically (temp dir, then rename).

    A ``split`` that puts a subject in two splits is refused (:class:`SplitLeakError`).
    """
    out = Path(out)
    check_no_leak(split, source=f"the split given for {str(out)!r}")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True to replace it")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent if out.parent.exists() else None))
    entries = []
    for r in recs:
        fname = _safe(f"{r.dataset}-{r.recording}") + ".npz"
        np.savez(tmp / fname, stages=r.stages, starts_s=r.starts_s,
                 **{f"x__{c}": a for c, a in r.x.items()})
        entries.append({"file": fname, "subject": r.subject, "recording": r.recording, "dataset": r.dataset,
                        "modalities": r.modalities, "sfreq": r.sfreq, "n_epochs": r.n_epochs,
                        "n_unscored": int(np.sum(r.stages == UNSCORED)), "meta": r.meta})
    meta = {"kind": KIND, "version": VERSION, "epoch_s": EPOCH_S, "rates": MODALITY_RATE_HZ, "split": split,
            "recordings": entries, **(extra or {}), "provenance": provenance()}
    write_json_atomic(tmp / "meta.json", meta)
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(out)
    return out


def load_signal_dataset(path) -> tuple[list[SignalRecording], dict]:
    """(recordings, meta) of a dataset written by :func:`save_signal_dataset`; one whose split puts a
    subject in two splits (written before that was refused) raises :class:`SplitLeakError`."""
    path = Path(path)
    if not (path / "meta.json").exists():
        raise FileNotFoundError(f"{path} is not a signal dataset (no meta.json)")
    meta = read_json(path / "meta.json")
    if meta.get("kind") != KIND:
        raise ValueError(f"{path}/meta.json has kind {meta.get('kind')!r}, expected {KIND!r}")
    if meta.get("version") != VERSION:
        raise ValueError(f"{path} is a signal dataset of format version {meta.get('version', 1)}; this psgvlm "
                         f"reads version {VERSION} (epochs cut differently): rebuild it from its recordings "
                         f"(build_signal_dataset(..., overwrite=True), or a recipe with --format/--input)")
    check_no_leak(meta.get("split") or {}, source=f"the split of the signal dataset {str(path)!r}")
    recs = []
    for e in meta["recordings"]:
        with np.load(path / e["file"]) as z:
            x = {k[3:]: z[k] for k in z.files if k.startswith("x__")}
            recs.append(SignalRecording(subject=e["subject"], recording=e["recording"], dataset=e["dataset"],
                                        x=x, modalities=e["modalities"], sfreq=e["sfreq"],
                                        stages=z["stages"], starts_s=z["starts_s"], meta=e.get("meta", {})))
    return recs, meta


def resolve_split(subjects, *, split_from=None, seed: int = 0) -> dict:
    """The split manifest for ``subjects``: ``split_from``'s (:func:`read_split`: an image dataset dir, a
    meta.json or a ``{"split": ...}`` file; refused when it puts a subject in two splits) or
    ``split_subjects(seed)``. ValueError when ``split_from`` does not list some of ``subjects``."""
    subjects = sorted(set(map(str, subjects)))
    if split_from:
        split = read_split(split_from)
        listed = set(split.get("train", [])) | set(split.get("validation", [])) | set(split.get("test", []))
        missing = sorted(set(subjects) - listed)
        if missing:
            raise ValueError(f"subjects {missing} are not in the split manifest of {split_from}")
        return split
    return {"kind": "subject", "seed": seed, **split_subjects(subjects, seed=seed)}


# Reader options an image dataset records in meta.json "settings" that change which epochs and labels a
# recording yields: a signal dataset built with ``split_from`` that dataset reads the same way.
READ_OPTIONS = ("scorer", "visit", "trim_tail_epochs")


def inherited_options(split_from, given: dict) -> dict:
    """Reader options and subject ids for a signal dataset: ``given`` (None = not given) completed from the
    image dataset ``split_from`` (its meta.json ``settings``); ValueError when one given differs from it."""
    out = dict(given)
    if not split_from:
        return out
    path = Path(split_from)
    meta = read_json(path / "meta.json" if path.is_dir() else path)
    settings = meta.get("settings") if isinstance(meta, dict) and meta.get("kind") == "psgvlm-image-dataset" else None
    if not settings:
        return out
    theirs = {k: settings.get(k) for k in READ_OPTIONS}
    theirs["subjects"] = (settings.get("subjects") or {}).get("ids")
    for k, v in theirs.items():
        if out.get(k) is None:
            out[k] = v
        elif v is not None and out[k] != v and not (k == "subjects" and sorted(out[k]) == sorted(v)):
            raise ValueError(f"{k}={out[k]!r} differs from {v!r} of the image dataset {str(split_from)!r} whose split "
                             f"is used (--split_from): the baselines would read other epochs or labels than the "
                             f"images; leave {k} out to take the image dataset's")
    return out


def build_signal_dataset(*, fmt: str, input, out, channels=None, split_from=None, split_seed: int = 0,
                         subjects=None, scorer: int | None = None, visit: int | None = None,
                         trim_tail_epochs: int | None = None, hypnogram=None, transform=None,
                         overwrite: bool = False) -> Path:
    """Read the recordings of ``input`` with ``psgvlm.io.readers`` and write the signal dataset to ``out``.

    Parameters
    ----------
    fmt : str
        Reader name.
    input : path
        A dataset folder, or one recording file (with ``hypnogram``).
    channels : list of str, optional
        Channels to keep, in order; default every channel of a rated modality that any recording has.
        Either way every recording holds the same channels: one a night lacks is blank (zeros), warned
        and listed in its ``meta["missing_channels"]``; a requested channel no recording has is refused.
    split_from : path, optional
        An image dataset (or any meta.json with a ``split``) whose subject split to reuse; one that
        puts a subject in two splits is refused (:class:`SplitLeakError`). Its reader options and
        subject subset are used when not given here (:func:`inherited_options`).
    split_seed : int
        Seed of the subject split without ``split_from``.
    subjects : list of str or path, optional
        Only these subjects (ids or a selection file, :func:`psgvlm.io.subjects.resolve_subjects`).
    scorer, visit, trim_tail_epochs : int, optional
        Reader options as ``psgvlm render`` takes them (ISRUC scorer and last epochs dropped per night,
        SHHS visit).
    transform : callable, optional
        ``transform(rec) -> Recording`` after reading (e.g. ``psgvlm.signal.corruption.ChannelFailure``;
        its ``config()`` goes to meta.json ``corruption``).
    """
    from tqdm import tqdm

    from psgvlm.io.readers import find_recordings, read_recording
    from psgvlm.io.subjects import resolve_subjects, select_jobs

    if split_from:
        read_split(split_from)  # refuse a leaking or empty split before reading any night
    chosen = None
    if subjects is not None:
        subjects, chosen = resolve_subjects(subjects, input)
    opts = inherited_options(split_from, {"scorer": scorer, "visit": visit, "trim_tail_epochs": trim_tail_epochs,
                                          "subjects": subjects})
    find_opts = {k: opts[k] for k in ("scorer", "visit") if opts.get(k) is not None}
    read_opts = {k: opts[k] for k in ("scorer", "trim_tail_epochs") if opts.get(k)}
    if Path(input).is_dir():
        found = find_recordings(fmt, input, **find_opts)
    else:
        found = [{"path": str(input), "hypnogram": None if hypnogram is None else str(hypnogram)}]
    if opts.get("subjects") is not None:
        chosen = chosen or {"ids": list(opts["subjects"]), "source": f"{split_from} (its settings.subjects)"}
        found = select_jobs(found, opts["subjects"], input=input)
    if not found:
        raise ValueError(f"no {fmt!r} recordings found under {input}")
    recs = []
    for kw in tqdm(found, desc=f"signal dataset {fmt}"):
        rec = read_recording(fmt, **kw, **read_opts)
        recs.append(recording_to_signal(rec if transform is None else transform(rec), channels=channels))
    recs = _same_channels(recs, channels)
    split = resolve_split([r.subject for r in recs], split_from=split_from, seed=split_seed)
    extra = {"input": {"format": fmt, "path": str(input), "channels": channels,
                       **{k: opts.get(k) for k in READ_OPTIONS}}, "subjects": chosen}
    if transform is not None and hasattr(transform, "config"):
        extra["corruption"] = transform.config()
    return save_signal_dataset(recs, out, split=split, overwrite=overwrite, extra=extra)


def _same_channels(recs: list[SignalRecording], channels) -> list[SignalRecording]:
    """Every recording with the same channels (:func:`conform`): those asked, else the union in first-seen
    order; a channel asked for that no recording has is refused, naming what the first one has."""
    layout: dict[str, str] = {}
    for r in recs:
        for c, m in r.modalities.items():
            if c not in r.missing:
                layout.setdefault(c, m)
    if channels is not None:
        asked = list(recs[0].modalities)  # recording_to_signal put the asked channels in order
        absent = [c for c in asked if c not in layout]
        if absent:
            raise ValueError(f"channel(s) {absent} are in none of the {len(recs)} recording(s); available in "
                             f"{recs[0].recording!r}: {[c for c in recs[0].modalities if c not in recs[0].missing]}")
        layout = {c: layout[c] for c in asked}
    return [r if list(r.modalities) == list(layout) else conform(r, layout) for r in recs]


def select(recs: list[SignalRecording], subjects) -> list[SignalRecording]:
    subjects = set(map(str, subjects))
    return [r for r in recs if r.subject in subjects]


def sequence_starts(n_epochs: int, seq_len: int, stride: int | None = None) -> np.ndarray:
    """Start indices of windows of ``seq_len`` consecutive epochs covering all ``n_epochs``.

    The last window is aligned to the end so every epoch is covered. Raises ValueError when the
    recording is shorter than one window.
    """
    if seq_len < 1:
        raise ValueError(f"seq_len must be >= 1, got {seq_len}")
    if n_epochs < seq_len:
        raise ValueError(f"sequence of {n_epochs} epochs is shorter than the model's window K={seq_len}")
    stride = seq_len if stride is None else stride
    starts = list(range(0, n_epochs - seq_len + 1, stride))
    if starts[-1] != n_epochs - seq_len:
        starts.append(n_epochs - seq_len)
    return np.asarray(starts)
