"""recipes/nap.py's protocols on synthetic hypnodensity streams: zero-shot on a held-out corpus,
leave-one-recording-out, and the refusal of in-sample streams.

Run: python -m pytest -q tests/test_nap_protocols.py     (~1 min on 2 busy cores)

The streams are written in the predictions contract as ``psgvlm reference`` writes them
(``channels/<ch>/predictions.jsonl`` per channel): predictor ``good`` is right on about 80% of the
epochs, ``weak`` on about 50%, and the corpora have different montages (C3 + C4, Cz, Fpz-Cz).
"""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from psgvlm.predictions import make_rows, write_predictions
from psgvlm.provenance import write_json_atomic

REPO = Path(__file__).resolve().parents[1]
FAST = ["--max_steps", "150", "--learning_rate", "0.01", "--dropout", "0", "--min_len", "5", "--max_len", "20", "--d_model", "12", "--n_layers", "1",
        "--threads", "1", "--per_device_train_batch_size", "8"]
CORPORA = {"alpha": ["C3", "C4"], "beta": ["Cz"], "gamma": ["Fpz-Cz"]}


class _Recipe:
    """recipes/nap.py's main, given any path-like arguments."""

    def __init__(self):
        spec = importlib.util.spec_from_file_location("recipe_nap_protocols", REPO / "recipes" / "nap.py")
        self.module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(self.module)

    def main(self, argv):
        return self.module.main([str(a) for a in argv])


def _recipe():
    return _Recipe()


def _streams(root: Path, corpus: str, n_recordings: int = 3, n_epochs: int = 40, seed: int = 0) -> dict:
    """Run dirs ``root/<predictor>_<corpus>`` with per-channel streams; returns {predictor: run dir}."""
    rng = np.random.default_rng(seed)
    runs = {}
    truth = {f"{corpus}{i}": rng.integers(0, 5, n_epochs) for i in range(n_recordings)}
    for pred, right in (("good", 0.8), ("weak", 0.5)):
        for ch in CORPORA[corpus]:
            rows = []
            for rec, y in truth.items():
                guess = np.where(rng.random(n_epochs) < right, y, rng.integers(0, 5, n_epochs))
                probs = 0.1 * rng.dirichlet(np.ones(5), n_epochs) + 0.9 * np.eye(5)[guess]
                rows += make_rows(dataset=corpus, subjects=[f"{corpus}-s{rec[-1]}"] * n_epochs,
                                  recordings=[rec] * n_epochs, epochs=range(n_epochs),
                                  starts_s=30.0 * np.arange(n_epochs), labels=y.tolist(), probs=probs)
            write_predictions(root / f"{pred}_{corpus}" / "channels" / ch, rows)
        runs[pred] = root / f"{pred}_{corpus}"
    return runs


def _rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_zero_shot_trains_on_other_corpora_and_predicts_the_held_out_one(tmp_path):
    runs = {c: _streams(tmp_path, c, seed=i) for i, c in enumerate(CORPORA)}
    out = tmp_path / "nap"
    train = [f"{p}={runs[c][p]}" for c in ("alpha", "beta") for p in ("good", "weak")]
    assert _recipe().main(["--protocol", "zero_shot", "--train_predictors", *train, "--predictors",
                           f"good={runs['gamma']['good']}", f"weak={runs['gamma']['weak']}",
                           "--output_dir", out, *FAST]) == 0
    rows = _rows(out / "predictions.jsonl")
    assert {r["recording"] for r in rows} == {"gamma0", "gamma1", "gamma2"} and len(rows) == 3 * 40
    meta = json.loads((out / "meta.json").read_text())
    assert meta["protocol"] == "zero_shot"
    assert {k[0] for k in meta["trained_on"]} == {"alpha", "beta"} and len(meta["trained_on"]) == 6
    table = json.loads((out / "metrics_table.json").read_text())
    assert {"nap", "soft_vote", "good", "weak", "good@Fpz-Cz", "nap_without_weak"} <= set(table)
    assert table["good"]["kappa"] > table["weak"]["kappa"]
    assert table["nap"]["accuracy"] > 0.6  # learnt from other montages (C3 + C4, Cz), applied to Fpz-Cz
    assert (out / "model.pt").is_file() and (out / "soft_vote" / "predictions.jsonl").is_file()
    per = json.loads((out / "per_recording.json").read_text())
    assert set(per["nap"]) == {"gamma/gamma0", "gamma/gamma1", "gamma/gamma2"}

    # the test corpus among the training streams is not zero-shot
    with pytest.raises(ValueError, match="test subjects in the training streams"):
        _recipe().main(["--protocol", "zero_shot", "--train_predictors", *train, f"good={runs['gamma']['good']}",
                        f"weak={runs['gamma']['weak']}", "--predictors", f"good={runs['gamma']['good']}",
                        f"weak={runs['gamma']['weak']}", "--output_dir", tmp_path / "bad", *FAST])
    with pytest.raises(ValueError, match="not in --train_predictors"):
        _recipe().main(["--protocol", "zero_shot", "--train_predictors", f"good={runs['alpha']['good']}",
                        "--predictors", f"good={runs['gamma']['good']}", f"weak={runs['gamma']['weak']}",
                        "--output_dir", tmp_path / "bad2", *FAST])


