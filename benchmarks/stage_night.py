"""Wall time of ``psgvlm stage`` on a whole synthetic night (target: <= 2 min on 2 CPU cores).

    python benchmarks/stage_night.py                       # 8-h ISRUC-format night, embedded default run
    python benchmarks/stage_night.py --minutes 480 --run runs/x --format sleepedf

Writes the night with ``psgvlm synth`` into a temporary folder, runs ``psgvlm stage`` on it in a
fresh process (so model loading counts), and prints wall time, the stage's own breakdown
(``summary.json`` ``timings_s``), epochs per second, CPU count and load average. On a shared machine
the figures are pessimistic: say so when quoting them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=480.0)
    parser.add_argument("--format", default="isruc", help="psgvlm synth format of the night")
    parser.add_argument("--run", help="run directory (default: the embedded default model)")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="psgvlm-bench-") as tmp:
        tmp = Path(tmp)
        subprocess.run([sys.executable, "-m", "psgvlm.cli", "synth", "--format", args.format, "--subjects", "1",
                        "--minutes", str(args.minutes), "--seed", "0", "--out", str(tmp / "synth")],
                       check=True, capture_output=True)
        edf = next(p for p in sorted((tmp / "synth").rglob("*")) if p.suffix.lower() in (".edf", ".rec")
                   and "hypnogram" not in p.name.lower() and "base" not in p.name.lower())
        cmd = [sys.executable, "-m", "psgvlm.cli", "stage", "--edf", str(edf), "--out", str(tmp / "out"),
               "--batch-size", str(args.batch_size)]
        if args.run:
            cmd += ["--run", args.run]
        load0 = os.getloadavg()
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        wall = time.perf_counter() - t0
        if proc.returncode:
            print(proc.stderr[-3000:], file=sys.stderr)
            return proc.returncode
        summary = json.loads((tmp / "out" / "summary.json").read_text())
    n = summary["n_epochs"]
    timings = {k: round(v, 1) for k, v in summary["timings_s"].items()}
    print(f"night: {args.format}, {args.minutes:g} min, {n} epochs, {len(summary['channels'])} bands")
    print(f"psgvlm stage wall time (new process, incl. imports and model load): {wall:.1f} s "
          f"({n / wall:.1f} epochs/s); target <= 120 s")
    print(f"breakdown (s): {timings}")
    print(f"cpus: {os.cpu_count()}, load average before: {load0[0]:.1f}, after: {os.getloadavg()[0]:.1f} "
          "(shared machine: pessimistic)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
