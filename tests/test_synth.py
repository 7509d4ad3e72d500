"""Synthetic PSG: on-disk layouts, determinism, hypnogram shape, physiology, and reader round trips.

Run: python -m pytest -q tests/test_synth.py   (about half a minute on 2 busy cores; the
learnability check is marked slow: python -m pytest -q -m slow tests/test_synth.py)
"""

from __future__ import annotations

import filecmp
import json
import xml.etree.ElementTree as ET

import edfio
import mne
import numpy as np
import pytest
import scipy.signal

from psgvlm.io.edf import EdfChannel, physical_range, write_annotations_edf, write_edf
from psgvlm.stages import (
    ISRUC_CODES,
    N1,
    N2,
    N3,
    NSRR_CONCEPTS,
    REM,
    RK_ANNOTATIONS,
    UNSCORED,
    W,
    map_codes,
    writer_labels,
)
from psgvlm.synth import layouts
from psgvlm.synth.hypnogram import synth_hypnogram
from psgvlm.synth.layouts import FORMATS, format_channels, format_night, scored_stages, synth_dataset
from psgvlm.synth.physiology import DEFAULT_CHANNELS, synth_night

MINUTES = 10.0  # 20 epochs: every stage still present, files tiny


def _night_for(fmt, subject, minutes=MINUTES, seed=0):
    return format_night(fmt, subject, minutes=minutes, seed=seed)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """Two subjects per format, written once for the module."""
    root = tmp_path_factory.mktemp("synth")
    return {fmt: (root / fmt, synth_dataset(fmt, root / fmt, subjects=2, minutes=MINUTES, seed=0,
                                            progress=False)) for fmt in FORMATS}


# -- layouts --------------------------------------------------------------------------------------
LAYOUT = {  # every format synth supports has its expected files here (completeness test below)
    "isruc": ["1/1.rec", "1/1_1.txt", "1/1_2.txt", "2/2.rec", "2/2_1.txt", "2/2_2.txt"],
    "mass": ["01-03-0001 PSG.edf", "01-03-0001 Base.edf", "01-03-0002 PSG.edf", "01-03-0002 Base.edf"],
    "shhs": ["edfs/shhs1/shhs1-200001.edf", "annotations-events-nsrr/shhs1/shhs1-200001-nsrr.xml",
             "edfs/shhs1/shhs1-200002.edf", "annotations-events-nsrr/shhs1/shhs1-200002-nsrr.xml",
             "datasets/shhs1-dataset-synthetic.csv"],
    "sleepedf": ["SC4001E0-PSG.edf", "SC4001EC-Hypnogram.edf", "SC4011E0-PSG.edf", "SC4011EC-Hypnogram.edf"],
}


def test_every_format_has_a_layout_case():
    assert set(LAYOUT) == set(FORMATS)


@pytest.mark.parametrize("table", [ISRUC_CODES, RK_ANNOTATIONS, NSRR_CONCEPTS])
def test_written_labels_read_back_as_their_stage(table):
    labels = writer_labels(table)  # the spellings synth writes, derived from the readers' table
    assert list(labels) == [W, N1, N2, N3, REM]
    assert map_codes(list(labels.values()), table, source="synth").tolist() == [W, N1, N2, N3, REM]


@pytest.mark.parametrize("fmt", FORMATS)
def test_files_channels_and_rates(fmt, written):
    out, signal_paths = written[fmt]
    for rel in LAYOUT[fmt]:
        assert (out / rel).is_file(), rel
    assert [p.relative_to(out).as_posix() for p in signal_paths] == [r for r in LAYOUT[fmt]
                                                                      if r.endswith((".rec", "PSG.edf", "1.edf", "2.edf"))]
    manifest = json.loads((out / "synth.json").read_text())
    assert manifest["format"] == fmt and manifest["config"] == {"subjects": 2, "minutes": MINUTES, "seed": 0, "layout": "tidy"}
    assert "git_sha" in manifest["provenance"]
    for i, path in enumerate(signal_paths):
        edf = edfio.read_edf(path)
        specs = format_channels(fmt, i)
        labels = [s.label for s in edf.signals]
        assert labels == [s.label for s in specs]
        assert [s.sampling_frequency for s in edf.signals] == [s.sfreq for s in specs]
        assert [s.physical_dimension for s in edf.signals] == [s.unit for s in specs]
        assert edf.duration == MINUTES * 60
        rec = manifest["recordings"][i]
        assert rec["n_epochs"] == 20 and rec["sex"] in ("F", "M")
        assert all(rec["stage_counts"][s] > 0 for s in ("W", "N1", "N2", "N3", "REM"))


