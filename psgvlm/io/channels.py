"""Channel names: file label -> (canonical name, modality), per dataset, in one literal table.

``ALIASES`` maps every channel label we know from ISRUC-Sleep, MASS-SS3, SHHS-1, Sleep-EDF, DREAMS and
Nox clinical exports to a canonical name (``"C3"``, ``"LOC"``, ``"EMG"``...) and a modality (one of
:data:`psgvlm.io.recording.MODALITIES`). Labels are matched case-insensitively after collapsing spaces.
Unknown labels go through :func:`infer_modality`, a keyword heuristic, and keep their file label as
canonical name. When two labels of one recording map to the same canonical name (a Nox export has
both ``C3`` and ``C3-M2``), the alias listed first in ``ALIASES`` wins (referenced derivations are
listed before bare electrodes) and the other channel keeps its file label.

``DATASET_CHANNELS`` is the default rendering order per dataset (top band first):

- ``isruc``: the 12 channels of the PSG-image paper (6 EEG, 2 EOG, chin EMG, ECG, 2 leg EMG; all at
  200 Hz): F3, C3, O1, F4, C4, O2, LOC, ROC, EMG, ECG, LEG1, LEG2.
- ``mass``: the paper's MASS-SS3 montage: 20 EEG (10-20 system + Oz, referenced to CLE or LER),
  LOC, ROC, the three chin EMG and ECG (26 bands).
- ``shhs``: both EEG (C4-A1 "EEG", C3-A2 "EEG(sec)"), both EOG, chin EMG, ECG and the two effort belts
  (the paper lists EEG, EOG, EMG, respiratory effort and ECG).
- ``sleepedf``: Fpz-Cz, Pz-Oz, the horizontal EOG, submental EMG (its 100 Hz signals + EMG).
- ``dreams``: the excerpt EDF's Fp1, C3, O1, both EOG, chin EMG and ECG (the text excerpts hold one
  EEG channel: see :func:`pick_default_channels`).
- ``prerau``: its single EEG channel.

:func:`rank_channels` is the one channel-picking rule (EEG central first, then frontal, then
occipital; see :data:`PREFERENCE`): the default rendering channels of other recordings, the bands
``psgvlm stage`` fills and the channels YASA reads all come from it.
"""

from __future__ import annotations

import re

# -- aliases ---------------------------------------------------------------------------------------
# Order matters only for collisions inside one recording: earlier entries win the canonical name.
_ISRUC: dict[str, tuple[str, str]] = {
    # ISRUC-Sleep subgroups 1-3: referenced to A1/A2 in most recordings, M1/M2 in others, bare
    # electrodes in a few of subgroup 1 (checked against public ISRUC loaders).
    "F3-A2": ("F3", "EEG"), "F3-M2": ("F3", "EEG"),
    "C3-A2": ("C3", "EEG"), "C3-M2": ("C3", "EEG"),
    "O1-A2": ("O1", "EEG"), "O1-M2": ("O1", "EEG"),
    "F4-A1": ("F4", "EEG"), "F4-M1": ("F4", "EEG"),
    "C4-A1": ("C4", "EEG"), "C4-M1": ("C4", "EEG"),
    "O2-A1": ("O2", "EEG"), "O2-M1": ("O2", "EEG"),
    "LOC-A2": ("LOC", "EOG"), "E1-M2": ("LOC", "EOG"),
    "ROC-A1": ("ROC", "EOG"), "E2-M1": ("ROC", "EOG"),
    "X1": ("EMG", "EMG"),  # chin EMG
    "X2": ("ECG", "ECG"),
    "X3": ("LEG1", "EMG"),  # leg EMG 1
    "X4": ("LEG2", "EMG"),  # leg EMG 2
    "X5": ("SNORE", "OTHER"),
    "X6": ("AIRFLOW", "RESP"),
    "X7": ("ABDO", "RESP"),  # abdominal effort
    "X8": ("THOR", "RESP"),  # thoracic effort
    "SaO2": ("SpO2", "SPO2"),
    "DC3": ("DC3", "OTHER"), "DC8": ("DC8", "OTHER"),
}

