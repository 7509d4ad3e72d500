"""Stage one recording end to end: read, run every predictor on the same epochs, write the night.

    psgvlm stage --edf night.edf --out out/night
    psgvlm stage --edf SC4001E0-PSG.edf --hypnogram SC4001EC-Hypnogram.edf --run runs/llava_isruc --out out/sc4001
    psgvlm stage --edf night.edf --eeg C4-M1 --eog E1-M2 --emg Chin1-Chin2 --out out/night
    psgvlm stage --edf night.edf --channels C3="EEG Pz-Oz" LOC="EOG horizontal" --out out/night
    psgvlm stage --edf night.edf --lights-off 22:45 --lights-on 06:30 --clock-time --out out/night
    psgvlm stage --edf night.edf --predictors vlm yasa --primary yasa --out out/night

The predictors (:data:`psgvlm.night.predictors.PREDICTORS`: the VLM run, YASA, GSSC when its extra is
installed, their soft vote) all stage the same epochs; one that cannot run is reported with its reason.
``--primary`` (default ``auto``: the best that ran by the real-data ranking) chooses whose stages fill
the files below, which name it. What it writes in ``--out`` (:mod:`psgvlm.night.outputs`, every file
mode 0644 under the default umask, so colleagues on a shared server can read them):

- ``hypnogram.tsv``: ``init_sec  duration_sec  stage  predictor`` one row per 30-s epoch (U-Sleep's
  layout, plus the primary's name); with ``--clock-time`` a ``clock_time`` column (ISO date-time, or
  ``HH:MM:SS`` when the header's date is anonymised).
- ``hypnogram.csv``: ``epoch, start_s, [clock_time,] stage, confidence, p_W, p_N1, p_N2, p_N3, p_REM,
  primary, review``, one ``stage_<name>`` column per predictor (and ``expert`` when a hypnogram was
  given, ``in_bed`` 1/0 with lights off/on), as YASA users tabulate ``predict_proba``; ``review`` says
  why a person should look at the epoch (predictors disagree, low confidence) or is empty.
- ``predictors/<name>/hypnogram.tsv`` and ``hypnodensity.npy``: each predictor's own.
- ``hypnodensity.npy``: float32 (n_epochs, 5) stage probabilities, columns W, N1, N2, N3, REM.
- ``hypnogram_annotations.edf``: EDF+ annotations ("Sleep stage W/N1/N2/N3/R", one per epoch, and
  "Lights off"/"Lights on") that EDFbrowser or ``mne.read_annotations`` opens beside the recording; it
  starts when the recording did (an anonymised date stays anonymised: ``Startdate X``).
- ``hypnogram_yasa.json``: the primary's stages and probabilities for YASA users, loaded in one call:
  ``yasa.Hypnogram.from_json("out/night/hypnogram_yasa.json")`` (:mod:`psgvlm.night.exports`).
- ``hypnogram_events.tsv`` + ``hypnogram_events.json``: a BIDS events file (``onset``, ``duration``,
  ``trial_type`` = the EDF+ stage text, ``stage``, ``scorer``, ``confidence``, ``expert``) and its sidecar.
- ``hypnogram.png``: every predictor's hypnogram (the primary on top; the expert's below) plus the
  primary's hypnodensity; ``confusion.png``: the primary against the expert (with a hypnogram).
- ``summary.json``: ``start`` (the recording's start date-time from the header; ``null`` parts where it
  is anonymised), ``time_in_bed`` (lights off/on in seconds and clock time, the epochs in bed),
  ``primary``; sleep statistics (:mod:`psgvlm.night.sleepstats`) of the primary's stages in bed (and of
  the expert hypnogram), agreement metrics when a hypnogram was given; ``predictors`` (each one's kind,
  channels by the file's own labels, stage counts, agreement, or why it did not run),
  ``pairwise_agreement``, ``review`` (count and epochs); ``channels`` (per VLM band the file's channel
  label, its canonical name and how it was chosen: ``--channels``, ``--eeg``..., ``same name``,
  ``substitute`` or ``flat``) and ``channel_substitutions``; the model and its provenance, and the
  notice that says what the model is (e.g. trained on synthetic recordings, not for clinical use),
  signal warnings (e.g. a channel upsampled to the model's rate), timings and provenance.
  Patient-identifying header fields (name, birth date, hospital code) are never copied: only signal
  facts (rates, durations, channel labels, the start) and a SHA-256 of the input file.
- ``metrics.json``: agreement with the expert hypnogram (:func:`psgvlm.metrics.stage_metrics`) of the
  primary and of every predictor, when one was given.

The staged span is always the whole recording: 30-s epochs from signal time 0 to the last whole
epoch, whatever part of the night an expert hypnogram covers. Expert labels are placed on that grid by
time (:mod:`psgvlm.night.grid`); staged epochs without a label count as unscored in the agreement, and
labels outside the recording are reported as unmatched (console and ``summary.json`` ``checks.expert``).
``--lights-off``/``--lights-on`` (clock time ``HH:MM[:SS]`` or seconds from the start) limit time in bed
as ``yasa.Hypnogram.crop`` does (epochs that start within [off, on]): the sleep statistics follow; the
files keep every epoch and the agreement covers the whole staged night.
An epoch in which every EEG channel a predictor reads is flat (constant, zero or not finite) is not scored: its
stage is ``UNS`` (``Sleep stage ?`` in the EDF+ annotations, probabilities 0), it counts in time in bed
but never as sleep, and the count is a warning; a recording whose EEG is flat in every epoch is refused.
A reused ``--out`` keeps no file of the previous run (:func:`psgvlm.night.outputs.write_outputs`).
Bad input (a file, a value) exits with code 2 and one line naming it; ``--debug`` shows the traceback.

Channels (:mod:`psgvlm.night.stage`): ``--eeg/--eog/--emg`` choose the reference stagers' channels and
the VLM's bands of that modality; ``--channels`` gives the VLM's bands as ``band=channel`` pairs or one
channel per band, top first (``-`` leaves a band flat). Bands nobody chose are filled automatically;
each band drawn from a channel of another name, or left flat, is printed as a warning.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from psgvlm.locks import LockedError, check_out_dir
from psgvlm.night.bands import EMPTY_BAND
from psgvlm.night.stage import StageResult, read_input, sha256_file, stage_recording
from psgvlm.stages import UNSCORED

MAX_BATCH_SIZE = 1024  # epoch images per forward pass; more only exhausts memory


def _fail(message, code: int = 2) -> int:
    """Print one line ``psgvlm stage: <message>`` to stderr and return the exit code."""
    print(f"psgvlm stage: {' '.join(str(message).split())}", file=sys.stderr)
    return code


def build_parser() -> argparse.ArgumentParser:
    from psgvlm.io.hypnogram_formats import HYPNOGRAM_FORMATS
    from psgvlm.night.predictors import add_predictor_arguments

    parser = argparse.ArgumentParser(prog="psgvlm stage", description=__doc__.split("\n\n")[0])
    parser.add_argument("--edf", required=True, help="the recording: EDF, EDF+ or BDF")
    parser.add_argument("--hypnogram", help="expert hypnogram; its format is detected from its content "
                        "(see --hypnogram-format)")
    parser.add_argument("--hypnogram-format", choices=sorted(HYPNOGRAM_FORMATS), metavar="NAME",
                        help="read --hypnogram as this format instead of detecting it: "
                        + "; ".join(f"{k}: {d}" for k, (_, d) in sorted(HYPNOGRAM_FORMATS.items())))
    parser.add_argument("--channels", nargs="+", metavar="BAND=CHANNEL",
                        help="the VLM's bands: band=channel pairs (e.g. C3=\"EEG Pz-Oz\"; other bands automatic), "
                             f"or one recording channel per band, top first ({EMPTY_BAND!r} = flat)")
    parser.add_argument("--run", help="run directory (default: the embedded default model)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--batch-size", default="16",
                        help=f"epoch images scored per forward pass, 1..{MAX_BATCH_SIZE} (default 16)")
    parser.add_argument("--lights-off", metavar="TIME",
                        help="start of time in bed: clock time HH:MM[:SS] or seconds from the start (default: "
                             "the start); the sleep statistics cover lights off to lights on")
    parser.add_argument("--lights-on", metavar="TIME",
                        help="end of time in bed: clock time HH:MM[:SS] or seconds from the start (default: the "
                             "last epoch)")
    parser.add_argument("--clock-time", action="store_true",
                        help="add a clock_time column (from the header's start) to hypnogram.tsv/.csv")
    add_predictor_arguments(parser)
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    from psgvlm.night.bands import channel_request
    from psgvlm.night.outputs import summarize, write_outputs
    from psgvlm.night.predictors import check_predictor_arguments
    from psgvlm.night.stage import time_point_s
    from psgvlm.night.uploads import UploadError, validate_recording_upload

    try:
        batch_size = int(args.batch_size)
    except ValueError:
        batch_size = 0
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        return _fail(f"--batch-size {args.batch_size!r} is not allowed; give a whole number 1..{MAX_BATCH_SIZE}")
    edf = Path(args.edf)
    if not edf.is_file():
        return _fail(f"--edf {str(edf)!r} is not a file")
    if args.hypnogram and not Path(args.hypnogram).is_file():
        return _fail(f"--hypnogram {args.hypnogram!r} is not a file")
    if args.run and not Path(args.run).is_dir():
        return _fail(f"--run {args.run!r} is not a directory")
    bad_out = check_out_dir(args.out)
    if bad_out:
        return _fail(bad_out)
    try:
        names, primary = check_predictor_arguments(args)
        channel_request(args.channels)  # the form of --channels, before anything is read
        for option, value in (("--lights-off", args.lights_off), ("--lights-on", args.lights_on)):
            if value is not None and ":" not in value:
                time_point_s(value, None, option)
    except ValueError as err:
        return _fail(err)
    try:
        validate_recording_upload(edf)
        t_read = time.perf_counter()
        rec = read_input(edf, args.hypnogram, args.hypnogram_format)
        t_read = time.perf_counter() - t_read
        start = rec.meta.get("start")
        if args.clock_time and (start is None or start.time is None):
            raise ValueError("--clock-time: the header gives no start time (anonymised); leave --clock-time out")
        # The VLM loads inside stage_recording, after the reference stagers' worker has started: its
        # imports and loading (seconds) then overlap their work instead of preceding it.
        result = stage_recording(rec, run_dir=args.run, channels=args.channels, batch_size=batch_size,
                                 source_sha256=sha256_file(edf), predictors=names,
                                 primary=primary, eeg=args.eeg, eog=args.eog, emg=args.emg,
                                 lights_off=args.lights_off, lights_on=args.lights_on)
        result.timings_s["read_input"] = t_read
        paths = write_outputs(result, args.out, clock_time=args.clock_time)
    except LockedError as err:  # another run writes --out: the message names the lock and its PID
        if args.debug:
            raise
        return _fail(err)
    except (UploadError, ValueError) as err:  # bad input: the message names the file and the value
        if args.debug:
            raise
        return _fail(err if edf.name in str(err) else f"{edf.name}: {err}")
    except Exception as err:  # noqa: BLE001  not the user's input: one line, the traceback with --debug
        if args.debug:
            raise
        return _fail(f"{type(err).__name__}: {err} (rerun with --debug for the traceback)", code=1)
    report_night(result, summarize(result), paths, args.out)
    return 0


def report_night(result: StageResult, summary: dict, paths: dict, out) -> None:
    """The console report of a staged night: start, what ran, the primary, agreement, warnings, the notice."""
    stats = summary["sleep_statistics"]
    n_uns = int(np.count_nonzero(result.stages == UNSCORED))
    start = summary.get("start") or {}
    when = start.get("datetime") or (f"{start['time']} (date anonymised)" if start.get("time") else "start anonymised")
    print(f"staged {result.n_epochs} epochs ({result.n_epochs * result.epoch_s / 60:g} min from 0 s; recording "
          f"started {when}) in {result.timings_s['total']:.1f} s; primary {result.primary}: TST {stats['TST']:.1f} min, "
          f"SE {stats['SE']:.1f}%" + (f"; {n_uns} epochs unscored (no EEG signal)" if n_uns else ""))
    bed = summary["time_in_bed"]
    if bed["given"]:
        off = bed["lights_off"] or f"{bed['lights_off_s']:g} s"
        on = bed["lights_on"] or f"{bed['lights_on_s']:g} s"
        print(f"time in bed: lights off {off}, lights on {on}: {bed['n_epochs']} epochs from epoch "
              f"{bed['first_epoch']} (TIB {stats['TIB']:.1f} min)")
    for name, entry in summary["predictors"].items():
        if not entry["ran"]:
            print(f"  {name}: not run: {entry['reason']}")
            continue
        line = f"  {name}{' (primary)' if entry['primary'] else ''}: channels {', '.join(entry['channels'])}"
        agree = entry.get("agreement")
        if agree:
            line += (f"; vs expert: accuracy {agree['accuracy']:.3f}, kappa {agree['kappa']:.3f}, "
                     f"macro F1 {agree['macro_f1']:.3f} ({agree['n_epochs']} epochs)")
        print(line)
    print(f"review: {summary['review']['n_epochs']} epochs where predictors disagree or the primary's "
          f"confidence is below {summary['review']['confidence_below']:g} (hypnogram.csv column 'review')")
    top = sorted({p.relative_to(out).parts[0] for p in paths.values()})
    print(f"wrote {', '.join(top)} to {out}")
    for note in result.recording["warnings"]:
        print(f"warning: {note}", file=sys.stderr)
    print(result.notice)


if __name__ == "__main__":
    sys.exit(main())
