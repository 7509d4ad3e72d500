"""What the reproduce scripts share: a plan of commands, run in order or, with ``--dry-run``, printed
and checked without data or a GPU.

A script lists its commands top to bottom (``plan.cmd``, ``plan.recipe``, or the step builders below
that two scripts share: render, the VLM, the image and signal baselines) and ends with ``plan.finish()``.
Before anything runs, in both modes, every recipe command is parsed by the recipe itself: its ``Args``
dataclass through ``psgvlm.training.parse_args`` (the YAML config and every flag, as the launched
recipe will see them), including recipe commands inside ``--train-cmd`` / ``--predict-cmd``.

``--dry-run`` then prints every command and checks it:

- the flags of every ``psgvlm`` / ``python -m evals`` command against that command's ``--help``;
- every distinct model, built at the configured (paper) size: LLaVA-NeXT and the image classifiers on
  the meta device (parameter and trainable-parameter counts; classifiers run one meta forward pass at
  their input size; LLaVA's image and sequence token counts against its context), sleep2vec at paper
  size on the meta device (counts) plus one real forward of the same configuration at reduced width
  and the full sequence length, sDREAMER and NAP one real forward at paper size on the CPU.

A real run executes the commands in order from the repository root (``python``, ``psgvlm`` and
``accelerate`` all through this interpreter), skips a step whose output file already exists (so a
re-run continues where it stopped; delete the output to redo a step) and appends each command with
its exit status to ``WORK/commands.log``; it stops at the first failing command, naming it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import runpy
import shlex
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from unittest import mock

from psgvlm.training import field_help

REPO = Path(__file__).resolve().parents[2]
MODEL_DIR_7B = REPO.parent / "shared" / "models" / "llava-v1.6-mistral-7b-hf"  # config + processor, no weights
CONFIG_7B = REPO / "benchmarks" / "llava_v1.6_mistral_7b_config.json"  # the same config.json, in the repo
IMAGE_PX = 336  # `psgvlm render` default --size: the side of every epoch image
SEEDS = (0, 1, 2, 3, 4)  # the PSG-image paper's five splits
_HELP_OF = cache(field_help)  # a recipe dataclass's --help texts, read from its source once per plan
# What --train-cmd / --predict-cmd placeholders stand for when their recipe command is parsed in a dry run.
PLACEHOLDERS = {"dataset": "DATASET", "signal_data": "SIGNAL_DATA", "out": "OUT", "run": "RUN", "seed": "0",
                "fraction": "0.7", "manifest": "MANIFEST"}
# The paper's datasets: reader name -> the PSG-LLaVA config of recipes/llava_isruc.py (one recipe, any
# rendered dataset; the configs differ in data and SHHS's single epoch).
LLAVA_CONFIGS = {"isruc": "llava_isruc.yaml", "mass": "llava_mass.yaml", "shhs": "llava_shhs.yaml"}
# The paper's pretrained image baselines (its row names) -> recipes/image_classifier.py config.
IMAGE_BASELINES = {"Resnet152": "resnet_isruc.yaml", "Resnet101": "resnet101_isruc.yaml",
                   "ConvNext": "convnext_isruc.yaml", "Swin-ViT": "swin_isruc.yaml", "ViT": "vit_isruc.yaml",
                   "CLIP (vision encoder)": "clip_linear_isruc.yaml"}
# The signal baselines' paper-size configs (sleep2vec-medium, as the paper's default).
SIGNAL_CONFIGS = {"sdreamer": "sdreamer_paper.yaml", "sleep2vec_pretrain": "sleep2vec_medium_pretrain.yaml",
                  "sleep2vec_finetune": "sleep2vec_paper_finetune.yaml", "nap": "nap_paper.yaml"}


def slug(text: str) -> str:
    """A folder name for a model or setting name: ``"Swin-ViT"`` -> ``"swin-vit"``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_").lower()


