"""The signal baselines' dataset read like the image dataset it is compared with: reader options (ISRUC
``--trim-tail-epochs``, ``--scorer``) and subject subsets taken from ``--split_from``, channels a night
lacks blank with a warning (as ``psgvlm render`` draws a blank band), a channel in no night refused.

Run: python -m pytest -q tests/test_signal_data.py     (~30 s: a few tiny renders)
"""

from __future__ import annotations

import numpy as np
import pytest

from psgvlm.baselines.signal_data import build_signal_dataset, load_signal_dataset
from psgvlm.cli import main as cli
from psgvlm.image.dataset import load_dataset
from psgvlm.io.edf import EdfChannel, write_edf
from psgvlm.io.readers import find_recordings, read_recording


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    from psgvlm.synth.layouts import synth_dataset

    root = tmp_path_factory.mktemp("sig") / "raw"
    synth_dataset("isruc", root, subjects=4, minutes=6, seed=5)
    return root


def _render(raw, out, *extra):
    assert cli(["render", "--format", "isruc", "--input", str(raw), "--out", str(out), "--channels", "C3", "LOC",
                "EMG", "--quiet", *extra]) == 0
    return out


def test_reader_options_and_subjects_follow_the_image_dataset(raw, tmp_path):
    images = _render(raw, tmp_path / "img", "--trim-tail-epochs", "2", "--scorer", "2", "--subjects", "1", "2", "4")
    dd, meta = load_dataset(images)
    sig = build_signal_dataset(fmt="isruc", input=raw, out=tmp_path / "sig", split_from=images)
    recs, smeta = load_signal_dataset(sig)
    assert sorted(r.subject for r in recs) == ["1", "2", "4"] and smeta["split"] == meta["split"]
    assert smeta["input"]["trim_tail_epochs"] == 2 and smeta["input"]["scorer"] == 2
    assert smeta["subjects"]["ids"] == ["1", "2", "4"]
    jobs = {j["subject"]: j for j in find_recordings("isruc", raw, scorer=2)}
    for r in recs:  # the same epochs as the images, labelled by scorer 2, the last 2 of each night dropped
        full = read_recording("isruc", **jobs[r.subject], scorer=2)
        assert r.n_epochs == full.n_epochs - 2
        assert np.array_equal(r.stages, full.stages[: r.n_epochs])
        n_images = sum(s == r.subject for split in dd.values() for s in split["subject"])
        assert n_images == int(np.sum(r.stages >= 0))
    first = {j["subject"]: j for j in find_recordings("isruc", raw)}  # scorer 1: other labels (a real check)
    assert any(not np.array_equal(r.stages, read_recording("isruc", **first[r.subject]).stages[: r.n_epochs])
               for r in recs)
    plain, _ = load_signal_dataset(build_signal_dataset(fmt="isruc", input=raw, out=tmp_path / "plain"))
    assert len(plain) == 4 and {r.subject: r.n_epochs for r in plain}["1"] == recs[0].n_epochs + 2
    with pytest.raises(ValueError, match=r"trim_tail_epochs=0 differs from 2 of the image dataset"):
        build_signal_dataset(fmt="isruc", input=raw, out=tmp_path / "x", split_from=images, trim_tail_epochs=0)
    only, _ = load_signal_dataset(build_signal_dataset(fmt="isruc", input=raw, out=tmp_path / "two",
                                                       subjects=["1", "3", "4"]))
    assert sorted(r.subject for r in only) == ["1", "3", "4"]


SFREQ = 64.0


@pytest.fixture(scope="module")
def edf_dir(tmp_path_factory):
    """Three generic-EDF nights of 4 epochs; night ``b`` has no EOG."""
    root = tmp_path_factory.mktemp("edf")
    for k, name in enumerate("abc"):
        rng = np.random.default_rng(k)
        n = int(4 * 30 * SFREQ)
        labels = ["C3-A2", "Chin EMG"] + ([] if name == "b" else ["LOC-A2"])
        write_edf(root / f"{name}.edf", [EdfChannel(label=lab, sfreq=SFREQ, data=rng.standard_normal(n) * 20)
                                         for lab in labels])
        (root / f"{name}.csv").write_text("W\nN1\nN2\nREM\n")
    return root


def test_a_channel_a_night_lacks_is_blank_and_warned(edf_dir, tmp_path):
    with pytest.warns(UserWarning, match=r"recording 'b': channel\(s\) \['LOC'\] not in the recording; blank"):
        out = build_signal_dataset(fmt="generic", input=edf_dir, out=tmp_path / "sig")
    recs = {r.recording: r for r in load_signal_dataset(out)[0]}
    assert all(list(r.modalities) == ["C3", "EMG", "LOC"] for r in recs.values())
    assert recs["b"].missing == ["LOC"] and recs["a"].missing == []
    assert recs["b"].x["LOC"].shape == (4, 3840) and not recs["b"].x["LOC"].any()
    assert recs["a"].x["LOC"].std() > 0.5 and not recs["b"].modality_array("EOG", "LOC").any()
    # what a night really has decides the modalities a recipe uses; the blank stays reachable by name
    assert recs["b"].channels_of("EOG") == [] and recs["a"].channels_of("EOG") == ["LOC"]
    with pytest.raises(ValueError, match="has no EOG channel"):
        recs["b"].modality_array("EOG")
    # asked channels: in this order, blank where a night lacks one; one in no night is refused
    with pytest.warns(UserWarning, match=r"channel\(s\) \['LOC'\]"):
        out = build_signal_dataset(fmt="generic", input=edf_dir, out=tmp_path / "asked", channels=["LOC", "C3"])
    recs = {r.recording: r for r in load_signal_dataset(out)[0]}
    assert list(recs["a"].modalities) == ["LOC", "C3"] and recs["b"].missing == ["LOC"]
    with pytest.raises(ValueError, match=r"channel\(s\) \['Pz'\] are in none of the 3 recording\(s\)"):
        build_signal_dataset(fmt="generic", input=edf_dir, out=tmp_path / "bad", channels=["C3", "Pz"])
