"""Per-family facts of the image-text-to-text VLMs psgvlm fine-tunes: one literal registry, ``FAMILIES``.

Everything that differs between checkpoint families lives here and nowhere else: how the prompt is
built (chat template, image placeholder), where the answer goes (after the prompt, or as PaliGemma's
suffix), position ids for the shared-prefix label scoring, module prefixes (vision tower, projector,
language model: LoRA targets and the frozen projector), the vision layers that get no gradient, the
padding sides, a tiny random model + processor built in code (tests, CPU runs, ``psgvlm tiny-model
--family NAME``), and the hub id and shipped config of a real checkpoint (meta-device dry runs).

================  =========================  ============================================================
family            real checkpoint            image tokens per 336x336 epoch image (real processor config)
================  =========================  ============================================================
``llava_next``    llava-v1.6-mistral-7b-hf   1176 with the anyres grid pinned to one 336 tile (base + tile)
``qwen2_vl``      Qwen2-VL-2B-Instruct       144 (24x24 patches of 14 px, 2x2 merged)
``qwen2_5_vl``    Qwen2.5-VL-3B-Instruct     144 (same patching as Qwen2-VL)
``idefics3``      SmolVLM-256M-Instruct      64 (one 512-px tile, 4x4 pixel shuffle) with the tile pinned
``paligemma``     paligemma-3b-pt-224        256 (resized to 224, 16x16 patches of 14 px)
================  =========================  ============================================================

SmolVLM v1 checkpoints (256M, 500M, 2.2B) are ``idefics3`` models; SmolVLM2 (``smolvlm``) is not
registered: its processor needs torchvision and num2words, which psgvlm does not install.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from psgvlm.stages import STAGES

IMAGE_PLACEHOLDER = "<image>"  # the placeholder in psgvlm/prompts templates (one per template)
CONFIGS_DIR = Path(__file__).resolve().parent.parent / "assets" / "vlm_configs"


@dataclass(frozen=True)
class FamilyFacts:
    """What psgvlm needs to know about one VLM family (see the module docstring)."""

    model_type: str  # config.json's model_type
    model_class: str  # transformers class loaded by from_pretrained
    processor_class: str  # transformers processor class (tells a loaded processor's family)
    hub_id: str  # a real checkpoint of the family
    checkpoint_file: str  # its config.json, preprocessor and processor values, in psgvlm/assets/vlm_configs/
    image_text: str  # what replaces IMAGE_PLACEHOLDER in a template before the chat template is applied
    answer_as_suffix: bool  # True: the answer is the processor's ``suffix`` (PaliGemma's prefix-LM), not appended text
    positions: str  # position ids of a left-padded prompt: "from0", "from1" (1-based), or "mrope" (3-D, Qwen)
    vision_prefix: str  # module prefix of the vision tower
    projector_prefix: str  # module prefix of the projector (frozen: no LoRA, no gradient)
    language_prefix: str  # module prefix of the language model
    vision_layers: str  # path of the vision encoder's layer list below vision_prefix
    unused_vision_layers: Callable  # config -> indices of vision layers whose output is never used (no LoRA)
    nested_images: bool  # the processor takes one list of images per text
    image_tokens: Callable  # (processor, [(height, width)]) -> image tokens each image must get in input_ids
    tiny: Callable  # (**tiny kwargs) -> (model, processor): a random tiny model of the family, built in code
    chat_template: str | None  # the family's chat template (given to the tiny model; None: no chat format)
    train_padding: str = "right"  # the answer ends every training row (labels are placed from the right)
    score_padding: str = "left"  # the last prompt position is a real token in every scoring row

    @property
    def projector_name(self) -> str:
        """The projector's module name (last part of its prefix), its key in trainable-parameter counts."""
        return self.projector_prefix.rsplit(".", 1)[-1]


# --------------------------------------------------------------------------- chat templates

