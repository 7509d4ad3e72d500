"""VLM loading (any family in :data:`psgvlm.vlm.families.FAMILIES`), LoRA targets, optional 4-bit QLoRA,
and the tiny models for tests and CPU.

A real checkpoint (``llava-hf/llava-v1.6-mistral-7b-hf``, ``Qwen/Qwen2.5-VL-3B-Instruct``, ...) and a
tiny one built by ``psgvlm tiny-model --family NAME --out DIR`` load through the same
``from_pretrained`` path: :func:`load_model`, which reads the family from the config's ``model_type``.

LLaVA-NeXT module names (transformers 5): ``model.vision_tower`` (CLIP, ``encoder.layers.N``),
``model.multi_modal_projector``, ``model.language_model`` (Mistral, ``layers.N``), ``lm_head``; the other
families' prefixes are in the registry.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from pathlib import Path
from urllib.parse import urlparse

from psgvlm.vlm.families import FAMILIES, IMAGE_PLACEHOLDER, LLAVA_CHAT, family_of, get_family

# LLaVA-NeXT's prefixes and chat template (the default family), kept for the benchmarks that name them.
VISION_PREFIX = FAMILIES["llava_next"].vision_prefix
PROJECTOR_PREFIX = FAMILIES["llava_next"].projector_prefix
LANGUAGE_PREFIX = FAMILIES["llava_next"].language_prefix
IMAGE_TOKEN = IMAGE_PLACEHOLDER
CHAT_TEMPLATE = LLAVA_CHAT

class ModelNotAvailableError(RuntimeError):
    """A model id that is neither a local directory nor loadable (offline, not cached)."""


# --------------------------------------------------------------------------- loading


def _hub_reachable(timeout_s: float = 3.0) -> bool:
    """One TCP connect to the hub host: avoids huggingface_hub's ~25 s of retries when offline."""
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout_s):
            return True
    except OSError:
        return False


def resolve_model_source(model: str) -> tuple[str, bool]:
    """Where ``model`` loads from: ``(id_or_dir, local_files_only)``.

    A local directory must hold ``config.json``. A hub id is used from the local cache when cached,
    downloaded when the hub is reachable and ``HF_HUB_OFFLINE`` is unset, else
    :class:`ModelNotAvailableError` explains what to do (raised at once, no network retries).
    """
    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir() or not (path / "config.json").exists():
            raise ModelNotAvailableError(
                f"model path {str(path)!r} is not a model directory (no config.json); pass a folder "
                f"written by save_pretrained (e.g. `psgvlm tiny-model --out DIR`) or a hub id")
        return str(path), True
    if model.startswith((".", "/", "~")) or model.count("/") != 1:
        raise ModelNotAvailableError(
            f"model {model!r} is neither an existing directory nor a hub id of the form 'owner/name'")
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(model, "config.json")
    if isinstance(cached, str):
        return model, True
    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    if offline or not _hub_reachable():
        why = "HF_HUB_OFFLINE is set" if offline else "the Hugging Face hub is not reachable"
        raise ModelNotAvailableError(
            f"model {model!r} is not a local directory and not in the Hugging Face cache, and {why}. "
            f"Download it on a connected machine (`huggingface-cli download {model}`) and pass the "
            f"folder, or build a tiny test model with `psgvlm tiny-model --out DIR`.")
    return model, False


def check_bitsandbytes() -> None:
    """Raise a clear error when 4-bit QLoRA cannot run here (no bitsandbytes or no CUDA GPU)."""
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as err:
        raise RuntimeError(
            "quantization='4bit' needs bitsandbytes, which is not installed "
            "(pip install 'psgvlm[qlora]'); use quantization='none' on this machine") from err
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("quantization='4bit' (bitsandbytes QLoRA) needs a CUDA GPU; none is visible. "
                           "Use quantization='none' for CPU runs")


def quantization_config(dtype=None, family: str = "llava_next"):
    """4-bit NF4 config that leaves the family's vision tower, projector and lm_head unquantised.

    ``llm_int8_skip_modules`` takes full module prefixes: short names like ``vision_tower`` would
    also be matched, but full prefixes cannot collide with language-model modules.
    """
    import torch
    from transformers import BitsAndBytesConfig

    check_bitsandbytes()
    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=dtype or torch.bfloat16,
        llm_int8_skip_modules=[get_family(family).vision_prefix, get_family(family).projector_prefix, "lm_head"])


