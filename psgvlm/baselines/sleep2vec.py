"""sleep2vec: per-modality MLP tokenizers, a RoFormer encoder, (DASH-)InfoNCE pre-training, LoRA fine-tuning.

Mechanisms (paper section 3 and appendix A.3), each switchable for ablation:

- One 30-s epoch of one modality is one token. ``MLPTokenizer``: Linear(n_times, 2D) -> SiLU ->
  Dropout(0.1) -> Linear(2D, D), plus a residual Linear(n_times, D), then LayerNorm. Each modality keeps
  its own tokenizer at its own rate (128 Hz high-rate, 4 Hz low-rate).
- A modality-agnostic RoFormer (rotary positions, ``transformers.RoFormerModel``) over the epochs of one
  modality with a learnable [CLS] token prepended.
- Pre-training: one modality pair (m_a, m_b) per batch; each token replaced with probability 0.15 by a
  learnable modality-specific mask token (``mask_prob``); hidden states projected by a shared 3-layer MLP
  to a 128-d alignment space; per time step InfoNCE (tau 0.2) or DASH-InfoNCE (``loss``).
- DASH-InfoNCE (eq. 3-6): negatives weighted by omega_ij = alpha_ij / sum_k alpha_ik with
  alpha_ij = exp(-|a_i - a_j| / 20) * s_sex * s_site + eps * h_ij (sex 1.0/0.8, site 1.3/0.8,
  eps 1e-6; h_ij = same subject-night and j != i), and a margin 0.1 subtracted from the logits of
  same-night pseudo-negatives. **Unknown metadata**: when either age is unknown the age kernel is 1
  (no age information, no down-weighting); when either sex is unknown the sex factor is 1.0 (= the
  "same" factor, i.e. no penalty); when either site is unknown the site factor is 1.0 (neutral between
  1.3 and 0.8). With all metadata unknown omega is uniform (1/B up to eps) and DASH reduces to InfoNCE
  plus the constant log B and the same-night margin.
- Fine-tuning (``Sleep2vecStager``): masking and projection head removed; LoRA (r 8, alpha 16,
  dropout 0.05, peft) on the q/k/v projections of the frozen encoder; a 2-layer MLP head per time
  step; gated scalar fusion of modalities (softmax over learnable scalars of the modalities present),
  so any subset of the trained modalities works at inference. The paper fine-tunes one model per channel
  set (Table 1 rows: ``CHANNEL_SETS``); ``recipes/sleep2vec_finetune.py --modalities ...`` is one such run.
- Whole nights (appendix A.3: 1-hour segments in pre-training, whole nights in fine-tuning): positions
  are rotary, a fixed sinusoidal function of the position with nothing learned, so
  :meth:`Sleep2vec.extend_positions` *extends* the table to the fine-tuning length (the pre-trained
  rows are reproduced exactly; later positions get the rotation angles the formula gives them, which
  the fine-tune then adapts to; no interpolation). Nights shorter than the window are padded at the
  end and masked out of attention (``attention_mask``) and of the loss, never dropped.
- Parameter counts (Table 5: 63.5 / 133.7 / 238.2 M). Two things set them: the RoFormer feed-forward
  width and the number of modality tokenizers (each a few million parameters at 128 Hz). The paper's
  counts match a feed-forward width of 3072 at every size (RoFormer's default ``intermediate_size``, not
  4 x D) with nine tokenizers (EEG, EOG, EMG, ECG at 128 Hz; airflow, ABD/Thor belt, SpO2, IBI, RESP at
  4 Hz; ``PAPER_MODALITIES_HZ``) plus the projection head: 63.48 / 133.78 / 238.18 M.
  The earlier 4 x D width gave 52.9 / 129.4 / 264.3 M with our six modalities; with 3072 and our six
  (no airflow, belt or IBI streams) the sizes here count 61.34 / 129.40 / 230.76 M.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from psgvlm.baselines.signal_data import MODALITY_RATE_HZ
from psgvlm.stages import EPOCH_S, N_STAGES

LOSSES = ("dash", "infonce")
DASH_TERMS = ("age", "sex", "site", "night")  # DASH-InfoNCE's metadata terms (Table 7 ablates them)
# The paper's nine token streams and their rates (section 3.1), for its parameter counts; psgvlm's signal
# datasets carry six of them (MODALITY_RATE_HZ: no airflow, belt or IBI stream of their own).
PAPER_MODALITIES_HZ = {"EEG": 128.0, "EOG": 128.0, "EMG": 128.0, "ECG": 128.0, "AIRFLOW": 4.0, "BELT": 4.0,
                       "SPO2": 4.0, "IBI": 4.0, "RESP": 4.0}
# Table 1's inference channel sets as our modalities: one fine-tune per set (``--modalities``). The
# paper's cardiorespiratory rows ("IBI & RESP", "ECG & ABD") have no exact match here (no IBI derivation,
# one respiratory modality): "ECG+RESP" is the nearest set and is named as ours, not the paper's.
CHANNEL_SETS = {
    "EEG": ("EEG",),
    "EEG+EOG+EMG": ("EEG", "EOG", "EMG"),
    "ECG+RESP": ("ECG", "RESP"),
    "all": ("EEG", "EOG", "EMG", "ECG", "RESP", "SPO2"),
}


@dataclass
class Sleep2vecConfig:
    modalities: tuple[str, ...] = ("EEG", "EOG", "EMG")  # token streams the model knows
    hidden_size: int = 512  # D (paper: small 512, medium 768, large 1024)
    n_layers: int = 8  # RoFormer layers (paper: 8 / 12 / 16)
    n_heads: int = 16  # attention heads (paper: 16 at every size)
    intermediate_size: int = 3072  # FFN width (3072, RoFormer's default, at every paper size: see the module docstring)
    max_epochs: int = 1200  # longest sequence of epochs, [CLS] not counted (rotary table size - 1; extend_positions)
    epoch_s: float = EPOCH_S  # token length, seconds
    dropout: float = 0.1  # tokenizer and encoder dropout
    proj_dim: int = 128  # alignment space of the contrastive head
    mask_prob: float = 0.15  # per-token masking probability in pre-training (0 disables)
    temperature: float = 0.2  # tau
    loss: str = "dash"  # "dash" or "infonce"
    dash_terms: tuple[str, ...] = DASH_TERMS  # DASH terms kept (others neutral): age kernel, sex, site, same-night (eps + margin)
    age_bandwidth_y: float = 20.0  # Laplace kernel bandwidth, years
    sex_same: float = 1.0  # DASH factor when both sexes are known and equal
    sex_diff: float = 0.8  # ... known and different
    site_same: float = 1.3  # DASH factor when both sites are known and equal
    site_diff: float = 0.8  # ... known and different
    eps: float = 1e-6  # weight kept by same-night pseudo-negatives
    margin: float = 0.1  # gamma*m subtracted from same-night pseudo-negative logits
    sfreq: dict = field(default_factory=lambda: dict(MODALITY_RATE_HZ))  # modality -> Hz
    # What the MLP tokenizer sees: "waveform" = the raw 30-s samples (the paper); "log_spectrum" =
    # log(1 + |rfft|) of the epoch, a documented deviation: on small corpora a raw-waveform MLP
    # memorises phases (see the closing report) while the spectrum is phase-invariant.
    tokenizer_input: str = "waveform"

    def __post_init__(self):
        self.modalities = tuple(self.modalities)
        self.dash_terms = tuple(self.dash_terms)
        bad = [t for t in self.dash_terms if t not in DASH_TERMS]
        if bad:
            raise ValueError(f"dash_terms {bad} not allowed; allowed: {list(DASH_TERMS)}")
        if self.tokenizer_input not in ("waveform", "log_spectrum"):
            raise ValueError(f"tokenizer_input {self.tokenizer_input!r} not in ('waveform', 'log_spectrum')")
        if self.loss not in LOSSES:
            raise ValueError(f"loss {self.loss!r} not in {LOSSES}")
        if self.hidden_size % self.n_heads:
            raise ValueError(f"hidden_size {self.hidden_size} not divisible by n_heads {self.n_heads}")
        unknown = [m for m in self.modalities if m not in self.sfreq]
        if unknown:
            raise ValueError(f"modalities {unknown} have no rate; known: {sorted(self.sfreq)}")

    def n_times(self, modality: str) -> int:
        return int(round(self.epoch_s * self.sfreq[modality]))

    def n_features(self, modality: str) -> int:
        """Tokenizer input size: samples per epoch, or rfft bins for ``log_spectrum``."""
        n = self.n_times(modality)
        return n if self.tokenizer_input == "waveform" else n // 2 + 1


SIZES = {  # paper Table 5 (FFN 3072 at every size: its parameter counts), plus a CPU-sized one
    "tiny": dict(hidden_size=32, n_layers=2, n_heads=4, intermediate_size=128),
    "small": dict(hidden_size=512, n_layers=8, n_heads=16, intermediate_size=3072),
    "medium": dict(hidden_size=768, n_layers=12, n_heads=16, intermediate_size=3072),
    "large": dict(hidden_size=1024, n_layers=16, n_heads=16, intermediate_size=3072),
}


class MLPTokenizer(nn.Module):
    """(B, L, n_times) -> (B, L, D): two linear layers with SiLU and dropout, a residual linear, LayerNorm."""

    def __init__(self, *, n_times: int, hidden_size: int, dropout: float = 0.1):
        super().__init__()
        self.fc1 = nn.Linear(n_times, 2 * hidden_size)
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(2 * hidden_size, hidden_size)
        self.residual = nn.Linear(n_times, hidden_size)
        self.norm = nn.LayerNorm(hidden_size)

    def forward(self, x):
        return self.norm(self.fc2(self.drop(F.silu(self.fc1(x)))) + self.residual(x))


def _check_input(x: dict, known) -> None:
    if not x:
        raise ValueError(f"no modality given; the model knows {list(known)}")
    unknown = [m for m in x if m not in known]
    if unknown:
        raise ValueError(f"modalities {unknown} are not known to the model; known: {list(known)}")
    for m, v in x.items():
        if torch.isnan(v).any():
            raise ValueError(f"modality {m!r} holds {int(torch.isnan(v).sum())} NaN values")


class Sleep2vec(nn.Module):
    """The pre-training model: tokenizers, mask tokens, [CLS], RoFormer encoder, projection head."""

    def __init__(self, *, config: Sleep2vecConfig):
        super().__init__()
        from transformers import RoFormerConfig, RoFormerModel

        self.config = c = config
        self.tokenizers = nn.ModuleDict({m: MLPTokenizer(n_times=c.n_features(m), hidden_size=c.hidden_size,
                                                         dropout=c.dropout) for m in c.modalities})
        self.mask_tokens = nn.ParameterDict({m: nn.Parameter(0.02 * torch.randn(c.hidden_size))
                                             for m in c.modalities})
        self.cls = nn.Parameter(0.02 * torch.randn(c.hidden_size))
        self.encoder = RoFormerModel(RoFormerConfig(
            vocab_size=2, embedding_size=c.hidden_size, hidden_size=c.hidden_size,
            num_hidden_layers=c.n_layers, num_attention_heads=c.n_heads,
            intermediate_size=c.intermediate_size, max_position_embeddings=c.max_epochs + 1,
            hidden_dropout_prob=c.dropout, attention_probs_dropout_prob=c.dropout, type_vocab_size=1))
        d = c.hidden_size
        self.proj = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, d), nn.GELU(),
                                  nn.Linear(d, c.proj_dim))

    def encode(self, x, modality: str, mask=None, attention_mask=None):
        """Hidden states (B, L, D) of the epochs (the [CLS] output dropped) of one modality.

        ``x`` is (B, L, n_times) with L <= ``config.max_epochs``; ``mask`` (B, L) bool marks tokens replaced
        by the mask token; ``attention_mask`` (B, L), 1/True for real epochs and 0/False for padding at
        the end (padded epochs are attended by no one; their outputs are meaningless).
        """
        if modality not in self.tokenizers:
            raise ValueError(f"modality {modality!r} not known; known: {list(self.tokenizers)}")
        if x.shape[-1] != self.config.n_times(modality):
            raise ValueError(f"{modality} epochs have {x.shape[-1]} samples, expected "
                             f"{self.config.n_times(modality)} ({self.config.sfreq[modality]} Hz x "
                             f"{self.config.epoch_s} s)")
        if x.shape[1] > self.config.max_epochs:
            raise ValueError(f"sequence of {x.shape[1]} epochs exceeds max_epochs {self.config.max_epochs} "
                             f"(extend_positions lengthens the rotary table)")
        if attention_mask is not None and tuple(attention_mask.shape) != tuple(x.shape[:2]):
            raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)}, expected {tuple(x.shape[:2])}")
        if self.config.tokenizer_input == "log_spectrum":
            x = torch.log1p(torch.fft.rfft(x, dim=-1).abs())
        tok = self.tokenizers[modality](x)
        if mask is not None:
            tok = torch.where(mask[..., None], self.mask_tokens[modality].to(tok.dtype), tok)
        cls = self.cls.expand(tok.shape[0], 1, -1)
        am = None
        if attention_mask is not None:  # [CLS] is always attended
            am = torch.cat([torch.ones_like(attention_mask[:, :1]), attention_mask], 1).long()
        h = self.encoder(inputs_embeds=torch.cat([cls, tok], 1), attention_mask=am).last_hidden_state
        return h[:, 1:]

    def extend_positions(self, n_epochs: int) -> None:
        """Let the encoder read sequences of up to ``n_epochs`` epochs (whole nights when fine-tuning).

        The rotary table is sinusoidal (nothing learned): it is rebuilt with more rows, the existing
        rows unchanged, and ``config.max_epochs`` becomes ``n_epochs``. A no-op when it is long enough.
        """
        from transformers.models.roformer.modeling_roformer import RoFormerSinusoidalPositionalEmbedding

        if n_epochs <= self.config.max_epochs:
            return
        old = self.encoder.encoder.embed_positions
        new = RoFormerSinusoidalPositionalEmbedding(n_epochs + 1, old.weight.shape[1]).to(old.weight.device)
        with torch.no_grad():
            new.weight.copy_(new.create_weight())
        self.encoder.encoder.embed_positions = new
        self.encoder.config.max_position_embeddings = n_epochs + 1
        self.config.max_epochs = n_epochs

    def embed(self, x: dict[str, torch.Tensor], *, generator=None) -> dict[str, torch.Tensor]:
        """Unit-norm contrastive embeddings of each modality: the pre-training output.

        Parameters
        ----------
        x : dict
            Modality -> (batch, n_epochs, n_times) float at its rate (``config.sfreq[modality]`` Hz,
            ``n_times = epoch_s * sfreq``).
        generator : torch.Generator, optional
            Draws the token masks (``mask_prob``, training mode only; each modality independently).

        Returns
        -------
        dict
            Modality -> (batch, n_epochs, proj_dim) float, L2-normalised over the last axis.
        """
        c = self.config
        _check_input(x, self.tokenizers)
        masks = dict.fromkeys(x)
        if self.training and c.mask_prob > 0:  # independent time-step masking of each view
            masks = {m: torch.rand(v.shape[:2], generator=generator) < c.mask_prob for m, v in x.items()}
        return {m: F.normalize(self.proj(self.encode(v, m, masks[m])), dim=-1) for m, v in x.items()}

    def pretrain_loss(self, x: dict[str, torch.Tensor], *, meta, generator=None) -> torch.Tensor:
        """Contrastive loss aligning the two modalities of ``x`` (see :meth:`embed` for shapes).

        ``x`` holds exactly two modalities, each (B, L, n_times) with the same B and L; ``meta``: dict
        of ``age`` (B,) float (NaN unknown), ``sex``/``site``/``night`` lists (None unknown).
        """
        c = self.config
        if len(x) != 2:
            raise ValueError(f"pre-training aligns a pair of modalities; got {list(x)}")
        za, zb = self.embed(x, generator=generator).values()
        sim = torch.einsum("itd,jtd->tij", za, zb)  # (L, B, B) cosine similarities s_ijt
        if c.loss == "infonce":
            return contrastive_loss(sim, temperature=c.temperature)
        omega, pseudo = dash_weights(meta["age"], meta["sex"], meta["site"], meta["night"], config=c)
        return contrastive_loss(sim, temperature=c.temperature, omega=torch.as_tensor(omega, dtype=sim.dtype),
                                pseudo=torch.as_tensor(pseudo), margin=c.margin)


def dash_weights(age, sex, site, night, *, config: Sleep2vecConfig):
    """DASH negative weights omega (B, B) (rows sum to 1) and the pseudo-negative mask h (B, B).

    Parameters
    ----------
    age : sequence of float, years; NaN or None = unknown (age kernel 1 against anyone).
    sex, site : sequences of str or None (None = unknown: factor 1.0).
    night : sequence of subject-night ids; h_ij = (night_i == night_j) and i != j.

    A term missing from ``config.dash_terms`` is neutral: no age kernel (1), sex or site factor 1, or
    (``night``) no pseudo-negatives (h all False: no eps weight, no margin).
    """
    c = config
    a = np.array([np.nan if v is None else float(v) for v in age])
    b = len(a)
    with np.errstate(invalid="ignore"):
        kern = np.exp(-np.abs(a[:, None] - a[None, :]) / c.age_bandwidth_y)
    kern = np.where(np.isnan(kern) | ("age" not in c.dash_terms), 1.0, kern)

    def factor(vals, same, diff):
        known = np.array([v is not None for v in vals])
        eq = np.array([[vals[i] == vals[j] for j in range(b)] for i in range(b)])
        f = np.where(eq, same, diff)
        return np.where(known[:, None] & known[None, :], f, 1.0)

    h = np.array([[night[i] == night[j] and i != j for j in range(b)] for i in range(b)])
    h &= "night" in c.dash_terms
    alpha = kern * (factor(list(sex), c.sex_same, c.sex_diff) if "sex" in c.dash_terms else 1.0)
    alpha = alpha * (factor(list(site), c.site_same, c.site_diff) if "site" in c.dash_terms else 1.0)
    alpha = alpha + c.eps * h
    return alpha / alpha.sum(1, keepdims=True), h


def contrastive_loss(sim, *, temperature: float, omega=None, pseudo=None, margin: float = 0.0):
    """Per-time-step InfoNCE (omega None) or DASH-InfoNCE over sim (L, B, B), averaged over t and i.

    DASH: -s_ii/tau + log sum_j omega_ij exp((s_ij - margin h_ij)/tau). Both directions (a->b and
    b->a) are averaged; the DASH weights and pseudo-negative mask are symmetric.
    """
    b = sim.shape[-1]
    target = torch.arange(b)
    losses = []
    for s in (sim, sim.transpose(1, 2)):
        logits = s / temperature
        if omega is None:
            losses.append(F.cross_entropy(logits.reshape(-1, b), target.repeat(s.shape[0])))
            continue
        logits = logits - (margin / temperature) * pseudo.to(logits.dtype)
        denom = torch.logsumexp(logits + torch.log(omega.clamp_min(1e-30)), dim=-1)  # (L, B)
        pos = torch.diagonal(s, dim1=1, dim2=2) / temperature
        losses.append((denom - pos).mean())
    return sum(losses) / 2


@dataclass
class Sleep2vecStagerConfig:
    modalities: tuple[str, ...] | None = None  # pre-trained modalities to fine-tune on (None: all)
    lora_r: int = 8  # LoRA rank on the encoder's q/k/v projections
    lora_alpha: int = 16  # LoRA scaling numerator (scale = alpha / r)
    lora_dropout: float = 0.05  # dropout on the LoRA branch
    use_lora: bool = True  # False: the encoder stays frozen, only the head (and gates) train
    fusion: str = "gate"  # "gate" (softmax over learnable scalars) or "mean" over the modalities present
    train_tokenizers: bool = False  # also train the per-modality tokenizers

    def __post_init__(self):
        if self.modalities is not None:
            self.modalities = tuple(self.modalities)
        if self.fusion not in ("gate", "mean"):
            raise ValueError(f"fusion {self.fusion!r} not in ('gate', 'mean')")


class Sleep2vecStager(nn.Module):
    """Fine-tuning model: frozen pre-trained sleep2vec + LoRA on q/k/v, gated fusion, per-epoch MLP head.

    ``forward(x)`` takes ``{modality: (B, L, n_times)}`` for any non-empty subset of the trained
    modalities and returns logits (B, L, 5) over W, N1, N2, N3, REM.
    """

    def __init__(self, *, backbone: Sleep2vec, config: Sleep2vecStagerConfig | None = None):
        super().__init__()
        from peft import LoraConfig, get_peft_model

        sc = self.stager_config = config or Sleep2vecStagerConfig()
        self.config = backbone.config
        self.modalities = tuple(sc.modalities or backbone.config.modalities)
        missing = [m for m in self.modalities if m not in backbone.tokenizers]
        if missing:
            raise ValueError(f"modalities {missing} were not pre-trained; backbone has {list(backbone.tokenizers)}")
        self.fusion = sc.fusion
        for p in backbone.parameters():
            p.requires_grad_(False)
        self.backbone = backbone
        self.use_lora = sc.use_lora
        if sc.use_lora:
            backbone.encoder = get_peft_model(backbone.encoder, LoraConfig(
                r=sc.lora_r, lora_alpha=sc.lora_alpha, lora_dropout=sc.lora_dropout,
                target_modules=["query", "key", "value"]))
        if sc.train_tokenizers:
            for m in self.modalities:
                for p in backbone.tokenizers[m].parameters():
                    p.requires_grad_(True)
        d = self.config.hidden_size
        self.gate = nn.Parameter(torch.zeros(len(self.modalities)))  # gated scalar fusion
        self.head = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Dropout(self.config.dropout), nn.Linear(d, N_STAGES))

    def fusion_weights(self, present) -> dict[str, float]:
        idx = [self.modalities.index(m) for m in present]
        w = torch.softmax(self.gate[idx], 0)
        return {m: float(v.detach()) for m, v in zip(present, w)}

    def forward(self, x: dict[str, torch.Tensor], attention_mask=None) -> torch.Tensor:
        """Logits over W, N1, N2, N3, REM per epoch.

        Parameters
        ----------
        x : dict
            Modality (any non-empty subset of ``self.modalities``) -> (batch, n_epochs, n_times) float
            at the modality's rate, ``n_times = epoch_s * config.sfreq[modality]`` (3840 at 128 Hz,
            120 at 4 Hz); ``n_epochs <= config.max_epochs``.
        attention_mask : torch.Tensor, shape (batch, n_epochs), optional
            1/True for real epochs, 0/False for padding at the end of shorter nights (their logits are
            meaningless; give them the UNSCORED label). None: every epoch is real.

        Returns
        -------
        torch.Tensor, shape (batch, n_epochs, 5)
        """
        _check_input(x, self.modalities)
        present = [m for m in self.modalities if m in x]
        hs = torch.stack([self.backbone.encode(x[m], m, attention_mask=attention_mask) for m in present])  # (M, B, L, D)
        if self.fusion == "gate":
            w = torch.softmax(self.gate[[self.modalities.index(m) for m in present]], 0)
        else:
            w = torch.full((len(present),), 1.0 / len(present))
        return self.head(torch.einsum("m,mbld->bld", w, hs))


def config_dict(config: Sleep2vecConfig) -> dict:
    d = asdict(config)
    d["modalities"] = list(config.modalities)
    d["dash_terms"] = list(config.dash_terms)
    return d


def save_backbone(out_dir, model: Sleep2vec) -> None:
    """``model.pt`` (state dict) + ``model_config.json`` of a pre-trained backbone."""
    from psgvlm.baselines.common import save_model

    save_model(out_dir, model, config_dict(model.config))


def _backbone_config(cfg: dict) -> Sleep2vecConfig:
    """A saved backbone config; runs saved before ``intermediate_size`` stored ``intermediate_mult`` (x D)."""
    cfg = dict(cfg)
    if "intermediate_mult" in cfg:
        cfg["intermediate_size"] = cfg.pop("intermediate_mult") * cfg["hidden_size"]
    return Sleep2vecConfig(**cfg)


def load_backbone(run_dir) -> Sleep2vec:
    """The pre-trained backbone of a ``sleep2vec_pretrain`` run dir."""
    from psgvlm.baselines.common import load_model

    return load_model(run_dir, lambda cfg: Sleep2vec(config=_backbone_config(cfg)),
                      what="a sleep2vec pre-training run")


def load_stager(run_dir) -> Sleep2vecStager:
    """The fine-tuned stager of a ``sleep2vec_finetune`` run dir (backbone + LoRA + head + gates)."""
    from psgvlm.baselines.common import load_model

    def build(cfg):
        return Sleep2vecStager(backbone=Sleep2vec(config=_backbone_config(cfg["backbone"])),
                               config=Sleep2vecStagerConfig(**cfg["stager"]))

    return load_model(run_dir, build, what="a sleep2vec fine-tuning run").eval()
