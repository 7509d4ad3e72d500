"""Image classifiers trained on the same rendered epochs and splits as the VLM (paper baselines).

ResNet, ConvNeXt, ViT and Swin come from transformers (``*ForImageClassification``), initialised from
a user-given checkpoint (local dir or hub id, head replaced by a 5-way one) or from scratch with a
named size preset; ``clip_linear`` is a CLIP vision encoder + linear head (the paper's "CLIP encoder
alone" ablation; encoder frozen unless ``train_encoder``). Runs are saved so ``psgvlm.vlm.predict`` and the
evals read them: ``model/`` + ``meta.json`` (kind ``psgvlm-image-classifier-run``, preprocessing).

Partial fine-tuning (the PSG-image paper's Table 3): ``trainable_layers=n`` leaves the last ``n``
stages (ResNet, ConvNeXt, Swin) or encoder blocks (ViT, CLIP) trainable with everything after them
(final norm, head) and freezes the rest; the paper's settings are ResNet 2 ("layers 3 & 4"), ConvNeXt
1, Swin 1 ("last stage") and ViT 3 ("final three encoder blocks"). ``PRETRAINED`` maps the hub ids the
paper configs name to the from-scratch preset of the same architecture, so a dry run builds them at
full size on the meta device without downloading anything. MaxViT and Vision Mamba (also in the
paper's Table 1) have no transformers implementation and are not provided.

Preprocessing is done here with PIL + numpy (resize, scale to [0, 1], normalise) rather than an
image processor class, so it needs no torchvision and is recorded exactly in ``meta.json``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from psgvlm.stages import N_STAGES, STAGES

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
RUN_KIND = "psgvlm-image-classifier-run"  # meta.json kind of a run saved by save_classifier_run


@dataclass
class Preprocess:
    size: int = 224  # square input side, pixels
    mean: tuple = IMAGENET_MEAN  # per-channel mean after scaling to [0, 1]
    std: tuple = IMAGENET_STD  # per-channel standard deviation after scaling to [0, 1]

    def __call__(self, images) -> torch.Tensor:  # noqa: F821
        """PIL images -> float tensor (n, 3, size, size)."""
        import torch
        from PIL import Image

        arr = np.stack([np.asarray(im.convert("RGB").resize((self.size, self.size), Image.BICUBIC), np.float32)
                        for im in images]) / 255.0
        arr = (arr - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return torch.from_numpy(arr.transpose(0, 3, 1, 2).copy())


def _labels():
    return {"id2label": dict(enumerate(STAGES)), "label2id": {s: i for i, s in enumerate(STAGES)}}


def _hf_classifier(config_cls, model_cls, presets: dict):
    def build(*, checkpoint: str | None = None, size: str = "tiny", image_size: int = 224):
        if checkpoint:
            from psgvlm.vlm.model import resolve_model_source

            source, local_only = resolve_model_source(checkpoint)
            return model_cls.from_pretrained(source, num_labels=N_STAGES, ignore_mismatched_sizes=True,
                                             local_files_only=local_only, **_labels())
        if size not in presets:
            raise ValueError(f"size {size!r} not allowed; choose from {sorted(presets)}")
        kwargs = dict(presets[size], image_size=image_size)  # used by ViT/Swin, stored by the others
        return model_cls(config_cls(num_labels=N_STAGES, **_labels(), **kwargs))
    return build


def _resnet(**kw):
    from transformers import ResNetConfig, ResNetForImageClassification

    presets = {"tiny": {"embedding_size": 16, "hidden_sizes": [16, 32, 64, 128], "depths": [1, 1, 1, 1],
                        "layer_type": "basic"},
               "resnet50": {}, "resnet101": {"depths": [3, 4, 23, 3]}, "resnet152": {"depths": [3, 8, 36, 3]}}
    return _hf_classifier(ResNetConfig, ResNetForImageClassification, presets)(**kw)


def _convnext(**kw):
    from transformers import ConvNextConfig, ConvNextForImageClassification

    presets = {"tiny": {"hidden_sizes": [16, 32, 64, 128], "depths": [1, 1, 1, 1]},
               "convnext_tiny": {"hidden_sizes": [96, 192, 384, 768], "depths": [3, 3, 9, 3]},
               "convnext_base": {"hidden_sizes": [128, 256, 512, 1024], "depths": [3, 3, 27, 3]}}
    return _hf_classifier(ConvNextConfig, ConvNextForImageClassification, presets)(**kw)


def _vit(**kw):
    from transformers import ViTConfig, ViTForImageClassification

    presets = {"tiny": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                        "intermediate_size": 128, "patch_size": 16},
               "vit_base": {"patch_size": 16}}
    return _hf_classifier(ViTConfig, ViTForImageClassification, presets)(**kw)


def _swin(**kw):
    from transformers import SwinConfig, SwinForImageClassification

    presets = {"tiny": {"embed_dim": 24, "depths": [1, 1, 1], "num_heads": [1, 2, 4], "window_size": 7},
               "swin_tiny": {"embed_dim": 96, "depths": [2, 2, 6, 2], "num_heads": [3, 6, 12, 24], "window_size": 7},
               "swin_base": {"embed_dim": 128, "depths": [2, 2, 18, 2], "num_heads": [4, 8, 16, 32], "window_size": 7}}
    return _hf_classifier(SwinConfig, SwinForImageClassification, presets)(**kw)


def _clip_linear(*, checkpoint: str | None = None, size: str = "tiny", image_size: int = 336,
                 train_encoder: bool = False):
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModel

    class CLIPLinear(torch.nn.Module):
        """CLIP vision encoder -> pooled (CLS) feature -> linear head over the five stages."""

        def __init__(self, encoder):
            super().__init__()
            self.encoder = encoder
            self.head = torch.nn.Linear(encoder.config.hidden_size, N_STAGES)
            for p in self.encoder.parameters():
                p.requires_grad = train_encoder

        def forward(self, pixel_values, labels=None):
            logits = self.head(self.encoder(pixel_values=pixel_values).pooler_output)
            loss = torch.nn.functional.cross_entropy(logits, labels) if labels is not None else None
            return type("Out", (), {"logits": logits, "loss": loss})()

        def save_pretrained(self, out):
            from safetensors.torch import save_file

            out = Path(out)
            self.encoder.save_pretrained(out / "encoder")
            save_file(self.head.state_dict(), str(out / "head.safetensors"))

    if checkpoint:
        from psgvlm.vlm.model import resolve_model_source

        source, local_only = resolve_model_source(checkpoint)
        encoder = CLIPVisionModel.from_pretrained(source, local_files_only=local_only)
    else:
        presets = {"tiny": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                            "num_attention_heads": 4, "patch_size": 28},
                   "vit_l_14": {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24,
                                "num_attention_heads": 16, "patch_size": 14}}
        if size not in presets:
            raise ValueError(f"size {size!r} not allowed; choose from {sorted(presets)}")
        encoder = CLIPVisionModel(CLIPVisionConfig(image_size=image_size, **presets[size]))
    return CLIPLinear(encoder)


# Literal registry: name -> (builder, default preprocessing).
CLASSIFIERS = {
    "resnet": (_resnet, Preprocess(224, IMAGENET_MEAN, IMAGENET_STD)),
    "convnext": (_convnext, Preprocess(224, IMAGENET_MEAN, IMAGENET_STD)),
    "vit": (_vit, Preprocess(224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))),
    "swin": (_swin, Preprocess(224, IMAGENET_MEAN, IMAGENET_STD)),
    "clip_linear": (_clip_linear, Preprocess(336, CLIP_MEAN, CLIP_STD)),
}


# The paper's pretrained baselines (hub ids) -> (architecture, from-scratch preset of the same shape).
# Dry runs build the preset on the meta device instead of downloading; nothing else reads this.
PRETRAINED = {
    "microsoft/resnet-50": ("resnet", "resnet50"),
    "microsoft/resnet-101": ("resnet", "resnet101"),
    "microsoft/resnet-152": ("resnet", "resnet152"),
    "facebook/convnext-tiny-224": ("convnext", "convnext_tiny"),
    "facebook/convnext-base-224": ("convnext", "convnext_base"),
    "google/vit-base-patch16-224": ("vit", "vit_base"),
    "microsoft/swin-tiny-patch4-window7-224": ("swin", "swin_tiny"),
    "microsoft/swin-base-patch4-window7-224": ("swin", "swin_base"),
    "openai/clip-vit-large-patch14-336": ("clip_linear", "vit_l_14"),
}

# Literal registry: architecture -> (module path of its stages / encoder blocks, in order; module paths
# after them that always train with the head), as transformers 5 names them. Used by set_trainable_layers.
BLOCKS = {
    "resnet": ("resnet.encoder.stages", ("classifier",)),
    "convnext": ("convnext.encoder.stages", ("convnext.layernorm", "classifier")),
    "vit": ("vit.layers", ("vit.layernorm", "classifier")),
    "swin": ("swin.encoder.layers", ("swin.layernorm", "classifier")),
    "clip_linear": ("encoder.encoder.layers", ("encoder.post_layernorm", "head")),
}


def set_trainable_layers(model, arch: str, n: int) -> dict:
    """Partial fine-tuning: freeze ``model`` but its last ``n`` stages/blocks and the layers after them.

    Parameters
    ----------
    model : torch.nn.Module
        A model built by :func:`build_classifier` for ``arch``.
    n : int
        Stages (ResNet, ConvNeXt, Swin) or encoder blocks (ViT, CLIP) left trainable, counted from
        the last; the final norm and the head always train. 0: the head (and final norm) only.

    Returns
    -------
    dict: ``trainable`` and ``total`` parameter counts, ``blocks`` (trainable of how many).
    """
    if arch not in BLOCKS:
        raise ValueError(f"architecture {arch!r} not registered; choose from {sorted(BLOCKS)}")
    path, tail = BLOCKS[arch]
    blocks = model.get_submodule(path)
    if not 0 <= n <= len(blocks):
        raise ValueError(f"trainable_layers {n} not allowed for {arch}: it has {len(blocks)} "
                         f"{path.rsplit('.', 1)[-1]}; choose 0..{len(blocks)} (or -1: train everything)")
    model.requires_grad_(False)
    for module in [*list(blocks)[len(blocks) - n:], *(model.get_submodule(t) for t in tail)]:
        module.requires_grad_(True)
    return {"trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "total": sum(p.numel() for p in model.parameters()), "blocks": f"{n} of {len(blocks)}"}


def build_classifier(arch: str, *, checkpoint: str | None = None, size: str = "tiny",
                     image_size: int | None = None, train_encoder: bool = False, trainable_layers: int = -1):
    """``(model, Preprocess)`` for a registered architecture (a checkpoint dir/id or a size preset).

    ``trainable_layers`` >= 0 freezes all but the last that many stages/blocks
    (:func:`set_trainable_layers`); -1 leaves the model as built (everything trains, except the CLIP
    encoder without ``train_encoder``).
    """
    if arch not in CLASSIFIERS:
        raise ValueError(f"architecture {arch!r} not registered; choose from {sorted(CLASSIFIERS)}")
    builder, pre = CLASSIFIERS[arch]
    pre = Preprocess(image_size or pre.size, pre.mean, pre.std)
    kwargs = {"checkpoint": checkpoint, "size": size, "image_size": pre.size}
    if arch == "clip_linear":
        kwargs["train_encoder"] = train_encoder
    model = builder(**kwargs)
    if trainable_layers >= 0:
        set_trainable_layers(model, arch, trainable_layers)
    return model, pre


def save_classifier_run(model, pre: Preprocess, run_dir, *, arch: str, meta_extra: dict) -> None:
    """``run_dir/model/`` + the preprocessing in ``meta.json`` (written by the recipe via training)."""
    from psgvlm.training import write_run_meta

    model.save_pretrained(Path(run_dir) / "model")
    write_run_meta(run_dir, kind=RUN_KIND, arch=arch, preprocess=asdict(pre), **meta_extra)


def load_classifier_run(run_dir):
    """``(model, Preprocess)`` from an image-classifier run dir, in eval mode."""
    from psgvlm.provenance import read_json

    run_dir = Path(run_dir)
    meta = read_json(run_dir / "meta.json")
    arch = meta["arch"]
    pre_d = meta["preprocess"]
    pre = Preprocess(pre_d["size"], tuple(pre_d["mean"]), tuple(pre_d["std"]))
    if arch == "clip_linear":
        from safetensors.torch import load_file

        model = _clip_linear(checkpoint=str(run_dir / "model" / "encoder"), image_size=pre.size)
        model.head.load_state_dict(load_file(str(run_dir / "model" / "head.safetensors")))
    else:
        from transformers import AutoModelForImageClassification

        model = AutoModelForImageClassification.from_pretrained(run_dir / "model", local_files_only=True)
    model.eval()
    return model, pre


def predict_proba(model, pre: Preprocess, images, *, batch_size: int = 32, progress: bool = False) -> np.ndarray:
    """Softmax probabilities ``(n, 5)`` float64 for PIL images."""
    import torch
    from tqdm.auto import tqdm

    dev = next(model.parameters()).device
    out = []
    model.eval()
    with torch.no_grad():
        for i in tqdm(range(0, len(images), batch_size), disable=not progress, desc="classify"):
            logits = model(pixel_values=pre(images[i:i + batch_size]).to(dev)).logits
            out.append(torch.softmax(logits.float(), -1).double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, N_STAGES))
