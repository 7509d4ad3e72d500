"""Leave-one-recording-out on the real recordings: YASA alone, each baseline, soft voting and NAP.

    psgvlm synth --format isruc --subjects 10 --minutes 120 --seed 0 --out runs/synth_isruc
    python recipes/sleep2vec_pretrain.py --config recipes/configs/sleep2vec_tiny_pretrain.yaml \
        --signal_data runs/synth_isruc_signal --format isruc --input runs/synth_isruc --out runs/s2v_pre
    python benchmarks/baselines.py --pretrained runs/s2v_pre --out runs/bench_baselines

Recordings: ``../shared/data/real`` DREAMS excerpts 1-6, the Prerau example and the Sleep-EDF crop
(8 recordings, one EEG channel each is used: the first EEG channel). For every held-out recording:
sleep2vec (backbone pre-trained elsewhere, ``--pretrained``; EEG-only LoRA fine-tuning) and sDREAMER
(EEG pathway) are trained on the other 7 recordings and predict the held-out one; YASA is the frozen,
externally pretrained stager. NAP is then trained leave-one-recording-out on the out-of-fold
hypnodensities of the other recordings (stacking; the base models that produced those predictions
saw the held-out recording's labels, a mild leak stated here) and tested on the held-out one, beside
soft voting. The Sleep-EDF crop has 10 epochs < K=16: sDREAMER neither trains on nor predicts it,
and NAP/soft voting use the predictors present there (any subset). Metrics are pooled over all
held-out epochs. Prints a Markdown table and writes ``OUT/results.json`` (config, provenance).
Timings are pessimistic: the machine is shared.

NAP variants (flags; rows are added beside the ones above, which stay as they were):

    psgvlm yasa --format isruc --input runs/synth_isruc --out runs/yasa_synth_isruc
    psgvlm synth --format sleepedf --subjects 8 --minutes 120 --seed 1 --out runs/synth_sleepedf
    psgvlm yasa --format sleepedf --input runs/synth_sleepedf --out runs/yasa_synth_sleepedf
    # likewise: --format shhs --subjects 8 --seed 2, --format mass --subjects 6 --seed 3
    python benchmarks/baselines.py --pretrained runs/s2v_pre --out runs/bench_baselines --all_eeg \
        --zero_shot_yasa runs/yasa_synth_isruc runs/yasa_synth_sleepedf runs/yasa_synth_shhs \
        runs/yasa_synth_mass --finetune --ft_params all fusion

Measured (3 seeds; about 3.5 min per run on a shared 2-core box): YASA alone kappa 0.621 / MF1 0.662;
nap_zero_shot_yasa_all_eeg 0.630 +- 0.004 / 0.701 (>= YASA alone in every seed, both metrics);
nap_pretrained_ft 0.623 +- 0.039 / 0.723 (kappa below YASA alone in 1 of 3 seeds: the Prerau fold,
where sDREAMER passes the gate and the training folds hold no REM); yasa_vote_all_eeg 0.666 / 0.709.

- ``--all_eeg``: YASA runs on every EEG channel of a recording (DREAMS excerpt3 is read from its
  full-PSG EDF: O1, C3, Fp1; the Sleep-EDF crop has Fpz-Cz and Pz-Oz), giving NAP a channel axis.
  Rows ``yasa_vote_all_eeg`` (mean of those YASA streams) and, with ``--zero_shot_yasa``,
  ``nap_zero_shot_yasa_all_eeg``. The signal baselines and the row ``yasa`` keep the first EEG channel.
- ``--zero_shot_yasa RUN [RUN ...]``: ``psgvlm yasa`` runs on OTHER data (synthetic nights, one
  stream per EEG channel): NAP is trained there on YASA streams only (``--pretrain_steps``) and
  applied zero-shot (the NAP paper's protocol), row ``nap_zero_shot_yasa`` (first EEG channel of each
  real recording). ``--nap_seeds K`` pre-trains K NAPs from different seeds and averages their
  hypnodensities (also for ``--finetune``: each is fine-tuned); fine-tuning on 7 short recordings
  varies a lot with the seed, the ensemble steadies it.
- ``--finetune`` (needs ``--zero_shot_yasa``): that pre-trained NAP is fine-tuned per fold on the 7
  training recordings (YASA per EEG channel on their own channel rows, the signal baselines on a
  whole-montage row), with the synthetic streams replayed beside them (half of the batches), and
  tested on the held-out recording: row ``nap_pretrained_ft``; ``--ft_params fusion`` fine-tunes only
  the fusion score that weights the streams (row ``nap_pretrained_ft_fusion``; the classifier and
  attention keep their synthetic pre-training, so the training folds' stage mix, e.g. no REM outside
  Prerau, cannot shift the class priors). Predictors are gated per fold on
  training-fold data only: a predictor whose pooled kappa on the training recordings is below
  ``--gate_kappa`` is left out of that fold (training and test); ``soft_vote_gated`` votes the same
  gated predictors. The held-out recording's labels are used for nothing but its metrics.
- ``--reuse_oof``: reuse ``OUT/oof_streams.npz`` from an earlier run with the same baseline settings
  instead of retraining sleep2vec/sDREAMER per fold (YASA is always recomputed: it is fast).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from psgvlm.baselines.common import class_weights, predict_windows, random_windows, train_loop
from psgvlm.baselines.nap import NAPConfig, predict_nap, soft_vote, train_nap
from psgvlm.baselines.sdreamer import SIZES, SDreamer, SDreamerConfig
from psgvlm.baselines.signal_data import recording_to_signal
from psgvlm.baselines.sleep2vec import Sleep2vecStager, Sleep2vecStagerConfig, load_backbone
from psgvlm.io.readers import find_recordings, read_recording
from psgvlm.metrics import stage_metrics
from psgvlm.provenance import provenance, write_json_atomic
from psgvlm.reference.yasa import yasa_hypnodensity
from psgvlm.stages import N_STAGES, UNSCORED

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
SOURCES = [("dreams", "dreams_spindles"), ("prerau", "prerau"), ("sleepedf", "sleepedf_crop")]
PREDICTORS = ("yasa", "sleep2vec", "sdreamer")
FT_PARAMS = {"all": None, "fusion": ("score.",)}  # parameter-name prefixes trained when fine-tuning
FT_ROWS = {"all": "nap_pretrained_ft", "fusion": "nap_pretrained_ft_fusion"}


def load_real(real: Path, *, all_eeg: bool = False):
    """(rec, first EEG channel, {EEG channel: recording holding it}) per recording, and signal recordings.

    With ``all_eeg`` a DREAMS excerpt whose full-PSG EDF sits beside its text file (excerpt3) takes its
    extra EEG channels from the EDF; the EDF's epochs and stages must equal the text file's.
    """
    raws, sigs = [], []
    for fmt, sub in SOURCES:
        for kw in find_recordings(fmt, real / sub):
            rec = read_recording(fmt, **kw)
            eeg = [c.canonical for c in rec.channels if c.modality == "EEG"][0]
            sources = {eeg: rec}
            if all_eeg:
                full = rec
                edf = Path(kw["path"]).with_suffix(".edf")
                if fmt == "dreams" and edf.exists():
                    full = read_recording(fmt, **{**kw, "path": str(edf)})
                    if full.n_epochs != rec.n_epochs or not np.array_equal(full.stages, rec.stages):
                        raise ValueError(f"{edf} has {full.n_epochs} epochs / stages unlike {kw['path']} "
                                         f"({rec.n_epochs}); cannot add its channels")
                for c in full.channels:
                    if c.modality == "EEG" and c.canonical not in sources:
                        sources[c.canonical] = full
            raws.append((rec, eeg, sources))
            sigs.append(recording_to_signal(rec, channels=[eeg]))
    return raws, sigs


def pooled(y_list, p_list) -> dict:
    m = stage_metrics(np.concatenate(y_list), np.concatenate([p.argmax(1) for p in p_list]))
    return {k: m[k] for k in ("kappa", "macro_f1", "accuracy", "n_epochs")}


def trainable(model, prefixes):
    """A copy of ``model`` whose parameters train only where their name starts with one of ``prefixes``
    (None: all of them)."""
    import copy

    model = copy.deepcopy(model)
    for name, q in model.named_parameters():
        q.requires_grad_(prefixes is None or name.startswith(tuple(prefixes)))
    return model


def synthetic_streams(run_dirs) -> list[dict]:
    """NAP training dicts (own ``avail``) of YASA-only streams from ``psgvlm yasa`` runs on other data."""
    from psgvlm.baselines.nap import load_streams

    data = []
    for run in run_dirs:
        st = load_streams({"yasa": run})
        data += [{**d, "avail": st["avail"]} for d in st["recordings"].values()]
    return data


def fit_sleep2vec(pretrained, train, *, steps, seq_len, rng):
    model = Sleep2vecStager(backbone=load_backbone(pretrained),
                            config=Sleep2vecStagerConfig(modalities=("EEG",), train_tokenizers=True))
    pool = [({"EEG": r.modality_array("EEG")}, r.stages) for r in train if r.n_epochs >= seq_len]
    w = class_weights([s for _, s in pool])

    def step(_):
        x, y = random_windows(pool, seq_len=seq_len, batch_size=8, rng=rng)
        return F.cross_entropy(model(x).reshape(-1, N_STAGES), y.reshape(-1), weight=w, ignore_index=UNSCORED)

    model.train()
    train_loop(model.parameters(), step, steps=steps, lr=3e-3, desc="sleep2vec fold")
    return model.eval()


def fit_sdreamer(train, *, steps, rng):
    config = SDreamerConfig(**SIZES["tiny"])
    model = SDreamer(config=config)
    pool = [({"EEG": r.modality_array("EEG")}, r.stages) for r in train if r.n_epochs >= config.seq_len]
    w = class_weights([s for _, s in pool])

    def step(_):
        x, y = random_windows(pool, seq_len=config.seq_len, batch_size=8, rng=rng)
        return model.loss(model.forward_train(x), y, class_weight=w)[0]

    model.train()
    train_loop(model.parameters(), step, steps=steps, lr=1e-3, desc="sDREAMER fold")
    return model.eval()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pretrained", required=True, help="sleep2vec pre-training run dir (EEG tokenizer)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--real", default=str(REAL))
    ap.add_argument("--steps", type=int, default=200, help="training steps per fold and baseline")
    ap.add_argument("--nap_steps", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--zero_shot_yasa", nargs="+", help="psgvlm yasa run dirs on OTHER data (e.g. synthetic ISRUC "
                    "and Sleep-EDF nights): adds a row 'nap_zero_shot_yasa', NAP trained there on YASA streams "
                    "only, applied to the real ones")
    ap.add_argument("--all_eeg", action="store_true", help="YASA on every EEG channel (NAP channel axis)")
    ap.add_argument("--finetune", action="store_true", help="fine-tune the --zero_shot_yasa NAP per fold on the "
                    "training recordings (row nap_pretrained_ft)")
    ap.add_argument("--pretrain_steps", type=int, default=1000, help="NAP steps on the synthetic streams")
    ap.add_argument("--nap_seeds", type=int, default=3, help="ensemble: NAPs pre-trained (and fine-tuned) from "
                    "this many seeds, hypnodensities averaged (rows nap_zero_shot_* and nap_pretrained_ft)")
    ap.add_argument("--ft_steps", type=int, default=200)
    ap.add_argument("--ft_params", nargs="+", default=["all"], choices=list(FT_PARAMS),
                    help="what fine-tuning trains: all weights (row nap_pretrained_ft) and/or only the fusion "
                    "score that weights the streams (row nap_pretrained_ft_fusion)")
    ap.add_argument("--ft_lr", type=float, default=1e-3)
    ap.add_argument("--gate_kappa", type=float, default=0.3, help="leave out, per fold, predictors whose pooled "
                    "kappa on the training recordings is below this (--finetune rows)")
    ap.add_argument("--reuse_oof", action="store_true", help="reuse OUT/oof_streams.npz of the same settings")
    a = ap.parse_args(argv)
    if a.finetune and not a.zero_shot_yasa:
        ap.error("--finetune needs --zero_shot_yasa (the synthetic streams NAP is pre-trained on)")
    torch.set_num_threads(a.threads)
    rng = np.random.default_rng(a.seed)
    torch.manual_seed(a.seed)
    t0 = time.time()
    out = Path(a.out)
    raws, sigs = load_real(Path(a.real), all_eeg=a.all_eeg)
    n = len(sigs)
    s2v_len = min(20, min(r.n_epochs for r in sigs))
    labels = [r.stages for r in sigs]

    # ---- base predictors: YASA (frozen) + LORO-trained baselines -> out-of-fold hypnodensities ----
    oof = {p: [None] * n for p in PREDICTORS}
    yasa_ch = [{ch: yasa_hypnodensity(src, ch) for ch, src in sources.items()} for _, _, sources in raws]
    for i, (_, eeg, _) in enumerate(raws):
        oof["yasa"][i] = yasa_ch[i][eeg]
    cache = out / "oof_streams.npz"
    key = json.dumps({"pretrained": str(Path(a.pretrained).resolve()), "steps": a.steps, "seed": a.seed,
                      "recordings": [f"{r.dataset}:{r.recording}" for r in sigs]}, sort_keys=True)
    if a.reuse_oof and cache.exists() and str(np.load(cache)["key"]) == key:
        z = np.load(cache)
        for p in PREDICTORS[1:]:
            oof[p] = [z[f"{p}_{i}"] if f"{p}_{i}" in z else None for i in range(n)]
        print(f"reused out-of-fold baseline streams from {cache}")
    else:
        for i, held in enumerate(sigs):
            train = [r for j, r in enumerate(sigs) if j != i]
            s2v = fit_sleep2vec(a.pretrained, train, steps=a.steps, seq_len=s2v_len, rng=rng)
            oof["sleep2vec"][i] = predict_windows(s2v, {"EEG": held.modality_array("EEG")}, seq_len=s2v_len)
            sd = fit_sdreamer(train, steps=a.steps, rng=rng)
            if held.n_epochs >= sd.config.seq_len:
                oof["sdreamer"][i] = predict_windows(sd, {"EEG": held.modality_array("EEG")},
                                                     seq_len=sd.config.seq_len)
        out.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, key=key, **{f"{p}_{i}": oof[p][i] for p in PREDICTORS[1:] for i in range(n)
                                  if oof[p][i] is not None})
        os.replace(tmp, cache)

    # ---- NAP (LORO over out-of-fold streams) and soft voting --------------------------------------
    def grid(i):
        present = [k for k, p in enumerate(PREDICTORS) if oof[p][i] is not None]
        probs = np.zeros((1, sigs[i].n_epochs, len(PREDICTORS), N_STAGES), np.float32)
        for k in present:
            probs[0, :, k] = oof[PREDICTORS[k]][i]
        return probs, present

    def montage_grid(i, predictors, all_eeg):
        """(probs (C, T, P', 5), avail (C, P')) of the given predictors present on recording i: YASA on
        one row per EEG channel (all of them, or the first), the signal baselines on a whole-montage row."""
        chans = list(yasa_ch[i]) if all_eeg else [raws[i][1]]
        yasa = "yasa" in predictors
        others = [p for p in predictors if p != "yasa" and oof[p][i] is not None]
        cols = (["yasa"] if yasa else []) + others
        rows = (chans if yasa else []) + (["*"] if others else [])
        probs = np.zeros((len(rows), sigs[i].n_epochs, len(cols), N_STAGES), np.float32)
        avail = np.zeros((len(rows), len(cols)), bool)
        if yasa:
            for c, ch in enumerate(chans):
                probs[c, :, 0], avail[c, 0] = yasa_ch[i][ch], True
        for k, p in enumerate(others, start=int(yasa)):
            probs[-1, :, k], avail[-1, k] = oof[p][i], True
        return probs, avail

    nap_kw = dict(config=NAPConfig(), lr=3e-3, batch_size=8, min_len=8, max_len=40)
    full = np.ones((1, len(PREDICTORS)), bool)
    preds = {"nap": [None] * n, "soft_vote": [None] * n}
    for i in range(n):
        train = [{"probs": grid(j)[0], "labels": sigs[j].stages} for j in range(n)
                 if j != i and len(grid(j)[1]) == len(PREDICTORS)]
        model, _ = train_nap(train, full, steps=a.nap_steps, seed=a.seed + i, desc=f"NAP fold {i}", **nap_kw)
        probs, present = grid(i)
        preds["nap"][i] = predict_nap(model, probs, full, predictors=present, window=40)
        preds["soft_vote"][i] = soft_vote(probs[:, :, present], np.ones((1, len(present)), bool))
    if a.all_eeg:
        preds["yasa_vote_all_eeg"] = [np.mean(list(yasa_ch[i].values()), 0) for i in range(n)]

    extra = {}
    if a.zero_shot_yasa:  # the NAP paper's protocol: trained on other corpora, applied zero-shot
        syn = synthetic_streams(a.zero_shot_yasa)
        seeds = [a.seed + 1000 * k for k in range(a.nap_seeds)]
        pres = [train_nap(syn, None, steps=a.pretrain_steps, seed=s, desc=f"NAP pre-training (YASA, seed {s})",
                          **nap_kw)[0] for s in seeds]
        extra["synthetic_nights"] = len(syn)

        def zero_shot(i, all_eeg):
            probs, avail = montage_grid(i, ["yasa"], all_eeg)
            return np.mean([predict_nap(m, probs, avail, window=40) for m in pres], 0)

        preds["nap_zero_shot_yasa"] = [zero_shot(i, False) for i in range(n)]
        if a.all_eeg:
            preds["nap_zero_shot_yasa_all_eeg"] = [zero_shot(i, True) for i in range(n)]
        if a.finetune:
            for ft in a.ft_params:
                preds[FT_ROWS[ft]] = [None] * n
            preds["soft_vote_gated"] = [None] * n
            gates = extra["gates"] = []
            for i in range(n):
                tr = [j for j in range(n) if j != i]
                kappa = {p: pooled([labels[j] for j in tr if oof[p][j] is not None],
                                   [oof[p][j] for j in tr if oof[p][j] is not None])["kappa"] for p in PREDICTORS}
                kept = [p for p in PREDICTORS if kappa[p] >= a.gate_kappa] or [max(kappa, key=kappa.get)]
                gates.append({"held_out": sigs[i].recording, "train_kappa": kappa, "kept": kept})
                real = [{"probs": pr, "avail": av, "labels": labels[j]}
                        for j in tr for pr, av in [montage_grid(j, kept, a.all_eeg)]]
                reps = max(1, round(len(syn) / len(real)))  # real and synthetic streams in about equal shares
                probs, avail = montage_grid(i, kept, a.all_eeg)
                for ft in a.ft_params:
                    tuned = [train_nap(real * reps + syn, None, steps=a.ft_steps, seed=s + 100 + i,
                                       init=trainable(pre, FT_PARAMS[ft]), desc=f"NAP fine-tune ({ft}) fold {i} "
                                       f"seed {s}", **{**nap_kw, "lr": a.ft_lr})[0] for s, pre in zip(seeds, pres)]
                    preds[FT_ROWS[ft]][i] = np.mean([predict_nap(m, probs, avail, window=40) for m in tuned], 0)
                kept_present = [p for p in kept if oof[p][i] is not None]
                preds["soft_vote_gated"][i] = np.mean([oof[p][i] for p in kept_present], 0)

    # ---- table -------------------------------------------------------------------------------------
    y_all = np.concatenate(labels)
    table = {}
    for name, per_rec in {**oof, **preds}.items():
        keep = [i for i in range(n) if per_rec[i] is not None]
        table[name] = {**pooled([labels[i] for i in keep], [per_rec[i] for i in keep]),
                       "recordings": [sigs[i].recording for i in keep],
                       "per_recording_accuracy": {sigs[i].recording: float(np.mean(
                           per_rec[i].argmax(1)[labels[i] != UNSCORED] == labels[i][labels[i] != UNSCORED]))
                           for i in keep}}
    lines = ["| predictor | kappa | macro-F1 | accuracy | epochs |", "|---|---|---|---|---|"]
    for name, m in table.items():
        lines.append(f"| {name} | {m['kappa']:.3f} | {m['macro_f1']:.3f} | {m['accuracy']:.3f} | {m['n_epochs']} |")
    print("\n".join(lines))
    write_json_atomic(out / "results.json", {
        "kind": "baselines-loro-real", "args": vars(a), "recordings": [f"{r.dataset}:{r.recording}" for r in sigs],
        "eeg_channels": {sigs[i].recording: list(yasa_ch[i]) for i in range(n)},
        "n_scored_epochs": int(np.sum(y_all != UNSCORED)), "table": table, "markdown": "\n".join(lines), **extra,
        "seconds": time.time() - t0, "provenance": provenance()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
