"""Screenshot of the running demo in headless Chromium, with a synthetic night already staged.

    python benchmarks/screenshot.py --out outputs/screenshot.png
    python benchmarks/screenshot.py --run runs/llava_isruc --minutes 60 --out outputs/screenshot.png

Starts ``python app.py`` (a separate process: benchmarks never import a stage) on 127.0.0.1 with
``--example`` = a synthetic night written by ``psgvlm synth``
in ISRUC format, the embedded default's training format (so the page opens with the hypnogram, statistics, agreement and epoch viewer
filled), points Debian's ``chromium`` at it, and prints the PNG's path and timings. Install the
browser with ``apt-get update && apt-get install -y chromium`` when it is missing. Look at the image:
this is how a user first sees the demo.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--hide-scrollbars",
                  "--disable-dev-shm-usage"]


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise SystemExit("chromium not found: apt-get update && apt-get install -y chromium")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, proc: subprocess.Popen, timeout_s: float) -> None:
    """Poll ``url`` until it answers; raise if the app process exits or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"app.py exited with {proc.returncode} before serving {url}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(1.0)
    raise SystemExit(f"app.py did not serve {url} within {timeout_s:g} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="outputs/screenshot.png")
    parser.add_argument("--run", help="run directory (default: the embedded default model)")
    parser.add_argument("--minutes", type=float, default=60.0, help="length of the synthetic night")
    parser.add_argument("--format", default="isruc", help="psgvlm synth format of the example night")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=2600)
    parser.add_argument("--wait-ms", type=int, default=120_000, help="Chromium's virtual-time budget")
    args = parser.parse_args(argv)
    chromium = find_chromium()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    out = Path(args.out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="psgvlm-shot-") as tmp:
        tmp = Path(tmp)
        # --- a synthetic night in a dataset's on-disk format (recording + expert hypnogram) -------
        subprocess.run([sys.executable, "-m", "psgvlm.cli", "synth", "--format", args.format, "--subjects", "1",
                        "--minutes", str(args.minutes), "--seed", "0", "--out", str(tmp / "synth")],
                       check=True, env=env)
        from psgvlm.io.readers import find_recordings

        found = find_recordings(args.format, tmp / "synth")[0]
        # --- the app, with that night opened on page load ---------------------------------------
        port = free_port()
        cmd = [sys.executable, str(REPO / "app.py"), "--port", str(port), "--example", str(found["path"])]
        if found.get("hypnogram"):
            cmd += ["--example-hypnogram", str(found["hypnogram"])]
        if args.run:
            cmd += ["--run", args.run]
        url = f"http://127.0.0.1:{port}/"
        t0 = time.perf_counter()
        app = subprocess.Popen(cmd, env={**env, "TMPDIR": str(tmp)})
        try:
            wait_for(url, app, timeout_s=900)
            print(f"app up at {url} in {time.perf_counter() - t0:.1f} s")
            # --- the browser -------------------------------------------------------------------
            t1 = time.perf_counter()
            cmd = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp / 'chromium'}",
                   f"--window-size={args.width},{args.height}", f"--virtual-time-budget={args.wait_ms}",
                   f"--screenshot={out}", url]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            if proc.returncode or not out.is_file():
                print(proc.stderr[-2000:], file=sys.stderr)
                return 1
            print(f"screenshot {out} ({out.stat().st_size} bytes) in {time.perf_counter() - t1:.1f} s")
        finally:
            app.terminate()
            app.wait(timeout=60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
