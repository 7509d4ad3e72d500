"""Every predictor of a night in one registry, run on the same epochs, compared, and the review list.

``PREDICTORS`` maps a name to a :class:`Predictor`; each one's ``run`` keeps the contract of
:mod:`psgvlm.reference`: a recording in, a :class:`psgvlm.reference.Hypnodensity` over the whole-night
epoch grid out, or :class:`psgvlm.reference.PredictorUnavailable` with the reason it cannot run.

- ``vlm``: the run's model on the rendered epoch images (:func:`psgvlm.night.stage.score_vlm`);
- ``yasa``: YASA's pretrained LightGBM stager (:func:`psgvlm.reference.yasa.yasa_predict`);
- ``gssc``: GSSC's pretrained ResNet + GRU, the optional extra ``psgvlm[gssc]`` (AGPL-3.0,
  :func:`psgvlm.reference.gssc.gssc_predict`);
- ``vote``: the soft vote (mean hypnodensity) of the reference stagers that ran.

A consensus over other predictors is an entry of kind ``"consensus"`` whose ``needs`` names them: it
runs after them and reads their outputs (``done[name].probs`` and the per-channel ``streams``). The NAP
consensus would plug in the same way: ``"nap": Predictor("consensus", _run_nap, ..., needs=("yasa", "gssc"),
missing=<None when the run dir is there>)``; none ships, because no NAP over YASA + GSSC beat the soft
vote or, meaningfully, GSSC on the shared real recordings (figures: recipes/nap.py).

:func:`choose_primary` picks whose stages fill the night's hypnogram (``--primary``; ``auto`` takes
the first of :data:`AUTO_PRIMARY` that ran), :func:`pairwise_agreement` compares predictors,
:func:`review_epochs` lists the epochs a person should look at.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from psgvlm.reference import Hypnodensity, PredictorUnavailable
from psgvlm.stages import N_STAGES, UNSCORED

REFERENCE_NOTICE = ("{name}: a stager pretrained on real PSG by its authors, run as they ship it. Research "
                    "software, not a medical device: not for clinical use.")
REVIEW_CONFIDENCE = 0.5  # an epoch whose primary probability is below this goes on the review list


@dataclass
class PredictorOptions:
    """What the predictors of one night are given besides the recording."""

    run_dir: str | Path | None = None  # the VLM run (default: the embedded default run)
    vlm: object = None  # a loaded psgvlm.vlm.predict predictor for run_dir (the app keeps one)
    channels: list[str] | None = None  # the VLM's recording channel per band (None = auto)
    eeg: list[str] | None = None  # the reference stagers' channels (None = auto, reference_channels)
    eog: list[str] | None = None
    emg: list[str] | None = None
    max_eeg: int | None = 1  # EEG channels the reference stagers pick automatically (None = every one)
    batch_size: int = 16
    epochs_path: str | Path | None = None  # where the VLM keeps its scaled epochs for the viewer
    progress: Callable | None = None  # progress(done, total) while the VLM scores
    # Nights at least this long run the reference stagers in a worker process beside the VLM (a process
    # start and its imports cost a few seconds: not worth it for a short recording).
    parallel_min_epochs: int = 240


@dataclass(frozen=True)
class Predictor:
    """One entry of :data:`PREDICTORS`."""

    kind: str  # "vlm", "reference" or "consensus"
    run: Callable  # run(rec, n_epochs, options, done) -> Hypnodensity; done: outputs of the predictors before it
    describe: str
    missing: Callable[[], str | None] = field(default=lambda: None)  # why it cannot run in this install
    needs: tuple[str, ...] = ()  # predictors whose outputs it reads (consensus)


def _run_vlm(rec, n_epochs, opt: PredictorOptions, done) -> Hypnodensity:
    return score_vlm(rec, n_epochs, run_dir=opt.run_dir, channels=opt.channels, predictor=opt.vlm,
                     batch_size=opt.batch_size, epochs_path=opt.epochs_path, progress=opt.progress)


def score_vlm(rec, n_epochs: int, *, run_dir=None, channels: list[str] | None = None, predictor=None,
              batch_size: int = 16, epochs_path=None, progress=None):
    """The VLM predictor: render every epoch of the whole-night grid and score it with a run.

    Parameters
    ----------
    rec : psgvlm.io.recording.Recording
        The night; epochs are cut from signal time 0.
    n_epochs : int
        Epochs of the grid; the output is cut or padded (unscored) to it.
    run_dir : path-like, optional
        A run directory; default: the embedded default run.
    channels : list of str, optional
        The recording's channel for each band of the run's image (``"-"`` = flat); default auto.
    predictor : optional
        An already loaded ``psgvlm.vlm.predict`` predictor for ``run_dir`` (the app keeps one loaded).
    batch_size : int
        Epochs rendered and scored at once.
    epochs_path : path-like, optional
        Where to save the scaled epochs (float16, (n_epochs, n_bands, n_times)) for later re-rendering.
    progress : callable, optional
        ``progress(done, total)`` after each batch (the app's progress bar); tqdm runs regardless.

    Returns
    -------
    psgvlm.reference.Hypnodensity
        ``info`` holds ``bands``, ``channel_map``, ``sfreq``, ``settings``, ``model`` (:func:`model_info` and
        the run's ``context`` K: each epoch was scored in the strip of epochs e-K..e+K),
        ``checks`` (flat epochs per band) and ``timings_s``; epochs with no EEG signal are unscored.
    """
    from tqdm.auto import tqdm

    from psgvlm.image.renderer import RenderSettings, render_epoch
    from psgvlm.night.bands import resolve_channel_map
    from psgvlm.night.stage import default_run, model_info, render_settings, run_channels
    from psgvlm.reference import on_grid

    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} must be >= 1")
    t0 = time.perf_counter()
    run_dir = Path(run_dir) if run_dir is not None else default_run()
    if predictor is None:
        from psgvlm.vlm.predict import load_predictor

        predictor = load_predictor(run_dir)
    t_load = time.perf_counter()
    dmeta = predictor.dataset_meta
    bands, modalities, sfreq = run_channels(dmeta)
    settings = RenderSettings.from_dict(render_settings(dmeta))
    mapping = resolve_channel_map(rec, bands, modalities, channels)
    from psgvlm.night.grid import band_epochs

    x, starts_s, notes, checks = band_epochs(rec, mapping, sfreq, settings)
    todo = np.flatnonzero(~checks["no_eeg"][:n_epochs])  # epochs without EEG signal are not scored (left UNS)
    if epochs_path is not None:
        np.save(epochs_path, x[:n_epochs].astype(np.float16))
    t_read = time.perf_counter()

    from psgvlm.vlm.context import night_strips

    context = getattr(predictor, "context", 0)  # a run trained with --context K reads strips of neighbours
    strip_cache: dict = {}  # each epoch rendered once, kept while a later strip needs it
    probs = np.zeros((len(x), N_STAGES), dtype=np.float32)
    render_s = 0.0
    with tqdm(total=len(todo), desc="stage", unit="epoch") as bar:
        for lo in range(0, len(todo), batch_size):
            idx = todo[lo: lo + batch_size]
            r0 = time.perf_counter()
            if context:
                images = night_strips(idx, len(x), context, lambda i: render_epoch(x[i], settings), strip_cache)
            else:  # uint8 arrays: the predictor takes them as they are
                images = [render_epoch(x[i], settings) for i in idx]
            render_s += time.perf_counter() - r0
            p = np.asarray(predictor.predict_proba(images, batch_size=batch_size), dtype=np.float32)
            if p.shape != (len(idx), N_STAGES):
                raise RuntimeError(f"predictor returned shape {p.shape}, expected {(len(idx), N_STAGES)}")
            probs[idx] = p
            bar.update(len(idx))
            if progress is not None:
                progress(lo + len(idx), len(todo))
    t_end = time.perf_counter()
    probs, unscored = on_grid(probs, n_epochs)
    unscored[: len(x)] |= checks["no_eeg"][:n_epochs]
    return Hypnodensity(
        probs=probs, channels=[m for m in mapping if m is not None], unscored=unscored, notes=notes,
        info={"bands": bands, "channel_map": mapping, "sfreq": sfreq, "settings": settings.as_dict(),
              "model": {**model_info(run_dir), "context": context},
              "checks": {"n_flat_epochs": {b: int(checks["flat"][:n_epochs, i].sum())
                                           for i, (b, m) in enumerate(zip(bands, mapping)) if m is not None}},
              "timings_s": {"load_model": t_load - t0, "read_resample_scale": t_read - t_load, "render": render_s,
                            "render_and_predict": t_end - t_read}})


def _run_yasa(rec, n_epochs, opt: PredictorOptions, done) -> Hypnodensity:
    from psgvlm.reference.yasa import yasa_predict

    return yasa_predict(rec, n_epochs, eeg=opt.eeg, eog=opt.eog, emg=opt.emg, max_eeg=opt.max_eeg)


def _run_gssc(rec, n_epochs, opt: PredictorOptions, done) -> Hypnodensity:
    from psgvlm.reference.gssc import gssc_predict

    return gssc_predict(rec, n_epochs, eeg=opt.eeg, eog=opt.eog, max_eeg=opt.max_eeg)


def _run_vote(rec, n_epochs, opt: PredictorOptions, done) -> Hypnodensity:
    members = [n for n in PREDICTORS["vote"].needs if n in done]
    if len(members) < 2:
        raise PredictorUnavailable(f"the soft vote needs two of {list(PREDICTORS['vote'].needs)}; ran: {members or 'none'}")
    scored = np.stack([~done[n].unscored for n in members])  # (members, n_epochs)
    total = sum(done[n].probs * scored[i, :, None] for i, n in enumerate(members))
    count = scored.sum(0)
    probs = np.where(count[:, None] > 0, total / np.maximum(count, 1)[:, None], 0.0)
    return Hypnodensity(probs=probs, channels=list(dict.fromkeys(c for n in members for c in done[n].channels)),
                        unscored=count == 0, info={"members": members, "combined": "mean hypnodensity"})


def _gssc_missing() -> str | None:
    from psgvlm.reference.gssc import gssc_missing

    return gssc_missing()


PREDICTORS: dict[str, Predictor] = {
    "vlm": Predictor("vlm", _run_vlm, "the VLM run on rendered epoch images (default: the embedded synthetic model)"),
    "yasa": Predictor("reference", _run_yasa, "YASA's pretrained LightGBM stager, per EEG channel with EOG/EMG"),
    "gssc": Predictor("reference", _run_gssc, "GSSC's pretrained ResNet + GRU over EEG (x EOG) permutations "
                      "(optional extra psgvlm[gssc], AGPL-3.0)", missing=_gssc_missing),
    "vote": Predictor("consensus", _run_vote, "soft vote (mean hypnodensity) of YASA and GSSC",
                      needs=("yasa", "gssc")),
}
# --primary auto: the first of these that ran. The order is the real-data ranking of issue 10 (DREAMS
# excerpts 1-6 + Prerau, 527 expert epochs, kappa: GSSC 0.71, soft vote 0.72 with a lower macro-F1,
# YASA 0.62, the synthetic default VLM about 0); the real-data scorecard (``python -m evals realdata``,
# issue 10 item 4) is what should reorder it. The synthetic default VLM is last: never the primary
# while a reference stager could run.
AUTO_PRIMARY: tuple[str, ...] = ("gssc", "vote", "yasa", "vlm")


def default_predictors() -> list[str]:
    """Every registered predictor this install can run (an extra not installed is left out)."""
    return [name for name, p in PREDICTORS.items() if p.missing() is None]


def check_names(names) -> list[str]:
    """``names`` validated against :data:`PREDICTORS` (ValueError naming the bad one), registry order."""
    bad = [n for n in names if n not in PREDICTORS]
    if bad:
        raise ValueError(f"unknown predictor(s) {bad}; choose from {list(PREDICTORS)}")
    return [n for n in PREDICTORS if n in names]


def run_predictors(rec, n_epochs: int, names, options: PredictorOptions, *, strict=(), parallel: bool = True
                   ) -> tuple[dict[str, Hypnodensity], dict[str, str], dict[str, float]]:
    """Run ``names`` on the same ``n_epochs`` epochs of ``rec``.

    A predictor that cannot run is reported and the others run, except those named in ``strict``
    (the user chose their channels: a bad choice is an error, not a predictor left out). With the VLM
    among them and a night of at least ``options.parallel_min_epochs`` epochs, the reference stagers run
    in one worker process while the VLM runs here (:func:`_start_reference_worker`): on 2 cores the
    night takes about the longer of the two instead of their sum.

    Returns
    -------
    outputs : dict of name -> Hypnodensity
        The predictors that ran, registry order; rows of epochs in which all of a reference stager's
        EEG channels are flat are unscored (probabilities 0), as the VLM leaves them.
    failed : dict of name -> str
        Why each of the others could not run (an extra not installed, no EEG, a rate too low, flat EEG).
    seconds : dict of name -> float
        Wall time of each predictor.
    """
    from psgvlm.night.grid import flat_epochs

    names = check_names(names)
    outputs: dict[str, Hypnodensity] = {}
    failed: dict[str, str] = {}
    seconds: dict[str, float] = {}
    side = [n for n in names if PREDICTORS[n].kind == "reference" and PREDICTORS[n].missing() is None]
    worker = threads = None
    if parallel and "vlm" in names and side and n_epochs >= options.parallel_min_epochs:
        worker = _start_reference_worker(rec, n_epochs, side, options, strict)
        threads = _leave_a_core()
    try:
        for name in names:
            pred = PREDICTORS[name]
            if worker is not None and (name in side or pred.needs):
                if name in side:
                    continue
                done, worker = worker, None
                _collect(done, outputs, failed, seconds)  # a consensus needs the reference stagers first
            reason = pred.missing()
            if reason is not None:
                failed[name] = reason
                continue
            t0 = time.perf_counter()
            try:
                out = pred.run(rec, n_epochs, options, dict(outputs))
                if len(out.probs) != n_epochs:
                    raise RuntimeError(f"predictor {name!r} returned {len(out.probs)} epochs for {n_epochs}")
                if pred.kind == "reference":
                    eeg = [c for c in out.channels if rec.channel(c).modality == "EEG"]
                    out.unscored = out.unscored | flat_epochs(rec, eeg, n_epochs, rec.epoch_s, onset_s=rec.onset_s).all(1)
                    if out.unscored.all():
                        raise PredictorUnavailable(f"EEG channel(s) {eeg} flat (constant, zero or not finite) in every epoch")
                out.probs[out.unscored] = 0.0
                outputs[name] = out
            except (PredictorUnavailable, ValueError) as err:  # this recording: reported, the others run
                if name in strict:
                    raise
                failed[name] = " ".join(str(err).split())
            seconds[name] = time.perf_counter() - t0
        if worker is not None:
            done, worker = worker, None
            _collect(done, outputs, failed, seconds)
    finally:
        if worker is not None:
            _stop(worker)
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
    order = list(PREDICTORS)
    return (dict(sorted(outputs.items(), key=lambda kv: order.index(kv[0]))),
            dict(sorted(failed.items(), key=lambda kv: order.index(kv[0]))), seconds)


def _leave_a_core() -> int:
    """Give this process's torch one thread fewer while the worker runs on a core; returns the count to restore.

    Two processes that each start a thread per core slow each other down (their threads spin for
    work on cores the other holds). One fewer is fixed for the whole VLM pass: the VLM's scores do
    not depend on when the worker ends (the thread count moves them by ~1e-8).
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, before - 1))
    return before