def pick_dtype(name: str = "auto"):
    """``"auto"`` -> bfloat16 on a GPU that supports it, float32 otherwise; or an explicit name."""
    import torch

    allowed = {"auto": None, "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if name not in allowed:
        raise ValueError(f"dtype {name!r} not allowed; choose from {sorted(allowed)}")
    if name != "auto":
        return allowed[name]
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def tile_size(processor) -> int:
    """Side of one vision-tower tile (the image processor's crop size), pixels."""
    crop = processor.image_processor.crop_size
    return int(crop["height"] if isinstance(crop, dict) else crop.height)


def pin_processor_grid(processor) -> bool:
    """Pin a multi-tile processor to one tile per epoch image; True if it had a grid to pin.

    LLaVA-NeXT: the anyres grid becomes one tile of the vision tower's size (base + 1 tile).
    Idefics3/SmolVLM: images are resized to one ``max_image_size`` tile (no split into 4x4 tiles + global).
    Qwen2-VL and PaliGemma have no grid (Qwen keeps the image's own size; PaliGemma resizes to its one size).
    """
    ip = processor.image_processor
    if hasattr(ip, "image_grid_pinpoints"):
        size = tile_size(processor)
        ip.image_grid_pinpoints = [[size, size]]
        return True
    if hasattr(ip, "max_image_size") and getattr(ip, "do_image_splitting", False):
        ip.size = {"longest_edge": int(ip.max_image_size["longest_edge"])}
        return True
    return False


def load_processor(model: str, *, pin_grid: bool = False):
    """The model's processor; ``pin_grid``: one tile per epoch image (:func:`pin_processor_grid`)."""
    from transformers import AutoProcessor

    source, local_only = resolve_model_source(model)
    processor = AutoProcessor.from_pretrained(source, local_files_only=local_only)
    if pin_grid:
        pin_processor_grid(processor)
    return processor


def model_family(model: str) -> str:
    """The registered family of a hub id or model dir, from its ``config.json``'s ``model_type``."""
    from transformers import AutoConfig

    source, local_only = resolve_model_source(model)
    return family_of(AutoConfig.from_pretrained(source, local_files_only=local_only))


def load_model(model: str, *, dtype="auto", quantization: str = "none", pin_grid: bool = False,
               device_map=None, family: str | None = None):
    """Load a VLM of any registered family and its processor from a hub id or a local directory.

    Parameters
    ----------
    model : str
        ``from_pretrained`` id (``llava-hf/llava-v1.6-mistral-7b-hf``, ``Qwen/Qwen2.5-VL-3B-Instruct``) or a
        local dir.
    dtype : str or torch.dtype
        ``"auto"`` (bf16 where supported, else fp32), ``"float32"``, ``"bfloat16"``, ``"float16"``.
    quantization : {"none", "4bit"}
        ``"4bit"``: bitsandbytes NF4 for the language model; vision tower and projector unquantised.
    pin_grid : bool
        One tile per epoch image (:func:`pin_processor_grid`): LLaVA-NeXT's anyres grid pinned to one tile
        of the vision tower's size in processor and model config (a 336x336 epoch image then runs 2 tiles,
        base + 1, not 3); Idefics3 resized to one tile. No effect on families without a grid.
    family : str, optional
        A name in ``FAMILIES``; by default read from the config's ``model_type`` (must agree when given).

    Returns
    -------
    (model, processor)
    """
    import transformers

    if quantization not in ("none", "4bit"):
        raise ValueError(f"quantization {quantization!r} not allowed; choose 'none' or '4bit'")
    torch_dtype = pick_dtype(dtype) if isinstance(dtype, str) else dtype
    source, local_only = resolve_model_source(model)
    found = model_family(source)
    if family is not None and family != found:
        raise ValueError(f"model {model!r} is a {found!r} model (config model_type), not family {family!r}")
    facts = get_family(found)
    kwargs = {"dtype": torch_dtype, "local_files_only": local_only}
    if quantization == "4bit":
        kwargs["quantization_config"] = quantization_config(torch_dtype, found)
    if device_map is not None:
        kwargs["device_map"] = device_map
    net = getattr(transformers, facts.model_class).from_pretrained(source, **kwargs)
    processor = load_processor(source, pin_grid=pin_grid)
    if pin_grid and hasattr(net.config, "image_grid_pinpoints"):
        net.config.image_grid_pinpoints = processor.image_processor.image_grid_pinpoints
    return net, processor


# --------------------------------------------------------------------------- LoRA


def unused_vision_layers(config) -> list[int]:
    """Vision encoder layers whose output the projector never reads: no gradient, so no LoRA there.

    LLaVA-NeXT: the layers after ``vision_feature_layer``; the other families read the last layer.
    """
    return get_family(family_of(config)).unused_vision_layers(config)


def _is_linear(module) -> bool:
    import torch

    return isinstance(module, torch.nn.Linear) or type(module).__name__ in ("Linear4bit", "Linear8bitLt")


def lora_target_modules(model, *, vision: bool = True, language: bool = True) -> list[str]:
    """Full names of the ``nn.Linear`` layers LoRA should wrap, for the model's family.

    Language-model linears (attention + MLP) and vision-tower linears in the layers that feed the
    projector; never the projector, ``lm_head`` or unused vision layers.
    """
    facts = get_family(family_of(model.config))
    skip = [f"{facts.vision_prefix}.{facts.vision_layers}.{i}." for i in facts.unused_vision_layers(model.config)]
    skip.append(facts.projector_prefix + ".")  # Qwen's merger sits inside the vision tower
    out = []
    for name, module in model.named_modules():
        if not _is_linear(module) or any(name.startswith(s) for s in skip):
            continue
        if language and name.startswith(facts.language_prefix + "."):
            out.append(name)
        elif vision and name.startswith(facts.vision_prefix + "."):
            out.append(name)
    if not out:
        raise ValueError(f"no LoRA target found in this {facts.model_type} model ({facts.vision_prefix}, "
                         f"{facts.language_prefix})")
    return out


def lora_config(model, *, r: int = 16, alpha: int = 32, dropout: float = 0.05, vision: bool = True,
                language: bool = True):
    """A peft ``LoraConfig`` on :func:`lora_target_modules`; everything else (projector) stays frozen."""
    from peft import LoraConfig

    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, bias="none",
                      target_modules=lora_target_modules(model, vision=vision, language=language))


