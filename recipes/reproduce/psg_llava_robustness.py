"""Reproduce the PSG-image paper's robustness evaluation (section 3.5, Figures 4 and 5): failing core
EEG channels on ISRUC and MASS, in both of its settings.

    python recipes/reproduce/psg_llava_robustness.py --isruc ISRUC --mass SS3 \
        --accelerate-config recipes/accelerate/single_gpu.yaml
    python recipes/reproduce/psg_llava_robustness.py --isruc ISRUC --mass SS3 --dry-run

Protocol (``python -m evals robustness``): a seeded 70% of the subjects get, from a random onset on,
white noise or zeros on the core EEG channels (C3, C4, F3, F4, O1, O2), applied to the signals before
rendering, so image and signal models see the same failures. Settings:

- ``clean-train``: the models trained on clean data (subject split) scored on the corrupted renderings
  of their test subjects (signal models through their recipe's predict-only ``--from_run``);
- ``train-corrupted``: every subject eligible, the model re-trained on the corrupted data with its
  paper config (``--train-cmd``) and tested corrupted; sleep2vec is fine-tuned on the corrupted data
  from its clean pre-training.

Models: the best of each category in the paper's second round, as this project has them: PSG-LLaVA,
ResNet-152 (image), sDREAMER and sleep2vec (signal; TinySleepNet and CBraMod are not implemented).
The clean runs are the Table 1 script's (same WORK paths: trained once, reused). Ends with
``python -m evals report --layout psg_llava_robustness``; the paper gives these results as charts
only, so the report has no paper column.
"""

import sys

from _common import IMAGE_BASELINES, LLAVA_CONFIGS, SIGNAL_CONFIGS, Plan, base_parser, dataset_paths, run_main

DATASETS = ("isruc", "mass")  # the paper's robustness datasets
SETTINGS = ("clean-train", "train-corrupted")
# The signal recipes' predict-only mode, in evals robustness' placeholders (image models need none).
PREDICT_ONLY = {"from_run": "{run}", "signal_data": "{signal_data}", "output_dir": "{out}"}
def main(argv=None):
    ap = base_parser(__doc__, DATASETS)
    ap.add_argument("--settings", nargs="+", choices=SETTINGS, default=list(SETTINGS), help="robustness settings")
    ap.add_argument("--fraction", type=float, default=0.7, help="share of subjects corrupted (paper: 0.7)")
    ap.set_defaults(seeds=[0])
    args = ap.parse_args(argv)
    paths = dataset_paths(ap, args, DATASETS)
    plan = Plan(args, "PSG-image paper, robustness")
    results = []  # (label, results dir) for the report
    for dataset, path in paths.items():
        for seed in args.seeds:
            # ---- the clean runs (subject split): as in the Table 1 script -------------------------------
            images = plan.render(dataset, path, "subject", seed)
            clean = {"PSG-LLaVA": plan.vlm(dataset, "subject", seed),
                     "Resnet152": plan.image_baseline("Resnet152", dataset, "subject", seed)}
            signal = plan.signal_baselines(dataset, path, seed, which=("sdreamer", "sleep2vec"), split_from=images)
            clean.update({"sDREAMER": signal["sdreamer"], "sleep2vec": signal["sleep2vec"]})
            # ---- the recipe commands evals runs: predict-only (signal models, clean-train), re-training --------
            predict_cmd = {"sDREAMER": plan.recipe_template("sdreamer.py", None, **PREDICT_ONLY),
                           "sleep2vec": plan.recipe_template("sleep2vec_finetune.py", None, **PREDICT_ONLY)}
            train_cmd = {
                "PSG-LLaVA": plan.recipe_template("llava_isruc.py", LLAVA_CONFIGS[dataset], gpu=True,
                                                  dataset="{dataset}", output_dir="{out}", seed=seed),
                "Resnet152": plan.recipe_template("image_classifier.py", IMAGE_BASELINES["Resnet152"], gpu=True,
                                                  dataset="{dataset}", output_dir="{out}", seed=seed),
                "sDREAMER": plan.recipe_template("sdreamer.py", SIGNAL_CONFIGS["sdreamer"], signal_data="{signal_data}",
                                                 output_dir="{out}", seed=seed),
                "sleep2vec": plan.recipe_template("sleep2vec_finetune.py", SIGNAL_CONFIGS["sleep2vec_finetune"],
                                                  signal_data="{signal_data}", pretrained=signal["sleep2vec_pretrain"],
                                                  output_dir="{out}", seed=seed),
            }
            # ---- python -m evals robustness per model and setting ----------------------------------------
            for model, run in clean.items():
                for setting in args.settings:
                    out = plan.results(f"robustness_{dataset}_s{seed}_{model}_{setting}")
                    command = predict_cmd.get(model) if setting == "clean-train" else train_cmd[model]
                    option = "--predict-cmd" if setting == "clean-train" else "--train-cmd"
                    plan.cmd(["python", "-m", "evals", "robustness", "--run", run, "--format", dataset, "--input", path,
                              "--out", out, "--setting", setting, "--seed", seed, "--fraction", args.fraction,
                              "--num-proc", args.num_proc, *([option, command] if command else [])],
                             done=out / "results.json", inner=[command] if command else [])
                    results.append((f"{model} on {dataset}", out))

    plan.evals_report("psg_llava_robustness", results, "psg_llava_robustness")
    return plan.finish()


if __name__ == "__main__":
    sys.exit(run_main(main))
