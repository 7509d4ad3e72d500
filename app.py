"""psgvlm demo: upload a PSG recording, get its hypnogram, hypnodensity, sleep statistics and downloads.

    python app.py                                  # embedded default model, http://127.0.0.1:7860
    python app.py --run runs/llava_isruc --host 0.0.0.0 --port 7860

Everything runs on CPU. The default model is a small model trained on synthetic recordings: it shows
the pipeline, it does not stage real sleep well, and nothing here is for clinical use (the page and
every output say so).

Safety and reliability, server side:
- uploads are checked by content (EDF/BDF header, exact length), size, duration and channels
  (:mod:`psgvlm.night.uploads`) before any reader sees them; a bad or truncated file gets a message, never
  a stack trace (``show_error`` stays off, so unexpected errors show a generic message);
- each browser session gets its own folder; the upload is copied there under a neutral name and the
  copy Gradio kept is deleted at once; the folder is deleted when the session ends (page closed:
  ``unload``; idle: the ``gr.State`` time-to-live), on exit and on SIGTERM/SIGINT, and Gradio's own
  cache is swept (``delete_cache``); two sessions that staged the same file never lose each other's
  downloads (:mod:`psgvlm.night.sessions`);
- a hypnogram's format is detected from its content and the file read at upload, so a bad one is
  refused with its reason before Stage is pressed; every error is shown with its text;
- patient-identifying EDF header fields (name, birth date, hospital code) are never read into
  outputs; outputs are named neutrally;
- one model, one queue: scoring runs one request at a time (``concurrency_limit=1``), results live
  in per-session state, so two users never see each other's results;
- plots are matplotlib ``Figure`` objects with their own canvas, saved and dropped (no pyplot).

This file is the UI only: the layout (:func:`build_app`) and event handlers (:class:`DemoApp`) over
library calls: :mod:`psgvlm.night.stage` (stage a night), :mod:`psgvlm.night.outputs` (its files),
:mod:`psgvlm.night.viewer` (one epoch, attribution), :mod:`psgvlm.night.predictors` (every predictor:
the VLM, YASA, GSSC when installed, their soft vote; the review list), :mod:`psgvlm.night.sessions`
(per-session folders).
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import sys
import threading
from dataclasses import replace
from pathlib import Path

# The demo must not phone home: Gradio's usage analytics are off unless the user turns them on.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402  module level: Gradio resolves the gr.Request type hints against these globals

from psgvlm.image.renderer import RenderSettings  # noqa: E402
from psgvlm.io.hypnogram_formats import HYPNOGRAM_FORMATS  # noqa: E402
from psgvlm.night.bands import propose_channels  # noqa: E402
from psgvlm.night.outputs import statistics_table, summarize, write_outputs  # noqa: E402
from psgvlm.night.predictors import PREDICTORS, stages_of  # noqa: E402
from psgvlm.night.sessions import (  # noqa: E402
    Session,
    SessionStore,
    cleanup_on_exit,
    copy_upload,
    discard_upload,
    safe_message,
    upload_arrived,
)
from psgvlm.night.stage import (  # noqa: E402
    default_run,
    model_info,
    read_input,
    render_settings,
    run_channels,
    stage_recording,
    with_lights,
    with_primary,
)
from psgvlm.night.uploads import (  # noqa: E402
    MAX_BYTES,
    MAX_DURATION_S,
    MIN_DURATION_S,
    UploadError,
    validate_hypnogram_upload,
    validate_recording_upload,
)
from psgvlm.night.viewer import attribution_overlay, render_one  # noqa: E402
from psgvlm.stages import STAGES, UNSCORED  # noqa: E402

TITLE = "psgvlm: sleep staging from PSG images"
SESSION_TTL_S = 3600  # an idle session's files are deleted after this many seconds
CACHE_SWEEP = (600, 3600)  # Gradio cache: every 10 min, delete files older than 1 h
NO_CHANNEL = "-"
PRIMARY_CHOICES = ["auto", *PREDICTORS]  # whose stages fill the hypnogram, statistics and downloads
OUTPUT_ORDER = ("hypnogram.tsv", "hypnogram.csv", "hypnogram_annotations.edf", "hypnodensity.npy", "summary.json",
                "hypnogram.png", "hypnogram_yasa.json", "hypnogram_events.tsv", "confusion.png")  # the Downloads
# list (confusion.png only with an expert hypnogram); hypnogram_yasa.json: yasa.Hypnogram.from_json(path)


def _format_text(fmt: str) -> str:
    """A hypnogram format for the status line: its name and what it is."""
    return f"read as {fmt}: {HYPNOGRAM_FORMATS[fmt][1]}"


def _shown(handler):
    """``handler`` with any error shown in the page with its text: Gradio shows a ``gr.Error``'s message
    but only an empty error box for any other exception (``show_error`` stays off)."""

    @functools.wraps(handler)
    def run(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as err:  # noqa: BLE001  a library failing on odd input: its message, never a trace
            raise gr.Error(f"Something went wrong ({type(err).__name__}): {safe_message(err)}") from None

    return run


def _agreement_md(title: str, truth, pred, rows: str = "expert", cols: str = "model") -> str:
    """Agreement of two hypnograms as Markdown: the headline metrics and the confusion matrix."""
    from psgvlm.night.predictors import agreement

    m = agreement(truth, pred)  # epochs both scored (UNS on either side left out)
    if m is None:
        return f"**{title}:** no scored epochs to compare."
    lines = [f"**{title}** ({m['n_epochs']} epochs, {m['n_unscored']} unscored left out): "
             f"accuracy {m['accuracy']:.3f}, balanced accuracy {m['balanced_accuracy']:.3f}, "
             f"Cohen's kappa {m['kappa']:.3f}, macro F1 {m['macro_f1']:.3f}", "",
             f"| {rows} ↓ / {cols} → | " + " | ".join(STAGES) + " |",
             "|---|" + "---|" * len(STAGES)]
    for name, row in zip(STAGES, m["confusion"]):
        lines.append(f"| {name} | " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines)


def _predictors_md(result, summary: dict) -> str:
    """Every predictor: what ran on which channels, agreement with the expert, pairwise agreement, reasons."""
    lines = [f"**Predictors** (primary: **{result.primary}**)", "",
             "| predictor | kind | channels | vs expert: accuracy | kappa | macro F1 |", "|---|---|---|---|---|---|"]
    for name, e in summary["predictors"].items():
        if not e["ran"]:
            lines.append(f"| {name} | {e['kind']} | not run: {e['reason']} | | | |")
            continue
        a = e.get("agreement") or {}
        cells = [f"{a[k]:.3f}" if k in a else "" for k in ("accuracy", "kappa", "macro_f1")]
        lines.append(f"| {name}{' (primary)' if e['primary'] else ''} | {e['kind']} | {', '.join(e['channels'])} | "
                     + " | ".join(cells) + " |")
    pairs = {k: v for k, v in summary["pairwise_agreement"].items() if v}
    if pairs:
        lines += ["", "Pairwise: " + "; ".join(f"{k} kappa {v['kappa']:.2f} (accuracy {v['accuracy']:.2f})"
                                             for k, v in pairs.items())]
    lines += ["", f"**Review list**: {summary['review']['n_epochs']} epochs where predictors disagree or the "
                  f"primary's confidence is below {summary['review']['confidence_below']:g}; step through them "
                  "with the review buttons of the epoch viewer."]
    return "\n".join(lines)


class DemoApp:
    """The served model, the session store and the event handlers of one app (see :func:`build_app`)."""

    def __init__(self, run_dir, predictor, *, max_bytes: int, min_duration_s: float, max_duration_s: float,
                 session_ttl_s: float, workdir=None):
        self.run_dir = Path(run_dir)
        self.predictor = predictor
        self.limits = {"max_bytes": max_bytes, "min_duration_s": min_duration_s, "max_duration_s": max_duration_s}
        self.session_ttl_s = session_ttl_s
        self.bands, self.modalities, _ = run_channels(predictor.dataset_meta)
        self.image_px = RenderSettings.from_dict(render_settings(predictor.dataset_meta)).size
        self.info = model_info(self.run_dir)
        self.store = SessionStore(workdir)
        self.model_lock = threading.Lock()  # one model in memory, used by one request at a time
        self.example: dict | None = None  # the staged example every new page opens with

    def _session(self, state: Session | None, request: gr.Request) -> Session:
        folder = self.store.folder(request.session_hash if request is not None else "local")
        if state is None or Path(state.dir) != folder:
            return Session(dir=str(folder))
        return state

    # -- upload -------------------------------------------------------------------------------
    def load(self, rec_file, hyp_file, state, request: gr.Request):
        """Validate and keep an upload (recording and/or hypnogram); propose a channel per band."""
        sess = self._session(state, request)
        if hyp_file is not None:
            upload_arrived(hyp_file)  # moved into Gradio's cache after the upload request answered
        if rec_file is not None:
            if not upload_arrived(rec_file):
                raise gr.Error("The recording's upload did not reach the server; upload it again.")
            return self._accept(Path(rec_file), hyp_file, sess)
        keep = [gr.update() for _ in self.bands]
        if sess.recording is not None and Path(sess.recording).is_file():
            # A hypnogram added (or replaced) after the recording: keep the recording and channels.
            if hyp_file is None:
                return [replace(sess, hypnogram=None, result=None), "Hypnogram removed.", *keep]
            try:
                fmt = validate_hypnogram_upload(hyp_file, name=Path(hyp_file).name)
                own = copy_upload(hyp_file, Path(sess.dir), "hypnogram")
            except UploadError as err:
                raise gr.Error(str(err)) from None
            except OSError as err:
                raise gr.Error(f"Could not read this file: {safe_message(err, sess.dir)}") from None
            finally:
                discard_upload(hyp_file)
            return [replace(sess, hypnogram=str(own), result=None),
                    f"Expert hypnogram attached ({_format_text(fmt)}). Press **Stage**.", *keep]
        if hyp_file is not None:
            return [sess, "Hypnogram received; now upload the recording (EDF, EDF+ or BDF).", *keep]
        raise gr.Error("Upload a recording first (EDF, EDF+ or BDF).")

    def _accept(self, rec_path: Path, hyp_file, sess: Session):
        folder = Path(sess.dir)
        if self.store.is_busy(folder):
            raise gr.Error("This session is still staging the previous recording; upload again when it is done.")
        try:
            header = validate_recording_upload(rec_path, name=rec_path.name, **self.limits)
            hyp_fmt = None if hyp_file is None else validate_hypnogram_upload(hyp_file, name=Path(hyp_file).name)
            self.store.delete_files(folder)  # a new upload replaces this session's previous files
            folder.mkdir(parents=True, exist_ok=True)
            own = copy_upload(rec_path, folder, "recording")
            hyp_own = None if hyp_file is None else copy_upload(hyp_file, folder, "hypnogram")
            # Auto-detect from the header alone (cheap); the full read happens when staging.
            names, mapping = propose_channels(header, self.bands, self.modalities)
        except UploadError as err:
            raise gr.Error(str(err)) from None
        except (ValueError, OSError) as err:
            raise gr.Error(f"Could not read this file: {safe_message(err, folder)}") from None
        finally:
            discard_upload(rec_path)
            if hyp_file is not None:
                discard_upload(hyp_file)
        labels = [c for c, _ in names]
        sess = replace(sess, recording=str(own), hypnogram=None if hyp_own is None else str(hyp_own),
                       labels=labels, result=None)
        eeg = [c for c, m in names if m == "EEG"]
        status = (f"Recording accepted: {header.kind}, {header.duration_s / 3600:.2f} h, "
                  f"{len(header.labels)} signals ({len(eeg)} EEG). "
                  + (f"Expert hypnogram attached ({_format_text(hyp_fmt)}). " if hyp_own else "")
                  + "Check the channel for each band, then press **Stage**.")
        if not eeg:
            status = "No EEG channel detected in this recording: pick one by hand below, or upload another file."
        updates = [gr.update(choices=[NO_CHANNEL, *labels], value=m or NO_CHANNEL) for m in mapping]
        return [sess, status, *updates]

    # -- staging ------------------------------------------------------------------------------
    def stage(self, state, primary, progress=gr.Progress(), *channel_values):  # noqa: B008
        """Score every epoch with every predictor; write the downloads. Gradio inserts ``progress`` at its position."""
        sess = state
        if sess is None or sess.recording is None or not Path(sess.recording).is_file():
            raise gr.Error("Upload a recording first (EDF, EDF+ or BDF).")
        if primary not in PRIMARY_CHOICES:
            raise gr.Error(f"Primary predictor {primary!r} is not one of {PRIMARY_CHOICES}.")
        folder = Path(sess.dir)
        # No value at all (an API client that sends none) means auto-detect; "-" means a flat band.
        channels = None if all(v in (None, "") for v in channel_values) else [
            NO_CHANNEL if v in (None, "") else v for v in channel_values]
        progress(0, desc="reading")
        with self.store.busy(folder) as hold:
            out = self._stage_in(sess, folder, channels, primary, progress)
            hold["ok"] = True
        return out

    def _stage_in(self, sess, folder, channels, primary, progress):
        try:
            rec = read_input(sess.recording, sess.hypnogram)
            with self.model_lock:
                result = stage_recording(
                    rec, run_dir=self.run_dir, predictor=self.predictor, channels=channels,
                    epochs_path=folder / "epochs.npy", primary=primary,
                    progress=lambda done, total: progress(done / total, desc=f"VLM: scoring epoch {done}/{total}"),
                    source_sha256=None)
            out = folder / "outputs"
            self.store.delete_files(out)
            paths = write_outputs(result, out)
        except (UploadError, ValueError, OSError, KeyError) as err:
            raise gr.Error(f"Could not stage this recording: {safe_message(err, folder)}") from None
        except Exception as err:  # a reader or library failing on odd input: a message, not a trace
            raise gr.Error(f"Could not stage this recording ({type(err).__name__}): "
                           f"{safe_message(err, folder)}") from None
        return self.present(replace(sess, result=result), paths)

    def set_lights(self, state, lights_off, lights_on):
        """Time in bed (lights off/on: clock time HH:MM[:SS] or seconds from the start): statistics, hypnogram
        and downloads redone, nothing rerun; both empty = the whole night."""
        sess = state
        if sess is None or sess.result is None:
            raise gr.Error("Stage a recording first.")
        try:
            result = with_lights(sess.result, lights_off or None, lights_on or None)
        except ValueError as err:
            raise gr.Error(str(err).replace("--lights-", "Lights ")) from None
        return self._rewrite(sess, result)

    def _rewrite(self, sess, result):
        """Write the downloads of a changed (not rerun) night and present it."""
        folder = Path(sess.dir)
        with self.store.busy(folder) as hold:
            out = folder / "outputs"
            self.store.delete_files(out)
            paths = write_outputs(result, out)
            hold["ok"] = True
        return self.present(replace(sess, result=result), paths)

    def set_primary(self, state, primary):
        """Another predictor's stages as the primary: hypnogram, statistics and downloads redone, nothing rerun."""
        sess = state
        if sess is None or sess.result is None:
            raise gr.Error("Stage a recording first.")
        try:
            result = with_primary(sess.result, primary)
        except ValueError as err:
            raise gr.Error(str(err)) from None
        return self._rewrite(sess, result)

    def present(self, sess, paths):
        """UI values for a staged session: state, status, plot, statistics, agreement, files, slider."""
        result = sess.result
        summary = summarize(result)
        agreement = [_predictors_md(result, summary)]
        if result.expert is not None:
            agreement.append(_agreement_md(f"{result.primary} (primary) vs expert hypnogram", result.expert,
                                           result.stages, cols=result.primary))
        flat = [b for b, m in zip(result.bands, result.channel_map) if m is None]
        start = summary.get("start") or {}
        when = (start.get("datetime") or "").replace("T", " ") or (
            f"{start['time']} (date anonymised)" if start.get("time") else "unknown (anonymised header)")
        bed = summary["time_in_bed"]
        status = (f"Staged {result.n_epochs} epochs in {result.timings_s['total']:.1f} s with "
                  f"{', '.join(result.predictions)}; primary: **{result.primary}**. Recording started {when}."
                  + (f" Time in bed: {bed['n_epochs']} epochs from epoch {bed['first_epoch']} (lights off "
                     f"{bed['lights_off'] or bed['lights_off_s']}, on {bed['lights_on'] or bed['lights_on_s']})."
                     if bed["given"] else "")
                  + (f" VLM bands left flat (no channel): {', '.join(flat)}." if flat else ""))
        for note in result.recording.get("warnings", []):
            status += "\n\nNote: " + note.replace("recording 'recording': ", "")
        files = [str(paths[k]) for k in OUTPUT_ORDER if k in paths]
        slider = gr.update(minimum=0, maximum=max(result.n_epochs - 1, 0), value=0, interactive=True)
        return [sess, status, str(paths["hypnogram.png"]), statistics_table(result), "\n\n".join(agreement),
                files, slider]

    # -- the example (demos, screenshots): staged once at start-up; each page gets its own copy ---
    def stage_example(self, example, example_hypnogram=None) -> None:
        folder = self.store.root / "example"
        folder.mkdir(parents=True, exist_ok=True)
        validate_recording_upload(example, **self.limits)
        rec = read_input(example, example_hypnogram)
        with self.model_lock:
            result = stage_recording(rec, run_dir=self.run_dir, predictor=self.predictor,
                                     epochs_path=folder / "epochs.npy")
        self.example = {"result": result, "paths": write_outputs(result, folder / "outputs"),
                        "labels": rec.ch_names, "dir": str(folder)}

    def _example_session(self, request) -> Session:
        """A session holding its own copy of the staged example (so the epoch viewer works on it)."""
        sess = self._session(None, request)
        folder = Path(sess.dir)
        self.store.delete_files(folder)
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.example["result"].epochs_path, folder / "epochs.npy")
        result = replace(self.example["result"], epochs_path=str(folder / "epochs.npy"))
        return replace(sess, labels=self.example["labels"], result=result)

    # -- epoch viewer -------------------------------------------------------------------------
    def epoch_view(self, state, epoch, with_attribution, request: gr.Request):
        """The rendered image of one epoch, its stage probabilities and (on request) attribution."""
        sess = state
        if (sess is None or sess.result is None) and self.example is not None:
            sess = self._example_session(request)  # the page still shows the example
        if sess is None or sess.result is None:
            raise gr.Error("Stage a recording first.")
        with self.store.busy(sess.dir):
            return [sess, *self.epoch_in(sess, int(epoch), with_attribution)]

    def review_step(self, state, epoch, step, with_attribution, request: gr.Request):
        """The next (``step`` > 0) or previous review-list epoch from ``epoch``, shown in the viewer."""
        sess = state
        if (sess is None or sess.result is None) and self.example is not None:
            sess = self._example_session(request)
        if sess is None or sess.result is None:
            raise gr.Error("Stage a recording first.")
        flagged = [k for k, why in enumerate(sess.result.review) if why]
        if not flagged:
            raise gr.Error("The review list is empty: the predictors agree and the primary is confident everywhere.")
        k = int(epoch)
        after = [e for e in flagged if e > k] if step > 0 else [e for e in flagged if e < k][::-1]
        target = after[0] if after else (flagged[0] if step > 0 else flagged[-1])  # wraps around
        with self.store.busy(sess.dir):
            return [sess, target, *self.epoch_in(sess, target, with_attribution)]

    def epoch_in(self, sess, k, with_attribution):
        """(image path, stage probabilities, Markdown) of epoch ``k`` of a staged session."""
        from PIL import Image

        result = sess.result
        try:
            image = render_one(result, k)
        except (ValueError, OSError) as err:
            raise gr.Error(safe_message(err, sess.dir)) from None
        views = Path(sess.dir) / "views"  # files, not arrays: session cleanup can find Gradio's copies
        views.mkdir(exist_ok=True)
        out_path = views / f"epoch_{k:05d}.png"
        probs = {s: float(p) for s, p in zip(STAGES, result.probs[k])}
        others = []
        for name, hyp in result.predictions.items():
            if name != result.primary:
                code = int(stages_of(hyp)[k])
                others.append(f"{name} **{'unscored' if code == UNSCORED else STAGES[code]}**"
                              + ("" if code == UNSCORED else f" ({hyp.probs[k].max():.0%})"))
        extra = f" Others: {', '.join(others)}." if others else ""
        if result.expert is not None:
            e = int(result.expert[k])
            extra += f" Expert: **{'unscored' if e == UNSCORED else STAGES[e]}**."
        if result.review and result.review[k]:
            extra += f" On the review list: {result.review[k]}."
        start = result.starts_s[k]
        code = int(result.stages[k])
        clock = result.clock_times()
        at = f"{clock[k].split('T')[-1]}, " if clock else ""
        text = (f"Epoch {k} ({at}{start / 3600:.2f} h, {start:.0f} s): {result.primary} (primary) says "
                f"**{'unscored' if code == UNSCORED else STAGES[code]}** ({result.confidence[k]:.0%}).{extra}")
        context = (result.model or {}).get("context", 0)
        if context:  # the run reads neighbouring epochs: the viewer shows the strip it scored
            text += (f" The image is the strip of epochs {k - context} to {k + context} the model read; epoch {k} "
                     f"is the middle one, on white (grey panels: no epoch).")
        if with_attribution:
            with self.model_lock:
                overlay, note = attribution_overlay(self.predictor, Image.fromarray(image))
            text += "\n\nAttribution of the VLM (the model that reads this image). " + note
            if result.channels:  # the band names above are the model's; say which file channel each one shows
                text += "\n\nBands drawn from the recording: " + ", ".join(
                    f"{c['band']} = {c['label'] or 'flat'}" + (" (substitute)" if c["how"] == "substitute" else "")
                    for c in result.channels) + "."
            image = overlay
            out_path = views / f"epoch_{k:05d}_attribution.png"
        Image.fromarray(image).save(out_path)
        return str(out_path), probs, text

    def unload(self, request: gr.Request):
        self.store.delete(request.session_hash)

    def initial_values(self) -> dict:
        """The page's first values: the staged example (the same for everyone: it is synthetic), or empty."""
        init = {"status": "Upload a recording to begin. Files are validated on the server and deleted when you "
                          "close the page.", "hypno": None, "stats": None, "agreement": "", "files": None,
                "epoch": 0, "epoch_max": 1, "img": None, "probs": None, "text": "", "labels": [],
                "mapping": [None] * len(self.bands)}
        if self.example is None:
            return init
        ex = Session(dir=self.example["dir"], labels=self.example["labels"], result=self.example["result"])
        _, ex_status, init["hypno"], init["stats"], init["agreement"], init["files"], _ = self.present(
            ex, self.example["paths"])
        res = ex.result
        k = res.n_epochs // 2  # mid-night: usually sleep, a more telling first view than lights-off wake
        init["img"], init["probs"], init["text"] = self.epoch_in(ex, k, False)
        init.update(epoch=k, epoch_max=max(res.n_epochs - 1, 1), labels=ex.labels, mapping=res.channel_map,
                    status="**Example**: a synthetic night (no real patient), already staged. Upload a recording "
                           "to stage your own. " + ex_status)
        return init


