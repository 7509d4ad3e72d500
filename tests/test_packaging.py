"""The wheel: one top-level import name (``psgvlm``), the stages under it, prompts and assets inside.

Run: ``python -m pytest -q tests/test_packaging.py`` (builds the wheel with pip, ~15 s; pip fetches the
build backend, setuptools, from the package index unless it is installed here).
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The checkout folders that install under the psgvlm namespace (pyproject's package-dir mapping).
INSTALLED_AS = {"psgvlm": "psgvlm", "render": "psgvlm/render", "evals": "psgvlm/evals"}
SKIP_DIRS = {"__pycache__", ".venv", ".git", "build", "dist", "runs", "data", "outputs", ".pytest_cache",
             ".ruff_cache", ".benchmarks"}


def _build_wheel(out: Path) -> Path:
    # Build from a copy so that setuptools' build/ and *.egg-info never touch (or leak stale files from)
    # the checkout.
    src = out / "src"
    shutil.copytree(REPO, src, ignore=lambda d, names: [n for n in names
                                                        if n in SKIP_DIRS or n.endswith(".egg-info")])
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out / "dist"), str(src)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 and "setuptools" in proc.stdout + proc.stderr:
        # Build isolation could not fetch the backend (no package index): use the installed one if any.
        if importlib.util.find_spec("setuptools") is None:
            pytest.skip(f"the build backend (setuptools) can be neither fetched nor imported:\n{proc.stderr}")
        proc = subprocess.run([*cmd[:4], "--no-build-isolation", *cmd[4:]], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (wheel,) = (out / "dist").glob("psgvlm-*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return _build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def wheel_names(wheel) -> set[str]:
    with zipfile.ZipFile(wheel) as zf:
        return set(zf.namelist())


def test_wheel_claims_only_the_psgvlm_import_name(wheel, wheel_names):
    top = {name.split("/")[0] for name in wheel_names if not name.split("/")[0].endswith(".dist-info")}
    assert top == {"psgvlm"}
    with zipfile.ZipFile(wheel) as zf:
        top_level = [n for n in wheel_names if n.endswith(".dist-info/top_level.txt")]
        assert [zf.read(n).decode().split() for n in top_level] in ([], [["psgvlm"]])


def test_wheel_ships_data_and_stage_entry_points(wheel_names):
    prompts = sorted(p.name for p in (REPO / "psgvlm" / "prompts").glob("*.yaml"))
    assert prompts, "no prompt templates in psgvlm/prompts"
    assets = [p.relative_to(REPO).as_posix() for p in (REPO / "psgvlm" / "assets").rglob("*") if p.is_file()]
    assert "psgvlm/assets/default_run/meta.json" in assets
    wanted = {f"psgvlm/prompts/{name}" for name in prompts} | set(assets) | {
        "psgvlm/evals/metrics/sleep_staging/sleep_staging.py",
        "psgvlm/render/__main__.py",
        "psgvlm/evals/__main__.py",
    }
    assert sorted(wanted - wheel_names) == []


def test_wheel_ships_every_source_file(wheel_names):
    """A sub-package added to the checkout but not to pyproject's ``packages`` list fails here."""
    wanted = set()
    for folder, installed in INSTALLED_AS.items():
        for path in (REPO / folder).rglob("*.py"):
            if "__pycache__" not in path.parts:
                wanted.add(f"{installed}/{path.relative_to(REPO / folder).as_posix()}")
    assert sorted(wanted - wheel_names) == []