def base_parser(doc: str, datasets=()) -> argparse.ArgumentParser:
    """The options every reproduce script has (work dir, seeds, accelerate config, --dry-run) and one
    ``--<dataset>`` recordings option per name in ``datasets`` (read back by :func:`dataset_paths`)."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0], epilog="\n\n".join(doc.split("\n\n")[1:]),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="runs/reproduce",
                    help="work dir: data/, runs/, results/ and reports/ go under it (shared by the scripts, so "
                         "one script reuses what another trained)")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS), help="split and training seeds")
    ap.add_argument("--accelerate-config", help="accelerate config for the GPU recipes (recipes/accelerate/*.yaml)")
    ap.add_argument("--num-proc", type=int, default=4, help="render worker processes")
    ap.add_argument("--model-dir", default=str(MODEL_DIR_7B),
                    help="dry run: the 7B config/processor folder (no weights) for parameter and token counts")
    ap.add_argument("--recipe-flags", nargs=2, action="append", default=[], metavar=("RECIPE", "FLAGS"),
                    help='flags added to every command of one recipe, e.g. sdreamer.py "--max_steps 20" (a quick '
                         "smoke run); they are parsed and recorded like the config's")
    ap.add_argument("--dry-run", action="store_true",
                    help="no data, no GPU: print every command, parse every config, build every model at paper "
                         "size on the meta device and check shapes")
    for dataset in datasets:
        ap.add_argument(f"--{dataset}", help=f"{dataset.upper()} recordings as downloaded "
                                             f"(psgvlm render --format {dataset} --input)")
    return ap


def run_main(main) -> int:
    """A script's exit status: ``main()``'s, or 2 with one line naming what was refused (a recipe flag or
    config key, a missing config) instead of a traceback."""
    try:
        return main()
    except (ValueError, FileNotFoundError) as err:
        print(f"{Path(sys.argv[0]).name}: {err}", file=sys.stderr)
        return 2


def dataset_paths(ap: argparse.ArgumentParser, args, datasets) -> dict[str, str]:
    """``{dataset: absolute recordings path}`` of the ``--<dataset>`` options given (at least one)."""
    paths = {d: os.path.abspath(getattr(args, d)) for d in datasets if getattr(args, d)}
    if not paths:
        ap.error(f"give at least one dataset: {', '.join('--' + d for d in datasets)}")
    return paths


def flags(**kw) -> list[str]:
    """``--key value`` pairs in order; lists spread, booleans as true/false, None left out."""
    out = []
    for k, v in kw.items():
        if v is None:
            continue
        out.append(f"--{k}")
        if isinstance(v, bool):
            out.append(str(v).lower())
        elif isinstance(v, list | tuple):
            out += [str(x) for x in v]
        else:
            out.append(str(v))
    return out


# ----------------------------------------------------------------------------- parsing recipe commands
class _Parsed(Exception):
    def __init__(self, args):
        super().__init__("parsed")
        self.parsed = args


def recipe_of(argv: list[str]) -> int | None:
    """Index of the ``recipes/<name>.py`` element of a command line, or None."""
    return next((i for i, a in enumerate(argv) if re.fullmatch(r"recipes/\w+\.py", a)), None)


def parse_recipe(argv: list[str]):
    """The ``Args`` instance the recipe of ``argv`` parses from its config and flags, without running it.

    The first time, the recipe file is run up to its call of ``psgvlm.training.parse_args`` (every
    recipe parses its arguments first), which hands over the recipe's dataclass and stops the recipe;
    the real parser then parses ``argv`` with it.
    """
    from psgvlm import training

    i = recipe_of(argv)
    args_type = _recipe_args_type(argv[i])
    # --help texts are read from the class's source once, not on every one of a plan's parses
    with mock.patch.object(training, "field_help", _HELP_OF):
        try:
            return training.parse_args(args_type, argv[i + 1:])
        except SystemExit as stop:  # argparse refused a flag value (its message is on stderr)
            raise ValueError(f"{argv[i]} refused its arguments (exit {stop.code}): {shlex.join(argv)}") from None
        except (ValueError, FileNotFoundError) as err:  # an unknown flag or YAML key, a missing config
            raise ValueError(f"{argv[i]} refused its arguments ({err}): {shlex.join(argv)}") from None


@cache
def _recipe_args_type(recipe: str):
    """The dataclass a recipe file hands to ``psgvlm.training.parse_args`` (the recipe stops there)."""
    from psgvlm import training

    path = REPO / recipe

    def capture(dataclass_type, args=None):
        raise _Parsed(dataclass_type)

    with mock.patch.object(training, "parse_args", capture), mock.patch.object(sys, "argv", [str(path)]):
        try:
            runpy.run_path(str(path), run_name="__main__")
        except _Parsed as done:
            return done.parsed
    raise RuntimeError(f"{recipe} ran to the end without calling psgvlm.training.parse_args")


# How a printed command's first word runs: with this interpreter, so every step sees the same psgvlm.
LAUNCHERS = {"python": [], "psgvlm": ["-m", "psgvlm.cli"], "accelerate": ["-m", "accelerate.commands.accelerate_cli"]}


def executable(argv: list[str]) -> list[str]:
    """``argv`` as run: ``python``, ``psgvlm`` and ``accelerate`` through this interpreter (``LAUNCHERS``)."""
    if argv[0] not in LAUNCHERS:
        raise ValueError(f"command {argv[0]!r} not runnable here; commands start with one of {list(LAUNCHERS)}")
    return [sys.executable, *LAUNCHERS[argv[0]], *argv[1:]]


def tool_of(argv: list[str]) -> tuple[str, ...] | None:
    """The CLI a command runs (``("psgvlm", "render")``, ``("python", "-m", "evals", "metrics")``), else None."""
    if argv[0] == "psgvlm":
        return tuple(argv[:2])
    if argv[:3] == ["python", "-m", "evals"]:
        return tuple(argv[:4])
    return None


@cache
def tool_options(tool: tuple[str, ...]) -> frozenset[str]:
    """Every ``--option`` the tool's ``--help`` lists (one subprocess per tool)."""
    r = subprocess.run(executable([*tool, "--help"]), cwd=REPO, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(tool)} --help failed: {r.stderr[-500:]}")
    return frozenset(re.findall(r"(?<![\w-])(--[A-Za-z][\w-]*)", r.stdout))


