"""Readers: PSG recordings in each dataset's native on-disk format -> :class:`psgvlm.io.recording.Recording`.

``READERS`` is the registry: format -> ``(find, read)``, one module per format family. ``find(root,
**opts)`` lists the signal files under a dataset folder laid out as the dataset ships, each with the
path where its label file should be and the recording's and subject's ids, taken from its path
relative to ``root`` (so two files named alike in different folders are two recordings);
``read(path, hypnogram=None, **opts)`` reads one recording. Callers use the dispatchers:
:func:`find_recordings`, :func:`read_recording` (``read_recording(fmt, **job)`` for each job
:func:`find_recordings` returns keeps the finder's ids), and :func:`info_main`
(``psgvlm info --format F PATH [--hypnogram H]``).

Shared parts: :mod:`.signal_files` (EDF/BDF and text signals -> channels in microvolts),
:mod:`psgvlm.io.hypnograms` (label files -> intervals), :mod:`.pairing` (labels paired with the
signal on a 30-s grid by time; the counts of what was dropped go to ``rec.pairing``).

Refused with an error naming the file and value: not EDF/BDF, truncated (file size vs header),
discontinuous EDF+D (gaps would shift labels), duplicate channel labels, NaN/inf samples (unless
``nonfinite="zero"``), unknown stage codes, label onsets/durations that are NaN, inf, negative or
beyond a week, overlapping labels with different stages (same-stage overlaps are merged), a DREAMS
text excerpt whose sample count gives no whole rate over 30 min (pass ``sfreq``), a missing hypnogram,
a requested channel that is absent, an option the format does not take.
"""

from __future__ import annotations

import argparse
import inspect
import json
import re
import sys
from pathlib import Path

from psgvlm.io.readers.dreams import find_dreams, read_dreams
from psgvlm.io.readers.generic import find_generic, read_generic
from psgvlm.io.readers.isruc import find_isruc, read_isruc
from psgvlm.io.readers.mass import find_mass, read_mass
from psgvlm.io.readers.nsrr import find_shhs, read_shhs
from psgvlm.io.readers.prerau import find_prerau, read_prerau
from psgvlm.io.readers.sleepedf import find_sleepedf, read_sleepedf
from psgvlm.io.recording import Recording
from psgvlm.stages import stage_counts

READERS: dict = {
    "isruc": (find_isruc, read_isruc),
    "mass": (find_mass, read_mass),
    "shhs": (find_shhs, read_shhs),
    "sleepedf": (find_sleepedf, read_sleepedf),
    "dreams": (find_dreams, read_dreams),
    "prerau": (find_prerau, read_prerau),
    "generic": (find_generic, read_generic),
}

__all__ = ["READERS", "describe", "find_recordings", "info_main", "read_recording"]


def _registered(fmt: str, which: int, opts: dict, what: str):
    """The find (0) or read (1) function of ``fmt``, after checking ``opts`` against its keyword-only args."""
    if fmt not in READERS:
        raise ValueError(f"format {fmt!r} unknown; choose from {sorted(READERS)}")
    fn = READERS[fmt][which]
    allowed = [n for n, p in inspect.signature(fn).parameters.items() if p.kind is p.KEYWORD_ONLY]
    unknown = sorted(set(opts) - set(allowed))
    if unknown:
        raise ValueError(f"option(s) {unknown} not accepted by the {fmt!r} {what}; allowed: {allowed}")
    return fn


def read_recording(fmt: str, path, hypnogram=None, *, recording: str | None = None, subject: str | None = None,
                   **opts) -> Recording:
    """Read one recording in a dataset's native format.

    Parameters
    ----------
    fmt : str
        One of ``READERS``: isruc, mass, shhs, sleepedf, dreams, prerau, generic.
    path : str or Path
        The signal file (see each reader for the layout).
    hypnogram : str or Path, optional
        Label file; default found beside the signal as the dataset ships it.
    recording, subject : str, optional
        Ids to give the recording (a :func:`find_recordings` job carries them); default the reader's
        own, from the file name.
    **opts
        Reader options: ``channels`` (list of names to read), ``nonfinite`` ("raise"/"zero"),
        ``scorer`` and ``trim_tail_epochs`` (ISRUC), ``sfreq`` (DREAMS text, Prerau).

    Returns
    -------
    Recording
    """
    rec = _registered(fmt, 1, opts, "reader")(path, hypnogram, **opts)
    if recording is not None:
        rec.recording = recording
    if subject is not None:
        rec.subject = subject
    return rec


def _natural(p: Path):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(p))]


