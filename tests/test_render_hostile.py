"""`psgvlm render` on hostile input (issue 11, classes 1, 2 and 6), every file generated in code.

Class 1: recordings with no epoch to render (10-s signal, every label ``?``, a hypnogram dated a day
after the signal) are skipped with a warning and listed in meta.json, and an input where none yields
one is refused (exit 2, one line, nothing left); leftovers of killed runs never make a rerun crash.
Class 2: recordings the readers would name alike (``subjA/night.edf``, ``subjB/night.edf``; ``night 1``
vs ``night_1``) are all rendered, each under its own id. Class 6: ``--fs``/``--size``/``--num-proc``
out of bounds exit 2 naming the flag and what is allowed.

Run: python -m pytest -q tests/test_render_hostile.py
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest

from psgvlm.image.dataset import load_dataset
from psgvlm.io.edf import EdfChannel, write_annotations_edf, write_edf
from render.build import build_dataset, main

START = dt.datetime(2024, 3, 1, 22, 0, 0)


def night(path: Path, seconds: float, labels: list[str] | None, *, seed: int = 0) -> Path:
    """A 2-channel 100-Hz EDF at ``path`` and, given ``labels``, ``<stem>.csv`` with one label per 30 s."""
    rng = np.random.default_rng(seed)
    n = int(seconds * 100)
    write_edf(path, [EdfChannel("C3-A2", 100.0, rng.standard_normal(n) * 20),
                     EdfChannel("EOG L", 100.0, rng.standard_normal(n) * 20)], startdatetime=START)
    if labels is not None:
        rows = "".join(f"{30 * i},30,{s}\n" for i, s in enumerate(labels))
        path.with_suffix(".csv").write_text("init_sec,duration_sec,stage\n" + rows)
    return path


def render(*args) -> int:
    return main(["--format", "generic", "--quiet", *map(str, args)])


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


def nothing_left(out: Path) -> bool:
    return not out.exists() and not list(out.parent.glob(f".{out.name}*"))


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """A folder: 4 good recordings (two pairs the readers name alike) and 2 that yield no epoch."""
    d = tmp_path_factory.mktemp("mixed")
    good = {"subjA/night": ["W", "N1", "N2", "N2", "N3"], "subjB/night": ["REM", "REM", "N2", "W", "W"],
            "flat/night 1": ["N3", "N3", "N3", "W", "W"], "flat/night_1": ["N1", "N1", "W", "W", "W"]}
    for i, (rel, labels) in enumerate(good.items()):
        night(d / f"{rel}.edf", 150, labels, seed=i)
    night(d / "short" / "s.edf", 10, ["W"], seed=7)
    night(d / "unscored" / "u.edf", 150, ["?"] * 5, seed=8)
    return d, good


def test_no_epoch_recordings_are_skipped_and_alike_names_all_rendered(mixed, tmp_path, capsys):
    d, good = mixed
    out = tmp_path / "ds"
    assert render("--input", d, "--out", out, "--split", "none") == 0
    err = capsys.readouterr().err
    warned = [ln for ln in err.splitlines() if "WARNING skipped" in ln]
    assert len(warned) == 2
    assert any("short/s" in w and "10.0 s" in w for w in warned)
    assert any("unscored/u" in w and "unscored ('?')" in w for w in warned)
    dd, meta = load_dataset(out)
    assert {s["recording"]: s["reason"] for s in meta["skipped"]}.keys() == {"short/s", "unscored/u"}
    # two files named night.edf and a space/underscore pair: recordings and subjects are named by their
    # paths relative to --input (unique by construction): four recordings, own labels each
    ids = {rel: rel for rel in good}
    assert sorted(r["recording"] for r in meta["recordings"]) == sorted(ids.values())
    rows = dd["all"]
    assert len(rows) == 20 and len(set(rows["subject"])) == 4
    for rel, labels in good.items():
        mine = sorted((e, s) for e, s, r in zip(rows["epoch"], rows["stage"], rows["recording"]) if r == ids[rel])
        assert [s for _, s in mine] == labels, rel
    images = {r: bytes(b["bytes"]) for r, b in zip(rows["recording"], rows.with_format("arrow")["image"].to_pylist())}
    assert len(set(images.values())) == 4  # not one recording's images twice
    assert not list(tmp_path.glob(".ds*"))  # no partial or temporary folder left beside it


def test_shard_names_tell_alike_ids_apart():
    from render.inputs import shard_name

    assert shard_name("flat/night 1", "k") != shard_name("flat/night_1", "k")
    assert shard_name("a/night", "k") != shard_name("b/night", "k")


def test_input_where_no_recording_yields_an_epoch_exits_2_and_leaves_nothing(tmp_path, capsys):
    d = tmp_path / "in"
    night(d / "a" / "short.edf", 10, ["W"])
    night(d / "b" / "unscored.edf", 90, ["?", "?", "?"], seed=1)
    out = tmp_path / "ds"
    for _ in range(2):  # the rerun meets whatever the first run left, and says the same
        assert render("--input", d, "--out", out) == 2
        err = capsys.readouterr().err
        lines = [ln for ln in err.splitlines() if "WARNING" not in ln]
        assert len(lines) == 1 and "Traceback" not in err
        assert str(d) in lines[0] and "no recording yields a 30-s epoch" in lines[0] and "a/short" in lines[0]
        assert nothing_left(out)


def test_single_file_short_or_with_hypnogram_a_day_late_exits_2(tmp_path, capsys):
    short = night(tmp_path / "short.edf", 10, ["W"])
    assert render("--input", short, "--hypnogram", short.with_suffix(".csv"), "--out", tmp_path / "o1") == 2
    err = capsys.readouterr().err
    assert "short.edf" in err and "less than one 30-s epoch" in err and "Traceback" not in err
    assert nothing_left(tmp_path / "o1")
    psg = night(tmp_path / "psg.edf", 300, None)
    hyp = write_annotations_edf(tmp_path / "late-Hypnogram.edf", [0.0, 150.0], [150.0, 150.0],
                                ["Sleep stage W", "Sleep stage 2"], startdatetime=START + dt.timedelta(days=1))
    assert render("--input", psg, "--hypnogram", hyp, "--out", tmp_path / "o2") == 2
    err = capsys.readouterr().err
    assert "psg" in err and "pairs with no 30-s epoch" in err and "Traceback" not in err
    assert nothing_left(tmp_path / "o2")


@pytest.mark.parametrize("kill_at", [3, 6])
def test_leftovers_of_a_killed_run_never_crash_the_rerun(mixed, tmp_path, monkeypatch, kill_at):
    """Killed at the 3rd recording (then a shard torn and one half-written) or at the last (all resumed)."""
    import render.build as build

    d, good = mixed
    out = tmp_path / "ds"
    real, calls = build.render_job, []

    def killed(*args, **kwargs):
        calls.append(1)
        if len(calls) == kill_at:
            raise KeyboardInterrupt  # killed mid-build
        return real(*args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(build, "render_job", killed)
        with pytest.raises(KeyboardInterrupt):
            build_dataset(fmt="generic", input=d, out=out, split="none", progress=False)
    partial = tmp_path / ".ds.partial"
    shards = list(partial.glob("rec-*"))
    assert len(shards) == {3: 2, 6: 4}[kill_at] and not out.exists()
    if kill_at == 3:
        # the first job's shard is resumed as it is; the second one's done.json was torn by the kill
        first, second = sorted(shards, key=lambda sh: not json.loads((sh / "done.json").read_text())["summary"]
                               ["source"].endswith("night 1.edf"))
        (second / "done.json").write_text('{"summary": ')
        (partial / (first.name + ".tmp")).mkdir()  # a shard half-written
    dead = tmp_path / ".ds.tmp-999999999"  # the final folder of a dead run (no such pid)
    (dead / "all").mkdir(parents=True)
    assert render("--input", d, "--out", out, "--split", "none") == 0
    dd, meta = load_dataset(out)
    assert len(meta["recordings"]) == 4 and len(dd["all"]) == 20
    assert meta["sfreq"] == 100.0  # also when every rendered recording was resumed
    assert not dead.exists() and not partial.exists()


BAD = [("--fs", "0"), ("--fs", "-100"), ("--fs", "nan"), ("--fs", "inf"), ("--fs", "1e7"),
       ("--size", "0"), ("--size", "100000"), ("--num-proc", "0"), ("--num-proc", "-2"), ("--num-proc", "100000")]


@pytest.mark.parametrize("flag,value", BAD)
def test_out_of_bounds_options_exit_2_naming_the_flag(mixed, tmp_path, capsys, flag, value):
    out = tmp_path / "ds"
    assert render("--input", mixed[0], "--out", out, flag, value) == 2
    err = one_error_line(capsys)
    allowed = {"--fs": "4096", "--size": "[16, 4096]", "--num-proc": "[1, 256]"}[flag]
    assert f"{flag} " in err and allowed in err
    assert f"{flag} {float(value)!r}" in err or f"{flag} {value}" in err  # the value as it was read
    assert nothing_left(out)


def test_build_dataset_refuses_bad_sfreq_by_name(mixed, tmp_path):
    """The library call names its own argument (``sfreq``); 0 is refused, not replaced by the default."""
    for bad in (0, -1.0, float("nan"), float("inf"), 1e7):
        with pytest.raises(ValueError, match="sfreq .*0 < sfreq <= 4096"):
            build_dataset(fmt="generic", input=mixed[0], out=tmp_path / "ds", sfreq=bad, progress=False)
    assert nothing_left(tmp_path / "ds")
