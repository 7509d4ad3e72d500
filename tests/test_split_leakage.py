"""No recording in two splits, for every signal baseline and every split kind of ``psgvlm render``.

The baselines select their train/validation/test recordings by subject from a split manifest; the
PSG-image paper's epoch-level split (``psgvlm render --split epoch``) lists every subject in every
split, so a signal dataset built with ``--split_from`` such an image dataset would train sDREAMER,
sleep2vec and NAP on their test nights. Each baseline's recipes read the split through one of the
library's readers (``load_or_build_signal_data`` or ``read_split``); this test finds which in each
recipe's source and runs it on image datasets of every split kind: a subject split gives disjoint
recordings, the epoch split is refused (exit 2, naming ``--split_from``), an unsplit dataset is refused.

Run: python -m pytest -q tests/test_split_leakage.py     (~40 s: three tiny renders, one recipe process)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from psgvlm.baselines import BASELINES
from psgvlm.baselines.common import SignalDataArguments, exit_on_split_leak, load_or_build_signal_data
from psgvlm.baselines.signal_data import (
    SplitLeakError,
    build_signal_dataset,
    read_split,
    save_signal_dataset,
    select,
)
from psgvlm.cli import main as cli
from psgvlm.splits import SPLIT_KINDS, subjects_in_two_splits

REPO = Path(__file__).resolve().parents[1]


def _via_signal_data(raw, images, out):
    """sdreamer / sleep2vec: the signal dataset built (or read) by the recipes' one loader."""
    recs, meta = load_or_build_signal_data(SignalDataArguments(signal_data=str(out), format="isruc", input=str(raw),
                                                               split_from=str(images)))
    return recs, meta["split"]


def _via_read_split(raw, images, out):
    """NAP: the split of --split_from (or of --signal_data's meta.json), read as the recipe does."""
    recs, _ = load_or_build_signal_data(SignalDataArguments(signal_data=str(out), format="isruc", input=str(raw)))
    return recs, exit_on_split_leak(read_split, images)


# How a recipe gets its split: the call in its source -> the same call here.
READERS = {"load_or_build_signal_data(": _via_signal_data, "exit_on_split_leak(read_split": _via_read_split}


def readers_of(baseline: str) -> list:
    found = []
    for recipe in BASELINES[baseline].recipes:
        text = (REPO / recipe).read_text(encoding="utf-8")
        hits = [fn for call, fn in READERS.items() if call in text]
        assert hits, f"{recipe} reads its split by none of {list(READERS)}: add its reader to this test"
        found += hits
    return list(dict.fromkeys(found))


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Four synthetic ISRUC subjects and their image datasets, one per split kind."""
    from psgvlm.synth.layouts import synth_dataset

    root = tmp_path_factory.mktemp("leak")
    synth_dataset("isruc", root / "raw", subjects=4, minutes=6, seed=2)
    out = {"raw": root / "raw"}
    for kind in SPLIT_KINDS:
        assert cli(["render", "--format", "isruc", "--input", str(root / "raw"), "--out", str(root / kind),
                    "--channels", "C3", "LOC", "EMG", "--split", kind, "--quiet"]) == 0
        out[kind] = root / kind
    return out


@pytest.mark.parametrize("kind", SPLIT_KINDS)
@pytest.mark.parametrize("baseline", sorted(BASELINES))
def test_no_recording_in_two_splits(baseline, kind, images, tmp_path, capsys):
    for k, reader in enumerate(readers_of(baseline)):
        out = tmp_path / f"sig{k}"
        if kind == "subject":
            recs, split = reader(images["raw"], images[kind], out)
            assert not subjects_in_two_splits(split)
            parts = {name: {r.recording for r in select(recs, split.get(name, []))} for name in
                     ("train", "validation", "test")}
            assert parts["train"] and parts["test"]
            assert not (parts["train"] & parts["test"] or parts["train"] & parts["validation"]
                        or parts["validation"] & parts["test"])
        elif kind == "epoch":
            with pytest.raises(SystemExit) as stop:
                reader(images["raw"], images[kind], out)
            last = capsys.readouterr().err.strip().splitlines()[-1]  # one line, after any progress bar
            assert stop.value.code == 2 and last.startswith("error: --split_from") and "epoch-level split" in last
            assert "--split subject" in last
        else:
            with pytest.raises(ValueError, match="has no train and test subjects"):
                reader(images["raw"], images[kind], out)


def test_leaking_split_is_refused_when_saved_and_when_loaded(images, tmp_path):
    recs, _ = _via_signal_data(images["raw"], images["subject"], tmp_path / "ok")
    leaky = {"kind": "epoch", "train": ["1", "2"], "validation": ["3"], "test": ["2", "4"]}
    with pytest.raises(SplitLeakError, match=r"1 subject\(s\) in more than one split \(2 \(train\+test\)\)"):
        save_signal_dataset(recs, tmp_path / "bad", split=leaky)
    with pytest.raises(SplitLeakError, match="--split_from"):
        build_signal_dataset(fmt="isruc", input=images["raw"], out=tmp_path / "bad2", split_from=images["epoch"])
    assert not (tmp_path / "bad").exists() and not (tmp_path / "bad2").exists()
    # a dataset written before the check existed is refused when a recipe loads it
    import json

    meta = json.loads((tmp_path / "ok" / "meta.json").read_text())
    (tmp_path / "ok" / "meta.json").write_text(json.dumps({**meta, "split": leaky}))
    with pytest.raises(SystemExit):
        load_or_build_signal_data(SignalDataArguments(signal_data=str(tmp_path / "ok")))


def test_recipe_exits_2_naming_the_option(images, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, str(REPO / "recipes" / "sdreamer.py"), "--config",
                        str(REPO / "recipes/configs/sdreamer_tiny.yaml"), "--signal_data", str(tmp_path / "sig"),
                        "--format", "isruc", "--input", str(images["raw"]), "--split_from", str(images["epoch"]),
                        "--output_dir", str(tmp_path / "run")], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "--split_from" in r.stderr and "Traceback" not in r.stderr and not (tmp_path / "run").exists()
