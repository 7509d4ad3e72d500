"""The predictors of a night: the contract over every registered predictor, YASA and GSSC on real files,
``psgvlm stage`` with several predictors and ``--primary``, and ``psgvlm reference``.

Run: python -m pytest -q tests/test_reference.py

Real recordings come from ../shared/data/real (skipped with the reason when absent); GSSC cases skip
when the optional extra is not installed (``pip install "psgvlm[gssc]"``).
"""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest
from test_stage import recording_from, synthetic_night, write_edf, write_hypnogram_csv

from psgvlm.night.predictors import PREDICTORS, PredictorOptions, run_predictors, stages_of
from psgvlm.reference import PredictorUnavailable
from psgvlm.stages import N_STAGES, UNSCORED

os.environ.setdefault("HF_HUB_OFFLINE", "1")
needs_gssc = pytest.mark.skipif(PREDICTORS["gssc"].missing() is not None,
                                reason="the optional extra psgvlm[gssc] is not installed")


@pytest.fixture(scope="module")
def vlm():
    from psgvlm.vlm.predict import DEFAULT_RUN, load_predictor

    return load_predictor(DEFAULT_RUN)


# ------------------------------------------------------------------------------------------------
# The contract, every registered predictor
# ------------------------------------------------------------------------------------------------
CONTRACT_CASES = {"vlm": [], "yasa": [], "gssc": [], "vote": ["yasa", "gssc"]}  # name -> predictors it needs


def test_every_predictor_has_a_contract_case():
    assert set(CONTRACT_CASES) == set(PREDICTORS)
    assert all(set(PREDICTORS[n].needs) == set(CONTRACT_CASES[n]) for n in PREDICTORS)


@pytest.mark.parametrize("name", sorted(CONTRACT_CASES))
def test_predictor_contract(name, vlm):
    needed = [name, *CONTRACT_CASES[name]]
    for n in needed:
        if PREDICTORS[n].missing():
            pytest.skip(f"{n}: {PREDICTORS[n].missing()}")
    signals, _ = synthetic_night(12, seed=11)
    signals["C4-A1"][3 * 3000: 5 * 3000] = 0.0  # epochs 3-4: every EEG channel flat
    signals["C3-A2"][3 * 3000: 5 * 3000] = 0.0
    rec = recording_from(signals, None)
    before = {c.canonical: c.data.copy() for c in rec.channels}
    outputs, failed, seconds = run_predictors(rec, 12, needed, PredictorOptions(vlm=vlm))
    assert failed == {} and name in outputs and name in seconds
    out = outputs[name]
    assert out.probs.shape == (12, N_STAGES) and out.probs.dtype == np.float32
    assert out.unscored.dtype == bool and out.unscored.tolist() == [k in (3, 4) for k in range(12)]
    assert np.allclose(out.probs[~out.unscored].sum(1), 1, atol=1e-4) and (out.probs[out.unscored] == 0).all()
    assert out.channels and set(out.channels) <= set(rec.ch_names)
    assert any(rec.channel(c).modality == "EEG" for c in out.channels)
    assert (stages_of(out)[out.unscored] == UNSCORED).all()
    json.dumps(out.info)  # JSON-able facts for summary.json
    for stream in out.streams.values():
        assert stream.shape == (12, N_STAGES)
    assert all(np.array_equal(before[c.canonical], c.data) for c in rec.channels)  # the input is untouched
    # Asked for more epochs than the signal holds: the tail is unscored, never invented.
    if PREDICTORS[name].kind == "reference":
        longer, _, _ = run_predictors(rec, 14, [name], PredictorOptions())
        assert longer[name].unscored[12:].all() and not longer[name].unscored[:3].any()


def test_reference_stagers_in_a_worker_process_give_the_same_night(vlm):
    """Long nights run the reference stagers in a worker process beside the VLM: same outputs, same order."""
    signals, _ = synthetic_night(6, seed=3)
    rec = recording_from(signals, None)
    names = [n for n in PREDICTORS if PREDICTORS[n].missing() is None]
    here = run_predictors(rec, 6, names, PredictorOptions(vlm=vlm), parallel=False)
    there = run_predictors(rec, 6, names, PredictorOptions(vlm=vlm, parallel_min_epochs=1))
    assert list(there[0]) == list(here[0]) == names and there[1] == here[1] == {}
    for n in names:
        assert np.allclose(there[0][n].probs, here[0][n].probs, atol=1e-5), n
        assert there[0][n].channels == here[0][n].channels
    with pytest.raises(ValueError, match="NOPE"):  # a bad channel the user chose still stops the night
        run_predictors(rec, 6, ["vlm", "yasa"], PredictorOptions(vlm=vlm, eeg=["NOPE"], parallel_min_epochs=1),
                       strict={"yasa"})


