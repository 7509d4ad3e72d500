"""Prompts, the VLM collator (loss on the answer tokens only) and band dropout for training.

Rendered datasets are loaded with :func:`psgvlm.image.dataset.load_dataset`.

A training example is ``chat(user=template with <image>) + " " + stage + "</s>"`` (per family:
:mod:`psgvlm.vlm.families`; PaliGemma's answer is its processor's suffix). The prompt is built with the
processor's chat template; the answer's token ids are derived once per template by
tokenising prompt and prompt+answer and checking the prompt is an exact prefix, so training labels
and scoring use the very same tokens. Image tokens are never truncated: a too-long sequence raises.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from psgvlm.stages import STAGES
from psgvlm.vlm.context import ContextDataset

PROMPTS_DIR = Path(__file__).resolve().parent.parent / "prompts"
IGNORE_INDEX = -100


# --------------------------------------------------------------------------- prompts


def load_prompts(path=None) -> dict:
    """The prompt file (``psgvlm/prompts/sleep_stage.yaml`` by default), every template validated."""
    import yaml

    path = Path(path) if path else PROMPTS_DIR / "sleep_stage.yaml"
    if not path.exists():
        raise FileNotFoundError(f"prompt file {path} not found")
    with open(path, encoding="utf-8") as f:
        prompts = yaml.safe_load(f)
    if not isinstance(prompts, dict) or not isinstance(prompts.get("templates"), dict):
        raise ValueError(f"{path}: expected a mapping with a 'templates' mapping")
    placeholder = prompts.get("image_placeholder", "<image>")
    for name, text in prompts["templates"].items():
        validate_template(text, placeholder, name=name)
    answers = prompts.get("answers", list(STAGES))
    if list(answers) != list(STAGES):
        raise ValueError(f"{path}: answers {answers} must be the stages {list(STAGES)} in order")
    return prompts


def validate_template(text: str, placeholder: str = "<image>", name: str = "template") -> str:
    """Raise unless ``text`` holds the image placeholder exactly once."""
    if not isinstance(text, str):
        raise ValueError(f"prompt {name!r} must be a string, got {type(text).__name__}")
    n = text.count(placeholder)
    if n != 1:
        raise ValueError(f"prompt {name!r} must contain the image placeholder {placeholder!r} exactly "
                         f"once; found {n} in {text!r}")
    return text


def get_template(name_or_text: str | None = None, *, channels=None, prompts_path=None) -> str:
    """A template by name from the prompt file, or a literal template containing ``<image>``."""
    prompts = load_prompts(prompts_path)
    name = name_or_text or prompts.get("default_template", "default")
    if name in prompts["templates"]:
        text = prompts["templates"][name]
    elif "<" in name or " " in name:
        text = validate_template(name, prompts.get("image_placeholder", "<image>"), name="custom")
    else:
        raise ValueError(f"prompt {name!r} not found; choose from {sorted(prompts['templates'])} "
                         f"or pass a template containing '<image>'")
    if "{channels}" in text:
        text = text.replace("{channels}", ", ".join(channels) if channels else "the recorded channels")
    return text


def prompt_text(processor, template: str) -> str:
    """The full prompt (up to where the answer starts) for a user ``template``, in the processor's family."""
    from psgvlm.vlm.families import family_of_processor, get_family
    from psgvlm.vlm.families import prompt_text as family_prompt

    return family_prompt(get_family(family_of_processor(processor)), processor, template)


def answer_text(processor, template: str, stage: str) -> str:
    """The text that follows :func:`prompt_text` for ``stage`` (e.g. ``" N2</s>"``)."""
    from psgvlm.vlm.families import answer_text as family_answer
    from psgvlm.vlm.families import family_of_processor, get_family

    return family_answer(get_family(family_of_processor(processor)), processor, template, stage)


def answer_token_ids(processor, template: str) -> list[list[int]]:
    """Token ids of each stage's answer after the prompt, in STAGES order.

    Derived from the full tokenisation so boundary effects are exact; raises if the tokenizer merges
    across the prompt/answer boundary or two answers tokenise identically
    (:func:`psgvlm.vlm.families.answer_token_ids`).
    """
    from psgvlm.vlm.families import answer_token_ids as family_answers
    from psgvlm.vlm.families import family_of_processor, get_family

    return family_answers(get_family(family_of_processor(processor)), processor, template)


