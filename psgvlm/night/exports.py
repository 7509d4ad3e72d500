"""A staged night in other tools' formats: a YASA hypnogram with probabilities, BIDS events.

- :func:`yasa_hypnogram_dict`: ``yasa.Hypnogram.to_dict``'s layout (values, n_stages, freq, start,
  scorer, proba), written as ``hypnogram_yasa.json``; YASA (>= 0.7) loads it in one call::

      import yasa
      hyp = yasa.Hypnogram.from_json("out/night/hypnogram_yasa.json")
      hyp.proba, hyp.start, hyp.sleep_statistics(), hyp.plot_hypnodensity()

  Written by hand (no yasa import to write it); the test suite loads it with yasa. Epochs the
  primary did not score are ``UNS`` with probability 1 in a ``UNS`` column (YASA wants rows summing to
  1). ``start`` is the recording's start date-time, None when the header's date is anonymised.
- :func:`bids_events_tsv` / :func:`bids_events_sidecar`: a BIDS events file (``onset``, ``duration``,
  ``trial_type`` and more columns described in the JSON sidecar), one row per epoch, written as
  ``hypnogram_events.tsv`` + ``hypnogram_events.json``. ``trial_type`` is the EDF+ annotation text
  (``Sleep stage N2``), so MNE-BIDS gives the same annotations as ``hypnogram_annotations.edf``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from psgvlm.stages import STAGES, UNSCORED

if TYPE_CHECKING:
    from psgvlm.night.stage import StageResult

# psgvlm stage name -> YASA's canonical label (yasa.Hypnogram, n_stages=5)
YASA_LABELS = {"W": "WAKE", "N1": "N1", "N2": "N2", "N3": "N3", "REM": "REM"}
YASA_UNSCORED = "UNS"
BIDS_NA = "n/a"


def _names(codes) -> list[str]:
    return ["UNS" if int(c) == UNSCORED else STAGES[int(c)] for c in codes]


def yasa_hypnogram_dict(result: StageResult) -> dict:
    """The primary's stages and probabilities as ``yasa.Hypnogram.to_dict()`` writes them."""
    codes = result.stages
    values = [YASA_UNSCORED if c == UNSCORED else YASA_LABELS[STAGES[int(c)]] for c in codes]
    probs = np.asarray(result.probs, dtype=np.float64)
    unscored = codes == UNSCORED
    probs = np.where(unscored[:, None], 0.0, probs / np.maximum(probs.sum(1, keepdims=True), 1e-12))
    proba = {YASA_LABELS[s]: np.round(probs[:, i], 6).tolist() for i, s in enumerate(STAGES)}
    if unscored.any():
        proba[YASA_UNSCORED] = unscored.astype(float).tolist()
    start = result.start.datetime if result.start is not None else None
    return {"values": values, "n_stages": 5, "freq": f"{result.epoch_s:g}s",
            "start": None if start is None else (start + _seconds(result.starts_s[0])).isoformat(),
            "scorer": result.primary, "proba": proba}


def _seconds(s: float):
    import datetime as dt

    return dt.timedelta(seconds=float(s))


def bids_events_tsv(result: StageResult) -> str:
    """BIDS events: ``onset duration trial_type stage scorer confidence`` (+ ``expert``), one row per epoch."""
    from psgvlm.night.outputs import EDF_STAGE_TEXT

    head = ["onset", "duration", "trial_type", "stage", "scorer", "confidence"]
    expert = None if result.expert is None else _names(result.expert)
    if expert is not None:
        head.append("expert")
    lines = ["\t".join(head)]
    for i, (start, name, p) in enumerate(zip(result.starts_s, _names(result.stages), result.probs)):
        scored = name != "UNS"
        row = [f"{start:g}", f"{result.epoch_s:g}", EDF_STAGE_TEXT[name], name if scored else BIDS_NA,
               result.primary, f"{p.max():.4f}" if scored else BIDS_NA]
        if expert is not None:
            row.append(expert[i] if expert[i] != "UNS" else BIDS_NA)
        lines.append("\t".join(row))
    return "\n".join(lines) + "\n"


def bids_events_sidecar(result: StageResult) -> dict:
    """The JSON sidecar that describes :func:`bids_events_tsv`'s columns (BIDS events.json)."""
    from psgvlm.night.outputs import EDF_STAGE_TEXT

    levels = {"W": "wake", "N1": "NREM stage 1", "N2": "NREM stage 2", "N3": "NREM stage 3", "REM": "REM sleep"}
    out = {
        "onset": {"Description": "Epoch start, seconds from the start of the recording", "Units": "s"},
        "duration": {"Description": "Epoch length", "Units": "s"},
        "trial_type": {"Description": "Sleep stage as an EDF+ annotation text (AASM)",
                       "Levels": {EDF_STAGE_TEXT[k]: v for k, v in {**levels, "UNS": "not scored"}.items()}},
        "stage": {"Description": f"AASM sleep stage scored by {result.primary}; n/a where it did not score "
                                 "(no EEG signal)", "Levels": levels},
        "scorer": {"Description": "The psgvlm predictor whose stages these are (psgvlm stage --primary)"},
        "confidence": {"Description": "The scorer's probability of its stage (0-1)"},
    }
    if result.expert is not None:
        out["expert"] = {"Description": "The expert hypnogram's stage, placed on the epoch by time; n/a where no "
                                        "label covers it", "Levels": levels}
    start = result.start.datetime if result.start is not None else None
    if start is not None:
        out["StartTime"] = start.isoformat()  # informative: onset 0 is this date-time
    return out