def _reference_worker(conn, rec, n_epochs, names, options, strict) -> None:
    """The reference stagers of a night, in a worker process (one torch thread: the VLM has the other core).

    Sends ``(True, run_predictors(...))`` or ``(False, the exception)`` through ``conn``.
    """
    try:
        import torch

        torch.set_num_threads(1)
        result = (True, run_predictors(rec, n_epochs, names, options, strict=strict, parallel=False))
    except BaseException as err:  # noqa: BLE001  raised again in the parent, where the caller sees it
        result = (False, err)
    try:
        conn.send(result)
    except Exception:  # noqa: BLE001  an exception that does not pickle: its text
        conn.send((False, RuntimeError(f"{type(result[1]).__name__}: {result[1]}")))
    conn.close()


def _worker_start_method() -> str:
    """``"fork"`` where it is safe and cheaper, else ``"spawn"``.

    A forked worker starts with this process's imports (torch, numpy, scipy: seconds of CPU on a
    2-core machine) and its recording in memory, where a spawned one imports them again and
    receives the recording pickled. Forking is safe only in a process without other threads, so
    only on Linux, with one Python thread, before torch was imported (it is imported here, before
    the fork: importing it starts no thread; running it starts its pool). The app (a server's
    threads, a loaded VLM) spawns.
    """
    import sys
    import threading

    if sys.platform != "linux" or threading.active_count() != 1 or "torch" in sys.modules:
        return "spawn"
    import torch  # noqa: F401  the worker's and the VLM's, imported once

    return "fork"


