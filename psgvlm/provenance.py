"""Provenance written beside every output, and atomic file writes."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

_PACKAGES = ("psgvlm", "numpy", "scipy", "torch", "transformers", "peft", "accelerate", "datasets",
             "evaluate", "mne", "edfio", "pillow", "matplotlib", "gradio", "yasa")


def package_versions(names=_PACKAGES) -> dict[str, str | None]:
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_sha() -> str | None:
    """SHA of the psgvlm checkout (with ``-dirty`` when it has uncommitted changes), or None."""
    repo = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("-dirty" if dirty else "")


def provenance() -> dict:
    """Versions, git SHA, command line and time: the block every ``meta.json`` carries."""
    return {
        "versions": package_versions(),
        "git_sha": git_sha(),
        "argv": list(sys.argv),
        "time_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
    }


def _json_default(obj):
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_text_atomic(path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path, obj, indent: int = 2) -> None:
    """JSON-dump ``obj`` (numpy scalars/arrays allowed) to ``path`` atomically."""
    write_text_atomic(path, json.dumps(obj, indent=indent, default=_json_default) + "\n")


def read_json(path) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)