_MASS_EEG = ("Fp1", "Fp2", "Fpz", "F7", "F3", "Fz", "F4", "F8", "T3", "C3", "Cz", "C4", "T4", "T5",
             "P3", "Pz", "P4", "T6", "O1", "Oz", "O2", "A2")
_MASS: dict[str, tuple[str, str]] = {
    # MASS: "EEG <electrode>-CLE" (computed linked ears) or "-LER" (linked ear reference).
    **{f"EEG {e}-{ref}": (e, "EEG") for ref in ("CLE", "LER") for e in _MASS_EEG},
    "EOG Left Horiz": ("LOC", "EOG"), "EOG Right Horiz": ("ROC", "EOG"),
    "EMG Chin1": ("EMG", "EMG"), "EMG Chin2": ("EMG2", "EMG"), "EMG Chin3": ("EMG3", "EMG"),
    "ECG ECGI": ("ECG", "ECG"), "ECG ECGII": ("ECG2", "ECG"),
    "Resp Belt Thor": ("THOR", "RESP"), "Resp Belt Abdo": ("ABDO", "RESP"),
    "Resp Nasal": ("AIRFLOW", "RESP"), "Resp Cannula": ("NASAL", "RESP"),
    "SaO2 SaO2": ("SpO2", "SPO2"),
}

_SHHS: dict[str, tuple[str, str]] = {
    # SHHS-1 (NSRR EDFs): EEG(sec) is C3-A2 (plain "EEG", C4-A1, is in DATASET_ALIASES["shhs"]: in other
    # files "EEG" names no electrode); spellings vary between sites.
    "EEG(sec)": ("C3", "EEG"), "EEG(SEC)": ("C3", "EEG"), "EEG sec": ("C3", "EEG"),
    "EOG(L)": ("LOC", "EOG"), "EOG(R)": ("ROC", "EOG"),
    "EMG": ("EMG", "EMG"), "ECG": ("ECG", "ECG"),
    "THOR RES": ("THOR", "RESP"), "ABDO RES": ("ABDO", "RESP"),
    "EEG (sec)": ("C3", "EEG"),
    "AIRFLOW": ("AIRFLOW", "RESP"), "NEW AIR": ("NASAL", "RESP"), "NEWAIR": ("NASAL", "RESP"),
    "new A/F": ("NASAL", "RESP"),
    "SaO2": ("SpO2", "SPO2"), "SpO2": ("SpO2", "SPO2"), "H.R.": ("HR", "OTHER"), "HR": ("HR", "OTHER"),
    "POSITION": ("POSITION", "OTHER"), "LIGHT": ("LIGHT", "OTHER"), "OX stat": ("OX_STAT", "OTHER"),
    "OX STAT": ("OX_STAT", "OTHER"), "SOUND": ("SNORE", "OTHER"), "AUX": ("AUX", "OTHER"),
}

_SLEEPEDF: dict[str, tuple[str, str]] = {
    "EEG Fpz-Cz": ("Fpz-Cz", "EEG"), "EEG Pz-Oz": ("Pz-Oz", "EEG"),
    "EOG horizontal": ("EOG", "EOG"), "EMG submental": ("EMG", "EMG"),
    "Resp oro-nasal": ("AIRFLOW", "RESP"), "Temp rectal": ("TEMP", "OTHER"),
    "Event marker": ("EVENT", "OTHER"),
}

_DREAMS: dict[str, tuple[str, str]] = {
    # DREAMS excerpt EDF (50 Hz): referenced to A1; EOG1 taken as the left eye, EOG2 the right.
    "C3-A1": ("C3", "EEG"), "CZ-A1": ("Cz", "EEG"), "O1-A1": ("O1", "EEG"), "FP1-A1": ("Fp1", "EEG"),
    "EOG1-A1": ("LOC", "EOG"), "EOG2-A1": ("ROC", "EOG"),
    "EMG1": ("EMG", "EMG"), "SAO2": ("SpO2", "SPO2"),
    "NAF1": ("AIRFLOW", "RESP"), "VAB": ("ABDO", "RESP"), "VTH": ("THOR", "RESP"),
    "POS": ("POSITION", "OTHER"), "PHONO": ("SNORE", "OTHER"), "PR": ("HR", "OTHER"),
    "PULSE": ("PULSE", "OTHER"),
}

