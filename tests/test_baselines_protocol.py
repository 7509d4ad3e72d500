"""The papers' protocols in the signal baselines (issue 13): sleep2vec whole-night fine-tuning (positions
extended, short nights padded and masked, never dropped), one fine-tune per channel set, the paper's
weight decay and class weighting as a named option, pre-training pairs from each night's own
modalities, DASH terms, data fraction and resume, the paper-size parameter counts; sDREAMER's
epoch-only variant and single-channel-trained comparator.

Run: python -m pytest -q tests/test_baselines_protocol.py      (~1 min on 2 busy cores)
     python -m pytest -q -m slow tests/test_baselines_protocol.py   (the whole-night step at length 1100, ~45 s)

Models are tiny (width 32) except in the parameter counts (paper sizes on the meta device); the
whole-night case runs the paper fine-tune config at full sequence length 1100 on random signals.
"""

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from psgvlm.baselines.common import class_weights, predict_windows, random_windows
from psgvlm.baselines.sdreamer import SIZES as SD_SIZES
from psgvlm.baselines.sdreamer import SDreamer, SDreamerConfig
from psgvlm.baselines.signal_data import SignalRecording, recording_to_signal, save_signal_dataset
from psgvlm.baselines.sleep2vec import (
    CHANNEL_SETS,
    PAPER_MODALITIES_HZ,
    SIZES,
    Sleep2vec,
    Sleep2vecConfig,
    Sleep2vecStager,
    Sleep2vecStagerConfig,
    dash_weights,
    save_backbone,
)
from psgvlm.stages import UNSCORED
from psgvlm.training import parse_args, read_jsonl

REPO = Path(__file__).resolve().parents[1]
CFG = REPO / "recipes" / "configs"
torch.set_num_threads(1)
sys.path.insert(0, str(REPO / "tests"))
try:
    from test_baselines import make_recording
finally:
    sys.path.pop(0)


def _recipe(name):
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", REPO / "recipes" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _tiny_backbone(max_epochs=8, modalities=("EEG", "EOG", "EMG"), **kw):
    torch.manual_seed(0)
    return Sleep2vec(config=Sleep2vecConfig(**{**SIZES["tiny"], "modalities": modalities, "max_epochs": max_epochs,
                                               "tokenizer_input": "log_spectrum", **kw}))


# ---- sleep2vec: sizes and positions ---------------------------------------------------------------
def test_paper_sizes_match_the_papers_parameter_counts_with_its_nine_modalities():
    ours = ("EEG", "EOG", "EMG", "ECG", "RESP", "SPO2")
    for size, paper_m, ours_m in (("small", 63.5, 61.34), ("medium", 133.7, 129.40), ("large", 238.2, 230.76)):
        counts = {}
        for name, mods in (("paper", tuple(PAPER_MODALITIES_HZ)), ("ours", ours)):
            with torch.device("meta"):
                model = Sleep2vec(config=Sleep2vecConfig(modalities=mods, sfreq=PAPER_MODALITIES_HZ, max_epochs=120,
                                                         **SIZES[size]))
            counts[name] = sum(p.numel() for p in model.parameters()) / 1e6
        assert abs(counts["paper"] - paper_m) < 0.1, (size, counts)  # Table 5, to its rounding (+- 0.1 M)
        assert abs(counts["ours"] - ours_m) < 0.01, (size, counts)
    assert set(CHANNEL_SETS["all"]) == set(ours)


def test_extend_positions_keeps_the_pretrained_rotary_rows_and_reads_longer_nights():
    model = _tiny_backbone(max_epochs=8).eval()
    before = model.encoder.encoder.embed_positions.weight.detach().clone()
    x = torch.randn(1, 20, 3840)
    with pytest.raises(ValueError, match="20 epochs exceeds max_epochs 8 .*extend_positions"):
        model.encode(x, "EEG")
    short = model.encode(x[:, :6], "EEG")
    model.extend_positions(20)
    after = model.encoder.encoder.embed_positions.weight
    assert after.shape == (21, before.shape[1]) and torch.equal(after[:9], before) and not after.requires_grad
    assert model.config.max_epochs == 20 and model.encode(x, "EEG").shape == (1, 20, 32)
    torch.testing.assert_close(model.encode(x[:, :6], "EEG"), short)  # the pre-trained positions are unchanged


