"""``psgvlm <command> ...``: one entry point, a literal registry of sub-commands.

Each value is ``"module:function"``; the function takes ``argv`` (list of str) and returns an exit
code. Modules are imported only when their command runs, so ``psgvlm synth`` does not import torch.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("psgvlm.synth.layouts:main", "write synthetic PSG in a dataset's on-disk format"),
    "info": ("psgvlm.io.readers:info_main", "read a recording and print its channels, rates and stages"),
    "render": ("psgvlm.render.build:main", "render recordings to a Hugging Face dataset of epoch images"),
    "tiny-model": ("psgvlm.vlm.model:tiny_model_main", "build and save a tiny random LLaVA-NeXT (no download)"),
    "predict": ("psgvlm.vlm.predict:main", "score a dataset split with a run -> predictions.jsonl"),
    "doctor": ("psgvlm.vlm.doctor:main", "check image tokens, loss masking, LoRA targets on one batch"),
    "reference": ("psgvlm.night.reference:main", "stage recordings with YASA or GSSC (pretrained): night outputs + run dir"),
    "yasa": ("psgvlm.night.reference:yasa_main", "alias of: psgvlm reference --predictor yasa"),
    "eval": ("psgvlm.evals.__main__:main", "run an eval suite (metrics, robustness, channel_loss, ...)"),
    "stage": ("psgvlm.night.cli_stage:main", "stage one recording end to end: hypnogram, hypnodensity, stats"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: psgvlm <command> [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "psgvlm <command> --help for a command's options"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"psgvlm: unknown command {name!r}; choose from {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module_name, func_name = COMMANDS[name][0].split(":")
    try:
        func = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError) as err:
        print(f"psgvlm {name}: not available in this install ({err})", file=sys.stderr)
        return 2
    return int(func(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