_NOX: dict[str, tuple[str, str]] = {
    # Nox A1 clinical exports: chin EMG electrodes are "1", "2", "F"; their derivations "1-2"...
    "1-2": ("EMG", "EMG"), "1-F": ("EMG", "EMG"), "2-F": ("EMG", "EMG"),
    "1": ("CHIN1", "EMG"), "2": ("CHIN2", "EMG"), "F": ("CHINF", "EMG"),
    "Left Leg": ("LEG1", "EMG"), "Right Leg": ("LEG2", "EMG"),
    "Abdomen": ("ABDO", "RESP"), "Chest": ("THOR", "RESP"), "Airflow": ("AIRFLOW", "RESP"),
    "Nasal Pressure": ("NASAL", "RESP"), "Saturation": ("SpO2", "SPO2"),
}

# Bare electrodes and common montage spellings of any EDF (after all dataset tables, so that a
# referenced derivation in the same file wins the canonical name).
_COMMON: dict[str, tuple[str, str]] = {
    **{e: (e, "EEG") for e in ("F3", "C3", "O1", "F4", "C4", "O2", "Fz", "Cz", "Pz", "Oz", "Fp1", "Fp2",
                                "Fpz", "P3", "P4", "T3", "T4", "T5", "T6", "F7", "F8", "M1", "M2", "A1", "A2")},
    "LOC": ("LOC", "EOG"), "ROC": ("ROC", "EOG"), "E1": ("LOC", "EOG"), "E2": ("ROC", "EOG"),
    "EOG L": ("LOC", "EOG"), "EOG R": ("ROC", "EOG"), "EOG(L)-PG1": ("LOC", "EOG"),
    "Chin": ("EMG", "EMG"), "Chin EMG": ("EMG", "EMG"), "EMG Chin": ("EMG", "EMG"),
    "ECG I": ("ECG", "ECG"), "EKG": ("ECG", "ECG"), "ECG II": ("ECG2", "ECG"),
}

ALIASES: dict[str, tuple[str, str]] = {**_ISRUC, **_MASS, **_SHHS, **_SLEEPEDF, **_DREAMS, **_NOX, **_COMMON}
# Labels whose meaning depends on the dataset: consulted before ALIASES when the reader names it.
DATASET_ALIASES: dict[str, dict[str, tuple[str, str]]] = {
    "shhs": {"EEG": ("C4", "EEG"), "EEG2": ("C3", "EEG"), "EEG 2": ("C3", "EEG")},
    # some ISRUC recordings label the chin EMG "24" (its input number) instead of X1
    "isruc": {"24": ("EMG", "EMG")},
}


def _key(label: str) -> str:
    return re.sub(r"\s+", " ", label.strip()).casefold()


_LOOKUP: dict[str, tuple[int, str, str]] = {}
for _rank, (_label, (_canon, _mod)) in enumerate(ALIASES.items()):
    _LOOKUP.setdefault(_key(_label), (_rank, _canon, _mod))

# -- modality heuristic for labels not in ALIASES ---------------------------------------------------
_NON_SIGNAL_UNITS = {"ohm", "kohm", "%", "bpm", "g", "g/s", "lx", "s", "db", "h", "deg", "°", "tr/min", "pa"}
_RULES: tuple[tuple[str, str], ...] = (
    # (regex on the case-folded label, modality); first match wins. Impedance first: a "C3 Impédance"
    # channel is a measurement of the electrode, not EEG.
    (r"imp[ée]d|impedance|\(imp\)|\bimp\b", "OTHER"),
    (r"spo2|sao2|\bsat|oxim|\bsp02", "SPO2"),
    (r"\beog|\bloc\b|\broc\b|\be[12]\b|e[12]-m[12]|eye|horiz|vert", "EOG"),
    (r"\becg|\bekg|\bcardi", "ECG"),
    (r"\bemg|chin|menton|submental|\bleg\b|jambe|tibial|\bx1\b|\bx3\b|\bx4\b", "EMG"),
    (r"resp|thor|abdo|chest|thorax|airflow|\bflow|nasal|pressure|\brip\b|cannula|effort|inductance|"
     r"\bbelt|d[ée]bit|oro", "RESP"),
    (r"\beeg|^(fp|af|f|fc|ft|c|cp|t|tp|p|po|o|a|m)[0-9z]{1,2}(\s*[-:]\s*(a|m)[12z]?|[-:][a-z]{1,3}[0-9z]*)?$|"
     r"^[a-z]{1,3}[0-9z]{1,2}-(a|m)[12]$", "EEG"),
)


