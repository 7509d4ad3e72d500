"""GSSC, the Greifswald Sleep Stage Classifier (``pip install "psgvlm[gssc]"``, AGPL-3.0): the one GSSC wrapper.

A real, frozen, externally trained stager: a ResNet per signal (EEG, EOG) and a bidirectional GRU over
the whole night, with its weights inside the ``gssc`` wheel (``gssc/nets/*.pt``). :func:`gssc_predict`
is the predictor of the contract in :mod:`psgvlm.reference`; it follows ``gssc.infer.EEGInfer.mne_infer``
step by step, with four differences that are on purpose:

- the nets are loaded with ``torch.load(weights_only=True)`` and exactly the classes they are made of
  allowlisted (:data:`SAFE_CLASSES`, from ``gssc.networks`` and ``torch.nn``), never unpickled blindly;
- the caller's recording is never modified (``mne_infer`` filters the Raw it is given in place): the
  0.3-30 Hz filter runs on a copy of each channel;
- epochs are cut by :func:`psgvlm.signal.epochs.epochs_from_recording`, so epoch ``k`` is the night's
  epoch ``k`` and a recording that is an exact multiple of 30 s keeps its last epoch (``mne_infer``
  crops ``times[-1]``, one sample short of the end, and loses it);
- the probabilities are kept: like ``mne_infer`` every channel permutation (each EEG channel, each EOG
  channel, each EEG x EOG pair, as ``gssc.utils.permute_sigs`` lists them) is staged and, per epoch, the
  permutation most sure of its stage (``gssc.utils.loudest_vote``) decides; its probabilities are the
  epoch's hypnodensity, so the argmax is exactly GSSC's stage. Each signal's ResNet runs once per
  channel, not once per permutation (the same numbers, fewer passes).

Licence: gssc is AGPL-3.0. Installing the extra and serving the app to others over a network makes
the AGPL's terms apply to that service (offer its users the corresponding source); psgvlm itself stays
MIT and does not need gssc.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from psgvlm.reference import Hypnodensity, PredictorUnavailable, on_grid, reference_channels

GSSC_VERSION = "0.0.9"  # the version whose nets and network module this wrapper was written against
SIG_LEN = 2560  # samples per 30-s epoch GSSC was trained on (85.33 Hz)
GSSC_SFREQ_HZ = SIG_LEN / 30.0
FILTER_HZ = (0.3, 30.0)  # GSSC's training band
INSTALL_HINT = 'pip install "psgvlm[gssc]" (gssc, AGPL-3.0)'


def gssc_missing() -> str | None:
    """Why GSSC cannot run in this install (the extra is not installed), or None."""
    import importlib.util

    if importlib.util.find_spec("gssc") is None:
        return f"the optional extra is not installed: {INSTALL_HINT}"
    return None


def _safe_classes() -> list:
    """Exactly the classes GSSC's two pickled nets are made of (checked with get_unsafe_globals_in_checkpoint)."""
    import torch.nn as nn
    from gssc import networks as gn

    core = getattr(np, "_core", None) or np.core  # numpy 2 moved numpy.core
    return [gn.ResSleep, gn.ResSignal, gn.ResBlock, gn.ResBottleneck, gn.ResMixer, gn.ResDecision, gn.SleepGRU,
            nn.Sequential, nn.ModuleDict, nn.Conv1d, nn.GroupNorm, nn.LeakyReLU, nn.Dropout, nn.Identity,
            nn.AvgPool1d, nn.LogSoftmax, nn.GRU, nn.Linear,
            np.dtype, np.dtypes.Int64DType, (core.multiarray.scalar, "numpy.core.multiarray.scalar")]


@functools.lru_cache(maxsize=1)
def load_nets():
    """GSSC's signal net (``ResSleep``) and context net (``SleepGRU``), weights-only, on CPU, in eval mode."""
    reason = gssc_missing()
    if reason:
        raise PredictorUnavailable(reason)
    from importlib.resources import files

    import torch

    with torch.serialization.safe_globals(_safe_classes()):
        net = torch.load(files("gssc.nets").joinpath("sig_net_v1.pt"), weights_only=True, map_location="cpu")
        con = torch.load(files("gssc.nets").joinpath("gru_net_v1.pt"), weights_only=True, map_location="cpu")
    return net.eval(), con.eval()


def _zscored_epochs(rec, names: list[str], n_epochs: int) -> tuple[np.ndarray, list[str]]:
    """``(n_epochs, n_chans, 2560)`` float32: 0.3-30 Hz, 85.33 Hz, z-scored per channel over the night."""
    import dataclasses
    import warnings

    from mne.filter import filter_data

    from psgvlm.signal.epochs import UpsampledChannelWarning, epochs_from_recording

    notes, chans = [], []
    for name in names:
        ch = rec.channel(name)
        lo, hi = FILTER_HZ
        if ch.sfreq / 2 <= hi:  # as mne_infer: no low-pass where the channel has nothing above 30 Hz
            hi = None
            notes.append(f"channel {name!r} at {ch.sfreq:g} Hz has no content above {ch.sfreq / 2:g} Hz; GSSC was "
                         f"trained on 0.3-30 Hz, so only the 0.3 Hz high-pass was applied")
        data = np.asarray(ch.data, dtype=np.float64)
        if not np.isfinite(data).all():
            raise ValueError(f"channel {name!r} has {int((~np.isfinite(data)).sum())} non-finite samples")
        y = filter_data(data, ch.sfreq, lo, hi, verbose="error")  # a filtered copy; the recording is untouched
        chans.append(dataclasses.replace(ch, data=y.astype(np.float32)))
    sub = dataclasses.replace(rec, channels=chans, stages=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UpsampledChannelWarning)  # reported in the notes by the caller
        x, _, _ = epochs_from_recording(sub, names, GSSC_SFREQ_HZ)
    x = x[:n_epochs].astype(np.float64)
    mean = x.mean(axis=(0, 2), keepdims=True)  # gssc.utils.epo_arr_zscore: per channel, over every epoch
    std = x.std(axis=(0, 2), keepdims=True)
    return ((x - mean) / np.where(std > 0, std, 1.0)).astype(np.float32), notes


