"""Reproduce sDREAMER's self-distillation ablation (its Table III) with the epoch-only variant (Table I):
Sequence and Epoch sDREAMER, each with and without self-distillation, multi- and single-channel.

    python recipes/reproduce/sdreamer_ablation.py --input ISRUC
    python recipes/reproduce/sdreamer_ablation.py --input ISRUC --dry-run

Per seed: a signal dataset with a seeded subject split, then recipes/sdreamer.py at paper size
(recipes/configs/sdreamer_paper.yaml: d 128, 8 heads, 2 + 2 MoME layers, 0.5-s patches, K = 16,
distillation temperatures 1.0 / 3.0) for each variant. Each run also scores the multi-channel model on
EEG alone and on EMG alone (metrics_single_channel.json), which is what the ablation is about. Then
``python -m evals metrics`` and ``python -m evals report --layout sdreamer_ablation``.

The paper's numbers are from mice with three classes (Wake, SWS, REM); ours are five-class human
staging, so compare the direction of each ablation, not the levels.
"""

import os
import sys

from _common import SIGNAL_CONFIGS, Plan, base_parser, run_main

# Variant (its row name) -> recipes/sdreamer.py flags over the paper config. Epoch sDREAMER: windows of
# one epoch (K = 1), so the sequence-level encoder sees a single epoch token: no context across epochs.
VARIANTS = {"Sequence sDREAMER": {}, "Epoch sDREAMER": {"seq_len": 1}}
DISTILLATION = {"": {}, " w/o distillation": {"distill_weight": 0}}  # row suffix -> flags


def main(argv=None):
    ap = base_parser(__doc__)
    ap.add_argument("--input", required=True, help="recordings as downloaded (any dataset with EEG and EMG)")
    ap.add_argument("--format", default="isruc", help="their reader (psgvlm render --format)")
    args = ap.parse_args(argv)
    path = os.path.abspath(args.input)
    plan = Plan(args, "sDREAMER, self-distillation ablation")

    runs = {}  # run dir -> variant name
    for seed in args.seeds:
        signal = plan.signal(args.format, seed)
        for variant, variant_flags in VARIANTS.items():
            for suffix, distill_flags in DISTILLATION.items():
                name = variant + suffix
                out = plan.run_dir(args.format, "signal", seed, name)
                plan.recipe("sdreamer.py", SIGNAL_CONFIGS["sdreamer"], signal_data=signal, format=args.format,
                            input=path, split_seed=seed, output_dir=out, seed=seed, **variant_flags, **distill_flags)
                runs[out] = name

    results = plan.metrics("sdreamer_ablation", runs)
    plan.evals_report("sdreamer_ablation", {None: results}, "sdreamer_ablation")
    return plan.finish()


if __name__ == "__main__":
    sys.exit(run_main(main))
