"""``psgvlm reference``: stage recordings with one pretrained reference stager (YASA or GSSC).

    psgvlm reference --predictor gssc --input night.edf --out out/gssc
    psgvlm reference --predictor yasa --format dreams --input ../shared/data/real/dreams_spindles --out out/yasa
    psgvlm yasa --format isruc --input data/isruc --out runs/yasa          # = reference --predictor yasa

``--input`` is one recording or a folder laid out as ``--format`` ships it (default ``generic``: any
EDF/BDF, with a hypnogram named like it when there is one). For each recording it writes what
``psgvlm stage`` writes (:mod:`psgvlm.night.outputs`: hypnogram TSV/CSV/EDF+, hypnodensity, plot,
summary, metrics with an expert hypnogram) into ``OUT/<recording>/``, on the reader's epoch grid
(epochs from the first scored instant, so they line up with the expert's). ``OUT`` itself is a run
dir in the predictions contract (:mod:`psgvlm.predictions`): ``predictions.jsonl`` + ``metrics.json``
of every recording, ``channels/<stream>/predictions.jsonl`` per channel stream (what NAP fuses:
YASA's per EEG channel, GSSC's per channel permutation; a stream holds the recordings that have its
channels) and ``meta.json``. Default channels: every EEG channel; for YASA the best EOG and EMG
channel too (GSSC reads EOG when ``--eog`` names it).
Bad input exits 2 with one line; a recording the stager cannot read is skipped and reported.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from psgvlm.night.predictors import PREDICTORS

REFERENCE = [name for name, p in PREDICTORS.items() if p.kind == "reference"]


def _fail(prog: str, message, code: int = 2) -> int:
    print(f"{prog}: {' '.join(str(message).split())}", file=sys.stderr)
    return code


def _folder_names(found: list[dict], root: Path) -> list[str]:
    """A folder name per recording: its stem, or its path under ``root`` when stems collide."""
    stems = [Path(kw["path"]).stem for kw in found]
    names = []
    for kw, stem in zip(found, stems):
        if stems.count(stem) > 1 and root.is_dir():
            stem = "__".join(Path(kw["path"]).relative_to(root).with_suffix("").parts)
        names.append(stem)
    return names


def stage_folder(predictor: str, fmt: str, input_path, out, *, hypnogram=None, eeg=None, eog=None, emg=None,
                 debug: bool = False, prog: str = "psgvlm reference") -> dict:
    """Stage every recording under ``input_path`` with ``predictor``; write the night outputs and the run dir.

    Returns
    -------
    dict with ``metrics`` (the run dir's pooled metrics), ``staged`` (recording -> folder) and
    ``skipped`` (recording -> reason).
    """
    from tqdm import tqdm

    from psgvlm.io.readers import find_recordings, read_recording
    from psgvlm.night.outputs import write_outputs
    from psgvlm.night.stage import stage_recording
    from psgvlm.predictions import make_rows, write_predictions
    from psgvlm.provenance import provenance, write_json_atomic

    root = Path(input_path)
    found = find_recordings(fmt, root)
    if hypnogram is not None:
        if len(found) != 1:
            raise ValueError(f"--hypnogram goes with one recording; {root} holds {len(found)}")
        found[0]["hypnogram"] = str(hypnogram)
    out = Path(out)
    rows: list[dict] = []
    streams: dict[str, list[dict]] = {}
    staged, skipped = {}, {}
    for kw, folder in tqdm(list(zip(found, _folder_names(found, root))), desc=predictor, unit="recording"):
        try:
            rec = read_recording(fmt, **kw)
            res = stage_recording(rec, predictors=[predictor], primary=predictor, eeg=eeg, eog=eog, emg=emg,
                                  max_eeg=None, from_onset=True)
        except ValueError as err:  # this recording: reported, the others go on
            if debug:
                raise
            skipped[folder] = " ".join(str(err).split())
            print(f"{prog}: skipped {kw['path']}: {skipped[folder]}", file=sys.stderr)
            continue
        write_outputs(res, out / folder)
        staged[folder] = str(out / folder)
        n, hyp = res.n_epochs, res.predictions[predictor]
        labels = [None] * n if res.expert is None else res.expert.tolist()
        common = {"dataset": rec.dataset, "subjects": [rec.subject] * n, "recordings": [rec.recording] * n,
                  "epochs": range(n), "starts_s": res.starts_s, "labels": labels}
        keep = ~hyp.unscored  # the contract's rows sum to 1: epochs the stager did not score are left out
        sel = {k: (v if isinstance(v, str) else [x for x, k_ in zip(v, keep) if k_]) for k, v in common.items()}
        rows += make_rows(**sel, probs=hyp.probs[keep])
        for key, p in hyp.streams.items():
            streams.setdefault(key, []).extend(make_rows(**sel, probs=p[keep]))
    if not staged:
        raise ValueError(f"no recording under {root} could be staged by {predictor}: "
                         + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    info = {"kind": predictor, "predictor": PREDICTORS[predictor].describe}
    metrics = write_predictions(out, rows, extra_meta=info)
    for key, r in streams.items():
        write_predictions(out / "channels" / key.replace("/", "_"), r, extra_meta={**info, "channel": key})
    write_json_atomic(out / "meta.json", {"kind": predictor, "config": {"format": fmt, "input": str(root),
                                                                        "eeg": eeg, "eog": eog, "emg": emg},
                                          "streams": sorted(streams), "staged": staged, "skipped": skipped,
                                          "provenance": provenance()})
    return {"metrics": metrics, "staged": staged, "skipped": skipped}


def main(argv: list[str] | None = None, *, predictor: str | None = None) -> int:
    """``psgvlm reference``: stage one recording or a folder with YASA or GSSC; the outputs of ``psgvlm stage``."""
    from psgvlm.io.readers import READERS

    prog = "psgvlm " + (predictor or "reference")
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    if predictor is None:
        parser.add_argument("--predictor", required=True, choices=REFERENCE, help="the reference stager to run")
    parser.add_argument("--input", required=True, help="one recording (EDF/BDF, or a reader's file) or a folder")
    parser.add_argument("--format", default="generic", choices=list(READERS),
                        help="how --input is laid out (default generic: EDF/BDF with optional hypnograms)")
    parser.add_argument("--hypnogram", help="expert hypnogram of a single --input recording (generic format)")
    parser.add_argument("--out", required=True, help="output folder: OUT/<recording>/ night outputs + the run dir")
    parser.add_argument("--eeg", nargs="+", help="EEG channel(s) to stage (default: every EEG channel)")
    parser.add_argument("--eog", nargs="+", help="EOG channel(s) (default: YASA the best one, GSSC none)")
    parser.add_argument("--emg", nargs="+", help="EMG channel for YASA (default: the best one, when present)")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    args = parser.parse_args(argv)
    name = predictor or args.predictor
    reason = PREDICTORS[name].missing()
    if reason:
        return _fail(prog, f"{name}: {reason}")
    if not Path(args.input).exists():
        return _fail(prog, f"--input {args.input!r} does not exist")
    if args.hypnogram and not Path(args.hypnogram).is_file():
        return _fail(prog, f"--hypnogram {args.hypnogram!r} is not a file")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        return _fail(prog, f"--out {args.out!r} exists and is not a directory")
    try:
        done = stage_folder(name, args.format, args.input, args.out, hypnogram=args.hypnogram, eeg=args.eeg,
                            eog=args.eog, emg=args.emg, debug=args.debug, prog=prog)
    except (FileNotFoundError, ValueError) as err:
        if args.debug:
            raise
        return _fail(prog, err)
    pooled = done["metrics"].get("pooled") or {}
    score = (f"; vs expert: accuracy {pooled['accuracy']:.3f}, kappa {pooled['kappa']:.3f}, macro F1 "
             f"{pooled['macro_f1']:.3f} ({pooled['n_epochs']} epochs)") if pooled else ""
    print(f"{name}: staged {len(done['staged'])} recording(s) into {args.out}"
          + (f", skipped {len(done['skipped'])}" if done["skipped"] else "") + score)
    return 0


def yasa_main(argv: list[str] | None = None) -> int:
    """``psgvlm yasa``: the same as ``psgvlm reference --predictor yasa``."""
    return main(argv, predictor="yasa")


if __name__ == "__main__":
    sys.exit(main())