# ----------------------------------------------------------------------------- dry-run model checks
def _count(model) -> tuple[int, int]:
    return (sum(p.numel() for p in model.parameters()),
            sum(p.numel() for p in model.parameters() if p.requires_grad))


def _m(n: int) -> str:
    return f"{n / 1e9:.2f} B" if n >= 1e9 else f"{n / 1e6:.1f} M" if n >= 1e5 else f"{n / 1e3:.1f} k"


def check_llava(args, plan):
    """LLaVA-NeXT on the meta device: parameters, LoRA trainables, image and sequence tokens vs context."""
    k = getattr(args, "context", 0)  # --context K: one strip of 2K+1 epochs per example
    key = ("llava", args.model, args.train, args.lora_r, args.lora_alpha, args.lora_vision, args.pin_grid, args.prompt,
           args.per_device_train_batch_size, k)

    def build():
        import numpy as np
        import torch
        from peft import get_peft_model
        from PIL import Image
        from transformers import LlavaNextConfig, LlavaNextForConditionalGeneration

        from psgvlm.vlm.context import context_template, pin_strip_grid
        from psgvlm.vlm.data import VLMCollator, get_template
        from psgvlm.vlm.model import load_processor, lora_config, trainable_parameters

        model_dir = Path(args.model) if Path(args.model).is_dir() else Path(plan.args.model_dir)
        source = model_dir / "config.json" if (model_dir / "config.json").is_file() else CONFIG_7B
        config = LlavaNextConfig.from_dict(json.loads(source.read_text(encoding="utf-8")))
        with torch.device("meta"):
            model = LlavaNextForConditionalGeneration(config)
        total, _ = _count(model)
        lines = [f"LLaVA-NeXT {args.model} (architecture from {source.relative_to(source.parents[1])}): "
                 f"{_m(total)} parameters on the meta device"]
        if args.train:
            with torch.device("meta"):
                peft = get_peft_model(model, lora_config(model, r=args.lora_r, alpha=args.lora_alpha,
                                                         dropout=args.lora_dropout, vision=args.lora_vision))
            tp = trainable_parameters(peft)
            lines.append(f"  LoRA r {args.lora_r}: {_m(tp['trainable'])} trainable ({tp['share']:.2%}), per part "
                         + ", ".join(f"{k} {_m(v)}" for k, v in tp["per_part"].items() if v))
        side = config.vision_config.image_size
        if args.pin_grid and side != IMAGE_PX:
            raise ValueError(f"pin_grid pins one {side}-px tile but the epoch images are {IMAGE_PX} px")
        context = config.text_config.max_position_embeddings
        if (model_dir / "processor_config.json").is_file() or (model_dir / "preprocessor_config.json").is_file():
            proc = load_processor(str(model_dir), pin_grid=args.pin_grid)
            if args.pin_grid and k:
                pin_strip_grid(model, proc, k)
            white = Image.fromarray(np.full((IMAGE_PX, IMAGE_PX * (2 * k + 1), 3), 255, np.uint8))
            batch = VLMCollator(proc, context_template(get_template(args.prompt), k), mode="train")(
                [{"image": white, "label": k} for k in range(5)])  # every answer: the longest sets the length
            image_tokens = int((batch["input_ids"][0] == config.image_token_index).sum())
            seq = int(batch["input_ids"].shape[1])
            how = f"processor of {model_dir.name}, prompt {args.prompt!r}"
        elif args.pin_grid:  # one pinned tile: base grid + the tile's grid with one newline token per row
            per_side = side // config.vision_config.patch_size
            image_tokens, seq = per_side * per_side + per_side * (per_side * (2 * k + 1) + 1), None
            how = "formula (no processor at --model-dir; prompt text not counted)"
        else:
            raise ValueError(f"no processor at {model_dir} to count the anyres grid's image tokens (give --model-dir)")
        if (seq or image_tokens) > context:
            raise ValueError(f"{seq or image_tokens} tokens per epoch exceed the context of {context}")
        lines.append(f"  one {IMAGE_PX}x{IMAGE_PX} epoch" + (f" in a strip of {2 * k + 1}" if k else "")
                     + f": {image_tokens} image tokens"
                     + (f", {seq} tokens with prompt and answer" if seq else "")
                     + f" (context {context}; {how}); train batch {args.per_device_train_batch_size} x {seq or '?'}")
        return lines
    return key, build