def test_isruc_spellings_and_scorers(written):
    out, _ = written["isruc"]
    assert format_channels("isruc", 0)[2].label == "F3-A2" and format_channels("isruc", 1)[2].label == "F3-M2"
    labels0 = [s.label for s in format_channels("isruc", 0)]
    labels1 = [s.label for s in format_channels("isruc", 1)]
    assert {"LOC-A2", "ROC-A1", "C4-A1", "X1", "X2", "SaO2"} <= set(labels0)
    assert {"E1-M2", "E2-M1", "C4-M1", "X1", "X2", "SpO2"} <= set(labels1)
    s1 = np.loadtxt(out / "1" / "1_1.txt", dtype=int)
    s2 = np.loadtxt(out / "1" / "1_2.txt", dtype=int)
    assert len(s1) == len(s2) == 20
    assert set(s1) <= {0, 1, 2, 3, 5} and {0, 1, 2, 3, 5} <= set(s1)
    night = _night_for("isruc", 0)
    assert np.array_equal(s1, [layouts.ISRUC_FILE_CODES[int(s)] for s in night.stages])


def test_mass_base_annotations(written):
    out, _ = written["mass"]
    ann = mne.read_annotations(out / "01-03-0001 Base.edf")
    assert len(ann) == 20
    assert np.allclose(ann.duration, 30.0) and np.allclose(np.diff(ann.onset), 30.0)
    assert set(ann.description) <= set(RK_ANNOTATIONS)
    header = edfio.read_edf(out / "01-03-0001 PSG.edf")
    assert header.reserved.startswith("EDF+")  # MASS PSG files are EDF+
    assert header.patient.sex in ("F", "M") and header.patient.birthdate is not None


def test_shhs_xml_and_csv(written):
    out, _ = written["shhs"]
    root = ET.parse(out / "annotations-events-nsrr" / "shhs1" / "shhs1-200001-nsrr.xml").getroot()
    assert root.tag == "PSGAnnotation" and root.findtext("EpochLength") == "30"
    stages = [(float(e.findtext("Start")), float(e.findtext("Duration")), e.findtext("EventConcept"))
              for e in root.iter("ScoredEvent") if e.findtext("EventType") == "Stages|Stages"]
    assert all(c in NSRR_CONCEPTS for _, _, c in stages)
    assert sum(d for _, d, _ in stages) == 20 * 30 and stages[0][0] == 0.0
    assert all(a[0] + a[1] == b[0] for a, b in zip(stages, stages[1:]))  # contiguous runs
    assert all(a[2] != b[2] for a, b in zip(stages, stages[1:]))  # merged like NSRR
    rows = (out / "datasets" / "shhs1-dataset-synthetic.csv").read_text().splitlines()
    assert rows[0] == "nsrrid,age_s1,gender" and rows[1].startswith("200001,") and len(rows) == 3
    edf = edfio.read_edf(out / "edfs" / "shhs1" / "shhs1-200001.edf")
    assert edf.get_signal("ECG").physical_dimension == "mV"


def test_sleepedf_hypnogram_runs(written):
    out, _ = written["sleepedf"]
    ann = mne.read_annotations(out / "SC4001EC-Hypnogram.edf")
    texts = list(ann.description)
    assert all(a != b for a, b in zip(texts, texts[1:]))  # runs of equal stages are one annotation
    assert texts[-1] == "Sleep stage ?" and ann.onset[-1] == 20 * 30  # runs past the signal, as real
    assert set(texts) <= set(RK_ANNOTATIONS)
    edf = edfio.read_edf(out / "SC4001E0-PSG.edf")
    assert edf.data_record_duration == 30.0 and edf.reserved.strip() == ""  # plain EDF like the real files
    assert edf.local_patient_identification.split()[1] in ("F", "M")
    assert edf.local_patient_identification.split()[3].endswith("yr")


# -- determinism ----------------------------------------------------------------------------------
def test_same_seed_same_bytes(tmp_path):
    a = synth_dataset("isruc", tmp_path / "a", subjects=1, minutes=MINUTES, seed=3, progress=False)[0]
    b = synth_dataset("isruc", tmp_path / "b", subjects=1, minutes=MINUTES, seed=3, progress=False)[0]
    c = synth_dataset("isruc", tmp_path / "c", subjects=1, minutes=MINUTES, seed=4, progress=False)[0]
    for name in ("1.rec", "1_1.txt", "1_2.txt"):
        assert filecmp.cmp(a.parent / name, b.parent / name, shallow=False), name
    assert not filecmp.cmp(a, c, shallow=False)