# The llava-v1.6-mistral chat template (from the real processor): "[INST] <image>\n... [/INST] N2</s>".
LLAVA_CHAT = (
    "{% for message in messages %}{% if message['role'] == 'system' %}{{ '<<SYS>>\n' + "
    "message['content'][0]['text'] + '\n<</SYS>>\n\n' }}{% elif message['role'] == 'user' %}"
    "{{ '[INST] ' }}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\n' }}{% endfor %}{% for content in message['content'] | selectattr('type', "
    "'equalto', 'text') %}{{ content['text'] }}{% endfor %}{{' [/INST]' }}{% elif message['role'] == "
    "'assistant' %}{{ ' ' + message['content'][0]['text'] + '</s> '}}{% else %}{{ raise_exception("
    "'Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)
# Qwen2-VL / Qwen2.5-VL (ChatML with the default system turn), as the real processors ship it.
QWEN_CHAT = (
    "{% set image_count = namespace(value=0) %}{% for message in messages %}{% if loop.first and "
    "message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "<|im_end|>\n{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] == 'text' %}{{ content['text'] }}"
    "{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}"
    "<|im_start|>assistant\n{% endif %}"
)
# SmolVLM (Idefics3) as its processor ships it: "<|im_start|>User: ...<end_of_utterance>\nAssistant: N2".
IDEFICS3_CHAT = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}{% if message['content'][0]"
    "['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}{% for line in message['content'] %}"
    "{% if line['type'] == 'text' %}{{line['text']}}{% elif line['type'] == 'image' %}{{ '<image>' }}"
    "{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}"
    "{{ 'Assistant:' }}{% endif %}"
)


# --------------------------------------------------------------------------- prompts


def _chat(processor):
    return getattr(processor, "chat_template", None) or getattr(processor.tokenizer, "chat_template", None)


def prompt_text(facts: FamilyFacts, processor, template: str) -> str:
    """The text handed to the processor for a user ``template`` (with IMAGE_PLACEHOLDER), up to the answer.

    Chat families: the chat template over one user turn plus the generation prompt (the assistant's
    header, where there is one). PaliGemma: ``<image>`` then the template's text; the processor adds
    ``<bos>`` after the image tokens and ``\\n`` at the end.
    """
    if facts.answer_as_suffix:
        return IMAGE_PLACEHOLDER + template.replace(IMAGE_PLACEHOLDER, "").strip()
    text = template.replace(IMAGE_PLACEHOLDER, facts.image_text)
    messages = [{"role": "user", "content": [{"type": "text", "text": text}]}]
    if _chat(processor):
        return processor.tokenizer.apply_chat_template(messages, tokenize=False, chat_template=_chat(processor),
                                                       add_generation_prompt=True)
    return f"USER: {text} ASSISTANT:"


def answer_text(facts: FamilyFacts, processor, template: str, stage: str) -> str:
    """The text that follows :func:`prompt_text` for ``stage`` (``" N2</s>"``; PaliGemma: the suffix ``"N2"``)."""
    if facts.answer_as_suffix:
        return stage
    if not _chat(processor):
        return f" {stage}{processor.tokenizer.eos_token}"
    text = template.replace(IMAGE_PLACEHOLDER, facts.image_text)
    messages = [{"role": "user", "content": [{"type": "text", "text": text}]},
                {"role": "assistant", "content": [{"type": "text", "text": stage}]}]
    full = processor.tokenizer.apply_chat_template(messages, tokenize=False, chat_template=_chat(processor))
    prompt = prompt_text(facts, processor, template)
    if not full.startswith(prompt):
        raise ValueError("chat template: the assistant turn does not extend the user turn and generation prompt")
    return full[len(prompt):].rstrip()


