"""Per-session folders of the demo app: what one browser session uploaded and got back, and its cleanup.

Each browser session gets its own folder under one root (named by a keyed hash, never by the session
id, so no URL can be guessed from it); uploads are copied there under neutral names and Gradio's own
copy is deleted at once (:func:`discard_upload`); a folder is deleted with every copy Gradio served
from it when its session ends (:meth:`SessionStore.delete_files`), on process exit, on SIGTERM or
SIGINT (:func:`cleanup_on_exit`), or, if it is in use by an event at that moment, when the event ends
(:meth:`SessionStore.busy`). Error messages shown to a user lose server paths (:func:`safe_message`).

Gradio serves a returned file from a copy in its cache named by the file's content hash, so two
sessions that staged the same recording are served the same copies: a session's cleanup keeps every
copy another live session still shows (:func:`delete_session_files` ``keep_from``), so closing one
never breaks the other's downloads.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from psgvlm.night.stage import StageResult


@dataclass
class Session:
    """One browser session's files and results (held in ``gr.State``; never shared)."""

    dir: str
    recording: str | None = None  # our copy of the upload, neutral name
    hypnogram: str | None = None
    labels: list[str] = field(default_factory=list)  # channel canonical names in the recording
    result: StageResult | None = None


class SessionStore:
    """Per-session folders under one root; deleted on unload, expiry, or process exit."""

    def __init__(self, root=None):
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="psgvlm-app-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._by_hash: dict[str, Path] = {}
        self._busy: dict[Path, bool] = {}  # folder -> "expired while busy" flag
        atexit.register(self.close)

    def close(self) -> None:
        """Delete every session folder, the copies Gradio served from them, and the root (process exit)."""
        if self.root.is_dir():
            for folder in self.root.iterdir():
                delete_session_files(folder)
        shutil.rmtree(self.root, ignore_errors=True)

    def delete_files(self, path) -> None:
        """Delete ``path`` (a session folder or a folder inside one) with the copies Gradio served from it,
        keeping the copies another session folder still shows (the same bytes are the same copy)."""
        path = Path(path)
        try:
            own = self.root / path.relative_to(self.root).parts[0]
        except (ValueError, IndexError):
            own = path
        others = [p for p in self.root.iterdir() if p.is_dir() and p != own] if self.root.is_dir() else []
        delete_session_files(path, keep_from=others)

    @contextlib.contextmanager
    def busy(self, path):
        """Hold a session folder while an event uses it: expiry meanwhile is deferred to the end.

        Yields a dict; set ``done["ok"] = True`` when the event will return a fresh state (which
        restarts the time-to-live). Otherwise a deletion requested meanwhile happens on exit.
        """
        path = Path(path)
        done = {"ok": False}
        with self._lock:
            self._busy[path] = False
        try:
            yield done
        finally:
            with self._lock:
                expired = self._busy.pop(path, False)
            if expired and not done["ok"]:
                self.delete_dir(path)

    def folder(self, session_hash: str) -> Path:
        """The folder of a session (created on first use; a new one if it was deleted)."""
        with self._lock:
            path = self._by_hash.get(session_hash)
            if path is None or not path.is_dir():
                # The folder name is not the session hash itself, so no URL can be guessed from it.
                name = hashlib.sha256(f"{session_hash}{id(self)}".encode()).hexdigest()[:24]
                path = self.root / name
                path.mkdir(parents=True, exist_ok=True)
                self._by_hash[session_hash] = path
            return path

    def delete(self, session_hash: str) -> None:
        """Delete a session's folder (page closed)."""
        with self._lock:
            path = self._by_hash.get(session_hash)
        if path is not None:
            self.delete_dir(path)

    def is_busy(self, path) -> bool:
        """Whether an event is using the session folder ``path`` now."""
        with self._lock:
            return Path(path) in self._busy

    def delete_dir(self, path) -> None:
        """Delete a session folder now, or when the event using it ends."""
        with self._lock:
            if Path(path) in self._busy:  # in use: delete when the event ends, unless it renews the state
                self._busy[Path(path)] = True
                return
            for key, value in list(self._by_hash.items()):
                if value == Path(path):
                    del self._by_hash[key]
        self.delete_files(path)