def trainable_parameters(model) -> dict:
    """Counts of trainable / total parameters and the trainable ones per top-level part.

    Parts are named by the family's module names (LLaVA-NeXT: ``vision_tower``, ``multi_modal_projector``,
    ``language_model``; Qwen: ``visual``, ``merger``, ...), plus ``lm_head`` and ``other``; the projector
    is matched first, as Qwen's sits inside its vision tower.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    facts = get_family(family_of(base.config))
    keys = [p.rsplit(".", 1)[-1] for p in (facts.projector_prefix, facts.vision_prefix, facts.language_prefix)]
    parts = {k: 0 for k in [keys[1], keys[0], keys[2], "lm_head", "other"]}
    trainable = total = 0
    for name, p in model.named_parameters():
        total += p.numel()
        if not p.requires_grad:
            continue
        trainable += p.numel()
        key = next((k for k in [*keys, "lm_head"] if f".{k}." in f".{name}."), "other")
        parts[key] += p.numel()
    return {"trainable": trainable, "total": total, "share": trainable / max(total, 1), "per_part": parts,
            "projector": keys[0]}


# --------------------------------------------------------------------------- tiny model


def build_tiny_model(*, family: str = "llava_next", **kwargs):
    """A random tiny model + processor of ``family`` (tokenizer built in code from psgvlm/prompts), no download.

    Keyword arguments go to the family's builder (``psgvlm.vlm.families``): ``image_size``,
    ``patch_size``, ``vision_hidden``, ``text_hidden``, ``n_layers``, ``vocab_size``, ``init_range``,
    ``seed``. LLaVA-NeXT's anyres grid is pinned to one ``image_size`` tile. Returns ``(model, processor)``.
    """
    return get_family(family).tiny(**kwargs)


def tiny_model_main(argv: list[str] | None = None) -> int:
    """``psgvlm tiny-model --out DIR [--family NAME]``: build and save a tiny random VLM (no download)."""
    from psgvlm.vlm.families import has_torchvision

    parser = argparse.ArgumentParser(prog="psgvlm tiny-model", description=tiny_model_main.__doc__)
    parser.add_argument("--out", required=True, help="output directory (save_pretrained format)")
    parser.add_argument("--family", default="llava_next", choices=sorted(FAMILIES),
                        help=f"VLM family (default llava_next): {', '.join(sorted(FAMILIES))}")
    parser.add_argument("--image-size", type=int, default=None,
                        help="image side, pixels (one tile; default 336 for llava_next, 112 for the others)")
    parser.add_argument("--patch-size", type=int, default=14, help="vision patch side, pixels")
    parser.add_argument("--vision-hidden", type=int, default=64, help="vision tower hidden size")
    parser.add_argument("--text-hidden", type=int, default=64, help="language model hidden size")
    parser.add_argument("--layers", type=int, default=2, help="layers in each of the two towers")
    parser.add_argument("--init-range", type=float, default=0.2, help="std of the language model's init")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        print(f"psgvlm tiny-model: {out} exists and is not empty (use --overwrite)", file=sys.stderr)
        return 2
    if args.family.startswith("qwen") and not has_torchvision():
        print(f"psgvlm tiny-model: --family {args.family}: transformers saves and loads Qwen2-VL processors "
              f"only with torchvision, which is not installed (pip install torchvision)", file=sys.stderr)
        return 2
    size = {"image_size": args.image_size} if args.image_size else {}
    try:
        model, processor = build_tiny_model(family=args.family, patch_size=args.patch_size,
                                            vision_hidden=args.vision_hidden, text_hidden=args.text_hidden,
                                            n_layers=args.layers, init_range=args.init_range, seed=args.seed,
                                            **size)
    except ValueError as err:
        print(f"psgvlm tiny-model: {err}", file=sys.stderr)
        return 2
    model.save_pretrained(out)
    processor.save_pretrained(out)
    n = sum(p.numel() for p in model.parameters())
    print(f"saved tiny {args.family} ({n:,} parameters, vocab {len(processor.tokenizer)}) to {out}")
    return 0


# --------------------------------------------------------------------------- dry run of a real checkpoint


def checkpoint_facts(family: str) -> dict:
    """The shipped values of ``family``'s real checkpoint: ``{"hub_id", "source", "config", "preprocessor", "processor"}``."""
    import json

    from psgvlm.vlm.families import CONFIGS_DIR

    path = CONFIGS_DIR / get_family(family).checkpoint_file
    return json.loads(path.read_text(encoding="utf-8"))


