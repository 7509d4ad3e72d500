"""recipes/reproduce/: every script's ``--dry-run`` (the commands, every config parsed by its recipe, every
model built at paper size on the meta device, shapes checked), the plan's failure modes, the real-run
plumbing (order, skipping finished steps, stopping at a failure), and the configs the scripts rely on:
one prompt and one set of settings across a main LLaVA run and its ablations, config headers naming
recipes that exist, the paper's image baselines as pretrained hub ids with partial fine-tuning.

Run: python -m pytest -q tests/test_reproduce.py     (~1-2 min on 2 cores: imports, one 7B meta build)
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import re
import shlex
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
REPRO = REPO / "recipes" / "reproduce"
sys.path.insert(0, str(REPRO))  # the scripts import their plumbing as `_common`, as when run as files

import _common  # noqa: E402


def _readme_dry_runs() -> dict[str, list[str]]:
    """Script -> the arguments of its ``--dry-run`` command in README's "Reproducing the papers" (fake
    dataset paths: a dry run reads nothing), so that the README commands are the ones tested."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    out = {}
    for line in re.findall(r"^python recipes/reproduce/(\w+\.py) (.*--dry-run.*)$", text, flags=re.M):
        out[line[0]] = [a for a in shlex.split(line[1]) if a != "--dry-run"]
    return out


SCRIPTS = _readme_dry_runs()
# What each dry run must have built and checked (lines of its output).
EXPECT = {
    "psg_llava_table1.py": [r"LLaVA-NeXT .*7\.57 B parameters", r"LoRA r 16: 48\.\d M trainable",
                            r"1176 image tokens", r"resnet resnet152 \(microsoft/resnet-152\): 58\.2 M parameters",
                            r"vit vit_base .* trainable \(trainable_layers 3\)", r"swin swin_base",
                            r"convnext convnext_base", r"clip_linear vit_l_14", r"sleep2vec-medium stager .*-> \(1, 1100, 5\)",
                            r"sDREAMER paper \(K=16", r"NAP d 24 x 4 layers"],
    "psg_llava_robustness.py": [r"1176 image tokens", r"resnet resnet152", r"sDREAMER paper", r"sleep2vec-medium"],
    "psg_llava_attribution.py": [r"1176 image tokens"],
    "sleep2vec_table1.py": [r"sleep2vec-medium pre-training model", r"modalities \['EEG'\]: .*-> \(1, 1100, 5\)",
                            r"modalities \['ECG', 'RESP'\]"],
    "sdreamer_ablation.py": [r"sDREAMER paper \(K=16", r"sDREAMER paper \(K=1,"],
    "nap_zero_shot.py": [r"NAP d 24 x 4 layers", r"psgvlm reference --predictor gssc --format sleepedf",
                         r"recipes/nap.py .*--protocol zero_shot --train_predictors yasa=\S+sedf-st_yasa "],
}


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"reproduce_{name[:-3]}", REPRO / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_script_has_a_dry_run_in_the_readme_and_a_case():
    assert set(SCRIPTS) == {p.name for p in REPRO.glob("*.py") if not p.name.startswith("_")} == set(EXPECT)


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_dry_run_parses_builds_and_checks_everything(name, capsys, tmp_path):
    rc = load_script(name).main([*SCRIPTS[name], "--work", str(tmp_path / "work"), "--dry-run"])
    out, err = capsys.readouterr()
    assert rc == 0, err[-3000:]
    assert "dry run passed" in out
    for pattern in EXPECT[name]:
        assert re.search(pattern, out), f"{name}: no line matching {pattern!r} in\n{out[-4000:]}"
    commands = [line.split("] ", 1)[1] for line in out.splitlines() if re.match(r"\[\d+\] ", line)]
    assert commands[-1].startswith("python -m evals report --layout ")
    assert not (tmp_path / "work").exists(), "a dry run must not write anything"


def test_table1_runs_both_splits_and_keeps_signal_models_off_the_epoch_split(capsys, tmp_path):
    load_script("psg_llava_table1.py").main([*SCRIPTS["psg_llava_table1.py"], "--work", str(tmp_path), "--dry-run"])
    lines = [line for line in capsys.readouterr().out.splitlines() if re.match(r"\[\d+\] ", line)]
    for split in ("epoch", "subject"):
        for dataset in ("isruc", "mass", "shhs"):
            assert any(f"--split {split} " in ln and f"--format {dataset} " in ln for ln in lines)
            assert any(f"llava_{dataset}.yaml --dataset {tmp_path}/data/{dataset}_{split}_s4" in ln for ln in lines)
    signal = [ln for ln in lines if re.search(r"recipes/(sdreamer|sleep2vec_\w+|nap)\.py", ln)]
    assert signal and not any("_epoch_" in ln for ln in signal), "a signal model on the leaky epoch split"
    assert all("--split_from" in ln for ln in signal if "--format" in ln)  # the images' subject split
    report = lines[-1]
    assert "'epoch split=" in report and "'subject split=" in report


