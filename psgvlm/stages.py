"""Sleep stages, their integer codes and every dataset's label mapping, defined once.

AASM stages W, N1, N2, N3, REM are the integers 0..4. Epochs that carry no usable stage (unscored,
movement time, artefact, "?") get ``UNSCORED`` (-1): they are kept in recordings, counted and
reported, and excluded from training and metrics. Rechtschaffen & Kales S3 and S4 merge into N3.
"""

from __future__ import annotations

import numpy as np

STAGES: tuple[str, ...] = ("W", "N1", "N2", "N3", "REM")
W, N1, N2, N3, REM = range(5)
UNSCORED = -1
N_STAGES = len(STAGES)
EPOCH_S = 30.0  # the AASM scoring epoch, seconds

STAGE_TO_CODE: dict[str, int] = {name: code for code, name in enumerate(STAGES)}

# Per-dataset label vocabularies -> AASM codes. Anything absent from a table is an unknown code and
# makes the reader raise (it names the code and the file), never guessed.
ISRUC_CODES: dict[int, int] = {0: W, 1: N1, 2: N2, 3: N3, 4: N3, 5: REM}  # 4 (old S4) seen in some files
# EDF+ annotation texts used by Sleep-EDF and MASS (R&K), and NSRR-style concept names.
RK_ANNOTATIONS: dict[str, int] = {
    "Sleep stage W": W,
    "Sleep stage 1": N1,
    "Sleep stage 2": N2,
    "Sleep stage 3": N3,
    "Sleep stage 4": N3,
    "Sleep stage R": REM,
    "Sleep stage N1": N1,
    "Sleep stage N2": N2,
    "Sleep stage N3": N3,
    "Sleep stage N": UNSCORED,
    "Sleep stage ?": UNSCORED,
    "Movement time": UNSCORED,
}
NSRR_CONCEPTS: dict[str, int] = {
    "Wake|0": W,
    "Stage 1 sleep|1": N1,
    "Stage 2 sleep|2": N2,
    "Stage 3 sleep|3": N3,
    "Stage 4 sleep|4": N3,
    "REM sleep|5": REM,
    "Unscored|9": UNSCORED,
    "Movement|6": UNSCORED,
}
# Compumedics Profusion XML (NSRR "-profusion.xml"): one <SleepStage> integer per epoch; any other
# integer (6 movement, 9 unscored, ...) is unscored.
PROFUSION_CODES: dict[int, int] = {0: W, 1: N1, 2: N2, 3: N3, 4: N3, 5: REM}
DREAMS_CODES: dict[int, int] = {5: W, 4: REM, 3: N1, 2: N2, 1: N3, 0: N3, -1: UNSCORED, -2: UNSCORED}
PRERAU_CODES: dict[int, int] = {5: W, 4: REM, 3: N1, 2: N2, 1: N3}
# Generic hypnograms (CSV/TSV or one label per line): names and the common integer conventions.
GENERIC_LABELS: dict[str, int] = {
    "W": W, "WAKE": W, "0": W,
    "N1": N1, "S1": N1, "1": N1,
    "N2": N2, "S2": N2, "2": N2,
    "N3": N3, "S3": N3, "S4": N3, "N4": N3, "3": N3, "4": N3,
    "R": REM, "REM": REM, "5": REM,
    "?": UNSCORED, "U": UNSCORED, "UNS": UNSCORED, "UNSCORED": UNSCORED, "ART": UNSCORED,
    "MT": UNSCORED, "M": UNSCORED, "MOVEMENT": UNSCORED, "-1": UNSCORED, "9": UNSCORED,
}


def writer_labels(table: dict) -> dict[int, object]:
    """The label a writer puts in a file for each AASM stage: the stage's first key in ``table``.

    Every table above lists a stage's canonical spelling first (ISRUC writes 3 for N3, not the old
    S4 code 4; R&K files "Sleep stage 1", not "Sleep stage N1"), so one table serves reading and
    writing.

    Parameters
    ----------
    table : dict
        One of the tables above (label -> AASM code).

    Returns
    -------
    labels : dict
        AASM code (0..4) -> label, for all five stages.
    """
    out: dict[int, object] = {}
    for label, code in table.items():
        if code != UNSCORED:
            out.setdefault(code, label)
    missing = [STAGES[c] for c in range(N_STAGES) if c not in out]
    if missing:
        raise ValueError(f"table has no label for stages {missing}; it maps {sorted(map(str, table))}")
    return dict(sorted(out.items()))


def stage_counts(stages: np.ndarray) -> dict[str, int]:
    """Counts per stage name (plus ``UNS``) of an array of stage codes."""
    stages = np.asarray(stages)
    counts = {name: int(np.sum(stages == code)) for code, name in enumerate(STAGES)}
    counts["UNS"] = int(np.sum(stages == UNSCORED))
    return counts


def map_codes(raw, table: dict, *, source: str) -> np.ndarray:
    """Map raw labels through ``table`` to AASM codes, raising on any code the table lacks.

    Parameters
    ----------
    raw : sequence
        Raw labels (ints or strings) as they stand in the file.
    table : dict
        One of the tables above.
    source : str
        File name, used in the error message.

    Returns
    -------
    codes : np.ndarray of int8, shape (n_epochs,)
    """
    out = np.empty(len(raw), dtype=np.int8)
    for i, value in enumerate(raw):
        key = value.strip() if isinstance(value, str) else value
        if isinstance(key, str) and key.upper() in table:
            key = key.upper()
        if key not in table:
            raise ValueError(
                f"{source}: unknown stage code {value!r} at epoch {i}; known codes: {sorted(map(str, table))}"
            )
        out[i] = table[key]
    return out
