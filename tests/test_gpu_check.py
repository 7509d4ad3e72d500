"""benchmarks/gpu_check.py: the real-size GPU check runs on a box without the optional packages.

Run: python -m pytest -q tests/test_gpu_check.py          (the smoke run: python -m pytest -q -m slow tests/test_gpu_check.py)

The fast tests import the script and every module its run imports with those packages hidden. The
smoke test (slow: ~30 s of CPU, more on a shared machine) runs ``gpu_check.py --smoke`` (CPU, tiny widths, the real processor when available) in a
fresh process with datasets, mne, gradio, yasa, edfio, matplotlib and torchvision hidden from the import
system, as on the GPU box; the processor files are copied to a temporary folder first (the file list
the script documents), so the copy the lead carries to the box is proven sufficient. Without
``../shared/models`` it runs the tiny model's own tokenizer instead. Timing figures are not asserted.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
SHARED_MODEL = ROOT.parent / "shared" / "models" / "llava-v1.6-mistral-7b-hf"
HIDDEN = ("datasets", "mne", "gradio", "yasa", "edfio", "matplotlib", "torchvision")
# Hide packages the way a box without them looks: every finder answers None for them, so both
# `import x` and importlib.util.find_spec(x) (transformers' availability checks) see them absent.
HIDE = f"""
import runpy, sys
HIDDEN = {HIDDEN!r}
class _Hide:
    def __init__(self, finder):
        self.finder = finder
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HIDDEN:
            return None
        find = getattr(self.finder, "find_spec", None)
        return find(name, path, target) if find else None
    def __getattr__(self, attr):
        return getattr(self.finder, attr)
sys.meta_path[:] = [_Hide(f) for f in sys.meta_path]
"""


def _run_hidden(code: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", HIDE + code, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def bench():
    """The script as a module (its ``main`` is not run)."""
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_hiding_works():
    """Negative control: under the wrapper an installed package (mne here) cannot be imported."""
    proc = _run_hidden("import importlib.util; assert importlib.util.find_spec('mne') is None; import mne")
    assert proc.returncode != 0 and "No module named 'mne'" in proc.stderr, proc.stderr[-2000:]


def test_imports_without_optional_packages():
    """The script's imports and the ones its phases make lazily, with the optional packages hidden."""
    code = (f"runpy.run_path({str(SCRIPT)!r}); "
            "import peft, transformers; from transformers import LlavaNextForConditionalGeneration; "
            "import psgvlm.image.renderer, psgvlm.vlm.model, psgvlm.vlm.data, psgvlm.vlm.scoring; "
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HIDDEN!r}))")
    proc = _run_hidden(code, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.slow
def test_smoke_without_optional_packages(tmp_path, bench):
    args = ["--smoke", "--out", str(tmp_path / "out.json")]
    if SHARED_MODEL.is_dir():
        model_dir = tmp_path / "gpu_model"
        model_dir.mkdir()
        for name in bench.PROCESSOR_FILES:
            shutil.copy(SHARED_MODEL / name, model_dir / name)
        args += ["--model-dir", str(model_dir)]
    proc = _run_hidden(f"sys.argv[0] = {str(SCRIPT)!r}; runpy.run_path({str(SCRIPT)!r}, run_name='__main__')", *args)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    res = json.loads((tmp_path / "out.json").read_text())
    assert res["mode"] == "smoke" and res["errors"] == {}
    assert set(res["phase_s"]) == {"images", "model", "train", "scoring", "night", "qlora"}
    m = res["model"]
    assert m["image_tokens_per_epoch"] == 1176 and m["tiles_per_epoch"] == 2  # 336 px, grid pinned to one tile
    if SHARED_MODEL.is_dir():  # the real Mistral tokenizer, loaded from the copied files
        assert m["processor"] == str(model_dir) and m["answer_tokens"]["N2"] == ["\u2581N", "2", "</s>"]
    tr = res["train"]
    assert tr["loss_finite"] and tr["samples_per_s"] > 0 and tr["samples_per_step"] == 2
    assert 0 < tr["trainable"]["trainable"] < tr["trainable"]["total"]
    assert tr["trainable"]["per_part"]["multi_modal_projector"] == 0
    assert res["scoring"]["scores_finite"] and res["scoring"]["model_only_epochs_per_s"] > 0
    assert res["night"]["measured"] and res["night"]["probabilities_valid"] and res["night"]["n_epochs"] == 8
    assert "skipped" in res["qlora"]  # no CUDA here (and usually no bitsandbytes)
    assert res["images"]["n_epochs"] == 8 and len(res["images"]["channels"]) == 10


def test_usage_errors_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--model-dir", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "missing" in proc.stderr and "tokenizer.json" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_peak_table_and_slug(bench):
    assert bench.peak_tflops("NVIDIA H200", None) == (989.4, "table: H200")
    assert bench.peak_tflops("NVIDIA H200 NVL", None)[0] == 835.0
    assert bench.peak_tflops("NVIDIA H100 PCIe", None)[0] == 756.0
    assert bench.peak_tflops("Some GPU", None)[0] is None
    assert bench.peak_tflops("Some GPU", 100.0) == (100.0, "--peak-tflops")
    assert bench.slug("NVIDIA H200") == "nvidia_h200"


def test_matmul_weights_of_the_7b_architecture(bench):
    """Weights the FLOPs estimate counts, on the meta device, against the architecture by hand."""
    import torch
    from transformers import LlavaNextForConditionalGeneration

    config, _ = bench.load_config(None)
    with torch.device("meta"):
        model = LlavaNextForConditionalGeneration._from_config(config, dtype=torch.bfloat16)
    w = bench.linear_weights(model)
    d, kv, ff = 4096, 1024, 14336  # Mistral-7B: hidden, 8 kv heads x 128, MLP
    assert w["language"] == 32 * (2 * d * d + 2 * d * kv + 3 * d * ff)
    assert w["lm_head"] == 32064 * d
    assert w["vision"] == 24 * (4 * 1024 * 1024 + 2 * 1024 * 4096) + 1024 * 3 * 14 * 14  # CLIP-L/14 + patch conv
    assert w["projector"] == 1024 * d + d * d
    f_lin, f_att = bench.forward_flops(config, w, tiles=2, lm_tokens=1230, lm_head_positions=1230)
    # ~7.4 G weights per language-model token: 7.11 G of Mistral (no embedding) + the vision tower on 1,154 tokens
    assert 2 * 7.3e9 * 1230 < f_lin < 2 * 7.5e9 * 1230 and 0 < f_att < 0.1 * f_lin