@pytest.mark.parametrize("name", ["yasa", "gssc"])
def test_reference_without_eeg_says_why(name):
    if PREDICTORS[name].missing():
        pytest.skip(PREDICTORS[name].missing())
    signals, _ = synthetic_night(4)
    rec = recording_from({"ECG": signals["C3-A2"], "EMG Chin": signals["EMG Chin"]}, None)
    _, failed, _ = run_predictors(rec, 4, [name], PredictorOptions())
    assert "no EEG channel" in failed[name]
    with pytest.raises(PredictorUnavailable, match="below 50 Hz"):
        from psgvlm.reference import reference_channels

        slow = recording_from({"C3-A2": signals["C3-A2"][::4]}, None, sfreq=25.0)
        reference_channels(slow, eeg=["C3"])


# ------------------------------------------------------------------------------------------------
# Real recordings
# ------------------------------------------------------------------------------------------------
def _real(real_data_dir, fmt, sub, i=0):
    from psgvlm.io.readers import find_recordings, read_recording

    return read_recording(fmt, **find_recordings(fmt, real_data_dir / sub)[i])


@pytest.mark.parametrize("name, min_kappa", [("yasa", 0.7), ("gssc", 0.75)])
def test_reference_stager_on_prerau(real_data_dir, name, min_kappa):
    """Prerau's 167 expert epochs (one EEG channel, 100 Hz): measured kappa YASA 0.79, GSSC 0.84."""
    if PREDICTORS[name].missing():
        pytest.skip(PREDICTORS[name].missing())
    from psgvlm.metrics import stage_metrics

    rec = _real(real_data_dir, "prerau", "prerau")
    outputs, failed, _ = run_predictors(rec, rec.n_epochs, [name], PredictorOptions())
    assert failed == {}
    m = stage_metrics(rec.stages[: rec.n_epochs], stages_of(outputs[name]))
    assert m["n_epochs"] == 167 and m["kappa"] >= min_kappa, m["kappa"]


def test_yasa_upsamples_a_50_hz_channel_and_says_so(real_data_dir):
    rec = _real(real_data_dir, "dreams", "dreams_spindles", 2)  # excerpt3: C3 at 50 Hz
    from psgvlm.reference.yasa import yasa_predict

    out = yasa_predict(rec)
    assert out.probs.shape == (60, N_STAGES) and any("50 Hz" in n and "upsampled" in n for n in out.notes)


@needs_gssc
def test_gssc_matches_its_own_inference_and_keeps_the_last_epoch(real_data_dir):
    """GSSC's own ``EEGInfer.mne_infer`` (given our weights-only nets) against ours on DREAMS excerpt 2."""
    import mne
    from gssc.infer import EEGInfer

    from psgvlm.reference.gssc import gssc_predict, load_nets

    rec = _real(real_data_dir, "dreams", "dreams_spindles", 1)  # Cz, 200 Hz, exactly 1800 s
    ch = rec.channels[0]
    assert len(ch.data) == 1800 * 200
    ours = gssc_predict(rec)
    assert ours.probs.shape == (60, N_STAGES) and not ours.unscored.any()
    assert ours.info["permutations"] == {"Cz": 60}
    net, con = load_nets()
    raw = mne.io.RawArray(ch.data[None].astype(np.float64) * 1e-6, mne.create_info(["Cz"], ch.sfreq, "eeg"),
                          verbose="error")
    data = raw.get_data().copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its CUDA and filter-band notices
        theirs, times = EEGInfer(net=net, con_net=con, use_cuda=False).mne_infer(raw, eeg=["Cz"], eog=[])
    assert not np.array_equal(raw.get_data(), data)  # mne_infer filtered the Raw it was given, in place
    assert len(theirs) == 59  # and lost the last epoch of an exact-multiple recording; ours keeps 60
    agree = np.mean(stages_of(ours)[:59] == np.asarray(theirs))
    assert agree >= 0.9, agree