def image_tokens_per_image(family: str, size_px: tuple[int, int] = (336, 336), *, pin_grid: bool = True) -> int:
    """Image tokens one ``size_px`` epoch image gets from the real checkpoint's image processor.

    The processor is the family's own class with the real image-processor and processor values shipped in
    ``psgvlm/assets/vlm_configs`` and a tiny tokenizer (token counts do not depend on the vocabulary).
    """
    facts = get_family(family)
    real = checkpoint_facts(family)
    _, processor = facts.tiny(n_layers=1, vision_hidden=32, text_hidden=32)
    processor.image_processor = type(processor.image_processor).from_dict(real["preprocessor"])
    for key, value in real["processor"].items():
        setattr(processor, key, value)
    if pin_grid:
        pin_processor_grid(processor)
    return facts.image_tokens(processor, [size_px])[0]


def dry_run(family: str, *, lora_r: int = 16, vision: bool = True) -> dict:
    """A family's real checkpoint on the meta device (no weights): LoRA targets, trainable counts, image tokens.

    The architecture is built from the shipped ``config.json`` values, LoRA attached as the recipe does
    (rank ``lora_r``, alpha ``2 * lora_r``), and the image tokens of one 336x336 epoch image counted with
    the real image-processor values (:func:`image_tokens_per_image`; pinned to one tile and as shipped).
    """
    from collections import Counter

    import torch
    import transformers
    from peft import get_peft_model

    facts = get_family(family)
    real = checkpoint_facts(family)
    config = transformers.AutoConfig.for_model(**real["config"])
    if family_of(config) != family:
        raise ValueError(f"{facts.checkpoint_file}: model_type {config.model_type!r} is not family {family!r}")
    with torch.device("meta"):
        model = getattr(transformers, facts.model_class)(config)
    total = sum(p.numel() for p in model.parameters())
    lcfg = lora_config(model, r=lora_r, alpha=2 * lora_r, vision=vision)
    targets = sorted(lcfg.target_modules)
    with torch.device("meta"):
        params = trainable_parameters(get_peft_model(model, lcfg))
    kinds = Counter(("vision:" if t.startswith(facts.vision_prefix + ".") else "language:") + t.rsplit(".", 1)[-1]
                    for t in targets)
    return {"family": family, "hub_id": real["hub_id"], "source": real["source"], "total_parameters_base": total,
            "lora_r": lora_r, "n_lora_target_modules": len(targets), "lora_target_kinds": dict(sorted(kinds.items())),
            "projector_targets": [t for t in targets if t.startswith(facts.projector_prefix + ".")],
            "unused_vision_layers": facts.unused_vision_layers(config), "trainable": params,
            "image_tokens_336_pinned": image_tokens_per_image(family, pin_grid=True),
            "image_tokens_336_as_shipped": image_tokens_per_image(family, pin_grid=False)}
