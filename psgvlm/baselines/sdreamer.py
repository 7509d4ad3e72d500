"""sDREAMER: sequence-level mixture-of-modality-experts (MoME) transformer with self-distillation.

Mechanisms (paper section IV), each switchable:

- Patch tokens per modality: each 30-s EEG and EMG epoch is cut into non-overlapping patches of
  ``patch_s`` seconds, linearly embedded, plus learned positional and modality embeddings and a [CLS].
- MoME layer: pre-norm multi-head self-attention SHARED by the EEG, EMG and mixed pathways, then a
  feed-forward expert per pathway.
- Epoch-level MoME encoder over the patches of one epoch (EEG pathway on EEG patches, EMG pathway on
  EMG patches; the mixed pathway at epoch level is off by default as in Sequence sDREAMER,
  ``epoch_mix``), then a sequence-level MoME encoder over K=16 consecutive epochs: EEG and EMG
  pathways on each modality's epoch tokens and the mixed pathway on both concatenated.
- Heads per pathway. Loss = CE(mixed) [+ CE(EEG) + CE(EMG) if ``unimodal_ce``] + ``distill_weight`` *
  (T_eeg^2 KL(mix/T_eeg || eeg/T_eeg) + T_emg^2 KL(mix/T_emg || emg/T_emg)), teacher detached,
  T_eeg = 1.0, T_emg = 3.0. With ``distill_weight=0`` (and no unimodal CE) the unimodal heads get no
  training signal: single-channel inference collapses, which is the paper's ablation.
- Single-channel inference: ``forward({"EEG": x})`` or ``forward({"EMG": x})`` runs only that pathway.
- A recording without EMG trains the EEG pathway alone with CE (``forward_train`` returns the pathways
  the input allows; ``forward`` the mixed one, or the only one). Trained on one modality only, this is
  the paper's single-channel-trained comparator (Table II) to the single-channel inference of the
  multi-channel model.
- ``variant="epoch"``: Epoch sDREAMER (Table I), the epoch-level MoME encoder alone, no sequence
  encoder: each epoch is classified from its own [CLS] (the mixed pathway runs at epoch level over both
  modalities' patches), with the same heads and self-distillation; windows of any length.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from psgvlm.stages import EPOCH_S, N_STAGES, UNSCORED

MODALITIES = ("EEG", "EMG")  # input names of ``forward``
PATHWAYS = ("eeg", "emg", "mix")  # experts and heads: one per modality and the mixed one
VARIANTS = ("sequence", "epoch")  # Sequence sDREAMER (the paper's model) | Epoch sDREAMER (no sequence encoder)


@dataclass
class SDreamerConfig:
    sfreq: float = 128.0  # Hz of EEG and EMG input
    epoch_s: float = EPOCH_S  # seconds per epoch
    patch_s: float = 0.5  # seconds per patch token (64 samples at 128 Hz)
    d_model: int = 128  # token width
    n_heads: int = 8  # attention heads (shared across pathways)
    epoch_layers: int = 2  # MoME layers of the epoch-level encoder
    seq_layers: int = 2  # MoME layers of the sequence-level encoder
    ffn_mult: int = 4  # expert FFN width / d_model
    dropout: float = 0.1  # attention, FFN and residual dropout
    seq_len: int = 16  # K consecutive epochs
    epoch_mix: bool = False  # mixed pathway at epoch level too (the paper disables it for Sequence sDREAMER)
    distill_weight: float = 1.0  # 0 = ablation without self-distillation
    t_eeg: float = 1.0  # distillation temperature, EEG student
    t_emg: float = 3.0  # distillation temperature, EMG student
    unimodal_ce: bool = False  # also supervise the unimodal heads with labels
    variant: str = "sequence"  # sequence (epoch + sequence encoders over K epochs) | epoch (Epoch sDREAMER: no sequence encoder)

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"variant {self.variant!r} not in {VARIANTS}")

    @property
    def patch_len(self) -> int:
        return int(round(self.patch_s * self.sfreq))

    @property
    def n_patches(self) -> int:
        n = self.epoch_s * self.sfreq / self.patch_len
        if abs(n - round(n)) > 1e-6:
            raise ValueError(f"epoch of {self.epoch_s} s at {self.sfreq} Hz is not a whole number of "
                             f"{self.patch_s} s patches")
        return int(round(n))


SIZES = {
    "tiny": dict(d_model=32, n_heads=4, epoch_layers=1, seq_layers=1, patch_s=1.0),
    "paper": dict(d_model=128, n_heads=8, epoch_layers=2, seq_layers=2, patch_s=0.5),
}


class MoMELayer(nn.Module):
    """Pre-norm block: shared multi-head self-attention, then the pathway's own FFN expert."""

    def __init__(self, *, d_model: int, n_heads: int, ffn_mult: int, dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.ModuleDict({p: nn.LayerNorm(d_model) for p in PATHWAYS})
        self.experts = nn.ModuleDict({p: nn.Sequential(
            nn.Linear(d_model, ffn_mult * d_model), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(ffn_mult * d_model, d_model)) for p in PATHWAYS})
        self.drop = nn.Dropout(dropout)

    def forward(self, x, pathway: str):
        h = self.norm1(x)
        x = x + self.drop(self.attn(h, h, h, need_weights=False)[0])
        return x + self.drop(self.experts[pathway](self.norm2[pathway](x)))


class MoMEEncoder(nn.Module):
    def __init__(self, *, n_layers: int, d_model: int, n_heads: int, ffn_mult: int, dropout: float):
        super().__init__()
        self.layers = nn.ModuleList(MoMELayer(d_model=d_model, n_heads=n_heads, ffn_mult=ffn_mult, dropout=dropout)
                                    for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x, pathway: str):
        for layer in self.layers:
            x = layer(x, pathway)
        return self.norm(x)


class SDreamer(nn.Module):
    """Sequence sDREAMER over K consecutive epochs of EEG and/or EMG (Epoch sDREAMER: ``variant="epoch"``).

    ``forward({"EEG": (B, K, n_times), "EMG": (B, K, n_times)})`` -> logits (B, K, 5) of the mixed
    pathway; either modality may be omitted (single-channel inference through its own pathway).
    ``forward_train`` gives every pathway's logits for the self-distillation loss.
    """

    def __init__(self, *, config: SDreamerConfig):
        super().__init__()
        self.config = c = config
        d = c.d_model
        self.patch_embed = nn.ModuleDict({m: nn.Linear(c.patch_len, d) for m in ("eeg", "emg")})
        self.epoch_pos = nn.Parameter(0.02 * torch.randn(c.n_patches + 1, d))
        self.epoch_cls = nn.Parameter(0.02 * torch.randn(d))
        self.modality_emb = nn.ParameterDict({m: nn.Parameter(0.02 * torch.randn(d)) for m in ("eeg", "emg")})
        block = dict(d_model=d, n_heads=c.n_heads, ffn_mult=c.ffn_mult, dropout=c.dropout)
        self.epoch_encoder = MoMEEncoder(n_layers=c.epoch_layers, **block)
        if c.variant == "sequence":  # Epoch sDREAMER has no sequence level
            self.seq_pos = nn.Parameter(0.02 * torch.randn(c.seq_len, d))
            self.seq_encoder = MoMEEncoder(n_layers=c.seq_layers, **block)
        self.heads = nn.ModuleDict({p: nn.Linear(d, N_STAGES) for p in PATHWAYS})

    def _patches(self, x, m):
        b, k, n = x.shape
        c = self.config
        if n != c.n_patches * c.patch_len:
            raise ValueError(f"{m.upper()} epochs have {n} samples, expected {c.n_patches * c.patch_len} "
                             f"({c.sfreq} Hz x {c.epoch_s} s)")
        tok = self.patch_embed[m](x.reshape(b * k, c.n_patches, c.patch_len))
        return tok + self.modality_emb[m] + self.epoch_pos[1:]

    def _cls(self, n):
        return (self.epoch_cls + self.epoch_pos[0]).expand(n, 1, -1)

    def _pathway_inputs(self, x: dict) -> dict[str, torch.Tensor]:
        """``{"eeg"/"emg": (B, K, n_times)}`` from the modality dict, validated."""
        c = self.config
        unknown = [m for m in x if m not in MODALITIES]
        if unknown:
            raise ValueError(f"sDREAMER reads modalities {MODALITIES}; got unknown {unknown}")
        if not x:
            raise ValueError("sDREAMER needs EEG and/or EMG epochs; got neither")
        for m, v in x.items():
            if v.ndim != 3:
                raise ValueError(f"{m} must be (batch, K, n_times), got shape {tuple(v.shape)}")
            if v.shape[1] != c.seq_len and c.variant == "sequence":
                raise ValueError(f"{m} sequence has {v.shape[1]} epochs; the model needs K={c.seq_len}")
            if torch.isnan(v).any():
                raise ValueError(f"{m} input holds {int(torch.isnan(v).sum())} NaN values")
        shapes = {tuple(v.shape[:2]) for v in x.values()}
        if len(shapes) > 1:
            raise ValueError(f"EEG and EMG must have the same (batch, K); got {sorted(shapes)}")
        return {m.lower(): v for m, v in x.items()}

    def forward_train(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Logits (B, K, 5) of every pathway the input allows, for :meth:`loss`.

        Parameters
        ----------
        x : dict
            ``"EEG"`` and/or ``"EMG"`` -> (batch, K, n_times) float, ``n_times = epoch_s * sfreq``.

        Returns
        -------
        dict
            ``"eeg"`` / ``"emg"`` (the unimodal students) for each modality given, and ``"mix"`` (the
            teacher) when both are.
        """
        c = self.config
        given = self._pathway_inputs(x)
        b, k = next(iter(given.values())).shape[:2]
        patches = {m: self._patches(v, m) for m, v in given.items()}
        epoch_tok = {}
        for m, p in patches.items():  # epoch level: each modality through its own pathway
            epoch_tok[m] = self.epoch_encoder(torch.cat([self._cls(p.shape[0]), p], 1), m)[:, 0]
        if (c.epoch_mix or c.variant == "epoch") and len(given) == 2:
            both = torch.cat([self._cls(b * k), patches["eeg"], patches["emg"]], 1)
            epoch_tok["mix"] = self.epoch_encoder(both, "mix")[:, 0]
        if c.variant == "epoch":  # Epoch sDREAMER: each epoch from its own [CLS]
            return {m: self.heads[m](t).reshape(b, k, N_STAGES) for m, t in epoch_tok.items()}
        out = {}
        seq = {m: t.reshape(b, c.seq_len, -1) + self.seq_pos + self.modality_emb.get(m, 0)
               for m, t in epoch_tok.items() if m in ("eeg", "emg")}
        for m, s in seq.items():
            out[m] = self.heads[m](self.seq_encoder(s, m))
        if len(given) == 2:
            if c.epoch_mix:
                mixed = epoch_tok["mix"].reshape(b, c.seq_len, -1) + self.seq_pos
                h = self.seq_encoder(torch.cat([mixed, seq["eeg"], seq["emg"]], 1), "mix")[:, : c.seq_len]
            else:
                h = self.seq_encoder(torch.cat([seq["eeg"], seq["emg"]], 1), "mix")
                h = (h[:, : c.seq_len] + h[:, c.seq_len:]) / 2
            out["mix"] = self.heads["mix"](h)
        return out

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits over W, N1, N2, N3, REM per epoch.

        Parameters
        ----------
        x : dict
            ``"EEG"`` and/or ``"EMG"`` -> (batch, K, n_times) float at ``config.sfreq`` Hz,
            ``K = config.seq_len``, ``n_times = epoch_s * sfreq`` (3840 at 128 Hz).

        Returns
        -------
        torch.Tensor, shape (batch, K, 5)
            The mixed pathway when both modalities are given, else the given modality's pathway.
        """
        out = self.forward_train(x)
        return out["mix"] if "mix" in out else next(iter(out.values()))

    def loss(self, out: dict, labels, class_weight=None):
        """CE on the mixed pathway (or the only one present) + self-distillation to the unimodal ones.

        ``out`` is :meth:`forward_train`'s dict; ``labels`` (B, K) int with UNSCORED (-1) ignored; ``class_weight`` (5,) optional CE weights.
        Returns (loss, parts dict of floats).
        """
        c = self.config
        y = labels.reshape(-1)
        keep = y != UNSCORED
        parts = {}

        def ce(logits):
            if not keep.any():
                return logits.sum() * 0
            return F.cross_entropy(logits.reshape(-1, N_STAGES)[keep], y[keep], weight=class_weight)

        if "mix" not in out:  # a single modality: plain supervised training of that pathway
            (m,) = out
            parts[f"ce_{m}"] = ce(out[m])
        else:
            parts["ce_mix"] = ce(out["mix"])
            if c.unimodal_ce:
                parts["ce_eeg"], parts["ce_emg"] = ce(out["eeg"]), ce(out["emg"])
            if c.distill_weight > 0:
                teacher = out["mix"].detach().reshape(-1, N_STAGES)[keep]
                for m, t in (("eeg", c.t_eeg), ("emg", c.t_emg)):
                    student = out[m].reshape(-1, N_STAGES)[keep]
                    kl = F.kl_div(F.log_softmax(student / t, -1), F.log_softmax(teacher / t, -1),
                                  log_target=True, reduction="batchmean") * t * t
                    parts[f"kd_{m}"] = c.distill_weight * kl
        total = sum(parts.values())
        return total, {k: float(v.detach()) for k, v in parts.items()}


def load(run_dir) -> SDreamer:
    """The model of a ``recipes/sdreamer.py`` run dir."""
    from psgvlm.baselines.common import load_model

    return load_model(run_dir, lambda cfg: SDreamer(config=SDreamerConfig(**cfg)), what="an sDREAMER run").eval()
