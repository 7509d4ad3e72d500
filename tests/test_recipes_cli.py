"""The recipes' one argument convention (``psgvlm.training.parse_args``): every recipe's ``--help`` runs
and gives every argument a help line, every YAML under recipes/configs holds only its recipe's
arguments, the recipe commands in README, docstrings, configs and quickstart use only known flags, and
an unknown YAML key is refused with the key named.

Run: python -m pytest -q tests/test_recipes_cli.py     (~1 min: one ``--help`` subprocess per recipe)
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import os
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
import yaml

from psgvlm.training import field_help, parse_args

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted(p.name for p in (REPO / "recipes").glob("*.py"))
# Which recipe reads which config (every YAML under recipes/configs must be listed).
CONFIGS = {
    "classifier_tiny_cpu.yaml": "image_classifier.py", "clip_linear_isruc.yaml": "image_classifier.py",
    "convnext_isruc.yaml": "image_classifier.py", "resnet_isruc.yaml": "image_classifier.py",
    "resnet101_isruc.yaml": "image_classifier.py",
    "swin_isruc.yaml": "image_classifier.py", "vit_isruc.yaml": "image_classifier.py",
    "llava_isruc.yaml": "llava_isruc.py", "llava_isruc_eeg_only.yaml": "llava_isruc.py",
    "qwen2_5_vl_3b_isruc.yaml": "llava_isruc.py", "smolvlm_256m_isruc.yaml": "llava_isruc.py",
    "llava_isruc_qlora.yaml": "llava_isruc.py", "llava_isruc_zeroshot.yaml": "llava_isruc.py",
    "llava_mass.yaml": "llava_isruc.py", "llava_shhs.yaml": "llava_isruc.py", "llava_tiny_cpu.yaml": "llava_isruc.py",
    "llava_tiny_default.yaml": "llava_isruc.py",
    "nap_paper.yaml": "nap.py", "sdreamer_paper.yaml": "sdreamer.py", "sdreamer_tiny.yaml": "sdreamer.py",
    "sdreamer_paper_epoch.yaml": "sdreamer.py", "sdreamer_paper_single_channel.yaml": "sdreamer.py",
    "sleep2vec_tiny_pretrain.yaml": "sleep2vec_pretrain.py", "sleep2vec_small_pretrain.yaml": "sleep2vec_pretrain.py",
    "sleep2vec_medium_pretrain.yaml": "sleep2vec_pretrain.py",
    "sleep2vec_large_pretrain.yaml": "sleep2vec_pretrain.py",
    "sleep2vec_tiny_finetune.yaml": "sleep2vec_finetune.py", "sleep2vec_paper_finetune.yaml": "sleep2vec_finetune.py",
}


def recipe_fields(recipe: str) -> list[str]:
    """Field names of the recipe's ``Args`` dataclass, read from its source (the image recipes run on import)
    plus the dataclass bases it imports from the library."""
    tree = ast.parse((REPO / "recipes" / recipe).read_text(encoding="utf-8"))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Args")
    imported = {a.asname or a.name: node.module for node in tree.body if isinstance(node, ast.ImportFrom)
                for a in node.names}
    names = []
    for base in cls.bases:
        names += [f.name for f in dataclasses.fields(getattr(importlib.import_module(imported[base.id]), base.id))]
    return names + [n.target.id for n in cls.body if isinstance(n, ast.AnnAssign)]


@cache
def recipe_help(recipe: str) -> dict[str, str]:
    """``{option dest: help text without the default}`` from ``python recipes/<recipe> --help``."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "250"}
    r = subprocess.run([sys.executable, str(REPO / "recipes" / recipe), "--help"], capture_output=True, text=True,
                       env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    entries: list[list[str]] = []
    for line in r.stdout.split("\noptions:\n", 1)[1].splitlines():
        if re.match(r"^  -", line):
            entries.append([line.strip()])
        elif line.startswith("   ") and entries:
            entries[-1].append(line.strip())
    helps = {}
    for lines in entries:
        invocation, *first = re.split(r"\s{2,}", lines[0], maxsplit=1)
        text = " ".join([*first, *lines[1:]]).strip()
        option = invocation.split()[0].rstrip(",")
        if option in ("-h", "--help") or option.startswith("--no_"):
            continue
        helps[option[2:]] = re.sub(r"\s*\(default: .*\)$", "", text, flags=re.S).strip()
    return helps


@pytest.mark.parametrize("recipe", RECIPES)
def test_help_lists_every_field_with_its_comment(recipe):
    helps = recipe_help(recipe)
    fields = recipe_fields(recipe)
    assert set(helps) == set(fields), (sorted(set(fields) - set(helps)), sorted(set(helps) - set(fields)))
    empty = [name for name, text in helps.items() if not text]
    assert not empty, f"{recipe}: arguments without a # comment (their --help line): {empty}"


def test_every_config_is_listed_and_holds_only_its_recipes_arguments():
    assert set(CONFIGS) == {p.name for p in (REPO / "recipes" / "configs").glob("*.yaml")}
    for config, recipe in CONFIGS.items():
        keys = set(yaml.safe_load((REPO / "recipes" / "configs" / config).read_text(encoding="utf-8")))
        unknown = keys - set(recipe_fields(recipe))
        assert not unknown, f"{config}: keys {sorted(unknown)} are not arguments of recipes/{recipe}"


def _recipe_commands():
    """(where, recipe, [flags]) of every recipe command line in README, docstrings, configs and scripts."""
    files = [REPO / "README.md", REPO / "psgvlm" / "assets" / "default_run" / "README.md",
             REPO / "recipes" / "quickstart.sh", *sorted((REPO / "recipes").glob("*.py")),
             *sorted((REPO / "recipes" / "configs").glob("*.yaml")), *sorted((REPO / "benchmarks").glob("*.py")),
             *sorted((REPO / "evals" / "suites").glob("*.py"))]
    for path in files:
        text = re.sub(r"\\\n\s*(#\s*)?", " ", path.read_text(encoding="utf-8"))  # join continued lines
        for line in text.splitlines():
            for m in re.finditer(r"recipes/(\w+\.py)\b", line):
                if not re.search(r"(python3?|launch|\.yaml|\d)\s+$|``$", line[: m.start()]):
                    continue  # a recipe named in prose, not launched
                rest = line[m.end():]
                if line[: m.start()].count('"') % 2:  # a quoted command (--predict-cmd "..."): up to its quote
                    rest = rest.split('"', 1)[0]
                rest = re.split(r"``|`|\s#\s", rest)[0]
                yield f"{path.relative_to(REPO)}: {line.strip()[:90]}", m.group(1), re.findall(r"(?<!\S)--([\w-]+)",
                                                                                               rest)


def test_recipe_commands_use_only_known_flags():
    checked = 0
    for where, recipe, flags in _recipe_commands():
        known = set(recipe_fields(recipe)) | {"config", "help"}
        known |= {f"no_{name}" for name in known}
        bad = [f for f in flags if f.replace("-", "_") not in known]
        assert not bad, f"{where}: {bad} are not arguments of recipes/{recipe}"
        checked += len(flags)
    assert checked > 40


# ---- the parser itself ------------------------------------------------------------------------------
@dataclasses.dataclass(kw_only=True)
class _Base:
    output_dir: str  # the run dir
    # seeds everything
    seed: int = 0
    config: str = ""  # recorded YAML path


@dataclasses.dataclass(kw_only=True)
class _Args(_Base):
    learning_rate: float = 1e-3  # peak rate, 5% warm-up
    seed: int = 1  # redeclared: this comment wins


def test_field_help_reads_trailing_and_preceding_comments_and_subclass_wins():
    assert field_help(_Args) == {"output_dir": "the run dir", "seed": "redeclared: this comment wins",
                                 "config": "recorded YAML path", "learning_rate": "peak rate, 5% warm-up"}
    assert field_help(_Base)["seed"] == "seeds everything"


def test_config_gives_defaults_flags_override_and_required_fields_are_satisfied(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("output_dir: runs/a\nlearning_rate: 0.5\nseed: 3\n")
    args = parse_args(_Args, ["--config", str(cfg), "--seed", "4"])
    assert (args.output_dir, args.learning_rate, args.seed, args.config) == ("runs/a", 0.5, 4, str(cfg))
    with pytest.raises(SystemExit):  # output_dir is required without a config
        parse_args(_Args, ["--seed", "4"])
    with pytest.raises(SystemExit) as e:
        parse_args(_Args, ["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "peak rate, 5% warm-up" in out and "redeclared: this comment wins" in out


def test_unknown_yaml_key_is_refused_naming_it(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("output_dir: runs/a\nlr: 0.1\nsteps: 3\n")
    with pytest.raises(ValueError, match=r"unknown keys \['lr', 'steps'\]; allowed: \['config', 'learning_rate'"):
        parse_args(_Args, ["--config", str(cfg)])
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        parse_args(_Args, ["--config", str(tmp_path / "nope.yaml")])
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, str(REPO / "recipes" / "sdreamer.py"), "--config", str(cfg),
                        "--signal_data", str(tmp_path / "sig")], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode != 0 and "unknown keys ['lr', 'steps']" in r.stderr, r.stderr[-2000:]
