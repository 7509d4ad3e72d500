"""The real-size 7B path on one CUDA GPU, without downloading anything: training and scoring speed.

    PYTHONUNBUFFERED=1 PYTHONPATH=. python3 benchmarks/gpu_check.py --model-dir runs/gpu_model --out OUT.json
    python benchmarks/gpu_check.py --smoke --out /tmp/gpu_smoke.json      # same code on CPU, tiny model

What it does, each phase timed and written to the JSON as soon as it ends (a timeout keeps the figures
so far; a phase that fails records its traceback and the next phases still run):

1. images: one synthetic 8-h night (``psgvlm.synth``, 10 channels at 200 Hz), cut into 30-s epochs by
   the one epoch cutter, min-max scaled and rendered to 336x336 by ``psgvlm.image.renderer`` (960
   epochs; the render time counts in the night's wall time).
2. model: the LLaVA-NeXT-Mistral-7B architecture from ``config.json`` (``--model-dir``'s, else the one
   shipped beside this script) with random bf16 weights initialised directly on the GPU; the real
   processor and tokenizer from ``--model-dir`` with the anyres grid pinned to one 336 tile, as the
   recipe does (2 tiles, 1,176 image tokens per epoch; the JSON records the measured count).
3. train: LoRA r16/alpha 32 on the paper's targets (``psgvlm.vlm.model.lora_config``: every linear of
   the language model and of the vision layers that feed the projector), gradient checkpointing
   (non-reentrant), AdamW over the LoRA weights, bf16 autocast; micro-batch 2 x accumulation 8 = 16
   samples per optimiser step, as ``recipes/llava_isruc.py``. One warm-up step, then ``--steps``
   timed steps: seconds per step, samples/s, peak GPU memory, MFU.
4. scoring: the adapter merged (as ``psgvlm predict``/``stage`` load it), exact label scoring
   (``psgvlm.vlm.scoring.score_batch``: prompt pass with KV cache + one pass over the five answers) at
   batch 32; model-only epochs/s on pre-collated batches, then the whole 960-epoch night through
   ``score_dataset`` (collation included) if the time budget allows, else extrapolated (said so).
5. qlora: when ``bitsandbytes`` imports (and a GPU is there), the random model is saved to a temporary
   folder and reloaded in 4-bit through ``load_model(quantization="4bit")``, then a short training timing;
   otherwise recorded as skipped with the reason.

``--model-dir`` must hold the processor and tokenizer files of ``llava-hf/llava-v1.6-mistral-7b-hf``
(no weights): ``config.json``, ``preprocessor_config.json``, ``processor_config.json``,
``chat_template.json``, ``tokenizer.json``, ``tokenizer_config.json``, ``special_tokens_map.json``
(``tokenizer.model`` is optional; about 4 MB in all). Default: ``../shared/models/llava-v1.6-mistral-7b-hf``
beside the repository. For a GPU box that gets only the repository, copy them into an ignored folder
that travels with it: ``mkdir -p runs/gpu_model && cp ../shared/models/llava-v1.6-mistral-7b-hf/*.json
runs/gpu_model/``.

FLOPs (per sample, dense matmuls only, sums over the three parts): a linear layer with ``P`` weights
costs ``2 P`` FLOPs per token forward. The vision tower runs ``tiles x 577`` tokens (576 patches + CLS),
the projector ``tiles x 576``, the language model the sequence's real tokens (image tokens included).
Attention adds ``4 s^2 d`` per layer and sequence forward (``d`` = heads x head dim) for the
bidirectional vision tower, half that for the causal language model. With the base frozen, training
needs the forward (``F_lin + F_att``) and a backward to the activations only (``F_lin + 2 F_att``: no
weight gradients for frozen weights; LoRA's own FLOPs, < 1 %, are left out): model FLOPs
``2 F_lin + 3 F_att``. Gradient checkpointing recomputes the forward once more: hardware FLOPs
``3 F_lin + 4 F_att``. MFU = model FLOPs/s / peak; HFU the same with hardware FLOPs. The peak is the
dense bf16 tensor-core figure of the device (table below, or ``--peak-tflops``). Scoring counts the
prompt forward (``lm_head`` at one position); the answers' pass (10 tokens per epoch) is left out.

Imports only torch, transformers, peft, accelerate (through peft), numpy, scipy, pillow, pyyaml and tqdm
(transformers' own dependencies) and psgvlm modules that import nothing else at import time:
``tests/test_gpu_check.py`` runs ``--smoke`` with datasets, mne, gradio, yasa, edfio, matplotlib and
torchvision hidden. Targets on one H200: >= 8 samples/s training, >= 20 epochs/s scoring.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from psgvlm.io.recording import Channel, Recording
from psgvlm.provenance import provenance, write_json_atomic
from psgvlm.signal.epochs import epochs_from_recording, minmax_scale
from psgvlm.stages import STAGES
from psgvlm.synth.physiology import DEFAULT_CHANNELS, MIN_MINUTES, synth_night
from psgvlm.vlm.data import VLMCollator, answer_token_ids, get_template
from psgvlm.vlm.model import (
    LANGUAGE_PREFIX,
    PROJECTOR_PREFIX,
    VISION_PREFIX,
    build_tiny_model,
    check_bitsandbytes,
    load_model,
    load_processor,
    lora_config,
    trainable_parameters,
)
from psgvlm.vlm.scoring import score_batch, score_dataset

HERE = Path(__file__).resolve().parent
DEFAULT_MODEL_DIR = HERE.parent.parent / "shared" / "models" / "llava-v1.6-mistral-7b-hf"
SHIPPED_CONFIG = HERE / "llava_v1.6_mistral_7b_config.json"
PROCESSOR_FILES = ("config.json", "preprocessor_config.json", "processor_config.json", "chat_template.json",
                   "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
# Dense bf16 tensor-core peak per device, TFLOP/s (vendor data sheets, no sparsity); the first key
# contained in torch.cuda.get_device_name() wins, so the more specific names come first.
PEAK_BF16_TFLOPS = {
    "GH200": 989.4, "H200 NVL": 835.0, "H200": 989.4, "H100 NVL": 835.0, "H100 PCIe": 756.0, "H100": 989.4,
    "B200": 2250.0, "A100": 312.0, "L40S": 362.1,
}
TARGETS = {"train_samples_per_s": 8.0, "scoring_epochs_per_s": 20.0}
# Modality of each kind of synthetic channel used here (DEFAULT_CHANNELS).
KIND_MODALITY = {"eeg": "EEG", "eog": "EOG", "emg": "EMG", "ecg": "ECG"}
# Smoke mode: the real config's architecture at toy width and depth (vocabulary and image geometry kept).
SMOKE_TEXT = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
              "num_key_value_heads": 1, "head_dim": 16}
SMOKE_VISION = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                "projection_dim": 64}


class UsageError(Exception):
    """A bad argument or a missing input: one line, exit 2."""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-dir", default=None,
                   help=f"folder with the 7B processor/tokenizer files and config.json (default: {DEFAULT_MODEL_DIR})")
    p.add_argument("--out", default=None,
                   help="JSON to write (default: benchmarks/results/gpu_<device>.json, gpu_smoke_<device>.json with --smoke)")
    p.add_argument("--smoke", action="store_true",
                   help="run the same code on CPU with a tiny model, few steps (a test; < 1 min)")
    p.add_argument("--steps", type=int, default=None, help="timed optimiser steps after one warm-up step (default 3; smoke 1)")
    p.add_argument("--micro-batch", type=int, default=None, help="samples per forward/backward (default 2, the paper's; smoke 1)")
    p.add_argument("--grad-accum", type=int, default=None, help="micro-batches per optimiser step (default 8; smoke 2)")
    p.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate")
    p.add_argument("--train-variants", default="",
                   help="extra training timings after the paper's setting, comma-separated MICROxACCUM[:nockpt] "
                        "(e.g. '2x8:nockpt,8x2,8x2:nockpt'; nockpt = without gradient checkpointing); each is "
                        "recorded under train_variants, an out-of-memory variant with its error")
    p.add_argument("--lora-r", type=int, default=16, help="LoRA rank (alpha = 2 r)")
    p.add_argument("--lora-dropout", type=float, default=0.05,
                   help="LoRA dropout (0.05 as the recipe; 0 skips the dropped copy of every adapted layer's input)")
    p.add_argument("--score-batch", type=int, default=None, help="label-scoring batch size (default 32; smoke 4)")
    p.add_argument("--score-batches", type=int, default=None, help="pre-collated batches timed for model-only scoring (default 3; smoke 1)")
    p.add_argument("--night-epochs", type=int, default=None, help="epochs in the synthetic night (default 960; smoke 8)")
    p.add_argument("--qlora-steps", type=int, default=2, help="timed optimiser steps in the 4-bit run")
    p.add_argument("--budget-s", type=float, default=420.0,
                   help="wall-time budget, s: the full-night scoring is extrapolated and QLoRA skipped when it would overrun")
    p.add_argument("--peak-tflops", type=float, default=None, help="device peak dense bf16 TFLOP/s for MFU (default: from a table)")
    p.add_argument("--tmp-dir", default=None, help="where QLoRA saves the random 7B model (~15 GB; default: the system temp dir)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic night and the random weights")
    p.add_argument("--debug", action="store_true", help="show tracebacks of usage errors")
    args = p.parse_args(argv)
    # Smoke: the same loops at toy sizes (two micro-batches of one sample, one scoring batch timed).
    defaults = {"steps": (3, 1), "micro_batch": (2, 1), "grad_accum": (8, 2), "score_batch": (32, 4),
                "score_batches": (3, 1), "night_epochs": (960, 8)}
    for name, (full, smoke) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, smoke if args.smoke else full)
    for name in ("steps", "micro_batch", "grad_accum", "lora_r", "score_batch", "score_batches", "night_epochs"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} {getattr(args, name)}: must be >= 1")
    return args


def slug(text: str) -> str:
    """``"NVIDIA H200"`` -> ``"nvidia_h200"``."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "device"


