"""Screenshot of the running demo in headless Chromium, with a synthetic night already staged.

    python benchmarks/screenshot.py --out outputs/screenshot.png
    python benchmarks/screenshot.py --run runs/llava_isruc --minutes 60 --out outputs/screenshot.png

Starts app.py in-process on 127.0.0.1 with ``example`` = a synthetic night written by ``psgvlm synth``
in ISRUC format, the embedded default's training format (so the page opens with the hypnogram, statistics, agreement and epoch viewer
filled), points Debian's ``chromium`` at it, and prints the PNG's path and timings. Install the
browser with ``apt-get update && apt-get install -y chromium`` when it is missing. Look at the image:
this is how a user first sees the demo.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
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
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

    import app
    from psgvlm.synth.layouts import main as synth_main

    out = Path(args.out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="psgvlm-shot-") as tmp:
        tmp = Path(tmp)
        # --- a synthetic night in a dataset's on-disk format (recording + expert hypnogram) -------
        rc = synth_main(["--format", args.format, "--subjects", "1", "--minutes", str(args.minutes),
                         "--seed", "0", "--out", str(tmp / "synth")])
        if rc:
            return rc
        from psgvlm.io.readers import find_recordings

        found = find_recordings(args.format, tmp / "synth")[0]
        psg, hyp = found["path"], found.get("hypnogram")
        # --- the app, with that night opened on page load ---------------------------------------
        t0 = time.perf_counter()
        demo, _ = app.build_app(args.run, example=psg, example_hypnogram=hyp, workdir=tmp / "sessions")
        demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
        print(f"app up at {demo.local_url} in {time.perf_counter() - t0:.1f} s")
        try:
            # --- the browser -------------------------------------------------------------------
            t1 = time.perf_counter()
            cmd = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp / 'chromium'}",
                   f"--window-size={args.width},{args.height}", f"--virtual-time-budget={args.wait_ms}",
                   f"--screenshot={out}", demo.local_url]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            if proc.returncode or not out.is_file():
                print(proc.stderr[-2000:], file=sys.stderr)
                return 1
            print(f"screenshot {out} ({out.stat().st_size} bytes) in {time.perf_counter() - t1:.1f} s")
        finally:
            demo.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
