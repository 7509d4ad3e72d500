"""Named subject subsets: which subjects of a dataset folder to use (``psgvlm render --subjects``, signal datasets).

A selection is given as subject ids (the ids :func:`psgvlm.io.readers.find_recordings` gives, from
each file's path: ``isruc-sg1-8``, ``01-03-0001``, ``200001``), or as a file:

- ``*.txt`` (or any other name): one subject id per line; ``#`` starts a comment, blank lines are
  skipped;
- ``*.yaml`` / ``*.yml``: a rule over the dataset's own metadata, ``rule: NAME`` from :data:`RULES`
  plus that rule's settings, resolved against the folder being read (e.g. SHHS's dataset CSV).

Every id must name a subject found under the input: a selection that names absent subjects is
refused with the ids, not silently shrunk (a paper's subset that is half there is another
experiment). The PSG-image paper's selections ship as files in ``recipes/configs/subjects/``; each
file's header quotes the paper and says how the list follows from it.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

RULE_SUFFIXES = (".yaml", ".yml")


def parse_subjects(values) -> list[str] | Path:
    """A ``--subjects`` value: a file (one existing path) or subject ids (space- and/or comma-separated).

    Parameters
    ----------
    values : str or list of str
        What the user typed after ``--subjects``.

    Returns
    -------
    Path of a selection file, or the list of ids in the order given (duplicates dropped).
    """
    values = [values] if isinstance(values, str | Path) else list(values)
    if len(values) == 1 and (Path(values[0]).is_file() or Path(values[0]).suffix in (".txt", *RULE_SUFFIXES)):
        path = Path(values[0])
        if not path.is_file():
            raise FileNotFoundError(f"--subjects file {str(path)!r} not found")
        return path
    ids = [s.strip() for v in values for s in str(v).split(",") if s.strip()]
    if not ids:
        raise ValueError("--subjects names no subject: give ids (a,b or a b) or a file of ids")
    return list(dict.fromkeys(ids))


def read_id_file(path) -> list[str]:
    """Subject ids of a ``.txt`` selection: one per line, ``#`` comments and blank lines skipped."""
    ids = [line.split("#", 1)[0].strip() for line in Path(path).read_text(encoding="utf-8").splitlines()]
    ids = [i for i in ids if i]
    if not ids:
        raise ValueError(f"subject file {str(path)!r} lists no subject id")
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ValueError(f"subject file {str(path)!r} lists {dup} more than once")
    return ids