def peak_tflops(name: str, override: float | None) -> tuple[float | None, str]:
    """(peak dense bf16 TFLOP/s, where it came from) for a device name."""
    if override is not None:
        return override, "--peak-tflops"
    for key, value in PEAK_BF16_TFLOPS.items():
        if key in name:
            return value, f"table: {key}"
    return None, f"unknown device {name!r}: pass --peak-tflops for MFU"


def find_model_dir(arg: str | None) -> Path | None:
    """The processor folder: ``--model-dir`` if given (must be complete), else the shared default if present."""
    path = Path(arg) if arg else DEFAULT_MODEL_DIR
    missing = [f for f in PROCESSOR_FILES if not (path / f).is_file()]
    if not missing:
        return path
    if arg:
        raise UsageError(f"--model-dir {arg}: missing {missing}; copy {list(PROCESSOR_FILES)} from "
                         f"llava-hf/llava-v1.6-mistral-7b-hf (no weights needed)")
    return None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gib(n_bytes: int) -> float:
    return round(n_bytes / 2**30, 2)


# --------------------------------------------------------------------------- images


def synthetic_night_images(n_epochs: int, seed: int) -> tuple[list[Image.Image], np.ndarray, dict]:
    """``n_epochs`` rendered 336x336 epochs of a synthetic night, their stages, and timings."""
    from psgvlm.image.renderer import RenderSettings, render_epoch

    t0 = time.perf_counter()
    night = synth_night(DEFAULT_CHANNELS, minutes=max(MIN_MINUTES, n_epochs / 2), seed=seed)
    rec = Recording(channels=[Channel(name=c.label, canonical=c.label, modality=KIND_MODALITY[c.kind],
                                      sfreq=night.sfreq[c.label], data=night.signals[c.label]) for c in DEFAULT_CHANNELS],
                    subject=str(seed), recording="synthetic", dataset="synth", source="synth_night",
                    stages=night.stages)
    synth_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    sfreq = 200.0
    x, stages, _ = epochs_from_recording(rec, rec.ch_names, sfreq)
    x = minmax_scale(x[:n_epochs], out=x[:n_epochs])
    settings = RenderSettings()
    images = [Image.fromarray(render_epoch(x[i], settings)) for i in range(len(x))]
    render_s = time.perf_counter() - t0
    if len(images) < n_epochs:
        raise RuntimeError(f"synthetic night gave {len(images)} epochs, {n_epochs} asked for")
    info = {"n_epochs": len(images), "channels": rec.ch_names, "sfreq": sfreq, "size_px": settings.size,
            "synth_s": round(synth_s, 2), "epoch_scale_render_s": round(render_s, 2),
            "render_epochs_per_s": round(len(images) / render_s, 1),
            "stage_counts": {str(k): int(v) for k, v in zip(*np.unique(stages[:n_epochs], return_counts=True))}}
    return images, np.asarray(stages[:n_epochs]), info