def _layout(app: DemoApp, init: dict) -> gr.Blocks:
    """The page: uploads and channel choice, hypnogram, statistics, agreement, downloads, epoch viewer."""
    with gr.Blocks(title=TITLE, delete_cache=CACHE_SWEEP) as demo:
        state = gr.State(None, time_to_live=app.session_ttl_s,
                         delete_callback=lambda s: s is not None and app.store.delete_dir(s.dir))
        gr.Markdown(f"# {TITLE}\n"
                    f"Model: **{app.info['run']}**. \u26a0\ufe0f **{app.info['notice']}**")
        with gr.Row():
            with gr.Column(scale=2):
                rec_file = gr.File(label="Recording (EDF, EDF+ or BDF)", type="filepath")
                hyp_file = gr.File(label="Expert hypnogram, optional (CSV/TSV init_sec,duration_sec,stage; "
                                         "one label per line; EDF+; NSRR XML)", type="filepath")
            with gr.Column(scale=3):
                status = gr.Markdown(init["status"])
                gr.Markdown("**Channels**: the model draws one band per channel below (top to bottom); "
                            "each was auto-detected from the file, change it if needed ('-' = leave flat).")
                with gr.Row():
                    dropdowns = [gr.Dropdown(choices=[NO_CHANNEL, *init["labels"]], value=m or NO_CHANNEL,
                                             label=f"{b} ({app.modalities.get(b, '?')})", min_width=110)
                                 for b, m in zip(app.bands, init["mapping"])]
                primary = gr.Dropdown(choices=PRIMARY_CHOICES, value="auto", label="Primary predictor (whose stages "
                                      "fill the hypnogram, statistics and downloads; auto: GSSC > vote > YASA > VLM)")
                stage_btn = gr.Button("Stage", variant="primary")
                with gr.Row():  # time in bed, applied to a staged night (statistics follow; nothing rerun)
                    lights_off = gr.Textbox(label="Lights off (HH:MM[:SS] or seconds from the start)", min_width=110)
                    lights_on = gr.Textbox(label="Lights on (HH:MM[:SS] or seconds from the start)", min_width=110)
                    lights_btn = gr.Button("Apply time in bed", size="sm")
        hypno = gr.Image(init["hypno"], label="Hypnograms of every predictor (primary on top), expert, hypnodensity",
                         type="filepath", interactive=False)
        with gr.Row():
            stats = gr.Dataframe(init["stats"], headers=["Statistic", "Model", "Expert"], label="Sleep statistics",
                                 interactive=False, max_height=720)
            with gr.Column():
                agreement = gr.Markdown(init["agreement"])
                files = gr.File(init["files"], label="Downloads", file_count="multiple", interactive=False)
        gr.Markdown("### Epoch viewer")
        with gr.Row():
            with gr.Column(scale=1):
                epoch = gr.Slider(0, init["epoch_max"], value=init["epoch"], step=1, label="Epoch",
                                  interactive=app.example is not None)
                with_attr = gr.Checkbox(label="Show attribution heatmap (patch occlusion; slower)", value=False)
                show_btn = gr.Button("Show epoch")
                with gr.Row():
                    prev_btn = gr.Button("◀ Previous review epoch", size="sm")
                    next_btn = gr.Button("Next review epoch ▶", size="sm")
                epoch_text = gr.Markdown(init["text"])
                epoch_probs = gr.Label(init["probs"], label="Stage probabilities", num_top_classes=5)
            with gr.Column(scale=1):
                epoch_img = gr.Image(init["img"], label=f"Rendered epoch ({app.image_px}x{app.image_px}, the model's input)", type="filepath",
                                     interactive=False, height=360)

        load_inputs = [rec_file, hyp_file, state]
        load_outputs = [state, status, *dropdowns]
        # Uploading either file validates it at once; "/load" is also the API endpoint for clients.
        rec_file.upload(_shown(app.load), load_inputs, load_outputs, api_name="load", concurrency_limit=4)
        hyp_file.upload(_shown(app.load), load_inputs, load_outputs, api_name=False, concurrency_limit=4)
        hyp_file.clear(_shown(app.load), load_inputs, load_outputs, api_name=False, concurrency_limit=4)
        staged = [state, status, hypno, stats, agreement, files, epoch]
        stage_btn.click(_shown(app.stage), [state, primary, *dropdowns], staged,
                        api_name="stage", concurrency_limit=1, concurrency_id="model")
        primary.input(_shown(app.set_primary), [state, primary], staged, api_name="primary", concurrency_limit=1,
                      concurrency_id="model")
        lights_btn.click(_shown(app.set_lights), [state, lights_off, lights_on], staged, api_name="lights",
                         concurrency_limit=1, concurrency_id="model")
        step = gr.Number(1, visible=False)  # +1 / -1: which way the review buttons go
        back = gr.Number(-1, visible=False)
        review_out = [state, epoch, epoch_img, epoch_probs, epoch_text]
        next_btn.click(_shown(app.review_step), [state, epoch, step, with_attr], review_out, api_name="review",
                       concurrency_limit=1, concurrency_id="model")
        prev_btn.click(_shown(app.review_step), [state, epoch, back, with_attr], review_out, api_name=False,
                       concurrency_limit=1, concurrency_id="model")
        show_btn.click(_shown(app.epoch_view), [state, epoch, with_attr], [state, epoch_img, epoch_probs, epoch_text],
                       api_name="epoch", concurrency_limit=1, concurrency_id="model")
        demo.unload(app.unload)
    return demo


