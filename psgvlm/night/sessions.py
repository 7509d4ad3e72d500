"""Per-session folders of the demo app: what one browser session uploaded and got back, and its cleanup.

Each browser session gets its own folder under one root (named by a keyed hash, never by the session
id, so no URL can be guessed from it); uploads are copied there under neutral names and Gradio's own
copy is deleted at once (:func:`discard_upload`); a folder is deleted with every copy Gradio served
from it when its session ends (:func:`delete_session_files`), on process exit, or, if it is in use
by an event at that moment, when the event ends (:meth:`SessionStore.busy`). Error messages shown to
a user lose server paths (:func:`safe_message`).
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import shutil
import tempfile
import threading
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
        atexit.register(shutil.rmtree, self.root, True)

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
        delete_session_files(path)


def delete_session_files(folder) -> None:
    """Delete a session folder and the copies Gradio served from it.

    Gradio copies every file an event returns into its cache under ``<cache>/<hash of the file>/``
    (a keyed content hash, so the URL is not guessable) and sweeps that cache only on the
    ``delete_cache`` schedule; we recompute each copy's folder with Gradio's own ``hash_file`` and
    delete it with the session, so nothing of a closed session stays downloadable.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return
    try:
        from gradio.processing_utils import hash_file
        from gradio.utils import get_upload_folder

        cache = Path(get_upload_folder())
        for f in folder.rglob("*"):
            if f.is_file():
                shutil.rmtree(cache / hash_file(f), ignore_errors=True)
    except (ImportError, OSError):  # the session folder is still removed below
        pass
    shutil.rmtree(folder, ignore_errors=True)


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