# ---- the plan's checks fail when they should -------------------------------------------------------------
def _plan(tmp_path, **kw):
    ns = argparse.Namespace(work=str(tmp_path / "work"), dry_run=True, accelerate_config=None, num_proc=1,
                            model_dir=str(_common.MODEL_DIR_7B), seeds=[0], **kw)
    return _common.Plan(ns, "test")


def test_a_bad_recipe_flag_or_config_key_is_refused_when_the_command_is_added(tmp_path, capsys):
    plan = _plan(tmp_path)
    with pytest.raises(ValueError, match="sdreamer.py refused its arguments"):
        plan.recipe("sdreamer.py", "sdreamer_paper.yaml", output_dir=tmp_path / "r", signal_data=tmp_path, no_such=1)
    bad = tmp_path / "bad.yaml"
    bad.write_text("size: paper\nlr: 0.1\n")
    with pytest.raises(ValueError, match=r"unknown keys \['lr'\]"):
        plan.cmd(["python", "recipes/sdreamer.py", "--config", bad, "--output_dir", tmp_path, "--signal_data", tmp_path])


def test_dry_run_fails_on_unknown_tool_flags_and_unbuildable_models(tmp_path, capsys):
    plan = _plan(tmp_path)
    plan.cmd(["python", "-m", "evals", "metrics", "--runs", "a", "--out", "b", "--no-such-flag"])
    plan.recipe("image_classifier.py", "resnet_isruc.yaml", gpu=True, output_dir=tmp_path / "r",
                checkpoint="someone/unknown-resnet")
    plan.recipe("sleep2vec_finetune.py", "sleep2vec_paper_finetune.yaml", signal_data=tmp_path,
                pretrained=tmp_path / "not_in_plan", output_dir=tmp_path / "ft")
    pre = tmp_path / "pre"
    plan.recipe("sleep2vec_pretrain.py", "sleep2vec_tiny_pretrain.yaml", signal_data=tmp_path, output_dir=pre)
    plan.recipe("sleep2vec_finetune.py", "sleep2vec_tiny_finetune.yaml", signal_data=tmp_path, pretrained=pre,
                modalities=["EEG", "SPO2"], output_dir=tmp_path / "ft2")
    assert plan.finish() == 1
    err = capsys.readouterr().err
    assert "python -m evals metrics has no option ['--no-such-flag']" in err
    assert "checkpoint 'someone/unknown-resnet'" in err
    assert "is not written by an earlier step of this plan" in err
    assert "fine-tune modalities ['SPO2'] are not pre-trained" in err


def test_real_run_executes_in_order_skips_finished_steps_and_stops_at_a_failure(tmp_path, capsys):
    plan = _plan(tmp_path)
    plan.args.dry_run = False
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    plan.cmd(["python", "-c", f"open({str(a)!r}, 'a').write('x')"], done=a)
    plan.cmd(["python", "-c", f"open({str(b)!r}, 'a').write(open({str(a)!r}).read())"], done=b)
    assert plan.finish() == 0 and b.read_text() == "x"
    assert plan.finish() == 0 and a.read_text() == "x"  # both skipped the second time
    assert capsys.readouterr().out.count("done already") == 2
    plan.cmd(["python", "-c", "raise SystemExit(3)"])
    plan.cmd(["python", "-c", f"open({str(tmp_path / 'never')!r}, 'w')"])
    assert plan.finish() == 1
    assert "step 3 failed with exit 3" in capsys.readouterr().err and not (tmp_path / "never").exists()
    log = (tmp_path / "work" / "commands.log").read_text().splitlines()
    assert len(log) == 3 and log[-1].split()[1:3] == ["exit", "3"]


def test_recipe_flags_reach_every_command_of_their_recipe_and_commands_run_with_this_interpreter(tmp_path):
    plan = _plan(tmp_path, recipe_flags=[("sdreamer.py", "--size tiny --max_steps 5")])
    step = plan.recipe("sdreamer.py", "sdreamer_paper.yaml", output_dir=tmp_path / "r", signal_data=tmp_path)
    assert step.argv[-4:] == ["--size", "tiny", "--max_steps", "5"] and step.parsed[0][1].max_steps == 5
    template = plan.recipe_template("sdreamer.py", None, gpu=False, from_run="{run}", output_dir="{out}",
                                    signal_data="{signal_data}")
    assert template == "python recipes/sdreamer.py --from_run {run} --output_dir {out} --signal_data {signal_data} " \
                       "--size tiny --max_steps 5"
    gpu = plan.recipe_template("llava_isruc.py", "llava_isruc.yaml", gpu=True, dataset="{dataset}", output_dir="{out}")
    assert gpu.startswith("python -m accelerate.commands.launch recipes/llava_isruc.py --config ")
    assert _common.executable(["psgvlm", "render"]) == [sys.executable, "-m", "psgvlm.cli", "render"]
    assert _common.executable(["accelerate", "launch", "x.py"])[:3] == [sys.executable, "-m",
                                                                        "accelerate.commands.accelerate_cli"]
    with pytest.raises(ValueError, match="no such recipe"):
        _plan(tmp_path, recipe_flags=[("nope.py", "--x 1")])


