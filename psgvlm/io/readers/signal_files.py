"""Signal files -> :class:`psgvlm.io.recording.Channel` lists: EDF/EDF+/BDF and one-number-per-line text.

EDF, EDF+ and BDF are read with edfio, which keeps every signal at its own sampling rate (mne would
upsample all of them to the highest rate) and decodes only the signals asked for. Every format
reader turns its signals into channels through :func:`channels_from_signals`, which checks them:
duplicate labels, requested channels that are absent, NaN/inf samples (unless ``nonfinite="zero"``)
and empty signals are refused with an error naming the file and the value.

Units: voltage channels are converted to microvolts whatever the header says (``V``, ``mV``, ``uV``,
and upper-case spellings such as DREAMS' ``UV``, which means microvolts, not volts). EEG/EOG/EMG/ECG
channels with an empty or unknown unit are taken as microvolts and listed in
``meta["unit_assumed_uv"]``.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import warnings
from pathlib import Path

import numpy as np

from psgvlm.io.channels import canonical_names, derivations
from psgvlm.io.edf import edf_start, open_edf
from psgvlm.io.recording import Channel, LazyChannel

_UV_PER_UNIT = {"uv": 1.0, "µv": 1.0, "μv": 1.0, "mv": 1e3, "v": 1e6, "nv": 1e-3}
_ELECTRO = ("EEG", "EOG", "EMG", "ECG")


def _uv_factor(unit: str) -> float | None:
    return _UV_PER_UNIT.get(unit.strip().replace(" ", "").casefold())


def _parse_patient(patient: str, start: dt.date | None) -> dict:
    """Age and sex from an EDF patient field; the name and birth date are read, never returned."""
    meta: dict = {}
    parts = patient.split()
    if len(parts) >= 4 and parts[1] in ("M", "F", "X"):  # EDF+: code sex birthdate name [additional]
        if parts[1] in ("M", "F"):
            meta["sex"] = parts[1]
        try:
            birth = dt.datetime.strptime(parts[2], "%d-%b-%Y").date()
        except ValueError:
            birth = None
        if birth is not None and start is not None:
            meta["age"] = start.year - birth.year - ((start.month, start.day) < (birth.month, birth.day))
    text = patient.casefold()
    if "sex" not in meta:
        if re.search(r"(?<![a-z])(female|woman)(?![a-z])", text):
            meta["sex"] = "F"
        elif re.search(r"(?<![a-z])(male|man)(?![a-z])", text):
            meta["sex"] = "M"
    if "age" not in meta:
        m = re.search(r"(\d{1,3})\s*(?:yrs?|years?)\b", text)
        if m:
            meta["age"] = int(m.group(1))
        elif start is not None:  # free-text birth date (DREAMS: "man - 28/03/1957 - ...")
            m = re.search(r"\b(\d{2})/(\d{2})/(\d{4})\b", text)
            if m:
                try:
                    birth = dt.date(int(m.group(3)), int(m.group(2)), int(m.group(1)))
                except ValueError:
                    birth = None
                if birth is not None and birth < start:
                    meta["age"] = start.year - birth.year - ((start.month, start.day) < (birth.month, birth.day))
    if "age" in meta and not 0 <= meta["age"] <= 120:
        del meta["age"]
    return meta


def channels_from_signals(
    source: Path, labels: list[str], sfreqs: list[float], units: list[str], getters: list,
    *, channels: list[str] | None, nonfinite: str, meta: dict, dataset: str | None = None,
    rereference: bool = False, lengths: list[int] | None = None,
) -> list[Channel]:
    """Channels (canonical names, microvolts) from per-signal data getters, checking the input.

    Parameters
    ----------
    source : Path
        The signal file, for messages.
    labels, units : list of str
        Signal labels and physical units as written in the file, one per signal.
    sfreqs : list of float
        Sampling rates (Hz), one per signal.
    getters : list of callable
        ``getters[i]()`` returns signal ``i``'s samples, (n_times,); only requested signals are read.
    channels : list of str or None
        Canonical or file names to keep, in that order; all when None.
    nonfinite : {"raise", "zero"}
        What to do with NaN/inf samples.
    meta : dict
        Notes are added to it (``unit_assumed_uv``, ``unit_warnings``, ``read_warnings``,
        ``nonfinite_zeroed``).
    dataset : str, optional
        Reader name, for dataset-specific channel aliases.
    rereference : bool
        Replace bare electrodes (``F3`` beside ``A2``) by their contralateral derivations (``F3-A2`` =
        F3 - A2, canonical ``F3``; :func:`psgvlm.io.channels.derivations`) before channels are picked;
        ``meta["derived_channels"]`` says which (``{"F3-A2": "F3 - A2"}``).
    lengths : list of int, optional
        Samples per signal (from a header): the channels are :class:`~psgvlm.io.recording.LazyChannel`,
        each read and checked the first time its samples are used, not here.

    Returns
    -------
    list of Channel
        float32 samples; voltages in microvolts.
    """
    if nonfinite not in ("raise", "zero"):
        raise ValueError(f"nonfinite={nonfinite!r}; allowed: 'raise', 'zero'")
    stripped = [lab.strip() for lab in labels]
    dup = sorted({lab for lab in stripped if stripped.count(lab) > 1})
    if dup:
        raise ValueError(f"{source}: duplicate channel names {dup} in {stripped}")
    names = canonical_names(stripped, units, dataset=dataset)
    if rereference:
        stripped, sfreqs, units, getters, names = _rereference(source, stripped, sfreqs, units, getters, names,
                                                               meta=meta, dataset=dataset)
    wanted = range(len(stripped))
    if channels is not None:
        index = {}
        for i, (canon, _) in enumerate(names):
            index.setdefault(canon, i)
        for i, lab in enumerate(stripped):
            index.setdefault(lab, i)
        missing = [c for c in channels if c not in index]
        if missing:
            raise ValueError(
                f"{source}: requested channels {missing} not in the recording; available: "
                f"{[n for n, _ in names]} (file labels {stripped})"
            )
        wanted = [index[c] for c in channels]
    if lengths is not None and len(lengths) != len(labels):
        raise ValueError(f"{source}: {len(lengths)} signal lengths for {len(labels)} signals")
    out = []
    for i in wanted:
        canon, modality = names[i]
        unit = units[i].strip()
        factor = _uv_factor(unit)
        if factor is None and modality in _ELECTRO:
            meta.setdefault("unit_assumed_uv", []).append(f"{stripped[i]} ({unit!r})")
        read = functools.partial(_read_samples, source, stripped[i], modality, unit, factor, getters[i], nonfinite, meta)
        kind = dict(name=stripped[i], canonical=canon, modality=modality, sfreq=float(sfreqs[i]),
                    unit="uV" if factor is not None or modality in _ELECTRO else unit)
        if lengths is not None and lengths[i] > 0:  # (a derived channel keeps its electrode's place and length)
            out.append(LazyChannel(**kind, n_times=lengths[i], load=read))
        else:
            out.append(Channel(**kind, data=read()))
    # Recording.channel(name) matches canonical or file names in channel order. A bare electrode
    # labelled "C3" beside "C3-M2" (canonical "C3") would shadow it, so such a channel is moved right
    # after the channel whose canonical name it carries; every other channel keeps file order.
    owner = {c.canonical: k for k, c in enumerate(out)}
    keys = [max(k, owner[c.name] + 0.5) if owner.get(c.name, k) != k else k for k, c in enumerate(out)]
    return [out[k] for k in sorted(range(len(out)), key=keys.__getitem__)]


def _read_samples(source, label: str, modality: str, unit: str, factor: float | None, getter, nonfinite: str,
                  meta: dict) -> np.ndarray:
    """One signal's samples as float32 (microvolts for a voltage, ``factor`` per header unit), checked as
    :func:`channels_from_signals` says; reading notes go into ``meta``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        x = np.asarray(getter(), dtype=np.float64)
    for w in caught:  # e.g. edfio: "digital minimum equals digital maximum ... uncalibrated"
        meta.setdefault("read_warnings", []).append(str(w.message))
    if factor is not None and factor != 1.0:
        x = x * factor
    if x.size == 0:
        raise ValueError(f"{source}: channel {label!r} has no samples")
    x = x.astype(np.float32)
    lo, hi = x.min(), x.max()  # NaN and inf show in the extremes: no per-sample masks of a whole night
    bad = None if np.isfinite(lo) and np.isfinite(hi) else ~np.isfinite(x)
    if modality in _ELECTRO and bad is None:  # a voltage, in microvolts
        peak = float(max(hi, -lo))
        if peak > 1e5:  # > 100 mV: no scalp or skin potential is that large; the header unit is suspect
            meta.setdefault("unit_warnings", []).append(
                f"{label}: peak {peak:.0f} uV from header unit {unit!r} is implausible")
    if bad is not None:
        n_bad = int(bad.sum())
        if nonfinite == "raise":
            raise ValueError(
                f"{source}: channel {label!r} has {n_bad} NaN/inf samples of {x.size} "
                f"(psgvlm render --nonfinite zero, or nonfinite='zero' in Python, replaces them with 0)"
            )
        x[bad] = 0.0
        meta.setdefault("nonfinite_zeroed", {})[label] = n_bad
    return x


