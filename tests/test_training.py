"""The recipes' shared run machinery (``psgvlm.training.TrainingRun``): trackers, the best checkpoint kept
beside the last, ``--resume_from_checkpoint latest`` resuming exactly, the model card written offline,
the Hub upload only when asked; and the plots every run dir gets (one stage palette, legends off the
data, the confusion matrix).

Run: python -m pytest -q tests/test_training.py      (~1 min on 2 busy cores; the sDREAMER recipe runs
in-process on a tiny signal dataset; the VLM recipe's cases are in tests/test_vlm.py)
"""

from __future__ import annotations

import dataclasses
import json
import runpy
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from psgvlm.training import (
    TrackingArguments,
    TrainingRun,
    find_checkpoint,
    list_checkpoints,
    read_jsonl,
    trackers,
    write_model_card,
)

REPO = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)


@dataclasses.dataclass(kw_only=True)
class _Args(TrackingArguments):
    output_dir: str  # the run dir
    seed: int = 0  # seed


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    """Each test builds its Accelerator as a fresh process would (the sDREAMER recipe on the CPU, the others
    on the default device); accelerate keeps one state per process, so it is cleared around each test."""
    from accelerate.state import AcceleratorState, GradientState

    def reset():
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()

    reset()
    yield
    reset()


@pytest.fixture
def no_upload(monkeypatch):
    """Record every Hub call instead of making it (and fail loudly if anything else reaches the Hub)."""
    import huggingface_hub

    calls = []
    monkeypatch.setattr(huggingface_hub, "create_repo", lambda *a, **k: calls.append(("create_repo", a, k)))
    monkeypatch.setattr(huggingface_hub, "upload_folder", lambda *a, **k: calls.append(("upload_folder", a, k)))
    return calls


# ---- trackers -----------------------------------------------------------------------------------------
def test_report_to_names_are_checked_and_none_means_no_tracker():
    assert trackers("none") == [] and trackers(["none"]) == [] and trackers([]) == []
    with pytest.raises(ValueError, match=r"report_to \['comet'\] not allowed; allowed: \['tensorboard', 'wandb', "
                                         r"'mlflow', 'none'\]"):
        trackers(["comet"])
    import importlib.util

    for name in ("wandb", "mlflow"):  # used only when installed; otherwise refused with the fix
        if importlib.util.find_spec(name) is None:
            with pytest.raises(ValueError, match=f"not installed; pip install {name}"):
                trackers([name])
        else:
            assert trackers([name]) == [name]


def test_push_to_hub_needs_a_repo_id(tmp_path):
    with pytest.raises(ValueError, match="--push_to_hub needs --hub_model_id"):
        TrainingRun(_Args(output_dir=str(tmp_path), push_to_hub=True), {})


# ---- best and last checkpoints ------------------------------------------------------------------------
def test_best_checkpoint_is_kept_beside_the_last_when_validation_peaks_early(tmp_path, no_upload):
    """Scripted validation kappa 0.8, 0.3, 0.1, 0.2 at steps 2, 4, 6, 8: with save_total_limit 1 only the
    best (step 2) and the last (step 8) remain, the best holds the step-2 weights, ``latest`` is step 8."""
    from safetensors.torch import load_file

    out = tmp_path / "run"
    args = _Args(output_dir=str(out), save_total_limit=1)
    run = TrainingRun(args, dataclasses.asdict(args))
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 5)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    model, opt = run.accelerator.prepare(model, opt)
    assert run.resume() == 0
    x = torch.randn(8, 4, device=run.accelerator.device)
    weights_at = {}
    for step, kappa in zip(range(1, 9), [None, 0.8, None, 0.3, None, 0.1, None, 0.2]):
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        run.accelerator.backward(loss)
        opt.step()
        run.log_step(step, loss=loss.item(), lr=0.5, grad_norm=1.0, samples=8)
        weights_at[step] = model.weight.detach().cpu().clone()
        if kappa is not None and not run.evaluated(step, {"val_kappa": kappa, "val_macro_f1": kappa}):
            run.save(step)
    summary = run.finish(8)["checkpoints"]
    assert summary["best"]["step"] == 2 and summary["last"] == "checkpoints/step-8"
    assert [s for s, _ in list_checkpoints(out)] == [2, 8]
    assert find_checkpoint("latest", out) == out / "checkpoints" / "step-8"
    saved = load_file(str(out / "checkpoints" / "step-2" / "model.safetensors"))
    assert torch.equal(saved["weight"], weights_at[2]) and not torch.equal(weights_at[2], weights_at[8])
    last_config = json.loads((out / "checkpoints" / "step-8" / "run_config.json").read_text())
    assert last_config["best"]["step"] == 2 and last_config["step"] == 8
    log = read_jsonl(out / "train_log.jsonl")
    assert [r["val_kappa"] for r in log if "val_kappa" in r] == [0.8, 0.3, 0.1, 0.2]
    assert all({"loss", "lr", "grad_norm", "samples_per_s"} <= set(r) for r in log if "loss" in r)
    assert (out / "loss_curve.png").is_file()
    with pytest.raises(FileNotFoundError, match="no finished checkpoint"):
        find_checkpoint("latest", tmp_path / "empty")
    run.accelerator.end_training()
    assert no_upload == []


