"""``python -m evals <suite> ...`` (same as ``psgvlm eval <suite> ...``).

Suites (each writes results.json, samples.jsonl and PNG plots into ``--out``; report writes report.md,
summary.json and figures/):

    python -m evals metrics      --runs RUN [RUN ...] --out DIR
    python -m evals robustness   --run RUN --format isruc --input DATA --out DIR --seed 0
    python -m evals channel_loss --run RUN --format isruc --input DATA --drop EOG --drop C3,C4 --out DIR
    python -m evals attribution  --run RUN --dataset IMAGES --out DIR --per-stage 10
    python -m evals zero_shot    --predictions UNTUNED_RUN/predictions.jsonl --dataset IMAGES --out DIR
    python -m evals report       --results DIR [DIR ...] --out REPORT_DIR
    python -m evals realdata     --data ../shared/data/real --out DIR

``python -m evals <suite> --help`` lists a suite's options.
"""

from __future__ import annotations

import importlib
import sys

# Literal registry: suite name -> (module relative to this package with main(argv), one-line help).
# Relative, so the suites run as ``evals`` from a checkout and as ``psgvlm.evals`` once installed.
# Imported only when run.
SUITES: dict[str, tuple[str, str]] = {
    "metrics": (".suites.metrics", "accuracy, B-Acc, kappa, F1s, confusion; per subject, CIs, seeds"),
    "robustness": (".suites.robustness", "failing core EEG channels (noise/zeros from a random onset)"),
    "channel_loss": (".suites.channel_loss", "drop channels or modalities at inference (blank/re-render)"),
    "attribution": (".suites.attribution", "feature ablation over 14x14 patches -> channel x time"),
    "zero_shot": (".suites.zero_shot", "the untuned model's confusion matrix"),
    "report": (".suites.report", "gather results dirs into a Markdown report + JSON summary"),
    "realdata": (".suites.realdata", "the real-data scorecard: every predictor kind on the shared real recordings"),
}


def _usage() -> str:
    width = max(map(len, SUITES))
    lines = ["usage: python -m evals <suite> [options]", "", "suites:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in SUITES.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in SUITES:
        print(f"evals: unknown suite {name!r}; choose from {', '.join(SUITES)}", file=sys.stderr)
        return 2
    module = importlib.import_module(SUITES[name][0], __package__)
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
