"""Signal baselines (sleep2vec, sDREAMER, NAP, YASA stager) and their recipes.

Run: python -m pytest -q tests/test_baselines.py        (about 1-2 min on 2 busy cores)

Models are tiny and built from configs; recordings are small test fixtures (stage-dependent
oscillations, clearly not a product generator; the product's synthetic PSG is ``psgvlm synth``).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from psgvlm.baselines.common import predict_windows
from psgvlm.baselines.nap import (
    NAP,
    NAPConfig,
    grid_to_streams,
    load_streams,
    predict_nap,
    soft_vote,
    train_nap,
)
from psgvlm.baselines.sdreamer import SIZES as SD_SIZES
from psgvlm.baselines.sdreamer import SDreamer, SDreamerConfig
from psgvlm.baselines.signal_data import (
    load_signal_dataset,
    recording_to_signal,
    save_signal_dataset,
    sequence_starts,
)
from psgvlm.baselines.sleep2vec import (
    SIZES as S2V_SIZES,
)
from psgvlm.baselines.sleep2vec import (
    Sleep2vec,
    Sleep2vecConfig,
    Sleep2vecStager,
    Sleep2vecStagerConfig,
    contrastive_loss,
    dash_weights,
)
from psgvlm.io.recording import Channel, Recording
from psgvlm.predictions import make_rows, write_predictions

REPO = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)  # tiny models: a second thread only adds contention on a shared box

# ---- test fixtures ----------------------------------------------------------------------------------
_EEG_HZ = {0: 10.0, 1: 6.0, 2: 13.0, 3: 1.5, 4: 7.0}  # dominant rhythm per stage
_EEG_UV = {0: 20.0, 1: 25.0, 2: 30.0, 3: 80.0, 4: 15.0}
_EMG_UV = {0: 30.0, 1: 15.0, 2: 10.0, 3: 8.0, 4: 2.0}
_EOG_UV = {0: 40.0, 1: 20.0, 2: 5.0, 3: 5.0, 4: 60.0}


def make_recording(subject: str, n_epochs: int = 40, seed: int = 0, sfreq: float = 100.0,
                   modalities=("EEG", "EOG", "EMG"), meta=None) -> Recording:
    """A fixture recording whose stages are visible in every channel (Markov-chain hypnogram)."""
    rng = np.random.default_rng(seed)
    stages = [int(rng.integers(5))]
    for _ in range(n_epochs - 1):
        stages.append(stages[-1] if rng.random() < 0.7 else int(rng.integers(5)))
    stages = np.array(stages, np.int8)
    n = int(30 * sfreq)
    t = np.arange(n) / sfreq
    chans = {"EEG": [], "EOG": [], "EMG": []}
    for s in stages:
        chans["EEG"].append(_EEG_UV[s] * np.sin(2 * np.pi * _EEG_HZ[s] * t + rng.uniform(0, 6)) + 5 * rng.standard_normal(n))
        chans["EOG"].append(_EOG_UV[s] * np.sin(2 * np.pi * 0.5 * t + rng.uniform(0, 6)) + 5 * rng.standard_normal(n))
        chans["EMG"].append(_EMG_UV[s] * rng.standard_normal(n))
    names = {"EEG": "C3", "EOG": "LOC", "EMG": "EMG"}
    channels = [Channel(names[m], names[m], m, sfreq, np.concatenate(chans[m]).astype(np.float32))
                for m in modalities]
    return Recording(channels=channels, subject=subject, recording=subject, dataset="fixture", source="fixture",
                     stages=stages, meta=meta or {"age": 40.0, "sex": "F", "site": "A"})


@pytest.fixture(scope="module")
def signal_recs():
    return [recording_to_signal(make_recording(str(i), seed=i)) for i in range(6)]


def _tiny_s2v(**kw):
    return Sleep2vec(config=Sleep2vecConfig(**{**S2V_SIZES["tiny"], "max_epochs": 64, **kw}))


# ---- signal dataset -------------------------------------------------------------------------------
def test_signal_dataset_rates_roundtrip_and_windows(tmp_path):
    rec = make_recording("7", n_epochs=12)
    rec.channels.append(Channel("Flow", "FLOW", "RESP", 10.0, np.random.default_rng(0).standard_normal(3600).astype(np.float32)))
    sig = recording_to_signal(rec)
    assert sig.x["C3"].shape == (12, 3840) and sig.x["FLOW"].shape == (12, 120)  # 128 Hz / 4 Hz
    assert abs(sig.x["C3"].mean()) < 1e-3 and abs(sig.x["C3"].std() - 1) < 1e-3
    out = save_signal_dataset([sig], tmp_path / "ds", split={"kind": "none"})
    recs, meta = load_signal_dataset(out)
    assert meta["kind"] == "psgvlm-signal-dataset" and np.array_equal(recs[0].x["LOC"], sig.x["LOC"])
    assert list(sequence_starts(40, 16)) == [0, 16, 24]
    with pytest.raises(ValueError, match="shorter than the model's window K=16"):
        sequence_starts(10, 16)


def test_signal_dataset_uses_the_one_epoch_cutter_and_refuses_old_versions(tmp_path):
    from psgvlm.baselines.common import SignalDataArguments, load_or_build_signal_data
    from psgvlm.signal.epochs import epochs_from_recording

    rec = make_recording("8", n_epochs=6)
    rec.onset_s = 10.0  # labels start 10 s in: the last epoch is partial and dropped, never padded
    sig = recording_to_signal(rec)
    x, _, starts = epochs_from_recording(rec, ["C3"], 128.0)
    assert sig.n_epochs == len(x) == 5 and np.array_equal(sig.starts_s, starts) and starts[0] == 10.0
    assert np.corrcoef(sig.x["C3"].ravel(), x[:, 0].ravel())[0, 1] > 0.9999  # the same samples, z-scored
    assert sig.meta["upsampled_from_hz"] == {"C3": 100.0, "LOC": 100.0, "EMG": 100.0}
    out = save_signal_dataset([sig], tmp_path / "ds", split={"kind": "none"})
    meta = json.loads((out / "meta.json").read_text())
    (out / "meta.json").write_text(json.dumps({**meta, "version": 1}))
    with pytest.raises(ValueError, match="format version 1; this psgvlm reads version 2 .* rebuild it"):
        load_or_build_signal_data(SignalDataArguments(signal_data=str(out)))


def test_missing_modality_and_nan_are_named():
    sig = recording_to_signal(make_recording("1", n_epochs=4, modalities=("EEG",)))
    with pytest.raises(ValueError, match=r"no EMG channel; present: .*'C3': 'EEG'"):
        sig.modality_array("EMG")
    bad = make_recording("2", n_epochs=4)
    bad.channels[0].data[5] = np.nan
    with pytest.raises(ValueError, match="'C3' holds 1 NaN"):
        recording_to_signal(bad)


# ---- sleep2vec -----------------------------------------------------------------------------------
def test_dash_weights_hand_computed():
    cfg = Sleep2vecConfig(**S2V_SIZES["tiny"])
    omega, h = dash_weights([30, 50, None], ["M", "F", "M"], ["a", "a", "b"], ["n1", "n1", "n2"], config=cfg)
    # row 0: self 1*1.0*1.3; j=1 age kernel e^-1 (|30-50|/20), sex diff 0.8, site same 1.3, same night
    # -> + eps; j=2 age unknown -> 1, sex same 1.0, site diff 0.8
    a0 = np.array([1.3, np.exp(-1) * 0.8 * 1.3 + 1e-6, 0.8])
    np.testing.assert_allclose(omega[0], a0 / a0.sum(), rtol=1e-12)
    # row 2: age unknown vs all -> 1; sex same/diff/same; site diff/diff/same
    a2 = np.array([1.0 * 1.0 * 0.8, 1.0 * 0.8 * 0.8, 1.3])
    np.testing.assert_allclose(omega[2], a2 / a2.sum(), rtol=1e-12)
    assert h.tolist() == [[False, True, False], [True, False, False], [False, False, False]]
    # all metadata unknown -> uniform weights
    omega_u, _ = dash_weights([None] * 4, [None] * 4, [None] * 4, list("abcd"), config=cfg)
    np.testing.assert_allclose(omega_u, 0.25)


def test_dash_loss_matches_formula_and_reduces_to_infonce():
    sim = torch.tensor([[[0.9, 0.2, -0.1], [0.3, 0.8, 0.0], [0.1, 0.4, 0.7]]])  # (L=1, B=3, B=3)
    omega = torch.tensor([[0.5, 0.3, 0.2], [0.3, 0.5, 0.2], [0.2, 0.2, 0.6]])
    pseudo = torch.tensor([[False, True, False], [True, False, False], [False, False, False]])
    got = contrastive_loss(sim, temperature=0.2, omega=omega, pseudo=pseudo, margin=0.1)
    want = 0
    for s in (sim[0], sim[0].T):
        for i in range(3):
            den = sum(omega[i, j] * torch.exp((s[i, j] - 0.1 * pseudo[i, j]) / 0.2) for j in range(3))
            want += -torch.log(torch.exp(s[i, i] / 0.2) / den) / 6
    assert torch.allclose(got, want, atol=1e-5)
    uniform = torch.full((3, 3), 1 / 3)
    base = contrastive_loss(sim, temperature=0.2)
    dash = contrastive_loss(sim, temperature=0.2, omega=uniform, pseudo=torch.zeros(3, 3, dtype=torch.bool))
    assert torch.allclose(dash, base - np.log(3), atol=1e-5)


def test_sleep2vec_pretrain_loss_falls_and_lora_freezes_backbone():
    torch.manual_seed(0)
    model = _tiny_s2v(modalities=("EEG", "EOG"), dropout=0.0)
    g = torch.Generator().manual_seed(0)
    xa = torch.randn(8, 4, 3840, generator=g)
    xb = xa + 0.3 * torch.randn(8, 4, 3840, generator=g)  # paired views share the signal
    meta = {"age": [40] * 8, "sex": ["F"] * 8, "site": ["A"] * 8, "night": [i // 2 for i in range(8)]}
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss = model.pretrain_loss({"EEG": xa, "EOG": xb}, meta=meta, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.2, losses
    stager = Sleep2vecStager(backbone=model, config=Sleep2vecStagerConfig(modalities=("EEG",)))
    frozen = {n: p.detach().clone() for n, p in stager.named_parameters() if not p.requires_grad}
    trainable = {n: p.detach().clone() for n, p in stager.named_parameters() if p.requires_grad}
    assert any("lora_" in n for n in trainable) and any(n.startswith("head") for n in trainable)
    assert not any("lora_" not in n and "encoder" in n for n in trainable)
    opt = torch.optim.AdamW([p for p in stager.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(2):
        loss = torch.nn.functional.cross_entropy(stager({"EEG": xa}).reshape(-1, 5), torch.randint(0, 5, (32,)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    now = dict(stager.named_parameters())
    assert all(torch.equal(now[n], v) for n, v in frozen.items())
    assert any(not torch.equal(now[n], v) for n, v in trainable.items() if "lora_B" in n)
    with pytest.raises(ValueError, match=r"modalities \['EMG'\] are not known to the model; known: \['EEG'\]"):
        stager({"EMG": xa})
    with pytest.raises(ValueError, match="NaN"):
        stager({"EEG": torch.full((1, 4, 3840), float("nan"))})


# ---- sDREAMER ----------------------------------------------------------------------------------
def _sd_data(signal_recs):
    return [({"EEG": r.x["C3"], "EMG": r.x["EMG"]}, r.stages) for r in signal_recs]


def test_sdreamer_distillation_gradients_and_learning(signal_recs):
    from psgvlm.baselines.common import random_windows

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    pool = _sd_data(signal_recs)
    x, y = random_windows(pool, seq_len=16, batch_size=4, rng=rng)
    no_kd = SDreamer(config=SDreamerConfig(**SD_SIZES["tiny"], distill_weight=0.0))
    loss, parts = no_kd.loss(no_kd.forward_train(x), y)
    loss.backward()
    assert set(parts) == {"ce_mix"}
    assert no_kd.heads["eeg"].weight.grad is None and no_kd.heads["emg"].weight.grad is None  # unimodal heads untrained
    model = SDreamer(config=SDreamerConfig(**SD_SIZES["tiny"], dropout=0.0))
    loss, parts = model.loss(model.forward_train(x), y)
    loss.backward()
    assert set(parts) == {"ce_mix", "kd_eeg", "kd_emg"}
    assert model.heads["emg"].weight.grad.abs().sum() > 0 and model.heads["mix"].weight.grad.abs().sum() > 0
    # teacher detached: the distillation terms alone give the mixed head no gradient
    kd_only = SDreamer(config=SDreamerConfig(**SD_SIZES["tiny"]))
    kd_only.load_state_dict(model.state_dict())
    out = kd_only.forward_train(x)
    kl = F.kl_div(F.log_softmax(out["eeg"], -1), F.log_softmax(out["mix"].detach(), -1), log_target=True,
                  reduction="batchmean")
    kl.backward()
    assert kd_only.heads["mix"].weight.grad is None
    # loss falls on the fixture problem
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(24):
        x, y = random_windows(pool, seq_len=16, batch_size=2, rng=rng)
        loss, _ = model.loss(model.forward_train(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-6:]) < np.mean(losses[:6]) * 0.8, losses


def test_sdreamer_pathways_and_single_channel_inference():
    model = SDreamer(config=SDreamerConfig(**SD_SIZES["tiny"]))
    out = model.forward_train({"EEG": torch.randn(2, 16, 3840), "EMG": torch.randn(2, 16, 3840)})
    assert {k: tuple(v.shape) for k, v in out.items()} == {p: (2, 16, 5) for p in ("eeg", "emg", "mix")}
    assert set(model.forward_train({"EMG": torch.randn(1, 16, 3840)})) == {"emg"}  # single-channel inference


def test_sdreamer_bad_input():
    model = SDreamer(config=SDreamerConfig(**SD_SIZES["tiny"]))
    with pytest.raises(ValueError, match="has 10 epochs; the model needs K=16"):
        model({"EEG": torch.randn(1, 10, 3840)})
    with pytest.raises(ValueError, match=r"EMG input holds \d+ NaN"):
        model({"EEG": torch.randn(1, 16, 3840), "EMG": torch.full((1, 16, 3840), float("nan"))})
    with pytest.raises(ValueError, match="needs EEG and/or EMG"):
        model({})
    with pytest.raises(ValueError, match="shorter than the model's window K=16"):
        predict_windows(model, {"EEG": np.zeros((10, 3840), np.float32)}, seq_len=16)


# ---- NAP -------------------------------------------------------------------------------------------
def _nap_data(n_recs=6, t=40, seed=0):
    """Predictor 0 is right 80% of the time; predictors 1 and 2 agree on a wrong stage (y + 1 mod 5).

    Soft voting follows the wrong majority; NAP must learn to trust predictor 0.
    """
    rng = np.random.default_rng(seed)
    data = []
    for _ in range(n_recs):
        y = rng.integers(0, 5, t)
        probs = np.zeros((2, t, 3, 5), np.float32)
        for c in range(2):
            for p in range(3):
                guess = np.where(rng.random(t) < 0.8, y, rng.integers(0, 5, t)) if p == 0 else (y + 1) % 5
                logits = 2.0 * np.eye(5)[guess] + rng.standard_normal((t, 5))
                probs[c, :, p] = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        data.append({"probs": probs, "labels": y})
    return data


def test_nap_learns_to_beat_soft_voting_and_axis_ablation_runs():
    data = _nap_data()
    avail = np.ones((2, 3), bool)
    model, losses = train_nap(data[:4], avail, config=NAPConfig(dropout=0.0), steps=60, lr=1e-2,
                              batch_size=8, min_len=8, max_len=20)
    assert np.mean(losses[-10:]) < np.mean(losses[:10]) - 0.3
    acc_nap = np.mean([np.mean(predict_nap(model, d["probs"], avail).argmax(1) == d["labels"]) for d in data[4:]])
    acc_vote = np.mean([np.mean(soft_vote(d["probs"], avail).argmax(1) == d["labels"]) for d in data[4:]])
    assert acc_nap > acc_vote + 0.3, (acc_nap, acc_vote)
    p = predict_nap(model, data[4]["probs"], avail, channels=[1], predictors=[0, 2])  # any subset
    assert p.shape == (40, 5) and np.allclose(p.sum(1), 1, atol=1e-5)
    pw = predict_nap(model, data[4]["probs"], avail, window=16)  # windows within trained lengths
    assert pw.shape == (40, 5) and np.allclose(pw.sum(1), 1, atol=1e-5)
    ablated = NAP(config=NAPConfig(axes=("time", "predictor")))
    assert ablated(grid_to_streams(torch.from_numpy(data[0]["probs"][None]))).shape == (1, 40, 5)


def test_nap_any_subset_any_length():
    model = NAP(config=NAPConfig())
    p = torch.softmax(torch.randn(2, 3, 12, 4, 5), -1)
    assert model(grid_to_streams(p)).shape == (2, 12, 5)
    assert model(grid_to_streams(p[:, :1, :7, 2:])).shape == (2, 7, 5)  # any subset, any length


def test_nap_frozen_inputs_grads_and_masking():
    model = NAP(config=NAPConfig())
    p = torch.softmax(torch.randn(2, 3, 10, 2, 5), -1)
    avail = torch.tensor([[True, False], [True, True], [False, True]])
    out, _ = model.forward_grid(p, avail)
    out.sum().backward()
    assert all(q.grad is not None for q in model.parameters())
    p2 = p.clone()
    p2[:, 0, :, 1] = torch.rand(2, 10, 5)  # an unavailable cell must not change the output
    assert torch.allclose(model.eval().forward_grid(p, avail)[0], model.forward_grid(p2, avail)[0], atol=1e-6)
    assert torch.allclose(model.forward_grid(p, avail)[0], model(grid_to_streams(p, avail)), atol=1e-6)
    with pytest.raises(ValueError, match="NaN"):
        model(grid_to_streams(torch.full((1, 3, 10, 2, 5), float("nan")), avail))


def _write_stream(path, n_epochs, subject="1", recording="r1", seed=0):
    probs = np.random.default_rng(seed).dirichlet(np.ones(5), n_epochs)
    rows = make_rows(dataset="d", subjects=[subject] * n_epochs, recordings=[recording] * n_epochs,
                     epochs=range(n_epochs), starts_s=30.0 * np.arange(n_epochs), labels=[2] * n_epochs, probs=probs)
    write_predictions(path, rows)


def test_nap_streams_refuse_mismatch(tmp_path):
    _write_stream(tmp_path / "a", 20)
    _write_stream(tmp_path / "b" / "channels" / "C3", 20, seed=1)
    s = load_streams({"a": tmp_path / "a", "b": tmp_path / "b"})
    assert s["channels"] == ["C3", "*"] and s["avail"].tolist() == [[False, True], [True, False]]
    assert s["recordings"][("d", "1", "r1")]["probs"].shape == (2, 20, 2, 5)
    _write_stream(tmp_path / "short", 18)
    with pytest.raises(ValueError, match="predictor 'short' channel '\\*' has 18 epochs but 'a' channel '\\*' has 20"):
        load_streams({"a": tmp_path / "a", "short": tmp_path / "short"})
    _write_stream(tmp_path / "other", 20, recording="r2")
    with pytest.raises(ValueError, match="cover different recordings"):
        load_streams({"a": tmp_path / "a", "other": tmp_path / "other"})
    _write_stream(tmp_path / "subj", 20, subject="9")
    with pytest.raises(ValueError, match="subject '9'"):
        load_streams({"a": tmp_path / "a", "subj": tmp_path / "subj"})


# ---- YASA on a real recording ------------------------------------------------------------------------
def test_yasa_stager_real_dreams_excerpt(real_data_dir):
    from psgvlm.io.readers import read_recording
    from psgvlm.metrics import stage_metrics
    from psgvlm.reference.yasa import yasa_predict

    d = real_data_dir / "dreams_spindles"
    rec = read_recording("dreams", d / "excerpt1.txt", hypnogram=d / "Hypnogram_excerpt1.txt")
    (probs,) = yasa_predict(rec).streams.values()
    assert probs.shape == (rec.n_epochs, 5) and np.allclose(probs.sum(1), 1)
    assert stage_metrics(rec.stages[: rec.n_epochs], probs.argmax(1))["kappa"] > 0.4  # a real, pretrained stager


def test_recipe_config_rejects_unknown_keys(tmp_path):
    from psgvlm.training import parse_args

    sys.path.insert(0, str(REPO / "recipes"))
    try:
        import nap as nap_recipe
    finally:
        sys.path.pop(0)
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("d_model: 24\nlr: 0.1\n")
    with pytest.raises(ValueError, match=r"unknown keys \['lr'\]"):
        parse_args(nap_recipe.Args, ["--config", str(cfg), "--output_dir", "x", "--predictors", "a=b"])
    good = tmp_path / "good.yaml"
    good.write_text("d_model: 12\noutput_dir: runs/x\npredictors: [a=b]\n")
    args = parse_args(nap_recipe.Args, ["--config", str(good), "--n_layers", "2"])
    assert (args.d_model, args.n_layers, args.output_dir, args.predictors) == (12, 2, "runs/x", ["a=b"])


# ---- recipes end to end (tiny) ---------------------------------------------------------------------
def _run(script, *args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, str(REPO / "recipes" / script), *map(str, args)], capture_output=True,
                       text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def test_recipes_end_to_end(tmp_path):
    recs = [recording_to_signal(make_recording(f"s{i}", n_epochs=24, seed=i,
                                               meta={"age": 30 + 5 * i, "sex": "MF"[i % 2], "site": "A"}))
            for i in range(5)]
    split = {"kind": "subject", "seed": 0, "train": ["s0", "s1", "s2"], "validation": ["s3"], "test": ["s4"]}
    data = save_signal_dataset(recs, tmp_path / "sig", split=split)
    common = ["--signal_data", data, "--max_steps", "3", "--per_device_train_batch_size", "4"]
    _run("sleep2vec_pretrain.py", "--config", REPO / "recipes/configs/sleep2vec_tiny_pretrain.yaml",
         "--output_dir", tmp_path / "pre", "--seq_len", "8", *common)
    _run("sleep2vec_finetune.py", "--config", REPO / "recipes/configs/sleep2vec_tiny_finetune.yaml",
         "--pretrained", tmp_path / "pre", "--output_dir", tmp_path / "ft", "--seq_len", "8", *common)
    _run("sdreamer.py", "--config", REPO / "recipes/configs/sdreamer_tiny.yaml", "--output_dir", tmp_path / "sd",
         *common)
    for run in ("ft", "sd"):
        assert (tmp_path / run / "predictions.jsonl").exists() and (tmp_path / run / "metrics.json").exists()
        meta = json.loads((tmp_path / run / "meta.json").read_text())
        assert meta["provenance"]["versions"]["torch"]
    single = json.loads((tmp_path / "sd" / "metrics_single_channel.json").read_text())
    assert set(single) == {"eeg", "emg", "eeg+emg"}
    _run("nap.py", "--config", REPO / "recipes/configs/nap_paper.yaml", "--predictors",
         f"sdreamer={tmp_path / 'sd'}", f"sleep2vec={tmp_path / 'ft'}", "--signal_data", data,
         "--output_dir", tmp_path / "nap", "--max_steps", "3", "--min_len", "4", "--max_len", "8")
    table = json.loads((tmp_path / "nap" / "metrics_table.json").read_text())
    assert {"nap", "soft_vote", "nap_without_sdreamer"} <= set(table)