# -- rules over a dataset's own metadata -------------------------------------------------------------------
def _number(value: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def shhs_healthy(input, *, visit: int = 1, max_ahi: float = 5.0, ahi_column: str = "ahi_a0h3",
                 no_history: tuple[str, ...] = (), limit: int | None = None, csv_file=None) -> list[str]:
    """SHHS subjects without sleep apnoea or the listed conditions, from the visit's NSRR dataset CSV.

    Parameters
    ----------
    input : path
        The SHHS folder (its ``datasets/shhs<visit>-dataset-*.csv`` is found under it), unless
        ``csv_file`` is given.
    visit : int
        1 (``shhs1-dataset``) or 2.
    max_ahi : float
        Kept when ``ahi_column`` < ``max_ahi`` events/h (5: no sleep apnoea by the usual AASM cut).
    ahi_column : str
        The AHI variable (NSRR's ``ahi_a0h3``: all apnoeas + hypopnoeas with >= 3% desaturation, per
        hour of sleep).
    no_history : sequence of str
        0/1 condition variables that must be 0 (reported absent); a subject with 1, or with the value
        blank or unknown (8, 9), is left out: "healthy" is asserted, not assumed.
    limit : int, optional
        Keep the first ``limit`` healthy subjects by NSRR id (numeric order).
    csv_file : path, optional
        The dataset CSV itself.

    Returns
    -------
    list of str: NSRR ids (the SHHS reader's subject ids), numeric order.
    """
    if csv_file is None:
        found = sorted(Path(input).rglob(f"shhs{visit}-dataset*.csv"))
        if not found:
            raise FileNotFoundError(f"the shhs_healthy rule reads datasets/shhs{visit}-dataset-*.csv; none under "
                                    f"{str(input)!r}")
        csv_file = found[-1]
    with open(csv_file, newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.DictReader(f)
        header = {(h or "").strip().lower(): h for h in reader.fieldnames or []}
        wanted = [ahi_column, *no_history]
        missing = [c for c in wanted if c.lower() not in header]
        if missing:
            raise ValueError(f"{csv_file}: no column(s) {missing} for the shhs_healthy rule; it has "
                             f"{len(header)} columns, e.g. {sorted(header)[:12]}")
        keep = []
        for row in reader:
            sid = (row.get(header.get("nsrrid", "nsrrid")) or "").strip()
            if not sid or not _number(row[header[ahi_column.lower()]]) < max_ahi:
                continue
            if all(_number(row[header[c.lower()]]) == 0 for c in no_history):
                keep.append(sid)
    keep.sort(key=lambda s: (len(s), s))
    return keep[:limit] if limit is not None else keep


# Literal registry of the rules a ``.yaml`` selection can name: rule -> function(input, **settings) -> ids.
RULES = {"shhs_healthy": shhs_healthy}


def read_rule_file(path, input) -> tuple[list[str], dict]:
    """``(ids, spec)`` of a ``.yaml`` selection resolved against the dataset folder ``input``."""
    import yaml

    spec = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if not isinstance(spec, dict) or spec.get("rule") not in RULES:
        got = spec.get("rule") if isinstance(spec, dict) else spec
        raise ValueError(f"subject rule file {str(path)!r} names rule {got!r}; allowed: {list(RULES)}")
    settings = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.items() if k not in ("rule", "about")}
    try:
        ids = RULES[spec["rule"]](input, **settings)
    except TypeError as err:
        raise ValueError(f"subject rule file {str(path)!r}: bad settings for {spec['rule']!r}: {err}") from None
    if not ids:
        raise ValueError(f"subject rule file {str(path)!r} selects no subject under {str(input)!r}")
    return ids, spec


def resolve_subjects(selection, input) -> tuple[list[str], dict]:
    """The subject ids a selection names and its record for ``meta.json``.

    Parameters
    ----------
    selection : list of str, or path
        Ids, or a selection file (:func:`parse_subjects` tells which from a ``--subjects`` value).
    input : path
        The dataset folder (rules read its metadata).

    Returns
    -------
    ids : list of str
    record : dict
        ``{"ids", "source"}`` (``source`` the file, or None for ids given inline) plus ``rule`` for a
        rule file.
    """
    if isinstance(selection, str | Path):
        path = Path(selection)
        if path.suffix.lower() in RULE_SUFFIXES:
            ids, spec = read_rule_file(path, input)
            return ids, {"ids": ids, "source": str(path), "rule": spec}
        ids = read_id_file(path)
        return ids, {"ids": ids, "source": str(path)}
    ids = [str(s) for s in selection]
    return ids, {"ids": ids, "source": None}


def select_jobs(jobs: list[dict], ids, *, input) -> list[dict]:
    """The reader jobs (:func:`psgvlm.io.readers.find_recordings`) of the subjects ``ids``, in job order.

    Raises ValueError naming the ids no job has (with some ids that are there), or when the jobs carry
    no subject ids (a one-file input).
    """
    if any("subject" not in j for j in jobs):
        raise ValueError(f"--subjects selects subjects of a dataset folder; --input {str(input)!r} is one recording")
    wanted = set(map(str, ids))
    present = list(dict.fromkeys(str(j["subject"]) for j in jobs))
    absent = [i for i in ids if i not in set(present)]
    if absent:
        more = f" (and {len(absent) - 10} more)" if len(absent) > 10 else ""
        raise ValueError(f"--subjects: {len(absent)} of {len(wanted)} subject(s) are not under {str(input)!r}: "
                         f"{absent[:10]}{more}; subjects there include {present[:8]}")
    return [j for j in jobs if str(j["subject"]) in wanted]