def build_app(run_dir=None, *, predictor=None, max_bytes: int = MAX_BYTES,
              min_duration_s: float = MIN_DURATION_S, max_duration_s: float = MAX_DURATION_S,
              session_ttl_s: float = SESSION_TTL_S, workdir=None, example=None, example_hypnogram=None):
    """The Gradio Blocks app.

    Parameters
    ----------
    run_dir : path-like, optional
        Run directory to serve; default the embedded default model.
    predictor : optional
        A loaded predictor for ``run_dir`` (tests pass one to save loading time).
    max_bytes, min_duration_s, max_duration_s
        Upload limits (bytes, seconds).
    session_ttl_s : float
        Idle time after which a session's files are deleted.
    workdir : path-like, optional
        Root of the per-session folders (default a fresh temporary folder).
    example, example_hypnogram : path-like, optional
        A recording (and hypnogram) every new page opens with, staged: for demos and screenshots.

    Returns
    -------
    (gr.Blocks, psgvlm.night.sessions.SessionStore)
    """
    run_dir = Path(run_dir) if run_dir is not None else default_run()
    if predictor is None:
        from psgvlm.vlm.predict import load_predictor

        predictor = load_predictor(run_dir)
    app = DemoApp(run_dir, predictor, max_bytes=max_bytes, min_duration_s=min_duration_s,
                  max_duration_s=max_duration_s, session_ttl_s=session_ttl_s, workdir=workdir)
    if example is not None:
        app.stage_example(example, example_hypnogram)
    demo = _layout(app, app.initial_values())
    demo.queue(default_concurrency_limit=1)
    return demo, app.store