def test_padding_is_masked_out_of_attention():
    stager = Sleep2vecStager(backbone=_tiny_backbone(max_epochs=12), config=Sleep2vecStagerConfig()).eval()
    g = torch.Generator().manual_seed(0)
    x = {m: torch.randn(1, 5, 3840, generator=g) for m in ("EEG", "EOG")}
    alone = stager(x)
    junk = {m: torch.cat([v, 50 * torch.randn(1, 4, 3840, generator=g)], 1) for m, v in x.items()}  # not zeros
    mask = torch.tensor([[True] * 5 + [False] * 4])
    with torch.no_grad():
        masked = float((stager(junk, attention_mask=mask)[:, :5] - alone).abs().max())
        unmasked = float((stager(junk)[:, :5] - alone).abs().max())  # negative control: the padding counts
    assert masked < 1e-5 and unmasked > 100 * masked, (masked, unmasked)
    with pytest.raises(ValueError, match=r"attention_mask has shape \(1, 5\), expected \(1, 9\)"):
        stager(junk, attention_mask=mask[:, :5])


def test_random_windows_pad_draws_short_nights_and_predict_windows_takes_them_whole():
    pool = [({"EEG": np.full((n, 4), i + 1, np.float32)}, np.arange(n) % 5) for i, n in enumerate((3, 7, 30))]
    with pytest.raises(ValueError, match=r"recordings of \[3, 7\] epochs are shorter than the window K=10"):
        random_windows(pool, seq_len=10, batch_size=4, rng=np.random.default_rng(0))
    rng = np.random.default_rng(0)
    seen = {1: 0, 2: 0, 3: 0}
    for _ in range(200):
        x, y, valid = random_windows(pool, seq_len=10, batch_size=4, rng=rng, pad=True)
        assert x["EEG"].shape[:2] == y.shape == valid.shape and y.shape[1] <= 10
        for row, v, yy in zip(x["EEG"], valid, y):
            night = int(row[0, 0])
            seen[night] += 1
            n = {1: 3, 2: 7, 3: 10}[night]  # epochs of that night in a window
            assert v.tolist() == [True] * n + [False] * (len(v) - n)
            assert (yy[n:] == UNSCORED).all() and (row[n:] == 0).all() and (row[:n] == night).all()
    # drawn in proportion to max(n_epochs, seq_len): 10 : 10 : 30
    assert abs(seen[3] / sum(seen.values()) - 0.6) < 0.05 and abs(seen[1] - seen[2]) < 0.25 * seen[1], seen
    shapes = []

    def fn(x):
        shapes.append(tuple(x["EEG"].shape))
        return torch.zeros(*x["EEG"].shape[:2], 5)

    probs = predict_windows(fn, {"EEG": np.zeros((6, 4), np.float32)}, seq_len=16, allow_short=True)
    assert probs.shape == (6, 5) and shapes == [(1, 6, 4)]
    with pytest.raises(ValueError, match="shorter than the model's window K=16"):
        predict_windows(fn, {"EEG": np.zeros((6, 4), np.float32)}, seq_len=16)


# ---- sleep2vec: DASH terms and class weighting ---------------------------------------------------------
def test_dash_terms_each_switch_off_one_term():
    meta = ([30, 50, 70], ["M", "F", "M"], ["a", "a", "b"], ["n1", "n1", "n2"])
    full, h = dash_weights(*meta, config=Sleep2vecConfig(**SIZES["tiny"]))
    age_only, h_age = dash_weights(*meta, config=Sleep2vecConfig(**SIZES["tiny"], dash_terms=("age",)))
    kern = np.exp(-np.abs(np.subtract.outer([30, 50, 70], [30, 50, 70])) / 20)
    np.testing.assert_allclose(age_only, kern / kern.sum(1, keepdims=True), rtol=1e-12)
    assert h.any() and not h_age.any()  # no same-night pseudo-negatives: no eps weight, no margin
    sex_only, _ = dash_weights(*meta, config=Sleep2vecConfig(**SIZES["tiny"], dash_terms=("sex",)))
    np.testing.assert_allclose(sex_only[0], np.array([1.0, 0.8, 1.0]) / 2.8, rtol=1e-12)
    none, _ = dash_weights(*meta, config=Sleep2vecConfig(**SIZES["tiny"], dash_terms=()))
    np.testing.assert_allclose(none, 1 / 3)
    assert not np.allclose(full, age_only)
    with pytest.raises(ValueError, match=r"dash_terms \['gender'\] not allowed; allowed: \['age', 'sex', 'site', 'night'\]"):
        Sleep2vecConfig(dash_terms=("gender",))