# ---- a recipe end to end: trackers, exact resume from latest, card, no upload ---------------------------
@pytest.fixture(scope="module")
def signal_data(tmp_path_factory):
    sys.path.insert(0, str(REPO / "tests"))
    try:
        from test_baselines import make_recording
    finally:
        sys.path.pop(0)
    from psgvlm.baselines.signal_data import recording_to_signal, save_signal_dataset

    recs = [recording_to_signal(make_recording(f"s{i}", n_epochs=24, seed=i)) for i in range(5)]
    split = {"kind": "subject", "seed": 0, "train": ["s0", "s1", "s2"], "validation": ["s3"], "test": ["s4"]}
    return save_signal_dataset(recs, tmp_path_factory.mktemp("sig") / "sig", split=split)


def _sdreamer(out, signal_data, *extra):
    main = runpy.run_path(str(REPO / "recipes" / "sdreamer.py"))["main"]
    assert main(["--config", str(REPO / "recipes/configs/sdreamer_tiny.yaml"), "--signal_data", str(signal_data),
                 "--output_dir", str(out), "--max_steps", "6", "--eval_every", "2", "--per_device_train_batch_size",
                 "4", "--save_total_limit", "0", *extra]) == 0


def _untimed(rows):
    return [{k: v for k, v in r.items() if k not in ("samples_per_s", "elapsed_s")} for r in rows]


def test_recipe_logs_to_tensorboard_resumes_latest_exactly_and_writes_its_card(tmp_path, signal_data, no_upload):
    pytest.importorskip("tensorboard", reason="tensorboard (the dev extra) is not installed")
    a, b = tmp_path / "a", tmp_path / "b"
    _sdreamer(a, signal_data, "--report_to", "tensorboard")
    events = list((a / "logs").rglob("events.out.tfevents.*"))
    assert events, "no TensorBoard event files in the run dir"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars = EventAccumulator(str(events[0].parent)).Reload().Tags()["scalars"]
    assert {"loss", "lr", "grad_norm", "samples_per_s", "val_kappa", "val_macro_f1", "val_accuracy"} <= set(scalars)

    # a run killed after its step-4 checkpoint leaves exactly that on disk; `latest` continues it
    (b / "checkpoints").mkdir(parents=True)
    shutil.copytree(a / "checkpoints" / "step-4", b / "checkpoints" / "step-4")
    _sdreamer(b, signal_data, "--resume_from_checkpoint", "latest")
    assert _untimed(read_jsonl(b / "train_log.jsonl")) == _untimed(read_jsonl(a / "train_log.jsonl"))
    wa, wb = torch.load(a / "model.pt"), torch.load(b / "model.pt")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert (a / "predictions.jsonl").read_text() == (b / "predictions.jsonl").read_text()

    meta = json.loads((a / "meta.json").read_text())
    log = read_jsonl(a / "train_log.jsonl")
    kappas = {r["step"]: r["val_kappa"] for r in log if "val_kappa" in r}
    assert meta["checkpoints"]["best"]["step"] == max(kappas, key=lambda s: (kappas[s], -s))
    assert meta["checkpoints"]["last"] == "checkpoints/step-6"
    card = (a / "README.md").read_text()
    assert card.startswith("---\n") and "## Intended use" in card and "| Cohen's kappa |" in card
    assert "Synthetic data" not in card  # test fixtures, not `psgvlm synth` output
    for f in ("confusion.png", "loss_curve.png"):
        assert (a / f).is_file(), f
    assert no_upload == []  # never pushed unless asked

    with pytest.raises(ValueError, match=r"(?s)refusing to resume .*learning_rate: checkpoint=0.001 now=0.5"):
        _sdreamer(tmp_path / "c", signal_data, "--learning_rate", "0.5", "--resume_from_checkpoint",
                  str(a / "checkpoints" / "step-4"))


