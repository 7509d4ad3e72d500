"""Reproduce the PSG-image paper's explanation analysis (sections 2.3.2 and 3.6, Figure 7; MASS in
Figure 13): feature-ablation attribution of PSG-LLaVA's stage decisions.

    python recipes/reproduce/psg_llava_attribution.py --isruc ISRUC --mass SS3 \
        --accelerate-config recipes/accelerate/single_gpu.yaml
    python recipes/reproduce/psg_llava_attribution.py --isruc ISRUC --dry-run

Per dataset: PSG-LLaVA fine-tuned on the subject split (the Table 1 script's run when it exists under
the same WORK), then ``python -m evals attribution``: each sampled test epoch's 336x336 image in 576
patches of 14x14, each masked in turn with the background value, the Euclidean distance between the
stage probabilities before and after, min-max normalised; mean maps of the correctly classified
epochs per stage (and of the misclassified ones) mapped to channel bands x time windows. Ends with
``python -m evals report --layout psg_llava_attribution``: the paper's per-stage reading of its
Figure 7 beside our per-modality ranking.
"""

import sys

from _common import Plan, base_parser, dataset_paths, run_main

DATASETS = ("isruc", "mass")  # Figure 7 is ISRUC, Figure 13 MASS


def main(argv=None):
    ap = base_parser(__doc__, DATASETS)
    ap.add_argument("--per-stage", type=int, default=50, help="test epochs explained per true stage")
    ap.add_argument("--batch-size", type=int, default=32, help="masked images per forward pass")
    ap.set_defaults(seeds=[0])
    args = ap.parse_args(argv)
    paths = dataset_paths(ap, args, DATASETS)
    plan = Plan(args, "PSG-image paper, attribution")

    results = []
    for dataset, path in paths.items():
        for seed in args.seeds:
            # ---- PSG-LLaVA on the subject split -------------------------------------------------------
            images = plan.render(dataset, path, "subject", seed)
            run = plan.vlm(dataset, "subject", seed)
            # ---- feature ablation over the test split -------------------------------------------------
            out = plan.results(f"attribution_{dataset}_s{seed}")
            plan.cmd(["python", "-m", "evals", "attribution", "--run", run, "--dataset", images, "--split", "test",
                      "--out", out, "--per-stage", args.per_stage, "--seed", seed, "--batch-size", args.batch_size],
                     done=out / "results.json")
            results.append((f"PSG-LLaVA on {dataset} (seed {seed})", out))

    plan.evals_report("psg_llava_attribution", results, "psg_llava_attribution")
    return plan.finish()


if __name__ == "__main__":
    sys.exit(run_main(main))
