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


def channels_last_2d(sig_net):
    """The same signal net computed as 2-D convolutions over a one-row image in channels-last layout.

    GSSC's ResNet is ``Conv1d`` layers (with GroupNorm, LeakyReLU, AvgPool1d, residual sums) over
    2560 samples; oneDNN runs a 1-D convolution in the channels-first layout about twice as slowly
    on a CPU as the identical 2-D convolution (kernel ``1 x k``) over ``(N, C, 1, L)`` kept
    channels-last. This copy holds the same weights (each ``w`` as ``w[:, :, None, :]``) and sums
    the same products in another order: its outputs match the 1-D net's to float32 rounding (a few
    1e-7 relative). Returns None (keep the 1-D net) for a net holding any other kind of layer.
    """
    import copy

    import torch
    from torch import nn

    kinds = (nn.Conv1d, nn.AvgPool1d, nn.GroupNorm, nn.LeakyReLU, nn.Dropout, nn.Identity)
    if any(not isinstance(m, kinds) for m in sig_net.modules() if not list(m.children())):
        return None
    net = copy.deepcopy(sig_net).eval()
    for parent in list(net.modules()):
        for name, m in list(parent.named_children()):
            if isinstance(m, nn.Conv1d):
                conv = nn.Conv2d(m.in_channels, m.out_channels, (1, m.kernel_size[0]), (1, m.stride[0]),
                                 (0, m.padding[0]), (1, m.dilation[0]), m.groups, m.bias is not None, m.padding_mode)
                w = m.weight.detach()[:, :, None, :].contiguous(memory_format=torch.channels_last)
                conv.weight = nn.Parameter(w, requires_grad=False)
                if m.bias is not None:
                    conv.bias = nn.Parameter(m.bias.detach().clone(), requires_grad=False)
                # A 1-channel input leaves the layout ambiguous and oneDNN answers channels-first: say it.
                conv.register_forward_hook(_channels_last_output)
                setattr(parent, name, conv.eval())
            elif isinstance(m, nn.AvgPool1d):
                setattr(parent, name, nn.AvgPool2d((1, m.kernel_size[0]), (1, m.stride[0]), (0, m.padding[0]),
                                                   m.ceil_mode, m.count_include_pad))
    return net


def _channels_last_output(module, inputs, output):
    import torch

    return output.contiguous(memory_format=torch.channels_last)


def run_signal_net(net, x, batch: int = 32):
    """A signal net over epochs ``x`` (torch, (n, 1, 2560)), ``batch`` at a time: ``(n, features, 1)`` as
    ``ResSleep`` flattens it. ``net`` is GSSC's 1-D net or its :func:`channels_last_2d` copy."""
    import torch
    from torch import nn

    two_d = any(isinstance(m, nn.Conv2d) for m in net.modules())
    out = []
    for b in x.split(batch):
        if two_d:
            b = b[:, :, None, :].contiguous(memory_format=torch.channels_last)
        out.append(net(b).reshape(len(b), -1, 1))
    return torch.cat(out)


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


@functools.lru_cache(maxsize=1)
def signal_nets() -> dict:
    """The signal nets :func:`gssc_predict` runs: per signal (``eeg``, ``eog``) the :func:`channels_last_2d`
    copy of GSSC's ResNet (its own when it cannot be copied)."""
    net, _ = load_nets()
    return {sig: channels_last_2d(m) or m for sig, m in net.sig_net.items()}


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
                    reps[key] = run_signal_net(signal_nets()[sig], xi)
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
