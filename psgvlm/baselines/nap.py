"""NAP (Neural Aggregator of Predictions): tri-axial attention over hypnodensities of frozen predictors.

Input: a dict of hypnodensity streams ``{"predictor@channel": (B, T, 5)}`` of frozen predictors over T
epochs (a multi-channel predictor such as the VLM or sDREAMER gives one stream on its own pseudo-channel
``"*"``; YASA gives one per EEG channel). Inside, the streams form a grid (B, C, T, P, 5) of C channels
and P predictors with an availability mask (C, P) (:func:`streams_to_grid`, :meth:`NAP.forward_grid`).
Mechanisms (paper "Methods"), each switchable:

- Embedding: a bias-free linear map of each 5-d probability vector to ``d_model`` (24) plus a fixed
  sinusoidal time position (channels and predictors are sets: no position, so any subset works).
- Tri-axial attention: the ``n_heads`` heads are split evenly over the axes in ``axes`` (default
  channel, time, predictor); each group attends along its axis only, the others held fixed. Pre-norm,
  LayerNorm on queries and keys, no bias anywhere; 4 layers. Removing an axis from ``axes`` is the
  ablation (its heads go to the remaining axes). Missing (channel, predictor) cells are masked as keys.
- Fusion: a learned score per (channel, predictor) stream, softmax over the available streams of each
  epoch, weighted sum -> a bias-free classifier -> logits (B, T, 5).
- Dimension-adaptive training (``sample_subgrid``): every batch draws a random sequence length and
  random non-empty subsets of channels and predictors, so any subset works at test without padding.
- ``soft_vote``: the mean hypnodensity of the available streams, computed beside NAP.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from psgvlm.stages import N_STAGES

AXES = ("channel", "time", "predictor")
ALL_CHANNELS = "*"  # pseudo-channel of a predictor that sees the whole montage (VLM, sDREAMER, sleep2vec)


@dataclass
class NAPConfig:
    d_model: int = 24  # token width (paper: 24)
    n_layers: int = 4  # tri-axial layers (paper: 4)
    n_heads: int = 6  # split evenly over the axes in use
    ffn_mult: int = 4  # FFN width / d_model
    axes: tuple[str, ...] = AXES  # attention axes; drop one for the ablation
    dropout: float = 0.1

    def __post_init__(self):
        self.axes = tuple(self.axes)
        bad = [a for a in self.axes if a not in AXES]
        if bad or not self.axes or len(set(self.axes)) != len(self.axes):
            raise ValueError(f"axes {self.axes!r} must be a non-empty subset of {AXES}")
        if self.n_heads % len(self.axes) or self.d_model % self.n_heads:
            raise ValueError(f"n_heads {self.n_heads} must split evenly over {len(self.axes)} axes and "
                             f"divide d_model {self.d_model}")


class TriAxialAttention(nn.Module):
    """Multi-head attention whose head groups attend along different axes of (B, C, T, P, D)."""

    def __init__(self, *, config: NAPConfig):
        super().__init__()
        c = config
        self.axes = c.axes
        self.n_heads = c.n_heads
        self.head_dim = c.d_model // c.n_heads
        self.qkv = nn.Linear(c.d_model, 3 * c.d_model, bias=False)
        self.q_norm = nn.LayerNorm(self.head_dim, bias=False)
        self.k_norm = nn.LayerNorm(self.head_dim, bias=False)
        self.out = nn.Linear(c.d_model, c.d_model, bias=False)
        self.dropout = c.dropout

    def forward(self, x, avail):
        """x (B, C, T, P, D); avail (C, P) bool."""
        b, c, t, p, d = x.shape
        q, k, v = self.qkv(x).reshape(b, c, t, p, 3, self.n_heads, self.head_dim).unbind(4)
        q, k = self.q_norm(q), self.k_norm(k)
        per_axis = self.n_heads // len(self.axes)
        outs = []
        for i, axis in enumerate(self.axes):
            hs = slice(i * per_axis, (i + 1) * per_axis)
            qa, ka, va = q[..., hs, :], k[..., hs, :], v[..., hs, :]  # (B, C, T, P, h, e)
            # move the attended axis to position -2 and everything else to the batch dims
            perm = {"channel": (0, 2, 3, 4, 1, 5), "time": (0, 1, 3, 4, 2, 5), "predictor": (0, 1, 2, 4, 3, 5)}[axis]
            qa, ka, va = (z.permute(*perm) for z in (qa, ka, va))
            mask = None
            if axis == "channel":  # keys (c', p) available; batch dims (B, T, P, h)
                mask = avail.T[None, None, :, None, None, :]  # (1,1,P,1,1,C)
            elif axis == "predictor":  # keys (c, p'); batch dims (B, C, T, h)
                mask = avail[None, :, None, None, None, :]  # (1,C,1,1,1,P)
            o = F.scaled_dot_product_attention(qa, ka, va, attn_mask=mask,
                                               dropout_p=self.dropout if self.training else 0.0)
            inv = np.argsort(perm)
            outs.append(o.permute(*inv))
        o = torch.cat(outs, dim=-2).reshape(b, c, t, p, d)
        return self.out(o)


class NAPLayer(nn.Module):
    def __init__(self, *, config: NAPConfig):
        super().__init__()
        d = config.d_model
        self.norm1 = nn.LayerNorm(d, bias=False)
        self.attn = TriAxialAttention(config=config)
        self.norm2 = nn.LayerNorm(d, bias=False)
        self.ffn = nn.Sequential(nn.Linear(d, config.ffn_mult * d, bias=False), nn.GELU(),
                                 nn.Linear(config.ffn_mult * d, d, bias=False))
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x, avail):
        x = x + self.drop(self.attn(self.norm1(x), avail))
        return x + self.drop(self.ffn(self.norm2(x)))


def _time_encoding(t: int, d: int) -> torch.Tensor:
    pos = torch.arange(t, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
    pe = torch.zeros(t, d)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)[:, : d // 2]
    return pe


def stream_name(predictor: str, channel: str) -> str:
    """The input name of one (predictor, channel) stream: ``"predictor@channel"``."""
    return f"{predictor}@{channel}"


def grid_to_streams(p, avail=None) -> dict[str, torch.Tensor]:
    """``{"p<j>@<i>": (B, T, 5)}`` of the available cells (channel i, predictor j) of a grid p (B, C, T, P, 5).

    ``avail`` (C, P) bool (default all). :meth:`NAP.forward` rebuilds the same grid from these names.
    """
    p = torch.as_tensor(p)
    avail = np.ones((p.shape[1], p.shape[3]), bool) if avail is None else np.asarray(avail, bool)
    return {stream_name(f"p{j}", str(i)): p[:, i, :, j] for i, j in zip(*np.nonzero(avail))}


def streams_to_grid(x: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(p (B, C, T, P, 5) zero where unavailable, avail (C, P) bool) of the streams ``x``.

    Rows are the channels and columns the predictors in order of first appearance; a name without
    ``@`` is a predictor on the whole-montage pseudo-channel ``"*"``.
    """
    if not x:
        raise ValueError("NAP needs at least one hypnodensity stream; got none")
    cells = {}
    for name in x:
        pred, _, ch = name.rpartition("@") if "@" in name else (name, "@", ALL_CHANNELS)
        cells[name] = (ch, pred)
    channels = list(dict.fromkeys(ch for ch, _ in cells.values()))
    predictors = list(dict.fromkeys(pr for _, pr in cells.values()))
    shapes = {tuple(v.shape) for v in x.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 3 or next(iter(shapes))[-1] != N_STAGES:
        raise ValueError(f"every stream must be (batch, epochs, {N_STAGES}) of one shape; got "
                         f"{ {k: tuple(v.shape) for k, v in x.items()} }")
    b, t, _ = next(iter(shapes))
    first = next(iter(x.values()))
    p = torch.zeros(b, len(channels), t, len(predictors), N_STAGES, dtype=first.dtype, device=first.device)
    avail = torch.zeros(len(channels), len(predictors), dtype=torch.bool)
    for name, v in x.items():
        ch, pred = cells[name]
        i, j = channels.index(ch), predictors.index(pred)
        p[:, i, :, j] = v
        avail[i, j] = True
    return p, avail


class NAP(nn.Module):
    """NAP over any set of hypnodensity streams.

    ``forward({"yasa@C3": (B, T, 5), "yasa@C4": ..., "vlm@*": ...})`` -> logits (B, T, 5);
    ``forward_grid`` is the same on the grid, with the per-epoch fusion weight of each stream.
    """

    def __init__(self, *, config: NAPConfig):
        super().__init__()
        self.config = c = config
        self.embed = nn.Linear(N_STAGES, c.d_model, bias=False)
        self.layers = nn.ModuleList(NAPLayer(config=c) for _ in range(c.n_layers))
        self.norm = nn.LayerNorm(c.d_model, bias=False)
        self.score = nn.Linear(c.d_model, 1, bias=False)
        self.classifier = nn.Linear(c.d_model, N_STAGES, bias=False)

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits over W, N1, N2, N3, REM per epoch.

        Parameters
        ----------
        x : dict
            Stream name ``"predictor@channel"`` (:func:`stream_name`; a bare ``"predictor"`` is on the
            whole-montage pseudo-channel ``"*"``) -> (batch, n_epochs, 5) hypnodensities (rows sum to
            1). Streams sharing a channel or a predictor attend to each other along that axis; any
            set of streams and any ``n_epochs`` works.

        Returns
        -------
        torch.Tensor, shape (batch, n_epochs, 5)
        """
        return self.forward_grid(*streams_to_grid(x))[0]

    def forward_grid(self, p, avail=None) -> tuple[torch.Tensor, torch.Tensor]:
        """The grid form :meth:`forward` builds: p (B, C, T, P, 5), avail (C, P) bool (None: all).

        Returns (logits (B, T, 5), fusion weights (B, T, C, P)); unavailable cells are ignored.
        """
        if p.ndim != 5 or p.shape[-1] != N_STAGES:
            raise ValueError(f"hypnodensities must be (batch, channels, epochs, predictors, {N_STAGES}), "
                             f"got {tuple(p.shape)}")
        b, c, t, npred, _ = p.shape
        avail = torch.ones(c, npred, dtype=torch.bool) if avail is None else torch.as_tensor(avail, dtype=torch.bool)
        if avail.shape != (c, npred):
            raise ValueError(f"availability mask has shape {tuple(avail.shape)}, expected {(c, npred)}")
        if not avail.any(0).all() or not avail.any(1).all():
            raise ValueError("every channel and every predictor needs at least one available stream")
        if torch.isnan(p[:, avail.nonzero()[:, 0], :, avail.nonzero()[:, 1]]).any():
            raise ValueError("hypnodensities hold NaN values")
        p = torch.nan_to_num(p) * avail[None, :, None, :, None]
        x = self.embed(p) + _time_encoding(t, self.config.d_model)[None, None, :, None, :]
        for layer in self.layers:
            x = layer(x, avail)
        x = self.norm(x)
        s = self.score(x).squeeze(-1)  # (B, C, T, P)
        s = s.masked_fill(~avail[None, :, None, :], float("-inf"))
        w = torch.softmax(s.permute(0, 2, 1, 3).reshape(b, t, c * npred), -1)  # (B, T, C*P)
        fused = torch.einsum("btk,btkd->btd", w, x.permute(0, 2, 1, 3, 4).reshape(b, t, c * npred, -1))
        return self.classifier(fused), w.reshape(b, t, c, npred)


def soft_vote(p, avail=None) -> np.ndarray:
    """Mean hypnodensity over the available streams: p (C, T, P, 5) -> (T, 5)."""
    p = np.asarray(p, dtype=np.float64)
    avail = np.ones(p.shape[0:1] + p.shape[2:3], bool) if avail is None else np.asarray(avail, bool)
    ci, pi = np.nonzero(avail)
    sel = p[ci, :, pi]  # (n_streams, T, 5)
    return sel.mean(0)


def sample_subgrid(avail: np.ndarray, rng: np.random.Generator, *, fix_channels: bool = False,
                   fix_predictors: bool = False):
    """Random non-empty channel and predictor subsets that leave every kept row/column non-empty."""
    c, p = avail.shape
    for _ in range(100):
        ch = np.arange(c) if fix_channels else np.flatnonzero(rng.random(c) < 0.6)
        pr = np.arange(p) if fix_predictors else np.flatnonzero(rng.random(p) < 0.6)
        if len(ch) == 0 or len(pr) == 0:
            continue
        sub = avail[np.ix_(ch, pr)]
        ch, pr = ch[sub.any(1)], pr[sub.any(0)]
        if len(ch) and len(pr) and avail[np.ix_(ch, pr)].any(0).all() and avail[np.ix_(ch, pr)].any(1).all():
            return ch, pr
    return np.arange(c), np.arange(p)


# -- streams of frozen predictors --------------------------------------------------------------------



def _run_files(run_dir: Path) -> list[tuple[str, Path]]:
    """(channel, predictions file) pairs of a run dir: ``channels/<ch>/`` sub-runs for a per-channel
    predictor such as YASA (its top-level ``predictions.jsonl`` combines them and is not a stream of its
    own), else the top level + ``predictions_*/`` as one stream on the whole-montage pseudo-channel."""
    files = []
    if (run_dir / "channels").is_dir():
        for sub in sorted((run_dir / "channels").iterdir()):
            if (sub / "predictions.jsonl").exists():
                files.append((sub.name, sub / "predictions.jsonl"))
    if not files:
        for f in [run_dir / "predictions.jsonl", *sorted(run_dir.glob("predictions_*/predictions.jsonl"))]:
            if f.exists():
                files.append((ALL_CHANNELS, f))
    if not files:
        raise FileNotFoundError(f"{run_dir} holds no predictions.jsonl (nor channels/*/predictions.jsonl)")
    return files


def _unscored(row) -> bool:
    return row["label"] is None or int(row["label"]) < 0


def load_streams(sources: dict) -> dict:
    """Load hypnodensity streams of frozen predictors and check that they describe the same epochs.

    Parameters
    ----------
    sources : dict
        Predictor name -> run dir (or a ``predictions.jsonl`` file), or a list of them (one predictor
        run on several corpora, e.g. ``psgvlm reference`` once per dataset format). A run dir
        contributes its ``predictions.jsonl`` and ``predictions_<split>/predictions.jsonl`` files (one
        stream on the pseudo-channel ``"*"``) and/or ``channels/<ch>/predictions.jsonl`` (one stream
        per channel).

    Returns
    -------
    dict with ``channels`` (list), ``predictors`` (list), ``avail`` (C, P) bool (every stream of any
    recording), ``recordings``: {(dataset, subject, recording): {"probs": (C, T, P, 5) float32 (zero
    where a stream is absent), "labels": (T,), "epochs": (T,), "starts_s": (T,)}}, and ``dropped``:
    one entry per recording where unscored epochs were left out (``dataset``, ``subject``,
    ``recording``, ``epochs``, ``missing_from`` {"predictor@channel": n}). When recordings differ in
    the streams they have (a per-channel predictor on corpora with different montages: C3 here, Cz
    there), every recording also carries its own ``avail`` (C, P) (what :func:`nap_batch` and
    :func:`predict_nap` take).

    Streams are joined on (recording, epoch). A per-channel stream holds the recordings that have its
    channel, but every predictor must cover the same recordings (over its channels). Image datasets
    leave unscored epochs out while the signal datasets keep them (label -1): an epoch that some
    streams lack is dropped from all of them when every stream that has it marks it unscored, and
    reported in ``dropped``.

    Raises
    ------
    ValueError
        When streams disagree: a recording one predictor has and another lacks, a scored epoch missing
        from a stream, different labels, or a different subject for the same recording.
    """
    from psgvlm.predictions import read_predictions

    per_stream = {}  # (channel, predictor) -> {key: {epoch: row}}
    for pred, srcs in sources.items():
        for src in [srcs] if isinstance(srcs, str | Path) else srcs:
            src = Path(src)
            files = [(ALL_CHANNELS, src)] if src.is_file() else _run_files(src)
            for ch, f in files:
                d = per_stream.setdefault((ch, pred), {})
                for r in read_predictions(f):
                    d.setdefault((r["dataset"], r["recording"]), {})[int(r["epoch"])] = r
    channels = sorted({c for c, _ in per_stream}, key=lambda c: (c == ALL_CHANNELS, c))
    predictors = list(sources)
    avail = np.zeros((len(channels), len(predictors)), bool)
    for c, p in per_stream:
        avail[channels.index(c), predictors.index(p)] = True
    covered = {}  # predictor -> the recordings of its streams
    for (_, p), d in per_stream.items():
        covered.setdefault(p, set()).update(d)
    keys, ref = None, None
    for p, recs in covered.items():
        if keys is None:
            keys, ref = recs, p
        elif recs != keys:
            only_a, only_b = sorted(keys - recs), sorted(recs - keys)
            raise ValueError(f"predictor {p!r} and predictor {ref!r} cover different recordings: missing "
                             f"{only_a[:5]}, extra {only_b[:5]} (a run predicts train/validation subjects only "
                             "where asked: VLM and image-classifier recipes --predict_splits train validation "
                             "test; or train NAP on fewer splits, --train_on)")
    recordings, dropped = {}, []
    for ds, rec in sorted(keys):
        streams = [((c, p), d[(ds, rec)]) for (c, p), d in per_stream.items() if (ds, rec) in d]
        (ref_c, ref_p), ref_rows = streams[0]
        for (c, p), rows in streams[1:]:  # epochs in one stream only must be unscored wherever present
            scored = sorted(e for e in set(rows) ^ set(ref_rows)
                            if not _unscored(rows[e] if e in rows else ref_rows[e]))
            if scored:
                raise ValueError(f"recording {rec!r}: predictor {p!r} channel {c!r} has {len(rows)} epochs but "
                                 f"{ref_p!r} channel {ref_c!r} has {len(ref_rows)}; scored epochs not in both: "
                                 f"{scored[:5]} (only unscored epochs may be missing from a stream)")
        epochs = sorted(set.intersection(*(set(rows) for _, rows in streams)))
        extra = sorted(set.union(*(set(rows) for _, rows in streams)) - set(epochs))
        if not epochs:
            raise ValueError(f"recording {rec!r}: the streams share no epoch")
        probs = np.zeros((len(channels), len(epochs), len(predictors), N_STAGES), np.float32)
        own = np.zeros_like(avail)
        for (c, p), rows in streams:
            for e in epochs:
                a, b = rows[e], ref_rows[e]
                if a["subject"] != b["subject"]:
                    raise ValueError(f"recording {rec!r}: subject {a['subject']!r} in {p!r} vs "
                                     f"{b['subject']!r} in {ref_p!r}")
                if a["label"] != b["label"]:
                    raise ValueError(f"recording {rec!r} epoch {e}: label {a['label']} in {p!r} vs "
                                     f"{b['label']} in {ref_p!r}")
            probs[channels.index(c), :, predictors.index(p)] = [rows[e]["probs"] for e in epochs]
            own[channels.index(c), predictors.index(p)] = True
        if not np.all(np.isfinite(probs)):
            raise ValueError(f"recording {rec!r}: hypnodensities hold NaN values")
        subject = ref_rows[epochs[0]]["subject"]
        if extra:
            dropped.append({"dataset": ds, "subject": subject, "recording": rec, "epochs": extra,
                            "missing_from": {f"{p}@{c}": sum(e not in rows for e in extra)
                                             for (c, p), rows in streams if any(e not in rows for e in extra)}})
        labels = np.array([-1 if ref_rows[e]["label"] is None else ref_rows[e]["label"] for e in epochs])
        recordings[(ds, subject, rec)] = {
            "probs": probs, "labels": labels, "epochs": np.array(epochs), "avail": own,
            "starts_s": np.array([ref_rows[e]["start_s"] for e in epochs])}
    if all(np.array_equal(d["avail"], avail) for d in recordings.values()):  # one montage: the global mask
        for d in recordings.values():
            del d["avail"]
    return {"channels": channels, "predictors": predictors, "avail": avail, "recordings": recordings,
            "dropped": dropped}


def fitted_subjects(run_dir) -> dict | None:
    """What the model behind a run dir was fitted on, from its ``meta.json``: ``{"input": corpus path or
    None, "subjects": set of subject ids}``; None for a run that records no training split (a pretrained
    stager's, as ``psgvlm reference`` writes: fitted elsewhere, out-of-sample on any corpus here).

    A predict-only run (``predict_only`` + ``source_run``) answers for its source run; a run dir whose
    meta names a training split but whose source run cannot be read is reported as unknown (ValueError).
    """
    from psgvlm.provenance import read_json

    run_dir = Path(run_dir)
    run_dir = run_dir.parent if run_dir.is_file() else run_dir
    path = next((p / "meta.json" for p in (run_dir, run_dir.parent) if (p / "meta.json").is_file()), None)
    if path is None:
        return None
    meta = read_json(path)
    if meta.get("predict_only") and meta.get("source_run"):
        if not (Path(meta["source_run"]) / "meta.json").is_file():
            raise ValueError(f"{path}: predictions of run {meta['source_run']!r}, whose meta.json is missing, so "
                             "whether they are out-of-sample cannot be checked")
        return fitted_subjects(meta["source_run"])
    ds = meta.get("dataset") or meta.get("dataset_meta") or {}
    split = ds.get("split") or meta.get("split") or {}
    if not isinstance(split, dict) or not split.get("train"):
        return None
    corpus = ds.get("input") or (ds.get("settings") or {}).get("input")
    return {"input": None if corpus is None else str(corpus), "subjects": {str(s) for s in split["train"]}}


def in_sample_streams(sources: dict, keys) -> list[str]:
    """The streams of ``sources`` (as :func:`load_streams` takes them) that hold a model's predictions on
    its own training subjects for any recording of ``keys`` ((dataset, subject, recording) tuples):
    one line per offending run dir, naming the subjects. NAP may train only on out-of-sample
    (cross-fitted) hypnodensities; the caller refuses these.
    """
    from psgvlm.predictions import read_predictions
    from psgvlm.provenance import read_json

    keys = {(str(ds), str(rec)): str(subj) for ds, subj, rec in keys}
    found = []
    for pred, srcs in sources.items():
        for src in [srcs] if isinstance(srcs, str | Path) else srcs:
            fitted = fitted_subjects(src)
            if fitted is None:
                continue
            src = Path(src)
            meta = src.parent if src.is_file() else src
            here = (read_json(meta / "meta.json").get("dataset") or {}).get("input") \
                if (meta / "meta.json").is_file() else None
            if fitted["input"] and here and str(here) != fitted["input"]:
                continue  # a model applied to another corpus than the one it was fitted on
            files = [src] if src.is_file() else [f for _, f in _run_files(src)]
            hit = sorted({keys[k] for f in files for r in read_predictions(f)
                          if (k := (str(r["dataset"]), str(r["recording"]))) in keys
                          and keys[k] in fitted["subjects"]})
            if hit:
                found.append(f"{pred}={src}: predictions on its own training subjects {hit[:5]}"
                             + (" ..." if len(hit) > 5 else ""))
    return found


def _compact(d: dict, avail) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(channel rows, predictor columns, mask) of the streams a recording has (its own ``avail`` if any)."""
    own = np.asarray(d.get("avail", avail), bool)
    ch, pr = np.flatnonzero(own.any(1)), np.flatnonzero(own.any(0))
    return ch, pr, own[np.ix_(ch, pr)]


def nap_batch(data: list[dict], avail: np.ndarray, rng: np.random.Generator, *, batch_size: int,
              min_len: int, max_len: int, adaptive: bool = True):
    """A dimension-adaptive batch: random length, random channel/predictor subsets (same for the batch).

    Returns (p (B, C', T', P', 5) tensor, avail (C', P') tensor, labels (B, T') long tensor).

    A dict of ``data`` may carry its own ``avail`` (C_i, P) (recordings with different montages, e.g.
    one EEG channel here and three there): rows and columns where it has no stream are left out, and a
    batch draws its windows from recordings whose remaining masks are the same (those of one
    recording picked at random), so one C3 night and one Cz night mix. The sequence length is drawn
    up to the longest such recording and windows come from the recordings at least that long.
    """
    if any("avail" in d for d in data) and not all("avail" in d for d in data):
        raise ValueError("either every NAP training recording carries its own 'avail' mask or none does")
    compact = [_compact(d, avail) for d in data]
    _, _, mask = compact[int(rng.integers(0, len(data)))]
    group = [i for i, (_, _, m) in enumerate(compact) if m.shape == mask.shape and np.array_equal(m, mask)]
    longest = max(len(data[i]["labels"]) for i in group)
    if adaptive:
        ch, pr = sample_subgrid(mask, rng)
        t = int(rng.integers(min(min_len, longest), min(max_len, longest) + 1))
    else:
        ch, pr = np.arange(mask.shape[0]), np.arange(mask.shape[1])
        t = min(max_len, longest)
    group = [i for i in group if len(data[i]["labels"]) >= t]
    ps, ys = [], []
    for i in rng.choice(group, size=batch_size):
        d, (rows, cols, _) = data[i], compact[i]
        s = int(rng.integers(0, len(d["labels"]) - t + 1))
        ps.append(d["probs"][np.ix_(rows[ch], np.arange(s, s + t), cols[pr])])
        ys.append(d["labels"][s:s + t])
    return (torch.from_numpy(np.stack(ps)), torch.from_numpy(mask[np.ix_(ch, pr)]),
            torch.from_numpy(np.stack(ys).astype(np.int64)))


def load(run_dir) -> NAP:
    """The model of a ``recipes/nap.py`` run dir."""
    from psgvlm.baselines.common import load_model

    return load_model(run_dir, lambda cfg: NAP(config=NAPConfig(**cfg)), what="a NAP run").eval()


def train_nap(data: list[dict], avail: np.ndarray, *, config: NAPConfig, steps: int = 400, lr: float = 3e-3,
              batch_size: int = 16, min_len: int = 10, max_len: int = 60, adaptive: bool = True,
              seed: int = 0, class_weight=None, desc: str = "NAP",
              init: NAP | None = None, run=None, evaluate=None, eval_every: int = 0) -> tuple[NAP, list[float]]:
    """Train NAP on ``data`` (dicts with ``probs`` (C, T, P, 5) and ``labels`` (T,)) with dimension-adaptive batches.

    ``init``: continue from this model (fine-tuning a pre-trained NAP; a copy is trained, ``config``
    must match its config). Dicts may carry their own ``avail`` (see ``nap_batch``). ``run``,
    ``evaluate(model)``, ``eval_every``: a recipe's logging, validation and checkpoints (see
    :func:`psgvlm.baselines.common.train_loop`).
    """
    import copy

    from psgvlm.baselines.common import train_loop
    from psgvlm.stages import UNSCORED

    if not data:
        raise ValueError("NAP needs at least one training recording")
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    if init is not None and asdict(init.config) != asdict(config):
        raise ValueError(f"init model config {asdict(init.config)} differs from config {asdict(config)}")
    model = NAP(config=config) if init is None else copy.deepcopy(init)

    def step(_):
        p, av, y = nap_batch(data, avail, rng, batch_size=batch_size, min_len=min_len, max_len=max_len,
                             adaptive=adaptive)
        logits = model(grid_to_streams(p, av))
        return F.cross_entropy(logits.reshape(-1, N_STAGES), y.reshape(-1), weight=class_weight,
                               ignore_index=UNSCORED)

    model.train()
    losses = train_loop(model, step, max_steps=steps, learning_rate=lr, weight_decay=1e-4, desc=desc, run=run,
                        evaluate=None if evaluate is None else lambda: evaluate(model), eval_every=eval_every,
                        batch_size=batch_size, rngs=[rng])
    return model.eval(), losses


@torch.no_grad()
def predict_nap(model: NAP, probs: np.ndarray, avail: np.ndarray, channels=None, predictors=None,
                window: int | None = None) -> np.ndarray:
    """NAP hypnodensity (T, 5) of one recording ``probs`` (C, T, P, 5) on a subset of channels/predictors.

    ``window``: score windows of this many epochs (stride window // 2, overlaps averaged) so test
    sequences stay within the lengths seen in training; None scores the whole sequence at once.
    """
    ch = np.arange(probs.shape[0]) if channels is None else np.asarray(channels)
    pr = np.arange(probs.shape[2]) if predictors is None else np.asarray(predictors)
    sub = avail[np.ix_(ch, pr)]
    ch, pr = ch[sub.any(1)], pr[sub.any(0)]
    if len(ch) == 0 or len(pr) == 0:
        raise ValueError("the chosen channels and predictors share no available stream")
    t = probs.shape[1]
    p = torch.from_numpy(np.ascontiguousarray(probs[np.ix_(ch, np.arange(t), pr)]))[None]
    av = torch.from_numpy(avail[np.ix_(ch, pr)])
    if window is None or t <= window:
        return torch.softmax(model(grid_to_streams(p, av)), -1)[0].numpy()
    from psgvlm.baselines.signal_data import sequence_starts

    acc, cnt = np.zeros((t, N_STAGES)), np.zeros(t)
    for s in sequence_starts(t, window, max(1, window // 2)):
        acc[s:s + window] += torch.softmax(model(grid_to_streams(p[:, :, s:s + window], av)), -1)[0].numpy()
        cnt[s:s + window] += 1
    return acc / cnt[:, None]
