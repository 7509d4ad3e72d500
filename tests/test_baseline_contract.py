"""The one model contract of the signal baselines, checked for every entry of ``psgvlm.baselines.BASELINES``.

Run: python -m pytest -q tests/test_baseline_contract.py        (~20 s on 2 busy cores)

Each registered baseline has a case below: a tiny model built from the registry's classes and size
presets, and a dict of random inputs with at least two entries. The contract: ``forward(dict) ->
logits (batch, n_epochs, 5)``, any non-empty subset of the inputs works, one optimiser step on a
fixed batch changes the trainable parameters and lowers the loss, and the registry's ``load`` reads
back what ``save_model`` wrote. Registering a baseline without a case here fails.
"""

from dataclasses import asdict
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from psgvlm.baselines import BASELINES
from psgvlm.baselines.common import save_model
from psgvlm.baselines.sleep2vec import Sleep2vec, Sleep2vecStagerConfig, config_dict
from psgvlm.stages import N_STAGES

REPO = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)
B, L = 3, 4  # batch, epochs per sequence


def _randn(*shape, g):
    return torch.randn(*shape, generator=g)


def _case_sleep2vec(g):
    spec = BASELINES["sleep2vec"]
    backbone = Sleep2vec(config=spec.config(**{**spec.sizes["tiny"], "modalities": ("EEG", "RESP"),
                                               "max_epochs": 8, "dropout": 0.0}))
    stager_config = Sleep2vecStagerConfig(lora_dropout=0.0)
    model = spec.model(backbone=backbone, config=stager_config)
    saved = {"backbone": config_dict(backbone.config), "stager": asdict(stager_config)}
    return model, {"EEG": _randn(B, L, 3840, g=g), "RESP": _randn(B, L, 120, g=g)}, saved  # 128 Hz, 4 Hz


def _case_sdreamer(g):
    spec = BASELINES["sdreamer"]
    config = spec.config(**{**spec.sizes["tiny"], "seq_len": L, "dropout": 0.0})
    return spec.model(config=config), {"EEG": _randn(B, L, 3840, g=g), "EMG": _randn(B, L, 3840, g=g)}, asdict(config)


def _case_nap(g):
    spec = BASELINES["nap"]
    config = spec.config(**{**spec.sizes["paper"], "dropout": 0.0})
    streams = ("yasa@C3", "yasa@C4", "sdreamer@*", "vlm")  # a bare name sits on the pseudo-channel "*"
    x = {s: torch.softmax(_randn(B, L, N_STAGES, g=g), -1) for s in streams}
    return spec.model(config=config), x, asdict(config)


CASES = {"sleep2vec": _case_sleep2vec, "sdreamer": _case_sdreamer, "nap": _case_nap}


def test_every_registered_baseline_has_a_case():
    assert set(CASES) == set(BASELINES)
    for spec in BASELINES.values():
        assert all((REPO / r).exists() for r in spec.recipes), spec.recipes


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_forward_gives_logits_per_epoch_for_any_subset(name):
    model, x, _ = CASES[name](torch.Generator().manual_seed(0))
    model.eval()
    with torch.no_grad():
        out = model(x)
        assert isinstance(out, torch.Tensor) and out.shape == (B, L, N_STAGES) and torch.isfinite(out).all()
        for drop in x:  # any non-empty subset of the inputs
            sub = model({k: v for k, v in x.items() if k != drop})
            assert sub.shape == (B, L, N_STAGES)
            assert not torch.allclose(sub, out)  # the dropped input did count


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_one_step_changes_trainable_parameters_and_lowers_the_loss(name):
    g = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    model, x, _ = CASES[name](g)
    y = torch.randint(0, N_STAGES, (B, L), generator=g)
    trainable = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()

    def loss_fn():
        return F.cross_entropy(model(x).reshape(-1, N_STAGES), y.reshape(-1))

    before = loss_fn()
    opt.zero_grad()
    before.backward()
    opt.step()
    with torch.no_grad():
        after = loss_fn()
    assert float(after) < float(before.detach()), (float(before.detach()), float(after))
    now = dict(model.named_parameters())
    assert any(not torch.equal(now[n], v) for n, v in trainable.items())
    assert all(torch.equal(now[n], v) for n, v in frozen.items())


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_registry_load_reads_back_a_saved_model(name, tmp_path):
    model, x, saved = CASES[name](torch.Generator().manual_seed(2))
    with torch.no_grad():
        for p in model.parameters():  # away from the initialisation, so a fresh model would differ
            p.add_(0.01 * torch.randn_like(p))
    save_model(tmp_path, model, saved)
    loaded = BASELINES[name].load(tmp_path)
    assert type(loaded) is BASELINES[name].model and not loaded.training
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model.eval()(x))