def _start_reference_worker(rec, n_epochs, names, options, strict):
    """Start :func:`_reference_worker` in another process on the channels it reads; ``(process, connection)``."""
    import dataclasses
    import multiprocessing

    keep = [c.canonical for c in rec.channels if c.modality in ("EEG", "EOG", "EMG")]
    if options.eeg or options.eog or options.emg:  # the user's names: the worker checks them against these
        for n in (*(options.eeg or []), *(options.eog or []), *(options.emg or [])):
            try:
                keep.append(rec.channel(n).canonical)
            except ValueError:
                pass  # the worker names the unknown channel
    else:  # the stagers' automatic choice, which is the same on these channels as on the recording's
        from psgvlm.reference import reference_channels

        try:
            chans = reference_channels(rec, max_eeg=options.max_eeg)
            keep = [*chans["eeg"], *chans["eog"], *chans["emg"]]
        except PredictorUnavailable:
            pass  # the worker reports it, naming what the recording holds
    sub = rec.pick(list(dict.fromkeys(keep)))  # only what it reads goes to the worker
    opts = dataclasses.replace(options, vlm=None, progress=None)  # the loaded VLM and callbacks stay here
    method = _worker_start_method()
    if method == "fork":  # read before the fork (the VLM reads them too): the worker starts with them
        for c in sub.channels:
            c.data  # noqa: B018  (a LazyChannel reads its samples on first use)
    ctx = multiprocessing.get_context(method)
    receive, send = ctx.Pipe(duplex=False)
    # daemon: ended with this process if it stops before collecting the answer
    proc = ctx.Process(target=_reference_worker, args=(send, sub, n_epochs, names, opts, tuple(strict)),
                       name="psgvlm-reference-stagers", daemon=True)
    proc.start()
    send.close()
    return proc, receive