def check_classifier(args, plan):
    """An image classifier at its preset's full size on the meta device, one forward at its input size."""
    from psgvlm.vlm.classifiers import PRETRAINED

    preset = args.size
    if args.checkpoint:
        if args.checkpoint not in PRETRAINED:
            raise ValueError(f"checkpoint {args.checkpoint!r}: a dry run builds the architectures of the hub ids "
                             f"in psgvlm.vlm.classifiers.PRETRAINED ({sorted(PRETRAINED)})")
        arch, preset = PRETRAINED[args.checkpoint]
        if arch != args.arch:
            raise ValueError(f"checkpoint {args.checkpoint!r} is a {arch}, not the arch {args.arch!r} asked for")
    key = ("classifier", args.arch, preset, args.image_size, args.trainable_layers, args.train_encoder)

    def build():
        import torch

        from psgvlm.stages import N_STAGES
        from psgvlm.vlm.classifiers import build_classifier

        with torch.device("meta"):
            model, pre = build_classifier(args.arch, size=preset, image_size=args.image_size or None,
                                          train_encoder=args.train_encoder, trainable_layers=args.trainable_layers)
            logits = model(pixel_values=torch.empty(2, 3, pre.size, pre.size)).logits
        if tuple(logits.shape) != (2, N_STAGES):
            raise ValueError(f"{args.arch} gives logits {tuple(logits.shape)}, expected (2, {N_STAGES})")
        total, trainable = _count(model)
        return [f"{args.arch} {preset} ({args.checkpoint or 'from scratch'}): {_m(total)} parameters, "
                f"{_m(trainable)} trainable (trainable_layers {args.trainable_layers}); "
                f"{pre.size}x{pre.size} input -> logits {tuple(logits.shape)}"]
    return key, build


def _sleep2vec_lines(backbone_kw: dict, size: str, seq_len: int, stager=None) -> list[str]:
    """sleep2vec at ``size`` on the meta device (counts) and one real forward at width 32, length ``seq_len``."""
    import torch

    from psgvlm.baselines.sleep2vec import (
        SIZES,
        Sleep2vec,
        Sleep2vecConfig,
        Sleep2vecStager,
        Sleep2vecStagerConfig,
    )

    def make(dims, device):
        with torch.device(device):
            backbone = Sleep2vec(config=Sleep2vecConfig(max_epochs=seq_len, **backbone_kw, **dims))
            return backbone if stager is None else Sleep2vecStager(backbone=backbone,
                                                                   config=Sleep2vecStagerConfig(**stager))
    full = make(SIZES[size], "meta")
    total, trainable = _count(full)
    small = make(dict(hidden_size=32, n_layers=1, n_heads=4), "cpu").eval()
    cfg = small.config
    mods = small.modalities if stager is not None else cfg.modalities
    x = {m: torch.zeros(1, seq_len, cfg.n_times(m)) for m in mods}
    with torch.no_grad():
        if stager is not None:
            out = tuple(small(x).shape)
        else:
            out = tuple(small.embed(x)[mods[0]].shape)
    what = "stager (fine-tune)" if stager is not None else "pre-training model"
    return [f"sleep2vec-{size} {what}, modalities {list(mods)}: {_m(total)} parameters, {_m(trainable)} trainable "
            f"(meta device); forward at width 32 over {seq_len} epochs: "
            + ", ".join(f"{m} {tuple(v.shape)}" for m, v in x.items()) + f" -> {out}"]


