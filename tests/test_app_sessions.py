"""The demo app's sessions under stress (issue 11, classes 9, 10 and 11 in the app), files made in code.

- class 9: two sessions staging the same recording are served the same bytes; closing one leaves the
  other's downloads working (and a closed session's own copies still go);
- class 10: ``python app.py`` started as a process, an upload taken in and another only sent: on SIGTERM
  or SIGINT the session folder and Gradio's copies of both uploads are gone, the process ended;
- class 11: a hypnogram is read at upload: a DREAMS file is recognised from its content, a header-less
  one refused with the reason in the page; any handler error reaches the page with its text.

Run: python -m pytest -q tests/test_app_sessions.py
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402
from test_app import _launch, cache_dir  # noqa: E402, F401  (the fixture is used by name)
from test_stage import PATIENT_NAME, synthetic_night, write_edf  # noqa: E402


@pytest.fixture(scope="module")
def served(tmp_path_factory, cache_dir):  # noqa: F811
    demo, store, _ = _launch(tmp_path_factory)
    yield demo, store
    demo.close()


def _stage(client, edf, hyp=None):
    out = client.predict(handle_file(str(edf)), None if hyp is None else handle_file(str(hyp)), api_name="/load")
    channels = [c["value"] if isinstance(c, dict) else c for c in out[1:]]
    return out[0], client.predict("auto", *channels, api_name="/stage")


# ------------------------------------------------------------------------------------------------
# Class 9: two sessions, one recording
# ------------------------------------------------------------------------------------------------
def test_closing_one_session_keeps_the_others_downloads(served, tmp_path):
    demo, store = served
    signals, _ = synthetic_night(4, seed=11)
    edf = write_edf(tmp_path / "same_night.edf", signals)
    a = Client(demo.local_url, verbose=False, download_files=False)
    b = Client(demo.local_url, verbose=False, download_files=False)
    _, res_a = _stage(a, edf)
    _, res_b = _stage(b, edf)
    urls_a = [f["url"] for f in res_a[4]]
    urls_b = [f["url"] for f in res_b[4]]
    assert len(urls_b) == 8 and all(httpx.get(u).status_code == 200 for u in urls_a + urls_b)
    shared = set(urls_a) & set(urls_b)
    assert len(shared) >= 4  # the same recording gives the same bytes: Gradio serves one copy to both
    store.delete(a.session_hash)  # what closing the page (unload) or the time-to-live does
    assert [httpx.get(u).status_code for u in urls_b] == [200] * len(urls_b)
    assert all(httpx.get(u).status_code != 200 for u in set(urls_a) - shared)  # A's own copies are gone
    store.delete(b.session_hash)
    assert all(httpx.get(u).status_code != 200 for u in urls_b)
    a.close()
    b.close()


# ------------------------------------------------------------------------------------------------
# Class 11 in the app: the hypnogram read at upload, errors with their text
# ------------------------------------------------------------------------------------------------
def test_hypnogram_format_detected_or_refused_at_upload(served, tmp_path):
    demo, _ = served
    signals, _ = synthetic_night(4, seed=3)
    edf = write_edf(tmp_path / "n4.edf", signals)
    codes = [5] * 6 + [2] * 12 + [3] * 6  # 5-s R&K labels of 30-s scoring: W, N2, N2, N1
    dreams = tmp_path / "Hypnogram_n4.txt"
    dreams.write_text("[Hypnogram]\n" + "".join(f"{c}\n" for c in codes))
    client = Client(demo.local_url, verbose=False)
    status, result = _stage(client, edf, dreams)
    assert "Expert hypnogram attached (read as dreams:" in status
    assert "(primary) vs expert hypnogram" in result[3] and "(4 epochs, 0 unscored" in result[3]
    headless = tmp_path / "h.txt"
    headless.write_text("".join(f"{c}\n" for c in codes))
    with pytest.raises(AppError, match=r"h\.txt: one integer per line, changing only every 6 lines") as err:
        client.predict(handle_file(str(edf)), handle_file(str(headless)), api_name="/load")
    assert str(tmp_path) not in str(err.value)
    client.close()


def test_handler_errors_reach_the_page_with_their_text(served, monkeypatch, tmp_path):
    import app

    demo, _ = served

    def broken(*args, **kwargs):
        raise KeyError("band 'C3' has no samples")

    monkeypatch.setattr(app, "propose_channels", broken)  # a library failing in a way no handler expects
    signals, _ = synthetic_night(2, seed=4)
    edf = write_edf(tmp_path / "n2.edf", signals)
    client = Client(demo.local_url, verbose=False)
    with pytest.raises(AppError) as err:
        client.predict(handle_file(str(edf)), None, api_name="/load")
    assert "band 'C3' has no samples" in str(err.value)  # not an empty error box
    client.close()


# ------------------------------------------------------------------------------------------------
# Class 10: SIGTERM / SIGINT
# ------------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _files_holding(root: Path, secret: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and secret in p.read_bytes()]


# Each case starts app.py (model load included): ~20 s on a quiet 2-core machine. SIGINT, the same path
# through Gradio's own KeyboardInterrupt handling, runs with the slow tests.
@pytest.mark.parametrize("sig", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)],
                         ids=["SIGTERM", "SIGINT"])
def test_signal_removes_uploads_and_session_files(tmp_path, sig):
    tmp, cache = tmp_path / "tmp", tmp_path / "gradio"
    tmp.mkdir()
    signals, _ = synthetic_night(2, seed=8)
    edf = write_edf(tmp_path / "night.edf", signals)  # its header carries the patient's name
    port = _free_port()
    env = {**os.environ, "TMPDIR": str(tmp), "GRADIO_TEMP_DIR": str(cache), "HF_HUB_OFFLINE": "1",
           "GRADIO_ANALYTICS_ENABLED": "False"}
    proc = subprocess.Popen([sys.executable, str(REPO / "app.py"), "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + 180
        while True:
            assert proc.poll() is None, proc.stdout.read().decode(errors="replace")
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.time() < deadline, "app.py did not start"
            time.sleep(0.5)
        client = Client(url, verbose=False)
        out = client.predict(handle_file(str(edf)), None, api_name="/load")
        assert "Recording accepted" in out[0]
        with open(edf, "rb") as f:  # an upload sent but never taken in (the page closed before /load)
            assert httpx.post(f"{url}gradio_api/upload", files={"files": ("other.edf", f)}).status_code == 200
        (root,) = tmp.glob("psgvlm-app-*")
        assert list(root.glob("*/recording.edf")) and _files_holding(cache, PATIENT_NAME.encode())
        client.close()
        proc.send_signal(sig)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code in ((-sig,) if sig == signal.SIGTERM else (0, -sig))
    assert not root.exists(), [p for p in root.rglob("*")]
    assert not _files_holding(cache, PATIENT_NAME.encode()) and not _files_holding(tmp, PATIENT_NAME.encode())
    assert np.all([not p.name.endswith(".edf") for p in cache.rglob("*")])


def test_an_upload_moved_in_late_is_waited_for(tmp_path):
    """Gradio moves an upload into its cache after answering the request: the handler waits for it."""
    import threading

    from psgvlm.night.sessions import upload_arrived

    late = tmp_path / "late.edf"
    timer = threading.Timer(0.3, late.write_bytes, args=(b"0" * 8,))
    timer.start()
    assert upload_arrived(late, timeout_s=10.0)
    timer.join()
    assert not upload_arrived(tmp_path / "never.edf", timeout_s=0.2)