# ---- configs -----------------------------------------------------------------------------------------
CONFIGS = REPO / "recipes" / "configs"
# A main LLaVA run's ablations and siblings -> the settings allowed to differ from llava_isruc.yaml.
LLAVA_SIBLINGS = {
    "llava_mass.yaml": {"dataset", "output_dir"},
    "llava_shhs.yaml": {"dataset", "output_dir", "num_train_epochs"},  # the paper: 1 epoch on SHHS
    "llava_isruc_eeg_only.yaml": {"dataset", "output_dir"},
    "llava_isruc_qlora.yaml": {"output_dir", "quantization"},
    # untuned: no training, so the training-only settings are moot
    "llava_isruc_zeroshot.yaml": {"output_dir", "train", "gradient_checkpointing", "max_eval_samples"},
}


def _llava_args(config: str) -> dict:
    args = _common.parse_recipe(["recipes/llava_isruc.py", "--config", f"recipes/configs/{config}"])
    return {k: v for k, v in dataclasses.asdict(args).items() if k != "config"}


def test_one_prompt_and_one_set_of_settings_across_a_main_run_and_its_ablations():
    main = _llava_args("llava_isruc.yaml")
    cpu = {"llava_tiny_cpu.yaml", "llava_tiny_default.yaml"}  # the tiny CPU runs: their own sizes and steps
    configs = {p.name for p in CONFIGS.glob("llava_*.yaml")} - {"llava_isruc.yaml", *cpu}
    assert configs == set(LLAVA_SIBLINGS)
    for config, allowed in LLAVA_SIBLINGS.items():
        args = _llava_args(config)
        differ = {k for k in main if args[k] != main[k]}
        assert differ <= allowed, f"{config} differs from llava_isruc.yaml in {sorted(differ - allowed)}"
    prompts = {c: _llava_args(c)["prompt"] for c in [*LLAVA_SIBLINGS, "llava_isruc.yaml", *cpu]}
    assert set(prompts.values()) == {"default"}, prompts
    # the shared prompt names no channels, so EEG-only images are asked the same question
    from psgvlm.vlm.data import get_template

    assert get_template("default", channels=["F3"]) == get_template("default", channels=["F3", "LOC", "X1"])


def test_config_headers_launch_recipes_that_exist():
    for path in sorted(CONFIGS.glob("*.yaml")):
        header = [line for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("#")]
        named = {m for line in header for m in re.findall(r"recipes/(\w+\.py)", line)}
        assert named, f"{path.name}: its header names no recipe command"
        missing = [r for r in named if not (REPO / "recipes" / r).is_file()]
        assert not missing, f"{path.name}: header names recipes that do not exist: {missing}"


# The paper's Table 3: model -> (hub id's architecture, trainable stages/blocks, batch, lr, weight decay, epochs).
TABLE3 = {"resnet_isruc.yaml": ("resnet", 2, 64, 1e-3, 1e-4, 30), "resnet101_isruc.yaml": ("resnet", 2, 64, 1e-3, 1e-4, 30),
          "convnext_isruc.yaml": ("convnext", 1, 64, 1e-3, 1e-4, 30), "vit_isruc.yaml": ("vit", 3, 64, 1e-3, 1e-4, 50),
          "swin_isruc.yaml": ("swin", 1, 64, 1e-3, 1e-4, 50)}


@pytest.mark.parametrize("config", sorted(TABLE3))
def test_image_baseline_configs_are_the_papers_pretrained_partial_fine_tunes(config):
    from psgvlm.vlm.classifiers import PRETRAINED

    args = _common.parse_recipe(["recipes/image_classifier.py", "--config", f"recipes/configs/{config}"])
    arch, layers, batch, lr, wd, epochs = TABLE3[config]
    assert PRETRAINED[args.checkpoint][0] == args.arch == arch
    assert (args.trainable_layers, args.per_device_train_batch_size, args.learning_rate, args.weight_decay,
            args.num_train_epochs) == (layers, batch, lr, wd, epochs)


def test_from_scratch_stays_a_named_cpu_config():
    cfg = yaml.safe_load((CONFIGS / "classifier_tiny_cpu.yaml").read_text(encoding="utf-8"))
    assert cfg["size"] == "tiny" and "checkpoint" not in cfg and cfg.get("trainable_layers", -1) == -1