def _collect(worker, outputs, failed, seconds) -> None:
    """Wait for the reference worker and merge what it ran (its exception is raised here)."""
    proc, receive = worker
    try:
        ok, answer = receive.recv()
    except EOFError:
        proc.join()
        raise RuntimeError(f"the reference stagers' worker process ended without an answer (exit code "
                           f"{proc.exitcode})") from None
    finally:
        receive.close()
    proc.join()
    if not ok:
        raise answer
    out, fail, sec = answer
    outputs.update(out)
    failed.update(fail)
    seconds.update(sec)


def _stop(worker) -> None:
    """End a worker whose answer is not wanted (an error here)."""
    proc, receive = worker
    receive.close()
    if proc.is_alive():
        proc.terminate()
    proc.join()


def stages_of(out: Hypnodensity) -> np.ndarray:
    """AASM codes of a predictor's output, ``UNSCORED`` where it did not score."""
    codes = out.probs.argmax(1).astype(np.int8)
    codes[out.unscored] = UNSCORED
    return codes


def choose_primary(outputs: dict[str, Hypnodensity], primary: str = "auto") -> str:
    """The predictor whose stages fill the hypnogram: ``primary`` if it ran, else the first of AUTO_PRIMARY."""
    if primary != "auto":
        if primary not in PREDICTORS:
            raise ValueError(f"primary {primary!r} is not a predictor; choose auto or one of {list(PREDICTORS)}")
        if primary not in outputs:
            raise ValueError(f"primary {primary!r} did not run on this recording; ran: {list(outputs)}")
        return primary
    for name in AUTO_PRIMARY:
        if name in outputs:
            return name
    return next(iter(outputs))