def find_recordings(fmt: str, input_dir, **opts) -> list[dict]:
    """Recordings in a dataset folder laid out as the dataset ships, as kwargs for :func:`read_recording`.

    Parameters
    ----------
    fmt : str
        One of ``READERS``.
    input_dir : str or Path
        Dataset root (searched recursively), or one signal file.
    **opts
        ``scorer`` for ISRUC (1 or 2); ``visit`` for SHHS (1, default, or 2); ``source`` for DREAMS
        ("txt", default, the six one-channel excerpts; "edf", excerpts with a full-PSG EDF).

    Returns
    -------
    list of dict
        ``{"path": str, "hypnogram": str | None, "recording": str, "subject": str}`` sorted naturally;
        ``hypnogram`` is None where no label file was found (reading such an entry raises for
        labelled formats; generic reads it unlabelled). Ids come from each file's path relative to
        ``input_dir`` (each reader's module says how), unique by construction; a one-file input has
        no ids (the reader names it).

    Raises
    ------
    ValueError
        If two files get one recording id (a layout no reader's rule separates, e.g. ``a/1/1.rec``
        beside ``a/1.rec``), naming both.
    """
    find = _registered(fmt, 0, opts, "finder")
    root = Path(input_dir)
    if not root.exists():
        raise FileNotFoundError(f"input {root} does not exist")
    if root.is_file():
        return [{"path": str(root), "hypnogram": None}]
    found = [{"path": str(sig), "hypnogram": str(hyp) if hyp is not None and hyp.is_file() else None,
              "recording": rec_id, "subject": subject}
             for sig, hyp, rec_id, subject in sorted(find(root, **opts), key=lambda entry: _natural(entry[0]))]
    if not found:
        raise FileNotFoundError(f"no {fmt} recordings found under {root}")
    seen: dict[str, str] = {}
    for job in found:
        other = seen.setdefault(job["recording"], job["path"])
        if other != job["path"]:
            raise ValueError(f"{other} and {job['path']} would both be recording {job['recording']!r} under {root}; "
                             f"rename one, or render their folders separately")
    return found


def describe(rec: Recording) -> dict:
    """A JSON-able summary of a recording: channels, rates, duration, stages, pairing."""
    return {
        "recording": rec.recording, "subject": rec.subject, "dataset": rec.dataset, "source": rec.source,
        "meta": rec.meta, "duration_s": round(rec.duration_s, 3), "onset_s": rec.onset_s,
        "n_epochs": rec.n_epochs,
        "channels": [{"name": c.name, "canonical": c.canonical, "modality": c.modality, "sfreq": c.sfreq,
                      "unit": c.unit, "n_samples": int(c.data.size)} for c in rec.channels],
        "stage_counts": stage_counts(rec.stages[: rec.n_epochs]) if rec.stages is not None else None,
        "pairing": rec.pairing,
    }


def info_main(argv: list[str] | None = None) -> int:
    """``psgvlm info --format F PATH [--hypnogram H] [--scorer N] [--json]``."""
    p = argparse.ArgumentParser(prog="psgvlm info", description="Read a recording; print channels, rates, "
                                "duration, stage counts and how labels were paired with the signal.")
    p.add_argument("--format", required=True, choices=sorted(READERS), help="the dataset layout the file is in")
    p.add_argument("path", help="the recording (signal file) to read")
    p.add_argument("--hypnogram", default=None,
                   help="label file (default: the one the format finds beside the recording)")
    p.add_argument("--scorer", type=int, default=None, help="ISRUC scorer (1 or 2)")
    p.add_argument("--sfreq", type=float, default=None, help="rate of a text signal (DREAMS txt, Prerau)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = p.parse_args(argv)
    opts = {}
    if args.scorer is not None:
        opts["scorer"] = args.scorer
    if args.sfreq is not None:
        opts["sfreq"] = args.sfreq
    try:
        rec = read_recording(args.format, args.path, args.hypnogram, **opts)
    except (ValueError, FileNotFoundError, TypeError) as err:
        print(f"psgvlm info: {err}", file=sys.stderr)
        return 1
    d = describe(rec)
    if args.json:
        print(json.dumps(d, indent=2, ensure_ascii=False))
        return 0
    print(f"{rec!r}\nsource: {rec.source}\nmeta: {rec.meta}")
    print(f"duration: {rec.duration_s:.1f} s ({rec.duration_s / 3600:.2f} h), onset_s {rec.onset_s:g}")
    width = max(len(c.name) for c in rec.channels)
    print(f"{len(rec.channels)} channels:")
    for c in rec.channels:
        print(f"  {c.name:<{width}}  -> {c.canonical:<12} {c.modality:<6} {c.sfreq:>8g} Hz  {c.unit}")
    if rec.stages is None:
        print("stages: none (unlabelled)")
    else:
        print(f"epochs: {rec.n_epochs}  stages: {d['stage_counts']}")
        print("pairing: " + json.dumps(rec.pairing, ensure_ascii=False))
    return 0