def test_class_weighting_is_a_named_option():
    stages = [np.array([0] * 60 + [2] * 30 + [4] * 10 + [UNSCORED] * 5)]
    assert class_weights(stages, "none") is None
    inv, sqrt = class_weights(stages, "inverse_frequency"), class_weights(stages, "inverse_sqrt_frequency")
    assert inv[1] == inv[3] == 0 and float(inv[4] / inv[0]) == pytest.approx(6.0)
    assert float(sqrt[4] / sqrt[0]) == pytest.approx(6.0 ** 0.5) and float(inv[[0, 2, 4]].mean()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"class_weighting 'balanced' not allowed; allowed: \['none', 'inverse_frequency'"):
        class_weights(stages, "balanced")
    ft = _recipe("sleep2vec_finetune")
    paper = parse_args(ft.Args, ["--config", str(CFG / "sleep2vec_paper_finetune.yaml"), "--signal_data", "x",
                                 "--output_dir", "y"])
    assert (paper.weight_decay, paper.class_weighting, paper.seq_len, paper.eval_subsets) == (1e-5, "none", 1100, [])
    bare = parse_args(ft.Args, ["--signal_data", "x", "--output_dir", "y", "--class-weighting", "inverse_frequency"])
    assert (bare.weight_decay, bare.class_weighting) == (1e-5, "inverse_frequency")  # dashes accepted


# ---- sleep2vec recipes --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mixed_montage(tmp_path_factory):
    """Nights with different modalities: EEG+EOG, EEG+EMG, all three; a short validation night."""
    mods = {"a": ("EEG", "EOG"), "b": ("EEG", "EMG"), "c": ("EEG", "EOG", "EMG"), "d": ("EEG", "EOG", "EMG"),
            "v": ("EEG", "EOG", "EMG"), "t": ("EEG", "EOG", "EMG")}
    n = {"v": 6}
    recs = [recording_to_signal(make_recording(s, n_epochs=n.get(s, 16), seed=i, modalities=m,
                                               meta={"age": 30 + 5 * i, "sex": "MF"[i % 2], "site": "A"}))
            for i, (s, m) in enumerate(mods.items())]
    split = {"kind": "subject", "seed": 0, "train": ["a", "b", "c", "d"], "validation": ["v"], "test": ["t"]}
    return save_signal_dataset(recs, tmp_path_factory.mktemp("mixed") / "sig", split=split)


def _pretrain(out, data, *extra):
    assert _recipe("sleep2vec_pretrain").main([
        "--config", str(CFG / "sleep2vec_tiny_pretrain.yaml"), "--signal_data", str(data), "--output_dir", str(out),
        "--seq_len", "4", "--per_device_train_batch_size", "4", "--save_total_limit", "0", *extra]) == 0
    return json.loads((Path(out) / "meta.json").read_text())


def test_pretrain_pairs_come_from_each_nights_own_modalities_and_data_fraction_is_nested(mixed_montage, tmp_path):
    meta = _pretrain(tmp_path / "all", mixed_montage, "--max_steps", "2", "--dash_terms", "age", "site")
    # EOG is missing from night b and EMG from night a: both still train, paired where a night holds them
    assert meta["model_config"]["modalities"] == ["EEG", "EOG", "EMG"]
    assert meta["modality_pairs"] == {"EEG+EOG": 3, "EEG+EMG": 3, "EOG+EMG": 2}
    assert meta["model_config"]["dash_terms"] == ["age", "site"] and len(meta["pretrain_subjects"]) == 4
    assert set(meta["evaluation"]) == {"EEG+EOG", "EEG+EMG", "EOG+EMG"}  # every pair the validation night holds
    half = _pretrain(tmp_path / "half", mixed_montage, "--max_steps", "1", "--data_fraction", "0.5")
    quarter = _pretrain(tmp_path / "q", mixed_montage, "--max_steps", "1", "--data_fraction", "0.25")
    assert len(half["pretrain_subjects"]) == 2 and set(quarter["pretrain_subjects"]) < set(half["pretrain_subjects"])
    with pytest.raises(ValueError, match=r"data_fraction must be in \(0, 1\], got 0.0"):
        _pretrain(tmp_path / "z", mixed_montage, "--max_steps", "1", "--data_fraction", "0")