def test_loro_predicts_every_recording_once_and_never_trains_on_it(tmp_path):
    a, b = _streams(tmp_path, "alpha", seed=1), _streams(tmp_path, "beta", n_recordings=2, seed=2)
    out = tmp_path / "loro"
    assert _recipe().main(["--protocol", "loro", "--predictors", f"good={a['good']}", f"good={b['good']}",
                           f"weak={a['weak']}", f"weak={b['weak']}", "--output_dir", out, *FAST]) == 0
    rows = _rows(out / "predictions.jsonl")
    keys = [(r["recording"], r["epoch"]) for r in rows]
    assert len(keys) == len(set(keys)) == 5 * 40  # every epoch of every recording exactly once
    assert {r["recording"] for r in rows} == {"alpha0", "alpha1", "alpha2", "beta0", "beta1"}
    folds = json.loads((out / "meta.json").read_text())["folds"]
    assert sorted(f["held_out"][2] for f in folds) == ["alpha0", "alpha1", "alpha2", "beta0", "beta1"]
    for f in folds:
        assert f["held_out"] not in f["trained_on"] and len(f["trained_on"]) == 4
    assert not (out / "model.pt").exists()  # fold models stay in memory
    per = json.loads((out / "per_recording.json").read_text())
    assert len(per["nap"]) == len(per["soft_vote"]) == len(per["good"]) == 5


def test_in_sample_streams_are_refused(tmp_path, capsys):
    from psgvlm.baselines.nap import fitted_subjects, in_sample_streams

    a = _streams(tmp_path, "alpha", seed=3)
    # a trained model's run: its meta.json records the split it was fitted on
    write_json_atomic(a["weak"] / "meta.json", {"kind": "sdreamer", "dataset": {
        "input": "/data/alpha", "split": {"train": ["alpha-s0", "alpha-s1"], "validation": [], "test": ["alpha-s2"]}}})
    assert fitted_subjects(a["weak"]) == {"input": "/data/alpha", "subjects": {"alpha-s0", "alpha-s1"}}
    assert fitted_subjects(a["good"]) is None  # a pretrained stager: no split recorded
    with pytest.raises(SystemExit) as stop:
        _recipe().main(["--protocol", "loro", "--predictors", f"good={a['good']}", f"weak={a['weak']}",
                        "--output_dir", tmp_path / "loro", *FAST])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "out-of-sample" in err and "alpha-s0" in err and "alpha-s2" not in err and "Traceback" not in err
    # the split protocol: training on the model's test subject is fine, on its training subjects not
    keys = [("alpha", "alpha-s2", "alpha2")]
    assert in_sample_streams({"good": a["good"], "weak": a["weak"]}, keys) == []
    assert in_sample_streams({"weak": [a["weak"]]}, [("alpha", "alpha-s1", "alpha1")])
    # the same model applied to another corpus (predict-only) is out-of-sample there
    other = tmp_path / "predict_only"
    write_predictions(other, _rows(a["weak"] / "channels" / "C3" / "predictions.jsonl"))
    write_json_atomic(other / "meta.json", {"predict_only": True, "source_run": str(a["weak"]),
                                            "dataset": {"input": "/data/elsewhere"}})
    assert in_sample_streams({"weak": other}, [("alpha", "alpha-s1", "alpha1")]) == []
