"""NAP on recordings with different montages (own availability masks) and fine-tuning a pre-trained NAP.

Run: python -m pytest -q tests/test_nap_montages.py     (~10-20 s on 2 busy cores)

The situation of ``benchmarks/baselines.py --all_eeg --finetune``: recordings with 1, 2 or 3 EEG
channels (YASA per channel) plus a whole-montage row for other predictors, pre-training on one kind
of stream and fine-tuning on another.
"""

import numpy as np
import pytest
import torch

from psgvlm.baselines.nap import NAP, NAPConfig, nap_batch, predict_nap, soft_vote, train_nap


def _probs(guess, rng, sharp=2.0):
    logits = sharp * np.eye(5)[guess] + rng.standard_normal((len(guess), 5))
    return (np.exp(logits) / np.exp(logits).sum(1, keepdims=True)).astype(np.float32)


def _montage_rec(n_chans, rng, t=40):
    """YASA-like stream per channel (right 80%) on rows 0..n-1; on the whole-montage row '*' two more
    predictors agree on a wrong stage (y + 1 mod 5): soft voting follows them, NAP must not."""
    y = rng.integers(0, 5, t)
    probs = np.zeros((n_chans + 1, t, 3, 5), np.float32)
    avail = np.zeros((n_chans + 1, 3), bool)
    for c in range(n_chans):
        probs[c, :, 0] = _probs(np.where(rng.random(t) < 0.8, y, rng.integers(0, 5, t)), rng)
        avail[c, 0] = True
    for p in (1, 2):
        probs[n_chans, :, p] = _probs((y + 1) % 5, rng)
        avail[n_chans, p] = True
    return {"probs": probs, "avail": avail, "labels": y}


def test_nap_batch_uses_each_recordings_own_mask():
    rng = np.random.default_rng(0)
    data = [_montage_rec(n, rng) for n in (1, 2, 3)]
    for _ in range(20):
        p, av, y = nap_batch(data, None, rng, batch_size=4, min_len=5, max_len=10)
        assert p.shape[0] == 4 and p.shape[1:2] + p.shape[3:4] == tuple(av.shape) and y.shape == p.shape[:1] + p.shape[2:3]
        assert av.any(0).all() and av.any(1).all()
    with pytest.raises(ValueError, match="every NAP training recording"):
        nap_batch([data[0], {"probs": data[1]["probs"], "labels": data[1]["labels"]}], np.ones((3, 3), bool), rng,
                  batch_size=2, min_len=5, max_len=10)


def test_nap_mixed_montages_beats_soft_vote_and_finetunes_from_init():
    rng = np.random.default_rng(1)
    data = [_montage_rec(n, rng) for n in (1, 2, 3, 1, 2, 3, 1, 3, 2)]
    model, losses = train_nap(data[:6], None, config=NAPConfig(dropout=0.0), steps=150, lr=1e-2, batch_size=8,
                              min_len=8, max_len=20)
    assert np.mean(losses[-10:]) < np.mean(losses[:10]) - 0.2
    acc = lambda f: np.mean([np.mean(f(d).argmax(1) == d["labels"]) for d in data[6:]])  # noqa: E731
    acc_nap = acc(lambda d: predict_nap(model, d["probs"], d["avail"], window=20))
    acc_vote = acc(lambda d: soft_vote(d["probs"], d["avail"]))
    assert acc_nap > acc_vote + 0.3, (acc_nap, acc_vote)

    # fine-tuning continues from a copy of the given model; the original stays as it was
    before = {k: v.clone() for k, v in model.state_dict().items()}
    tuned, _ = train_nap(data[:2], None, config=NAPConfig(dropout=0.0), steps=3, lr=1e-3, batch_size=4,
                         min_len=8, max_len=20, init=model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert any(not torch.equal(before[k], v) for k, v in tuned.state_dict().items())
    assert tuned is not model and isinstance(tuned, NAP) and not tuned.training
    with pytest.raises(ValueError, match="differs from config"):
        train_nap(data[:2], None, config=NAPConfig(n_layers=2), steps=1, init=model)
