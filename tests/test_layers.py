"""The layer rule of STYLE.md as a test, read from the source (AST; no module is imported).

Run: ``python -m pytest -q tests/test_layers.py``

1. ``psgvlm/`` (the library) never imports the stages render/, evals/, recipes/ or app.py, in any
   spelling (``render``, ``psgvlm.render``, ``evals``, ``psgvlm.evals``, ``recipes``, ``app``).
   ``psgvlm/cli.py`` dispatches to them by import *string*, which is not an import.
2. The stages render/, evals/, recipes/, app.py and benchmarks/ never import each other; they meet only
   through files on disk and through the library.
3. Inside ``psgvlm/`` a module never imports from a higher layer of ``LAYERS``.

Imports inside functions (lazy imports) count, and so do relative imports.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# The library's layers, lowest first: a module may import from its own layer and the ones below.
# 0, foundation: top-level modules every layer shares, importing only each other (stage codes,
#    provenance and atomic writes, the output-folder lock, metrics, splits, the predictions.jsonl contract, the recipes' shared
#    training pieces, plots).
# 1, io: EDF, readers, channels, the Recording type (``psgvlm/__init__.py`` re-exports it, so sits here).
# 2, signal and synth; 3, image; 4, vlm, baselines and reference (the stagers); 5, night.
# 6, cli: dispatches to every command, stages included (by import string).
LAYERS: dict[str, int] = {
    "stages": 0, "provenance": 0, "locks": 0, "metrics": 0, "splits": 0, "predictions": 0, "training": 0, "plots": 0,
    "__init__": 1, "io": 1,
    "signal": 2, "synth": 2,
    "image": 3,
    "vlm": 4, "baselines": 4, "reference": 4,
    "night": 5,
    "cli": 6,
}
STAGE_DIRS = ("render", "evals", "recipes", "benchmarks")
STAGES = (*STAGE_DIRS, "app")


def _module_name(path: Path, repo: Path) -> str:
    parts = list(path.relative_to(repo).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sources(repo: Path) -> list[Path]:
    files = sorted((repo / "psgvlm").rglob("*.py"))
    for stage in STAGE_DIRS:
        files += sorted((repo / stage).rglob("*.py"))
    return [*files, repo / "app.py"] if (repo / "app.py").exists() else files


def _imports(path: Path, repo: Path) -> list[tuple[int, str]]:
    """Every module ``path`` imports, as (line, absolute dotted name), relative imports resolved."""
    package = _module_name(path, repo).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1] + [node.module or ""]).strip(".")
            if node.level == 0:
                base = node.module
            if base == "psgvlm":  # ``from psgvlm import training`` imports the module psgvlm.training
                found += [(node.lineno, f"psgvlm.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, base))
    return found


def _stage_of(module: str) -> str | None:
    """The stage a dotted name belongs to (render, evals, recipes, benchmarks, app), else None."""
    parts = module.split(".")
    if parts[0] == "psgvlm" and len(parts) > 1 and parts[1] in ("render", "evals"):
        return parts[1]
    return parts[0] if parts[0] in STAGES else None


def _layer_key(module: str) -> str | None:
    """``psgvlm.io.edf`` -> "io"; ``psgvlm.metrics`` -> "metrics"; ``psgvlm`` -> "__init__"."""
    parts = module.split(".")
    if parts[0] != "psgvlm":
        return None
    return parts[1] if len(parts) > 1 else "__init__"


def find_violations(repo: Path) -> dict[str, list[str]]:
    """Rule name -> ``"file:line imports module"`` for every import that breaks it."""
    out: dict[str, list[str]] = {"library_imports_stage": [], "stage_imports_stage": [], "layer_order": []}
    for path in _sources(repo):
        own = _module_name(path, repo)
        own_stage, own_key = _stage_of(own), _layer_key(own)
        for line, target in _imports(path, repo):
            where = f"{path.relative_to(repo).as_posix()}:{line} imports {target}"
            target_stage, target_key = _stage_of(target), _layer_key(target)
            if own_stage is None and target_stage is not None:
                out["library_imports_stage"].append(where)
            elif own_stage is not None and target_stage not in (None, own_stage):
                out["stage_imports_stage"].append(where)
            elif own_stage is None and target_stage is None and target_key in LAYERS and own_key in LAYERS:
                if LAYERS[target_key] > LAYERS[own_key]:
                    out["layer_order"].append(f"{where} (layer {LAYERS[own_key]} {own_key} -> "
                                              f"layer {LAYERS[target_key]} {target_key})")
    return out


VIOLATIONS = find_violations(REPO)


def test_every_library_module_has_a_layer():
    psgvlm = REPO / "psgvlm"
    keys = {p.stem if p.parent == psgvlm else p.relative_to(psgvlm).parts[0] for p in psgvlm.rglob("*.py")}
    assert sorted(keys - set(LAYERS)) == [], "give these psgvlm modules/sub-packages a layer in LAYERS"


@pytest.mark.parametrize("rule", sorted(VIOLATIONS))
def test_layer_rule(rule):
    assert VIOLATIONS[rule] == [], "\n".join(VIOLATIONS[rule])


def test_the_checker_finds_violations(tmp_path):
    """Negative control: lazy, relative and ``psgvlm.<stage>`` imports that break the rules are found."""
    files = {
        "psgvlm/io/edf.py": "def f():\n    from psgvlm.night.stage import x\n    from ..render import build\n",
        "psgvlm/stages.py": "from psgvlm import training, io\nimport numpy\n",
        "psgvlm/night/stage.py": "from psgvlm.io.edf import f\nfrom . import other\n",
        "evals/common.py": "import psgvlm.render.build\nfrom . import plots\nfrom psgvlm.metrics import m\n",
        "render/build.py": "from .common import y\n",
        "app.py": "from evals.common import band_layout\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    found = find_violations(tmp_path)
    assert found["library_imports_stage"] == ["psgvlm/io/edf.py:3 imports psgvlm.render"]
    assert found["stage_imports_stage"] == ["evals/common.py:1 imports psgvlm.render.build",
                                            "app.py:1 imports evals.common"]
    assert [v.split(" (")[0] for v in found["layer_order"]] == [
        "psgvlm/io/edf.py:2 imports psgvlm.night.stage", "psgvlm/stages.py:1 imports psgvlm.io"]