def gssc_predict(rec, n_epochs: int | None = None, *, eeg=None, eog=None, max_eeg: int | None = 1) -> Hypnodensity:
    """GSSC on a night: every EEG x EOG channel permutation, the loudest permutation per epoch.

    Parameters
    ----------
    rec : psgvlm.io.recording.Recording
        Epoch ``k`` is ``[rec.onset_s + 30 k, ...)`` (0 s for ``psgvlm stage``).
    n_epochs : int, optional
        Epochs of the grid; default ``rec.n_epochs``. Epochs past the end of the channels are unscored.
    eeg, eog, max_eeg
        Channels (:func:`psgvlm.reference.reference_channels`; default the best EEG channel). EOG only
        when asked for: each signal channel costs one ResNet pass over the night (0.25 GFLOP, about
        13 ms per epoch on one core: 12 s for 8 hours), and the real-data figures (README) are EEG only.

    Returns
    -------
    psgvlm.reference.Hypnodensity
        ``streams`` keyed by permutation (``"C3+LOC"``, ``"C3"``, ``"LOC"``); ``info["permutations"]``
        counts the epochs each permutation decided.

    Raises
    ------
    PredictorUnavailable
        The extra is not installed, or no EEG channel.
    """
    import torch
    from gssc.utils import permute_sigs

    net, con = load_nets()
    n_epochs = rec.n_epochs if n_epochs is None else int(n_epochs)
    chans = reference_channels(rec, eeg=eeg, eog=eog, max_eeg=max_eeg)
    if not eog:
        chans["eog"] = []
    names = [*chans["eeg"], *chans["eog"]]
    n_sig = int(math.floor((min(rec.channel(c).duration_s for c in names) - rec.onset_s) / rec.epoch_s + 1e-9))
    n_run = min(n_epochs, n_sig)
    if n_run < 1:
        raise PredictorUnavailable(f"the channels {names} hold no whole 30-s epoch")
    x, notes = _zscored_epochs(rec, names, n_run)
    notes = [f"channel {c!r} is sampled at {rec.channel(c).sfreq:g} Hz, below GSSC's {GSSC_SFREQ_HZ:.2f} Hz; it was "
             f"upsampled" for c in names if rec.channel(c).sfreq < GSSC_SFREQ_HZ] + notes
    # GSSC's own permutation list: each signal alone or with each channel of the other, never none at all.
    signals = {"eeg": {"chans": chans["eeg"], "drop": True}, "eog": {"chans": chans["eog"], "drop": True}}
    sig_combs, perm_matrix, _, _ = permute_sigs(None, signals)
    perms = []
    for row in perm_matrix:
        perm = {sig: combos[i][0] for (sig, combos), i in zip(sig_combs.items(), row) if combos[i]}
        perms.append(perm)
    reps: dict[tuple[str, str], torch.Tensor] = {}
    log_probs = []
    with torch.inference_mode():
        for perm in perms:
            parts = []
            for sig in sorted(perm):  # ResSleep.forward: signals in sorted order, each net's output flattened
                key = (sig, perm[sig])
                if key not in reps:
                    xi = torch.from_numpy(np.ascontiguousarray(x[:, names.index(perm[sig])]))[:, None, :]
                    reps[key] = torch.cat([net.sig_net[sig](b) for b in xi.split(32)]).reshape(len(xi), -1, 1)
                parts.append(reps[key])
            mix = net.mix_net[" ".join(sorted(perm))](torch.hstack(parts))
            y, _ = con(mix.swapaxes(-1, 1), torch.zeros(10, 1, 256))  # the whole night as one sequence
            log_probs.append(y[:, 0].float().numpy())
    lp = np.stack(log_probs)  # (n_perms, n_run, 5) log-probabilities
    loudest = lp.max(-1).argmax(0)  # gssc.utils.loudest_vote: least NLL of its own argmax
    probs = np.exp(lp[loudest, np.arange(n_run)])
    probs /= probs.sum(1, keepdims=True)
    keys = ["+".join(perm[s] for s in ("eeg", "eog") if s in perm) for perm in perms]
    streams = {k: on_grid(np.exp(p), n_epochs)[0] for k, p in zip(keys, lp)}
    probs, unscored = on_grid(probs, n_epochs)
    from importlib.metadata import version

    return Hypnodensity(probs=probs, channels=names, unscored=unscored, streams=streams, notes=notes,
                        info={"classifier": f"gssc {version('gssc')} (ResNet + GRU, pretrained; AGPL-3.0)",
                              "eeg": chans["eeg"], "eog": chans["eog"],
                              "permutations": {k: int((loudest == i).sum()) for i, k in enumerate(keys)},
                              "combined": "per epoch the permutation most sure of its stage (GSSC's loudest vote)"})
