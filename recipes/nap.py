"""Train NAP over the hypnodensities of frozen predictors and compare with soft voting.

Three protocols (``--protocol``), each writing the same outputs for the recordings it tests:

- ``zero_shot`` (the NAP paper's): NAP trains on the streams of some corpora (``--train_predictors``)
  and predicts a corpus it never saw (``--predictors``), e.g. YASA and GSSC per EEG channel
  (``psgvlm reference``, once per corpus; a name given twice joins the runs)::

    python recipes/nap.py --protocol zero_shot --config recipes/configs/nap_paper.yaml \\
        --train_predictors yasa=runs/yasa_mass gssc=runs/gssc_mass yasa=runs/yasa_shhs gssc=runs/gssc_shhs \\
        --predictors yasa=runs/yasa_sedf gssc=runs/gssc_sedf --output_dir runs/nap_zero_shot

- ``loro``: leave one recording out over the recordings of ``--predictors``: NAP trains on the others
  (plus every recording of ``--train_predictors``, if given: e.g. synthetic nights) and predicts the
  held-out one, so ``predictions.jsonl`` covers every recording once, out of fold. Fold models are
  not kept (``folds`` in meta.json lists what each trained on)::

    python recipes/nap.py --protocol loro --predictors yasa=runs/yasa_dreams yasa=runs/yasa_prerau \\
        gssc=runs/gssc_dreams gssc=runs/gssc_prerau --output_dir runs/nap_loro

- ``split`` (in-domain): NAP trains on the ``--train_on`` subjects of a subject split (from
  ``--signal_data``/``--split_from``, else seeded over the streams' subjects) and predicts the test
  subjects::

    python recipes/nap.py --config recipes/configs/nap_paper.yaml --signal_data runs/isruc_signal \\
        --predictors yasa=runs/yasa sdreamer=runs/sdreamer sleep2vec=runs/s2v_ft --output_dir runs/nap

Each ``name=RUN_DIR`` is a frozen predictor: ``channels/<ch>/predictions.jsonl`` (one stream per channel,
as ``psgvlm reference`` writes; a stream holds the recordings that have its channel, so corpora with
different montages mix) or else ``predictions.jsonl`` + ``predictions_<split>/`` (one stream over the
whole montage). Every predictor must cover the same recordings and scored epochs (else the run stops
and names the mismatch); unscored epochs that some streams lack are dropped from all, printed and
listed in meta.json ``dropped_unscored``.

NAP trains only on out-of-sample hypnodensities: a stream whose run recorded a training split
(meta.json) that holds a recording NAP would train on -- a model's predictions on its own training
subjects -- is refused (exit 2), whatever the protocol. Pretrained stagers (YASA, GSSC) record none.
With the in-domain split, baselines trained on the train subjects therefore give NAP their
validation subjects (the default ``--train_on validation``) or cross-fitted streams.

Real-data figures of each protocol and of the NAP settings tried, and why no NAP consensus ships:
README, "How good is it on real sleep?".

Outputs: ``predictions.jsonl`` + ``metrics.json`` (NAP), ``soft_vote/``, ``predictors/<name>/`` (the
mean of each predictor's streams per recording), ``streams/<predictor>__<channel>/``,
``metrics_table.json`` (pooled metrics of every row and of NAP with one predictor left out),
``per_recording.json`` (kappa, accuracy, macro F1 and epochs per row and recording), ``meta.json``
(protocol, sources, what trained on what, provenance). ``split`` and ``zero_shot`` also write
``model.pt`` + ``model_config.json``, ``train_log.jsonl`` + ``loss_curve.png``, ``checkpoints/``,
``confusion.png`` and the model card ``README.md`` (``--resume_from_checkpoint latest``,
``--report_to tensorboard``, ``--push_to_hub --hub_model_id USER/NAME``). Ablations: ``--axes time
predictor`` (one axis removed), ``--adaptive false`` (no dimension-adaptive training). ``--help``
lists every argument.
"""

import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from psgvlm.baselines.common import RunArguments, exit_on_split_leak, save_model
from psgvlm.baselines.nap import (
    NAPConfig,
    in_sample_streams,
    load_streams,
    predict_nap,
    soft_vote,
    train_nap,
)
from psgvlm.baselines.signal_data import read_split
from psgvlm.predictions import make_rows, metrics_from_rows, write_predictions
from psgvlm.provenance import provenance, write_json_atomic
from psgvlm.splits import split_subjects
from psgvlm.training import TrainingRun, parse_args, val_metrics

