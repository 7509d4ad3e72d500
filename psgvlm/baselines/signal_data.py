"""The shared signal dataset of the baselines: 30-s epochs as arrays per channel at the model's rate.

Built from the same recordings (``psgvlm.io.readers``) and the same subject-wise split manifests as the
image datasets, so that the VLM and the baselines are compared on identical subjects. Each channel is
resampled to the rate of its modality (128 Hz for EEG/EOG/EMG/ECG, 4 Hz for RESP/SPO2, as sleep2vec
does), cut into epochs paired by time with the expert stages, and z-scored per recording and channel.

On disk: ``DIR/<recording>.npz`` (one array per channel, ``stages``, ``starts_s``) and ``DIR/meta.json``
(``kind: psgvlm-signal-dataset``, ``version``, channels, modalities, rates, split, per-recording metadata,
provenance). Unscored epochs stay in the arrays (label -1) so that sequences of consecutive epochs keep
their time structure; the losses and metrics skip them.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from psgvlm.provenance import provenance, read_json, write_json_atomic
from psgvlm.signal.epochs import UpsampledChannelWarning, epochs_from_recording, resample_plan
from psgvlm.splits import split_subjects
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

    def channels_of(self, modality: str) -> list[str]:
        """Channels of one modality, in dataset order."""
        return [c for c, m in self.modalities.items() if m == modality]

    def modality_array(self, modality: str, channel: str | None = None) -> np.ndarray:
        """(n_epochs, n_times) of ``channel`` (default: the first channel of ``modality``).

        Raises ValueError naming the missing modality and what the recording has.
        """
        chans = self.channels_of(modality)
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
        Canonical channel names to keep (default: every channel whose modality has a rate).
    rates : dict, optional
        Modality -> Hz (default ``MODALITY_RATE_HZ``).

    Returns
    -------
    SignalRecording with ``x[ch]`` of shape (n_epochs, epoch_s * rate) and ``starts_s`` of the
    highest-rate group (the onset rounded to the nearest sample at that rate).
    """
    rates = dict(MODALITY_RATE_HZ if rates is None else rates)
    if rec.stages is None:
        raise ValueError(f"recording {rec.recording!r} has no expert stages; the baselines need labels")
    names = [c.canonical for c in rec.channels if c.modality in rates] if channels is None else list(channels)
    if not names:
        raise ValueError(f"recording {rec.recording!r} has no channel of modalities {sorted(rates)}; "
                         f"present: {rec.modalities}")
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
    return SignalRecording(subject=str(rec.subject), recording=str(rec.recording), dataset=rec.dataset,
                           x=x, modalities=mods, sfreq=sf, stages=np.asarray(stages[:n_epochs], np.int64),
                           starts_s=starts[:n_epochs], meta=meta)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def save_signal_dataset(recs: list[SignalRecording], out, *, split: dict, extra: dict | None = None,
                        overwrite: bool = False) -> Path:
    """Write ``recs`` and ``meta.json`` to ``out`` atomically (temp dir, then rename)."""
    out = Path(out)
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
    """(recordings, meta) of a dataset written by :func:`save_signal_dataset`."""
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
    recs = []
    for e in meta["recordings"]:
        with np.load(path / e["file"]) as z:
            x = {k[3:]: z[k] for k in z.files if k.startswith("x__")}
            recs.append(SignalRecording(subject=e["subject"], recording=e["recording"], dataset=e["dataset"],
                                        x=x, modalities=e["modalities"], sfreq=e["sfreq"],
                                        stages=z["stages"], starts_s=z["starts_s"], meta=e.get("meta", {})))
    return recs, meta


def resolve_split(subjects, *, split_from=None, seed: int = 0) -> dict:
    """The image dataset's split manifest (``split_from``/meta.json "split") or ``split_subjects(seed)``."""
    subjects = sorted(set(map(str, subjects)))
    if split_from:
        meta = read_json(Path(split_from) / "meta.json" if Path(split_from).is_dir() else split_from)
        split = meta["split"]
        listed = set(split.get("train", [])) | set(split.get("validation", [])) | set(split.get("test", []))
        missing = sorted(set(subjects) - listed)
        if missing:
            raise ValueError(f"subjects {missing} are not in the split manifest of {split_from}")
        return split
    return {"kind": "subject", "seed": seed, **split_subjects(subjects, seed=seed)}


def build_signal_dataset(*, fmt: str, input, out, channels=None, split_from=None, split_seed: int = 0,
                         overwrite: bool = False) -> Path:
    """Read every recording of ``input`` with ``psgvlm.io.readers`` and write the signal dataset to ``out``."""
    from tqdm import tqdm

    from psgvlm.io.readers import find_recordings, read_recording

    found = find_recordings(fmt, input)
    if not found:
        raise ValueError(f"no {fmt!r} recordings found under {input}")
    recs = [recording_to_signal(read_recording(fmt, **kw), channels=channels)
            for kw in tqdm(found, desc=f"signal dataset {fmt}")]
    split = resolve_split([r.subject for r in recs], split_from=split_from, seed=split_seed)
    return save_signal_dataset(recs, out, split=split, overwrite=overwrite,
                               extra={"input": {"format": fmt, "path": str(input), "channels": channels}})


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
