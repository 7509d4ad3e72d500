"""``psgvlm <command>``: every command in ``COMMANDS`` has complete ``--help`` and one behaviour case.

Run: ``python -m pytest -q tests/test_cli.py``

Completeness: ``CASES`` maps every command to a test of what it does; a command added to
``psgvlm/cli.py`` without a case fails ``test_every_command_has_a_case``.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from psgvlm.cli import COMMANDS
from psgvlm.cli import main as cli
from psgvlm.vlm.predict import DEFAULT_RUN

MINUTES = 6  # the synthetic night: 12 epochs; YASA needs >= 5 minutes


def _run_help(argv, monkeypatch):
    """Run ``psgvlm ... --help`` in-process; return (exit code, every argparse parser that parsed)."""
    parsers = []
    parse_known_args = argparse.ArgumentParser.parse_known_args

    def spy(self, args=None, namespace=None):
        parsers.append(self)
        return parse_known_args(self, args, namespace)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", spy)
    try:
        code = cli(argv)
    except SystemExit as stop:
        code = stop.code
    return code or 0, parsers


def test_top_level_help_lists_every_command(capsys):
    assert cli(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: psgvlm <command>")
    for name, (_, help_) in COMMANDS.items():
        assert f"  {name}" in out and help_ and help_ in out


def test_unknown_command_names_the_choices(capsys):
    assert cli(["no-such-command"]) == 2
    err = capsys.readouterr().err
    assert all(name in err for name in COMMANDS)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_describes_every_option(command, monkeypatch, capsys):
    code, parsers = _run_help([command, "--help"], monkeypatch)
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("usage: "), out
    if not parsers:  # a dispatcher with its own usage text (``psgvlm eval``): every listed entry has a line
        entries = [line.split() for line in out.splitlines() if line.startswith("  ")]
        assert entries and all(len(words) >= 2 for words in entries), out
        return
    (parser,) = parsers
    assert (parser.description or "").strip(), f"psgvlm {command}: the parser has no description"
    undocumented = [action.option_strings[0] if action.option_strings else action.dest
                    for action in parser._actions
                    if not isinstance(action, argparse._HelpAction) and not (action.help or "").strip()]
    assert undocumented == [], f"psgvlm {command}: options without help"


# ------------------------------------------------------------------ one behaviour case per command


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    """One synthetic Sleep-EDF night (PSG + hypnogram EDF), written by ``psgvlm synth``."""
    out = tmp_path_factory.mktemp("sedf")
    assert cli(["synth", "--format", "sleepedf", "--subjects", "1", "--minutes", str(MINUTES), "--seed", "0",
                "--out", str(out), "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def rendered(night, tmp_path_factory):
    out = tmp_path_factory.mktemp("img") / "ds"
    assert cli(["render", "--format", "sleepedf", "--input", str(night), "--out", str(out), "--split", "none",
                "--size", "112", "--num-proc", "1", "--quiet"]) == 0
    return out


def _psg(night):
    (psg,) = night.glob("*-PSG.edf")
    return psg


def case_synth(night, tmp_path, capsys):
    again = tmp_path / "again"
    assert cli(["synth", "--format", "sleepedf", "--subjects", "1", "--minutes", str(MINUTES), "--seed", "0",
                "--out", str(again), "--quiet"]) == 0
    names = sorted(p.name for p in night.glob("*.edf"))
    assert len(names) == 2 and any(n.endswith("-Hypnogram.edf") for n in names)
    # same seed, same bytes
    assert all((night / n).read_bytes() == (again / n).read_bytes() for n in names)


def case_info(night, tmp_path, capsys):
    capsys.readouterr()
    assert cli(["info", "--format", "sleepedf", str(_psg(night)), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_epochs"] == MINUTES * 2
    assert any("Fpz-Cz" in c["name"] for c in summary["channels"])


def case_render(night, tmp_path, capsys):
    out = tmp_path / "ds"
    assert cli(["render", "--format", "sleepedf", "--input", str(night), "--out", str(out), "--split", "none",
                "--size", "112", "--num-proc", "1", "--quiet"]) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["size"] == 112 and meta["split"]["kind"] == "none"
    from datasets import load_from_disk

    ds = load_from_disk(str(out))
    assert list(ds) == ["all"] and len(ds["all"]) == MINUTES * 2
    assert ds["all"][0]["image"].size == (112, 112)


def case_tiny_model(night, tmp_path, capsys):
    out = tmp_path / "tiny"
    assert cli(["tiny-model", "--out", str(out), "--image-size", "112"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["vision_config"]["image_size"] == 112 and config["text_config"]["num_hidden_layers"] == 2
    assert cli(["tiny-model", "--out", str(out)]) == 2  # a non-empty --out needs --overwrite


def case_predict(night, tmp_path, capsys, rendered=None):
    out = tmp_path / "pred"
    assert cli(["predict", "--run", str(DEFAULT_RUN), "--dataset", str(rendered), "--split", "all",
                "--max-samples", "3", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(abs(sum(r["probs"]) - 1) < 1e-4 for r in rows)


def case_doctor(night, tmp_path, capsys, rendered=None):
    report = tmp_path / "doctor.json"
    assert cli(["doctor", "--run", str(DEFAULT_RUN), "--dataset", str(rendered), "--json", str(report)]) == 0
    checks = json.loads(report.read_text())["checks"]
    assert {"image_tokens", "loss_tokens", "lora", "answers"} <= set(checks)
    assert all(check["ok"] for check in checks.values())


def case_yasa(night, tmp_path, capsys):
    # The alias of ``psgvlm reference --predictor yasa``: the synthetic Sleep-EDF night, labelled.
    assert cli(["yasa", "--format", "sleepedf", "--input", str(night), "--out", str(tmp_path / "yasa")]) == 0
    metrics = json.loads((tmp_path / "yasa" / "metrics.json").read_text())
    assert metrics["pooled"]["n_epochs"] == MINUTES * 2 and "kappa" in capsys.readouterr().out
    (folder,) = [p for p in (tmp_path / "yasa").iterdir() if p.is_dir() and p.name != "channels"]
    assert json.loads((folder / "summary.json").read_text())["primary"] == "yasa"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli(["yasa", "--format", "sleepedf", "--input", str(empty), "--out", str(tmp_path / "none")]) == 2
    assert f"no sleepedf recordings found under {empty}" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()


def case_reference(night, tmp_path, capsys):
    # GSSC when the extra is installed, else the reason and exit 2; the other stager is the yasa case.
    from psgvlm.night.predictors import PREDICTORS

    argv = ["reference", "--predictor", "gssc", "--input", str(_psg(night)), "--out", str(tmp_path / "g")]
    if PREDICTORS["gssc"].missing():
        assert cli(argv) == 2 and "psgvlm[gssc]" in capsys.readouterr().err
        return
    assert cli(argv) == 0
    summary = json.loads((tmp_path / "g" / _psg(night).stem / "summary.json").read_text())
    assert summary["primary"] == "gssc" and summary["n_epochs"] == MINUTES * 2
    with pytest.raises(SystemExit) as stop:  # argparse: the VLM is not a reference stager
        cli(["reference", "--predictor", "vlm", "--input", str(_psg(night)), "--out", str(tmp_path / "v")])
    assert stop.value.code == 2 and "invalid choice: 'vlm'" in capsys.readouterr().err


def case_eval(night, tmp_path, capsys):
    """``psgvlm eval metrics`` on a predictions file with a known answer: 3 of 4 epochs right."""
    from psgvlm.predictions import make_rows, write_predictions

    probs = np.eye(5)[[0, 2, 2, 4]]
    rows = make_rows(dataset="synth", subjects=["s1"] * 4, recordings=["r1"] * 4, epochs=range(4),
                     starts_s=30.0 * np.arange(4), labels=[0, 2, 3, 4], probs=probs)
    write_predictions(tmp_path / "run", rows)
    out = tmp_path / "eval"
    assert cli(["eval", "metrics", "--runs", str(tmp_path / "run"), "--out", str(out), "--n-boot", "10"]) == 0
    (run,) = json.loads((out / "results.json").read_text())["runs"]
    assert run["pooled"]["accuracy"] == 0.75 and run["pooled"]["confusion"][3][2] == 1
    assert cli(["eval", "no-such-suite"]) == 2


def case_stage(night, tmp_path, capsys):
    out = tmp_path / "staged"
    assert cli(["stage", "--edf", str(_psg(night)), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_epochs"] == MINUTES * 2
    assert len((out / "hypnogram.csv").read_text().splitlines()) >= MINUTES * 2


CASES = {
    "synth": case_synth,
    "info": case_info,
    "render": case_render,
    "tiny-model": case_tiny_model,
    "predict": case_predict,
    "doctor": case_doctor,
    "reference": case_reference,
    "yasa": case_yasa,
    "eval": case_eval,
    "stage": case_stage,
}
NEEDS_DATASET = {"predict", "doctor"}


def test_every_command_has_a_case():
    assert set(COMMANDS) == set(CASES)


@pytest.mark.parametrize("command", sorted(CASES))
def test_command_behaviour(command, night, tmp_path, capsys, request):
    kwargs = {"rendered": request.getfixturevalue("rendered")} if command in NEEDS_DATASET else {}
    CASES[command](night, tmp_path, capsys, **kwargs)