def infer_modality(label: str, unit: str | None = None) -> str:
    """Guess a channel's modality from its label (and physical unit when given).

    Parameters
    ----------
    label : str
        Channel label as written in the file, any language or encoding (e.g. ``"C3 Impédance"``).
    unit : str, optional
        Physical dimension from the EDF header; non-voltage units (Ohm, %, bpm, g...) rule out
        EEG/EOG/EMG/ECG.

    Returns
    -------
    modality : str
        One of EEG, EOG, EMG, ECG, RESP, SPO2, OTHER.
    """
    key = _key(label)
    unit_key = (unit or "").strip().casefold()
    for pattern, modality in _RULES:
        if re.search(pattern, key):
            if modality in ("EEG", "EOG", "EMG", "ECG") and unit_key in _NON_SIGNAL_UNITS:
                return "OTHER"
            if modality == "SPO2" and unit_key not in ("", "%"):
                return "OTHER"
            return modality
    return "OTHER"


# Any 10-20 electrode referenced to a mastoid/ear ("EEG Cz-M1", "P4:A1", "Fp2-Ref"): the electrode.
_ELECTRODES = {e.casefold(): e for e in (*_MASS_EEG, "M1", "M2", "A1", "AF3", "AF4", "FC1", "FC2", "FC5", "FC6",
                                         "CP1", "CP2", "CP5", "CP6", "PO3", "PO4", "T7", "T8", "P7", "P8")}
_REFERENCED = re.compile(r"^(?:eeg\s*)?([a-z]{1,2}[0-9z]{1,2})\s*[-:/]\s*(?:a1|a2|m1|m2|cle|ler|ref|avg|\(?a1\+a2\)?)$")


def lookup(label: str, unit: str | None = None, *, dataset: str | None = None) -> tuple[str, str, int]:
    """``(canonical, modality, rank)`` for one label; unknown labels keep their label, rank = +inf.

    ``dataset`` (a reader name) selects its :data:`DATASET_ALIASES` first (SHHS "EEG" is C4).
    """
    special = {_key(k): v for k, v in DATASET_ALIASES.get(dataset or "", {}).items()}
    hit = (-1, *special[_key(label)]) if _key(label) in special else _LOOKUP.get(_key(label))
    if hit is None:
        m = _REFERENCED.match(_key(label))
        if m and m.group(1) in _ELECTRODES:
            hit = (10**6, _ELECTRODES[m.group(1)], "EEG")
    if hit is not None:
        rank, canonical, modality = hit
        unit_key = (unit or "").strip().casefold()
        if modality in ("EEG", "EOG", "EMG", "ECG") and unit_key in _NON_SIGNAL_UNITS:
            return label.strip(), "OTHER", 10**9  # e.g. an impedance trace named like the electrode
        return canonical, modality, rank
    return label.strip(), infer_modality(label, unit), 10**9