def check_sleep2vec_pretrain(args, plan):
    key = ("sleep2vec-pretrain", args.size, tuple(args.modalities), args.tokenizer_input, args.seq_len)
    kw = dict(modalities=tuple(args.modalities), loss=args.loss, mask_prob=args.mask_prob,
              tokenizer_input=args.tokenizer_input)
    return key, lambda: _sleep2vec_lines(kw, args.size, args.seq_len)


def check_sleep2vec_finetune(args, plan):
    """The stager on the backbone of the plan's pre-training step that writes ``args.pretrained``."""
    if args.from_run:
        return None
    pre = plan.outputs.get(str(args.pretrained))
    if pre is None:
        raise ValueError(f"--pretrained {args.pretrained} is not written by an earlier step of this plan")
    mods = tuple(args.modalities or pre.modalities)
    missing = [m for m in mods if m not in pre.modalities]
    if missing:
        raise ValueError(f"fine-tune modalities {missing} are not pre-trained (pre-training: {pre.modalities})")
    stager = dict(modalities=mods, lora_r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
                  use_lora=args.use_lora, fusion=args.fusion, train_tokenizers=args.train_tokenizers)
    key = ("sleep2vec-finetune", pre.size, tuple(pre.modalities), pre.tokenizer_input, mods, args.seq_len)
    kw = dict(modalities=tuple(pre.modalities), tokenizer_input=pre.tokenizer_input)
    return key, lambda: _sleep2vec_lines(kw, pre.size, args.seq_len, stager)


def check_sdreamer(args, plan):
    """sDREAMER at its size: one real forward over K epochs of EEG and EMG on the CPU."""
    if args.from_run:
        return None
    key = ("sdreamer", args.size, args.seq_len, args.epoch_mix)

    def build():
        import torch

        from psgvlm.baselines.sdreamer import SIZES, SDreamer, SDreamerConfig

        config = SDreamerConfig(seq_len=args.seq_len, epoch_mix=args.epoch_mix, **SIZES[args.size])
        model = SDreamer(config=config).eval()
        n = int(round(config.epoch_s * config.sfreq))
        with torch.no_grad():
            out = model({"EEG": torch.zeros(1, args.seq_len, n), "EMG": torch.zeros(1, args.seq_len, n)})
        total, _ = _count(model)
        return [f"sDREAMER {args.size} (K={args.seq_len}, {config.n_patches} patches/epoch): {_m(total)} parameters; "
                f"EEG + EMG (1, {args.seq_len}, {n}) -> {tuple(out.shape)}"]
    return key, build


def check_nap(args, plan):
    """NAP at its size: one real forward over max_len epochs of the plan's predictors on six channels."""
    key = ("nap", args.d_model, args.n_layers, args.n_heads, tuple(args.axes), len(args.predictors), args.max_len)

    def build():
        import torch

        from psgvlm.baselines.nap import NAP, NAPConfig

        model = NAP(config=NAPConfig(d_model=args.d_model, n_layers=args.n_layers, n_heads=args.n_heads,
                                     axes=tuple(args.axes))).eval()
        p = torch.softmax(torch.zeros(1, 6, args.max_len, len(args.predictors), 5), -1)
        with torch.no_grad():
            logits, _ = model.forward_grid(p)
        total, _ = _count(model)
        return [f"NAP d {args.d_model} x {args.n_layers} layers, axes {list(args.axes)}: {_m(total)} parameters; "
                f"6 channels x {args.max_len} epochs x {len(args.predictors)} predictors -> {tuple(logits.shape)}"]
    return key, build


