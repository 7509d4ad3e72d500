"""Named subject subsets (psgvlm.io.subjects): ``--subjects`` ids, files and rules, the PSG-image paper's
selections in recipes/configs/subjects/, and ``psgvlm render --subjects`` on a synthetic dataset.

Run: python -m pytest -q tests/test_subjects.py
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import yaml

from psgvlm.cli import main as cli
from psgvlm.image.dataset import load_dataset
from psgvlm.io.subjects import (
    RULES,
    parse_subjects,
    read_id_file,
    resolve_subjects,
    select_jobs,
    shhs_healthy,
)

REPO = Path(__file__).resolve().parents[1]
SUBSETS = REPO / "recipes" / "configs" / "subjects"


def test_parse_subjects_ids_and_files(tmp_path):
    assert parse_subjects(["a,b", "c", "a"]) == ["a", "b", "c"]
    assert parse_subjects("isruc-sg1-1") == ["isruc-sg1-1"]
    f = tmp_path / "s.txt"
    f.write_text("# header\nx1\n\n  x2  # the second\n")
    assert parse_subjects([str(f)]) == f and read_id_file(f) == ["x1", "x2"]
    with pytest.raises(FileNotFoundError, match="--subjects file"):
        parse_subjects([str(tmp_path / "missing.txt")])
    with pytest.raises(ValueError, match="names no subject"):
        parse_subjects([","])
    (tmp_path / "dup.txt").write_text("a\nb\na\n")
    with pytest.raises(ValueError, match=r"lists \['a'\] more than once"):
        read_id_file(tmp_path / "dup.txt")


def test_select_jobs_refuses_absent_subjects():
    jobs = [{"path": f"{s}.edf", "subject": s, "recording": s} for s in ("1", "2", "3")]
    assert [j["subject"] for j in select_jobs(jobs, ["3", "1"], input="x")] == ["1", "3"]
    with pytest.raises(ValueError, match=r"1 of 2 subject\(s\) are not under 'x': \['8'\]"):
        select_jobs(jobs, ["1", "8"], input="x")
    with pytest.raises(ValueError, match="is one recording"):
        select_jobs([{"path": "a.edf", "hypnogram": None}], ["1"], input="a.edf")


def test_paper_selections_follow_their_rules():
    isruc = read_id_file(SUBSETS / "isruc_s1_psg_llava.txt")
    assert len(isruc) == 29 and "isruc-sg1-8" not in isruc
    assert isruc == [f"isruc-sg1-{i}" for i in range(1, 31) if i != 8]
    mass = read_id_file(SUBSETS / "mass_ss3_psg_llava.txt")
    assert len(mass) == 43 and mass[0] == "01-03-0001" and mass[-1] == "01-03-0046"
    assert not {"01-03-0040", "01-03-0043", "01-03-0045"} & set(mass)
    spec = yaml.safe_load((SUBSETS / "shhs1_healthy_psg_llava.yaml").read_text())
    assert spec["rule"] in RULES and spec["limit"] == 313
    params = inspect.signature(RULES[spec["rule"]]).parameters
    assert set(spec) - {"rule"} <= set(params)  # every setting is one the rule takes


def _shhs_csv(path: Path, columns: list[str], rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [",".join(["nsrrid", *columns])]
    lines += [",".join([r["nsrrid"], *(str(r.get(c, "")) for c in columns)]) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_shhs_healthy_rule_reads_the_dataset_csv(tmp_path):
    spec = yaml.safe_load((SUBSETS / "shhs1_healthy_psg_llava.yaml").read_text())
    cols = [spec["ahi_column"], *spec["no_history"]]
    healthy = {c: 0 for c in spec["no_history"]}
    rows = [
        {"nsrrid": "200010", spec["ahi_column"]: 1.2, **healthy},
        {"nsrrid": "200002", spec["ahi_column"]: 4.9, **healthy},
        {"nsrrid": "200003", spec["ahi_column"]: 5.0, **healthy},  # AHI 5: apnoea by the cut, out
        {"nsrrid": "200004", spec["ahi_column"]: 0.5, **healthy, "htnderv_s1": 1},  # hypertensive, out
        {"nsrrid": "200005", spec["ahi_column"]: 0.5, **healthy, "mi15": 8},  # unknown, out
        {"nsrrid": "200006", spec["ahi_column"]: 0.5, **healthy, "sa15": ""},  # blank, out
        {"nsrrid": "200007", spec["ahi_column"]: "", **healthy},  # no AHI, out
        {"nsrrid": "200001", spec["ahi_column"]: 2.0, **healthy},
    ]
    _shhs_csv(tmp_path / "shhs" / "datasets" / "shhs1-dataset-0.21.0.csv", cols, rows)
    settings = {k: v for k, v in spec.items() if k != "rule"}
    assert shhs_healthy(tmp_path / "shhs", **{**settings, "limit": None}) == ["200001", "200002", "200010"]
    assert shhs_healthy(tmp_path / "shhs", **{**settings, "limit": 2}) == ["200001", "200002"]
    ids, record = resolve_subjects(SUBSETS / "shhs1_healthy_psg_llava.yaml", tmp_path / "shhs")
    assert ids == ["200001", "200002", "200010"] and record["rule"]["rule"] == "shhs_healthy"
    _shhs_csv(tmp_path / "bad" / "datasets" / "shhs1-dataset-0.csv", [c for c in cols if c != "hf15"], rows)
    with pytest.raises(ValueError, match=r"no column\(s\) \['hf15'\]"):
        shhs_healthy(tmp_path / "bad", **settings)
    with pytest.raises(FileNotFoundError, match="shhs1-dataset"):
        shhs_healthy(tmp_path / "nowhere", **settings)
    (tmp_path / "r.yaml").write_text("rule: shhs_sick\n")
    with pytest.raises(ValueError, match=r"names rule 'shhs_sick'; allowed: \['shhs_healthy'\]"):
        resolve_subjects(tmp_path / "r.yaml", tmp_path / "shhs")


@pytest.fixture(scope="module")
def isruc_dir(tmp_path_factory):
    from psgvlm.synth.layouts import synth_dataset

    out = tmp_path_factory.mktemp("isruc")
    synth_dataset("isruc", out, subjects=4, minutes=6, seed=1)
    return out


def test_render_subjects_by_id_and_file(isruc_dir, tmp_path, capsys):
    out = tmp_path / "two"
    assert cli(["render", "--format", "isruc", "--input", str(isruc_dir), "--out", str(out), "--subjects", "1,3",
                "--split", "none", "--quiet"]) == 0
    dd, meta = load_dataset(out)
    assert sorted(set(dd["all"]["subject"])) == ["1", "3"]
    assert meta["settings"]["subjects"] == {"ids": ["1", "3"], "source": None}
    ids = tmp_path / "ids.txt"
    ids.write_text("# two of four\n2\n4\n")
    assert cli(["render", "--format", "isruc", "--input", str(isruc_dir), "--out", str(tmp_path / "f"),
                "--subjects", str(ids), "--split", "none", "--quiet"]) == 0
    dd, meta = load_dataset(tmp_path / "f")
    assert sorted(set(dd["all"]["subject"])) == ["2", "4"] and meta["settings"]["subjects"]["source"] == str(ids)
    code = cli(["render", "--format", "isruc", "--input", str(isruc_dir), "--out", str(tmp_path / "x"),
                "--subjects", "1", "isruc-sg1-8", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "['isruc-sg1-8']" in err and "Traceback" not in err and not (tmp_path / "x").exists()


def test_a_root_named_like_isruc3_is_no_subgroup():
    """pytest names folders isruc0, isruc1, ...: such a root is not ISRUC subgroup 3 (the ids stay plain)."""
    from psgvlm.io.readers.isruc import _subgroup

    assert _subgroup("isruc3") is None and _subgroup("ISRUC_S3") == "3" and _subgroup("ISRUC-Sleep-2") == "2"