SERVED_DIRS = ("outputs", "views")  # a session folder's subfolders whose files the app returns to the page


def delete_session_files(folder, *, keep_from=()) -> None:
    """Delete a session folder and the copies Gradio served from it.

    Gradio copies every file an event returns into its cache under ``<cache>/<hash of the file>/``
    (a keyed content hash, so the URL is not guessable) and sweeps that cache only on the
    ``delete_cache`` schedule; we recompute each copy's folder with Gradio's own ``hash_file`` and
    delete it with the session, so nothing of a closed session stays downloadable.

    Parameters
    ----------
    folder : path-like
        The folder to delete (a session folder, or its ``outputs`` before a new run).
    keep_from : sequence of path-like
        Other live session folders: a cached copy of bytes that one of them also returned (the same
        recording staged twice) is kept, since it is that session's download too.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return
    try:
        from gradio.processing_utils import hash_file
        from gradio.utils import get_upload_folder

        cache = Path(get_upload_folder())
        mine = {f: f.stat().st_size for f in folder.rglob("*") if f.is_file()}
        sizes = set(mine.values())
        shared = {hash_file(f) for other in keep_from for sub in SERVED_DIRS
                  for f in Path(other, sub).rglob("*") if f.is_file() and f.stat().st_size in sizes}
        for f in mine:
            h = hash_file(f)
            if h not in shared:
                shutil.rmtree(cache / h, ignore_errors=True)
    except (ImportError, OSError):  # the session folder is still removed below
        pass
    shutil.rmtree(folder, ignore_errors=True)


def cleanup_on_exit(cleanup, signals=(signal.SIGTERM, signal.SIGINT)) -> None:
    """Run ``cleanup()`` once when the process ends: normal exit, or one of ``signals``.

    A signal runs the cleanup, then is handled as it would have been without this (the handler
    installed before, or the default, which ends the process with that signal), so a service manager
    still sees the process stop on SIGTERM. Call from the main thread (Python's rule for handlers).
    """
    done = threading.Event()

    def run_once() -> None:
        if not done.is_set():
            done.set()
            try:
                cleanup()
            except Exception as err:  # noqa: BLE001  the signal must still end the process
                print(f"cleanup failed: {type(err).__name__}: {err}", file=sys.stderr)

    atexit.register(run_once)
    for sig in signals:
        previous = signal.getsignal(sig)

        def handler(signum, frame, previous=previous):
            run_once()
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
            if callable(previous):
                previous(signum, frame)
            elif previous != signal.SIG_IGN:
                os.kill(os.getpid(), signum)

        signal.signal(sig, handler)


def safe_message(err: Exception, session=None) -> str:
    """An exception's message without server paths."""
    text = str(err)
    if session is not None:
        session = Path(session)
        text = text.replace(str(session) + "/", "").replace(str(session), "")
    return text.replace(tempfile.gettempdir(), "")


def copy_upload(src, dst_dir, stem: str) -> Path:
    """Copy an upload into ``dst_dir`` under a neutral name: ``stem`` + its lower-cased extension."""
    ext = Path(src).suffix.lower()
    dst = Path(dst_dir) / f"{stem}{ext}"
    shutil.copyfile(src, dst)
    return dst


def discard_upload(path) -> None:
    """Delete Gradio's cached copy of an upload: we keep only the session copy."""
    try:
        Path(path).unlink(missing_ok=True)
    except OSError:
        pass


def upload_arrived(path, timeout_s: float = 15.0) -> bool:
    """Whether an uploaded file is (or within ``timeout_s`` becomes) a file on disk.

    Gradio answers an upload request first and moves the file into its cache in a background task, so
    on a busy server the handler that receives the path can run before the file is there.
    """
    deadline = time.monotonic() + timeout_s
    while not Path(path).is_file():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True
