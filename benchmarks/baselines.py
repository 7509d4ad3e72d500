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
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from psgvlm.baselines.common import class_weights, predict_windows, random_windows, train_loop
from psgvlm.baselines.nap import NAPConfig, predict_nap, soft_vote, train_nap
from psgvlm.baselines.sdreamer import SIZES, SDreamer, SDreamerConfig
from psgvlm.baselines.signal_data import recording_to_signal
from psgvlm.baselines.sleep2vec import Sleep2vecStager, load_backbone
from psgvlm.baselines.yasa_stager import yasa_hypnodensity
from psgvlm.metrics import stage_metrics
from psgvlm.provenance import provenance, write_json_atomic
from psgvlm.readers import find_recordings, read_recording
from psgvlm.stages import N_STAGES, UNSCORED

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
SOURCES = [("dreams", "dreams_spindles"), ("prerau", "prerau"), ("sleepedf", "sleepedf_crop")]
PREDICTORS = ("yasa", "sleep2vec", "sdreamer")


def load_real(real: Path):
    raws, sigs = [], []
    for fmt, sub in SOURCES:
        for kw in find_recordings(fmt, real / sub):
            rec = read_recording(fmt, **kw)
            eeg = [c.canonical for c in rec.channels if c.modality == "EEG"][0]
            raws.append((rec, eeg))
            sigs.append(recording_to_signal(rec, channels=[eeg]))
    return raws, sigs


def fit_sleep2vec(pretrained, train, *, steps, seq_len, rng):
    model = Sleep2vecStager(backbone=load_backbone(pretrained), modalities=("EEG",), train_tokenizers=True)
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
    pool = [({"eeg": r.modality_array("EEG")}, r.stages) for r in train if r.n_epochs >= config.seq_len]
    w = class_weights([s for _, s in pool])

    def step(_):
        x, y = random_windows(pool, seq_len=config.seq_len, batch_size=8, rng=rng)
        return model.loss(model(**x), y, class_weight=w)[0]

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
    ap.add_argument("--zero_shot_yasa", help="a yasa_stager run dir on OTHER data (e.g. synthetic ISRUC): adds a "
                    "row 'nap_zero_shot_yasa', NAP trained there on YASA streams only, applied to the real ones")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    rng = np.random.default_rng(a.seed)
    torch.manual_seed(a.seed)
    t0 = time.time()
    raws, sigs = load_real(Path(a.real))
    n = len(sigs)
    s2v_len = min(20, min(r.n_epochs for r in sigs))

    # ---- base predictors: YASA (frozen) + LORO-trained baselines -> out-of-fold hypnodensities ----
    oof = {p: [None] * n for p in PREDICTORS}
    for i, (rec, eeg) in enumerate(raws):
        oof["yasa"][i] = yasa_hypnodensity(rec, eeg)
    for i, held in enumerate(sigs):
        train = [r for j, r in enumerate(sigs) if j != i]
        s2v = fit_sleep2vec(a.pretrained, train, steps=a.steps, seq_len=s2v_len, rng=rng)
        oof["sleep2vec"][i] = predict_windows(s2v, {"EEG": held.modality_array("EEG")}, seq_len=s2v_len)
        sd = fit_sdreamer(train, steps=a.steps, rng=rng)
        if held.n_epochs >= sd.config.seq_len:
            oof["sdreamer"][i] = predict_windows(lambda x, sd=sd: SDreamer.primary(sd(**x)),
                                                 {"eeg": held.modality_array("EEG")}, seq_len=sd.config.seq_len)

    # ---- NAP (LORO over out-of-fold streams) and soft voting --------------------------------------
    def grid(i):
        present = [k for k, p in enumerate(PREDICTORS) if oof[p][i] is not None]
        probs = np.zeros((1, sigs[i].n_epochs, len(PREDICTORS), N_STAGES), np.float32)
        for k in present:
            probs[0, :, k] = oof[PREDICTORS[k]][i]
        return probs, present

    full = np.ones((1, len(PREDICTORS)), bool)
    preds = {"nap": [None] * n, "soft_vote": [None] * n}
    for i in range(n):
        train = [{"probs": grid(j)[0], "labels": sigs[j].stages} for j in range(n)
                 if j != i and len(grid(j)[1]) == len(PREDICTORS)]
        model, _ = train_nap(train, full, config=NAPConfig(), steps=a.nap_steps, lr=3e-3, batch_size=8,
                             min_len=8, max_len=40, seed=a.seed + i, desc=f"NAP fold {i}")
        probs, present = grid(i)
        preds["nap"][i] = predict_nap(model, probs, full, predictors=present, window=40)
        preds["soft_vote"][i] = soft_vote(probs[:, :, present], np.ones((1, len(present)), bool))

    if a.zero_shot_yasa:  # the NAP paper's protocol: trained on one corpus, applied zero-shot
        from psgvlm.baselines.nap import load_streams

        streams = load_streams({"yasa": a.zero_shot_yasa})
        model, _ = train_nap(list(streams["recordings"].values()), streams["avail"], config=NAPConfig(),
                             steps=a.nap_steps, lr=3e-3, batch_size=8, min_len=8, max_len=40, seed=a.seed,
                             desc="NAP zero-shot (YASA)")
        yasa_only = np.ones((1, 1), bool)
        preds["nap_zero_shot_yasa"] = [predict_nap(model, grid(i)[0][:, :, :1], yasa_only, window=40)
                                       for i in range(n)]

    # ---- table -------------------------------------------------------------------------------------
    y_all = np.concatenate([r.stages for r in sigs])
    table = {}
    for name, per_rec in {**oof, **preds}.items():
        keep = [i for i in range(n) if per_rec[i] is not None]
        y = np.concatenate([sigs[i].stages for i in keep])
        p = np.concatenate([per_rec[i].argmax(1) for i in keep])
        m = stage_metrics(y, p)
        table[name] = {"kappa": m["kappa"], "macro_f1": m["macro_f1"], "accuracy": m["accuracy"],
                       "n_epochs": m["n_epochs"], "recordings": [sigs[i].recording for i in keep],
                       "per_recording_accuracy": {sigs[i].recording: float(np.mean(
                           per_rec[i].argmax(1)[sigs[i].stages != UNSCORED] == sigs[i].stages[sigs[i].stages != UNSCORED]))
                           for i in keep}}
    lines = ["| predictor | kappa | macro-F1 | accuracy | epochs |", "|---|---|---|---|---|"]
    for name, m in table.items():
        lines.append(f"| {name} | {m['kappa']:.3f} | {m['macro_f1']:.3f} | {m['accuracy']:.3f} | {m['n_epochs']} |")
    print("\n".join(lines))
    write_json_atomic(Path(a.out) / "results.json", {
        "kind": "baselines-loro-real", "args": vars(a), "recordings": [f"{r.dataset}:{r.recording}" for r in sigs],
        "n_scored_epochs": int(np.sum(y_all != UNSCORED)), "table": table, "markdown": "\n".join(lines),
        "seconds": time.time() - t0, "provenance": provenance()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