@needs_gssc
def test_gssc_eeg_x_eog_permutations():
    """With --eog: GSSC's permutations (EEG, EOG, both); each stream is its own run; the loudest decides."""
    from psgvlm.reference.gssc import gssc_predict

    signals, _ = synthetic_night(12, seed=5)
    rec = recording_from(signals, None)
    alone = gssc_predict(rec)
    both = gssc_predict(rec, eog=["LOC"])
    (eeg,) = alone.info["eeg"]
    assert set(both.streams) == {eeg, "LOC", f"{eeg}+LOC"} and both.channels == [eeg, "LOC"]
    assert np.allclose(both.streams[eeg], alone.probs, atol=1e-5)  # the EEG-only permutation is the same run
    assert sum(both.info["permutations"].values()) == 12
    loudest = np.stack(list(both.streams.values())).max(-1).argmax(0)
    assert np.allclose(both.probs, np.stack(list(both.streams.values()))[loudest, np.arange(12)], atol=1e-5)


@needs_gssc
def test_gssc_nets_load_weights_only():
    """The nets load with weights_only=True and exactly the allowlisted classes (no blind unpickling)."""
    from importlib.resources import files

    import torch

    from psgvlm.reference.gssc import _safe_classes, load_nets

    net, con = load_nets()
    assert type(net).__name__ == "ResSleep" and type(con).__name__ == "SleepGRU" and not net.training
    path = files("gssc.nets").joinpath("gru_net_v1.pt")
    with pytest.raises(Exception, match="Weights only load failed|Unsupported global"):
        torch.load(path, weights_only=True)  # without the allowlist the pickle is refused
    with torch.serialization.safe_globals(_safe_classes()):
        torch.load(path, weights_only=True)