# --------------------------------------------------------------------------- model


def load_config(model_dir: Path | None):
    from transformers import LlavaNextConfig

    path = model_dir / "config.json" if model_dir and (model_dir / "config.json").is_file() else SHIPPED_CONFIG
    return LlavaNextConfig.from_dict(json.loads(path.read_text())), path


def build_model(args, model_dir: Path | None, device: torch.device, dtype: torch.dtype):
    """(model, processor, info): random weights, initialised on ``device`` (no CPU copy of 7B)."""
    from transformers import LlavaNextConfig, LlavaNextForConditionalGeneration

    torch.manual_seed(args.seed)  # transformers draws the random weights from torch's global RNG
    if model_dir is None:  # smoke without the real processor: the tiny model with its own tokenizer
        model, processor = build_tiny_model(seed=args.seed)
        return model.to(device), processor, {"config": "psgvlm.vlm.model.build_tiny_model", "processor": "tiny, in code"}
    processor = load_processor(str(model_dir), pin_grid=True)
    config, config_path = load_config(model_dir)
    if args.smoke:
        d = config.to_dict()
        d["text_config"].update(SMOKE_TEXT)
        d["vision_config"].update(SMOKE_VISION)
        config = LlavaNextConfig.from_dict(d)
    config.image_grid_pinpoints = processor.image_processor.image_grid_pinpoints  # as load_model(pin_grid=True)
    with torch.device(device):
        model = LlavaNextForConditionalGeneration._from_config(config, dtype=dtype)
    model.to(device)  # no-op for parameters; moves any buffer created on the CPU
    info = {"config": str(config_path) + (" (shrunk for --smoke)" if args.smoke else ""),
            "processor": str(model_dir), "attn_implementation": model.config._attn_implementation}
    return model, processor, info


