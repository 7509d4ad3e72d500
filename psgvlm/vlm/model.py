"""LLaVA-NeXT loading, LoRA targets, optional 4-bit QLoRA, and the tiny model for tests and CPU.

The real model (``llava-hf/llava-v1.6-mistral-7b-hf``) and the tiny one built by
``psgvlm tiny-model --out DIR`` load through the same ``from_pretrained`` path: :func:`load_model`.

Module names (transformers 5): ``model.vision_tower`` (CLIP, ``encoder.layers.N``),
``model.multi_modal_projector``, ``model.language_model`` (Mistral, ``layers.N``), ``lm_head``.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from pathlib import Path
from urllib.parse import urlparse

from psgvlm.stages import STAGES

VISION_PREFIX = "model.vision_tower"
PROJECTOR_PREFIX = "model.multi_modal_projector"
LANGUAGE_PREFIX = "model.language_model"
IMAGE_TOKEN = "<image>"
# The llava-v1.6-mistral chat template (from the real processor), also given to the tiny model so
# both build prompts the same way: "[INST] <image>\n... [/INST] N2</s>".
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'system' %}{{ '<<SYS>>\n' + "
    "message['content'][0]['text'] + '\n<</SYS>>\n\n' }}{% elif message['role'] == 'user' %}"
    "{{ '[INST] ' }}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\n' }}{% endfor %}{% for content in message['content'] | selectattr('type', "
    "'equalto', 'text') %}{{ content['text'] }}{% endfor %}{{' [/INST]' }}{% elif message['role'] == "
    "'assistant' %}{{ ' ' + message['content'][0]['text'] + '</s> '}}{% else %}{{ raise_exception("
    "'Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)


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


def quantization_config(dtype=None):
    """4-bit NF4 config that leaves the vision tower, the projector and lm_head unquantised.

    ``llm_int8_skip_modules`` takes full module prefixes: short names like ``vision_tower`` would
    also be matched, but full prefixes cannot collide with language-model modules.
    """
    import torch
    from transformers import BitsAndBytesConfig

    check_bitsandbytes()
    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=dtype or torch.bfloat16,
        llm_int8_skip_modules=[VISION_PREFIX, PROJECTOR_PREFIX, "lm_head"])


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


def load_processor(model: str, *, pin_grid: bool = False):
    """The model's processor; ``pin_grid`` pins the anyres grid to a single tile (base + 1 tile)."""
    from transformers import AutoProcessor

    source, local_only = resolve_model_source(model)
    processor = AutoProcessor.from_pretrained(source, local_files_only=local_only)
    if pin_grid:
        size = tile_size(processor)
        processor.image_processor.image_grid_pinpoints = [[size, size]]
    return processor


def load_model(model: str, *, dtype="auto", quantization: str = "none", pin_grid: bool = False,
               device_map=None):
    """Load a LLaVA-NeXT model and processor from a hub id or a local directory.

    Parameters
    ----------
    model : str
        ``from_pretrained`` id (``llava-hf/llava-v1.6-mistral-7b-hf``) or a local dir.
    dtype : str or torch.dtype
        ``"auto"`` (bf16 where supported, else fp32), ``"float32"``, ``"bfloat16"``, ``"float16"``.
    quantization : {"none", "4bit"}
        ``"4bit"``: bitsandbytes NF4 for the language model; vision tower and projector unquantised.
    pin_grid : bool
        Pin the anyres grid to one tile of the vision tower's size (336 for the real model) in both
        processor and model config: a 336x336 epoch image then runs 2 tiles (base + 1), not 3.

    Returns
    -------
    (model, processor)
    """
    from transformers import LlavaNextForConditionalGeneration

    if quantization not in ("none", "4bit"):
        raise ValueError(f"quantization {quantization!r} not allowed; choose 'none' or '4bit'")
    torch_dtype = pick_dtype(dtype) if isinstance(dtype, str) else dtype
    source, local_only = resolve_model_source(model)
    kwargs = {"dtype": torch_dtype, "local_files_only": local_only}
    if quantization == "4bit":
        kwargs["quantization_config"] = quantization_config(torch_dtype)
    if device_map is not None:
        kwargs["device_map"] = device_map
    net = LlavaNextForConditionalGeneration.from_pretrained(source, **kwargs)
    processor = load_processor(source, pin_grid=pin_grid)
    if pin_grid:
        net.config.image_grid_pinpoints = processor.image_processor.image_grid_pinpoints
    return net, processor