def _rereference(source, labels, sfreqs, units, getters, names, *, meta: dict, dataset):
    """The signal lists with each bare electrode replaced by its derivation (see ``rereference``)."""
    labels, sfreqs, units, getters = list(labels), list(sfreqs), list(units), list(getters)
    done = {}
    for i, (ref, derived) in derivations(labels, names).items():
        if sfreqs[i] != sfreqs[ref] or units[i].strip() != units[ref].strip():
            meta.setdefault("read_warnings", []).append(
                f"{labels[i]} not re-referenced to {labels[ref]}: rates {sfreqs[i]:g}/{sfreqs[ref]:g} Hz, units "
                f"{units[i]!r}/{units[ref]!r} differ")
            continue
        done[derived] = f"{labels[i]} - {labels[ref]}"
        getters[i] = (lambda a=getters[i], b=getters[ref]: np.asarray(a(), np.float64) - np.asarray(b(), np.float64))
        labels[i] = derived
    if not done:
        return labels, sfreqs, units, getters, names
    if len(set(labels)) < len(labels):  # "F3-A2" both stored and derived: keep the stored one
        raise ValueError(f"{source}: derived channel names collide with stored ones in {labels}")
    meta["derived_channels"] = done
    return labels, sfreqs, units, getters, canonical_names(labels, units, dataset=dataset)


