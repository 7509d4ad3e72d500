"""One writer per output folder: a lock file, the check of an ``--out`` before the work, dead runs' leftovers.

``psgvlm render`` and ``psgvlm stage`` (and the app, through :func:`psgvlm.night.outputs.write_outputs`)
hold :func:`out_lock` while they write an output folder. The lock is a small JSON file
(``{"pid", "host", "command", "since"}``) held with ``fcntl.flock``: the kernel drops the hold when the
process ends, however it ends (SIGKILL included), so a lock file left behind by a dead run is told apart
from a live one without guessing from the PID (which the system may have reused). A second writer is
refused at once with :class:`LockedError`, naming the lock file and the PID holding it; a stale lock is
taken over with a message.

:func:`check_out_dir` says why a folder cannot take the outputs (a file, not writable, being written by
a live process) before any work starts. :func:`pid_alive` tells the dead runs whose temporary folders
(``.tmp-<pid>``, ``.psgvlm-stage-tmp-<pid>-*``) the next run removes.

POSIX only (``fcntl``), as the rest of psgvlm's process handling.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import os
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

LOCK_NAME = ".psgvlm.lock"  # inside a folder the writer fills in place (stage's --out)


class LockedError(ValueError):
    """An output folder is being written by another live process (a user error: exit 2)."""


def lock_file(out, *, inside: bool) -> Path:
    """The lock guarding ``out``: ``out/.psgvlm.lock`` (``inside``), else ``.OUT.lock`` beside it.

    Beside is for a folder that is replaced whole by a rename (render's dataset), inside for one whose
    files are replaced one by one (stage's outputs).
    """
    out = Path(out)
    return out / LOCK_NAME if inside else out.parent / f".{out.name}.lock"


def pid_alive(pid) -> bool:
    """Whether process ``pid`` (an int or a decimal string) exists; anything else counts as dead."""
    text = str(pid)
    if not text.isdigit() or int(text) <= 0:
        return False
    try:
        os.kill(int(text), 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def _read_holder(fd: int) -> dict:
    """The JSON a lock file holds (``{}`` when empty or not ours)."""
    try:
        raw = os.pread(fd, 4096, 0)
        info = json.loads(raw.decode("utf-8")) if raw.strip() else {}
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def holder(path) -> dict | None:
    """Who holds the lock file ``path`` now (its JSON, ``pid`` at least), or None when no live process does."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(fd) or {"pid": None}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _describe(info: dict) -> str:
    pid = info.get("pid")
    what = f"PID {pid}" if pid is not None else "a process (PID not yet written)"
    if info.get("host") and info.get("host") != socket.gethostname():
        what += f" on {info['host']}"
    if info.get("command"):
        what += f", {info['command']}"
    if info.get("since"):
        what += f", since {info['since']}"
    return what


def _refusal(out: Path, path: Path, info: dict) -> LockedError:
    return LockedError(f"--out {str(out)!r} is being written by another run ({_describe(info)}); lock "
                       f"{str(path)!r}. Wait for it to finish or stop it; a lock left by a dead run is "
                       f"taken over by the next run")


@contextlib.contextmanager
def out_lock(out, *, command: str, inside: bool, note: Callable[[str], None] | None = None) -> Iterator[Path]:
    """Hold the lock of output folder ``out`` while the block runs.

    Parameters
    ----------
    out : path-like
        The output folder (it need not exist; the lock's folder is created).
    command : str
        What writes (``"psgvlm render"``), recorded in the lock for the message a second writer gets.
    inside : bool
        Where the lock lives (:func:`lock_file`).
    note : callable, optional
        Receives the one-line message when a stale lock (its process dead) is taken over; default:
        printed to stderr.

    Yields
    ------
    Path
        The lock file.

    Raises
    ------
    LockedError
        Another live process holds the lock: the message names ``out``, the lock file and its PID.
    """
    out = Path(out)
    path = lock_file(out, inside=inside)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            info = _read_holder(fd)
            os.close(fd)
            raise _refusal(out, path, info) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder released and removed it between our open and flock: open the new one
    previous = _read_holder(fd)
    if previous.get("pid") is not None:
        alive = pid_alive(previous["pid"]) and previous.get("pid") != os.getpid()
        why = "no longer holds it" if alive else "is no longer running"
        (note or (lambda m: print(m, file=sys.stderr)))(
            f"psgvlm: taking over the stale lock {str(path)!r} of PID {previous['pid']} ({why}; "
            f"{previous.get('command') or 'unknown command'})")
    record = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
              "since": _dt.datetime.now().isoformat(timespec="seconds")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(record).encode(), 0)
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # before the release: a waiting writer re-opens the path it finds (see the loop)
        os.close(fd)


def check_out_dir(out, *, beside: bool = False, inside_lock: bool = True) -> str | None:
    """Why ``out`` cannot take a command's outputs, or None; checked before any work starts.

    Parameters
    ----------
    out : path-like
        The ``--out`` folder (new or existing).
    beside : bool
        The command also writes beside ``out`` (temporary folder renamed into place): the parent
        folder must be writable too.
    inside_lock : bool
        Where the command's lock lives (:func:`lock_file`): a live holder is reported here already.

    Returns
    -------
    str or None
        A one-line reason naming ``--out`` and the path: it is a file, a folder on its way is not a
        folder or not writable, or another live run holds its lock.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        return f"--out {str(out)!r} exists and is not a directory; give a folder (new or existing)"
    parent = out.parent if beside else out
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        return f"--out {str(out)!r}: {str(parent)!r} is not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"--out {str(out)!r}: {str(parent)!r} is not writable"
    if out.is_dir() and not os.access(out, os.W_OK | os.X_OK):
        return f"--out {str(out)!r} is not writable"
    path = lock_file(out, inside=inside_lock)
    info = holder(path)
    if info is not None:
        return str(_refusal(out, path, info))
    return None