def test_channel_streams_are_independent_of_the_channel_list():
    full = synth_night(minutes=MINUTES, seed=1)
    alone = synth_night([DEFAULT_CHANNELS[1]], minutes=MINUTES, seed=1)
    assert np.array_equal(full.signals["C3"], alone.signals["C3"])
    assert np.array_equal(full.stages, alone.stages)


# -- hypnogram ------------------------------------------------------------------------------------
def test_night_proportions_and_cycles():
    props, n3_pos, rem_pos = [], [], []
    for seed in range(6):
        st, swf = synth_hypnogram(960, np.random.default_rng(seed), age=30 + 8 * seed)
        props.append([np.mean(st == s) for s in (W, N1, N2, N3, REM)])
        n3_pos.append(np.flatnonzero(st == N3).mean() / len(st))
        rem_pos.append(np.flatnonzero(st == REM).mean() / len(st))
        assert st[0] == W and st[-1] == W
        onset = np.argmax(st != W)
        assert 5 * 2 <= onset <= 20 * 2  # sleep onset after 5-20 min of wake
        assert np.all(swf[st == N3] > 0.2)  # N3: slow waves in > 20 % of the epoch
    w, n1, n2, n3, rem = np.mean(props, axis=0)
    assert 0.07 <= w <= 0.16 and 0.03 <= n1 <= 0.10 and 0.40 <= n2 <= 0.58
    assert 0.10 <= n3 <= 0.22 and 0.18 <= rem <= 0.28
    assert np.mean(n3_pos) < 0.4 < np.mean(rem_pos)  # N3 early, REM later


@pytest.mark.parametrize("minutes", [5, 10, 30, 60, 150])
def test_short_nights_hold_every_stage(minutes):
    for seed in range(3):
        st, _ = synth_hypnogram(minutes * 2, np.random.default_rng(seed))
        assert set(np.unique(st)) == {W, N1, N2, N3, REM}, (minutes, seed)


def test_second_scorer_disagrees_realistically():
    agree = [synth_night([], minutes=480, seed=s).meta["agreement_scorer2"] for s in range(3)]
    assert 0.76 <= np.mean(agree) <= 0.88


# -- physiology -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def night():
    return synth_night(minutes=150, seed=11)


def _band(x, fs, lo, hi):
    f, p = scipy.signal.welch(x, fs=fs, nperseg=int(4 * fs), axis=-1)
    return p[..., (f >= lo) & (f < hi)].mean(-1)


def _epochs(night, label):
    fs = night.sfreq[label]
    return night.signals[label].reshape(night.n_epochs, int(30 * fs)), fs


def test_stage_spectra(night):
    st = night.stages
    o1, fs = _epochs(night, "O1")
    c3, _ = _epochs(night, "C3")
    f3, _ = _epochs(night, "F3")
    med = lambda v, s: np.median(v[st == s])  # noqa: E731
    alpha = _band(o1, fs, 8, 12)
    assert med(alpha, W) > 3 * med(alpha, N3) and med(alpha, W) > 3 * med(alpha, N2)
    sigma = _band(c3, fs, 11, 16)
    assert med(sigma, N2) > 1.5 * med(sigma, REM)
    delta = _band(f3, fs, 0.5, 2)
    assert med(delta, N3) > 4 * med(delta, W) and med(delta, N3) > 2 * med(delta, N2)
    theta = _band(c3, fs, 4, 7)
    assert med(theta, N1) > med(theta, W)
    # Alpha is occipital, delta frontal.
    assert med(alpha, W) > 2 * med(_band(f3, fs, 8, 12), W)
    assert med(delta, N3) > med(_band(o1, fs, 0.5, 2), N3)


def test_n3_has_high_amplitude_slow_waves(night):
    f3, fs = _epochs(night, "F3")
    sos = scipy.signal.butter(2, [0.5, 2], "bandpass", fs=fs, output="sos")
    slow = scipy.signal.sosfiltfilt(sos, f3, axis=-1).reshape(night.n_epochs, 15, int(2 * fs))
    p2p = slow.max(-1) - slow.min(-1)  # peak-to-peak per 2-s window (one slow wave)
    frac = (p2p > 75).mean(-1)
    assert np.median(frac[night.stages == N3]) > 0.2
    assert np.median(frac[night.stages == W]) < 0.05