PROTOCOLS = ("split", "loro", "zero_shot")


@dataclass(kw_only=True)
class Args(RunArguments):
    predictors: list[str]  # name=run_dir streams NAP predicts (and, for split/loro, trains on); a name twice joins runs
    protocol: str = "split"  # split (in-domain subject split), loro (leave one recording out) or zero_shot
    train_predictors: list[str] = field(default_factory=list)  # zero_shot: name=run_dir streams of the training corpora; loro: extra training streams for every fold
    signal_data: str | None = None  # split: dataset dir whose meta.json holds the split (or --split_from)
    split_from: str | None = None  # split: any dir/meta.json with a "split"
    split_seed: int = 0  # split: seed of a subject split of the streams' subjects when neither gives one
    train_on: list[str] = field(default_factory=lambda: ["validation"])  # split: the splits NAP trains on
    axes: list[str] = field(default_factory=lambda: ["channel", "time", "predictor"])  # attention axes
    n_heads: int = 6  # split evenly over the axes in use
    d_model: int = 24  # width of the transformer
    n_layers: int = 4  # tri-axial attention layers
    dropout: float = 0.1  # attention and residual dropout
    adaptive: bool = True  # dimension-adaptive training (random sub-grids and lengths per batch)
    min_len: int = 10  # shortest training sequence (epochs)
    max_len: int = 60  # longest training sequence (epochs); also the scoring window
    # NAP's own optimiser settings (psgvlm.baselines.nap.train_nap: AdamW, weight decay 1e-4, 5% warm-up)
    max_steps: int = 400  # optimizer steps (per fold with --protocol loro)
    per_device_train_batch_size: int = 16  # sequences per batch
    learning_rate: float = 3e-3  # peak AdamW learning rate (linear warm-up, then cosine decay)
    eval_every: int = 100  # split: steps between validation scorings (validation subjects outside train_on), each followed by a checkpoint


def sources_of(items: list[str], option: str) -> dict[str, list[str]]:
    """``{name: [run_dir, ...]}`` of ``name=run_dir`` items (a name given twice joins its runs)."""
    sources: dict[str, list[str]] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"{option} {item!r}: expected name=run_dir")
        if not Path(path).exists():
            raise ValueError(f"{option} {item!r}: {path} does not exist")
        sources.setdefault(name, []).append(path)
    return sources


def loaded(sources: dict) -> dict:
    """:func:`load_streams` with each recording's own mask filled in; prints what was dropped."""
    streams = load_streams(sources)
    for d in streams["recordings"].values():
        d.setdefault("avail", streams["avail"])
    dropped = streams["dropped"]
    if dropped:
        print(f"NAP: {sum(len(d['epochs']) for d in dropped)} unscored epochs of {len(dropped)} recordings are "
              "missing from some streams and were dropped from all: " + "; ".join(
                  f"{d['recording']} {len(d['epochs'])} (missing from {', '.join(d['missing_from'])})"
                  for d in dropped[:5]) + (" ..." if len(dropped) > 5 else ""))
    return streams


def refuse_in_sample(sources: dict, keys) -> None:
    """Exit 2 with one line when NAP would train on a model's predictions on its own training subjects."""
    bad = in_sample_streams(sources, keys)
    if bad:
        print("error: NAP trains only on out-of-sample (cross-fitted) hypnodensities; in-sample streams: "
              + "; ".join(bad) + " (train NAP on subjects the model did not fit: --train_on validation, "
              "another corpus with --protocol zero_shot, or cross-fitted predictions)", file=sys.stderr)
        raise SystemExit(2)