def answer_token_ids(facts: FamilyFacts, processor, template: str) -> list[list[int]]:
    """Token ids of each stage's answer after the prompt, in STAGES order (exactly what training labels).

    Appended answers are read off the full tokenisation (the prompt must be an exact prefix: no merge
    across the boundary); a suffix answer is tokenised as the processor does it, as the text pair.
    Raises if two answers tokenise identically.
    """
    tok = processor.tokenizer
    prompt = prompt_text(facts, processor, template)
    out = []
    for stage in STAGES:
        if facts.answer_as_suffix:
            enc = tok(prompt, text_pair=stage + tok.eos_token, return_token_type_ids=True)
            ids = [i for i, t in zip(enc["input_ids"], enc["token_type_ids"]) if t == 1]
            if not ids:
                raise ValueError(f"answer {stage!r}: the tokenizer gave the text pair no token type 1")
            out.append(ids)
            continue
        ids_prompt = tok(prompt, add_special_tokens=True)["input_ids"]
        ids_full = tok(prompt + answer_text(facts, processor, template, stage), add_special_tokens=True)["input_ids"]
        if ids_full[: len(ids_prompt)] != ids_prompt or len(ids_full) == len(ids_prompt):
            raise ValueError(f"answer {stage!r} does not tokenise as a suffix of the prompt; "
                             f"prompt ids end {ids_prompt[-3:]}, full ids {ids_full[len(ids_prompt) - 3:]}")
        out.append(ids_full[len(ids_prompt):])
    if len({tuple(a) for a in out}) != len(out):
        raise ValueError(f"two answers tokenise identically: {dict(zip(STAGES, out))}")
    return out


def _placeholder_tokens(processor, image_sizes) -> list[int]:
    """The processor's own accounting: every placeholder it writes for an image is an image token."""
    info = processor._get_num_multimodal_tokens(image_sizes=[tuple(int(v) for v in s) for s in image_sizes])
    return [int(n) for n in info["num_image_tokens"]]


def _idefics3_tokens(processor, image_sizes) -> list[int]:
    """Idefics3 wraps each tile's ``image_seq_len`` image tokens in marker tokens: count the tiles.

    An image split into rows x cols tiles also gets its downscaled global view; an unsplit one is that
    global view alone.
    """
    kwargs = processor._merge_kwargs()["images_kwargs"]
    out = []
    for h, w in image_sizes:
        _, rows, cols = processor.image_processor.get_number_of_image_patches(int(h), int(w), kwargs)
        out.append((rows * cols + 1) * int(processor.image_seq_len))
    return out


# --------------------------------------------------------------------------- LoRA / positions helpers


def _llava_unused_layers(config) -> list[int]:
    """Vision layers after ``vision_feature_layer`` (hidden_states index k is layer k - 1's output)."""
    n = config.vision_config.num_hidden_layers
    layers = config.vision_feature_layer
    layers = layers if isinstance(layers, list | tuple) else [layers]
    last_used = max((k if k >= 0 else n + 1 + k) for k in layers) - 1
    return list(range(last_used + 1, n))


def _all_layers_used(config) -> list[int]:
    """The projector reads the vision encoder's last layer: every layer gets a gradient."""
    return []


# --------------------------------------------------------------------------- tiny models


