"""The real datasets as downloaded (issue 15): ``psgvlm synth --layout download`` writes ISRUC (all three
subgroups, subgroup 2's two nights per subject), MASS-SS3, SHHS (both visits, NSRR and Profusion XML) and
Sleep-EDF (cassette and telemetry) roots with the real files' variants; ``psgvlm render`` must render
every night, each as its own recording under the right subject, with its warnings in meta.json.

Also: ids from the path under the input root, blank bands for missing channels (``--require-channels``
strict), re-referenced bare electrodes, rate snapping and the Fourier fallback, Profusion XML, SHHS
visits and the CSV read once, ISRUC ``--trim-tail-epochs``.

Run: python -m pytest -q tests/test_dataset_layouts.py
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from psgvlm.cli import main as cli
from psgvlm.image.dataset import band_layout, load_dataset
from psgvlm.io.readers import find_recordings, read_recording

FORMATS = ("isruc", "mass", "shhs", "sleepedf")
SIZE = {"mass": 112}  # 26 bands need more rows than 64 px; the others render at 64 px


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    """Each format's download root (one regular night per group plus the variants, 5 minutes a night)."""
    out = {}
    for fmt in FORMATS:
        root = tmp_path_factory.mktemp("download") / fmt
        assert cli(["synth", "--format", fmt, "--layout", "download", "--subjects", "1", "--minutes", "5",
                    "--seed", "1", "--out", str(root), "--quiet"]) == 0
        out[fmt] = root
    return out


@pytest.fixture(scope="module")
def rendered(roots, tmp_path_factory):
    """``psgvlm render`` of each root: (DatasetDict, meta, synth.json recordings)."""
    out = {}
    for fmt in FORMATS:
        ds = tmp_path_factory.mktemp("img") / fmt
        with pytest.warns(UserWarning):  # every root has a night with a missing or derived channel
            assert cli(["render", "--format", fmt, "--input", str(roots[fmt]), "--out", str(ds), "--size",
                        str(SIZE.get(fmt, 64)), "--split", "none", "--quiet"]) == 0
        dd, meta = load_dataset(ds)
        out[fmt] = dd, meta, json.loads((roots[fmt] / "synth.json").read_text())["recordings"]
    return out


def _band_ink_rows(png: bytes, band: dict) -> int:
    """Pixel rows of one band holding any non-background pixel (a flat band draws one straight line)."""
    img = np.asarray(Image.open(io.BytesIO(png)).convert("L"))[band["top"]:band["bottom"]]
    return int(np.sum((img < 250).any(axis=1)))


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_night_rendered_apart_with_its_warnings(fmt, rendered):
    dd, meta, nights = rendered[fmt]
    if fmt == "shhs":  # the second visit is not mixed into the first's dataset
        nights = [n for n in nights if not n["recording"].startswith("shhs2-")]
    summaries = {s["recording"]: s for s in meta["recordings"]}
    assert sorted(summaries) == sorted(n["recording"] for n in nights) and not meta["skipped"]
    rows = dd["all"]
    per_rec = {}
    for rec, subj, epoch in zip(rows["recording"], rows["subject"], rows["epoch"]):
        per_rec.setdefault(rec, []).append((subj, epoch))
    images = rows.with_format("arrow")["image"].to_pylist()
    bands = {b["channel"]: b for b in band_layout(meta)}
    for night in nights:
        s = summaries[night["recording"]]
        assert s["subject"] == night["subject"], night["recording"]
        got = per_rec[night["recording"]]
        assert {subj for subj, _ in got} == {night["subject"]}
        assert sorted(e for _, e in got) == list(range(night["n_epochs"]))  # apart: its own epochs, once each
        assert s["missing_channels"] == night["missing_channels"]
        for ch in night["missing_channels"]:  # the blank band: warned, flat in every image
            assert any(f"channel(s) {night['missing_channels']} not in the recording" in w and ch in w
                       for w in s["warnings"])
            mine = [img["bytes"] for img, r in zip(images, rows["recording"]) if r == night["recording"]]
            assert all(_band_ink_rows(png, bands[ch]) <= 2 for png in mine)
    # no night's images stand in for another's
    first = {}
    for img, r in zip(images, rows["recording"]):
        first.setdefault(r, img["bytes"])
    assert len(set(first.values())) == len(first)
    # bands sit in the same place in every image: the dataset's montage, whatever a night lacks
    assert meta["channels"] == {"isruc": ["F3", "C3", "O1", "F4", "C4", "O2", "LOC", "ROC", "EMG", "ECG", "LEG1", "LEG2"],
                                "shhs": ["C4", "C3", "LOC", "ROC", "EMG", "ECG", "THOR", "ABDO"],
                                "sleepedf": ["Fpz-Cz", "Pz-Oz", "EOG", "EMG"]}.get(fmt, meta["channels"])