def _cleanup(demo, store) -> None:
    """Delete every session's files and the files Gradio cached for this app (process end)."""
    store.close()
    try:
        from gradio.route_utils import delete_files_created_by_app

        delete_files_created_by_app(demo, None)
    except (ImportError, OSError):  # a Gradio without it: its cache sweep stays the fallback
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", help="run directory to serve (default: the embedded default model)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for all)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--max-file-mb", type=float, default=MAX_BYTES / 1024**2, help="upload size limit, MiB")
    parser.add_argument("--example", help="recording every new page opens with, already staged (demos)")
    parser.add_argument("--example-hypnogram", help="expert hypnogram for --example")
    args = parser.parse_args(argv)
    for name in ("example", "example_hypnogram"):
        value = getattr(args, name)
        if value and not Path(value).is_file():
            print(f"app.py: --{name.replace('_', '-')} {value!r} is not a file", file=sys.stderr)
            return 2
    if args.run and not Path(args.run).is_dir():
        print(f"app.py: --run {args.run!r} is not a directory", file=sys.stderr)
        return 2
    max_bytes = int(args.max_file_mb * 1024**2)
    try:
        demo, store = build_app(args.run, max_bytes=max_bytes, example=args.example,
                                example_hypnogram=args.example_hypnogram)
    except (ValueError, OSError, UploadError) as err:
        print(f"app.py: {err}", file=sys.stderr)
        return 2
    demo.launch(server_name=args.host, server_port=args.port, max_file_size=max_bytes, show_error=False,
                prevent_thread_lock=True)
    # Uploads and session files go on SIGTERM/SIGINT too, not only on a normal exit: the uploaded
    # recording's header names the patient. Gradio's own copies (uploads not yet taken in, served files)
    # are deleted with them. Installed after launch, so a handler Gradio installs runs after ours.
    cleanup_on_exit(functools.partial(_cleanup, demo, store))
    demo.block_thread()
    return 0


if __name__ == "__main__":
    sys.exit(main())