# ---- the model card and the upload ------------------------------------------------------------------
def _fake_run(run_dir: Path, input_dir: Path | None) -> Path:
    from psgvlm.predictions import make_rows, write_predictions
    from psgvlm.provenance import write_json_atomic

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, 60)
    probs = np.eye(5)[np.where(rng.random(60) < 0.7, labels, rng.integers(0, 5, 60))] * 0.9 + 0.02
    rows = make_rows(dataset="isruc", subjects=[f"s{i // 20}" for i in range(60)], recordings=["r"] * 60,
                     epochs=range(60), starts_s=np.arange(60) * 30.0, labels=labels.tolist(), probs=probs)
    write_predictions(run_dir, rows)
    dataset = {"format": "isruc", "channels": ["C3", "C4"], "split": {"kind": "subject", "seed": 0,
               "train": ["a", "b"], "validation": ["c"], "test": ["s0", "s1", "s2"]}}
    if input_dir is not None:
        dataset["input"] = {"path": str(input_dir)}
    write_json_atomic(run_dir / "meta.json", {"kind": "psgvlm-vlm-run", "base_model": "llava-hf/llava-v1.6-mistral-7b-hf",
                                              "adapter": "adapter", "config": {"learning_rate": 1e-4, "seed": 0},
                                              "dataset": dataset, "optimizer_steps": 12})
    return run_dir


