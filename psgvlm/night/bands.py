"""Which recording channel each band of the run's image draws: requested, by role, or automatic.

The run's image has one band per channel of the dataset it was trained on (its
``meta.json`` channel order). A :class:`ChannelRequest` says what the user chose: ``--channels`` one
recording channel per band (``-`` leaves a band flat) or ``band=channel`` pairs, and the roles
``--eeg/--eog/--emg`` (which also choose the reference stagers' channels): a role's channels go to the
band of the same name, else of the same scalp region (C4 -> C3), else the first free band of that
modality. Bands left over are filled automatically (:func:`auto_channels`): the recording's channel of
the same canonical name, else the best unused channel of the band's modality by the one
channel-picking rule (:func:`psgvlm.io.channels.rank_channels`), else left flat. :func:`channel_choices`
says how each band was filled, with the file's own channel label; every automatic substitution (a band
drawn from a channel of another name, or left flat) is a warning of the night.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EMPTY_BAND = "-"  # --channels value that leaves a band flat


def _band_modality(band: str, modalities: dict[str, str]) -> str:
    if band in modalities:
        return modalities[band]
    from psgvlm.io.channels import lookup

    return lookup(band)[1]


def auto_channels(rec, bands: list[str], modalities: dict[str, str],
                  given: dict[int, str | None] | None = None) -> list[str | None]:
    """The recording's channel (canonical name) for each band, or None for a band left flat.

    Bands in ``given`` (band index -> channel or None) keep what the user chose; the others take the
    channel of the same canonical name (sampled at >= 50 Hz), then the best unused channel of the band's
    modality by :func:`psgvlm.io.channels.rank_channels` (EEG central, then frontal, then occipital;
    EOG LOC, ROC first).
    """
    from psgvlm.io.channels import MIN_AUTO_SFREQ, rank_channels

    given = given or {}
    out: list[str | None] = [given.get(i) for i in range(len(bands))]
    used = {m for m in out if m is not None}
    for i, band in enumerate(bands):
        if i not in given and band not in used and band in rec.ch_names \
                and rec.channel(band).sfreq >= MIN_AUTO_SFREQ:
            out[i] = band
            used.add(band)
    for i, band in enumerate(bands):
        if out[i] is None and i not in given:
            candidates = rank_channels(rec.channels, _band_modality(band, modalities), exclude=used)
            if candidates:
                out[i] = candidates[0]
                used.add(candidates[0])
    return out


def propose_channels(header, bands: list[str], modalities: dict[str, str]) -> tuple[list[tuple[str, str]],
                                                                                    list[str | None]]:
    """From an EDF header alone (no samples read): ``(canonical, modality)`` per signal and :func:`auto_channels`.

    Parameters
    ----------
    header : psgvlm.night.uploads.EdfHeader
        The checked header of an upload.
    bands, modalities
        The run's bands (:func:`run_channels`).

    Returns
    -------
    names : list of (str, str)
        Canonical name and modality of each signal in ``header.labels`` order.
    mapping : list of str or None
        The proposed recording channel per band (None = flat).
    """
    from psgvlm.io.channels import canonical_names
    from psgvlm.io.recording import Channel, Recording

    sig = {s.label: s for s in header.signals}
    names = canonical_names(header.labels, [sig[lab].unit for lab in header.labels])
    shell = Recording(channels=[Channel(name=lab, canonical=c, modality=m, sfreq=max(sig[lab].sfreq, 1e-9),
                                        data=np.zeros(0, np.float32))
                                for lab, (c, m) in zip(header.labels, names)],
                      subject="-", recording="-", dataset="generic", source="-")
    return names, auto_channels(shell, bands, modalities)


ROLE_OPTIONS = {"EEG": "--eeg", "EOG": "--eog", "EMG": "--emg"}  # modality -> the option that names its channels


@dataclass(frozen=True)
class ChannelRequest:
    """The channels a user chose for the VLM's bands (:func:`channel_request`); empty = automatic."""

    positional: tuple[str, ...] = ()  # one recording channel per band, top first ("-" = flat)
    pairs: tuple[tuple[str, str], ...] = ()  # (band, recording channel or "-") from --channels band=channel
    roles: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (modality, channels) from --eeg/--eog/--emg

    def __bool__(self) -> bool:
        return bool(self.positional or self.pairs or self.roles)


def channel_request(channels=None, *, eeg=None, eog=None, emg=None) -> ChannelRequest:
    """Parse ``--channels`` (positional, or every value ``band=channel``) and the role options.

    Raises
    ------
    ValueError
        ``--channels`` mixes the two forms, or a pair has an empty band.
    """
    if isinstance(channels, ChannelRequest):
        return channels
    values = [str(v) for v in channels or ()]
    pairs, positional = [], ()
    if any("=" in v for v in values):
        plain = [v for v in values if "=" not in v]
        if plain:
            raise ValueError(f"--channels mixes band=channel pairs with plain channels {plain}; give either one "
                             f"channel per band, top first, or band=channel pairs")
        for v in values:
            band, name = (t.strip() for t in v.split("=", 1))
            if not band or not name:
                raise ValueError(f"--channels {v!r}: give band=channel, e.g. C3=\"EEG Pz-Oz\" ({EMPTY_BAND!r} = flat)")
            pairs.append((band, name))
    else:
        positional = tuple(values)
    roles = tuple((mod, tuple(names)) for mod, names in (("EEG", eeg), ("EOG", eog), ("EMG", emg)) if names)
    return ChannelRequest(positional=positional, pairs=tuple(pairs), roles=roles)


