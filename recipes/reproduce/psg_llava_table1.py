"""Reproduce the PSG-image paper's Table 1: PSG-LLaVA, the image baselines and the three signal
baselines on ISRUC, MASS and SHHS, five seeds, the paper's epoch split and our subject split side by side.

    python recipes/reproduce/psg_llava_table1.py --isruc ISRUC --mass SS3 --shhs shhs \
        --accelerate-config recipes/accelerate/single_gpu.yaml
    python recipes/reproduce/psg_llava_table1.py --isruc ISRUC --mass SS3 --shhs shhs --dry-run

Per dataset, split kind and seed (``--split epoch``: the paper's epoch-level 8:2 split, which puts
every subject in train and test; ``--split subject``: ours): ``psgvlm render``, PSG-LLaVA
(recipes/llava_isruc.py with the dataset's paper config) and the pretrained, partially fine-tuned
image baselines (recipes/image_classifier.py: ResNet-152 and -101, ConvNeXt, Swin, ViT, and the CLIP
encoder + linear head of the paper's Figure 3). On the subject split only, the signal baselines:
sDREAMER, sleep2vec (pre-trained on the training subjects, then fine-tuned) and NAP over YASA per EEG
channel, sDREAMER and sleep2vec, on a signal dataset with the images' subject split. They train on
runs of consecutive epochs, so under an epoch-level split the neighbours of every test epoch would be
in training: that leaking combination is left out. Then ``python -m evals metrics`` per split kind and
``python -m evals report --layout psg_llava_table1``: the paper's numbers beside ours, in
WORK/reports/psg_llava_table1/report.md.

Subjects: the paper used ISRUC-S1 subjects 1-30 without 8 (25,532 epochs), "the first 46" MASS-SS3
subjects less a few with channel problems (40,976) and 313 healthy SHHS-1 subjects (314,676). Point
--isruc/--mass/--shhs at folders holding those recordings, or pass a selection to ``psgvlm render``
with ``--render-flags DATASET=FLAGS``.
"""

import shlex
import sys

from _common import IMAGE_BASELINES, LLAVA_CONFIGS, Plan, base_parser, dataset_paths, run_main

SPLITS = ("epoch", "subject")
SIGNAL_NAMES = {"sdreamer": "sDREAMER", "sleep2vec": "sleep2vec", "nap": "NAP"}  # their rows in the table


def main(argv=None):
    ap = base_parser(__doc__, LLAVA_CONFIGS)
    ap.add_argument("--splits", nargs="+", choices=SPLITS, default=list(SPLITS), help="split kinds to run")
    ap.add_argument("--image-baselines", nargs="*", choices=list(IMAGE_BASELINES), default=list(IMAGE_BASELINES),
                    help="image baselines to train (their paper row names)")
    ap.add_argument("--signal-baselines", nargs="*", choices=list(SIGNAL_NAMES), default=list(SIGNAL_NAMES),
                    help="signal baselines to train (subject split only)")
    ap.add_argument("--render-flags", action="append", default=[], metavar="DATASET=FLAGS",
                    help='extra psgvlm render flags for one dataset, e.g. "isruc=--trim-tail-epochs 30"')
    args = ap.parse_args(argv)
    paths = dataset_paths(ap, args, LLAVA_CONFIGS)
    render_flags = {}
    for item in args.render_flags:
        dataset, _, text = item.partition("=")
        if dataset not in LLAVA_CONFIGS:
            ap.error(f"--render-flags {item!r}: dataset must be one of {list(LLAVA_CONFIGS)}")
        render_flags[dataset] = shlex.split(text)
    plan = Plan(args, "PSG-image paper, Table 1")

    # ---- per dataset, split kind and seed: images, PSG-LLaVA, image baselines, signal baselines -------
    runs = {split: {} for split in args.splits}  # split kind -> {run dir: model name}
    for dataset, path in paths.items():
        for split in args.splits:
            for seed in args.seeds:
                images = plan.render(dataset, path, split, seed, render_flags.get(dataset, []))
                runs[split][plan.vlm(dataset, split, seed)] = "PSG-LLaVA"
                for name in args.image_baselines:
                    runs[split][plan.image_baseline(name, dataset, split, seed)] = name
                if split == "subject" and args.signal_baselines:
                    signal = plan.signal_baselines(dataset, path, seed, which=args.signal_baselines, split_from=images)
                    runs[split].update({signal[name]: SIGNAL_NAMES[name] for name in args.signal_baselines})

    # ---- metrics per split kind, then the paper's table ---------------------------------------------
    results = {f"{split} split": plan.metrics(f"psg_llava_table1_{split}", runs[split]) for split in args.splits}
    plan.evals_report("psg_llava_table1", results, "psg_llava_table1")
    return plan.finish()


if __name__ == "__main__":
    sys.exit(run_main(main))