def canonical_names(labels: list[str], units: list[str] | None = None, *,
                    dataset: str | None = None) -> list[tuple[str, str]]:
    """``(canonical, modality)`` per label of one recording, with collisions resolved.

    Parameters
    ----------
    labels : list of str
        Channel labels in file order (must be unique; the readers check that first).
    units : list of str, optional
        Physical dimensions, same order.
    dataset : str, optional
        Reader name, for :data:`DATASET_ALIASES`.

    Returns
    -------
    names : list of (str, str)
        Unique canonical names and modalities in file order. When two labels map to the same
        canonical name, the earlier alias in :data:`ALIASES` gets it and the other keeps its label
        (suffixed ``" #<index>"`` if even that is taken).
    """
    units = units if units is not None else [None] * len(labels)
    found = [lookup(lab, u, dataset=dataset) for lab, u in zip(labels, units)]
    order = sorted(range(len(labels)), key=lambda i: (found[i][2], i))
    taken: set[str] = set()
    out: list[tuple[str, str] | None] = [None] * len(labels)
    for i in order:
        canonical, modality, _ = found[i]
        for candidate in (canonical, labels[i].strip(), f"{labels[i].strip()} #{i}"):
            if candidate not in taken:
                taken.add(candidate)
                out[i] = (candidate, modality)
                break
    return out  # type: ignore[return-value]


# -- referenced derivations from bare electrodes --------------------------------------------------------
# A night that stores bare electrodes where its dataset's others store derivations (ISRUC subgroup-1
# subject 40: F3, C3, O1, F4, C4, O2, LOC, ROC, A1, A2) is re-referenced the way the others are: left
# electrodes to the right ear/mastoid, right ones to the left (F3-A2, C4-A1, LOC-A2, ROC-A1; AASM's
# F4-M1, C4-M1, O2-M1, E1-M2, E2-M1). Each canonical name lists the references tried, in order.
CONTRALATERAL_REFERENCE: dict[str, tuple[str, ...]] = {
    **{e: ("A2", "M2") for e in ("F3", "C3", "O1", "LOC")},
    **{e: ("A1", "M1") for e in ("F4", "C4", "O2", "ROC")},
}


def derivations(labels: list[str], names: list[tuple[str, str]]) -> dict[int, tuple[int, str]]:
    """Bare electrodes of one recording that can be re-referenced, by :data:`CONTRALATERAL_REFERENCE`.

    Parameters
    ----------
    labels : list of str
        Channel labels in file order (stripped, unique).
    names : list of (str, str)
        :func:`canonical_names` of ``labels``.

    Returns
    -------
    dict
        ``{index of the bare electrode: (index of its reference, derived label such as "F3-A2")}`` for
        every channel whose canonical name is in the table, whose label names no reference (no "-")
        and whose reference electrode is in the recording.
    """
    by_key = {_key(lab): i for i, lab in enumerate(labels)}
    out = {}
    for i, (lab, (canonical, _)) in enumerate(zip(labels, names)):
        if canonical not in CONTRALATERAL_REFERENCE or "-" in lab:
            continue
        ref = next((by_key[_key(r)] for r in CONTRALATERAL_REFERENCE[canonical] if _key(r) in by_key), None)
        if ref is not None:
            out[i] = (ref, f"{lab}-{labels[ref]}")
    return out


# -- default channel orders ------------------------------------------------------------------------
DATASET_CHANNELS: dict[str, list[str]] = {
    "isruc": ["F3", "C3", "O1", "F4", "C4", "O2", "LOC", "ROC", "EMG", "ECG", "LEG1", "LEG2"],
    "mass": ["Fp1", "Fp2", "F7", "F3", "Fz", "F4", "F8", "T3", "C3", "Cz", "C4", "T4", "T5", "P3", "Pz",
             "P4", "T6", "O1", "Oz", "O2", "LOC", "ROC", "EMG", "EMG2", "EMG3", "ECG"],
    "shhs": ["C4", "C3", "LOC", "ROC", "EMG", "ECG", "THOR", "ABDO"],
    "sleepedf": ["Fpz-Cz", "Pz-Oz", "EOG", "EMG"],
    "dreams": ["Fp1", "C3", "O1", "LOC", "ROC", "EMG", "ECG"],
    "prerau": ["EEG"],
}

# Datasets whose default order is their recording montage: every night of them renders every band of
# it, blank where the night lacks the channel (ISRUC subgroup-1 subject 8 has no F3/F4), so bands sit
# in the same place in every image. Other formats take the channels the first recording has.
MONTAGE_DATASETS: tuple[str, ...] = ("isruc", "mass", "shhs", "sleepedf")