def _region(name: str) -> str:
    """Scalp region of an electrode name: its first letter (F, C, O, P, T), upper case."""
    return name[:1].upper()


def resolve_channel_choices(rec, bands: list[str], modalities: dict[str, str], requested=None
                            ) -> tuple[list[str | None], list[str]]:
    """The channel of each band (see :func:`resolve_channel_map`) and how it was chosen.

    Returns
    -------
    mapping : list of str or None
        Canonical recording channel per band (None = flat).
    how : list of str
        Per band: ``"--channels"``, ``"--eeg"``/``"--eog"``/``"--emg"`` (the user's), ``"same name"``,
        ``"substitute"`` (automatic, another channel name) or ``"flat"`` (automatic, nothing left).
    """
    req = channel_request(requested)
    given: dict[int, str | None] = {}
    how: dict[int, str] = {}
    if req.positional:
        if len(req.positional) != len(bands):
            raise ValueError(
                f"--channels gives {len(req.positional)} channel(s) {list(req.positional)} but the model's image "
                f"has {len(bands)} bands {bands}; give one recording channel per band ({EMPTY_BAND!r} for none) "
                f"or band=channel pairs")
        for i, name in enumerate(req.positional):
            given[i] = None if name in (EMPTY_BAND, "") else rec.channel(name).canonical  # names the available
            how[i] = "--channels"
    for band, name in req.pairs:
        if band not in bands:
            raise ValueError(f"--channels {band}={name}: the model's image has no band {band!r}; its bands: {bands}")
        i = bands.index(band)
        if i in given:
            raise ValueError(f"--channels names band {band!r} twice")
        given[i] = None if name == EMPTY_BAND else rec.channel(name).canonical
        how[i] = "--channels"
    if not req.positional:
        for modality, names in req.roles:
            for name in names:
                c = rec.channel(name).canonical  # raises naming the available channels
                if c in given.values():
                    continue
                free = [i for i, b in enumerate(bands) if i not in given and _band_modality(b, modalities) == modality]
                if not free:
                    continue  # more channels than bands of this modality: the reference stagers still read them
                i = next((i for i in free if bands[i] == c), None)
                if i is None:
                    i = next((i for i in free if _region(bands[i]) == _region(c)), free[0])
                given[i], how[i] = c, ROLE_OPTIONS[modality]
    named = [m for m in given.values() if m is not None]
    dup = sorted({m for m in named if named.count(m) > 1})
    if dup:
        raise ValueError(f"channel(s) {dup} requested for more than one band")
    mapping = auto_channels(rec, bands, modalities, given)
    if not any(m is not None and rec.channel(m).modality == "EEG" for m in mapping):
        eeg = [c.name for c in rec.channels if c.modality == "EEG"]
        raise ValueError(
            f"no EEG channel mapped onto the model's bands {bands}; EEG channels found in the recording: "
            f"{eeg or 'none'}; all channels: {[c.name for c in rec.channels]}")
    for i, (band, m) in enumerate(zip(bands, mapping)):
        if i not in how:
            how[i] = "flat" if m is None else "same name" if m == band else "substitute"
    return mapping, [how[i] for i in range(len(bands))]


def resolve_channel_map(rec, bands: list[str], modalities: dict[str, str], requested=None) -> list[str | None]:
    """Validate what the user chose for the bands (or auto-detect); the recording channel of each band.

    Parameters
    ----------
    rec : psgvlm.io.recording.Recording
    bands, modalities
        The run's bands (:func:`run_channels`).
    requested : ChannelRequest or list of str, optional
        :func:`channel_request`'s; a list is ``--channels``' values (one per band, or ``band=channel``).

    Returns
    -------
    list of str or None
        Canonical channel per band (None = flat); bands the user did not fill are filled by :func:`auto_channels`.

    Raises
    ------
    ValueError
        A channel not in the recording (naming those available), a band the model lacks, the wrong count
        of positional channels, a channel in two bands, or no EEG channel on any band.
    """
    return resolve_channel_choices(rec, bands, modalities, requested)[0]


def channel_choices(rec, bands: list[str], modalities: dict[str, str], requested=None) -> list[dict]:
    """Per band: ``band``, ``modality``, ``label`` (the file's own), ``canonical``, ``how``
    (:func:`resolve_channel_choices`), for the summary and the console."""
    mapping, how = resolve_channel_choices(rec, bands, modalities, requested)
    return [{"band": b, "modality": _band_modality(b, modalities), "label": None if m is None else rec.channel(m).name,
             "canonical": m, "how": h} for b, m, h in zip(bands, mapping, how)]


def substitution_notes(choices: list[dict]) -> list[str]:
    """One line per band filled automatically with another channel, or left flat."""
    from psgvlm.io.channels import MIN_AUTO_SFREQ

    notes = []
    for c in choices:
        if c["how"] == "substitute":
            notes.append(f"VLM band {c['band']}: the recording has no {c['band']}; drew {c['modality']} channel "
                         f"{c['label']!r} instead (automatic, by the channel ranking; choose with --channels "
                         f"{c['band']}=CHANNEL or {ROLE_OPTIONS.get(c['modality'], '--channels')})")
        elif c["how"] == "flat":
            notes.append(f"VLM band {c['band']}: no unused {c['modality']} channel sampled at >= {MIN_AUTO_SFREQ:g} Hz in the "
                         f"recording; left flat")
    return notes