def test_model_card_is_written_offline_with_cis_and_the_synthetic_notice(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    synth = tmp_path / "synth"
    synth.mkdir()
    (synth / "synth.json").write_text(json.dumps({"kind": "psgvlm-synthetic-psg"}))
    card = write_model_card(_fake_run(tmp_path / "s", synth)).read_text()
    assert "base_model: llava-hf/llava-v1.6-mistral-7b-hf" in card and "library_name: peft" in card
    assert "Synthetic data" in card and "## Intended use" in card and "not for diagnosis" in card
    assert "60 scored epochs of 3 subject(s)" in card and "split (subject, seed 0): train 2 subject(s)" in card
    kappa_row = next(line for line in card.splitlines() if line.startswith("| Cohen's kappa |"))
    lo, hi = map(float, kappa_row.split("|")[3].split(" to "))
    value = float(kappa_row.split("|")[2])
    assert lo <= value <= hi and lo < hi
    real = tmp_path / "real"
    real.mkdir()
    assert "Synthetic data" not in write_model_card(_fake_run(tmp_path / "r", real)).read_text()


def test_publish_uploads_only_when_asked_and_then_the_run_dir(tmp_path, no_upload):
    for push in (False, True):
        out = _fake_run(tmp_path / f"push{push}", None)
        args = _Args(output_dir=str(out), push_to_hub=push, hub_model_id="someone/tiny-stager" if push else "")
        TrainingRun(args, dataclasses.asdict(args)).publish(["adapter/*", "processor/*", "meta.json"])
        assert (out / "README.md").is_file() and (out / "confusion.png").is_file()
        if not push:
            assert no_upload == []
    (create, _, create_kw), (upload, _, upload_kw) = no_upload
    assert create == "create_repo" and upload == "upload_folder"
    assert upload_kw["repo_id"] == "someone/tiny-stager" and upload_kw["folder_path"] == str(tmp_path / "pushTrue")
    assert {"adapter/*", "processor/*", "README.md"} <= set(upload_kw["allow_patterns"])


# ---- plots ------------------------------------------------------------------------------------------
def _legends_clear_of_axes(monkeypatch):
    """Patch ``save_png`` so that every figure saved is checked: no legend box overlaps an axes box."""
    import evals.plots
    import psgvlm.plots

    checked, save = [], psgvlm.plots.save_png

    def check(fig, path, **kw):
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
        for legend in legends:
            box = legend.get_window_extent(renderer)
            for ax in fig.axes:
                assert not box.overlaps(ax.get_window_extent(renderer)), f"{Path(path).name}: legend over data"
        checked.append((Path(path).name, len(legends)))
        return save(fig, path, **kw)

    monkeypatch.setattr(psgvlm.plots, "save_png", check)
    monkeypatch.setattr(evals.plots, "save_png", check)
    return checked


def test_legends_sit_off_the_data(tmp_path, monkeypatch):
    from evals.plots import plot_metric_bars
    from psgvlm.plots import plot_hypnodensity, plot_hypnogram, plot_night
    from psgvlm.training import append_jsonl, plot_loss_curve

    checked = _legends_clear_of_axes(monkeypatch)
    rng = np.random.default_rng(0)
    codes, starts = rng.integers(0, 5, 80), np.arange(80) * 30.0
    probs = rng.dirichlet(np.ones(5), 80)
    for s in range(1, 21):
        append_jsonl(tmp_path / "log.jsonl", {"step": s, "loss": 2.0 / s})
        if s % 5 == 0:
            append_jsonl(tmp_path / "log.jsonl", {"step": s, "val_kappa": 0.95})  # high kappa: the old legend's spot
    plot_loss_curve(tmp_path / "log.jsonl", tmp_path / "loss.png")
    plot_hypnogram(np.zeros(80, int), codes, starts, tmp_path / "hyp.png")  # wake all night: the top right
    plot_hypnodensity(probs, starts, tmp_path / "dens.png")
    plot_night(codes, probs, starts, tmp_path / "night.png", expert=codes)
    plot_metric_bars({"a": {"kappa": 0.9, "f1": 0.95}, "b": {"kappa": 0.7, "f1": 0.9}}, tmp_path / "bars.png")
    assert [name for name, n in checked if n] == ["loss.png", "hyp.png", "dens.png", "night.png", "bars.png"]


def test_one_stage_palette_and_the_confusion_png(tmp_path):
    from PIL import Image

    import psgvlm.plots
    from psgvlm.plots import STAGE_COLORS, plot_confusion
    from psgvlm.stages import STAGES

    assert len(STAGE_COLORS) == len(STAGES) == len(set(STAGE_COLORS))
    # every drawing of stage colours goes through STAGE_COLORS: no copy of the palette anywhere else
    sources = [*(REPO / "psgvlm").rglob("*.py"), *(REPO / "evals").rglob("*.py"), REPO / "app.py"]
    for path in sources:
        if path == Path(psgvlm.plots.__file__) or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8").lower()
        assert not any(c.lower() in text for c in STAGE_COLORS), f"{path} copies the stage palette"
    png = plot_confusion(np.diag([5, 1, 9, 3, 4]) + 1, tmp_path / "confusion.png", title="x")
    pixels = np.asarray(Image.open(png).convert("RGB")).reshape(-1, 3)
    for color in STAGE_COLORS:  # the stage markers beside the labels are drawn in the palette
        rgb = np.array([int(color[i:i + 2], 16) for i in (1, 3, 5)])
        assert (np.abs(pixels.astype(int) - rgb).sum(1) < 6).any(), color
