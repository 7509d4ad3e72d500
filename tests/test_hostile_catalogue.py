"""The hostile-input catalogue (issue 11): every case generated here in code, each with its exact outcome.

A case is either refused (exit 2, one line naming the file and the bad field or value, no traceback,
nothing loadable left in ``--out``) or processed correctly (what was rendered or staged is asserted).
Families: EDF/BDF headers written byte by byte with each field wrong in turn, truncations and padding,
rates, hypnogram formats and variants, file names, sizes, flat and NaN signals, killed runs and their
leftovers, two writers on one ``--out``, and ``--out`` itself. ``psgvlm render`` and ``psgvlm stage`` are
called in-process (``main(argv)``) to stay fast; stage's model is loaded once for the module.

Run: python -m pytest -q tests/test_hostile_catalogue.py
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from psgvlm.image.dataset import load_dataset  # noqa: E402
from psgvlm.io.edf import write_annotations_edf  # noqa: E402
from psgvlm.locks import lock_file, out_lock  # noqa: E402
from render.build import main as render_main  # noqa: E402

SECRET = "Roe_Jane MRN-0042"  # in every generated header's patient field: must reach no output
START = dt.datetime(2020, 1, 1, 22, 0, 0)
PID_MAX = int(Path("/proc/sys/kernel/pid_max").read_text()) if Path("/proc/sys/kernel/pid_max").is_file() else 4194304
DEAD_PID = PID_MAX + 1  # no process can have it


# ------------------------------------------------------------------------------------------------
# An EDF/BDF file, byte by byte
# ------------------------------------------------------------------------------------------------
def _field(value, width: int) -> bytes:
    raw = value if isinstance(value, bytes) else str(value).encode("latin-1")
    return raw[:width].ljust(width, b" ")


def edf_bytes(*, seconds: float = 60, signals=None, bdf: bool = False, data=None, **fields) -> bytes:
    """An EDF (or BDF) file: fixed header, signal headers and data records, each field overridable.

    ``signals``: dicts with ``label`` and ``spr`` (samples per record) and optionally ``unit``, ``pmin``,
    ``pmax``, ``dmin``, ``dmax``, ``transducer``, ``sfreq_x`` (the data's amplitude); ``fields``: fixed
    header fields by name (``version``, ``patient``, ``recording``, ``startdate``, ``starttime``,
    ``header_bytes``, ``reserved``, ``n_records``, ``record_s``, ``ns``). ``data``: a function
    ``(signal index, n samples) -> digital ints`` (default: seeded noise of about 20 uV).
    """
    signals = signals or [{"label": "C3-A2", "spr": 100}, {"label": "EOG L", "spr": 100}]
    ns = len(signals)
    try:
        record_s = float(fields.get("record_s", 1))
    except ValueError:
        record_s = 1.0
    n_rec = int(round(seconds / record_s)) if 0 < record_s < float("inf") else int(seconds)
    head = {"version": b"\xffBIOSEMI" if bdf else "0", "patient": f"X F 01-JAN-1960 {SECRET}",
            "recording": "Startdate 01-JAN-2020 X X X", "startdate": "01.01.20", "starttime": "22.00.00",
            "header_bytes": 256 * (ns + 1), "reserved": "24BIT" if bdf else "", "n_records": n_rec,
            "record_s": fields.get("record_s", 1), "ns": ns, **fields}
    fixed = b"".join(_field(head[k], w) for k, w in (
        ("version", 8), ("patient", 80), ("recording", 80), ("startdate", 8), ("starttime", 8),
        ("header_bytes", 8), ("reserved", 44), ("n_records", 8), ("record_s", 8), ("ns", 4)))
    lo, hi = (-8388608, 8388607) if bdf else (-32768, 32767)
    cols = (("label", 16, None), ("transducer", 80, "AgAgCl electrode"), ("unit", 8, "uV"),
            ("pmin", 8, "-3276.8"), ("pmax", 8, "3276.7"), ("dmin", 8, lo), ("dmax", 8, hi),
            ("prefilter", 80, "HP:0.3Hz"), ("spr", 8, None), ("reserved", 32, ""))
    per = b"".join(_field(s.get(name, default), w) for name, w, default in cols for s in signals)
    rng = np.random.default_rng(0)
    spr = [int(s["spr"]) if str(s["spr"]).lstrip("-").isdigit() and int(s["spr"]) > 0 else 1 for s in signals]
    make = data or (lambda i, n: np.round(rng.standard_normal(n) * 200).astype(np.int64))  # 0.1 uV steps
    records = []
    for _ in range(n_rec):
        for i, k in enumerate(spr):
            x = np.asarray(make(i, k), dtype=np.int64)
            if bdf:
                records.append(b"".join(int(v).to_bytes(3, "little", signed=True) for v in x))
            else:
                records.append(x.astype("<i2").tobytes())
    return fixed + per + b"".join(records)


def write(path: Path, content: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(content)
    else:
        path.write_bytes(content)
    return path


# ------------------------------------------------------------------------------------------------
# The two commands, in-process
# ------------------------------------------------------------------------------------------------
def render(capsys, *args) -> tuple[int, str, str]:
    code = render_main(["--format", "generic", "--quiet", "--size", "64", "--split", "none", *map(str, args)])
    got = capsys.readouterr()
    return code, got.out, got.err


@pytest.fixture(scope="module")
def stage(request):
    """``psgvlm stage`` in-process, the embedded model loaded once (every call of the module reuses it)."""
    from psgvlm.vlm import predict

    cache = {}
    real = predict.load_predictor

    def cached(run_dir, *a, **kw):
        key = str(run_dir)
        if key not in cache:
            cache[key] = real(run_dir, *a, **kw)
        return cache[key]

    mp = pytest.MonkeyPatch()
    mp.setattr(predict, "load_predictor", cached)

    def run(capsys, *args) -> tuple[int, str, str]:
        from psgvlm.night.cli_stage import main

        code = main([str(a) for a in args])
        got = capsys.readouterr()
        return code, got.out, got.err

    yield run
    mp.undo()


def refused(code: int, err: str, prog: str, name: str, pattern: str) -> str:
    """Exit 2, one line ``<prog>...`` naming ``name`` and matching ``pattern``, no traceback."""
    import re

    lines = [ln for ln in err.strip().splitlines() if ln.strip() and "%|" not in ln]  # progress bars aside
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith(prog) and "Traceback" not in err, err
    assert name in lines[0], (name, lines[0])
    assert re.search(pattern, lines[0]), (pattern, lines[0])
    return lines[0]


def nothing_left(out: Path) -> bool:
    """No dataset, no partial, temporary or lock folder of ``out`` (render)."""
    return not out.exists() and not list(out.parent.glob(f".{out.name}*"))


def no_outputs(out: Path) -> bool:
    """No output file of stage in ``out`` (absent, or only files that were there before)."""
    return not out.exists() or not any(p.name in ("summary.json", "hypnogram.tsv") for p in out.iterdir())


def rendered(out: Path) -> tuple[list[str], dict]:
    """The rendered stages (in order) and ``meta.json`` of a dataset written with ``--split none``."""
    dd, meta = load_dataset(out)
    return list(dd["all"]["stage"]), meta


# ------------------------------------------------------------------------------------------------
# 1. EDF/BDF headers, each field wrong in turn: refused by render and by stage, naming file and field
# ------------------------------------------------------------------------------------------------
REFUSED_HEADERS = {
    "version": ({"version": "1"}, r"not an EDF/BDF file: the first 8 bytes b'1 +'"),
    "start-date-impossible": ({"startdate": "32.13.99"}, r"start date is '32\.13\.99', not a valid dd\.mm\.yy"),
    "start-date-text": ({"startdate": "ab.cd.ef"}, r"start date is 'ab\.cd\.ef'"),
    "start-time-impossible": ({"starttime": "25.61.61"}, r"start time is '25\.61\.61', not a valid hh\.mm\.ss"),
    "start-time-colons": ({"starttime": "22:00:00"}, r"start time is '22:00:00'"),
    "header-bytes-text": ({"header_bytes": "abc"}, r"the number of header bytes is 'abc', not an integer"),
    "header-bytes-wrong": ({"header_bytes": 512}, r"2 signals need 768 header bytes, the header says 512"),
    "edf+d": ({"reserved": "EDF+D"}, r"discontinuous EDF\+D|EDF\+D \(discontinuous\)"),
    "records-0": ({"n_records": 0}, r"the number of data records is 0; it must be >= 1"),
    "records-negative": ({"n_records": -5}, r"the number of data records is -5"),
    "records-text": ({"n_records": "sixty"}, r"the number of data records is 'sixty', not an integer"),
    "records-too-many": ({"n_records": 70}, r"truncated EDF file: 24768 bytes, the header promises 28768 "
                                            r"\(70 data records of 1 s; only 60 complete\)"),
    "records-too-few": ({"n_records": 30}, r"24768 bytes, 12000 more than the header describes \(12768: 30 data records\)"),
    "duration-0": ({"record_s": 0}, r"the data record duration is 0 s but signal 0 \('C3-A2'\) holds samples"),
    "duration-negative": ({"record_s": -1}, r"the data record duration is -1 s; it must be > 0"),
    "duration-text": ({"record_s": "one"}, r"the data record duration is 'one', not a number"),
    "duration-nan": ({"record_s": "nan"}, r"the data record duration is 'nan', not a finite number"),
    "duration-inf": ({"record_s": "inf"}, r"the data record duration is 'inf', not a finite number"),
    "duration-microsecond": ({"record_s": "0.000001", "seconds": 6e-5}, r"100 samples per 1e-06-s record is 1e\+08 Hz; at most "
                                                       r"100000 Hz"),
    "signals-0": ({"ns": 0}, r"the number of signals is 0; a file holds at least 1"),
    "signals-negative": ({"ns": -2}, r"the number of signals is -2"),
    "signals-text": ({"ns": "two"}, r"the number of signals is 'two', not an integer"),
    "signals-huge": ({"ns": 9999}, r"9999 signals( need 2560000 header bytes, the header says 768|; allowed: 1\.\.512)"),
}
REFUSED_SIGNALS = {
    "label-empty": ({"label": ""}, r"signal 0 has an empty label"),
    "label-duplicate": ({"label": "EOG L"}, r"duplicate channel names \['EOG L'\]"),
    "physical-equal": ({"pmin": "100", "pmax": "100"}, r"signal 0 \('C3-A2'\): physical minimum and maximum "
                                                       r"are both 100"),
    "physical-min-text": ({"pmin": "low"}, r"signal 0 \('C3-A2'\): physical minimum is 'low', not a number"),
    "physical-max-inf": ({"pmax": "inf"}, r"physical maximum is 'inf', not a finite number"),
    "digital-equal": ({"dmin": "0", "dmax": "0"}, r"digital minimum 0 and maximum 0; the minimum must be below"),
    "digital-reversed": ({"dmin": "100", "dmax": "-100"}, r"digital minimum 100 and maximum -100"),
    "digital-text": ({"dmin": "min"}, r"digital minimum is 'min', not an integer"),
    "samples-0": ({"spr": "0"}, r"signal 0 \('C3-A2'\): samples per record is 0; it must be >= 1"),
    "samples-negative": ({"spr": "-100"}, r"signal 0 \('C3-A2'\): samples per record is -100; it must be >= 1"),
    "samples-text": ({"spr": "many"}, r"samples per record is 'many', not an integer"),
    "rate-200kHz": ({"spr": "200000"}, r"200000 samples per 1-s record is 200000 Hz; at most 100000 Hz"),
}


def _signals(change: dict) -> list[dict]:
    return [{"label": "C3-A2", "spr": 100, **change}, {"label": "EOG L", "spr": 100}]


CASES_REFUSED = [(f"header-{k}", lambda v=v: edf_bytes(**v[0]), v[1]) for k, v in REFUSED_HEADERS.items()]
CASES_REFUSED += [(f"signal-{k}", lambda v=v: edf_bytes(signals=_signals(v[0])), v[1])
                  for k, v in REFUSED_SIGNALS.items()]
CASES_REFUSED += [
    ("bdf-digital-reversed", lambda: edf_bytes(bdf=True, signals=_signals({"dmin": "8388607", "dmax": "0"})),
     r"digital minimum 8388607 and maximum 0"),
    ("empty-file", lambda: b"", r"not an EDF/BDF file: only 0 bytes"),
    ("cut-in-fixed-header", lambda: edf_bytes()[:100], r"only 100 bytes, shorter than the 256-byte header"),
    ("cut-in-signal-headers", lambda: edf_bytes()[:400], r"truncated EDF file: the signal headers need 512 "
                                                         r"bytes, only 144 are present"),
    ("cut-in-data", lambda: edf_bytes()[:768 + 400 * 30 + 7], r"truncated EDF file: 12775 bytes, the header "
                                                              r"promises 24768 \(60 data records of 1 s; only 30"),
    ("bdf-cut-in-data", lambda: edf_bytes(bdf=True)[:-1000], r"truncated BDF file"),
    ("longer-than-header", lambda: edf_bytes() + b"\x00" * 5000, r"29768 bytes, 5000 more than the header describes "
                                                                 r"\(24768: 60 data records\)"),
    ("not-edf-at-all", lambda: b"\x89PNG\r\n\x1a\n" + b"\x00" * 4000, r"not an EDF/BDF file: the first 8 bytes"),
]


@pytest.mark.parametrize("name,make,pattern", CASES_REFUSED, ids=[c[0] for c in CASES_REFUSED])
def test_bad_recording_refused_by_name(tmp_path, capsys, stage, name, make, pattern):
    edf = write(tmp_path / f"{name}.edf", make())
    out = tmp_path / "ds"
    code, _, err = render(capsys, "--input", edf, "--out", out)
    refused(code, err, "psgvlm render: error:", edf.name, pattern)
    assert nothing_left(out)
    code, _, err = stage(capsys, "--edf", edf, "--out", tmp_path / "staged")
    refused(code, err, "psgvlm stage:", edf.name, pattern)
    assert no_outputs(tmp_path / "staged")


# ------------------------------------------------------------------------------------------------
# 2. Header oddities that are legal or harmless: processed, with what was rendered asserted
# ------------------------------------------------------------------------------------------------
def _labels(n: int) -> str:
    """One label per line for ``n`` epochs: W, N1, N2, N3, REM, W, ..."""
    return "".join(("W", "N1", "N2", "N3", "REM")[i % 5] + "\n" for i in range(n))


EXPECT_2 = ["W", "N1"]
CASES_PROCESSED = {
    # name: (edf kwargs, expected rendered stages, check(meta))
    "patient-field-garbage": ({"patient": b"\xff\xfe\x00 Roe_Jane \x07"}, EXPECT_2, None),
    "recording-field-garbage": ({"recording": "!!! " * 20}, EXPECT_2, None),
    "edf+c-without-annotations": ({"reserved": "EDF+C"}, EXPECT_2, None),
    "reserved-garbage": ({"reserved": "XYZ 123"}, EXPECT_2, None),
    "records-unknown-minus-1": ({"n_records": -1}, EXPECT_2, None),
    "half-second-records": ({"record_s": "0.5", "signals": [{"label": "C3-A2", "spr": 50},
                                                             {"label": "EOG L", "spr": 50}]}, EXPECT_2,
                            lambda m: m["sfreq"] == 100.0),
    "thirty-second-records": ({"record_s": 30, "signals": [{"label": "C3-A2", "spr": 3000},
                                                            {"label": "EOG L", "spr": 3000}]}, EXPECT_2,
                              lambda m: m["sfreq"] == 100.0),
    "rate-256": ({"signals": [{"label": "C3-A2", "spr": 256}, {"label": "EOG L", "spr": 256}]}, EXPECT_2,
                 lambda m: m["sfreq"] == 256.0),
    "mixed-rates": ({"signals": [{"label": "C3-A2", "spr": 200}, {"label": "EOG L", "spr": 50}]}, EXPECT_2,
                    lambda m: m["sfreq"] == 200.0 and m["recordings"][0]["channels"]["LOC"]["sfreq"] == 50.0),
    "physical-inverted": ({"signals": [{"label": "C3-A2", "spr": 100, "pmin": "3276.7", "pmax": "-3276.8"},
                                       {"label": "EOG L", "spr": 100}]}, EXPECT_2, None),
    "unit-volts": ({"signals": [{"label": "C3-A2", "spr": 100, "unit": "V"}, {"label": "EOG L", "spr": 100}]},
                   EXPECT_2, lambda m: "implausible" in str(m["recordings"][0]["meta"].get("unit_warnings"))),
    "unit-unknown": ({"signals": [{"label": "C3-A2", "spr": 100, "unit": "furlong"},
                                  {"label": "EOG L", "spr": 100}]}, EXPECT_2,
                     lambda m: m["recordings"][0]["meta"]["unit_assumed_uv"] == ["C3-A2 ('furlong')"]),
    "transducer-garbage": ({"signals": [{"label": "C3-A2", "spr": 100, "transducer": b"\xe9\xe8" * 20},
                                        {"label": "EOG L", "spr": 100}]}, EXPECT_2, None),
    "label-latin-1": ({"signals": [{"label": "C3-A2", "spr": 100}, {"label": b"EOG L \xb5", "spr": 100},
                                   {"label": b"Imp\xe9dance", "spr": 10}]},  # not a channel to draw
                      EXPECT_2, lambda m: m["channels"] == ["C3", "EOG L \u00b5"]),  # latin-1, not U+FFFD
    "bdf": ({"bdf": True}, EXPECT_2, None),
    # a digital range wider than the samples (DREAMS' excerpt3.edf writes -72984..50277): it only calibrates
    "digital-beyond-16-bit": ({"signals": [{"label": "C3-A2", "spr": 100, "dmin": "-65536", "dmax": "65535"},
                                           {"label": "EOG L", "spr": 100}]}, EXPECT_2, None),
    "exactly-one-epoch": ({"seconds": 30}, ["W"], None),
    "partial-last-record": ({"_pad": 150}, EXPECT_2, None),  # 150 bytes of a 400-byte record: dropped
}


@pytest.mark.parametrize("name", sorted(CASES_PROCESSED))
def test_odd_but_readable_recording_rendered(tmp_path, capsys, name):
    kwargs, expected, check = CASES_PROCESSED[name]
    kwargs = dict(kwargs)
    pad = kwargs.pop("_pad", 0)
    edf = write(tmp_path / "rec.edf", edf_bytes(**kwargs) + b"\x00" * pad)
    hyp = write(tmp_path / "rec.csv", _labels(len(expected)))
    out = tmp_path / "ds"
    code, _, err = render(capsys, "--input", edf, "--hypnogram", hyp, "--out", out)
    assert code == 0, err
    stages, meta = rendered(out)
    assert stages == expected
    assert meta["recordings"][0]["n_images"] == len(expected)
    if check is not None:
        assert check(meta), meta
    assert b"Roe_Jane" not in (out / "meta.json").read_bytes()


def test_flat_recording_rendered_flat_and_refused_by_stage(tmp_path, capsys, stage):
    """All-zero channels: render draws flat bands (a dataset may hold them); stage has nothing to score."""
    edf = write(tmp_path / "flat.edf", edf_bytes(data=lambda i, n: np.zeros(n, np.int64)))
    write(tmp_path / "flat.csv", "W\nN1\n")
    code, _, err = render(capsys, "--input", edf, "--hypnogram", tmp_path / "flat.csv", "--out", tmp_path / "ds")
    assert code == 0, err
    assert rendered(tmp_path / "ds")[0] == ["W", "N1"]
    code, _, err = stage(capsys, "--edf", edf, "--out", tmp_path / "staged")
    refused(code, err, "psgvlm stage:", "flat.edf", r"flat")
    assert no_outputs(tmp_path / "staged")


def test_short_recording_refused(tmp_path, capsys):
    edf = write(tmp_path / "ten_seconds.edf", edf_bytes(seconds=10))
    code, _, err = render(capsys, "--input", edf, "--out", tmp_path / "ds")
    refused(code, err, "psgvlm render: error:", "ten_seconds", r"lasts 10\.0 s, less than one 30-s epoch")
    assert nothing_left(tmp_path / "ds")


@pytest.mark.parametrize("fs", ["0", "1e7"])
def test_target_rate_out_of_bounds_refused(tmp_path, capsys, fs):
    edf = write(tmp_path / "r.edf", edf_bytes())
    code, _, err = render(capsys, "--input", edf, "--out", tmp_path / "ds", "--fs", fs)
    refused(code, err, "psgvlm render: error:", "--fs", r"must be a finite rate in Hz with 0 < --fs <= 4096")
    assert nothing_left(tmp_path / "ds")


# ------------------------------------------------------------------------------------------------
# 3. Names
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("filename", ["nuit d'été 1.edf", "NIGHT.EDF", "a" * 120 + ".edf", "-dash.bdf"])
def test_odd_file_names_rendered(tmp_path, capsys, filename):
    edf = write(tmp_path / "in" / filename, edf_bytes(bdf=filename.endswith(".bdf")))
    write(tmp_path / "labels.txt", "REM\nN2\n")
    code, _, err = render(capsys, f"--input={edf}", "--hypnogram", tmp_path / "labels.txt", "--out", tmp_path / "ds")
    assert code == 0, err
    stages, meta = rendered(tmp_path / "ds")
    assert stages == ["REM", "N2"] and meta["recordings"][0]["recording"] == Path(filename).stem


# ------------------------------------------------------------------------------------------------
# 4. Hypnograms: formats told from content, variants, refusals
# ------------------------------------------------------------------------------------------------
def _nsrr(events) -> str:
    body = "".join(f"<ScoredEvent><EventType>Stages|Stages</EventType><EventConcept>{c}</EventConcept>"
                   f"<Start>{s}</Start><Duration>{d}</Duration></ScoredEvent>" for c, s, d in events)
    return f'<?xml version="1.0"?><PSGAnnotation><ScoredEvents>{body}</ScoredEvents></PSGAnnotation>'


FOUR = ["W", "N1", "N2", "REM"]  # the stages every readable variant below encodes for a 2-minute night
DREAMS_CODES = "".join(f"{c}\n" for c in [5] * 6 + [3] * 6 + [2] * 6 + [4] * 6)
HYPNOGRAMS_READ = {
    "dreams-5s-rk": ("h.txt", "[Hypnogram]\n" + DREAMS_CODES),
    "isruc-integers": ("h.txt", "0\n1\n2\n5\n"),
    "labels-lower-case": ("h.txt", "w\nn1\nN2\nrem\n"),
    "labels-rk-names": ("h.txt", "Sleep stage W\nSleep stage 1\nSleep stage 2\nSleep stage R\n"),
    "csv-header": ("h.csv", "init_sec,duration_sec,stage\n0,30,W\n30,30,N1\n60,30,N2\n90,30,REM\n"),
    "csv-no-header": ("h.csv", "0,30,W\n30,30,N1\n60,30,N2\n90,30,REM\n"),
    "csv-bom": ("h.csv", "\ufeffinit_sec,duration_sec,stage\n0,30,W\n30,30,N1\n60,30,N2\n90,30,REM\n"),
    "csv-semicolon-decimal-comma": ("h.csv", "onset;duration;stage\n0,0;30,0;W\n30;30;S1\n60;30;S2\n90;30;R\n"),
    "tsv-reordered-header": ("h.tsv", "stage\tonset\tduration\nW\t0\t30\nN1\t30\t30\nN2\t60\t30\nREM\t90\t30\n"),
    "crlf-line-ends": ("h.csv", "0,30,W\r\n30,30,N1\r\n60,30,N2\r\n90,30,REM\r\n"),
    "nsrr-xml": ("h.xml", _nsrr([("Wake|0", 0, 30), ("Stage 1 sleep|1", 30, 30), ("Stage 2 sleep|2", 60, 30),
                                 ("REM sleep|5", 90, 30)])),
    "prerau-changes": ("h.csv", "Time,Stage\n0,5\n30,3\n60,2\n90,4\n120,4\n"),
    "long-rows-merged": ("h.csv", "0,30,W\n30,30,N1\n60,15,N2\n75,15,N2\n90,30,REM\n"),
    "xml-named-txt": ("h.txt", _nsrr([("Wake|0", 0, 30), ("Stage 1 sleep|1", 30, 30), ("Stage 2 sleep|2", 60, 30),
                                      ("REM sleep|5", 90, 30)])),
}


@pytest.mark.parametrize("case", sorted(HYPNOGRAMS_READ))
def test_hypnogram_variant_read_by_content(tmp_path, capsys, case):
    filename, text = HYPNOGRAMS_READ[case]
    edf = write(tmp_path / "n.edf", edf_bytes(seconds=120))
    hyp = write(tmp_path / filename, text)
    code, _, err = render(capsys, "--input", edf, "--hypnogram", hyp, "--out", tmp_path / "ds")
    assert code == 0, err
    assert rendered(tmp_path / "ds")[0] == FOUR


def test_edf_annotation_hypnogram_read_by_content(tmp_path, capsys):
    edf = write(tmp_path / "n.edf", edf_bytes(seconds=120))
    hyp = write_annotations_edf(tmp_path / "labels.dat", [0, 30, 60, 90], [30, 30, 30, 30],
                                ["Sleep stage W", "Sleep stage 1", "Sleep stage 2", "Sleep stage R"],
                                startdatetime=START)
    code, _, err = render(capsys, "--input", edf, "--hypnogram", hyp, "--out", tmp_path / "ds")
    assert code == 0, err
    stages, meta = rendered(tmp_path / "ds")
    assert stages == FOUR and meta["recordings"][0]["pairing"]["hypnogram_format"] == "edf"


HYPNOGRAMS_REFUSED = {
    "dreams-without-header": ("h.txt", DREAMS_CODES, r"h\.txt: one integer per line, changing only every 6 lines"
                                                     r".*--hypnogram-format dreams"),
    "unknown-code": ("h.csv", "0,30,W\n30,30,N5\n", r"h\.csv: unknown stage code 'N5'"),
    "empty": ("h.csv", "\n\n", r"h\.csv: empty hypnogram"),
    "binary": ("h.csv", "W\n\x00\x01\n", r"h\.csv: holds binary data"),
    "not-utf8": ("h.txt", None, r"h\.txt: is not UTF-8 text"),
    "conflicting-overlap": ("h.csv", "0,60,W\n30,30,N2\n", r"h\.csv: overlapping labels with different stages"),
    "nan-onset": ("h.csv", "0,30,W\nnan,30,N2\n", r"h\.csv: line 2: onset nan s is not a finite number"),
    "huge-duration": ("h.csv", "0,1e300,W\n", r"h\.csv: line 1: duration 1e\+300 s is beyond"),
    "missing-column": ("h.csv", "init_sec,duration_sec\n0,30\n", r"h\.csv: header 'init_sec,duration_sec' needs "
                                                                  r"onset \(init_sec\), duration \(duration_sec\) and stage"),
    "stage-column-is-a-number": ("h.csv", "0,30\n30,30\n", r"h\.csv: unknown stage code 30 at epoch 0"),
    "xml-without-stages": ("h.xml", "<PSGAnnotation><ScoredEvents></ScoredEvents></PSGAnnotation>",
                           r"h\.xml.*(no|without).*(stage|label)"),
}


@pytest.mark.parametrize("case", sorted(HYPNOGRAMS_REFUSED))
def test_bad_hypnogram_refused_by_name(tmp_path, capsys, stage, case):
    filename, text, pattern = HYPNOGRAMS_REFUSED[case]
    edf = write(tmp_path / "n.edf", edf_bytes(seconds=120))
    hyp = write(tmp_path / filename, "W\nN2\n".encode("latin-1") + b"\xe9t\xe9\n" if text is None else text)
    code, _, err = render(capsys, "--input", edf, "--hypnogram", hyp, "--out", tmp_path / "ds")
    refused(code, err, "psgvlm render: error:", filename, pattern)
    assert nothing_left(tmp_path / "ds")
    code, _, err = stage(capsys, "--edf", edf, "--hypnogram", hyp, "--out", tmp_path / "staged")
    refused(code, err, "psgvlm stage:", filename, pattern)
    assert no_outputs(tmp_path / "staged")


def test_stage_reads_dreams_as_5s_rk_and_format_can_be_named(tmp_path, capsys, stage):
    """The DREAMS file is read as 5-s R&K labels; without its header it needs --hypnogram-format."""
    edf = write(tmp_path / "n.edf", edf_bytes(seconds=120))
    with_header = write(tmp_path / "Hypnogram_n.txt", "[Hypnogram]\n" + DREAMS_CODES)
    headless = write(tmp_path / "headless.txt", DREAMS_CODES)
    code, _, err = stage(capsys, "--edf", edf, "--hypnogram", with_header, "--out", tmp_path / "a")
    assert code == 0, err
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["expert_stage_counts"] == {"W": 1, "N1": 1, "N2": 1, "N3": 0, "REM": 1, "UNS": 0}
    assert summary["recording"]["pairing"]["label_step_s"] == 5.0
    code, _, err = stage(capsys, "--edf", edf, "--hypnogram", headless, "--hypnogram-format", "dreams",
                         "--out", tmp_path / "b")
    assert code == 0, err
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["expert_stage_counts"] == \
        summary["expert_stage_counts"]
    with pytest.raises(SystemExit) as exit_:
        stage(capsys, "--edf", edf, "--hypnogram", with_header, "--hypnogram-format", "dreamz", "--out", tmp_path / "c")
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "invalid choice: 'dreamz'" in err and "isruc" in err


def test_unmatched_labels_reported_on_the_console(tmp_path, capsys, stage):
    edf = write(tmp_path / "n.edf", edf_bytes(seconds=60))
    hyp = write(tmp_path / "h.csv", "0,30,W\n30,30,N1\n60,30,N2\n90,30,N2\n")
    code, out, err = stage(capsys, "--edf", edf, "--hypnogram", hyp, "--out", tmp_path / "o")
    assert code == 0 and "staged 2 epochs" in out
    assert "2 of 4" in err and "outside the staged recording" in err


# ------------------------------------------------------------------------------------------------
# 5. NaN samples: refused naming the real flag, rendered as 0 with it
# ------------------------------------------------------------------------------------------------
def test_nan_samples_refused_then_rendered_with_nonfinite_zero(tmp_path, capsys):
    x = np.random.default_rng(1).normal(0, 20, 20 * 1800)
    x[[10, 500]] = np.nan
    sig = write(tmp_path / "excerpt7.txt", "[C3-A1]\n" + "\n".join(f"{v:.3f}" for v in x) + "\n")
    write(tmp_path / "Hypnogram_excerpt7.txt", "[Hypnogram]\n" + "2\n" * 360)
    args = ["--format", "dreams", "--quiet", "--size", "64", "--split", "none", "--input", sig]
    code = render_main([*map(str, args), "--out", str(tmp_path / "ds")])
    err = capsys.readouterr().err
    refused(code, err, "psgvlm render: error:", "excerpt7.txt", r"2 NaN/inf samples .*--nonfinite zero")
    assert nothing_left(tmp_path / "ds")
    assert render_main([*map(str, args), "--out", str(tmp_path / "ds"), "--nonfinite", "zero"]) == 0
    stages, meta = rendered(tmp_path / "ds")
    assert stages == ["N2"] * 60 and meta["recordings"][0]["meta"]["nonfinite_zeroed"] == {"C3-A1": 2}


# ------------------------------------------------------------------------------------------------
# 6. Killed runs, leftovers, two writers, --out itself
# ------------------------------------------------------------------------------------------------
@pytest.fixture
def night(tmp_path):
    edf = write(tmp_path / "n.edf", edf_bytes(seconds=120))
    hyp = write(tmp_path / "n.csv", "W\nN1\nN2\nREM\n")
    return edf, hyp


def test_render_takes_over_a_stale_lock_and_cleans_dead_runs(tmp_path, capsys, night):
    edf, hyp = night
    out = tmp_path / "ds"
    write(lock_file(out, inside=False), json.dumps({"pid": DEAD_PID, "command": "psgvlm render"}))
    dead = [tmp_path / f".ds.tmp-{DEAD_PID}", tmp_path / f".ds.old-{DEAD_PID}",
            tmp_path / ".ds.partial" / "rec-x-0123456789-othersettings", tmp_path / ".ds.partial" / "rec-y.tmp"]
    for d in dead:
        (d / "all").mkdir(parents=True)
    alive = tmp_path / f".ds.tmp-{os.getppid()}"  # a live process's folder: not ours to remove
    alive.mkdir()
    code, _, err = render(capsys, "--input", edf, "--hypnogram", hyp, "--out", out)
    assert code == 0, err
    assert f"taking over the stale lock '{lock_file(out, inside=False)}' of PID {DEAD_PID} (is no longer running" in err
    assert rendered(out)[0] == FOUR
    assert not any(d.exists() for d in dead) and alive.is_dir()
    assert not lock_file(out, inside=False).exists()


def test_stage_takes_over_a_stale_lock_and_cleans_dead_runs(tmp_path, capsys, stage, night):
    edf, hyp = night
    out = tmp_path / "staged"
    write(lock_file(out, inside=True), json.dumps({"pid": DEAD_PID, "command": "psgvlm stage"}))
    (out / f".psgvlm-stage-tmp-{DEAD_PID}-abc").mkdir()
    code, printed, err = stage(capsys, "--edf", edf, "--hypnogram", hyp, "--out", out)
    assert code == 0, err
    assert f"of PID {DEAD_PID} (is no longer running" in err and "staged 4 epochs" in printed
    from psgvlm.night.outputs import OUTPUT_FILES

    assert {p.name for p in out.iterdir()} == {*OUTPUT_FILES, "metrics.json", "confusion.png",
                                               "predictors"}  # no lock, no dead run's temp folder


@pytest.mark.parametrize("command", ["render", "stage"])
def test_second_writer_refused_naming_lock_and_pid(tmp_path, capsys, stage, night, command):
    edf, hyp = night
    out = tmp_path / "o"
    inside = command == "stage"
    if inside:
        out.mkdir()
        (out / "summary.json").write_text("{}")  # the first writer's: must stay as it is
    with out_lock(out, command=f"psgvlm {command}", inside=inside) as lock:
        if command == "render":
            code, _, err = render(capsys, "--input", edf, "--hypnogram", hyp, "--out", out)
            prog = "psgvlm render: error:"
        else:
            code, _, err = stage(capsys, "--edf", edf, "--out", out)
            prog = "psgvlm stage:"
        line = refused(code, err, prog, str(out), rf"being written by another run \(PID {os.getpid()}")
        assert str(lock) in line
    if inside:
        assert (out / "summary.json").read_text() == "{}"
    else:
        assert nothing_left(out)


def test_writer_in_another_process_refused_then_lock_released(tmp_path, capsys, night):
    edf, hyp = night
    out = tmp_path / "ds"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from psgvlm.locks import out_lock\n"
        f"with out_lock({str(out)!r}, command='psgvlm render', inside=False):\n"
        "    print('held', flush=True); sys.stdin.readline()")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        code, _, err = render(capsys, "--input", edf, "--hypnogram", hyp, "--out", out)
        refused(code, err, "psgvlm render: error:", str(out), rf"\(PID {holder.pid}, psgvlm render, since ")
    finally:
        holder.communicate("\n", timeout=30)
    code, _, err = render(capsys, "--input", edf, "--hypnogram", hyp, "--out", out)
    assert code == 0 and "stale" not in err  # released cleanly: nothing to take over


def test_killed_render_resumes_to_the_same_dataset(tmp_path, capsys, monkeypatch):
    import render.build as build

    for i in range(3):
        write(tmp_path / "in" / f"s{i}.edf", edf_bytes(seconds=90))
        write(tmp_path / "in" / f"s{i}.csv", ("W\nN1\nN2\n", "N2\nN3\nREM\n", "REM\nW\nW\n")[i])
    code, _, err = render(capsys, "--input", tmp_path / "in", "--out", tmp_path / "clean")
    assert code == 0, err
    real, calls = build.render_job, []

    def killed(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # the process is stopped mid-build
        return real(*args, **kwargs)

    monkeypatch.setattr(build, "render_job", killed)
    with pytest.raises(KeyboardInterrupt):
        render(capsys, "--input", tmp_path / "in", "--out", tmp_path / "ds")
    monkeypatch.setattr(build, "render_job", real)
    assert not (tmp_path / "ds").exists() and len(list((tmp_path / ".ds.partial").glob("rec-*"))) == 2
    assert not lock_file(tmp_path / "ds", inside=False).exists()  # released on the way out
    code, _, err = render(capsys, "--input", tmp_path / "in", "--out", tmp_path / "ds")
    assert code == 0, err
    a, _ = load_dataset(tmp_path / "clean")
    b, _ = load_dataset(tmp_path / "ds")
    assert a["all"]["stage"] == b["all"]["stage"] == ["W", "N1", "N2", "N2", "N3", "REM", "REM", "W", "W"]
    assert [np.asarray(im).tobytes() for im in a["all"]["image"]] == [np.asarray(im).tobytes() for im in b["all"]["image"]]


def test_render_out_is_a_file_refused_before_work(tmp_path, capsys, night):
    edf, hyp = night
    out = write(tmp_path / "ds", "mine")
    code, _, err = render(capsys, "--input", edf, "--hypnogram", hyp, "--out", out)
    refused(code, err, "psgvlm render: error:", str(out), r"exists and is not a directory")
    assert out.read_text() == "mine" and not list(tmp_path.glob(".ds*"))
    code, _, err = render(capsys, "--input", edf, "--hypnogram", hyp, "--out", out / "sub")
    refused(code, err, "psgvlm render: error:", str(out), r"is not a directory")


def test_render_out_not_writable_refused_before_work(tmp_path, capsys, night, monkeypatch):
    import render.build as build

    edf, hyp = night
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        if os.access(parent, os.W_OK):  # root: permissions do not bind; a read-only mount still does
            parent = Path("/proc/sys")
            if not parent.is_dir() or os.access(parent, os.W_OK):
                pytest.skip("no folder this user cannot write to (root without a read-only /proc/sys)")
        monkeypatch.setattr(build, "discover_recordings", lambda *a, **k: pytest.fail("work started"))
        code, _, err = render(capsys, "--input", edf, "--hypnogram", hyp, "--out", parent / "psgvlm_ds")
        refused(code, err, "psgvlm render: error:", str(parent), r"is not writable")
    finally:
        (tmp_path / "ro").chmod(0o755)


def test_render_out_check_runs_before_any_work(tmp_path, capsys, night, monkeypatch):
    """Whatever makes --out unusable is found before a recording is read (here: a live writer)."""
    import render.build as build

    edf, hyp = night
    monkeypatch.setattr(build, "discover_recordings", lambda *a, **k: pytest.fail("work started"))
    with out_lock(tmp_path / "ds", command="psgvlm render", inside=False):
        t0 = time.perf_counter()
        code, _, err = render(capsys, "--input", edf, "--hypnogram", hyp, "--out", tmp_path / "ds")
    assert code == 2 and "being written by another run" in err and time.perf_counter() - t0 < 5