def tiny_tokenizer(corpus: list[str], vocab_size: int, *, specials: list[str], bos: str | None, eos: str,
                   pad: str, unk: str, extra: dict, chat_template: str | None, add_bos: bool):
    """A byte-free BPE tokenizer trained on ``corpus``: Metaspace, single digits, the family's special tokens.

    Digits split on their own so N1/N2/N3 share the first token 'N', as with the real tokenizers.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=unk))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first"),
        pre_tokenizers.Digits(individual_digits=True)])
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="first")
    alphabet = [chr(c) for c in range(32, 127)] + ["\n", "\u2581"]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, initial_alphabet=alphabet,
                                  min_frequency=2, show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    if add_bos:
        tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A $B",
                                                           special_tokens=[(bos, tok.token_to_id(bos))])
    kwargs = {"bos_token": bos} if bos else {}
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos, unk_token=unk, pad_token=pad,
                                   extra_special_tokens=extra, chat_template=chat_template, **kwargs)


def _corpus(facts_name: str, wrap: Callable[[str, str], str]) -> list[str]:
    """Training text for a tiny tokenizer: every prompt template, alone and wrapped with each answer."""
    from psgvlm.vlm.data import load_prompts

    prompts = load_prompts()
    templates = [t for name, t in prompts["templates"].items() if name not in prompts.get("generation_only", [])]
    return templates * 4 + [wrap(t, s) for t in templates for s in STAGES] * 4


def _seeded(seed: int):
    import torch

    torch.manual_seed(seed)  # from_config draws weights from torch's global RNG; seeded from the argument


def tiny_llava_next(*, image_size: int = 336, patch_size: int = 14, vision_hidden: int = 64, text_hidden: int = 64,
                    n_layers: int = 2, vocab_size: int = 400, init_range: float = 0.2, seed: int = 0):
    """A random tiny LLaVA-NeXT (CLIP + Mistral), anyres grid pinned to one ``image_size`` tile.

    ``init_range`` is the std of the language model's initial weights: with transformers' default 0.02
    and a frozen random ``lm_head`` over a 64-d state, logits stay within about +-1.3, so LoRA alone cannot
    push the answer loss far below log(vocab); 0.2 leaves the frozen head enough range to learn.
    """
    from transformers import (
        CLIPVisionConfig,
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextImageProcessor,
        LlavaNextProcessor,
        MistralConfig,
    )

    if image_size % patch_size:
        raise ValueError(f"image_size {image_size} must be a multiple of patch_size {patch_size}")
    corpus = _corpus("llava_next", lambda t, s: f"[INST] {IMAGE_PLACEHOLDER}\n{t} [/INST] {s}</s>")
    tokenizer = tiny_tokenizer(corpus, vocab_size, specials=["<unk>", "<s>", "</s>", IMAGE_PLACEHOLDER, "<pad>"],
                               bos="<s>", eos="</s>", pad="<pad>", unk="<unk>",
                               extra={"image_token": IMAGE_PLACEHOLDER}, chat_template=LLAVA_CHAT, add_bos=True)
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
    _seeded(seed)
    model = LlavaNextForConditionalGeneration(config)
    image_processor = LlavaNextImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size},
        image_grid_pinpoints=grid, image_mean=[0.48145466, 0.4578275, 0.40821073],
        image_std=[0.26862954, 0.26130258, 0.27577711])
    processor = LlavaNextProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                   patch_size=patch_size, vision_feature_select_strategy="default",
                                   num_additional_image_tokens=1, chat_template=LLAVA_CHAT)
    return model, processor


def _tiny_qwen(version: str, *, image_size: int = 112, patch_size: int = 14, vision_hidden: int = 64,
               text_hidden: int = 64, n_layers: int = 2, vocab_size: int = 400, init_range: float = 0.2,
               seed: int = 0):
    """A random tiny Qwen2-VL / Qwen2.5-VL: ``image_size`` (a multiple of 2 * patch_size) is kept as it is."""
    import transformers as tf

    if image_size % (2 * patch_size):
        raise ValueError(f"image_size {image_size} must be a multiple of 2 * patch_size = {2 * patch_size}")
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                "<|image_pad|>", "<|video_pad|>"]
    corpus = _corpus(version, lambda t, s: f"<|im_start|>user\n{t}<|im_end|>\n<|im_start|>assistant\n{s}<|im_end|>\n")
    tokenizer = tiny_tokenizer(corpus, vocab_size, specials=specials, bos=None, eos="<|im_end|>",
                               pad="<|endoftext|>", unk="<|endoftext|>",
                               extra={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
                               chat_template=QWEN_CHAT, add_bos=False)
    ids = {name: tokenizer.convert_tokens_to_ids(tok) for name, tok in [
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>")]}
    heads = 4
    text = {"hidden_size": text_hidden, "intermediate_size": 2 * text_hidden, "num_hidden_layers": n_layers,
            "num_attention_heads": heads, "num_key_value_heads": 2, "vocab_size": len(tokenizer),
            "max_position_embeddings": 4096, "initializer_range": init_range, "bos_token_id": None,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0,
                                "mrope_section": [2, 3, 3]},  # sums to head_dim / 2 = 8
            "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}
    if version == "qwen2_5_vl":
        vision = {"depth": n_layers, "hidden_size": vision_hidden, "intermediate_size": 2 * vision_hidden,
                  "num_heads": 4, "out_hidden_size": text_hidden, "patch_size": patch_size,
                  "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 2 * patch_size * 2,
                  "fullatt_block_indexes": [n_layers - 1]}
        config = tf.Qwen2_5_VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=False, **ids)
        model_cls, proc_cls = tf.Qwen2_5_VLForConditionalGeneration, tf.Qwen2_5_VLProcessor
    else:
        vision = {"depth": n_layers, "embed_dim": vision_hidden, "hidden_size": text_hidden, "mlp_ratio": 2,
                  "num_heads": 4, "patch_size": patch_size, "spatial_merge_size": 2, "temporal_patch_size": 2}
        config = tf.Qwen2VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=False, **ids)
        model_cls, proc_cls = tf.Qwen2VLForConditionalGeneration, tf.Qwen2VLProcessor
    _seeded(seed)
    model = model_cls(config)
    pixels = image_size * image_size
    image_processor = _qwen_image_processor(min_pixels=pixels, max_pixels=pixels, patch_size=patch_size)
    processor = _qwen_processor(proc_cls, image_processor=image_processor, tokenizer=tokenizer,
                                chat_template=QWEN_CHAT)
    return model, processor


def has_torchvision() -> bool:
    """Whether torchvision imports: transformers' Qwen2-VL processors (their video half) need it to load and save."""
    import importlib.util

    return importlib.util.find_spec("torchvision") is not None