def linear_weights(model) -> dict[str, int]:
    """Weights of the matmul layers (Linear, Conv2d) per part, for the FLOPs estimate."""
    parts = {"vision": VISION_PREFIX + ".", "projector": PROJECTOR_PREFIX + ".", "language": LANGUAGE_PREFIX + ".",
             "lm_head": "lm_head"}
    out = dict.fromkeys(parts, 0)
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear | torch.nn.Conv2d):
            for part, prefix in parts.items():
                if name.startswith(prefix):
                    out[part] += module.weight.numel()
    return out


def forward_flops(config, weights: dict, *, tiles: int, lm_tokens: int, lm_head_positions: int) -> tuple[float, float]:
    """(F_lin, F_att): forward matmul FLOPs of one sample (see the module docstring)."""
    v, t = config.vision_config, config.text_config
    patches = (v.image_size // v.patch_size) ** 2
    s_v = patches + 1
    f_lin = 2 * (weights["vision"] * tiles * s_v + weights["projector"] * tiles * patches
                 + weights["language"] * lm_tokens + weights["lm_head"] * lm_head_positions)
    head_dim = getattr(t, "head_dim", None) or t.hidden_size // t.num_attention_heads
    f_att = (4 * s_v**2 * v.hidden_size * v.num_hidden_layers * tiles
             + 2 * lm_tokens**2 * t.num_attention_heads * head_dim * t.num_hidden_layers)
    return float(f_lin), float(f_att)


# --------------------------------------------------------------------------- training


def time_training(model, collator, rows, *, args, device, dtype, steps: int, peak: float | None, weights,
                  config) -> dict:
    """One warm-up optimiser step, then ``steps`` timed ones: s/step, samples/s, memory, MFU."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr)
    amp = (torch.autocast(device_type="cuda", dtype=dtype) if device.type == "cuda" and dtype != torch.float32
           else contextlib.nullcontext())
    model.train()
    cursor = [0]
    per_step = args.micro_batch * args.grad_accum

    def next_rows():
        out = [rows[(cursor[0] + i) % len(rows)] for i in range(args.micro_batch)]
        cursor[0] += args.micro_batch
        return out

    def one_step() -> dict:
        collate_s, losses, f_lin, f_att, tokens = 0.0, [], 0.0, 0.0, 0
        for _ in range(args.grad_accum):
            t0 = time.perf_counter()
            batch = collator(next_rows())
            collate_s += time.perf_counter() - t0
            tiles = batch["pixel_values"].shape[1]
            for n in batch["attention_mask"].sum(1).tolist():
                fl, fa = forward_flops(config, weights, tiles=tiles, lm_tokens=int(n), lm_head_positions=int(n))
                f_lin, f_att, tokens = f_lin + fl, f_att + fa, tokens + int(n)
            batch = {k: v.to(device) for k, v in batch.items()}
            batch["pixel_values"] = batch["pixel_values"].to(dtype)
            with amp:
                loss = model(**batch).loss
            (loss / args.grad_accum).backward()
            losses.append(loss.detach())
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return {"collate_s": collate_s, "losses": losses, "f_lin": f_lin, "f_att": f_att, "tokens": tokens}

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync(device)
    t0 = time.perf_counter()
    one_step()
    sync(device)
    warmup_s = time.perf_counter() - t0
    print(f"  warm-up step {warmup_s:.1f} s", flush=True)
    sync(device)
    t0 = time.perf_counter()
    done = [one_step() for _ in range(steps)]
    sync(device)
    wall = time.perf_counter() - t0
    losses = [float(x) for d in done for x in d["losses"]]
    sec_per_step = wall / steps
    model_flops = sum(2 * d["f_lin"] + 3 * d["f_att"] for d in done) / wall
    hw_flops = sum(3 * d["f_lin"] + 4 * d["f_att"] for d in done) / wall
    res = {
        "micro_batch": args.micro_batch, "grad_accum": args.grad_accum, "samples_per_step": per_step,
        "warmup_step_s": round(warmup_s, 3), "timed_steps": steps, "sec_per_step": round(sec_per_step, 3),
        "samples_per_s": round(per_step / sec_per_step, 3),
        "tokens_per_sample": round(sum(d["tokens"] for d in done) / (steps * per_step), 1),
        "collate_s_per_step": round(sum(d["collate_s"] for d in done) / steps, 3),
        "loss_first_last": [round(losses[0], 4), round(losses[-1], 4)], "loss_finite": bool(np.isfinite(losses).all()),
        "model_tflops_per_s": round(model_flops / 1e12, 3), "hardware_tflops_per_s": round(hw_flops / 1e12, 3),
        "mfu": round(model_flops / (peak * 1e12), 4) if peak else None,
        "hfu": round(hw_flops / (peak * 1e12), 4) if peak else None,
    }
    if device.type == "cuda":
        res["peak_memory_allocated_gib"] = gib(torch.cuda.max_memory_allocated(device))
        res["peak_memory_reserved_gib"] = gib(torch.cuda.max_memory_reserved(device))
    return res  # the optimizer (LoRA moments) goes with this frame


def time_variants(model, collator, rows, *, args, device, dtype, peak, weights) -> list[dict]:
    """Training timings in other shapes (``--train-variants``): what the machine does beyond the paper's 2 x 8."""
    out = []
    for spec in filter(None, (s.strip() for s in args.train_variants.split(","))):
        shape, _, flag = spec.partition(":")
        micro, accum = (int(x) for x in shape.lower().split("x"))
        ckpt = flag != "nockpt"
        if ckpt:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_disable()
        res = {"variant": spec, "gradient_checkpointing": ckpt}
        try:
            vargs = argparse.Namespace(**(vars(args) | {"micro_batch": micro, "grad_accum": accum}))
            res |= time_training(model, collator, rows, args=vargs, device=device, dtype=dtype, steps=2, peak=peak,
                                 weights=weights, config=model.config)
            print(f"  variant {spec}: {res['sec_per_step']} s/step, {res['samples_per_s']} samples/s, MFU "
                  f"{res['mfu']}, peak {res.get('peak_memory_allocated_gib')} GiB", flush=True)
        except Exception as err:  # noqa: BLE001 - an out-of-memory shape is a finding, the next one still runs
            res["error"] = f"{type(err).__name__}: {str(err)[:300]}"
            print(f"  variant {spec}: {res['error']}", flush=True)
        model.zero_grad(set_to_none=True)
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        out.append(res)
    return out


# --------------------------------------------------------------------------- main


class Run:
    """The result dict, written atomically after every phase, and the phases' error handling."""

    def __init__(self, out: Path, result: dict, t_start: float):
        self.out, self.result, self.t_start = out, result, t_start

    def elapsed(self) -> float:
        return time.perf_counter() - self.t_start

    def save(self) -> None:
        self.result["wall_s"] = round(self.elapsed(), 1)
        write_json_atomic(self.out, self.result)

    @contextlib.contextmanager
    def phase(self, name: str):
        print(f"[{self.elapsed():6.1f} s] {name} ...", flush=True)
        t0 = time.perf_counter()
        try:
            yield
        except Exception as err:  # record and go on: one failing phase must not lose the others
            text = traceback.format_exc()
            self.result["errors"][name] = text
            print(f"[{self.elapsed():6.1f} s] {name} FAILED: {type(err).__name__}: {err}\n{text}", file=sys.stderr, flush=True)
        finally:
            self.result["phase_s"][name] = round(time.perf_counter() - t0, 2)
            self.save()
            print(f"[{self.elapsed():6.1f} s] {name} done ({self.result['phase_s'][name]} s)", flush=True)


def main(argv=None) -> int:
    t_start = time.perf_counter()
    try:
        args = parse_args(argv)
        if not args.smoke and not torch.cuda.is_available():
            raise UsageError("no CUDA GPU visible: the real-size check needs one; use --smoke for the CPU run")
        model_dir = find_model_dir(args.model_dir)
        if model_dir is None and not args.smoke:
            raise UsageError(f"no processor folder: {DEFAULT_MODEL_DIR} is absent; pass --model-dir DIR holding "
                             f"{list(PROCESSOR_FILES)} of llava-hf/llava-v1.6-mistral-7b-hf (no weights needed)")
    except UsageError as err:
        if "args" in locals() and args.debug:
            raise
        print(f"gpu_check: {err}", file=sys.stderr)
        return 2

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded; set before transformers is imported
    device = torch.device("cpu" if args.smoke else "cuda")
    dtype = torch.float32 if args.smoke else torch.bfloat16
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        props = torch.cuda.get_device_properties(device)
        dev_name = torch.cuda.get_device_name(device)
        dev_info = {"name": dev_name, "capability": list(torch.cuda.get_device_capability(device)),
                    "total_memory_gib": gib(props.total_memory), "cuda": torch.version.cuda,
                    "cudnn": torch.backends.cudnn.version(), "count": torch.cuda.device_count()}
    else:
        dev_name = "cpu"
        dev_info = {"name": platform.processor() or platform.machine(), "cpus": os.cpu_count(), "threads": torch.get_num_threads()}
    peak, peak_source = peak_tflops(dev_name, args.peak_tflops)
    default_out = HERE / "results" / f"gpu_{'smoke_' if args.smoke else ''}{slug(dev_name)}.json"
    out = Path(args.out) if args.out else default_out
    result = {
        "mode": "smoke" if args.smoke else "full", "device": dev_info,
        "peak_bf16_tflops": peak, "peak_source": peak_source,
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "debug")} | {
            "dtype": str(dtype).removeprefix("torch."), "gradient_checkpointing": True, "pin_grid": True,
            "lora_alpha": 2 * args.lora_r, "lora_dropout": args.lora_dropout, "optimizer": "AdamW"},
        "flops_formula": ("per sample: F_lin = 2 x (vision weights x tiles x 577 + projector weights x tiles x 576 "
                          "+ language weights x tokens + lm_head weights x positions), F_att = 4 s^2 d L (vision, "
                          "per tile) + 2 s^2 d L (causal language model); training model FLOPs = 2 F_lin + 3 F_att "
                          "(forward + backward to activations, frozen base, LoRA FLOPs left out), hardware FLOPs "
                          "= 3 F_lin + 4 F_att (checkpoint recompute); scoring = F_lin + F_att with lm_head at 1 "
                          "position; MFU/HFU = FLOPs/s / peak dense bf16"),
        "targets": {}, "errors": {}, "phase_s": {}, "provenance": provenance(),
    }
    # The targets are for one H200; a smoke run records them nowhere (its figures are CPU toys).
    targets = {} if args.smoke else result["targets"]
    run = Run(out, result, t_start)
    versions = {k: result["provenance"]["versions"].get(k) for k in ("python", "torch", "transformers", "peft")}
    print(f"gpu_check ({result['mode']}) on {dev_name} ({versions}): writing {out}", flush=True)
    st = {}  # objects the phases hand on

    with run.phase("images"):
        images, stages, result["images"] = synthetic_night_images(args.night_epochs, args.seed)
        st["rows"] = [{"image": im, "label": int(s)} for im, s in zip(images, stages)]

    with run.phase("model"):
        t0 = time.perf_counter()
        model, processor, info = build_model(args, model_dir, device, dtype)
        sync(device)
        info["init_s"] = round(time.perf_counter() - t0, 2)
        info["parameters"] = sum(p.numel() for p in model.parameters())
        info["dtypes"] = sorted({str(p.dtype).removeprefix("torch.") for p in model.parameters()})
        info["image_processor"] = type(processor.image_processor).__name__
        info["tokenizer"] = type(processor.tokenizer).__name__
        template = get_template()
        probe = VLMCollator(processor, template, mode="score")([{"image": st["rows"][0]["image"]}])
        info["image_tokens_per_epoch"] = int((probe["input_ids"] == model.config.image_token_index).sum())
        info["tiles_per_epoch"] = int(probe["pixel_values"].shape[1])
        info["prompt_tokens"] = int(probe["input_ids"].shape[1])
        info["answer_tokens"] = {s: processor.tokenizer.convert_ids_to_tokens(a)
                                 for s, a in zip(STAGES, answer_token_ids(processor, template))}
        st["weights"] = linear_weights(model)
        info["matmul_weights"] = st["weights"]
        if device.type == "cuda":
            info["memory_allocated_gib"] = gib(torch.cuda.memory_allocated(device))
        result["model"] = info
        st.update(model=model, processor=processor, template=template)
        print(f"  {info['parameters']:,} parameters in {info['init_s']} s; {info['image_tokens_per_epoch']} image "
              f"tokens, {info['tiles_per_epoch']} tiles, {info['prompt_tokens']} prompt tokens per epoch", flush=True)

    if "model" in st:
        with run.phase("train"):
            from peft import get_peft_model

            model = st["model"]
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.enable_input_require_grads()
            model = get_peft_model(model, lora_config(model, r=args.lora_r, alpha=2 * args.lora_r, dropout=args.lora_dropout))
            st["model"] = model
            result["train"] = {"trainable": trainable_parameters(model)}
            collator = VLMCollator(processor, st["template"], mode="train")
            result["train"] |= time_training(model, collator, st["rows"], args=args, device=device, dtype=dtype,
                                             steps=args.steps, peak=peak, weights=st["weights"], config=model.config)
            tr = result["train"]
            targets["train_samples_per_s >= 8"] = tr["samples_per_s"] >= TARGETS["train_samples_per_s"]
            print(f"  {tr['sec_per_step']} s/step, {tr['samples_per_s']} samples/s, MFU {tr['mfu']}, "
                  f"peak {tr.get('peak_memory_allocated_gib')} GiB, loss {tr['loss_first_last']}", flush=True)
            run.save()
            if args.train_variants:
                result["train_variants"] = time_variants(model, collator, st["rows"], args=args, device=device,
                                                         dtype=dtype, peak=peak, weights=st["weights"])
                if any(v.get("samples_per_s", 0) >= TARGETS["train_samples_per_s"] for v in result["train_variants"]):
                    targets["train_samples_per_s >= 8 (some variant)"] = True
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

        with run.phase("scoring"):
            model = st["model"]
            model.zero_grad(set_to_none=True)
            if hasattr(model, "merge_and_unload"):  # inference loads the adapter merged (psgvlm predict/stage)
                model = model.merge_and_unload()
            model.gradient_checkpointing_disable()
            model.disable_input_require_grads()
            model.eval()
            st["model"] = model
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
            collator = VLMCollator(processor, st["template"], mode="score")
            rows, bs = st["rows"], args.score_batch
            chunks = [[rows[(i * bs + j) % len(rows)] for j in range(bs)] for i in range(args.score_batches + 1)]
            t0 = time.perf_counter()
            batches = [collator(c) for c in chunks]
            collate_s = (time.perf_counter() - t0) / len(batches)
            with torch.inference_mode():
                score_batch(model, batches[0], collator.answers)  # warm-up
                sync(device)
                t0 = time.perf_counter()
                for b in batches[1:]:
                    lls = score_batch(model, b, collator.answers)
                sync(device)
                model_s = (time.perf_counter() - t0) / args.score_batches
            tokens = int(batches[1]["attention_mask"].sum(1).float().mean())
            fl, fa = forward_flops(model.config, st["weights"], tiles=int(batches[1]["pixel_values"].shape[1]),
                                   lm_tokens=tokens, lm_head_positions=1)
            sc = {"batch_size": bs, "timed_batches": args.score_batches, "model_s_per_batch": round(model_s, 3),
                  "collate_s_per_batch": round(collate_s, 3),
                  "model_only_epochs_per_s": round(bs / model_s, 2),
                  "collate_plus_model_epochs_per_s": round(bs / (model_s + collate_s), 2),
                  "scores_finite": bool(torch.isfinite(lls).all()),
                  "model_tflops_per_s": round(bs * (fl + fa) / model_s / 1e12, 3),
                  "mfu": round(bs * (fl + fa) / model_s / (peak * 1e12), 4) if peak else None}
            if device.type == "cuda":
                sc["peak_memory_allocated_gib"] = gib(torch.cuda.max_memory_allocated(device))
            result["scoring"] = sc
            targets["scoring_epochs_per_s >= 20 (model only)"] = sc["model_only_epochs_per_s"] >= TARGETS["scoring_epochs_per_s"]
            targets["scoring_epochs_per_s >= 20 (collate + model)"] = sc["collate_plus_model_epochs_per_s"] >= TARGETS["scoring_epochs_per_s"]
            del batches
            print(f"  model only {sc['model_only_epochs_per_s']} epochs/s, with collation "
                  f"{sc['collate_plus_model_epochs_per_s']} epochs/s", flush=True)

        with run.phase("night"):
            n = len(st["rows"])
            sc = result["scoring"]
            render_s = result["images"]["epoch_scale_render_s"]
            estimate_s = n / sc["collate_plus_model_epochs_per_s"]
            night = {"n_epochs": n, "batch_size": args.score_batch, "render_s": render_s}
            if run.elapsed() + estimate_s + 30 <= args.budget_s:
                t0 = time.perf_counter()
                probs = score_dataset(st["model"], VLMCollator(processor, st["template"], mode="score"),
                                      [{"image": r["image"]} for r in st["rows"]], batch_size=args.score_batch,
                                      progress=False)
                sync(device)
                score_s = time.perf_counter() - t0
                night |= {"measured": True, "score_s": round(score_s, 2), "epochs_per_s": round(n / score_s, 2),
                          "probabilities_valid": bool(np.allclose(probs.sum(1), 1.0))}
                targets["night scoring_epochs_per_s >= 20 (collate + model, measured)"] = n / score_s >= TARGETS["scoring_epochs_per_s"]
            else:
                score_s = estimate_s
                night |= {"measured": False, "score_s": round(score_s, 2),
                          "note": f"extrapolated from {args.score_batches} timed batches (time budget)"}
            night["wall_s_render_plus_score"] = round(render_s + score_s, 2)
            result["night"] = night
            print(f"  {n}-epoch night: render {render_s} s + score {night['score_s']} s "
                  f"({'measured' if night['measured'] else 'extrapolated'})", flush=True)

        with run.phase("qlora"):
            q = result["qlora"] = {}
            try:
                check_bitsandbytes()
            except RuntimeError as err:
                q["skipped"] = str(err)
            if not q and run.elapsed() + 200 > args.budget_s:
                q["skipped"] = f"time budget: {run.elapsed():.0f} s of {args.budget_s:.0f} s used"
            if not q:
                from peft import get_peft_model, prepare_model_for_kbit_training

                tmp = Path(tempfile.mkdtemp(prefix="psgvlm-gpu-check-", dir=args.tmp_dir))
                try:
                    t0 = time.perf_counter()
                    base, model = st.pop("model"), None  # the bf16 model leaves the GPU before the 4-bit one loads
                    if hasattr(base, "merge_and_unload"):  # still a peft model if scoring failed early
                        base = base.merge_and_unload()
                    base.save_pretrained(tmp)
                    processor.save_pretrained(tmp)
                    q["save_s"] = round(time.perf_counter() - t0, 1)
                    del base
                    gc.collect()
                    torch.cuda.empty_cache()
                    t0 = time.perf_counter()
                    qmodel, qproc = load_model(str(tmp), quantization="4bit", pin_grid=True, dtype="bfloat16",
                                               device_map={"": device})
                    q["load_4bit_s"] = round(time.perf_counter() - t0, 1)
                    qmodel = prepare_model_for_kbit_training(qmodel, use_gradient_checkpointing=True)
                    qmodel = get_peft_model(qmodel, lora_config(qmodel, r=args.lora_r, alpha=2 * args.lora_r,
                                                                dropout=args.lora_dropout))
                    q["trainable"] = trainable_parameters(qmodel)
                    q |= time_training(qmodel, VLMCollator(qproc, st["template"], mode="train"), st["rows"],
                                       args=args, device=device, dtype=dtype, steps=args.qlora_steps, peak=peak,
                                       weights=st["weights"], config=qmodel.config)
                    print(f"  QLoRA {q['sec_per_step']} s/step, {q['samples_per_s']} samples/s, "
                          f"peak {q.get('peak_memory_allocated_gib')} GiB", flush=True)
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
            else:
                print(f"  skipped: {q['skipped']}", flush=True)

    run.save()
    summary = {k: result.get(k) for k in ("model", "train", "scoring", "night", "qlora", "targets")}
    if summary["model"]:
        summary["model"] = {k: v for k, v in summary["model"].items() if k not in ("answer_tokens", "matmul_weights")}
    print(json.dumps(summary, indent=1, default=str), flush=True)
    print(f"wrote {out} in {run.elapsed():.0f} s; errors in: {sorted(result['errors']) or 'none'}", flush=True)
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
