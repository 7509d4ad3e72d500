"""Hostile hypnograms (issue 11, classes 3, 5, 11 and 12 and the BOM/';' cases), each written here in code:
overlapping rows with conflicting stages, NaN/inf/negative/1e300 onsets and durations, labels far past
the signal, DREAMS text excerpts of any number whose rate follows from the sample count, CSV
hypnograms with a UTF-8 BOM or ';' separators, every hypnogram format told from its content (a
header-less DREAMS file refused, never misread; the real DREAMS excerpt 3 when ../shared/data is there). Each case asserts the outcome: refused with a message
naming the file, the row and the value, or read correctly (the exact stages).

Run: python -m pytest -q tests/test_hypnogram_hostile.py
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import numpy as np
import pytest
from edfio import Edf, EdfAnnotation, EdfSignal
from edfio import Recording as EdfRecording

from psgvlm.io.hypnogram_formats import read_generic_hypnogram
from psgvlm.io.hypnograms import read_nsrr_hypnogram, read_prerau_hypnogram
from psgvlm.io.readers import read_recording
from psgvlm.io.readers.dreams import dreams_text_rate
from psgvlm.io.readers.pairing import merge_overlaps, pair_by_time
from psgvlm.stages import N1, N2, REM, UNSCORED, W

START = dt.date(2021, 3, 4)


def _edf(path: Path, seconds: float, *, sfreq: float = 50.0, starttime=dt.time(23, 0, 0)) -> Path:
    x = np.random.default_rng(0).normal(0, 20, int(sfreq * seconds))
    Edf([EdfSignal(x, sfreq, label="C3-M2", physical_dimension="uV", physical_range=(-500, 500))],
        recording=EdfRecording(startdate=START), starttime=starttime).write(path)
    return path


def _nsrr(events) -> str:
    body = "".join(
        f"<ScoredEvent><EventType>Stages|Stages</EventType><EventConcept>{c}</EventConcept>"
        f"<Start>{s}</Start><Duration>{d}</Duration></ScoredEvent>" for c, s, d in events)
    return f'<?xml version="1.0" encoding="UTF-8"?><PSGAnnotation><ScoredEvents>{body}</ScoredEvents></PSGAnnotation>'


# -- class 3: overlapping rows ----------------------------------------------------------------------------
def test_conflicting_overlap_refused_in_csv(tmp_path):
    _edf(tmp_path / "night.edf", 300)
    hyp = tmp_path / "night.csv"
    hyp.write_text("init_sec,duration_sec,stage\n0,30,W\n30,60,N2\n60,30,W\n90,30,N1\n")
    with pytest.raises(ValueError, match=r"night\.csv: overlapping labels with different stages: row 1 \(onset "
                                         r"30 s, N2\) and row 2 \(onset 60 s, W\) both cover 60-90 s \(30 s\)"):
        read_recording("generic", tmp_path / "night.edf", hyp)


def test_conflicting_overlap_refused_in_nsrr_xml_and_edf_annotations(tmp_path):
    _edf(tmp_path / "night.edf", 300)
    xml = tmp_path / "night-nsrr.xml"
    xml.write_text(_nsrr([("Wake|0", 0, 60), ("Stage 2 sleep|2", 30, 30)]))
    with pytest.raises(ValueError, match=r"night-nsrr\.xml: overlapping labels .*\(onset 0 s, W\) and .*"
                                         r"\(onset 30 s, N2\) both cover 30-60 s"):
        read_recording("generic", tmp_path / "night.edf", xml)
    ann = tmp_path / "night-Hypnogram.edf"
    Edf([], annotations=[EdfAnnotation(0, 90, "Sleep stage 2"), EdfAnnotation(60, 30, "Sleep stage R")],
        recording=EdfRecording(startdate=START), starttime=dt.time(23, 0, 0)).write(ann)
    with pytest.raises(ValueError, match=r"night-Hypnogram\.edf: overlapping labels .*N2.*REM.* 60-90 s"):
        read_recording("generic", tmp_path / "night.edf", ann)


def test_conflict_found_whatever_the_row_order():
    # the conflicting row sits inside a long row and after a row of the same stage
    with pytest.raises(ValueError, match=r"row 0 \(onset 0 s, W\) and row 2 \(onset 40 s, REM\)"):
        pair_by_time([0.0, 10.0, 40.0], [100.0, 20.0, 10.0], [W, W, REM], 200.0, source="h.csv")
    with pytest.raises(ValueError, match=r"h\.csv: overlapping labels"):
        pair_by_time([90.0, 0.0], [30.0, 100.0], [N1, N2], 200.0, source="h.csv")


def test_identical_overlaps_merged_and_counted_once(tmp_path):
    # a duplicated row is merged; its union counts once, so 15 s of W (twice) does not beat 15 s of N2
    stages, _, p = pair_by_time([0.0, 0.0, 15.0, 30.0, 30.0, 40.0], [15.0, 15.0, 15.0, 30.0, 30.0, 20.0],
                                [W, W, N2, N2, N2, N2], 60.0)
    assert stages.tolist() == [UNSCORED, N2] and p["n_unscored"] == 1
    on, du, codes = merge_overlaps([30.0, 0.0, 10.0, 60.0], [30.0, 20.0, 30.0, 30.0], [W, W, W, N2])
    assert on.tolist() == [0.0, 60.0] and du.tolist() == [60.0, 30.0] and codes.tolist() == [W, N2]
    # touching rows are not overlaps; a sub-millisecond overlap is rounding, not a conflict
    stages, _, _ = pair_by_time([0.0, 30.0, 59.9995], [30.0, 30.0002, 30.0005], [W, N2, REM], 90.0)
    assert stages.tolist() == [W, N2, REM]
    _edf(tmp_path / "night.edf", 120)
    (tmp_path / "dup.csv").write_text("0,30,W\n0,30,W\n30,30,N2\n30,30,N2\n60,30,REM\n")
    rec = read_recording("generic", tmp_path / "night.edf", tmp_path / "dup.csv")
    assert rec.stages.tolist() == [W, N2, REM]


# -- class 5: non-finite, negative and absurd times ---------------------------------------------------------
@pytest.mark.parametrize("onset,duration,what,shown", [
    ("inf", "30", "onset", "inf"), ("nan", "30", "onset", "nan"), ("-30", "30", "onset", "-30.0"),
    ("1e300", "30", "onset", "1e+300"), ("-inf", "30", "onset", "-inf"), ("60", "inf", "duration", "inf"),
    ("60", "nan", "duration", "nan"), ("60", "-30", "duration", "-30.0"), ("60", "0", "duration", "0.0"),
    ("60", "1e300", "duration", "1e+300"), ("1e308", "1e308", "onset", "1e+308"),
])
def test_bad_times_in_csv_refused_naming_row_and_value(tmp_path, onset, duration, what, shown):
    _edf(tmp_path / "night.edf", 300)
    hyp = tmp_path / "labels.csv"
    hyp.write_text(f"onset,duration,stage\n0,30,W\n30,30,N1\n{onset},{duration},N2\n")
    with pytest.raises(ValueError) as err:
        read_recording("generic", tmp_path / "night.edf", hyp)
    msg = str(err.value)
    assert msg.startswith(f"{hyp}: line 4: {what} {shown} s "), msg
    assert len(msg) < 400 and "seconds" in msg


def test_bad_times_in_xml_and_prerau_refused(tmp_path):
    xml = tmp_path / "s-nsrr.xml"
    for start, dur, shown in (("nan", "30", "onset nan"), ("0", "1e300", "duration 1e+300"),
                              ("-5", "30", "onset -5.0")):
        xml.write_text(_nsrr([("Wake|0", 0, 30), ("Stage 2 sleep|2", start, dur)]))
        with pytest.raises(ValueError, match=r"s-nsrr\.xml: stage event 1 'Stage 2 sleep\|2': " + re.escape(shown)):
            read_nsrr_hypnogram(xml)
    pre = tmp_path / "segment_stages.csv"
    for bad in ("nan", "inf", "1e300"):
        pre.write_text(f"Time,Stage\n10,5\n40,3\n{bad},2\n")
        with pytest.raises(ValueError, match=r"segment_stages\.csv: line 4: onset (nan|inf|1e\+300) s"):
            read_prerau_hypnogram(pre)
        pre.write_text(f"Time,Stage\n10,5\n40,{bad}\n70,2\n")
        with pytest.raises(ValueError, match=r"segment_stages\.csv: line 3: stage (nan|inf|1e\+300) is not a stage code"):
            read_prerau_hypnogram(pre)


def test_pair_by_time_refuses_nonfinite_directly():
    for on, du in (([0.0, np.nan], [30.0, 30.0]), ([0.0, 30.0], [30.0, np.inf]), ([0.0, 1e300], [30.0, 30.0])):
        with pytest.raises(ValueError, match=r"^x\.tsv: label 1: (onset|duration) (nan|inf|1e\+300) s"):
            pair_by_time(on, du, [W, N2], 300.0, source="x.tsv")
    with pytest.raises(ValueError, match=r"label 0: duration -30.0 s must be > 0"):
        pair_by_time([0.0], [-30.0], [W], 300.0)


def test_edf_hypnogram_dated_months_away_refused(tmp_path):
    _edf(tmp_path / "night.edf", 300)
    ann = tmp_path / "night-Hypnogram.edf"
    Edf([], annotations=[EdfAnnotation(0, 30, "Sleep stage W")],
        recording=EdfRecording(startdate=START + dt.timedelta(days=90)), starttime=dt.time(23, 0, 0)).write(ann)
    with pytest.raises(ValueError, match=r"night-Hypnogram\.edf: starts 7776000 s \(90\.0 days\) from the "
                                         r"signal's start"):
        read_recording("generic", tmp_path / "night.edf", ann)


def test_hypnogram_far_longer_than_signal_reported_readably(tmp_path):
    _edf(tmp_path / "night.edf", 120)
    hyp = tmp_path / "long.csv"
    hyp.write_text("0,30,W\n30,30,N1\n60,30,N2\n90,600000,N2\n")  # the last row runs ~7 days
    rec = read_recording("generic", tmp_path / "night.edf", hyp)
    assert rec.stages.tolist() == [W, N1, N2, N2]
    p = rec.pairing
    assert p["dropped_label_epochs"] == 19_999 and p["n_label_epochs"] == 20_003
    (warning,) = p["warnings"]
    assert warning == ("the labels run 166.7 h (19999 epochs) past the signal's end at 2.0 min; "
                       "those label epochs are dropped")
    short = tmp_path / "short.csv"
    short.write_text("0,30,W\n30,30,N1\n60,30,N2\n90,60,N2\n")  # one epoch past the end: no warning
    assert read_recording("generic", tmp_path / "night.edf", short).pairing["warnings"] == []


# -- class 12: DREAMS text excerpts of any number --------------------------------------------------------
def _dreams(root: Path, n: int, n_samples: int, *, n_codes: int = 360) -> Path:
    x = np.random.default_rng(n).normal(0, 20, n_samples)
    sig = root / f"excerpt{n}.txt"
    sig.write_text("[C3-A1]\n" + "\n".join(f"{v:.2f}" for v in x) + "\n")
    (root / f"Hypnogram_excerpt{n}.txt").write_text("[Hypnogram]\n" + "2\n" * n_codes)
    return sig


def test_dreams_rate_from_sample_count():
    assert dreams_text_rate(180_000) == 100.0 and dreams_text_rate(90_000) == 50.0
    assert dreams_text_rate(360_140) == 200.0  # the database's excerpt 6: 1800.7 s at 200 Hz
    assert dreams_text_rate(921_600) == 512.0 and dreams_text_rate(1800) == 1.0
    assert dreams_text_rate(100 * 1800 - 10) == 100.0  # 0.1 s short: within 1e-4 of 100 Hz
    # 22500 = 12.5 Hz: no whole rate gives 30 min; 1e6 = 555.6 Hz; 100 Hz but 2 s short or 1.5 s long
    for n in (1000, 0, 1_000_000, 22_500, 179_800, 180_150):
        with pytest.raises(ValueError, match=rf"x\.txt: {n} samples is not a 1800-s DREAMS excerpt .* pass sfreq="):
            dreams_text_rate(n, "x.txt")


def test_dreams_unknown_excerpt_number_read(tmp_path):
    rec = read_recording("dreams", _dreams(tmp_path, 9, 20 * 1800 + 7))  # excerpt 9, 20 Hz, 7 samples over
    assert rec.channels[0].sfreq == 20.0 and rec.n_epochs == 60 and rec.stage_counts()["N2"] == 60


def test_dreams_sfreq_override_and_refusal(tmp_path):
    sig = _dreams(tmp_path, 12, 22_500)  # 12.5 Hz: the count does not give a whole rate
    with pytest.raises(ValueError, match=r"excerpt12\.txt: 22500 samples is not a 1800-s DREAMS excerpt .*"
                                         r"pass sfreq="):
        read_recording("dreams", sig)
    rec = read_recording("dreams", sig, sfreq=12.5)
    assert rec.channels[0].sfreq == 12.5 and rec.n_epochs == 60
    for bad in (0.0, -12.5, float("nan")):
        with pytest.raises(ValueError, match=r"excerpt12\.txt: sfreq=.*; the rate must be a positive number"):
            read_recording("dreams", sig, sfreq=bad)


# -- unclear messages: BOM and ';' in text hypnograms ----------------------------------------------------------
@pytest.mark.parametrize("text", [
    "\ufeffinit_sec,duration_sec,stage\n0,30,W\n30,30,N2\n60,30,REM\n",
    "\ufeff0,30,W\n30,30,N2\n60,30,REM\n",
    "\ufeffW\nN2\nREM\n",
    "onset;duration;stage\n0;30;W\n30;30;N2\n60;30;REM\n",
    "0;30;W\n30;30;N2\n60;30;REM\n",
    "\ufeffstage;duration;onset\r\nW;30;0\r\nN2;30;30\r\nREM;30;60\r\n",
    "0\t30\tW\n30\t30\tN2\n60\t30\tREM\n",
])
def test_bom_and_separators_read(tmp_path, text):
    _edf(tmp_path / "night.edf", 90)
    hyp = tmp_path / "night.csv"
    hyp.write_bytes(text.encode("utf-8"))
    h = read_generic_hypnogram(hyp)
    assert h.codes.tolist() == [W, N2, REM]
    assert read_recording("generic", tmp_path / "night.edf", hyp).stages.tolist() == [W, N2, REM]


def test_bad_row_in_semicolon_csv_named(tmp_path):
    hyp = tmp_path / "h.csv"
    hyp.write_text("0;30;W\n\n30;thirty;N2\n")
    with pytest.raises(ValueError, match=r"h\.csv: line 3 '30;thirty;N2': expected 'init_sec;duration_sec;stage'"):
        read_generic_hypnogram(hyp)


def test_dreams_hypnogram_with_bom(tmp_path):
    sig = _dreams(tmp_path, 3, 50 * 1800)
    hyp = tmp_path / "Hypnogram_excerpt3.txt"
    hyp.write_bytes(b"\xef\xbb\xbf" + hyp.read_bytes())
    assert read_recording("dreams", sig).stage_counts()["N2"] == 60


# -- class 11: the format told from the content, the same reader for render, stage and the app ------------
DREAMS_5S = "".join(f"{c}\n" for c in [5] * 6 + [3] * 6 + [2] * 6 + [4] * 6)  # W, N1, N2, REM as 5-s R&K codes


@pytest.mark.parametrize("name,text,fmt", [
    ("Hypnogram_x.txt", "[Hypnogram]\n" + DREAMS_5S, "dreams"),
    ("x_1.txt", "0\n1\n2\n5\n", "isruc"),
    ("x.csv", "init_sec,duration_sec,stage\n0,30,W\n30,30,N1\n60,30,N2\n90,30,REM\n", "table"),
    ("x.tsv", "\ufeff0\t30\tW\n30\t30\tN1\n60\t30\tN2\n90\t30\tREM\n", "table"),
    ("x.csv", "0;30;W\n30;30;N1\n60;30;N2\n90;30;REM\n", "table"),
    ("x.txt", "W\nN1\nN2\nREM\n", "labels"),
    ("x.txt", "-1\n9\n0\n1\n2\n5\n", "labels"),  # unscored codes: the generic table, not ISRUC's
    ("segment_stages.csv", "Time,Stage\n0,5\n30,3\n60,2\n90,4\n120,4\n", "prerau"),
    ("x.dat", _nsrr([("Wake|0", 0, 30), ("Stage 1 sleep|1", 30, 30), ("Stage 2 sleep|2", 60, 30),
                     ("REM sleep|5", 90, 30)]), "nsrr"),
])
def test_format_detected_from_content_and_read(tmp_path, name, text, fmt):
    from psgvlm.io.hypnogram_formats import HYPNOGRAM_FORMATS, detect_hypnogram

    _edf(tmp_path / "night.edf", 120)
    hyp = tmp_path / name
    hyp.write_text(text)
    found, reader = detect_hypnogram(hyp)
    assert (found, reader) == (fmt, HYPNOGRAM_FORMATS[fmt][0])
    rec = read_recording("generic", tmp_path / "night.edf", hyp)
    assert rec.pairing["hypnogram_format"] == fmt
    if fmt == "labels" and "-1" in text:
        assert rec.stages.tolist() == [UNSCORED, UNSCORED, W, N1]  # 6 labels, 4 epochs of signal
    else:
        assert rec.stages.tolist() == [W, N1, N2, REM]


def test_edf_hypnogram_detected_whatever_its_name(tmp_path):
    from psgvlm.io.edf import write_annotations_edf
    from psgvlm.io.hypnogram_formats import detect_hypnogram

    _edf(tmp_path / "night.edf", 120)
    hyp = write_annotations_edf(tmp_path / "labels.txt", [0, 30, 60, 90], [30] * 4,
                                ["Sleep stage W", "Sleep stage 1", "Sleep stage 2", "Sleep stage R"],
                                startdatetime=dt.datetime.combine(START, dt.time(23, 0, 0)))
    assert detect_hypnogram(hyp)[0] == "edf"
    assert read_recording("generic", tmp_path / "night.edf", hyp).stages.tolist() == [W, N1, N2, REM]


def test_headerless_dreams_refused_unless_named(tmp_path):
    """5-s R&K codes without the [Hypnogram] line are never read as 30-s ISRUC codes."""
    _edf(tmp_path / "night.edf", 120)
    hyp = tmp_path / "h.txt"
    hyp.write_text(DREAMS_5S)
    with pytest.raises(ValueError, match=r"h\.txt: one integer per line, changing only every 6 lines: these look "
                                         r"like 5-s labels of 30-s scoring .* --hypnogram-format dreams"):
        read_recording("generic", tmp_path / "night.edf", hyp)
    rec = read_recording("generic", tmp_path / "night.edf", hyp, hypnogram_format="dreams")
    assert rec.stages.tolist() == [W, N1, N2, REM] and rec.pairing["label_step_s"] == 5.0
    rec = read_recording("generic", tmp_path / "night.edf", hyp, hypnogram_format="isruc")  # the user's word
    assert len(rec.stages) == 4 and rec.pairing["dropped_label_epochs"] == 20
    with pytest.raises(ValueError, match=r"hypnogram format 'xml' unknown; choose from \['dreams'"):
        read_recording("generic", tmp_path / "night.edf", hyp, hypnogram_format="xml")


def test_upload_check_reads_the_hypnogram(tmp_path):
    from psgvlm.night.uploads import UploadError, validate_hypnogram_upload

    ok = tmp_path / "Hypnogram_excerpt9.txt"
    ok.write_text("[Hypnogram]\n" + DREAMS_5S)
    assert validate_hypnogram_upload(ok) == "dreams"
    headless = tmp_path / "up.txt"
    headless.write_text(DREAMS_5S)
    with pytest.raises(UploadError, match=r"^mine\.txt: one integer per line") as err:
        validate_hypnogram_upload(headless, name="mine.txt")
    assert str(tmp_path) not in str(err.value)
    overlap = tmp_path / "o.csv"
    overlap.write_text("0,60,W\n30,30,N2\n")
    with pytest.raises(UploadError, match=r"o\.csv: overlapping labels with different stages"):
        validate_hypnogram_upload(overlap)


def test_real_dreams_hypnogram_read_as_5s_rk(real_data_dir, tmp_path):
    """DREAMS excerpt 3: its hypnogram detected as 5-s R&K labels; header removed, refused; named, read."""
    from psgvlm.io.hypnogram_formats import detect_hypnogram
    from psgvlm.night.stage import read_input

    d = real_data_dir / "dreams_spindles"
    expected = {"W": 6, "N1": 12, "N2": 39, "N3": 3, "REM": 0, "UNS": 0}  # the data README's table
    assert detect_hypnogram(d / "Hypnogram_excerpt3.txt")[0] == "dreams"
    rec = read_input(d / "excerpt3.edf", d / "Hypnogram_excerpt3.txt")
    assert rec.n_epochs == 60 and rec.stage_counts() == expected
    headless = tmp_path / "Hypnogram_excerpt3.txt"
    headless.write_text("\n".join((d / "Hypnogram_excerpt3.txt").read_text().splitlines()[1:]) + "\n")
    with pytest.raises(ValueError, match=r"changing only every 4 lines: these look like 5-s labels of 20-s scoring"):
        read_input(d / "excerpt3.edf", headless)
    assert read_input(d / "excerpt3.edf", headless, "dreams").stage_counts() == expected