def _qwen_processor(proc_cls, **parts):
    """A Qwen processor; without torchvision its video processor is left out (images work, saving does not).

    transformers checks every processor part's class, and the video processor's base class exists only
    with torchvision. Epoch images need no video half, so the check is skipped for it alone, in memory.
    """
    from transformers.processing_utils import ProcessorMixin

    if has_torchvision():
        from transformers import Qwen2VLVideoProcessor

        return proc_cls(video_processor=Qwen2VLVideoProcessor(), **parts)
    check = ProcessorMixin.check_argument_for_proper_class

    def lenient(self, name, arg):
        return None if name == "video_processor" and arg is None else check(self, name, arg)

    ProcessorMixin.check_argument_for_proper_class = lenient
    try:
        return proc_cls(video_processor=None, **parts)
    finally:
        ProcessorMixin.check_argument_for_proper_class = check


def _qwen_image_processor(**kwargs):
    from transformers import Qwen2VLImageProcessorPil  # the PIL backend: no torchvision needed

    return Qwen2VLImageProcessorPil(merge_size=2, temporal_patch_size=2, **kwargs)


def tiny_qwen2_vl(**kwargs):
    """A random tiny Qwen2-VL (see :func:`_tiny_qwen`)."""
    return _tiny_qwen("qwen2_vl", **kwargs)


def tiny_qwen2_5_vl(**kwargs):
    """A random tiny Qwen2.5-VL (see :func:`_tiny_qwen`)."""
    return _tiny_qwen("qwen2_5_vl", **kwargs)


