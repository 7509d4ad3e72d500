"""End to end with the real pieces: synthetic ISRUC -> render -> tiny LLaVA-NeXT run (untuned,
``--train false``) -> every eval suite through ``python -m evals``.
Run: python -m pytest -q -m slow tests/test_evals_e2e.py  (a few minutes on 2 cores)"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def sh(*args, cwd):
    proc = subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
def test_all_suites_on_a_tiny_vlm_run(tmp_path):
    sh("-m", "psgvlm.cli", "synth", "--format", "isruc", "--subjects", "4", "--minutes", "5", "--seed", "0",
       "--out", "synth", "--quiet", cwd=tmp_path)
    sh("-m", "psgvlm.cli", "render", "--format", "isruc", "--input", "synth", "--out", "img", cwd=tmp_path)
    sh("-m", "psgvlm.cli", "tiny-model", "--out", "tiny", cwd=tmp_path)
    sh(REPO / "recipes" / "llava_isruc.py", "--dataset", "img", "--output_dir", "run0", "--model", "tiny",
       "--train", "false", cwd=tmp_path)
    sh("-m", "psgvlm.evals", "metrics", "--runs", "run0", "--dataset", "img", "--out", "m", "--n-boot", "50", cwd=tmp_path)
    sh("-m", "psgvlm.evals", "zero_shot", "--run", "run0", "--dataset", "img", "--out", "z", cwd=tmp_path)
    sh("-m", "psgvlm.evals", "attribution", "--run", "run0", "--dataset", "img", "--out", "a", "--per-stage", "1",
       "--patch-px", "28", "--batch-size", "48", cwd=tmp_path)
    for k in (1, 2):
        sh("-m", "psgvlm.evals", "robustness", "--run", "run0", "--format", "isruc", "--input", "synth", "--out", f"r{k}",
           "--seed", "5", "--n-boot", "50", cwd=tmp_path)
    sh("-m", "psgvlm.evals", "channel_loss", "--run", "run0", "--format", "isruc", "--input", "synth", "--out", "c",
       "--drop", "EOG", "--modes", "blank", "--n-boot", "50", cwd=tmp_path)
    out = sh("-m", "psgvlm.evals", "report", "--results", "m", "z", "a", "r1", "c", "--out", "rep", cwd=tmp_path)
    assert "report.md" in out
    r1, r2 = (json.loads((tmp_path / f"r{k}" / "results.json").read_text()) for k in (1, 2))
    assert r1["manifest"] == r2["manifest"] and r1["delta"] == r2["delta"]
    a = json.loads((tmp_path / "a" / "results.json").read_text())
    assert a["timing"]["forward_passes_max"] <= 145 and a["summaries"]
    assert "| Model | isruc Acc" in (tmp_path / "rep" / "report.md").read_text()
