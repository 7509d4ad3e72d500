"""benchmarks/default_model_real.py: skips without the real recordings; on them, a table for a run.

Run: python -m pytest -q tests/test_default_model_real.py   (the real-data case is slow: ~1 min)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "default_model_real.py"


def _run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True)


def test_skips_with_a_message_when_the_data_is_absent(tmp_path):
    proc = _run("--data", tmp_path / "nowhere")
    assert proc.returncode == 0 and proc.stdout.startswith("skipped: no real recordings at")


def test_a_bad_run_is_a_usage_error(tmp_path):
    proc = _run("--data", tmp_path, "--run", "x=" + str(tmp_path / "missing"))
    assert proc.returncode == 2 and "give NAME=DIR" in proc.stderr


@pytest.mark.slow
def test_table_for_the_default_run_on_the_real_recordings(real_data_dir, tmp_path):
    proc = _run("--data", real_data_dir, "--json", tmp_path / "real.json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| default | **pooled** |" in proc.stdout and "| default | DREAMS 1 |" in proc.stdout
    rows = {r["name"]: r["scores"] for r in json.loads((tmp_path / "real.json").read_text())["results"]["default"]}
    assert rows["DREAMS 1"]["n"] == 60 and rows["pooled"]["n"] >= 6 * 60
    assert -1.0 <= rows["pooled"]["kappa"] <= 1.0 and sum(rows["pooled"]["predicted"].values()) == rows["pooled"]["n"]