def test_emg_eog_ecg_follow_stage(night):
    st = night.stages
    emg, fs = _epochs(night, "EMG")
    rms = np.sqrt((emg**2).mean(-1))
    assert np.median(rms[st == W]) > 3 * np.median(rms[st == REM])
    assert np.median(rms[st == N2]) > np.median(rms[st == REM])
    loc, fs_e = _epochs(night, "LOC")
    roc, _ = _epochs(night, "ROC")
    eye = _band(loc - roc, fs_e, 0.5, 5)  # out-of-phase (eye movement) activity
    assert np.median(eye[st == REM]) > 3 * np.median(eye[st == N2])
    corr = np.array([np.corrcoef(a, b)[0, 1] for a, b in zip(loc, roc)])
    assert np.median(corr[st == REM]) < 0 < np.median(corr[st == N3])  # conjugate vs in-phase EEG
    ecg = night.signals["ECG"] * night.meta["ecg_sign"]
    peaks, _ = scipy.signal.find_peaks(ecg, height=0.5 * night.meta["ecg_uv"], distance=int(0.33 * 200))
    per_epoch = np.bincount(peaks // (30 * 200), minlength=night.n_epochs)[: night.n_epochs] * 2  # bpm
    assert np.mean(per_epoch[st == W]) > np.mean(per_epoch[st == N3]) + 4


def test_events_land_in_their_stages(night):
    st_at = lambda t: night.stages[np.minimum((t // 30).astype(int), night.n_epochs - 1)]  # noqa: E731
    sp = night.events["spindle"]
    assert np.all((sp[:, 1] >= 0.5) & (sp[:, 1] <= 2.0))
    assert np.mean(np.isin(st_at(sp[:, 0]), (N2, N3))) > 0.85
    assert np.mean(st_at(night.events["rem"][:, 0]) == REM) > 0.85
    assert np.mean(np.isin(st_at(night.events["kcomplex"][:, 0]), (N2, N3))) > 0.85
    minutes = {s: np.sum(night.stages == s) / 2 for s in (N1, N2)}
    vx = st_at(night.events["vertex"][:, 0])
    assert np.sum(vx == N1) / minutes[N1] > 5 * np.sum(vx == N2) / minutes[N2]  # vertex waves: N1


def test_subjects_differ():
    metas = [synth_night([], minutes=MINUTES, seed=0, subject=i).meta for i in range(8)]
    assert len({m["alpha_hz"] for m in metas}) == 8
    assert {m["sex"] for m in metas} == {"F", "M"}
    assert max(m["age"] for m in metas) - min(m["age"] for m in metas) > 10


# -- bad input ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, match", [
    (dict(fmt="edf"), "format 'edf'"),
    (dict(subjects=0), "subjects 0"),
    (dict(minutes=2), "minutes 2"),
    (dict(seed=-1), "seed -1"),
    (dict(fmt="sleepedf", subjects=101), "subjects 101"),
])
def test_bad_arguments(tmp_path, kwargs, match):
    args = dict(fmt="isruc", subjects=1, minutes=MINUTES, seed=0) | kwargs
    fmt = args.pop("fmt")
    with pytest.raises(ValueError, match=match):
        synth_dataset(fmt, tmp_path / "out", progress=False, **args)
    assert not (tmp_path / "out").exists()


def test_cli(tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["--format", "sleepedf", "--subjects", "1", "--minutes", "5", "--seed", "2", "--out", str(out), "--quiet"]
    assert layouts.main(argv) == 0
    assert (out / "SC4001E0-PSG.edf").is_file()
    assert layouts.main(argv) == 2  # refuses to overwrite
    assert "already exist" in capsys.readouterr().err
    assert layouts.main(argv + ["--overwrite"]) == 0
    assert layouts.main(["--format", "isruc", "--minutes", "1", "--out", str(tmp_path / "x")]) == 2
    assert "minutes 1.0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        layouts.main(["--format", "nope", "--out", str(tmp_path / "y")])


# -- psgvlm.io.edf -----------------------------------------------------------------------------------
def test_physical_range_holds_the_data():
    for x in (np.array([-3.2, 150.0]), np.array([94.0, 97.0]), np.zeros(5), np.array([0.0, 2.5])):
        lo, hi = physical_range(x)
        assert lo <= x.min() and hi >= x.max() and lo < hi
    assert physical_range(np.array([-100.0, 80.0])) == (-120.0, 120.0)
    with pytest.raises(ValueError, match="NaN"):
        physical_range(np.array([0.0, np.nan]))


def test_edf_writers_round_trip(tmp_path):
    x = np.sin(np.arange(600) / 7.0) * 50
    path = write_edf(tmp_path / "a.edf", [EdfChannel("C3-A2", 20.0, x), EdfChannel("SaO2", 1.0, np.full(30, 96.0), "%")])
    raw = mne.io.read_raw_edf(path, preload=True, verbose="error")
    assert raw.ch_names == ["C3-A2", "SaO2"]
    assert np.allclose(raw.get_data(picks="C3-A2")[0] * 1e6, x, atol=0.01)
    ann_path = write_annotations_edf(tmp_path / "h.edf", [0, 30, 90], [30, 60, 30],
                                     ["Sleep stage W", "Sleep stage 2", "Sleep stage R"])
    ann = mne.read_annotations(ann_path)
    assert list(ann.onset) == [0, 30, 90] and list(ann.duration) == [30, 60, 30]
    assert list(ann.description) == ["Sleep stage W", "Sleep stage 2", "Sleep stage R"]
    with pytest.raises(ValueError, match="same length"):
        write_annotations_edf(tmp_path / "bad.edf", [0, 30], [30], ["a", "b"])
    with pytest.raises(ValueError, match="different times"):
        write_edf(tmp_path / "bad.edf", [EdfChannel("A", 10.0, np.zeros(100)), EdfChannel("B", 10.0, np.zeros(90))])
    assert not (tmp_path / "bad.edf").exists()


# -- reader round trip ----------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", FORMATS)
def test_readers_get_back_what_was_written(fmt, written):
    from psgvlm.io import readers
    out, signal_paths = written[fmt]
    found = readers.find_recordings(fmt, out)
    assert [str(d["path"]) for d in found] == [str(p) for p in signal_paths]
    manifest = json.loads((out / "synth.json").read_text())["recordings"]
    for i, kwargs in enumerate(found):
        rec = readers.read_recording(fmt, **kwargs)
        night = _night_for(fmt, i)
        expected = scored_stages(night, fmt)
        assert np.array_equal(rec.stages[: rec.n_epochs], expected) and rec.n_epochs == len(expected)
        assert rec.meta.get("sex") == manifest[i]["sex"]
        assert abs(float(rec.meta.get("age")) - manifest[i]["age"]) <= 1
        specs = {s.label: s for s in format_channels(fmt, i)}
        for ch in rec.channels:
            assert ch.sfreq == specs[ch.name].sfreq
        eeg = [c for c in rec.channels if c.modality == "EEG"][0]
        want = night.signals[eeg.name]
        assert np.allclose(eeg.data, want, atol=0.02 * np.abs(want).max())  # microvolts, as written


def test_given_hypnogram_drives_the_signals():
    stages = [W] * 6 + [N2] * 6 + [N3] * 6 + [REM] * 6
    night = synth_night(stages=stages, seed=2)
    assert np.array_equal(night.stages, stages) and len(night.signals["C3"]) == 24 * 30 * 200
    f3, fs = _epochs(night, "F3")
    delta = _band(f3, fs, 0.5, 2)
    assert delta[12:18].mean() > 3 * delta[:6].mean()
    with pytest.raises(ValueError, match="codes 0..4"):
        synth_night(stages=[0, 7, 2])


def test_movement_time_is_unscored_only_in_sleepedf():
    night = synth_night([], minutes=480, seed=5)
    assert night.movement.any()
    assert np.all(scored_stages(night, "sleepedf")[night.movement] == UNSCORED)
    assert np.all(scored_stages(night, "isruc")[night.movement] == W)


# -- learnable, not trivial (slow) ----------------------------------------------------------------
@pytest.mark.slow
def test_band_power_classifier_is_good_but_not_perfect():
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import cohen_kappa_score

    feats, labels = [], []
    for sub in range(5):
        n = synth_night(minutes=240, seed=21, subject=sub)
        rows = []
        for lab in ("F3", "C3", "O1", "LOC", "ROC", "EMG"):
            x, fs = _epochs(n, lab)
            rows += [np.log(_band(x, fs, a, b) + 1e-6) for a, b in ((0.5, 2), (2, 4), (4, 7), (8, 12),
                                                                    (11, 16), (16, 30), (30, 45))]
        feats.append(np.stack(rows, 1))
        labels.append(n.stages)
    clf = LogisticRegression(max_iter=3000, C=0.5).fit(np.concatenate(feats[:4]), np.concatenate(labels[:4]))
    kappa = cohen_kappa_score(labels[4], clf.predict(feats[4]))
    assert 0.55 <= kappa <= 0.92
