"""Dataset builder: `psgvlm render` on synthetic ISRUC-format files and real Sleep-EDF/DREAMS files.

Run: python -m pytest -q tests/test_build.py
"""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from psgvlm.cli import main as cli
from psgvlm.image.dataset import load_dataset
from render.build import build_dataset

COLUMNS = {"image", "label", "stage", "subject", "recording", "epoch", "start_s", "dataset", "channels"}


@pytest.fixture(scope="module")
def isruc_dir(tmp_path_factory):
    from psgvlm.synth.layouts import synth_dataset

    out = tmp_path_factory.mktemp("isruc")
    synth_dataset("isruc", out, subjects=5, minutes=12, seed=3)
    return out


@pytest.fixture(scope="module")
def built(isruc_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("img") / "ds"
    assert cli(["render", "--format", "isruc", "--input", str(isruc_dir), "--out", str(out),
                "--num-proc", "2", "--quiet"]) == 0
    return out


def test_dataset_layout_and_meta(built):
    dd, meta = load_dataset(built)
    assert set(dd) == {"train", "validation", "test"}
    subs = {k: set(v["subject"]) for k, v in dd.items()}
    assert not (subs["train"] & subs["test"]) and not (subs["validation"] & subs["test"])
    assert not (subs["train"] & subs["validation"])
    assert subs["test"] == set(meta["split"]["test"]) and len(subs["test"]) == 1
    for ds in dd.values():
        assert COLUMNS <= set(ds.column_names)
        assert ds.features["label"].names == ["W", "N1", "N2", "N3", "REM"]
    img = dd["train"][0]["image"]
    assert img.size == (336, 336) and img.mode == "RGB"
    assert meta["channels"][:6] == ["F3", "C3", "O1", "F4", "C4", "O2"]
    assert meta["sfreq"] == 200.0
    for key in ("settings", "modalities", "split", "counts", "dropped", "recordings", "provenance"):
        assert key in meta
    assert meta["provenance"]["versions"]["datasets"]
    total = sum(v["n_epochs"] for v in meta["counts"].values())
    assert total == sum(len(ds) for ds in dd.values())
    # every stage code in the data agrees with the stage name column
    row = dd["train"][5]
    assert dd["train"].features["label"].int2str(row["label"]) == row["stage"]
    # nothing left beside the output
    assert not list(built.parent.glob(".*partial")) and not list(built.parent.glob(".*tmp*"))


def test_refuses_finished_dataset_unless_overwrite(built, isruc_dir, capsys):
    before = (built / "meta.json").read_text()
    assert cli(["render", "--format", "isruc", "--input", str(isruc_dir), "--out", str(built), "--quiet"]) != 0
    assert "--overwrite" in capsys.readouterr().err
    assert (built / "meta.json").read_text() == before


def test_same_input_same_image_bytes(isruc_dir, tmp_path):
    from psgvlm.image.renderer import RenderSettings
    from psgvlm.io.readers import find_recordings, read_recording
    from render.build import cut_recording, render_rows

    rec = read_recording("isruc", **find_recordings("isruc", isruc_dir)[0])
    chans = ["C3", "LOC", "EMG"]
    # render_rows scales its epochs in place: each call gets a fresh cut
    a, _ = render_rows(*cut_recording(rec, channels=chans, sfreq=200.0), channels=chans, settings=RenderSettings(),
                       progress=False)
    b, _ = render_rows(*cut_recording(rec, channels=chans, sfreq=200.0), channels=chans, settings=RenderSettings(),
                       num_proc=2, progress=False)  # forked workers draw the same bytes
    assert a["image"][3]["bytes"] == b["image"][3]["bytes"]
    assert a == b
    arr = np.asarray(Image.open(io.BytesIO(a["image"][3]["bytes"])))
    assert arr.shape == (336, 336, 3) and arr.std() > 0


def test_resume_after_crash(isruc_dir, tmp_path):
    calls = []

    def crash_on_third(rec):
        calls.append(rec.recording)
        if len(calls) == 3:
            raise RuntimeError("simulated crash")
        return rec

    def passthrough(rec):
        calls.append(rec.recording)
        return rec

    # the transform's description is part of the settings hash that a resume must match
    crash_on_third.description = passthrough.description = "identity"
    out = tmp_path / "ds"
    with pytest.raises(RuntimeError, match="simulated crash"):
        build_dataset(fmt="isruc", input=isruc_dir, out=out, transform=crash_on_third, progress=False)
    assert not out.exists()  # nothing half-written is loadable
    assert len(list(tmp_path.glob(".ds.partial/rec-*"))) == 2
    calls.clear()
    meta = build_dataset(fmt="isruc", input=isruc_dir, out=out, transform=passthrough, progress=False)
    assert len(calls) == 3  # the two finished recordings were reused
    assert len(meta["recordings"]) == 5
    dd, _ = load_dataset(out)
    assert sum(len(v) for v in dd.values()) == sum(r["n_images"] for r in meta["recordings"])


def test_missing_channel_names_available(isruc_dir, tmp_path, capsys):
    out = tmp_path / "ds"
    code = cli(["render", "--format", "isruc", "--input", str(isruc_dir), "--out", str(out),
                "--channels", "C3", "Pz", "--quiet"])
    err = capsys.readouterr().err
    assert code != 0 and "'Pz'" in err and "available" in err and "C3" in err
    assert not out.exists() and not list(tmp_path.glob(".ds*"))


def test_not_an_edf_leaves_nothing(tmp_path, capsys):
    bad = tmp_path / "fake.edf"
    bad.write_text("this is not an EDF file\n" * 50)
    hyp = tmp_path / "hyp.csv"
    hyp.write_text("W\nN1\n")
    out = tmp_path / "out"
    code = cli(["render", "--format", "generic", "--input", str(bad), "--hypnogram", str(hyp), "--out", str(out),
                "--quiet"])
    err = capsys.readouterr().err
    assert code != 0 and "fake.edf" in err
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_epoch_split_is_warned_and_few_subjects_fall_back(isruc_dir, tmp_path, capsys):
    one = tmp_path / "one"
    shutil.copytree(sorted(p for p in isruc_dir.iterdir() if p.is_dir())[0], one / "1")
    assert cli(["render", "--format", "isruc", "--input", str(one), "--out", str(tmp_path / "a"), "--quiet"]) == 0
    assert "one split 'all'" in capsys.readouterr().out
    dd, meta = load_dataset(tmp_path / "a")
    assert list(dd) == ["all"] and meta["split"]["kind"] == "none"
    assert cli(["render", "--format", "isruc", "--input", str(one), "--out", str(tmp_path / "b"), "--split",
                "epoch", "--quiet"]) == 0
    assert "subject leakage" in capsys.readouterr().err
    _, meta = load_dataset(tmp_path / "b")
    assert meta["split"]["leaks_subjects"] is True


def test_a_split_of_fewer_than_two_subjects_is_warned(isruc_dir, tmp_path, capsys):
    three = tmp_path / "three"
    for d in sorted(p for p in isruc_dir.iterdir() if p.is_dir())[:3]:
        shutil.copytree(d, three / d.name)
    assert cli(["render", "--format", "isruc", "--input", str(three), "--out", str(tmp_path / "a"), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "psgvlm render: WARNING 3 subjects were split 1 train / 1 validation / 1 test by subject (seed 0)" in err
    assert "--split none" in err


def test_real_sleepedf_pairs_by_time(real_data_dir, tmp_path):
    d = real_data_dir / "sleepedf_crop"
    meta = build_dataset(fmt="sleepedf", input=d / "short_psg.edf", hypnogram=d / "SC4001EC-Hypnogram.edf",
                         out=tmp_path / "sedf", progress=False)
    dd, _ = load_dataset(tmp_path / "sedf")
    assert list(dd) == ["all"] and len(dd["all"]) == 10 and set(dd["all"]["stage"]) == {"W"}
    assert meta["recordings"][0]["pairing"]  # the unmatched hypnogram tail is reported
    json.dumps(meta)


def test_not_a_dataset_dir_says_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="meta.json"):
        load_dataset(tmp_path)


def test_meta_kind_version_and_image_size_are_checked(built, tmp_path):
    from psgvlm.image.dataset import band_layout, image_size, read_dataset_meta

    meta = read_dataset_meta(built)
    assert image_size(meta) == 336
    bands = band_layout(meta)
    assert [b["channel"] for b in bands] == meta["channels"]
    assert all(0 <= b["top"] < b["bottom"] <= 336 for b in bands)
    for change, msg in [({"kind": "other"}, "kind 'other'"), ({"version": 99}, "version 99"),
                        ({"settings": {"size": 336}}, "settings.render.size")]:
        bad = tmp_path / f"bad{len(list(tmp_path.iterdir()))}"
        shutil.copytree(built, bad)
        (bad / "meta.json").write_text(json.dumps({**meta, **change}))
        with pytest.raises(ValueError, match=msg) as err:
            read_dataset_meta(bad)
        assert str(bad / "meta.json") in str(err.value)


def test_png_encoder_is_lossless_for_every_render_setting():
    """The hand-written PNG container decodes (PIL) to exactly the drawn pixels, for any size and colour."""
    import io

    from PIL import Image

    from psgvlm.image.renderer import RenderSettings, render_epoch
    from render.workers import encode_png

    rng = np.random.default_rng(0)
    x = np.clip(rng.standard_normal((3, 3000)).cumsum(axis=1) / 30, -1, 1).astype(np.float32)
    for settings in (RenderSettings(), RenderSettings(size=112), RenderSettings(line_colors=("red", "blue", "green")),
                     RenderSettings(background="black", line_color="white", labels=("C3", "LOC", "EMG"))):
        img = render_epoch(x, settings)
        back = Image.open(io.BytesIO(encode_png(img)))
        assert back.format == "PNG" and back.mode == "RGB"
        assert np.array_equal(np.asarray(back), img)
    with pytest.raises(ValueError, match="uint8"):
        encode_png(np.zeros((4, 4, 3), np.float32))


def test_physical_scaling_is_recorded_and_drawn(isruc_dir, built, tmp_path, capsys):
    out = tmp_path / "phys"
    assert cli(["render", "--format", "isruc", "--input", str(isruc_dir), "--out", str(out), "--scaling", "physical",
                "--quiet"]) == 0
    dd, meta = load_dataset(out)
    render = meta["settings"]["render"]
    assert render["scaling"] == "physical" and render["physical_range_uv"]["EEG"] == 100.0
    assert load_dataset(built)[1]["settings"]["render"]["scaling"] == "minmax"
    mm = load_dataset(built, "train")[0][0]["image"]
    assert dd["train"][0]["epoch"] == load_dataset(built, "train")[0][0]["epoch"]
    assert not np.array_equal(np.asarray(dd["train"][0]["image"]), np.asarray(mm))
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        cli(["render", "--format", "isruc", "--input", str(isruc_dir), "--out", str(tmp_path / "x"), "--scaling", "zscore"])
    assert exit_info.value.code == 2 and "invalid choice: 'zscore'" in capsys.readouterr().err