# --------------------------------------------------------------------------- collator


@dataclass
class VLMCollator:
    """Batches ``{"image": PIL, "label": int}`` rows for any registered VLM family (the processor's).

    ``mode="train"``: prompt + answer, the family's training padding (right), ``labels`` = answer tokens
    only (prompt, image and padding tokens are -100). ``mode="score"``: prompt only, the family's
    scoring padding (left), no labels. Every row must hold exactly the image tokens the processor's
    accounting gives its image (none truncated); ``max_length`` raises instead of truncating.
    """

    processor: object
    template: str
    mode: str = "train"
    max_length: int | None = None
    answers: list = field(init=False)

    def __post_init__(self):
        from psgvlm.vlm.families import family_of_processor, get_family

        if self.mode not in ("train", "score"):
            raise ValueError(f"mode {self.mode!r} not allowed; choose 'train' or 'score'")
        self.family = family_of_processor(self.processor)
        self.facts = get_family(self.family)
        self.prompt = prompt_text(self.processor, self.template)
        self.answers = answer_token_ids(self.processor, self.template)
        self.answer_texts = [answer_text(self.processor, self.template, s) for s in STAGES]

    def __call__(self, rows: list[dict]) -> dict:
        import torch

        images = [r["image"].convert("RGB") for r in rows]
        tok = self.processor.tokenizer
        kwargs = {}
        if self.mode == "train":
            labels_in = [int(r["label"]) for r in rows]
            bad = [v for v in labels_in if not 0 <= v < len(STAGES)]
            if bad:
                raise ValueError(f"labels {bad} outside 0..{len(STAGES) - 1} (unscored epochs must not be trained on)")
            if self.facts.answer_as_suffix:
                texts, kwargs["suffix"] = [self.prompt] * len(rows), [self.answer_texts[v] for v in labels_in]
            else:
                texts = [self.prompt + self.answer_texts[v] for v in labels_in]
            tok.padding_side = self.facts.train_padding
        else:
            texts = [self.prompt] * len(rows)
            tok.padding_side = self.facts.score_padding
        batch = self.processor(images=[[im] for im in images] if self.facts.nested_images else images, text=texts,
                               padding=True, truncation=False, return_tensors="pt", **kwargs)
        batch.pop("labels", None)  # PaliGemma's processor labels the suffix itself; ours are built below
        n_tokens = batch["input_ids"].shape[1]
        if self.max_length is not None and n_tokens > self.max_length:
            raise ValueError(f"sequence of {n_tokens} tokens exceeds max_length {self.max_length}; image "
                             f"tokens are never truncated: raise max_length or pin the anyres grid")
        image_id = self.processor.image_token_id
        have = (batch["input_ids"] == image_id).sum(1).tolist()
        want = self.facts.image_tokens(self.processor, [(im.height, im.width) for im in images])
        if have != want:
            raise ValueError(f"image tokens per row {have} differ from the processor's accounting {want} "
                             f"({self.family}): an image token was lost or duplicated")
        if self.mode == "train":
            labels = torch.full_like(batch["input_ids"], IGNORE_INDEX)
            lengths = batch["attention_mask"].sum(1).tolist()
            for i, v in enumerate(labels_in):
                ans = torch.tensor(self.answers[v])
                end = int(lengths[i])
                span = batch["input_ids"][i, end - len(ans): end]
                assert torch.equal(span, ans), f"answer tokens misplaced: {span.tolist()} != {ans.tolist()}"
                labels[i, end - len(ans): end] = ans
            batch["labels"] = labels
        return dict(batch)


# --------------------------------------------------------------------------- band dropout