# --------------------------------------------------------------------------- LoRA


def unused_vision_layers(config) -> list[int]:
    """Vision encoder layers after ``vision_feature_layer``: they get no gradient, so no LoRA there."""
    n = config.vision_config.num_hidden_layers
    layers = config.vision_feature_layer
    layers = layers if isinstance(layers, list | tuple) else [layers]
    # hidden_states has n + 1 entries (embeddings first); index k is the output of layer k - 1.
    last_used = max((k if k >= 0 else n + 1 + k) for k in layers) - 1
    return list(range(last_used + 1, n))


def lora_target_modules(model, *, vision: bool = True, language: bool = True) -> list[str]:
    """Full names of the ``nn.Linear`` layers LoRA should wrap.

    Language-model linears (attention + MLP) and vision-tower linears in the layers that feed
    ``vision_feature_layer``; never the projector, ``lm_head`` or unused vision layers.
    """
    import torch

    skip = {f"{VISION_PREFIX}.encoder.layers.{i}." for i in unused_vision_layers(model.config)}
    out = []
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear) and type(module).__name__ not in ("Linear4bit", "Linear8bitLt"):
            continue
        if language and name.startswith(LANGUAGE_PREFIX + "."):
            out.append(name)
        elif vision and name.startswith(VISION_PREFIX + ".") and not any(name.startswith(s) for s in skip):
            out.append(name)
    if not out:
        raise ValueError("no LoRA target found: is this a LLaVA-NeXT model (model.vision_tower, "
                         "model.language_model)?")
    return out


def lora_config(model, *, r: int = 16, alpha: int = 32, dropout: float = 0.05, vision: bool = True,
                language: bool = True):
    """A peft ``LoraConfig`` on :func:`lora_target_modules`; everything else (projector) stays frozen."""
    from peft import LoraConfig

    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, bias="none",
                      target_modules=lora_target_modules(model, vision=vision, language=language))


def trainable_parameters(model) -> dict:
    """Counts of trainable / total parameters and the trainable ones per top-level part."""
    parts = {"vision_tower": 0, "multi_modal_projector": 0, "language_model": 0, "lm_head": 0, "other": 0}
    trainable = total = 0
    for name, p in model.named_parameters():
        total += p.numel()
        if not p.requires_grad:
            continue
        trainable += p.numel()
        key = next((k for k in parts if f".{k}." in f".{name}."), "other")
        parts[key] += p.numel()
    return {"trainable": trainable, "total": total, "share": trainable / max(total, 1), "per_part": parts}


# --------------------------------------------------------------------------- tiny model