def test_isruc_subgroups_sessions_and_variants(rendered):
    _, meta, _ = rendered["isruc"]
    s = {r["recording"]: r for r in meta["recordings"]}
    # three "1.rec" files (Subgroup_1/1, Subgroup_3/1, Subgroup_2/1/1): three recordings, two subjects
    # apart from the session pair that shares its subject
    assert {s[r]["subject"] for r in ("isruc-sg1-1", "isruc-sg3-1", "isruc-sg2-1-1", "isruc-sg2-1-2")} == {
        "isruc-sg1-1", "isruc-sg3-1", "isruc-sg2-1"}
    bare = s["isruc-sg1-40"]
    assert bare["meta"]["derived_channels"]["F3-A2"] == "F3 - A2" and bare["channels"]["F3"]["name"] == "F3-A2"
    assert bare["channels"]["ROC"]["name"] == "ROC-A1"
    assert any("derived from bare electrodes" in w and "C4-A1 = C4 - A1" in w for w in bare["warnings"])
    assert s["isruc-sg1-2"]["channels"]["EMG"]["name"] == "24"
    assert s["isruc-sg1-8"]["missing_channels"] == ["F3", "F4"]


def test_isruc_bare_electrodes_rereferenced_by_subtraction(roots):
    from edfio import read_edf

    path = roots["isruc"] / "Subgroup_1" / "40" / "40.rec"
    raw = {s.label: s.data for s in read_edf(path).signals}
    rec = read_recording("isruc", path)
    np.testing.assert_allclose(rec.channel("F3").data, raw["F3"] - raw["A2"], atol=1e-3)
    np.testing.assert_allclose(rec.channel("ROC").data, raw["ROC"] - raw["A1"], atol=1e-3)
    assert rec.channel("A1").modality == "EEG" and "F3" not in [c.name for c in rec.channels]