# -- the one channel-picking rule -------------------------------------------------------------------
# Preference per modality, best first. EEG: central derivations first (C3, C4, Cz: AASM's scoring
# rules rest on the central EEG, spindles and K-complexes are largest there, and YASA's classifier was
# trained on it), then frontal (slow waves and K-complexes: F3, F4, Fz, Sleep-EDF's Fpz-Cz, Fp1, Fp2),
# then occipital (wake alpha: O1, O2, Oz, Sleep-EDF's Pz-Oz), then parietal Pz, then a channel called
# just "EEG" (Prerau, SHHS files that name no electrode). EOG: left then right outer canthus.
PREFERENCE: dict[str, tuple[str, ...]] = {
    "EEG": ("C3", "C4", "Cz", "F3", "F4", "Fz", "Fpz-Cz", "Fp1", "Fp2", "O1", "O2", "Oz", "Pz-Oz", "Pz",
            "EEG"),
    "EOG": ("LOC", "ROC", "EOG"),
    "EMG": ("EMG",),
}
MIN_AUTO_SFREQ = 50.0  # Hz; below this a channel is a trend (impedance, rate), never auto-picked


def rank_channels(channels, modality: str, *, exclude=()) -> list[str]:
    """The one channel-picking rule: a recording's channels of one modality, best first.

    Parameters
    ----------
    channels : iterable of psgvlm.io.recording.Channel
        Anything with ``canonical``, ``modality`` and ``sfreq`` (Hz) attributes, in file order.
    modality : str
        EEG, EOG, EMG, ... (:data:`psgvlm.io.recording.MODALITIES`).
    exclude : iterable of str
        Canonical names already taken (e.g. by another band).

    Returns
    -------
    names : list of str
        Canonical names of the channels of ``modality`` sampled at >= 50 Hz, not in ``exclude``: those
        in :data:`PREFERENCE` first, in its order (EEG central, then frontal, then occipital; EOG LOC,
        ROC; chin EMG), then the others in file order.
    """
    pref = PREFERENCE.get(modality, ())
    taken = set(exclude)
    names = [c.canonical for c in channels
             if c.modality == modality and c.sfreq >= MIN_AUTO_SFREQ and c.canonical not in taken]
    return sorted(names, key=lambda n: pref.index(n) if n in pref else len(pref))


def pick_default_channels(rec, *, max_channels: int | None = None) -> list[str]:
    """Channels to render for a recording: the dataset's default order, else EEG/EOG/EMG auto-detected.

    Parameters
    ----------
    rec : psgvlm.io.recording.Recording
    max_channels : int, optional
        Upper bound on the number of channels returned (no bound by default: MASS has 26).

    Returns
    -------
    names : list of str
        Canonical names present in ``rec``, top band first. With the dataset's default order when
        all of it is present; otherwise by :func:`rank_channels`: up to 6 EEG channels named in
        :data:`PREFERENCE` (central first, then frontal, then occipital; any EEG channels when none is
        named there), then up to 2 EOG (LOC, ROC first), then one chin EMG, all sampled at >= 50 Hz.

    Raises
    ------
    ValueError
        When the recording has no EEG, EOG or EMG channel sampled at >= 50 Hz.
    """
    if max_channels is not None and max_channels < 1:
        raise ValueError(f"max_channels={max_channels!r} must be >= 1")
    present = set(rec.ch_names)
    default = DATASET_CHANNELS.get(rec.dataset)
    if default and all(name in present for name in default):
        return list(default[:max_channels])
    eeg = rank_channels(rec.channels, "EEG")
    eeg = [n for n in eeg if n in PREFERENCE["EEG"]][:6] or eeg[:6]
    picked = (eeg + rank_channels(rec.channels, "EOG")[:2] + rank_channels(rec.channels, "EMG")[:1])
    picked = picked[:max_channels]  # [:None] keeps all
    if not picked:
        raise ValueError(
            f"recording {rec.recording!r}: no EEG/EOG/EMG channel sampled at >= {MIN_AUTO_SFREQ:g} Hz; "
            f"channels: {[(c.canonical, c.modality, c.sfreq) for c in rec.channels]}"
        )
    return picked
