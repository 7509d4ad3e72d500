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


def _umask() -> int:
    """The process's umask, read without changing it where Linux tells it (``/proc/self/status``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: read by setting and restoring (briefly process-wide)
    os.umask(mask)
    return mask


def shared_mode(fd_or_path) -> None:
    """Give a temporary file the mode ``open()`` would have (0666 minus the umask: 0644 by default).

    ``tempfile.mkstemp`` creates files 0600; an output renamed from one would stay unreadable to the
    group and others on a shared server. Every atomic write passes its temporary file through here.
    """
    mode = 0o666 & ~_umask()
    if isinstance(fd_or_path, int):
        os.fchmod(fd_or_path, mode)
    else:
        os.chmod(fd_or_path, mode)


def write_text_atomic(path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same folder and a rename.

    The file gets the mode a plain ``open()`` gives (:func:`shared_mode`), not mkstemp's 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        shared_mode(fd)
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