def test_isruc_strict_channels_and_trimmed_tail(roots, tmp_path, capsys):
    root = roots["isruc"]
    assert cli(["render", "--format", "isruc", "--input", str(root), "--out", str(tmp_path / "strict"),
                "--require-channels", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "['F3', 'F4']" in err and "isruc-sg1-8" in err and "Traceback" not in err
    assert not (tmp_path / "strict").exists()
    assert cli(["render", "--format", "isruc", "--input", str(root / "Subgroup_3"), "--out", str(tmp_path / "t"),
                "--trim-tail-epochs", "3", "--size", "64", "--quiet"]) == 0
    _, meta = load_dataset(tmp_path / "t")
    (one,) = meta["recordings"]
    assert one["recording"] == "isruc-sg3-1"  # the root's own name is the subgroup
    assert one["n_epochs"] == 7 and one["pairing"]["trimmed_tail_epochs"] == 3
    assert meta["settings"]["trim_tail_epochs"] == 3

def test_trim_tail_is_an_isruc_option(roots, tmp_path, capsys):
    assert cli(["render", "--format", "mass", "--input", str(roots["mass"]), "--out", str(tmp_path / "m"),
                "--trim-tail-epochs", "3", "--quiet"]) == 2
    assert "trim_tail_epochs" in capsys.readouterr().err


def test_mass_annotation_folder_and_rate_with_decimals(rendered):
    _, meta, nights = rendered["mass"]
    s = {r["recording"]: r for r in meta["recordings"]}
    odd = s["SS3/biosignals/01-03-0003"]
    assert odd["pairing"]["hypnogram"].endswith("SS3/annotations/01-03-0003 Base.edf")
    plan = odd["resample"][0]
    assert plan["sfreq"] == pytest.approx(256 / 0.999993) and plan["snapped_sfreq"] == 256.0
    assert plan["action"] == "unchanged" and meta["sfreq"] == 256.0
    ler = s["SS3/biosignals/01-03-0002"]
    assert ler["channels"]["C3"]["name"] == "EEG C3-LER" and ler["channels"]["ECG"]["name"] == "ECG I"


def test_shhs_visits_profusion_aliases_and_csv(roots, rendered, tmp_path):
    _, meta, nights = rendered["shhs"]
    s = {r["recording"]: r for r in meta["recordings"]}
    assert s["shhs1-200003"]["pairing"]["hypnogram"].endswith("shhs1-200003-profusion.xml")
    assert s["shhs1-200003"]["pairing"]["hypnogram_kind"] == "Compumedics Profusion XML"
    assert s["shhs1-200001"]["pairing"]["ignored_events"] == {"Unsure|Unsure": 1}
    spelled = s["shhs1-200002"]["channels"]
    assert spelled["C3"]["name"] == "EEG (sec)"
    rec = read_recording("shhs", roots["shhs"] / "polysomnography" / "edfs" / "shhs1" / "shhs1-200002.edf")
    assert rec.channel("NASAL").name == "NEWAIR" and rec.channel("SNORE").name == "SOUND"
    by_id = {n["recording"]: n for n in nights}
    assert s["shhs1-200001"]["meta"]["age"] == int(by_id["shhs1-200001"]["age"])  # age_s1
    # --visit 2: the second visit's nights, aged from its own CSV
    assert cli(["render", "--format", "shhs", "--input", str(roots["shhs"]), "--out", str(tmp_path / "v2"),
                "--visit", "2", "--size", "64", "--quiet"]) == 0
    _, meta2 = load_dataset(tmp_path / "v2")
    (v2,) = meta2["recordings"]
    assert v2["recording"] == "shhs2-200001" and v2["subject"] == "200001"
    assert v2["meta"]["age"] == int(by_id["shhs2-200001"]["age"]) and v2["meta"]["visit"] == 2


def test_shhs_csv_is_read_once(roots, monkeypatch):
    from psgvlm.io.readers import nsrr

    nsrr._csv_table.cache_clear()
    opened = []
    real_open = open

    def counting_open(path, *a, **kw):
        if str(path).endswith(".csv"):
            opened.append(str(path))
        return real_open(path, *a, **kw)

    monkeypatch.setattr("builtins.open", counting_open)
    for job in find_recordings("shhs", roots["shhs"]):
        read_recording("shhs", **job)
    assert len(opened) == len(set(opened)) == 1  # shhs1's CSV, once for four nights


def test_sleepedf_cassette_and_telemetry(rendered):
    _, meta, _ = rendered["sleepedf"]
    s = {r["recording"]: r for r in meta["recordings"]}
    assert {r: v["subject"] for r, v in s.items()} == {
        "sleep-cassette/SC4001E0": "SC400", "sleep-cassette/SC4002F0": "SC400", "sleep-cassette/SC4011G0": "SC401",
        "sleep-telemetry/ST7011J0": "ST701", "sleep-telemetry/ST7012J0": "ST701"}
    assert s["sleep-cassette/SC4002F0"]["pairing"]["hypnogram"].endswith("SC4002FC-Hypnogram.edf")
    assert s["sleep-telemetry/ST7011J0"]["channels"]["EMG"]["sfreq"] == 100.0


# -- ids -------------------------------------------------------------------------------------------------
def test_identical_file_names_in_different_folders_are_two_recordings(tmp_path):
    from edfio import Edf, EdfSignal

    for sub in ("subjA", "subjB"):
        (tmp_path / sub).mkdir()
        Edf([EdfSignal(np.zeros(100 * 60), 100, label="C3-M2", physical_range=(-1, 1))]).write(tmp_path / sub / "night.edf")
    found = find_recordings("generic", tmp_path)
    assert [(j["recording"], j["subject"]) for j in found] == [("subjA/night", "subjA/night"),
                                                              ("subjB/night", "subjB/night")]
    recs = [read_recording("generic", **j) for j in found]
    assert [r.recording for r in recs] == ["subjA/night", "subjB/night"]


def test_scorer_reaches_the_finder(roots):
    from render.build import discover_recordings

    jobs = discover_recordings("isruc", roots["isruc"], find_opts={"scorer": 2}, read_opts={"scorer": 2})
    assert all(j["hypnogram"].endswith("_2.txt") and j["scorer"] == 2 for j in jobs)
    rec = read_recording("isruc", **jobs[0])
    assert rec.meta["scorer"] == 2 and rec.pairing["hypnogram"].endswith("_2.txt")


def test_isruc_ids_from_the_layout(tmp_path):
    from psgvlm.io.readers.isruc import isruc_ids

    root = tmp_path / "ISRUC"
    assert isruc_ids(root / "Subgroup_3/1/1.rec", root) == ("isruc-sg3-1", "isruc-sg3-1")
    assert isruc_ids(root / "subgroupII/5/2/2.rec", root) == ("isruc-sg2-5-2", "isruc-sg2-5")
    assert isruc_ids(root / "copy/Subgroup_1/8/8.rec", root) == ("copy/isruc-sg1-8", "copy/isruc-sg1-8")
    assert isruc_ids(root / "1/1.rec", root) == ("1", "1")  # no subgroup folder: the tidy layout
    assert isruc_ids(root / "Subgroup_1/8/8.rec") == ("isruc-sg1-8", "isruc-sg1-8")  # the file alone


# -- resampling ------------------------------------------------------------------------------------------
def test_rates_snap_or_resample_by_fourier():
    from psgvlm.signal.epochs import resample, resample_ratio, resampled_length, snap_rate

    assert snap_rate(256.0017) == 256.0 and snap_rate(99.99) == 99.99
    assert resample_ratio(256.0017, 256.0) == (1, 1) and resample_ratio(255.99, 200.0) == (25, 32)
    fs = 133.3346  # no up/down ratio with a denominator <= 10000 within 1e-6, to 200 Hz nor to 100 Hz
    with pytest.raises(ValueError, match="no integer up/down ratio"):
        resample_ratio(fs, 100.0)
    t = np.arange(int(fs * 600)) / fs
    slow, fast = np.sin(2 * np.pi * 0.3 * t), np.sin(2 * np.pi * 60.0 * t)  # 60 Hz: above the new Nyquist
    for target in (100.0, 200.0):
        y = resample(slow + (fast if target == 100.0 else 0), fs, target)
        assert len(y) == resampled_length(len(t), fs, target) == int(np.ceil(len(t) * target / fs))
        t2 = np.arange(len(y)) / target
        # on time to half a sample over 10 minutes, 60 Hz removed; the first and last 2 s may ring (as
        # the polyphase filter's do), not the whole night (no wrap-around step)
        err = np.abs(y - np.sin(2 * np.pi * 0.3 * t2))
        assert np.max(err[int(2 * target):-int(2 * target)]) < 0.01, target


# -- Profusion XML ---------------------------------------------------------------------------------------
def test_profusion_xml_stages(tmp_path):
    from psgvlm.io.hypnograms import read_nsrr_hypnogram
    from psgvlm.stages import N1, N2, N3, REM, UNSCORED, W

    xml = tmp_path / "shhs1-1-profusion.xml"
    stages = [0, 1, 2, 3, 4, 5, 9, 6]
    xml.write_text("<CMPStudyConfig><EpochLength>30</EpochLength><ScoredEvents/><SleepStages>"
                   + "".join(f"<SleepStage>{c}</SleepStage>" for c in stages) + "</SleepStages></CMPStudyConfig>")
    h = read_nsrr_hypnogram(xml)
    assert h.codes.tolist() == [W, N1, N2, N3, N3, REM, UNSCORED, UNSCORED]
    assert h.onsets_s.tolist() == [30.0 * k for k in range(8)] and h.notes["other_stage_codes"] == 2
    xml.write_text("<CMPStudyConfig><EpochLength>30</EpochLength><SleepStages><SleepStage>N2</SleepStage>"
                   "</SleepStages></CMPStudyConfig>")
    with pytest.raises(ValueError, match=r"SleepStage> 0 is 'N2', not an integer"):
        read_nsrr_hypnogram(xml)