def _tiny_tokenizer(corpus: list[str], vocab_size: int):
    """A byte-free BPE tokenizer with Mistral-like behaviour: Metaspace, single digits, BOS only."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", IMAGE_TOKEN, "<pad>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    # Digits split on their own so N1/N2/N3 share the first token 'N', as with the real tokenizer.
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first"),
        pre_tokenizers.Digits(individual_digits=True)])
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="first")
    alphabet = [chr(c) for c in range(32, 127)] + ["\n", "\u2581"]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, initial_alphabet=alphabet,
                                  min_frequency=2, show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B",
                                                       special_tokens=[("<s>", tok.token_to_id("<s>"))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", pad_token="<pad>",
                                   extra_special_tokens={"image_token": IMAGE_TOKEN},
                                   chat_template=CHAT_TEMPLATE)


def build_tiny_model(*, image_size: int = 336, patch_size: int = 14, vision_hidden: int = 64,
                     text_hidden: int = 64, n_layers: int = 2, vocab_size: int = 400, init_range: float = 0.2,
                     seed: int = 0):
    """A random tiny LLaVA-NeXT + processor (tokenizer built in code from psgvlm/prompts), no download.

    The anyres grid is pinned to one ``image_size`` tile. ``init_range`` is the std of the language
    model's initial weights: with transformers' default 0.02 and a frozen random ``lm_head`` over a
    64-d state, logits stay within about +-1.3, so LoRA alone cannot push the answer loss far below
    log(vocab); 0.2 leaves the frozen head enough range to learn. Returns ``(model, processor)``.
    """
    import torch
    from transformers import (
        CLIPVisionConfig,
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextImageProcessor,
        LlavaNextProcessor,
        MistralConfig,
    )

    from psgvlm.vlm.data import load_prompts

    if image_size % patch_size:
        raise ValueError(f"image_size {image_size} must be a multiple of patch_size {patch_size}")
    prompts = load_prompts()
    corpus = [t for t in prompts["templates"].values()] * 4
    corpus += [f"[INST] {IMAGE_TOKEN}\n{t} [/INST] {s}</s>" for t in prompts["templates"].values()
               for s in STAGES] * 4
    tokenizer = _tiny_tokenizer(corpus, vocab_size)
    grid = [[image_size, image_size]]
    vision = CLIPVisionConfig(hidden_size=vision_hidden, intermediate_size=2 * vision_hidden,
                              num_hidden_layers=n_layers, num_attention_heads=4, image_size=image_size,
                              patch_size=patch_size, projection_dim=vision_hidden)
    text = MistralConfig(hidden_size=text_hidden, intermediate_size=2 * text_hidden,
                         num_hidden_layers=n_layers, num_attention_heads=4, num_key_value_heads=2,
                         vocab_size=len(tokenizer), max_position_embeddings=4096, sliding_window=None,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False,
                         initializer_range=init_range)
    config = LlavaNextConfig(vision_config=vision, text_config=text, image_token_index=tokenizer.image_token_id,
                             image_grid_pinpoints=grid, vision_feature_layer=-2,
                             vision_feature_select_strategy="default", tie_word_embeddings=False)
    torch.manual_seed(seed)  # from_config draws weights from torch's global RNG; seeded from the argument
    model = LlavaNextForConditionalGeneration(config)
    image_processor = LlavaNextImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size},
        image_grid_pinpoints=grid, image_mean=[0.48145466, 0.4578275, 0.40821073],
        image_std=[0.26862954, 0.26130258, 0.27577711])
    processor = LlavaNextProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                   patch_size=patch_size, vision_feature_select_strategy="default",
                                   num_additional_image_tokens=1, chat_template=CHAT_TEMPLATE)
    return model, processor


def tiny_model_main(argv: list[str] | None = None) -> int:
    """``psgvlm tiny-model --out DIR``: build and save a tiny random LLaVA-NeXT (no download)."""
    parser = argparse.ArgumentParser(prog="psgvlm tiny-model", description=tiny_model_main.__doc__)
    parser.add_argument("--out", required=True, help="output directory (save_pretrained format)")
    parser.add_argument("--image-size", type=int, default=336, help="image side, pixels (one anyres tile)")
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
    try:
        model, processor = build_tiny_model(image_size=args.image_size, patch_size=args.patch_size,
                                            vision_hidden=args.vision_hidden, text_hidden=args.text_hidden,
                                            n_layers=args.layers, init_range=args.init_range,
                                            seed=args.seed)
    except ValueError as err:
        print(f"psgvlm tiny-model: {err}", file=sys.stderr)
        return 2
    model.save_pretrained(out)
    processor.save_pretrained(out)
    n = sum(p.numel() for p in model.parameters())
    print(f"saved tiny LLaVA-NeXT ({n:,} parameters, vocab {len(processor.tokenizer)}) to {out}")
    return 0
