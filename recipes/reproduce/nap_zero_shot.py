"""Reproduce NAP's zero-shot table: per target dataset, the macro F1 of the best single frozen model,
of soft voting and of NAP over the models' hypnodensities.

    python recipes/reproduce/nap_zero_shot.py --target SEDF-SC=sleepedf:sleep-cassette \
        --target SEDF-ST=sleepedf:sleep-telemetry
    python recipes/reproduce/nap_zero_shot.py --target SEDF-SC=sleepedf:sleep-cassette --dry-run

Per target and seed: a signal dataset with a seeded subject split, the frozen predictors -- YASA's
pretrained stager on every EEG channel (``psgvlm yasa``; trained elsewhere, so zero-shot here), and
sDREAMER and sleep2vec trained on the target's training subjects -- then recipes/nap.py (the paper's
size: d_model 24, 4 tri-axial layers, dimension-adaptive training), which also writes soft voting
and every single stream's metrics. Then ``python -m evals metrics`` (NAP and soft vote) per target and
``python -m evals report --layout nap_zero_shot``.

What recipes/nap.py lacks for the paper's protocol: NAP itself is trained on the target's own
training subjects -- the recipe has no way to train on one dataset's streams and predict another's
(the paper trains on BSWR, a private dataset, and applies NAP unchanged to DCSM, DOD-H/O, PHYS and
Sleep-EDF) -- so NAP is in-domain here, not zero-shot; and the paper's base models (single-channel
deep stagers) are not available, YASA stands in for them. Of the paper's targets, Sleep-EDF cassette
(SEDF-SC) and telemetry (SEDF-ST) have readers here; DCSM, DOD and PHYS do not.
"""

import os
import sys

from _common import Plan, base_parser, run_main, slug


def main(argv=None):
    ap = base_parser(__doc__)
    ap.add_argument("--target", action="append", required=True, metavar="NAME=FORMAT:PATH",
                    help="a target dataset: its row name (the paper's: SEDF-SC, SEDF-ST, ...), reader and recordings")
    args = ap.parse_args(argv)
    targets = {}
    for item in args.target:
        name, _, rest = item.partition("=")
        fmt, _, path = rest.partition(":")
        if not (name and fmt and path):
            ap.error(f"--target {item!r}: expected NAME=FORMAT:PATH, e.g. SEDF-SC=sleepedf:data/sleep-cassette")
        targets[name] = (fmt, os.path.abspath(path))
    plan = Plan(args, "NAP, zero-shot table")

    results = {}
    for name, (fmt, path) in targets.items():
        runs = {}
        for seed in args.seeds:
            # ---- frozen predictors and NAP over them (soft voting and every stream scored beside it) ------
            nap = plan.signal_baselines(slug(name), path, seed, which=("nap",), fmt=fmt)["nap"]
            runs.update({nap: "NAP", nap / "soft_vote": "soft vote"})
        results[name] = plan.metrics(f"nap_zero_shot_{name}", runs)

    plan.evals_report("nap_zero_shot", results, "nap_zero_shot")
    return plan.finish()


if __name__ == "__main__":
    sys.exit(run_main(main))
