"""Reproduce NAP's zero-shot table: per target corpus, the macro F1 of the best single frozen model, of
soft voting and of NAP, where NAP never saw the target.

    python recipes/reproduce/nap_zero_shot.py --target SEDF-SC=sleepedf:sleep-cassette \
        --target SEDF-ST=sleepedf:sleep-telemetry --train MASS=mass:SS3
    python recipes/reproduce/nap_zero_shot.py --target SEDF-SC=sleepedf:sleep-cassette \
        --target SEDF-ST=sleepedf:sleep-telemetry --dry-run

The frozen models are the pretrained reference stagers YASA and GSSC (``psgvlm reference``, one run
per corpus and stager, one stream per EEG channel; GSSC needs the extra ``psgvlm[gssc]``). They were
trained by their authors on other data, so they are zero-shot on every corpus here, as the paper's
base models are. Each ``--target`` is held out in turn: per seed, ``recipes/nap.py --protocol
zero_shot`` (the paper's size: d_model 24, 4 tri-axial layers, dimension-adaptive training) trains
NAP on the streams of every other corpus (the other targets and the ``--train`` corpora) and predicts
the target, writing soft voting and each stager's metrics beside NAP's. Then ``python -m evals
metrics`` per target (NAP, soft vote, YASA, GSSC) and ``python -m evals report --layout
nap_zero_shot`` with the paper's numbers beside ours.

What differs from the paper: it trains NAP on BSWR (a private dataset) and fuses single-channel deep
stagers it trained itself; here NAP trains on the other public corpora given and fuses YASA and GSSC.
sDREAMER and sleep2vec are left out of this table: their streams on a training corpus would have to be
out-of-sample for every recording of it (cross-fitted), and their predict-only mode scores one split of
a signal dataset, not a whole corpus. Of the paper's targets, Sleep-EDF cassette (SEDF-SC) and
telemetry (SEDF-ST) have readers here; DCSM, DOD and PHYS do not (the ``generic`` reader takes any
EDF folder with hypnograms).
"""

import sys

from _common import Plan, base_parser, run_main, slug

STAGERS = {"yasa": "YASA", "gssc": "GSSC"}  # psgvlm reference --predictor NAME -> the table's name


def corpora(ap, items, option) -> dict[str, tuple[str, str]]:
    """``{name: (reader, absolute path)}`` of NAME=FORMAT:PATH items."""
    import os

    out = {}
    for item in items or []:
        name, _, rest = item.partition("=")
        fmt, _, path = rest.partition(":")
        if not (name and fmt and path):
            ap.error(f"{option} {item!r}: expected NAME=FORMAT:PATH, e.g. SEDF-SC=sleepedf:data/sleep-cassette")
        if name in out:
            ap.error(f"{option} {item!r}: the name {name!r} is given twice")
        out[name] = (fmt, os.path.abspath(path))
    return out


def main(argv=None):
    ap = base_parser(__doc__)
    ap.add_argument("--target", action="append", required=True, metavar="NAME=FORMAT:PATH",
                    help="a corpus held out in turn (and used to train NAP for the other targets): its row name "
                         "(the paper's: SEDF-SC, SEDF-ST, ...), reader and recordings")
    ap.add_argument("--train", action="append", metavar="NAME=FORMAT:PATH",
                    help="a corpus NAP only trains on (never a target)")
    args = ap.parse_args(argv)
    targets = corpora(ap, args.target, "--target")
    train_only = corpora(ap, args.train, "--train")
    both = sorted(set(targets) & set(train_only))
    if both:
        ap.error(f"{both} given as --target and --train")
    everything = {**targets, **train_only}
    if len(everything) < 2:
        ap.error("give at least two corpora (--target, --train): NAP trains on the ones that are not the target")
    plan = Plan(args, "NAP, zero-shot table")

    # ---- the frozen stagers on every corpus: one run each, one stream per EEG channel -------------------
    streams = {}
    for name, (fmt, path) in everything.items():
        for stager in STAGERS:
            out = plan.work / "runs" / f"{slug(name)}_{stager}"
            plan.cmd(["psgvlm", "reference", "--predictor", stager, "--format", fmt, "--input", path, "--out", out],
                     done=out / "meta.json")
            streams[name, stager] = out

    # ---- per target and seed: NAP trained on the other corpora, tested on the target -------------------
    results = {}
    for target in targets:
        runs = {}
        train = [f"{s}={streams[c, s]}" for c in everything if c != target for s in STAGERS]
        for seed in args.seeds:
            out = plan.work / "runs" / "nap_zero_shot" / f"{slug(target)}_s{seed}"
            plan.recipe("nap.py", "nap_paper.yaml", protocol="zero_shot", train_predictors=train,
                        predictors=[f"{s}={streams[target, s]}" for s in STAGERS], output_dir=out, seed=seed)
            runs.update({out: "NAP", out / "soft_vote": "soft vote",
                         **{out / "predictors" / s: label for s, label in STAGERS.items()}})
        results[target] = plan.metrics(f"nap_zero_shot_{target}", runs)

    plan.evals_report("nap_zero_shot", results, "nap_zero_shot")
    return plan.finish()


if __name__ == "__main__":
    sys.exit(run_main(main))