def tiny_idefics3(*, image_size: int = 112, patch_size: int = 14, vision_hidden: int = 64, text_hidden: int = 64,
                  n_layers: int = 2, vocab_size: int = 400, init_range: float = 0.2, seed: int = 0):
    """A random tiny Idefics3 / SmolVLM (SigLIP + Llama, 2x2 pixel shuffle), one ``image_size`` tile per image."""
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessorPil,
        Idefics3Processor,
    )

    scale = 2
    if image_size % (patch_size * scale):
        raise ValueError(f"image_size {image_size} must be a multiple of patch_size * {scale} = {patch_size * scale}")
    specials = ["<unk>", "<|im_start|>", "<end_of_utterance>", "<pad>", "<fake_token_around_image>",
                IMAGE_PLACEHOLDER, "<global-img>"] + [f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)]
    corpus = _corpus("idefics3", lambda t, s: f"<|im_start|>User: {t}<end_of_utterance>\nAssistant: {s}<end_of_utterance>\n")
    tokenizer = tiny_tokenizer(corpus, vocab_size, specials=specials, bos="<|im_start|>", eos="<end_of_utterance>",
                               pad="<pad>", unk="<unk>", extra={}, chat_template=IDEFICS3_CHAT, add_bos=False)
    seq_len = (image_size // patch_size) ** 2 // scale**2
    vision = {"hidden_size": vision_hidden, "intermediate_size": 2 * vision_hidden, "num_hidden_layers": n_layers,
              "num_attention_heads": 4, "image_size": image_size, "patch_size": patch_size}
    text = {"model_type": "llama", "hidden_size": text_hidden, "intermediate_size": 2 * text_hidden,
            "num_hidden_layers": n_layers, "num_attention_heads": 4, "num_key_value_heads": 2,
            "vocab_size": len(tokenizer), "max_position_embeddings": 4096, "initializer_range": init_range,
            "pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id,
            "bos_token_id": tokenizer.bos_token_id, "tie_word_embeddings": False}
    config = Idefics3Config(vision_config=vision, text_config=text, scale_factor=scale,
                            image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_PLACEHOLDER),
                            tie_word_embeddings=False, pad_token_id=tokenizer.pad_token_id)
    _seeded(seed)
    model = Idefics3ForConditionalGeneration(config)
    image_processor = Idefics3ImageProcessorPil(size={"longest_edge": image_size},
                                                max_image_size={"longest_edge": image_size},
                                                image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    processor = Idefics3Processor(image_processor=image_processor, tokenizer=tokenizer, image_seq_len=seq_len,
                                  chat_template=IDEFICS3_CHAT)
    return model, processor


def tiny_paligemma(*, image_size: int = 112, patch_size: int = 14, vision_hidden: int = 64, text_hidden: int = 64,
                   n_layers: int = 2, vocab_size: int = 400, init_range: float = 0.2, seed: int = 0):
    """A random tiny PaliGemma (SigLIP + Gemma, prefix-LM attention over image and prompt)."""
    from transformers import (
        PaliGemmaConfig,
        PaliGemmaForConditionalGeneration,
        PaliGemmaProcessor,
        SiglipImageProcessorPil,
    )

    if image_size % patch_size:
        raise ValueError(f"image_size {image_size} must be a multiple of patch_size {patch_size}")
    corpus = _corpus("paligemma", lambda t, s: f"<bos>{t}\n{s}<eos>")
    tokenizer = tiny_tokenizer(corpus, vocab_size, specials=["<pad>", "<eos>", "<bos>", "<unk>", IMAGE_PLACEHOLDER],
                               bos="<bos>", eos="<eos>", pad="<pad>", unk="<unk>",
                               extra={"image_token": IMAGE_PLACEHOLDER}, chat_template=None, add_bos=False)
    n_image = (image_size // patch_size) ** 2
    vision = {"model_type": "siglip_vision_model", "hidden_size": vision_hidden,
              "intermediate_size": 2 * vision_hidden, "num_hidden_layers": n_layers, "num_attention_heads": 4,
              "image_size": image_size, "patch_size": patch_size, "projection_dim": text_hidden,
              "vision_use_head": False}
    text = {"model_type": "gemma", "hidden_size": text_hidden, "intermediate_size": 2 * text_hidden,
            "num_hidden_layers": n_layers, "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 16,
            "vocab_size": len(tokenizer), "max_position_embeddings": 4096, "initializer_range": init_range,
            "pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id,
            "bos_token_id": tokenizer.bos_token_id}
    config = PaliGemmaConfig(vision_config=vision, text_config=text, projection_dim=text_hidden,
                             image_token_index=tokenizer.image_token_id, tie_word_embeddings=False)
    _seeded(seed)
    model = PaliGemmaForConditionalGeneration(config)
    image_processor = SiglipImageProcessorPil(size={"height": image_size, "width": image_size},
                                              image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    image_processor.image_seq_length = n_image
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=tokenizer)
    processor.image_seq_length = n_image
    return model, processor


# --------------------------------------------------------------------------- the registry

FAMILIES: dict[str, FamilyFacts] = {
    "llava_next": FamilyFacts(
        model_type="llava_next", model_class="LlavaNextForConditionalGeneration", processor_class="LlavaNextProcessor",
        hub_id="llava-hf/llava-v1.6-mistral-7b-hf", checkpoint_file="llava_v1.6_mistral_7b.json",
        image_text=IMAGE_PLACEHOLDER,
        answer_as_suffix=False, positions="from0", vision_prefix="model.vision_tower",
        projector_prefix="model.multi_modal_projector", language_prefix="model.language_model",
        vision_layers="encoder.layers", unused_vision_layers=_llava_unused_layers, nested_images=False, image_tokens=_placeholder_tokens,
        tiny=tiny_llava_next, chat_template=LLAVA_CHAT),
    "qwen2_vl": FamilyFacts(
        model_type="qwen2_vl", model_class="Qwen2VLForConditionalGeneration", processor_class="Qwen2VLProcessor",
        hub_id="Qwen/Qwen2-VL-2B-Instruct", checkpoint_file="qwen2_vl_2b_instruct.json",
        image_text="<|vision_start|><|image_pad|><|vision_end|>",
        answer_as_suffix=False, positions="mrope", vision_prefix="model.visual",
        projector_prefix="model.visual.merger", language_prefix="model.language_model",
        vision_layers="blocks", unused_vision_layers=_all_layers_used, nested_images=False, image_tokens=_placeholder_tokens,
        tiny=tiny_qwen2_vl, chat_template=QWEN_CHAT),
    "qwen2_5_vl": FamilyFacts(
        model_type="qwen2_5_vl", model_class="Qwen2_5_VLForConditionalGeneration", processor_class="Qwen2_5_VLProcessor",
        hub_id="Qwen/Qwen2.5-VL-3B-Instruct", checkpoint_file="qwen2_5_vl_3b_instruct.json",
        image_text="<|vision_start|><|image_pad|><|vision_end|>",
        answer_as_suffix=False, positions="mrope", vision_prefix="model.visual",
        projector_prefix="model.visual.merger", language_prefix="model.language_model",
        vision_layers="blocks", unused_vision_layers=_all_layers_used, nested_images=False, image_tokens=_placeholder_tokens,
        tiny=tiny_qwen2_5_vl, chat_template=QWEN_CHAT),
    "idefics3": FamilyFacts(
        model_type="idefics3", model_class="Idefics3ForConditionalGeneration", processor_class="Idefics3Processor",
        hub_id="HuggingFaceTB/SmolVLM-256M-Instruct", checkpoint_file="smolvlm_256m_instruct.json",
        image_text=IMAGE_PLACEHOLDER,
        answer_as_suffix=False, positions="from0", vision_prefix="model.vision_model",
        projector_prefix="model.connector", language_prefix="model.text_model",
        vision_layers="encoder.layers", unused_vision_layers=_all_layers_used, nested_images=True, image_tokens=_idefics3_tokens,
        tiny=tiny_idefics3, chat_template=IDEFICS3_CHAT),
    "paligemma": FamilyFacts(
        model_type="paligemma", model_class="PaliGemmaForConditionalGeneration", processor_class="PaliGemmaProcessor",
        hub_id="google/paligemma-3b-pt-224", checkpoint_file="paligemma_3b_pt_224.json",
        image_text=IMAGE_PLACEHOLDER,
        answer_as_suffix=True, positions="from1", vision_prefix="model.vision_tower",
        projector_prefix="model.multi_modal_projector", language_prefix="model.language_model",
        vision_layers="vision_model.encoder.layers", unused_vision_layers=_all_layers_used, nested_images=False, image_tokens=_placeholder_tokens,
        tiny=tiny_paligemma, chat_template=None),
}


def get_family(name: str) -> FamilyFacts:
    """The facts of family ``name``; a ValueError names the registered families otherwise."""
    if name not in FAMILIES:
        raise ValueError(f"VLM family {name!r} not registered; choose from {sorted(FAMILIES)}")
    return FAMILIES[name]


def family_of_processor(processor) -> str:
    """The registered family whose processor class ``processor`` is (a loaded processor knows no model_type)."""
    name = type(processor).__name__
    for family, facts in FAMILIES.items():
        if facts.processor_class == name:
            return family
    raise ValueError(f"processor {name} belongs to no registered VLM family; supported: "
                     f"{sorted(f.processor_class for f in FAMILIES.values())}")


def family_of(config) -> str:
    """The registered family of a model config (its ``model_type``), or a ValueError naming the supported ones."""
    model_type = config["model_type"] if isinstance(config, dict) else getattr(config, "model_type", None)
    for name, facts in FAMILIES.items():
        if facts.model_type == model_type:
            return name
    raise ValueError(f"model_type {model_type!r} is no registered VLM family; supported: "
                     f"{sorted(f.model_type for f in FAMILIES.values())}")
