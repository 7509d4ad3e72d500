"""Rendering a night's epochs in forked worker processes, and the process plumbing that keeps it fast.

Workers are forked per recording, so they share the night's scaled epochs with the building process
(no copy, no temporary file) and return PNG bytes. ``datasets`` is imported in a background thread
while the night is read (joined before any fork), and freed memory is reused while a night is read
and cut (:func:`reusing_freed_memory`).
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import multiprocessing
import struct
import sys
import threading
import zlib
from concurrent.futures import ProcessPoolExecutor

import numpy as np

PNG_COMPRESS_LEVEL = 1  # PNG stays lossless; zlib level 1 is ~3x faster than 6 and smaller on these images
# Forking a render worker and sending its PNGs back costs about as much as rendering 2-4 epochs;
# below this many epochs per worker the epochs are rendered in the building process.
MIN_EPOCHS_PER_WORKER = 8
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameter numbers (malloc.h)


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def encode_png(img: np.ndarray) -> bytes:
    """Lossless PNG bytes of an RGB image: 8-bit truecolour, no row filter, zlib level ``PNG_COMPRESS_LEVEL``.

    Written by hand (the PNG container is three chunks) because Pillow's encoder tries row filters
    and takes ~4 ms per 336x336 epoch, more than drawing it; white images with thin traces compress
    as well without filters, and this takes ~1.3 ms. Any PNG reader decodes the same pixels.
    """
    h, w, c = img.shape
    if c != 3 or img.dtype != np.uint8:
        raise ValueError(f"encode_png takes (H, W, 3) uint8 images, got {img.shape} {img.dtype}")
    rows = np.zeros((h, 1 + w * 3), np.uint8)  # each scanline starts with filter type 0 (none)
    rows[:, 1:] = img.reshape(h, w * 3)
    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)  # 8 bits, colour type 2 (RGB), no interlace
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", zlib.compress(rows.tobytes(), PNG_COMPRESS_LEVEL)) + _png_chunk(b"IEND", b""))


# What forked render workers inherit instead of receiving pickled copies: the scaled epochs, settings.
_FORKED: dict = {}
# Imports running in background threads (see preload); joined before any fork.
_PRELOADS: list[threading.Thread] = []


def _render_span(span: tuple[int, int]) -> list[bytes]:
    """Render epochs ``[lo, hi)`` of the inherited epochs to PNG bytes."""
    from psgvlm.image.renderer import render_epoch

    x, settings = _FORKED["x"], _FORKED["settings"]
    return [encode_png(render_epoch(x[i], settings)) for i in range(*span)]


def render_images(x: np.ndarray, settings, *, num_proc: int = 1, progress: bool = True,
                  desc: str = "render") -> list[bytes]:
    """PNG bytes of every epoch of ``x``, in order.

    Parameters
    ----------
    x : np.ndarray, shape (n_epochs, n_chans, n_times)
        Scaled to [-1, 1] (:func:`psgvlm.signal.epochs.minmax_scale`).
    settings : psgvlm.image.renderer.RenderSettings
    num_proc : int
        Render processes. They are forked, so they share ``x`` with this process (no copy, no
        temporary file) and start in milliseconds. With fewer than ``MIN_EPOCHS_PER_WORKER`` epochs
        per worker, or where ``fork`` does not exist, the epochs are rendered in this process.
    """
    from tqdm.auto import tqdm

    n = len(x)
    workers = min(num_proc, n // MIN_EPOCHS_PER_WORKER)
    if "fork" not in multiprocessing.get_all_start_methods():
        workers = 1
    n_spans = 4 * workers if workers > 1 else -(-n // 64)  # spans of <= 64 epochs: a live progress bar
    bounds = np.linspace(0, n, n_spans + 1).astype(int)
    spans = [(int(lo), int(hi)) for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo]
    images: list[bytes] = []
    join_preloads()  # a fork while another thread holds an import lock could hang the workers
    _FORKED.update(x=x, settings=settings)
    try:
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) if workers > 1 else None
        # workers live for one recording: memory they held is returned before the next night
        with pool or contextlib.nullcontext():
            chunks = pool.map(_render_span, spans) if pool is not None else map(_render_span, spans)
            with tqdm(total=n, desc=desc, unit="epoch", disable=not progress, leave=False) as bar:
                for chunk in chunks:
                    images.extend(chunk)
                    bar.update(len(chunk))
    finally:
        _FORKED.clear()
    return images


def preload(module: str) -> None:
    """Import ``module`` in a background thread: reading a night leaves a core idle, importing fills it."""
    if module not in sys.modules:
        thread = threading.Thread(target=importlib.import_module, args=(module,), name=f"import {module}",
                                  daemon=True)
        thread.start()
        _PRELOADS.append(thread)


def join_preloads() -> None:
    while _PRELOADS:
        _PRELOADS.pop().join()


def _glibc():
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:  # not glibc
        return None


def release_freed_memory() -> None:
    """Hand freed heap pages back to the OS (glibc keeps them otherwise, so RSS would creep per night)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


@contextlib.contextmanager
def reusing_freed_memory():
    """Within: freed arrays' pages are reused, not returned to the OS and faulted in again.

    Reading and cutting a night allocates and frees ~2 GB of short-lived arrays. By default numpy
    asks for transparent huge pages for each large array and glibc unmaps every freed block over
    32 MB, so every array costs fresh zeroed pages: 2-3 s of system time per night on a virtual
    machine, more than the reading itself. Both defaults are restored on exit (glibc's mmap and trim
    thresholds to their 128 KiB defaults) and the heap is trimmed, so memory stays flat across nights.
    """
    hugepage = None
    for name in ("numpy._core.multiarray", "numpy.core.multiarray"):  # numpy >= 2, then 1.x
        with contextlib.suppress(ImportError):
            hugepage = getattr(importlib.import_module(name), "_set_madvise_hugepage", None)
            break
    libc = _glibc()
    previous = hugepage(False) if hugepage is not None else None
    if libc is not None:
        libc.mallopt(M_MMAP_THRESHOLD, 1 << 30)
        libc.mallopt(M_TRIM_THRESHOLD, 1 << 30)
    try:
        yield
    finally:
        if hugepage is not None:
            hugepage(previous)
        if libc is not None:
            libc.mallopt(M_MMAP_THRESHOLD, 128 * 1024)
            libc.mallopt(M_TRIM_THRESHOLD, 128 * 1024)
            libc.malloc_trim(0)
