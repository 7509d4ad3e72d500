"""How a VLM run (by default the embedded default) stages the shared real recordings it never saw.

    python benchmarks/default_model_real.py
    python benchmarks/default_model_real.py --run old=runs/old_default --run new=psgvlm/assets/default_run
    python benchmarks/default_model_real.py --data ../shared/data/real --json out/real.json

Each recording is staged exactly as ``psgvlm stage --edf REC --hypnogram H --run RUN`` stages it
(:func:`psgvlm.night.stage.stage_recording`: the whole recording from 0 s, the run's bands filled by the
one channel-picking rule, missing bands flat, expert labels placed on the grid by time), but read with
its dataset's reader, because ``psgvlm stage`` takes EDF only and DREAMS and Prerau ship text files.
Recordings: DREAMS excerpts 1-6 (one central EEG channel as text), Prerau (one EEG channel) and the
Sleep-EDF crop (EDF) when present; the epochs of all of them are pooled. DREAMS excerpt 3's full-PSG
EDF (same night and labels as excerpt3.txt, more channels) is shown as its own row and kept out of the
pool so no epoch counts twice. Nothing is trained on these files.

Prints a Markdown table: per recording and pooled accuracy, Cohen's kappa, macro-F1 and the stages
predicted; a second pool holds DREAMS alone (the synthetic generator's spectra were compared with the
Prerau recording, which is therefore not a clean held-out test; DREAMS never was). Skips with a message (exit 0) when the data folder is absent.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "real"


def recordings(data: Path) -> list[dict]:
    """``{"name", "fmt", "path", "hypnogram", "pooled"}`` for every shared recording present under ``data``."""
    out = []
    dreams = data / "dreams_spindles"
    for n in range(1, 7):
        txt = dreams / f"excerpt{n}.txt"
        if txt.is_file():
            out.append({"name": f"DREAMS {n}", "fmt": "dreams", "path": txt,
                        "hypnogram": dreams / f"Hypnogram_excerpt{n}.txt", "pooled": True})
    if (dreams / "excerpt3.edf").is_file():
        out.append({"name": "DREAMS 3 (full-PSG EDF)", "fmt": "dreams", "path": dreams / "excerpt3.edf",
                    "hypnogram": dreams / "Hypnogram_excerpt3.txt", "pooled": False})
    if (data / "prerau" / "segment_data.csv").is_file():
        out.append({"name": "Prerau", "fmt": "prerau", "path": data / "prerau" / "segment_data.csv",
                    "hypnogram": data / "prerau" / "segment_stages.csv", "pooled": True})
    sedf = data / "sleepedf_crop"
    if (sedf / "short_psg.edf").is_file() and (sedf / "SC4001EC-Hypnogram.edf").is_file():
        out.append({"name": "Sleep-EDF crop", "fmt": "generic", "path": sedf / "short_psg.edf",
                    "hypnogram": sedf / "SC4001EC-Hypnogram.edf", "pooled": True})
    return out


def stage_all(run_dir: Path, recs: list[dict]) -> list[dict]:
    """Stage every recording with one loaded run: per recording its expert and predicted stages."""
    from psgvlm.io.readers import read_recording
    from psgvlm.night.stage import stage_recording
    from psgvlm.vlm.predict import load_predictor

    predictor = load_predictor(run_dir)
    rows = []
    for r in recs:
        rec = read_recording(r["fmt"], r["path"], hypnogram=r["hypnogram"])
        result = stage_recording(rec, run_dir=run_dir, predictor=predictor, batch_size=32)
        rows.append({**r, "expert": result.expert, "pred": result.stages,
                     "mapping": [m for m in result.channel_map if m is not None]})
    return rows


def scores(expert: np.ndarray, pred: np.ndarray) -> dict:
    """Agreement over epochs with an expert stage (an epoch left unscored by the model counts as wrong)."""
    from psgvlm.metrics import stage_metrics
    from psgvlm.stages import STAGES, UNSCORED

    keep = expert != UNSCORED
    e, p = expert[keep].astype(np.int64), pred[keep].astype(np.int64)
    unscored = p == UNSCORED
    # An unscored prediction is wrong whatever the truth: give it a stage other than the expert's.
    p = np.where(unscored, (e + 1) % len(STAGES), p)
    m = stage_metrics(e, p)
    counts = np.bincount(p[~unscored], minlength=len(STAGES))
    return {"n": int(keep.sum()), "accuracy": m["accuracy"], "kappa": m["kappa"], "macro_f1": m["macro_f1"],
            "per_class_f1": m["per_class_f1"], "n_unscored": int(unscored.sum()),
            "predicted": {s: int(c) for s, c in zip(STAGES, counts)},
            "expert": {s: int(c) for s, c in zip(STAGES, np.bincount(e, minlength=len(STAGES)))}}


def table(results: dict[str, list[dict]]) -> str:
    """Markdown: one block of rows per run (recordings, then pooled)."""
    from psgvlm.stages import STAGES

    lines = ["| run | recording | epochs | acc | kappa | macro-F1 | predicted " + "/".join(STAGES) + " |",
             "|---|---|---|---|---|---|---|"]
    for run, rows in results.items():
        for r in rows:
            s = r["scores"]
            bold = "**" if r["name"].startswith("pooled") else ""
            lines.append(f"| {run} | {bold}{r['name']}{bold} | {s['n']} | {s['accuracy']:.3f} | {s['kappa']:.3f} | "
                         f"{s['macro_f1']:.3f} | {'/'.join(str(s['predicted'][st]) for st in STAGES)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="the shared real recordings (default %(default)s)")
    parser.add_argument("--run", action="append", metavar="NAME=DIR",
                        help="a run to measure, repeatable (default: default=the embedded default run)")
    parser.add_argument("--json", help="also write every figure (per recording and pooled) to this JSON file")
    args = parser.parse_args(argv)
    runs = {}
    for spec in args.run or []:
        name, sep, path = spec.partition("=")
        if not sep or not Path(path).is_dir():
            parser.error(f"--run {spec!r}: give NAME=DIR with DIR a run directory")
        runs[name] = Path(path)
    data = Path(args.data)
    if not data.is_dir():
        print(f"skipped: no real recordings at {data} (see ../shared/data/real/README.md)")
        return 0
    recs = recordings(data)
    if not recs:
        print(f"skipped: none of the expected recordings is under {data}")
        return 0
    if not runs:
        from psgvlm.vlm.predict import DEFAULT_RUN

        runs = {"default": Path(DEFAULT_RUN)}
    missing = sorted({"DREAMS 1", "DREAMS 2", "DREAMS 3", "DREAMS 4", "DREAMS 5", "DREAMS 6", "Prerau",
                      "Sleep-EDF crop"} - {r["name"] for r in recs})
    if missing:
        print(f"note: absent under {data}, left out: {', '.join(missing)}", file=sys.stderr)

    results: dict[str, list[dict]] = {}
    for name, run_dir in runs.items():
        rows = stage_all(run_dir, recs)
        out = [{"name": r["name"], "channels": r["mapping"], "scores": scores(r["expert"], r["pred"])} for r in rows]
        # DREAMS alone too: the synthetic spectra were checked against the Prerau recording, never against DREAMS.
        for pool, pick in (("pooled", lambda r: r["pooled"]),
                           ("pooled DREAMS 1-6", lambda r: r["pooled"] and r["name"].startswith("DREAMS"))):
            chosen = [r for r in rows if pick(r)]
            if chosen:
                out.append({"name": pool, "channels": [],
                            "scores": scores(np.concatenate([r["expert"] for r in chosen]),
                                             np.concatenate([r["pred"] for r in chosen]))})
        results[name] = out
    print(table(results))
    print(f"\npooled: {', '.join(r['name'] for r in recs if r['pooled'])}; every epoch with an expert stage "
          f"(an epoch the model left unscored counts as wrong)")
    if args.json:
        from psgvlm.provenance import provenance, write_json_atomic

        write_json_atomic(args.json, {"runs": {k: str(v) for k, v in runs.items()}, "results": results,
                                      "data": str(data), "provenance": provenance()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
