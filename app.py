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
  ``unload``; idle: the ``gr.State`` time-to-live) and Gradio's own cache is swept (``delete_cache``);
- patient-identifying EDF header fields (name, birth date, hospital code) are never read into
  outputs; outputs are named neutrally;
- one model, one queue: scoring runs one request at a time (``concurrency_limit=1``), results live
  in per-session state, so two users never see each other's results;
- plots are matplotlib ``Figure`` objects with their own canvas, saved and dropped (no pyplot).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import hashlib
import os
import shutil
import sys
import tempfile
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path

# The demo must not phone home: Gradio's usage analytics are off unless the user turns them on.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402  module level: Gradio resolves the gr.Request type hints against these globals
import numpy as np

from psgvlm.night.uploads import (
    MAX_BYTES,
    MAX_DURATION_S,
    MIN_DURATION_S,
    UploadError,
    validate_hypnogram_upload,
    validate_recording_upload,
)
from psgvlm.stages import STAGES, UNSCORED

TITLE = "psgvlm: sleep staging from PSG images"
SESSION_TTL_S = 3600  # an idle session's files are deleted after this many seconds
CACHE_SWEEP = (600, 3600)  # Gradio cache: every 10 min, delete files older than 1 h
NO_CHANNEL = "-"


@dataclass
class Session:
    """One browser session's files and results (held in ``gr.State``; never shared)."""

    dir: str
    recording: str | None = None  # our copy of the upload, neutral name
    hypnogram: str | None = None
    labels: list[str] = field(default_factory=list)  # channel canonical names in the recording
    result: object | None = None  # psgvlm.night.stage.StageResult
    yasa: dict | None = None


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
        with self._lock:
            path = self._by_hash.get(session_hash)
        if path is not None:
            self.delete_dir(path)

    def is_busy(self, path) -> bool:
        with self._lock:
            return Path(path) in self._busy

    def delete_dir(self, path) -> None:
        with self._lock:
            if Path(path) in self._busy:  # in use: delete when the event ends, unless it renews the state
                self._busy[Path(path)] = True
                return
            for key, value in list(self._by_hash.items()):
                if value == Path(path):
                    del self._by_hash[key]
        _delete_session_files(path)


def _delete_session_files(folder) -> None:
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


def _safe(err: Exception, session: Path | None) -> str:
    """An exception's message without server paths."""
    text = str(err)
    if session is not None:
        text = text.replace(str(session) + "/", "").replace(str(session), "")
    return text.replace(tempfile.gettempdir(), "")


def _copy_upload(src, dst_dir: Path, stem: str) -> Path:
    ext = Path(src).suffix.lower()
    dst = dst_dir / f"{stem}{ext}"
    shutil.copyfile(src, dst)
    return dst


def _discard_upload(path) -> None:
    """Delete Gradio's cached copy of an upload: we keep only the session copy."""
    try:
        Path(path).unlink(missing_ok=True)
    except OSError:
        pass


def _stats_rows(result) -> list[list[str]]:
    from psgvlm.night.sleepstats import format_statistics, sleep_statistics

    pred = format_statistics(sleep_statistics(result.stages, result.epoch_s))
    if result.expert is None:
        return [[name, value, ""] for name, value in pred]
    exp = format_statistics(sleep_statistics(result.expert, result.epoch_s))
    return [[a[0], a[1], b[1]] for a, b in zip(pred, exp)]