def read_edf_signals(path, *, channels: list[str] | None = None, nonfinite: str = "raise",
                     dataset: str | None = None, rereference: bool = False,
                     lazy: bool = False) -> tuple[list[Channel], dict, object]:
    """Read an EDF/EDF+/BDF file into Channels (own rates, microvolts) and subject metadata.

    Parameters
    ----------
    path : str or Path
        The file (any extension: ISRUC's ``.rec`` is an EDF).
    channels : list of str, optional
        Canonical or file names to read (in that order); all signals when None.
    nonfinite : {"raise", "zero"}
        What to do with NaN/inf samples.
    dataset : str, optional
        Reader name, for dataset-specific channel aliases (SHHS "EEG" is C4).
    rereference : bool
        Derive referenced channels from bare electrodes (:func:`channels_from_signals`).
    lazy : bool
        Read each channel's samples (and check them) the first time they are used
        (:class:`~psgvlm.io.recording.LazyChannel`): a caller that uses a few channels of a night reads
        only those. EDF samples are integers scaled by the checked header, so they are always finite.

    Returns
    -------
    channels : list of Channel
    meta : dict
        ``age``/``sex`` when the header gives them, unit notes.
    edf : edfio.Edf
        The open file (annotations, start time).
    """
    path = Path(path)
    edf = open_edf(path)
    signals = list(edf.signals)
    if not signals:
        raise ValueError(f"{path}: EDF holds no signals (an annotation-only file? pass it as the hypnogram)")
    start = edf_start(edf)
    try:
        patient_field = str(edf.local_patient_identification)
    except Exception:  # malformed field
        patient_field = ""
    meta = _parse_patient(patient_field, start.date() if start else None)
    chans = channels_from_signals(
        path, [s.label for s in signals], [s.sampling_frequency for s in signals],
        [s.physical_dimension for s in signals], [lambda s=s: s.data for s in signals],
        channels=channels, nonfinite=nonfinite, meta=meta, dataset=dataset, rereference=rereference,
        lengths=[s.samples_per_data_record * edf.num_data_records for s in signals] if lazy else None,
    )
    return chans, meta, edf


def read_numbers(path: Path, *, skip_header: bool) -> np.ndarray:
    """Samples of a text signal, one number per line after an optional header line (NaN/inf allowed:
    :func:`channels_from_signals` checks them per channel)."""
    lines = path.read_text(encoding="utf-8", errors="replace").split("\n", 1 if skip_header else 0)
    body = lines[-1] if skip_header else lines[0]
    try:
        return np.array(body.split(), dtype=np.float64)
    except ValueError as err:
        raise ValueError(f"{path}: expected one number per line: {err}") from err
