"""README commands are executable truth: every file, config, command and suite they name exists,
the quickstart runs end to end (slow), and .ci/run calls the README's test command.

Run: python -m pytest -q tests/test_readme.py          (the quickstart: python -m pytest -q -m slow tests/test_readme.py)
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from evals.__main__ import SUITES
from psgvlm.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _commands() -> list[list[str]]:
    blocks = re.findall(r"```bash\n(.*?)```", README, flags=re.S)
    text = "\n".join(blocks).replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.split("  #")[0].strip()
        if line and not line.startswith("#"):
            for part in line.split("&&"):
                out.append(shlex.split(part.replace("[", "").replace("]", "").replace("...", "")))
    return out


def test_exactly_two_setup_commands_and_ci_runs_the_test_one():
    start = README.index("## Start here")
    section = README[start: README.index("\n## ", start + 1)]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 2 and all(len(b.strip().splitlines()) == 1 for b in blocks)
    test_cmd = blocks[1].strip()
    assert test_cmd in (ROOT / ".ci/run").read_text()


def test_named_files_commands_and_suites_exist():
    checked = 0
    for argv in _commands():
        for tok in argv:
            if re.match(r"^(recipes|benchmarks)/[\w/.-]+\.(py|yaml|sh)$", tok):
                assert (ROOT / tok).is_file(), f"README names {tok}, which does not exist"
                checked += 1
        if argv[:1] == ["psgvlm"] and len(argv) > 1:
            assert argv[1] in COMMANDS, f"README uses `psgvlm {argv[1]}`; commands: {list(COMMANDS)}"
            checked += 1
        if argv[:3] == ["python", "-m", "evals"]:
            assert argv[3] in SUITES, f"README uses suite {argv[3]!r}; suites: {list(SUITES)}"
            checked += 1
    assert checked > 30


@pytest.mark.slow
def test_quickstart_main_job(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(["bash", str(ROOT / "recipes/quickstart.sh"), str(tmp_path / "qs")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = (tmp_path / "qs/report/report.md").read_text()
    assert "isruc" in report
    import json

    kappa = json.loads((tmp_path / "qs/run/metrics.json").read_text())["pooled"]["kappa"]
    assert kappa >= 0.5, kappa

