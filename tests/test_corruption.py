"""Failure injection and channel dropping (psgvlm.signal.corruption). Run: python -m pytest -q tests/test_corruption.py"""

import json
import pickle
import zlib

import numpy as np
import pytest

from psgvlm.io.recording import Channel, Recording
from psgvlm.signal.corruption import (
    CORE_EEG,
    ChannelFailure,
    DropChannels,
    blank_bands,
    collect_manifest,
    drop_channels,
    load_transform,
    save_transform,
    select_subjects,
)

SFREQ = 50.0


def make_rec(subject: str, n_epochs: int = 20, seed: int = 0) -> Recording:
    rng = np.random.default_rng(seed)
    n = int(n_epochs * 30 * SFREQ)
    chans = [Channel(name=f"{c}-M2", canonical=c, modality="EEG", sfreq=SFREQ,
                     data=(rng.standard_normal(n) * 20).astype(np.float32)) for c in ("F3", "C3", "O1", "C4")]
    chans.append(Channel(name="E1-M2", canonical="LOC", modality="EOG", sfreq=SFREQ,
                         data=(rng.standard_normal(n) * 50).astype(np.float32)))
    chans.append(Channel(name="X1", canonical="EMG", modality="EMG", sfreq=SFREQ * 2,
                         data=(rng.standard_normal(2 * n) * 5).astype(np.float32)))
    return Recording(channels=chans, subject=subject, recording=subject, dataset="isruc", source=f"{subject}.rec",
                     stages=rng.integers(0, 5, n_epochs).astype(np.int8))


def test_select_subjects_exact_share_and_seeded():
    subs = [str(i) for i in range(10)]
    a = select_subjects(subs, fraction=0.7, seed=3)
    assert len(a) == 7 and a == select_subjects(reversed(subs), fraction=0.7, seed=3)
    assert a != select_subjects(subs, fraction=0.7, seed=4)
    with pytest.raises(ValueError, match="fraction must be in"):
        select_subjects(subs, fraction=1.5)


def test_failure_is_reproducible_order_free_and_matches_manifest():
    recs = [make_rec(str(i), seed=i) for i in range(6)]
    subs = [r.subject for r in recs]
    inj1 = ChannelFailure(seed=7, subjects=subs)
    out1 = [inj1(r) for r in recs]
    inj2 = pickle.loads(pickle.dumps(ChannelFailure(seed=7, subjects=subs)))
    out2 = {r.subject: inj2(r) for r in reversed(recs)}  # other order, pickled (worker process)
    for a in out1:
        b = out2[a.subject]
        for ca, cb in zip(a.channels, b.channels):
            assert ca.data.tobytes() == cb.data.tobytes()
    key = lambda e: (e["subject"], e["channel"])  # noqa: E731
    assert sorted(inj1.manifest, key=key) == sorted(inj2.manifest, key=key)
    affected = {e["subject"] for e in inj1.manifest}
    assert affected == set(inj1.selected) and len(affected) == 4  # round(0.7 * 6)
    for rec, new in zip(recs, out1):
        entries = {e["channel"]: e for e in inj1.manifest if e["subject"] == rec.subject}
        for ch, nch in zip(rec.channels, new.channels):
            if ch.canonical not in entries:
                assert nch.data is ch.data or np.array_equal(nch.data, ch.data)
                continue
            assert ch.canonical in CORE_EEG
            e = entries[ch.canonical]
            start = int(np.ceil(e["onset_s"] * ch.sfreq))
            assert np.array_equal(nch.data[:start], ch.data[:start])
            tail = nch.data[start:]
            if e["kind"] == "zeros":
                assert not tail.any()
            else:
                assert abs(tail.std() - ch.data[:start].std()) < 0.15 * ch.data[:start].std()
                assert not np.array_equal(tail, ch.data[start:])
        assert rec.channel("LOC").data is new.channel("LOC").data  # non-core channels untouched
    kinds = {e["kind"] for e in inj1.manifest}
    assert kinds == {"noise", "zeros"}  # both kinds drawn over 4 subjects x 4 channels


def test_failure_seed_changes_result_and_input_not_mutated(tmp_path):
    rec = make_rec("a")
    before = rec.channel("C3").data.copy()
    a = ChannelFailure(seed=1, fraction=1.0, manifest_dir=tmp_path)(rec)
    b = ChannelFailure(seed=2, fraction=1.0)(rec)
    assert np.array_equal(rec.channel("C3").data, before)
    assert a.channel("C3").data.tobytes() != b.channel("C3").data.tobytes()
    assert [e["channel"] for e in collect_manifest(tmp_path)] == ["C3", "C4", "F3", "O1"]
    with pytest.raises(ValueError, match="failure kinds"):
        ChannelFailure(seed=0, kinds=("spikes",))


def test_drop_channels_by_name_and_modality():
    rec = make_rec("a")
    assert drop_channels(rec, ["EOG"]).ch_names == ["F3", "C3", "O1", "C4", "EMG"]
    assert drop_channels(rec, ["C3", "EMG"]).ch_names == ["F3", "O1", "C4", "LOC"]
    assert DropChannels(["EEG", "EMG"])(rec).ch_names == ["LOC"]
    with pytest.raises(ValueError, match="channel 'Pz' not available"):
        drop_channels(rec, ["Pz"])
    with pytest.raises(ValueError, match="modality 'ECG' has no channel"):
        drop_channels(rec, ["ECG"])
    with pytest.raises(ValueError, match="no channel"):
        drop_channels(rec, ["EEG", "EOG", "EMG"])