def test_pretrain_resumes_from_latest_exactly(mixed_montage, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    _pretrain(a, mixed_montage, "--max_steps", "4", "--eval_every", "2")
    (b / "checkpoints").mkdir(parents=True)
    shutil.copytree(a / "checkpoints" / "step-2", b / "checkpoints" / "step-2")
    _pretrain(b, mixed_montage, "--max_steps", "4", "--eval_every", "2", "--resume_from_checkpoint", "latest")
    untimed = [[{k: v for k, v in r.items() if k not in ("samples_per_s", "elapsed_s")} for r in read_jsonl(d / "train_log.jsonl")]
               for d in (a, b)]
    assert untimed[0] == untimed[1] and len([r for r in untimed[0] if "loss" in r]) == 4
    wa, wb = torch.load(a / "model.pt"), torch.load(b / "model.pt")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_finetune_on_one_channel_set_trains_and_tests_that_set(mixed_montage, tmp_path):
    backbone = _tiny_backbone(max_epochs=8)
    save_backbone(tmp_path / "pre", backbone)
    ft = _recipe("sleep2vec_finetune")
    common = ["--signal_data", str(mixed_montage), "--seq_len", "10", "--max_steps", "2",
              "--per_device_train_batch_size", "2", "--threads", "1"]
    assert ft.main(["--config", str(CFG / "sleep2vec_tiny_finetune.yaml"), "--pretrained", str(tmp_path / "pre"),
                    "--output_dir", str(tmp_path / "eeg"), "--modalities", "EEG", *common]) == 0
    model_config = json.loads((tmp_path / "eeg" / "model_config.json").read_text())
    meta = json.loads((tmp_path / "eeg" / "meta.json").read_text())
    assert model_config["stager"]["modalities"] == ["EEG"] and meta["config"]["channel_set"] == "EEG"
    assert model_config["backbone"]["max_epochs"] == 10 and meta["config"]["positions"]["pretrained_max_epochs"] == 8
    assert meta["config"]["short_nights_padded"] == {"train": [], "validation": ["v"], "test": []}
    subsets = json.loads((tmp_path / "eeg" / "metrics_subsets.json").read_text())
    assert set(subsets) == {"EEG"}  # the tiny config's EEG+EOG and EEG+EOG+EMG lie outside this run's set
    val_rows = (tmp_path / "eeg" / "predictions_validation" / "predictions.jsonl").read_text().splitlines()
    assert len(val_rows) == 6  # the short validation night is predicted, not dropped
    # predicting from the run reads EEG only: other modalities' signals do not matter
    from psgvlm.baselines.signal_data import load_signal_dataset

    recs, ds_meta = load_signal_dataset(mixed_montage)
    for r in recs:
        for ch, m in r.modalities.items():
            if m != "EEG":
                r.x[ch] = np.random.default_rng(0).standard_normal(r.x[ch].shape).astype(np.float32)
    other = save_signal_dataset(recs, tmp_path / "noisy", split=ds_meta["split"])
    assert ft.main(["--from_run", str(tmp_path / "eeg"), "--signal_data", str(other), "--output_dir", str(tmp_path / "p"),
                    "--threads", "1"]) == 0
    assert (tmp_path / "p" / "predictions.jsonl").read_text() == (tmp_path / "eeg" / "predictions.jsonl").read_text()


def _random_night(name, n_epochs, rng):
    x = {ch: rng.standard_normal((n_epochs, 3840)).astype(np.float32) for ch in ("C3", "LOC", "EMG")}
    return SignalRecording(subject=name, recording=name, dataset="fixture", x=x,
                           modalities={"C3": "EEG", "LOC": "EOG", "EMG": "EMG"}, sfreq=dict.fromkeys(x, 128.0),
                           stages=rng.integers(0, 5, n_epochs), starts_s=np.arange(n_epochs) * 30.0,
                           meta={"age": 50.0, "sex": "F", "site": "A"})


@pytest.mark.slow
def test_paper_finetune_runs_a_step_at_full_length_1100_on_a_120_epoch_backbone(tmp_path):
    """Done means (issue 13): the paper fine-tune config, reduced width, whole-night length 1100 (~30-45 s)."""
    rng = np.random.default_rng(0)
    nights = {"long": 1120, "short": 400, "val": 200, "test": 300}  # epochs; three shorter than 1100
    recs = [_random_night(k, n, rng) for k, n in nights.items()]
    data = save_signal_dataset(recs, tmp_path / "sig", split={"kind": "subject", "seed": 0, "train": ["long", "short"],
                                                             "validation": ["val"], "test": ["test"]})
    backbone = _tiny_backbone(max_epochs=120, tokenizer_input="waveform")  # as sleep2vec_*_pretrain.yaml stores
    save_backbone(tmp_path / "pre", backbone)
    assert _recipe("sleep2vec_finetune").main([
        "--config", str(CFG / "sleep2vec_paper_finetune.yaml"), "--signal_data", str(data),
        "--pretrained", str(tmp_path / "pre"), "--output_dir", str(tmp_path / "ft"), "--max_steps", "1",
        "--per_device_train_batch_size", "2", "--threads", "2"]) == 0
    meta = json.loads((tmp_path / "ft" / "meta.json").read_text())
    assert meta["config"]["positions"] == {"pretrained_max_epochs": 120, "method": "rotary table extended, not interpolated",
                                           "max_epochs": 1100}
    assert meta["config"]["short_nights_padded"] == {"train": ["short"], "validation": ["val"], "test": ["test"]}
    assert meta["config"]["args"]["weight_decay"] == 1e-5 and meta["config"]["args"]["class_weighting"] == "none"
    log = read_jsonl(tmp_path / "ft" / "train_log.jsonl")
    assert [r["step"] for r in log if "loss" in r] == [1] and np.isfinite(log[0]["loss"])
    counts = {}
    for sub in ("", "predictions_train"):
        for row in (tmp_path / "ft" / sub / "predictions.jsonl").read_text().splitlines():
            r = json.loads(row)
            counts[r["recording"]] = counts.get(r["recording"], 0) + 1
    assert counts == {"long": 1120, "short": 400, "test": 300}  # no night dropped


# ---- sDREAMER ------------------------------------------------------------------------------------------
def test_sdreamer_epoch_variant_has_no_sequence_encoder_and_takes_any_length():
    seq = SDreamer(config=SDreamerConfig(**SD_SIZES["tiny"], seq_len=4))
    ep = SDreamer(config=SDreamerConfig(**SD_SIZES["tiny"], seq_len=4, variant="epoch"))
    assert not hasattr(ep, "seq_encoder") and hasattr(seq, "seq_encoder")
    assert sum(p.numel() for p in ep.parameters()) < sum(p.numel() for p in seq.parameters())
    g = torch.Generator().manual_seed(0)
    x = {"EEG": torch.randn(2, 3, 3840, generator=g), "EMG": torch.randn(2, 3, 3840, generator=g)}
    out = ep.forward_train(x)  # K=3 != seq_len: epochs are independent
    assert {k: tuple(v.shape) for k, v in out.items()} == {p: (2, 3, 5) for p in ("eeg", "emg", "mix")}
    ep.eval()
    with torch.no_grad():  # each epoch on its own: epoch 0 alone gives the same logits
        torch.testing.assert_close(ep({m: v[:, :1] for m, v in x.items()}), ep(x)[:, :1])
    _, parts = ep.loss(out, torch.randint(0, 5, (2, 3), generator=g))
    assert set(parts) == {"ce_mix", "kd_eeg", "kd_emg"}  # the same self-distillation
    with pytest.raises(ValueError, match=r"variant 'hybrid' not in \('sequence', 'epoch'\)"):
        SDreamerConfig(variant="hybrid")


@pytest.fixture(scope="module")
def full_montage(tmp_path_factory):
    recs = [recording_to_signal(make_recording(s, n_epochs=12, seed=i)) for i, s in enumerate("abvt")]
    split = {"kind": "subject", "seed": 0, "train": ["a", "b"], "validation": ["v"], "test": ["t"]}
    return save_signal_dataset(recs, tmp_path_factory.mktemp("full") / "sig", split=split)


def test_sdreamer_recipe_epoch_variant_and_single_channel_comparator(full_montage, tmp_path):
    sd = _recipe("sdreamer")
    common = ["--config", str(CFG / "sdreamer_tiny.yaml"), "--signal_data", str(full_montage), "--seq_len", "4",
              "--max_steps", "2", "--per_device_train_batch_size", "2", "--threads", "1"]
    assert sd.main([*common, "--output_dir", str(tmp_path / "ep"), "--variant", "epoch"]) == 0
    assert json.loads((tmp_path / "ep" / "model_config.json").read_text())["variant"] == "epoch"
    assert set(json.loads((tmp_path / "ep" / "metrics_single_channel.json").read_text())) == {"eeg", "emg", "eeg+emg"}
    assert sd.main([*common, "--output_dir", str(tmp_path / "eeg"), "--modalities", "EEG"]) == 0
    meta = json.loads((tmp_path / "eeg" / "meta.json").read_text())
    assert meta["config"]["inputs"] == {"EEG": None} and meta["config"]["args"]["modalities"] == ["EEG"]
    assert set(json.loads((tmp_path / "eeg" / "metrics_single_channel.json").read_text())) == {"eeg"}
    assert set(torch.load(tmp_path / "eeg" / "model.pt")) == set(SDreamer(config=SDreamerConfig(
        **json.loads((tmp_path / "eeg" / "model_config.json").read_text()))).state_dict())
    with pytest.raises(ValueError, match=r"modalities \['EOG'\] not allowed: one or both of \['EEG', 'EMG'\]"):
        sd.main([*common, "--output_dir", str(tmp_path / "x"), "--modalities", "EOG"])