# Literal registry: recipe file -> its dry-run model check.
CHECKS = {"llava_isruc.py": check_llava, "image_classifier.py": check_classifier,
          "sleep2vec_pretrain.py": check_sleep2vec_pretrain, "sleep2vec_finetune.py": check_sleep2vec_finetune,
          "sdreamer.py": check_sdreamer, "nap.py": check_nap}


# ----------------------------------------------------------------------------- the plan
@dataclass
class Step:
    argv: list[str]  # as printed: "python"/"psgvlm"/"accelerate" first
    done: Path | None = None  # skipped when this file exists
    inner: list[str] = field(default_factory=list)  # recipe command templates inside --train-cmd/--predict-cmd
    parsed: list = field(default_factory=list)  # (recipe file, Args) of every recipe command in it


class Plan:
    """The commands of one reproduce script, in order; ``finish()`` runs them or dry-runs them."""

    def __init__(self, args, title: str):
        self.args, self.title = args, title
        self.work = Path(args.work)  # relative paths are relative to the repository root (the commands' cwd)
        self.steps: list[Step] = []
        self.outputs: dict[str, object] = {}  # output_dir of a recipe step -> its parsed Args
        self.recipe_flags: dict[str, list[str]] = {}  # --recipe-flags: recipe file -> flags added to its commands
        for recipe, text in getattr(args, "recipe_flags", None) or []:
            if not (REPO / "recipes" / recipe).is_file():
                raise ValueError(f"--recipe-flags {recipe!r}: no such recipe under recipes/")
            self.recipe_flags.setdefault(recipe, []).extend(shlex.split(text))

    # -- paths under WORK, the same in every script so that one reuses another's runs ------------
    def images(self, dataset: str, split: str, seed: int) -> Path:
        return self.work / "data" / f"{dataset}_{split}_s{seed}"

    def signal(self, dataset: str, seed: int, *, from_images: bool = False) -> Path:
        """A signal dataset: with the subject split of the seed's image dataset (``from_images``: image and
        signal models tested on the same subjects), else with its own seeded subject split."""
        return self.work / "data" / f"{dataset}_signal{'_imagesplit' if from_images else ''}_s{seed}"

    def run_dir(self, dataset: str, split: str, seed: int, name: str) -> Path:
        return self.work / "runs" / f"{dataset}_{split}_s{seed}" / slug(name)

    def results(self, name: str) -> Path:
        return self.work / "results" / slug(name)

    def report(self, name: str) -> Path:
        return self.work / "reports" / slug(name)

    # -- adding commands ---------------------------------------------------------------------------
    def cmd(self, argv: list[str], *, done=None, inner=()) -> Step:
        """Add a command (skipped when ``done`` exists); its recipe commands are parsed now, those in
        ``inner`` (the --train-cmd / --predict-cmd templates it passes on) with PLACEHOLDERS filled in."""
        argv = [str(a) for a in argv]
        if any(s.argv == argv for s in self.steps):  # the same step asked for twice (shared runs)
            return next(s for s in self.steps if s.argv == argv)
        step = Step(argv, None if done is None else Path(done), list(inner))
        for command in [argv, *(shlex.split(t.format(**PLACEHOLDERS)) for t in step.inner)]:
            if recipe_of(command) is not None:
                parsed = parse_recipe(command)
                step.parsed.append((Path(command[recipe_of(command)]).name, parsed))
                if getattr(parsed, "output_dir", None) and command is argv:
                    self.outputs[str(parsed.output_dir)] = parsed
        self.steps.append(step)
        return step

    def recipe_argv(self, recipe: str, config: str | None, *, gpu: bool = False, inner: bool = False, **kw) -> list[str]:
        """``python|accelerate launch recipes/<recipe> [--config recipes/configs/<config>] --k v ...`` plus the
        recipe's ``--recipe-flags``. ``inner``: a command another tool runs (evals' --train-cmd), whose
        accelerate goes through ``python -m`` so that it runs with this interpreter too."""
        launcher = ["python"]
        if gpu:
            launcher = ["python", "-m", "accelerate.commands.launch"] if inner else ["accelerate", "launch"]
            launcher += ["--config_file", self.args.accelerate_config] if self.args.accelerate_config else []
        return [*launcher, f"recipes/{recipe}", *(["--config", f"recipes/configs/{config}"] if config else []),
                *flags(**kw), *self.recipe_flags.get(recipe, [])]

    def recipe(self, recipe: str, config: str, *, gpu: bool = False, done: str = "predictions.jsonl", **kw) -> Step:
        """Add a recipe command (:meth:`recipe_argv`); skipped when ``output_dir/done`` exists."""
        return self.cmd(self.recipe_argv(recipe, config, gpu=gpu, **kw), done=Path(kw["output_dir"]) / done)

    def recipe_template(self, recipe: str, config: str | None, *, gpu: bool = False, **kw) -> str:
        """A recipe command as one string for evals' ``--train-cmd`` / ``--predict-cmd`` (placeholders such
        as ``{dataset}`` and ``{out}`` left for evals to fill in)."""
        return " ".join(a if re.fullmatch(r"\{\w+\}", a) else shlex.quote(a)
                        for a in map(str, self.recipe_argv(recipe, config, gpu=gpu, inner=True, **kw)))

    # -- steps two scripts share -----------------------------------------------------------------
    def render(self, dataset: str, path: str, split: str, seed: int, extra=()) -> Path:
        """``psgvlm render`` of one dataset with one split kind and seed; returns the dataset dir."""
        out = self.images(dataset, split, seed)
        self.cmd(["psgvlm", "render", "--format", dataset, "--input", path, "--out", out, "--split", split,
                  "--split-seed", seed, "--num-proc", self.args.num_proc, *extra], done=out / "meta.json")
        return out

    def vlm(self, dataset: str, split: str, seed: int, *, config: str | None = None, name="PSG-LLaVA", **kw) -> Path:
        """PSG-LLaVA fine-tuned with the dataset's paper config on a rendered dataset; returns the run dir."""
        out = self.run_dir(dataset, split, seed, name)
        self.recipe("llava_isruc.py", config or LLAVA_CONFIGS[dataset], gpu=True,
                    dataset=self.images(dataset, split, seed), output_dir=out, seed=seed, **kw)
        return out

    def image_baseline(self, name: str, dataset: str, split: str, seed: int) -> Path:
        out = self.run_dir(dataset, split, seed, name)
        self.recipe("image_classifier.py", IMAGE_BASELINES[name], gpu=True, dataset=self.images(dataset, split, seed),
                    output_dir=out, seed=seed)
        return out

    def signal_baselines(self, dataset: str, path: str, seed: int, which=("sdreamer", "sleep2vec", "nap"),
                         split_from: Path | None = None, fmt: str | None = None) -> dict[str, Path]:
        """sDREAMER, sleep2vec (pre-train + fine-tune) and NAP (over YASA per EEG channel and the two) on the
        signal dataset of ``seed``: with the subject split of ``split_from``'s meta.json (an image dataset)
        when given, else its own seeded split. ``dataset`` names the folders, ``fmt`` (default ``dataset``)
        is the reader. Returns the run dirs of everything trained: sdreamer, sleep2vec_pretrain,
        sleep2vec, nap (NAP needs the other two, so it trains them too)."""
        fmt = fmt or dataset
        split = "subject" if split_from is not None else "signal"
        sig = self.signal(dataset, seed, from_images=split_from is not None)
        data = dict(signal_data=sig, format=fmt, input=path, split_from=split_from,
                    split_seed=None if split_from else seed)
        runs = {}
        if "sdreamer" in which or "nap" in which:
            runs["sdreamer"] = self.run_dir(dataset, split, seed, "sDREAMER")
            self.recipe("sdreamer.py", SIGNAL_CONFIGS["sdreamer"], output_dir=runs["sdreamer"], seed=seed, **data)
        if "sleep2vec" in which or "nap" in which:
            runs["sleep2vec_pretrain"] = self.run_dir(dataset, split, seed, "sleep2vec_pretrain")
            self.recipe("sleep2vec_pretrain.py", SIGNAL_CONFIGS["sleep2vec_pretrain"], done="model.pt",
                        output_dir=runs["sleep2vec_pretrain"], seed=seed, **data)
            runs["sleep2vec"] = self.run_dir(dataset, split, seed, "sleep2vec")
            self.recipe("sleep2vec_finetune.py", SIGNAL_CONFIGS["sleep2vec_finetune"], signal_data=sig,
                        pretrained=runs["sleep2vec_pretrain"], output_dir=runs["sleep2vec"], seed=seed)
        if "nap" in which:
            yasa = self.work / "runs" / f"{dataset}_yasa"  # a pretrained stager: one run per dataset
            self.cmd(["psgvlm", "yasa", "--format", fmt, "--input", path, "--out", yasa], done=yasa / "meta.json")
            runs["nap"] = self.run_dir(dataset, split, seed, "NAP")
            self.recipe("nap.py", SIGNAL_CONFIGS["nap"], signal_data=sig, output_dir=runs["nap"], seed=seed,
                        predictors=[f"yasa={yasa}", f"sdreamer={runs['sdreamer']}", f"sleep2vec={runs['sleep2vec']}"])
        return runs

    def metrics(self, name: str, runs: dict[Path, str]) -> Path:
        """``python -m evals metrics`` over run dirs (-> model names); returns the results dir. Always run
        (it takes seconds), so a re-run with more seeds or models scores them all."""
        out = self.results(name)
        self.cmd(["python", "-m", "evals", "metrics", "--runs", *runs, "--names", *runs.values(), "--out", out])
        return out

    def evals_report(self, layout: str, results: dict[str | None, Path] | list[tuple[str | None, Path]],
                     name: str) -> Path:
        """The closing ``python -m evals report --layout L --results LABEL=DIR ...`` (label None: a bare
        DIR); returns the report dir."""
        out = self.report(name)
        pairs = results.items() if isinstance(results, dict) else results
        self.cmd(["python", "-m", "evals", "report", "--layout", layout, "--title", self.title, "--out", out,
                  "--results", *(str(path) if label is None else f"{label}={path}" for label, path in pairs)])
        return out

    # -- running --------------------------------------------------------------------------------
    def finish(self) -> int:
        return self._dry_run() if self.args.dry_run else self._run()

    def _dry_run(self) -> int:
        print(f"# {self.title}: {len(self.steps)} commands (dry run: nothing is executed)\n")
        failures, models = [], {}
        for k, step in enumerate(self.steps, 1):
            print(f"[{k}] {shlex.join(step.argv)}")
            tool = tool_of(step.argv)
            if tool is not None:
                unknown = [a for a in step.argv if a.startswith("--") and a not in tool_options(tool)]
                if unknown:
                    failures.append(f"[{k}] {' '.join(tool)} has no option {unknown}")
            for recipe, parsed in step.parsed:
                check = CHECKS.get(recipe)
                try:
                    found = check(parsed, self) if check else None
                    if found is not None and found[0] not in models:
                        with warnings.catch_warnings():  # transformers' deprecation notes are not findings
                            warnings.simplefilter("ignore", FutureWarning)
                            models[found[0]] = found[1]()
                        print("\n".join(f"      {line}" for line in models[found[0]]))
                except (ValueError, RuntimeError) as err:
                    failures.append(f"[{k}] {recipe}: {err}")
        n_recipes = sum(len(s.parsed) for s in self.steps)
        print(f"\n{len(self.steps)} commands; {n_recipes} recipe commands parsed through their Args dataclasses; "
              f"{len(models)} distinct models built and checked")
        if failures:
            print("dry run FAILED:\n" + "\n".join(failures), file=sys.stderr)
            return 1
        print("dry run passed")
        return 0

    def _run(self) -> int:
        log = REPO / self.work / "commands.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        # `python` in the commands the evals suites run for us (--train-cmd, --predict-cmd) is this one too
        env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
        for k, step in enumerate(self.steps, 1):
            line = shlex.join(step.argv)
            if step.done is not None and (REPO / step.done).exists():
                print(f"[{k}/{len(self.steps)}] done already ({step.done}): {line}")
                continue
            print(f"[{k}/{len(self.steps)}] {line}", flush=True)
            t0 = time.time()
            rc = subprocess.run(executable(step.argv), cwd=REPO, env=env).returncode
            with open(log, "a", encoding="utf-8") as f:
                f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} exit {rc} {time.time() - t0:.0f}s {line}\n")
            if rc != 0:
                print(f"{self.title}: step {k} failed with exit {rc}: {line}", file=sys.stderr)
                return 1
        print(f"{self.title}: all {len(self.steps)} steps done; the report is the last step's --out")
        return 0
