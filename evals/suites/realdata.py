"""``python -m evals realdata --data ../shared/data/real --out DIR``: every predictor kind on real sleep.

The real-data scorecard (issue 10 item 4). On the shared real recordings with expert labels (DREAMS
excerpts 1-6, Prerau, the Sleep-EDF crop; ``../shared/data/real/README.md``) it scores, on the reader's
epoch grid (the expert's 30-s epochs):

- the pretrained predictors of ``psgvlm stage`` (:data:`psgvlm.night.predictors.PREDICTORS`, run by
  ``run_predictors`` on the same epochs): the embedded default VLM (synthetic training only), YASA,
  GSSC (when the extra ``psgvlm[gssc]`` imports; else the row says why) and their soft vote. Nothing is
  trained on the real recordings; ``--vlm-run NAME=DIR`` adds more VLM runs (e.g. another render mode);
- models trained leave-one-recording-out (LORO: for each recording, trained on the others, tested on
  it): sDREAMER and sleep2vec (pre-trained then fine-tuned on the folds' training recordings) on the
  best EEG channel of each recording (``recipes/sdreamer.py``, ``recipes/sleep2vec_pretrain.py`` and
  ``recipes/sleep2vec_finetune.py`` as subprocesses, tiny CPU configs), and the tiny VLM: the embedded
  default model fine-tuned with a fresh LoRA on the real epochs rendered as ``psgvlm stage`` renders
  them for it (``recipes/llava_isruc.py``);
- NAP over YASA's and GSSC's per-EEG-channel streams (``psgvlm reference`` run dirs, ``recipes/nap.py``):
  LORO, and zero-shot by leaving one corpus out (DREAMS, Prerau, Sleep-EDF: NAP trained on the others).

Per row: per recording and pooled accuracy, Cohen's kappa, macro-F1 and per-class F1 (the shipped
``evaluate`` module, as ``python -m evals metrics``), recording-bootstrap 95% CIs (each recording is a
different subject). An epoch a predictor left unscored counts as wrong. The pool holds DREAMS 1-6,
Prerau and the Sleep-EDF crop; DREAMS excerpt 3's full-PSG EDF (same night as excerpt3.txt, more
channels) is scored by the pretrained predictors as its own recording and kept out of the pool.

Writes ``DIR/scorecard.md`` (the Markdown tables), ``DIR/scorecard.json`` (every figure, the config and
provenance) and ``DIR/samples.jsonl`` (per epoch: row, recording, expert, prediction); the LORO folds'
datasets and runs go to ``DIR/work/`` and are removed at the end unless ``--keep-work``. Everything
in DIR is derived from the real recordings: never commit it (the README shows the table only).

    python -m evals realdata --data ../shared/data/real --out results/realdata
    python -m evals realdata --data ../shared/data/real --out results/rd --rows yasa vote --recordings dreams1 prerau
    python -m evals realdata --data ../shared/data/real --out results/rd --quick     # fewer training steps
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from psgvlm.stages import N_STAGES, STAGES, UNSCORED

from ..realdata_rows import (
    Context,
    RealRecording,
    RowUnavailable,
    find_recordings,
    nap_loro,
    nap_zero_shot,
    pretrained_row,
    sdreamer_loro,
    sleep2vec_loro,
    vlm_run_row,
    vlm_tiny_loro,
)

# Literal registry: row name -> (protocol, what it is, how its predictions are made). The pretrained
# predictors are the entries of psgvlm.night.predictors.PREDICTORS of the same name.
ROWS: dict[str, tuple[str, str, Callable]] = {
    "vlm": ("pretrained", "embedded default VLM (synthetic nights only)", pretrained_row("vlm")),
    "yasa": ("pretrained", "YASA LightGBM stager", pretrained_row("yasa")),
    "gssc": ("pretrained", "GSSC ResNet + GRU (psgvlm[gssc])", pretrained_row("gssc")),
    "vote": ("pretrained", "soft vote of YASA and GSSC", pretrained_row("vote")),
    "sdreamer": ("LORO", "sDREAMER, tiny, EEG", sdreamer_loro),
    "sleep2vec": ("LORO", "sleep2vec, tiny, pre-trained on synthetic nights, fine-tuned on EEG", sleep2vec_loro),
    "nap_loro": ("LORO", "NAP over YASA + GSSC per-channel streams (recipes/nap.py --protocol loro)", nap_loro),
    "nap_zero_shot": ("zero-shot", "NAP over YASA + GSSC streams trained on the other corpora, leave one corpus out",
                      nap_zero_shot),
    "vlm_tiny": ("LORO", "the embedded default VLM + a fresh LoRA fine-tuned on rendered real epochs", vlm_tiny_loro),
}


# ------------------------------------------------------------------------------------------------
# scoring and tables
# ------------------------------------------------------------------------------------------------
def epoch_rows(row: str, rec: RealRecording, pred: np.ndarray) -> list[dict]:
    """Per epoch with an expert stage: the predictions schema, an unscored prediction made a wrong stage.

    The unscored prediction becomes ``(expert + 1) % 5``: wrong whatever the truth, so a predictor
    that leaves epochs out is not scored on the easy ones only; ``unscored`` marks those rows.
    """
    expert = rec.expert
    if len(pred) != len(expert):
        raise RuntimeError(f"{row} gave {len(pred)} epochs for {rec.name}, the expert {len(expert)}")
    starts = rec.rec.onset_s + np.arange(len(expert)) * rec.rec.epoch_s
    return [{"row": row, "dataset": rec.fmt, "subject": rec.key, "recording": rec.key, "epoch": k,
             "start_s": float(starts[k]), "label": int(e),
             "pred": int((e + 1) % N_STAGES if p == UNSCORED else p), "unscored": bool(p == UNSCORED),
             "probs": None}
            for k, (e, p) in enumerate(zip(expert, pred)) if e != UNSCORED]


def score_row(rows_by_rec: dict[str, list[dict]], pooled: list[str], *, n_boot: int, seed: int, metric) -> dict:
    """Pooled metrics with recording-bootstrap CIs (``score_rows`` of the metrics suite) and per recording."""
    from .metrics import score_rows

    rows = [r for k in pooled if k in rows_by_rec for r in rows_by_rec[k]]
    scores = score_rows(rows, n_boot=n_boot, seed=seed, metric=metric)
    per_rec = {}
    for key, rs in rows_by_rec.items():
        m = score_rows(rs, n_boot=1, seed=seed, metric=metric)["pooled"]
        per_rec[key] = {**{k: m[k] for k in ("accuracy", "kappa", "macro_f1", "per_class_f1", "confusion")},
                        "n_epochs": len(rs), "n_unscored_pred": sum(r["unscored"] for r in rs)}
    # DREAMS alone too: the synthetic generator's spectra were compared with the Prerau recording, which is
    # therefore no clean held-out test for the synthetic-trained VLM; DREAMS never was.
    dreams = [r for k in pooled if k.startswith("dreams") and k in rows_by_rec for r in rows_by_rec[k]]
    m = score_rows(dreams, n_boot=1, seed=seed, metric=metric)["pooled"] if dreams else None
    return {"pooled": {k: scores["pooled"][k] for k in ("accuracy", "kappa", "macro_f1", "balanced_accuracy",
                                                         "per_class_f1", "confusion")},
            "ci": scores["ci"], "n_epochs": len(rows), "n_unscored_pred": sum(r["unscored"] for r in rows),
            "recordings": per_rec,
            "pooled_dreams": None if m is None else {"n_epochs": len(dreams), "accuracy": m["accuracy"],
                                                     "kappa": m["kappa"], "macro_f1": m["macro_f1"]}}


def _f(x, digits: int = 2) -> str:
    return "–" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{digits}f}"


def _with_ci(value, ci) -> str:
    return f"{_f(value)} [{_f(ci[0])}, {_f(ci[1])}]"


def markdown(results: dict, recs: list[RealRecording]) -> str:
    """The scorecard tables: pooled figures per row, then kappa / accuracy per recording."""
    rows, skipped = results["rows"], results["not_run"]
    pool = [r for r in recs if r.pooled]
    n = max((v["n_epochs"] for v in rows.values()), default=0)
    lines = [f"Pooled over {', '.join(r.name for r in pool)} ({n} expert epochs); 95% CIs from "
             f"{results['config']['n_boot']} recording-bootstrap resamples.", "",
             "| predictor | protocol | epochs | accuracy | kappa | macro-F1 | " + " | ".join(f"F1 {s}" for s in STAGES)
             + " | kappa, DREAMS 1-6 |",
             "|---|---|---|---|---|---|" + "---|" * (N_STAGES + 1)]
    for name, v in rows.items():
        p, ci, dreams = v["pooled"], v["ci"], v["pooled_dreams"]
        lines.append(f"| {name} | {v['protocol']} | {v['n_epochs']} | {_with_ci(p['accuracy'], ci['accuracy'])} | "
                     f"{_with_ci(p['kappa'], ci['kappa'])} | {_with_ci(p['macro_f1'], ci['macro_f1'])} | "
                     + " | ".join(_f(p["per_class_f1"][s]) for s in STAGES)
                     + f" | {_f(None if dreams is None else dreams['kappa'])} |")
    shown = [r for r in recs if any(r.key in v["recordings"] for v in rows.values())]
    lines += ["", "Kappa / accuracy per recording:", "",
              "| predictor | " + " | ".join(f"{r.name} ({len([e for e in r.expert if e != UNSCORED])})" for r in shown) + " |",
              "|---|" + "---|" * len(shown)]
    for name, v in rows.items():
        cells = [(lambda m: f"{_f(m['kappa'])} / {_f(m['accuracy'])}")(v["recordings"][r.key])
                 if r.key in v["recordings"] else "" for r in shown]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Rows: " + "; ".join(f"`{k}`: {v['describe']}" for k, v in rows.items()) + "."]
    if skipped:
        lines += ["", "Not run: " + "; ".join(f"`{k}`: {v}" for k, v in skipped.items()) + "."]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m evals realdata", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="the shared real recordings (../shared/data/real)")
    ap.add_argument("--out", required=True, help="results dir: scorecard.md, scorecard.json, samples.jsonl")
    ap.add_argument("--rows", nargs="+", metavar="ROW", help=f"rows to compute, of {list(ROWS)} (default: all)")
    ap.add_argument("--recordings", nargs="+", metavar="KEY",
                    help="recordings to use, of dreams1..dreams6, prerau, sleepedf, dreams3_edf (default: all present)")
    ap.add_argument("--vlm-run", action="append", default=[], metavar="NAME=DIR",
                    help="another VLM run to score as the default is (a row vlm:NAME), repeatable")
    ap.add_argument("--quick", action="store_true", help="LORO rows with a few training steps (a smoke test)")
    ap.add_argument("--n-boot", type=int, default=1000, help="recording-bootstrap resamples (default 1000)")
    ap.add_argument("--seed", type=int, default=0, help="seed of training and the bootstrap (default 0)")
    ap.add_argument("--keep-work", action="store_true", help="keep the LORO folds' datasets and runs in OUT/work")
    ap.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return ap


def _fail(message) -> int:
    print(f"evals realdata: {' '.join(str(message).split())}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    data, out = Path(args.data), Path(args.out)
    if not data.is_dir():
        return _fail(f"--data {str(data)!r} is not a folder: the shared real recordings are absent "
                     "(see ../shared/data/real/README.md); nothing to score")
    bad = [r for r in args.rows or [] if r not in ROWS]
    if bad:
        return _fail(f"--rows {bad} not allowed; choose from {list(ROWS)}")
    runs = {}
    for spec in args.vlm_run:
        name, sep, path = spec.partition("=")
        if not sep or not name or not (Path(path) / "meta.json").is_file():
            return _fail(f"--vlm-run {spec!r}: give NAME=DIR with DIR a VLM run directory (holding meta.json)")
        runs[name] = Path(path)
    if args.n_boot < 1:
        return _fail(f"--n-boot {args.n_boot} must be >= 1")
    if out.exists() and not out.is_dir():
        return _fail(f"--out {str(out)!r} exists and is not a folder")
    recs = find_recordings(data)
    if args.recordings:
        unknown = sorted(set(args.recordings) - {r.key for r in recs})
        if unknown:
            return _fail(f"--recordings {unknown} not under {data}; present: {[r.key for r in recs]}")
        recs = [r for r in recs if r.key in args.recordings]
    if not any(r.pooled for r in recs):
        return _fail(f"none of the expected recordings (DREAMS excerpts, Prerau, Sleep-EDF crop) is under {data}")
    try:
        run_scorecard(recs, out, rows=args.rows or list(ROWS), vlm_runs=runs, quick=args.quick,
                      n_boot=args.n_boot, seed=args.seed, keep_work=args.keep_work, data=data)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        if args.debug:
            raise
        return _fail(err)
    print((out / "scorecard.md").read_text())
    print(f"wrote {out / 'scorecard.md'}, {out / 'scorecard.json'}")
    return 0


def run_scorecard(recs: list[RealRecording], out: Path, *, rows: list[str], vlm_runs: dict | None = None,
                  quick: bool = False, n_boot: int = 1000, seed: int = 0, keep_work: bool = False,
                  data: Path | None = None) -> dict:
    """Compute ``rows`` on ``recs``; write scorecard.md, scorecard.json and samples.jsonl into ``out``."""
    import json

    from psgvlm.provenance import provenance, write_json_atomic, write_text_atomic

    from ..metrics import load_sleep_staging

    out.mkdir(parents=True, exist_ok=True)
    for r in recs:
        r.load()
    from psgvlm.night.predictors import PREDICTORS

    ctx = Context(recs=recs, work=out / "work", quick=quick, seed=seed, vlm_runs=dict(vlm_runs or {}),
                  wanted=[n for n in rows if n in PREDICTORS], data=data)
    table = {name: ROWS[name] for name in ROWS if name in rows}
    for name, run_dir in ctx.vlm_runs.items():
        table[f"vlm:{name}"] = ("pretrained", f"VLM run {run_dir}", vlm_run_row(name, run_dir))
    metric = load_sleep_staging()
    pooled = [r.key for r in ctx.pooled]
    results: dict = {"rows": {}, "not_run": {}, "seconds": {}}
    samples: list[dict] = []
    for name, (protocol, describe, fn) in table.items():
        t0 = time.perf_counter()
        print(f"realdata: {name} ({protocol}) ...", file=sys.stderr, flush=True)
        try:
            preds = fn(ctx)
        except RowUnavailable as err:
            results["not_run"][name] = " ".join(str(err).split())
            print(f"realdata: {name} not run: {results['not_run'][name]}", file=sys.stderr)
            continue
        by_rec = {r.key: epoch_rows(name, r, preds[r.key]) for r in recs if r.key in preds}
        results["rows"][name] = {"protocol": protocol, "describe": describe,
                                 **score_row(by_rec, pooled, n_boot=n_boot, seed=seed, metric=metric)}
        results["seconds"][name] = round(time.perf_counter() - t0, 1)
        samples += [s for rs in by_rec.values() for s in rs]
    if not results["rows"]:
        raise RuntimeError("no row could be computed: " + "; ".join(f"{k}: {v}" for k, v in results["not_run"].items()))
    results["recordings"] = {r.key: {"name": r.name, "format": r.fmt, "path": str(r.path), "pooled": r.pooled,
                                     "n_epochs": int(r.rec.n_epochs), "n_expert": int((r.expert != UNSCORED).sum()),
                                     "expert": {s: int((r.expert == i).sum()) for i, s in enumerate(STAGES)}}
                             for r in recs}
    results["config"] = {"data": None if data is None else str(data), "rows": list(table), "quick": quick,
                         "n_boot": n_boot, "seed": seed, "vlm_runs": {k: str(v) for k, v in ctx.vlm_runs.items()}}
    write_text_atomic(out / "scorecard.md", markdown(results, recs))
    write_json_atomic(out / "scorecard.json", {"suite": "realdata", **results, "provenance": provenance()})
    write_text_atomic(out / "samples.jsonl", "".join(json.dumps(s) + "\n" for s in samples))
    if not keep_work and ctx.work.exists():
        shutil.rmtree(ctx.work)
    return results