# ------------------------------------------------------------------------------------------------
# psgvlm stage with several predictors
# ------------------------------------------------------------------------------------------------
def test_stage_several_predictors_and_primary(tmp_path, capsys):
    from psgvlm.night.cli_stage import main

    signals, stages = synthetic_night(10, seed=4)
    edf = write_edf(tmp_path / "night.edf", signals)
    hyp = write_hypnogram_csv(tmp_path / "night.csv", stages)
    out = tmp_path / "o"
    assert main([str(a) for a in ("--edf", edf, "--hypnogram", hyp, "--out", out, "--predictors", "vlm", "yasa",
                                  "--primary", "yasa")]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["primary"] == "yasa" and "YASA" in summary["notice"] and "yasa (primary)" in printed
    assert list(summary["predictors"]) == ["vlm", "yasa"]
    for name in ("vlm", "yasa"):
        entry = summary["predictors"][name]
        assert entry["ran"] and set(entry["agreement"]) >= {"accuracy", "kappa", "macro_f1", "confusion"}
        assert sum(entry["stage_counts"].values()) == 10 and f"  {name}" in printed
        assert (out / "predictors" / name / "hypnogram.tsv").is_file()
        assert np.load(out / "predictors" / name / "hypnodensity.npy").shape == (10, N_STAGES)
    assert summary["agreement"] == summary["predictors"]["yasa"]["agreement"]
    assert set(summary["pairwise_agreement"]) == {"vlm vs yasa"}
    tsv = (out / "hypnogram.tsv").read_text().splitlines()
    assert all(line.endswith("\tyasa") for line in tsv[1:])
    assert tsv[1:] == (out / "predictors" / "yasa" / "hypnogram.tsv").read_text().splitlines()[1:]
    csv = [line.split(",") for line in (out / "hypnogram.csv").read_text().splitlines()]
    head = csv[0]
    review = [row[head.index("review")] for row in csv[1:]]
    assert summary["review"]["n_epochs"] == sum(bool(r) for r in review)
    assert summary["review"]["epochs"] == [k for k, r in enumerate(review) if r]
    assert all(r in ("", "disagree", "low confidence", "disagree; low confidence") for r in review)
    # Disagreement is judged by YASA alone here (the synthetic default VLM has no say beside it): only
    # low confidence can flag an epoch.
    assert "disagree" not in "".join(review)
    from psgvlm.io.hypnogram_formats import read_generic_hypnogram

    back = read_generic_hypnogram(out / "hypnogram.tsv")  # the predictor column does not stop a reader
    assert len(back.codes) == 10
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["primary"] == "yasa" and set(metrics["predictors"]) == {"vlm", "yasa"}


@pytest.mark.parametrize("argv, message", [
    (["--predictors", "nope"], "unknown predictor"),
    (["--primary", "nope"], "--primary 'nope'"),
    (["--predictors", "vlm", "--primary", "yasa"], "not among --predictors"),
])
def test_stage_bad_predictor_options_exit_2(tmp_path, capsys, argv, message):
    from psgvlm.night.cli_stage import main

    signals, _ = synthetic_night(2)
    edf = write_edf(tmp_path / "n.edf", signals)
    assert main(["--edf", str(edf), "--out", str(tmp_path / "o"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "o").exists()


def test_a_predictor_that_cannot_run_is_reported_while_the_others_run(vlm):
    """One epoch: the VLM stages it, YASA (whose features need two epochs) says why it cannot."""
    from psgvlm.night.stage import stage_recording
    from psgvlm.vlm.predict import DEFAULT_RUN

    signals, _ = synthetic_night(1)
    res = stage_recording(recording_from(signals, None), run_dir=DEFAULT_RUN, predictor=vlm,
                          predictors=["vlm", "yasa"])
    assert list(res.predictions) == ["vlm"] and res.primary == "vlm" and res.n_epochs == 1
    assert "YASA needs >= 2 epochs" in res.failed["yasa"]
    with pytest.raises(ValueError, match="primary 'yasa' did not run on this recording"):
        stage_recording(recording_from(signals, None), run_dir=DEFAULT_RUN, predictor=vlm,
                        predictors=["vlm", "yasa"], primary="yasa")


# ------------------------------------------------------------------------------------------------
# psgvlm reference (and its alias psgvlm yasa)
# ------------------------------------------------------------------------------------------------
@needs_gssc
def test_reference_unlabeled_edf(real_data_dir, tmp_path, capsys):
    """The Nox fragment: 2 minutes, 89 signals, no stages. It used to crash `psgvlm yasa`."""
    from psgvlm.cli import main

    out = tmp_path / "g"
    assert main(["reference", "--predictor", "gssc", "--input",
                 str(real_data_dir / "nox_unlabeled" / "subject1.edf"), "--out", str(out)]) == 0
    summary = json.loads((out / "subject1" / "summary.json").read_text())
    assert summary["primary"] == "gssc" and summary["n_epochs"] == 4 and "agreement" not in summary
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(r["label"] is None for r in rows)
    assert json.loads((out / "metrics.json").read_text())["pooled"] == {}
    assert (out / "subject1" / "hypnogram.tsv").is_file() and "staged 1 recording" in capsys.readouterr().out


def test_reference_folder_holding_only_an_edf(real_data_dir, tmp_path, capsys):
    import shutil

    from psgvlm.cli import main

    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(real_data_dir / "sleepedf_crop" / "short_psg.edf", folder / "night.edf")
    assert main(["yasa", "--input", str(folder), "--out", str(tmp_path / "y")]) == 0  # the alias
    summary = json.loads((tmp_path / "y" / "night" / "summary.json").read_text())
    assert summary["primary"] == "yasa" and summary["n_epochs"] == 10
    assert summary["predictors"]["yasa"]["channels"] == ["EEG Fpz-Cz", "EEG Pz-Oz", "EOG horizontal"]  # file labels; chin EMG is at 1 Hz
    assert sorted(p.name for p in (tmp_path / "y" / "channels").iterdir()) == ["Fpz-Cz", "Pz-Oz"]


def test_reference_dreams_folder_c3_and_cz(real_data_dir, tmp_path, capsys):
    """Excerpts with C3 and with Cz in one folder: one stream per channel, each with its recordings."""
    from psgvlm.cli import main

    out = tmp_path / "d"
    assert main(["reference", "--predictor", "yasa", "--format", "dreams", "--input",
                 str(real_data_dir / "dreams_spindles"), "--out", str(out)]) == 0
    assert "kappa" in capsys.readouterr().out
    rows = {ch: [json.loads(x) for x in (out / "channels" / ch / "predictions.jsonl").read_text().splitlines()]
            for ch in ("C3", "Cz")}
    assert {r["recording"] for r in rows["C3"]} == {"excerpt1", "excerpt3"}
    assert {r["recording"] for r in rows["Cz"]} == {"excerpt2", "excerpt4", "excerpt5", "excerpt6"}
    pooled = json.loads((out / "metrics.json").read_text())["pooled"]
    assert pooled["n_epochs"] == 360 and pooled["kappa"] > 0.4  # measured 0.55 on these six excerpts
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["channels", *[f"excerpt{i}" for i in range(1, 7)]]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["skipped"] == {} and len(meta["staged"]) == 6


def test_reference_bad_input_exit_2(tmp_path, capsys):
    from psgvlm.cli import main

    assert main(["reference", "--predictor", "yasa", "--input", str(tmp_path / "none.edf"),
                 "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["reference", "--predictor", "yasa", "--input", str(empty), "--out", str(tmp_path / "o")]) == 2
    assert "no generic recordings found" in capsys.readouterr().err