def _agreement_md(title: str, truth, pred, rows: str = "expert", cols: str = "model") -> str:
    from psgvlm.metrics import stage_metrics

    truth = np.asarray(truth)
    if not (truth != UNSCORED).any():
        return f"**{title}:** no scored epochs to compare."
    m = stage_metrics(truth, pred)
    lines = [f"**{title}** ({m['n_epochs']} epochs, {m['n_unscored']} unscored left out): "
             f"accuracy {m['accuracy']:.3f}, balanced accuracy {m['balanced_accuracy']:.3f}, "
             f"Cohen's kappa {m['kappa']:.3f}, macro F1 {m['macro_f1']:.3f}", "",
             f"| {rows} ↓ / {cols} → | " + " | ".join(STAGES) + " |",
             "|---|" + "---|" * len(STAGES)]
    for name, row in zip(STAGES, m["confusion"]):
        lines.append(f"| {name} | " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines)


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
    (gr.Blocks, SessionStore)
    """
    from psgvlm.night.stage import (
        model_info,
        read_input,
        render_one,
        run_channels,
        stage_recording,
        write_outputs,
        yasa_reference,
    )

    if run_dir is None:
        from psgvlm.night.stage import default_run

        run_dir = default_run()
    run_dir = Path(run_dir)
    if predictor is None:
        from psgvlm.vlm.predict import load_predictor

        predictor = load_predictor(run_dir)
    bands, modalities, _ = run_channels(predictor.dataset_meta)
    info = model_info(run_dir)
    store = SessionStore(workdir)
    model_lock = threading.Lock()  # one model in memory, used by one request at a time

    def _session(state: Session | None, request: gr.Request) -> Session:
        folder = store.folder(request.session_hash if request is not None else "local")
        if state is None or Path(state.dir) != folder:
            return Session(dir=str(folder))
        return state

    # -- events -------------------------------------------------------------------------------
    def load(rec_file, hyp_file, state, request: gr.Request):
        """Validate and keep an upload (recording and/or hypnogram); propose a channel per band."""
        sess = _session(state, request)
        if rec_file is not None and Path(rec_file).is_file():
            return _accept(Path(rec_file), hyp_file, sess, discard=True)
        keep = [gr.update() for _ in bands]
        if sess.recording is not None and Path(sess.recording).is_file():
            # A hypnogram added (or replaced) after the recording: keep the recording and channels.
            if hyp_file is None:
                return [replace(sess, hypnogram=None, result=None), "Hypnogram removed.", *keep]
            try:
                validate_hypnogram_upload(hyp_file, name=Path(hyp_file).name)
                own = _copy_upload(hyp_file, Path(sess.dir), "hypnogram")
            except UploadError as err:
                raise gr.Error(str(err)) from None
            except OSError as err:
                raise gr.Error(f"Could not read this file: {_safe(err, Path(sess.dir))}") from None
            finally:
                _discard_upload(hyp_file)
            return [replace(sess, hypnogram=str(own), result=None),
                    "Expert hypnogram attached. Press **Stage**.", *keep]
        if hyp_file is not None:
            return [sess, "Hypnogram received; now upload the recording (EDF, EDF+ or BDF).", *keep]
        raise gr.Error("Upload a recording first (EDF, EDF+ or BDF).")

    def _accept(rec_path: Path, hyp_file, sess: Session, *, discard: bool):
        folder = Path(sess.dir)
        if store.is_busy(folder):
            raise gr.Error("This session is still staging the previous recording; upload again when it is done.")
        try:
            header = validate_recording_upload(rec_path, name=rec_path.name, max_bytes=max_bytes,
                                               min_duration_s=min_duration_s, max_duration_s=max_duration_s)
            _delete_session_files(folder)  # a new upload replaces this session's previous files
            folder.mkdir(parents=True, exist_ok=True)
            own = _copy_upload(rec_path, folder, "recording")
            hyp_own = None
            if hyp_file is not None:
                validate_hypnogram_upload(hyp_file, name=Path(hyp_file).name)
                hyp_own = _copy_upload(hyp_file, folder, "hypnogram")
            from psgvlm.io.channels import canonical_names

            units = [s.unit for s in header.signals if s.label in header.labels]
            names = canonical_names(header.labels, units)
        except UploadError as err:
            raise gr.Error(str(err)) from None
        except (ValueError, OSError) as err:
            raise gr.Error(f"Could not read this file: {_safe(err, folder)}") from None
        finally:
            if discard:
                _discard_upload(rec_path)
                if hyp_file is not None:
                    _discard_upload(hyp_file)
        # Auto-detect from the header alone (cheap); the full read happens when staging.
        from psgvlm.io.recording import Channel, Recording
        from psgvlm.night.stage import auto_channels

        sig = {s.label: s for s in header.signals}
        shell = Recording(channels=[Channel(name=lab, canonical=c, modality=m, sfreq=max(sig[lab].sfreq, 1e-9),
                                            data=np.zeros(0, np.float32))
                                    for lab, (c, m) in zip(header.labels, names)],
                          subject="-", recording="-", dataset="generic", source="-")
        mapping = auto_channels(shell, bands, modalities)
        labels = [c for c, _ in names]
        sess = replace(sess, recording=str(own), hypnogram=None if hyp_own is None else str(hyp_own),
                       labels=labels, result=None, yasa=None)
        eeg = [c for c, m in names if m == "EEG"]
        status = (f"Recording accepted: {header.kind}, {header.duration_s / 3600:.2f} h, "
                  f"{len(header.labels)} signals ({len(eeg)} EEG). "
                  + ("Expert hypnogram attached. " if hyp_own else "")
                  + "Check the channel for each band, then press **Stage**.")
        if not eeg:
            status = "No EEG channel detected in this recording: pick one by hand below, or upload another file."
        updates = [gr.update(choices=[NO_CHANNEL, *labels], value=m or NO_CHANNEL) for m in mapping]
        return [sess, status, *updates]

    def stage(state, with_yasa, progress=gr.Progress(), *channel_values):  # noqa: B008
        """Score every epoch; write the downloads. Gradio inserts ``progress`` at its position."""
        sess = state
        if sess is None or sess.recording is None or not Path(sess.recording).is_file():
            raise gr.Error("Upload a recording first (EDF, EDF+ or BDF).")
        folder = Path(sess.dir)
        # No value at all (an API client that sends none) means auto-detect; "-" means a flat band.
        channels = None if all(v in (None, "") for v in channel_values) else [
            NO_CHANNEL if v in (None, "") else v for v in channel_values]
        progress(0, desc="reading")
        with store.busy(folder) as hold:
            out = _stage_in(sess, folder, channels, with_yasa, progress)
            hold["ok"] = True
        return out

    def _stage_in(sess, folder, channels, with_yasa, progress):
        try:
            rec = read_input(sess.recording, sess.hypnogram)
            with model_lock:
                result = stage_recording(
                    rec, run_dir=run_dir, predictor=predictor, channels=channels,
                    epochs_path=folder / "epochs.npy",
                    progress=lambda done, total: progress(done / total, desc=f"scoring epoch {done}/{total}"),
                    source_sha256=None)
            out = folder / "outputs"
            _delete_session_files(out)
            paths = write_outputs(result, out)
            ref = yasa_reference(rec, result.n_epochs) if with_yasa else None
        except (UploadError, ValueError, OSError, KeyError) as err:
            raise gr.Error(f"Could not stage this recording: {_safe(err, folder)}") from None
        except Exception as err:  # a reader or library failing on odd input: a message, not a trace
            raise gr.Error(f"Could not stage this recording ({type(err).__name__}): {_safe(err, folder)}") from None
        return _present(replace(sess, result=result, yasa=ref), paths)

    def _present(sess, paths):
        """UI values for a staged session: state, status, plot, statistics, agreement, files, slider."""
        result, ref = sess.result, sess.yasa
        agreement = []
        if result.expert is not None:
            agreement.append(_agreement_md("Model vs expert hypnogram", result.expert, result.stages))
        if ref is not None:
            ref_stages = ref["probs"].argmax(1)
            agreement.append(f"YASA reference: {ref['classifier']}, channels {ref['channels']}.")
            agreement.append(_agreement_md("Model vs YASA", ref_stages, result.stages, "YASA", "model"))
            if result.expert is not None:
                agreement.append(_agreement_md("YASA vs expert", result.expert, ref_stages, "expert", "YASA"))
        if not agreement:
            agreement.append("Upload an expert hypnogram or tick the YASA reference to see agreement.")
        flat = [b for b, m in zip(result.bands, result.channel_map) if m is None]
        status = (f"Staged {result.n_epochs} epochs in {result.timings_s['total']:.1f} s."
                  + (f" Bands left flat (no channel): {', '.join(flat)}." if flat else ""))
        for note in result.recording.get("warnings", []):
            status += "\n\nNote: " + note.replace("recording 'recording': ", "")
        files = [str(paths[k]) for k in ("hypnogram.tsv", "hypnogram.csv", "hypnogram_annotations.edf",
                                         "hypnodensity.npy", "summary.json", "hypnogram.png")]
        slider = gr.update(minimum=0, maximum=max(result.n_epochs - 1, 0), value=0, interactive=True)
        return [sess, status, str(paths["hypnogram.png"]), _stats_rows(result), "\n\n".join(agreement), files,
                slider]

    # The example (demos, screenshots) is staged once at start-up; each page gets its own copy.
    example_cache: dict = {}
    if example is not None:
        folder = store.root / "example"
        folder.mkdir(parents=True, exist_ok=True)
        validate_recording_upload(example, max_bytes=max_bytes, min_duration_s=min_duration_s,
                                  max_duration_s=max_duration_s)
        rec = read_input(example, example_hypnogram)
        with model_lock:
            example_cache["result"] = stage_recording(rec, run_dir=run_dir, predictor=predictor,
                                                      epochs_path=folder / "epochs.npy")
        example_cache["paths"] = write_outputs(example_cache["result"], folder / "outputs")
        example_cache["labels"] = rec.ch_names
        del rec

    def _example_session(request) -> Session:
        """A session holding its own copy of the staged example (so the epoch viewer works on it)."""
        sess = _session(None, request)
        folder = Path(sess.dir)
        _delete_session_files(folder)
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(example_cache["result"].epochs_path, folder / "epochs.npy")
        result = replace(example_cache["result"], epochs_path=str(folder / "epochs.npy"))
        return replace(sess, labels=example_cache["labels"], result=result)

    def epoch_view(state, epoch, with_attribution, request: gr.Request):
        """The rendered image of one epoch, its stage probabilities and (on request) attribution."""
        sess = state
        if (sess is None or sess.result is None) and example_cache:
            sess = _example_session(request)  # the page still shows the example
        if sess is None or sess.result is None:
            raise gr.Error("Stage a recording first.")
        with store.busy(sess.dir):
            return [sess, *_epoch_in(sess, int(epoch), with_attribution)]

    def _epoch_in(sess, k, with_attribution):
        result = sess.result
        try:
            image = render_one(result, k)
        except (ValueError, OSError) as err:
            raise gr.Error(_safe(err, Path(sess.dir))) from None
        from PIL import Image

        views = Path(sess.dir) / "views"  # files, not arrays: session cleanup can find Gradio's copies
        views.mkdir(exist_ok=True)
        out_path = views / f"epoch_{k:05d}.png"
        probs = {s: float(p) for s, p in zip(STAGES, result.probs[k])}
        expert = ""
        if result.expert is not None:
            e = int(result.expert[k])
            expert = f" Expert: **{'unscored' if e == UNSCORED else STAGES[e]}**."
        if sess.yasa is not None:
            expert += f" YASA: **{STAGES[int(sess.yasa['probs'][k].argmax())]}**."
        start = result.starts_s[k]
        text = (f"Epoch {k} ({start / 3600:.2f} h, {start:.0f} s): model says "
                f"**{STAGES[int(result.stages[k])]}** ({result.confidence[k]:.0%}).{expert}")
        if with_attribution:
            with model_lock:
                overlay, note = attribution_overlay(predictor, Image.fromarray(image))
            text += "\n\n" + note
            if overlay is not None:
                image = np.asarray(overlay)
                out_path = views / f"epoch_{k:05d}_attribution.png"
        Image.fromarray(image).save(out_path)
        return str(out_path), probs, text

    def unload(request: gr.Request):
        store.delete(request.session_hash)

    # -- layout -------------------------------------------------------------------------------
    # Initial page values: the staged example (instant, identical for everyone: it is synthetic), or empty.
    init = {"status": "Upload a recording to begin. Files are validated on the server and deleted when you "
                      "close the page.", "hypno": None, "stats": None, "agreement": "", "files": None,
            "epoch": 0, "epoch_max": 1, "img": None, "probs": None, "text": "", "labels": [],
            "mapping": [None] * len(bands)}
    if example_cache:
        ex = Session(dir=str(store.root / "example"), labels=example_cache["labels"], result=example_cache["result"])
        _, ex_status, init["hypno"], init["stats"], init["agreement"], init["files"], _ = _present(
            ex, example_cache["paths"])
        res = ex.result
        k = res.n_epochs // 2  # mid-night: usually sleep, a more telling first view than lights-off wake
        init["img"], init["probs"], init["text"] = _epoch_in(ex, k, False)
        init.update(epoch=k, epoch_max=max(res.n_epochs - 1, 1), labels=ex.labels, mapping=res.channel_map,
                    status="**Example**: a synthetic night (no real patient), already staged. Upload a recording "
                           "to stage your own. " + ex_status)

    with gr.Blocks(title=TITLE, delete_cache=CACHE_SWEEP) as demo:
        state = gr.State(None, time_to_live=session_ttl_s,
                         delete_callback=lambda s: s is not None and store.delete_dir(s.dir))
        gr.Markdown(f"# {TITLE}\n"
                    f"Model: **{info['run']}**. \u26a0\ufe0f **{info['notice']}**")
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
                                             label=f"{b} ({modalities.get(b, '?')})", min_width=110)
                                 for b, m in zip(bands, init["mapping"])]
                with_yasa = gr.Checkbox(label="Also run YASA's pretrained stager as a reference", value=False)
                stage_btn = gr.Button("Stage", variant="primary")
        hypno = gr.Image(init["hypno"], label="Hypnogram and hypnodensity", type="filepath", interactive=False)
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
                                  interactive=bool(example_cache))
                with_attr = gr.Checkbox(label="Show attribution heatmap (patch occlusion; slower)", value=False)
                show_btn = gr.Button("Show epoch")
                epoch_text = gr.Markdown(init["text"])
                epoch_probs = gr.Label(init["probs"], label="Stage probabilities", num_top_classes=5)
            with gr.Column(scale=1):
                epoch_img = gr.Image(init["img"], label="Rendered epoch (336x336, the model's input)", type="filepath",
                                     interactive=False, height=360)

        load_inputs = [rec_file, hyp_file, state]
        load_outputs = [state, status, *dropdowns]
        # Uploading either file validates it at once; "/load" is also the API endpoint for clients.
        rec_file.upload(load, load_inputs, load_outputs, api_name="load", concurrency_limit=4)
        hyp_file.upload(load, load_inputs, load_outputs, api_name=False, concurrency_limit=4)
        hyp_file.clear(load, load_inputs, load_outputs, api_name=False, concurrency_limit=4)
        stage_btn.click(stage, [state, with_yasa, *dropdowns],
                        [state, status, hypno, stats, agreement, files, epoch],
                        api_name="stage", concurrency_limit=1, concurrency_id="model")
        show_btn.click(epoch_view, [state, epoch, with_attr], [state, epoch_img, epoch_probs, epoch_text],
                       api_name="epoch", concurrency_limit=1, concurrency_id="model")
        demo.unload(unload)
    demo.queue(default_concurrency_limit=1)
    return demo, store


def attribution_overlay(predictor, image):
    """(overlay image, note): feature-ablation map of ``image`` (:mod:`psgvlm.image.attribution`) over it.

    576 patches of 14x14 are masked one at a time with the background colour; a patch's score is the
    Euclidean distance between the stage probabilities before and after. The note reads the map in
    signal terms (channel band and time window).
    """
    from matplotlib import colormaps

    from psgvlm.image.attribution import band_time_scores, describe, feature_ablation
    from psgvlm.image.dataset import band_layout

    out = feature_ablation(predictor.predict_proba, image, batch_size=64)
    norm = out["norm"]
    img = np.asarray(image.convert("RGB"), dtype=np.float32)
    size = img.shape[0]
    pix = np.kron(norm, np.ones((size // norm.shape[0], size // norm.shape[1])))
    heat = colormaps["jet"](pix)[..., :3] * 255.0
    alpha = 0.5 * pix[..., None]  # unimportant patches stay clear, so the waveform stays readable
    overlay = (img * (1 - alpha) + heat * alpha).clip(0, 255).astype(np.uint8)
    stage = STAGES[int(np.argmax(out["probs"]))]
    try:
        cells = band_time_scores(norm, band_layout(predictor.dataset_meta), size=size)
        where = describe(stage, cells)
    except (ValueError, KeyError) as err:
        where = f"(band mapping unavailable: {err})"
    return overlay, (f"Attribution ({out['n_forward']} forward passes, {out['seconds']:.1f} s): red patches "
                     f"change the stage probabilities most when masked. {where}.")


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
        demo, _ = build_app(args.run, max_bytes=max_bytes, example=args.example,
                            example_hypnogram=args.example_hypnogram)
    except (ValueError, OSError, UploadError) as err:
        print(f"app.py: {err}", file=sys.stderr)
        return 2
    demo.launch(server_name=args.host, server_port=args.port, max_file_size=max_bytes, show_error=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