def agreement(truth, pred) -> dict | None:
    """:func:`psgvlm.metrics.stage_metrics` over epochs both scored (None when there are none)."""
    from psgvlm.metrics import stage_metrics

    pred = np.asarray(pred)
    truth = np.where(pred == UNSCORED, UNSCORED, np.asarray(truth))
    return stage_metrics(truth, pred) if (truth != UNSCORED).any() else None


def pairwise_agreement(outputs: dict[str, Hypnodensity]) -> dict[str, dict]:
    """``{"a vs b": {n_epochs, accuracy, kappa, macro_f1}}`` for every pair of predictors that ran."""
    names = list(outputs)
    out = {}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            sa, sb = stages_of(outputs[a]), stages_of(outputs[b])
            m = agreement(np.where(sb == UNSCORED, UNSCORED, sa), sb)
            out[f"{a} vs {b}"] = None if m is None else {k: m[k] for k in ("n_epochs", "accuracy", "kappa", "macro_f1")}
    return out


def review_epochs(outputs: dict[str, Hypnodensity], primary: str,
                  confidence: float = REVIEW_CONFIDENCE) -> list[str]:
    """Why each epoch should be looked at: ``""``, ``"disagree"``, ``"low confidence"`` or both.

    An epoch is on the review list when the predictors that are not a consensus (``vlm``, ``yasa``,
    ``gssc``) and scored it give different stages, or when the primary's probability of its own stage
    is below ``confidence``. The synthetic default VLM has no say while a reference stager ran (it
    would flag most real epochs). Epochs the primary did not score are not listed.
    """
    base = [n for n in outputs if PREDICTORS[n].kind != "consensus"]
    if any(PREDICTORS[n].kind == "reference" for n in base) and "vlm" in base \
            and (outputs["vlm"].info.get("model") or {}).get("is_default"):
        base.remove("vlm")
    prim = outputs[primary]
    n_epochs = len(prim.probs)
    codes = np.stack([stages_of(outputs[n]) for n in base]) if base else np.full((1, n_epochs), UNSCORED)
    reasons = []
    for k in range(n_epochs):
        if prim.unscored[k]:
            reasons.append("")
            continue
        seen = {int(c) for c in codes[:, k] if c != UNSCORED}
        why = []
        if len(seen) > 1:
            why.append("disagree")
        if float(prim.probs[k].max()) < confidence:
            why.append("low confidence")
        reasons.append("; ".join(why))
    return reasons