def test_blank_bands_paints_only_that_band():
    img = np.full((12, 8, 3), 255, np.uint8)
    img[1, :] = 0
    img[5, :] = 0
    bands = [{"channel": "C3", "top": 0, "bottom": 4}, {"channel": "LOC", "top": 4, "bottom": 8},
             {"channel": "EMG", "top": 8, "bottom": 12}]
    out = blank_bands(img, bands, ["LOC"])
    assert (out[4:8] == 255).all() and (out[1] == 0).all() and (img[5] == 0).all()
    with pytest.raises(ValueError, match="channel 'O2' has no band"):
        blank_bands(img, bands, ["O2"])


def test_transform_spec_files_rebuild_the_same_transform(tmp_path):
    """The render stage gets its transform as a JSON spec file: the rebuilt one draws the same failures."""
    recs = [make_rec(str(i), seed=i) for i in range(4)]
    inj = ChannelFailure(seed=5, subjects=[r.subject for r in recs], fraction=0.5, kinds=("noise",),
                         manifest_dir=tmp_path / "parts")
    back = load_transform(save_transform(inj, tmp_path / "failure.json"))
    assert isinstance(back, ChannelFailure) and back.description == inj.description
    assert back.manifest_dir == tmp_path / "parts" and back.selected == inj.selected and len(back.selected) == 2
    for rec in recs:
        assert inj(rec).channel("C3").data.tobytes() == back(rec).channel("C3").data.tobytes()
    drop = load_transform(save_transform(DropChannels(["EOG", "C3"]), tmp_path / "drop.json"))
    assert isinstance(drop, DropChannels) and drop(recs[0]).ch_names == ["F3", "O1", "C4", "EMG"]
    (tmp_path / "bad.json").write_text('{"kind": "spikes"}')
    with pytest.raises(ValueError, match=r"kind 'spikes'; allowed: \['channel_failure', 'drop_channels'\]"):
        load_transform(tmp_path / "bad.json")
    (tmp_path / "bad2.json").write_text('{"kind": "channel_failure", "seed": 0, "rate": 2}')
    with pytest.raises(ValueError, match="bad settings for 'channel_failure'"):
        load_transform(tmp_path / "bad2.json")
    with pytest.raises(ValueError, match="cannot be saved as a spec file"):
        save_transform(lambda rec: rec, tmp_path / "x.json")


def test_one_failure_time_and_kind_per_subject_by_default():
    """The paper's protocol: each affected subject gets ONE t_fail; all its core channels fail from it, alike."""
    recs = [make_rec(str(i), seed=i) for i in range(8)]
    inj = ChannelFailure(seed=3, subjects=[r.subject for r in recs], fraction=1.0)
    assert inj.per == "subject" and inj.config()["per"] == "subject"
    onsets = {}
    for rec in recs:
        new = inj(rec)
        entries = [e for e in inj.manifest if e["subject"] == rec.subject]
        assert [e["channel"] for e in entries] == ["C3", "C4", "F3", "O1"]  # every present core channel
        assert len({e["onset_s"] for e in entries}) == 1 and len({e["kind"] for e in entries}) == 1
        assert {e["per"] for e in entries} == {"subject"}
        onset, kind = entries[0]["onset_s"], entries[0]["kind"]
        start = int(np.ceil(onset * SFREQ))
        for name in ("C3", "C4", "F3", "O1"):  # the same sample index on every channel (same rate)
            before, after = rec.channel(name).data, new.channel(name).data
            assert np.array_equal(after[:start], before[:start])
            assert (not after[start:].any()) if kind == "zeros" else not np.array_equal(after[start:], before[start:])
        onsets[rec.subject] = onset
    assert len(set(onsets.values())) == len(recs)  # subjects fail at different times
    assert {e["kind"] for e in inj.manifest} == {"noise", "zeros"}


def test_per_channel_variant_draws_each_channel_apart_as_before():
    """``per="channel"``: each core channel its own onset and kind, from the same streams as before the setting."""
    rec = make_rec("s")
    inj = ChannelFailure(seed=11, fraction=1.0, per="channel")
    entries = inj.plan(rec)
    assert len({e["onset_s"] for e in entries}) == len(entries) == 4 and {e["per"] for e in entries} == {"channel"}
    for e in entries:  # the per-channel stream: [seed, crc(subject), crc(channel)], onset then kind
        rng = np.random.default_rng([11, zlib.crc32(b"s"), zlib.crc32(e["channel"].encode())])
        assert e["onset_s"] == pytest.approx(rng.random() * rec.n_epochs * 30.0)
        assert e["kind"] == ("noise", "zeros")[int(rng.integers(2))]
    with pytest.raises(ValueError, match=r"per='epoch': a failure is drawn per one of \['subject', 'channel'\]"):
        ChannelFailure(seed=0, per="epoch")


def test_spec_files_record_the_failure_unit(tmp_path):
    recs = [make_rec(str(i), seed=i) for i in range(3)]
    for per in ("subject", "channel"):
        inj = ChannelFailure(seed=2, subjects=[r.subject for r in recs], fraction=1.0, per=per)
        path = save_transform(inj, tmp_path / f"{per}.json")
        assert json.loads(path.read_text())["per"] == per
        back = load_transform(path)
        assert back.per == per and [back.plan(r) for r in recs] == [inj.plan(r) for r in recs]
    # a spec written before the setting existed drew per channel: it still does
    old = json.loads((tmp_path / "subject.json").read_text())
    del old["per"]
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert load_transform(tmp_path / "old.json").per == "channel"
