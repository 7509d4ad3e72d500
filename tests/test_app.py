"""Drive the real Gradio demo (app.py) in-process with gradio_client: uploads, staging, safety.

Run: python -m pytest -q tests/test_app.py

The app is launched on 127.0.0.1 with ``prevent_thread_lock`` and called over HTTP like a browser
would (``gradio_client``), with a synthetic EDF carrying a patient name/birth date/hospital code in
its header, and a real Sleep-EDF recording from ../shared/data/real.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # app.py lives at the top level
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402
from test_stage import (  # noqa: E402
    BIRTHDATE,
    HOSPITAL_CODE,
    PATIENT_CODE,
    PATIENT_NAME,
    synthetic_night,
    write_edf,
    write_hypnogram_csv,
)

IDENTIFYING = [PATIENT_NAME.encode(), PATIENT_CODE.encode(), HOSPITAL_CODE.encode(),
               BIRTHDATE.strftime("%d-%b-%Y").upper().encode(), b"Doe"]


@functools.lru_cache(maxsize=1)
def _predictor():
    """The real embedded default run, loaded once for every launch in this module."""
    from psgvlm.vlm.predict import DEFAULT_RUN, load_predictor

    return Path(DEFAULT_RUN), load_predictor(DEFAULT_RUN)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("gradio_cache")
    old = os.environ.get("GRADIO_TEMP_DIR")
    os.environ["GRADIO_TEMP_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("GRADIO_TEMP_DIR", None)
    else:
        os.environ["GRADIO_TEMP_DIR"] = old


def _launch(tmp_path_factory, **kw):
    import app

    run_dir, predictor = _predictor()
    workdir = tmp_path_factory.mktemp("sessions")
    demo, store = app.build_app(run_dir, predictor=predictor, workdir=workdir, **kw)
    # Gradio's own max_file_size is left unset here so that the app's server-side check is what is tested.
    demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True, show_error=False)
    return demo, store, predictor


@pytest.fixture(scope="module")
def served(tmp_path_factory, cache_dir):
    demo, store, predictor = _launch(tmp_path_factory)
    yield demo, store, predictor
    demo.close()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    sig6, st6 = synthetic_night(6, seed=1)
    sig8, st8 = synthetic_night(8, seed=2)
    return {
        "night6": write_edf(d / "Patient_Doe_night6.EDF", sig6), "hyp6": write_hypnogram_csv(d / "h6.csv", st6),
        "night8": write_edf(d / "night8.edf", sig8), "stages6": st6,
    }


def _client(demo) -> Client:
    return Client(demo.local_url, verbose=False)


def _load_and_stage(client, edf, hyp=None, *, primary="auto"):
    out = client.predict(handle_file(str(edf)), None if hyp is None else handle_file(str(hyp)), api_name="/load")
    # Dropdown outputs arrive as Gradio updates {"choices": ..., "value": ...}.
    status, channels = out[0], [c["value"] if isinstance(c, dict) else c for c in out[1:]]
    result = client.predict(primary, *channels, api_name="/stage")
    return status, channels, result


def test_synthetic_upload_stage_and_outputs(served, files, tmp_path):
    demo, store, predictor = served
    client = _client(demo)
    status, channels, result = _load_and_stage(client, files["night6"], files["hyp6"])
    assert "Recording accepted" in status and "Expert hypnogram attached" in status
    assert all(isinstance(c, str) for c in channels) and any(c != "-" for c in channels)
    st_status, hypno_png, stats, agreement, downloads, slider = result
    assert "Staged 6 epochs" in st_status
    assert Path(hypno_png).is_file()
    rows = stats["data"]
    assert rows[0][0].startswith("Time in bed") and rows[0][1] == "3.0" and rows[0][2] == "3.0"
    assert "accuracy" in agreement and "kappa" in agreement
    names = sorted(Path(f).name for f in downloads)
    assert names == sorted(["hypnogram.tsv", "hypnogram.csv", "hypnogram_annotations.edf", "hypnodensity.npy",
                            "summary.json", "hypnogram.png", "hypnogram_yasa.json", "hypnogram_events.tsv",
                            "confusion.png"])
    by_name = {Path(f).name: Path(f) for f in downloads}
    assert np.load(by_name["hypnodensity.npy"]).shape == (6, 5)
    summary = json.loads(by_name["summary.json"].read_text())
    assert summary["agreement"]["n_epochs"] == 6 and "not for clinical use" in summary["notice"]
    assert "Recording started 2020-01-02 22:30:00" in st_status
    # Time in bed on the staged night (clock time or seconds): the statistics follow, nothing is rerun.
    lit_status, _, lit_stats, _, lit_files, _ = client.predict("22:30:30", "120", api_name="/lights")
    assert "Time in bed: 4 epochs from epoch 1" in lit_status and lit_stats["data"][0][1] == "2.0"
    lit = json.loads(next(Path(f) for f in lit_files if Path(f).name == "summary.json").read_text())
    assert lit["time_in_bed"]["lights_off"] == "2020-01-02T22:30:30" and lit["sleep_statistics"]["TIB"] == 2.0
    with pytest.raises(AppError, match="Lights off 'soon'"):
        client.predict("soon", "", api_name="/lights")
    primary = summary["primary"]
    assert primary != "vlm" and f"primary: **{primary}**" in st_status  # a reference stager ran: never the toy VLM
    assert all(f"| {name}" in agreement for name in summary["predictors"])
    # Patient-identifying header fields (and the uploaded file's name) appear in no output.
    for f in downloads:
        data = Path(f).read_bytes()
        for secret in [*IDENTIFYING, b"Patient_Doe"]:
            assert secret not in data, (Path(f).name, secret)
    # The per-epoch viewer: rendered image, probabilities, and the attribution overlay on request.
    img, probs, text = client.predict(slider if isinstance(slider, int | float) else 2, False, api_name="/epoch")
    from PIL import Image

    assert Image.open(img).size == (336, 336) and f"{primary} (primary) says" in text
    confidences = {c["label"]: c["confidence"] for c in probs["confidences"]}
    assert sorted(confidences) == sorted(["W", "N1", "N2", "N3", "REM"])
    assert abs(sum(confidences.values()) - 1) < 1e-3
    assert probs["label"] == max(confidences, key=confidences.get)
    assert f"(primary) says **{probs['label']}**" in text and "Others: vlm **" in text
    client.close()


def test_attribution_on_request(served, files):
    demo, _, _ = served
    client = _client(demo)
    _load_and_stage(client, files["night8"])
    img, probs, text = client.predict(1, True, api_name="/epoch")
    from PIL import Image

    overlay = np.asarray(Image.open(img).convert("RGB"))
    assert overlay.shape == (336, 336, 3) and "Attribution" in text and "forward passes" in text
    assert "decided on" in text  # read in signal terms: channel band and time window
    plain, _, _ = client.predict(1, False, api_name="/epoch")
    assert not np.array_equal(overlay, np.asarray(Image.open(plain).convert("RGB")))  # a heatmap was drawn
    client.close()


def test_real_sleepedf_with_expert_hypnogram_every_predictor(served, real_data_dir):
    demo, _, _ = served
    client = _client(demo)
    psg = real_data_dir / "sleepedf_crop" / "short_psg.edf"
    hyp = real_data_dir / "sleepedf_crop" / "SC4001EC-Hypnogram.edf"
    status, channels, result = _load_and_stage(client, psg, hyp, primary="yasa")
    assert "Recording accepted" in status and "Fpz-Cz" in channels
    st_status, _, stats, agreement, downloads, _ = result
    assert "Staged 10 epochs" in st_status and "primary: **yasa**" in st_status
    assert "yasa (primary) vs expert hypnogram" in agreement and "| yasa (primary) | reference | EEG Fpz-Cz" in agreement  # the file's label
    assert "| vlm | vlm |" in agreement and "Pairwise: vlm vs yasa kappa" in agreement
    tsv = next(Path(f) for f in downloads if Path(f).name == "hypnogram.tsv").read_text().splitlines()
    assert len(tsv) == 11
    client.close()


def test_every_predictor_plotted_primary_switch_and_review_navigation(served, files):
    """One hypnogram row per predictor; choosing another primary redoes the outputs; the review buttons step
    through exactly the review list of summary.json."""
    from PIL import Image

    demo, _, _ = served
    client = _client(demo)
    _, _, result = _load_and_stage(client, files["night6"], files["hyp6"])
    by_name = {Path(f).name: Path(f) for f in result[4]}
    summary = json.loads(by_name["summary.json"].read_text())
    ran = [n for n, e in summary["predictors"].items() if e["ran"]]
    assert len(ran) >= 3  # vlm, yasa and (with the extra) gssc and their vote
    # plot_night: 1.9 in per hypnogram row (every predictor, then the expert) + 2.2 in, at 100 dpi
    assert Image.open(result[1]).size[1] == round((1.9 * (len(ran) + 1) + 2.2) * 100)
    st_status, _, _, agreement, downloads, _ = client.predict("vlm", api_name="/primary")
    assert "primary: **vlm**" in st_status and "vlm (primary) vs expert hypnogram" in agreement
    summary = json.loads(next(Path(f) for f in downloads if Path(f).name == "summary.json").read_text())
    tsv = next(Path(f) for f in downloads if Path(f).name == "hypnogram.tsv").read_text().splitlines()
    assert summary["primary"] == "vlm" and tsv[1].endswith("\tvlm") and "synthetic" in summary["notice"]
    flagged = summary["review"]["epochs"]
    if not flagged:
        with pytest.raises(AppError, match="review list is empty"):
            client.predict(0, 1, False, api_name="/review")
    else:
        seen, k = [], 0
        for _ in range(len(flagged) + 1):
            k, img, _, text = client.predict(k, 1, False, api_name="/review")
            seen.append(int(k))
            assert "On the review list" in text and f"Epoch {int(k)} " in text and Path(img).is_file()
        after0 = [e for e in flagged if e > 0]
        assert seen == ([*after0, *flagged] + [after0[0] if after0 else flagged[0]])[: len(flagged) + 1]  # in order, wrapping
        back, _, _, _ = client.predict(seen[0], -1, False, api_name="/review")
        assert int(back) == ([e for e in flagged if e < seen[0]] or flagged)[-1]
    client.close()


def test_corrupt_truncated_and_wrong_type_give_messages(served, files, tmp_path):
    demo, _, _ = served
    client = _client(demo)
    data = files["night6"].read_bytes()
    cut = tmp_path / "cut.edf"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(AppError, match="truncated") as err:
        client.predict(handle_file(str(cut)), None, api_name="/load")
    assert "Traceback" not in str(err.value) and str(tmp_path) not in str(err.value)
    fake = tmp_path / "photo.edf"
    fake.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 1000)
    with pytest.raises(AppError, match="not an EDF/BDF file"):
        client.predict(handle_file(str(fake)), None, api_name="/load")
    bad_hyp = tmp_path / "bad.csv"
    bad_hyp.write_text("init_sec,duration_sec,stage\n0,30,XYZ\n")
    with pytest.raises(AppError, match="bad.csv: unknown stage code 'XYZ'"):  # refused at upload, by name
        client.predict(handle_file(str(files["night6"])), handle_file(str(bad_hyp)), api_name="/load")
    out = client.predict(handle_file(str(files["night6"])), None, api_name="/load")
    n_bands = len(out) - 1
    with pytest.raises(AppError, match="Upload a recording first"):
        _client(demo).predict("auto", *([None] * n_bands), api_name="/stage")
    client.close()


def test_recording_without_eeg_is_refused_with_a_message(served, tmp_path):
    demo, _, _ = served
    signals, _ = synthetic_night(2)
    edf = write_edf(tmp_path / "no_eeg.edf", {"ECG": signals["C3-A2"], "EMG Chin": signals["EMG Chin"]})
    client = _client(demo)
    out = client.predict(handle_file(str(edf)), None, api_name="/load")
    assert "No EEG channel detected" in out[0]
    with pytest.raises(AppError, match="no EEG channel"):
        client.predict("auto", *[None] * (len(out) - 1), api_name="/stage")
    client.close()


def test_upload_not_downloadable_after_it_is_accepted(served, files):
    import httpx

    demo, _, _ = served
    url = demo.local_url.rstrip("/")
    with open(files["night8"], "rb") as f:  # the browser's upload step, by hand, to learn the server path
        paths = httpx.post(f"{url}/gradio_api/upload", files={"files": ("night8.edf", f)}).json()
    server_path = paths[0]
    assert httpx.get(f"{url}/gradio_api/file={server_path}").status_code == 200  # before: served
    client = _client(demo)
    out = client.predict({"path": server_path, "meta": {"_type": "gradio.FileData"}, "orig_name": "night8.edf"},
                         None, api_name="/load")
    assert "Recording accepted" in out[0]
    assert httpx.get(f"{url}/gradio_api/file={server_path}").status_code != 200  # after: gone
    client.close()


def test_hypnogram_added_after_recording(served, files):
    demo, _, _ = served
    client = _client(demo)
    out = client.predict(None, handle_file(str(files["hyp6"])), api_name="/load")
    assert "now upload the recording" in out[0]
    out = client.predict(handle_file(str(files["night6"])), None, api_name="/load")
    assert "Recording accepted" in out[0] and "hypnogram attached" not in out[0]
    out = client.predict(None, handle_file(str(files["hyp6"])), api_name="/load")
    assert "Expert hypnogram attached" in out[0]
    result = client.predict("auto", *[None] * (len(out) - 1), api_name="/stage")
    assert "(primary) vs expert hypnogram" in result[3]
    client.close()


def test_two_users_at_once_get_their_own_results(served, files):
    demo, _, _ = served
    results = {}

    def user(key, edf):
        c = _client(demo)
        results[key] = _load_and_stage(c, edf)[2][0]
        c.close()

    threads = [threading.Thread(target=user, args=("a", files["night6"])),
               threading.Thread(target=user, args=("b", files["night8"]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert "Staged 6 epochs" in results["a"] and "Staged 8 epochs" in results["b"]


def test_session_files_deleted_after_session(tmp_path_factory, cache_dir):
    signals, _ = synthetic_night(5, seed=7)  # content no other test uploads: its served copies are its own
    edf = write_edf(tmp_path_factory.mktemp("ttl") / "unique_night.edf", signals)
    demo, store, _ = _launch(tmp_path_factory, session_ttl_s=2)
    try:
        before = set(cache_dir.rglob("*"))
        client = _client(demo)
        _load_and_stage(client, edf)
        sessions = [p for p in store.root.iterdir() if p.is_dir()]
        assert len(sessions) == 1 and (sessions[0] / "recording.edf").is_file()
        # Gradio's own copy of the upload is gone at once: only the session copy exists.
        assert not list(cache_dir.rglob("unique_night.edf"))
        # Served copies live in <cache>/<keyed hash>/<name>; Gradio's own empty scratch files are not ours.
        served_copies = [p for p in set(cache_dir.rglob("*")) - before
                         if p.is_file() and p.parent != cache_dir and p.stat().st_size > 0]
        assert {p.name for p in served_copies} >= {"hypnogram.tsv", "summary.json", "hypnogram.png"}
        deadline = time.time() + 20
        while time.time() < deadline and any(p.is_dir() for p in store.root.iterdir()):
            time.sleep(0.5)
        assert not any(p.is_dir() for p in store.root.iterdir()), "session folder outlived its time-to-live"
        left = [p for p in served_copies if p.exists()]
        assert not left, f"served copies outlived the session: {left}"
        client.close()
    finally:
        demo.close()


def test_upload_limits_enforced_on_server(tmp_path_factory, cache_dir, files):
    demo, _, _ = _launch(tmp_path_factory, max_bytes=20_000)
    try:
        with pytest.raises(AppError, match="limit"):
            _client(demo).predict(handle_file(str(files["night8"])), None, api_name="/load")
    finally:
        demo.close()