def add_predictor_arguments(parser) -> None:
    """The options that choose the predictors of a night (``psgvlm stage`` and ``psgvlm reference``)."""
    from psgvlm.night.predictors import PREDICTORS

    parser.add_argument("--predictors", nargs="+", metavar="NAME",
                        help=f"predictors to run, of {list(PREDICTORS)} (default: every one this install can run)")
    parser.add_argument("--primary", default="auto",
                        help="predictor whose stages fill the hypnogram and statistics, or 'auto' (default): the "
                             "best that ran by the real-data ranking gssc > vote > yasa > vlm")
    parser.add_argument("--eeg", nargs="+", help="EEG channel(s) the reference stagers read (default: the best one)")
    parser.add_argument("--eog", nargs="+", help="EOG channel(s) the reference stagers read (default: YASA the best "
                        "one, GSSC none: each GSSC channel is one more ResNet pass over the night)")
    parser.add_argument("--emg", nargs="+", help="EMG channel YASA reads (default: the best one)")


def check_predictor_arguments(args) -> tuple[list[str] | None, str]:
    """``(predictor names or None for all, primary)`` from :func:`add_predictor_arguments`'s options."""
    from psgvlm.night.predictors import PREDICTORS, check_names

    names = None if args.predictors is None else check_names(args.predictors)
    if args.primary != "auto" and args.primary not in PREDICTORS:
        raise ValueError(f"--primary {args.primary!r} is not allowed; give auto or one of {list(PREDICTORS)}")
    if names is not None and args.primary not in ("auto", *names):
        raise ValueError(f"--primary {args.primary!r} is not among --predictors {names}")
    return names, args.primary