class BandDropout:
    """Draw random channel bands of already rendered images flat, exactly as ``psgvlm stage`` draws a missing channel.

    Real recordings fill few of a run's bands (often one EEG channel); ``psgvlm stage`` leaves the
    others flat, and a flat band is drawn as a line along the band's middle (scaled value 0), not as
    background. Rather than re-render the dataset, each flattened band's pixel rows are replaced by
    those of a flat line rendered once with the dataset's own settings: with ``band_gap_px >= 1`` no
    pixel row holds ink of two bands, so the result is pixel for pixel the image of the same epoch
    with those channels flat.

    Parameters
    ----------
    dataset_meta : dict
        The rendered dataset's meta (channels, modalities, sfreq, ``settings.render``).
    p : float
        Probability, in [0, 1], that an image gets any band drawn flat.
    single_eeg_prob : float
        Of those, the probability, in [0, 1], that one EEG band alone is kept (every other band flat,
        the commonest real upload); otherwise every band is flat with probability one half, one EEG
        band always kept.
    """

    def __init__(self, dataset_meta: dict, *, p: float, single_eeg_prob: float = 0.5):
        from psgvlm.image.dataset import band_layout
        from psgvlm.image.renderer import RenderSettings, render_epoch

        for name, v in (("band_dropout", p), ("single_eeg_prob", single_eeg_prob)):
            if not (isinstance(v, int | float) and 0.0 <= v <= 1.0):
                raise ValueError(f"{name}={v!r}: must be a probability in [0, 1]")
        self.p, self.single_eeg_prob = float(p), float(single_eeg_prob)
        settings = RenderSettings.from_dict(dataset_meta["settings"]["render"])
        if settings.band_gap_px < 1:
            raise ValueError(f"band dropout needs band_gap_px >= 1 (no pixel row shared by two bands); the dataset "
                             f"was rendered with band_gap_px={settings.band_gap_px}")
        self.bands = band_layout(dataset_meta)
        self.eeg = np.array([i for i, b in enumerate(self.bands) if b["modality"] == "EEG"], dtype=np.int64)
        if not len(self.eeg):
            raise ValueError(f"band dropout keeps an EEG band, and the dataset has none: {dataset_meta['channels']}")
        n_times = int(round(float(dataset_meta["sfreq"]) * float(dataset_meta.get("epoch_s", 30.0))))
        self.size = settings.size
        self.flat_image = render_epoch(np.zeros((len(self.bands), n_times), np.float32), settings)

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """(n_bands,) bool: the bands to draw flat in one image (all False with probability ``1 - p``)."""
        n = len(self.bands)
        flat = np.zeros(n, dtype=bool)
        if rng.random() >= self.p:
            return flat
        keep = int(rng.choice(self.eeg))
        if rng.random() < self.single_eeg_prob:
            flat[:] = True
        else:
            flat = rng.random(n) < 0.5
        flat[keep] = False
        return flat

    def apply(self, image, flat: np.ndarray):
        """A new RGB image: ``image`` with the bands where ``flat`` is True drawn flat."""
        from PIL import Image

        arr = np.array(image.convert("RGB"))
        if arr.shape[:2] != (self.size, self.size):
            raise ValueError(f"image of {arr.shape[1]}x{arr.shape[0]} px; the dataset's settings draw {self.size} px")
        for b in np.flatnonzero(flat):
            top, bottom = self.bands[b]["top"], self.bands[b]["bottom"]
            arr[top:bottom] = self.flat_image[top:bottom]
        return Image.fromarray(arr)

    def __call__(self, image, rng: np.random.Generator):
        """``image`` with a random draw of flat bands (:meth:`draw`, :meth:`apply`)."""
        flat = self.draw(rng)
        return self.apply(image, flat) if flat.any() else image


class BandDropoutDataset(ContextDataset):
    """A map-style view of a training split whose images get :class:`BandDropout`.

    Image ``i`` draws from ``np.random.default_rng([*seed, i])``: the same seed (e.g. the run's seed
    and the pass over the data) gives the same images in any order and after a resume. It is the K=0
    case of :class:`psgvlm.vlm.context.ContextDataset` (one copy of the seeding and drawing).
    """

    def __init__(self, ds, dropout: BandDropout, seed: tuple[int, ...]):
        super().__init__(ds, 0, dropout=dropout, seed=seed)