def main(argv=None):
    args = parse_args(Args, argv)
    if args.protocol not in PROTOCOLS:
        raise ValueError(f"--protocol {args.protocol!r} not allowed; choose one of {list(PROTOCOLS)}")
    torch.set_num_threads(args.threads)
    config = NAPConfig(d_model=args.d_model, n_layers=args.n_layers, n_heads=args.n_heads, axes=tuple(args.axes),
                       dropout=args.dropout)
    sources = sources_of(args.predictors, "--predictors")
    train_sources = sources_of(args.train_predictors, "--train_predictors")
    if args.protocol == "zero_shot" and not train_sources:
        raise ValueError("--protocol zero_shot needs --train_predictors (the streams of the training corpora)")
    if args.protocol == "split" and train_sources:
        raise ValueError("--train_predictors goes with --protocol zero_shot or loro, not split")
    streams = loaded(sources)
    avail, channels, predictors, recs = (streams[k] for k in ("avail", "channels", "predictors", "recordings"))
    extra = {}  # training recordings from --train_predictors
    if train_sources:
        unknown = sorted(set(sources) - set(train_sources))
        if unknown:
            raise ValueError(f"predictor(s) {unknown} of --predictors are not in --train_predictors "
                             f"{sorted(train_sources)}: NAP would meet them first at test")
        extra = loaded(train_sources)["recordings"]
        # zero-shot: no test subject among the training ones; loro: no recording twice
        if args.protocol == "zero_shot":
            seen = sorted({k[:2] for k in recs} & {k[:2] for k in extra})
        else:
            seen = sorted(set(recs) & set(extra))
        if seen:
            raise ValueError(f"test subjects in the training streams (--train_predictors): {seen[:5]}; zero-shot "
                             "means NAP never saw the test corpus" if args.protocol == "zero_shot" else
                             f"recordings in both --predictors and --train_predictors: {seen[:5]}")
        refuse_in_sample(train_sources, extra)

    def train(data, desc, run=None, evaluate=None):
        return train_nap(data, None, config=config, steps=args.max_steps, lr=args.learning_rate,
                         batch_size=args.per_device_train_batch_size, min_len=args.min_len, max_len=args.max_len,
                         adaptive=args.adaptive, seed=args.seed, desc=desc, run=run, evaluate=evaluate,
                         eval_every=args.eval_every)

    def nap_probs(model, d, pr=None):
        return predict_nap(model, d["probs"], d["avail"], predictors=pr, window=args.max_len)

    meta = {"kind": "nap", "protocol": args.protocol, "config": {"args": asdict(args), "model_config": asdict(config)},
            "channels": channels, "predictors": predictors, "avail": avail.tolist(), "sources": sources,
            "train_sources": train_sources, "dropped_unscored": streams["dropped"]}
    run, checkpoints = None, {}
    if args.protocol == "loro":  # ---- one NAP per held-out recording -----------------------------------
        if len(recs) < 2:
            raise ValueError(f"--protocol loro needs at least two recordings; the streams hold {list(recs)}")
        refuse_in_sample(sources, recs)
        test_keys = list(recs)
        from tqdm.auto import tqdm

        fold_probs, folds = {}, []
        for i, k in enumerate(tqdm(test_keys, desc="NAP leave-one-recording-out", unit="fold")):
            data = [d for j, d in recs.items() if j != k] + list(extra.values())
            model, losses = train(data, f"NAP fold {i + 1}/{len(test_keys)}")
            fold_probs[k] = {"nap": nap_probs(model, recs[k])}
            for pi, name in enumerate(predictors):
                rest = [j for j in range(len(predictors)) if j != pi and recs[k]["avail"][:, j].any()]
                if len(rest) and len(rest) < len(predictors):
                    fold_probs[k][f"nap_without_{name}"] = nap_probs(model, recs[k], rest)
            folds.append({"held_out": list(k), "trained_on": [list(j) for j in recs if j != k] + [list(j) for j in extra],
                          "final_loss": losses[-1] if losses else None})
        meta["folds"] = folds
    else:
        if args.protocol == "zero_shot":  # ---- trained on other corpora, tested on every recording here --
            train_data, val, test_keys = list(extra.values()), [], list(recs)
            meta["trained_on"] = [list(k) for k in extra]
        else:  # ---- split by subject -------------------------------------------------------------------
            meta_src = args.split_from or args.signal_data
            if meta_src:  # a split listing a subject twice (--split epoch) is refused: exit 2
                split = exit_on_split_leak(read_split, meta_src)
            else:
                split = split_subjects([k[1] for k in recs], seed=args.split_seed)
            train_subj = {s for name in args.train_on for s in split.get(name, [])}
            train_keys = [k for k in recs if k[1] in train_subj]
            refuse_in_sample(sources, train_keys)
            train_data = [recs[k] for k in train_keys]
            # validation subjects NAP does not train on choose the best checkpoint (none with train_on validation)
            val = [d for k, d in recs.items() if k[1] in set(split.get("validation", [])) - train_subj]
            test_keys = [k for k in recs if k[1] in set(split["test"])]
            if not train_data or not test_keys:
                raise ValueError(f"NAP needs training and test recordings; train subjects {sorted(train_subj)}, "
                                 f"test subjects {split['test']}, streams cover subjects {sorted({k[1] for k in recs})}")
            meta["split"] = split

        def validate(model):
            preds = [nap_probs(model, d).argmax(1) for d in val]
            return val_metrics(np.concatenate([d["labels"] for d in val]), np.concatenate(preds))

        run = TrainingRun(args, asdict(args), cpu=True)  # trackers, checkpoints, --resume_from_checkpoint
        model, losses = train(train_data, "NAP", run=run, evaluate=validate if val else None)
        checkpoints = run.finish(args.max_steps)
        save_model(args.output_dir, model, asdict(config))
        meta["losses"] = losses
        fold_probs = {}
        for k in test_keys:
            fold_probs[k] = {"nap": nap_probs(model, recs[k])}
            for pi, name in enumerate(predictors):
                rest = [j for j in range(len(predictors)) if j != pi and recs[k]["avail"][:, j].any()]
                if len(rest) and len(rest) < len(predictors):
                    fold_probs[k][f"nap_without_{name}"] = nap_probs(model, recs[k], rest)

    # ---- every row over the test recordings: NAP, soft vote, each predictor, each stream -----------
    for k in test_keys:
        d, out = recs[k], fold_probs[k]
        out["soft_vote"] = soft_vote(d["probs"], d["avail"])
        for pi, name in enumerate(predictors):
            out[f"predictor:{name}"] = d["probs"][np.flatnonzero(d["avail"][:, pi]), :, pi].mean(0)
            for ci in np.flatnonzero(d["avail"][:, pi]):
                out[f"{name}@{channels[ci]}"] = d["probs"][ci, :, pi]
    row_names = list(dict.fromkeys(n for k in test_keys for n in fold_probs[k]))
    folders = {"nap": Path(args.output_dir), "soft_vote": Path(args.output_dir) / "soft_vote",
               **{f"predictor:{n}": Path(args.output_dir) / "predictors" / n for n in predictors}}
    table, per_recording = {}, {}
    for name in row_names:
        rows, per = [], {}
        for k in test_keys:
            if name not in fold_probs[k]:
                continue
            d = recs[k]
            rec_rows = make_rows(dataset=k[0], subjects=[k[1]] * len(d["labels"]), recordings=[k[2]] * len(d["labels"]),
                                 epochs=d["epochs"], starts_s=d["starts_s"], labels=d["labels"].tolist(),
                                 probs=fold_probs[k][name])
            m = metrics_from_rows(rec_rows)["pooled"]
            if m:
                per[f"{k[0]}/{k[2]}"] = {x: m[x] for x in ("kappa", "accuracy", "macro_f1", "n_epochs") if x in m}
            rows += rec_rows
        key = name.removeprefix("predictor:")
        if name in folders:
            table[key] = write_predictions(folders[name], rows, extra_meta={"kind": key, "protocol": args.protocol})["pooled"]
        elif "@" in name:
            pred, ch = name.split("@", 1)
            table[key] = write_predictions(Path(args.output_dir) / "streams" / f"{pred}__{ch}".replace("*", "all"),
                                           rows)["pooled"]
        else:
            table[key] = metrics_from_rows(rows)["pooled"]
        per_recording[key] = per
    meta.update({**checkpoints, "provenance": provenance()})
    write_json_atomic(f"{args.output_dir}/metrics_table.json", table)
    write_json_atomic(f"{args.output_dir}/per_recording.json", per_recording)
    write_json_atomic(f"{args.output_dir}/meta.json", meta)
    print({k: {"kappa": round(v["kappa"], 3), "macro_f1": round(v["macro_f1"], 3)} for k, v in table.items() if v})
    if run is not None:
        run.publish(["model.pt", "model_config.json", "meta.json", "metrics*.json"])  # card; Hub upload if asked
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
