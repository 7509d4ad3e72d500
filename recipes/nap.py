"""Train NAP over the hypnodensities of frozen predictors and compare with soft voting.

    python recipes/nap.py --config recipes/configs/nap_paper.yaml --signal_data runs/isruc_signal \
        --predictors yasa=runs/yasa sdreamer=runs/sdreamer sleep2vec=runs/s2v_ft vlm=runs/llava --output_dir runs/nap

Each ``name=RUN_DIR`` is a frozen predictor: its ``predictions.jsonl`` + ``predictions_<split>/`` (one
stream over the whole montage) and/or ``channels/<ch>/predictions.jsonl`` (one stream per channel, as
``psgvlm reference --predictor yasa`` writes). All streams must cover the same recordings and
scored epochs (else the run stops and names the mismatch); unscored epochs that some streams lack
(image datasets leave them out, signal datasets keep them) are dropped from all, printed and listed
in meta.json ``dropped_unscored``. NAP trains on the ``train_on`` split subjects (default train +
validation: a VLM run needs ``predict_splits: [train, validation, test]``, as in
``recipes/configs/llava_tiny_cpu.yaml``) and is tested on the test subjects, e.g.

    python recipes/nap.py --config recipes/configs/nap_paper.yaml --signal_data runs/isruc_signal \
        --predictors vlm=runs/llava_tiny_cpu sdreamer=runs/sdreamer --output_dir runs/nap_vlm

Ablations: ``--axes time predictor`` (one axis removed), ``--adaptive false`` (no dimension-adaptive
training). As every recipe, the run dir gets ``train_log.jsonl`` + ``loss_curve.png``, ``checkpoints/``
(the newest, and the best by validation kappa when validation subjects are held out of ``train_on``),
``confusion.png`` and the model card ``README.md`` (``--resume_from_checkpoint latest``, ``--report_to
tensorboard``, ``--push_to_hub --hub_model_id USER/NAME``). ``--help`` lists every argument.
"""

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from psgvlm.baselines.common import RunArguments, exit_on_split_leak, save_model
from psgvlm.baselines.nap import NAPConfig, load_streams, predict_nap, soft_vote, train_nap
from psgvlm.baselines.signal_data import read_split
from psgvlm.predictions import make_rows, write_predictions
from psgvlm.provenance import provenance, write_json_atomic
from psgvlm.splits import split_subjects
from psgvlm.training import TrainingRun, parse_args, val_metrics


@dataclass(kw_only=True)
class Args(RunArguments):
    predictors: list[str]  # name=run_dir entries of frozen predictors
    signal_data: str | None = None  # dataset dir whose meta.json holds the split (or --split_from)
    split_from: str | None = None  # any dir/meta.json with a "split"
    split_seed: int = 0  # seed of a subject split of the streams' subjects when neither gives one
    train_on: list[str] = field(default_factory=lambda: ["train", "validation"])  # splits NAP trains on
    axes: list[str] = field(default_factory=lambda: ["channel", "time", "predictor"])  # attention axes
    n_heads: int = 6  # split evenly over the axes in use
    d_model: int = 24  # width of the transformer
    n_layers: int = 4  # tri-axial attention layers
    adaptive: bool = True  # dimension-adaptive training (random sub-grids and lengths per batch)
    min_len: int = 10  # shortest training sequence (epochs)
    max_len: int = 60  # longest training sequence (epochs); also the scoring window
    # NAP's own optimiser settings (psgvlm.baselines.nap.train_nap: AdamW, weight decay 1e-4, 5% warm-up)
    max_steps: int = 400  # optimizer steps
    per_device_train_batch_size: int = 16  # sequences per batch
    learning_rate: float = 3e-3  # peak AdamW learning rate (linear warm-up, then cosine decay)
    eval_every: int = 100  # steps between validation scorings (validation subjects outside train_on), each followed by a checkpoint


def main(argv=None):
    args = parse_args(Args, argv)
    torch.set_num_threads(args.threads)

    # ---- streams of frozen predictors, checked to describe the same epochs ----------------------
    sources = {}
    for item in args.predictors:
        if "=" not in item:
            raise ValueError(f"predictor {item!r} must be name=run_dir")
        name, path = item.split("=", 1)
        sources[name] = path
    streams = load_streams(sources)
    avail, channels, predictors = streams["avail"], streams["channels"], streams["predictors"]
    recs, dropped = streams["recordings"], streams["dropped"]
    if dropped:
        print(f"NAP: {sum(len(d['epochs']) for d in dropped)} unscored epochs of {len(dropped)} recordings are "
              "missing from some streams and were dropped from all: " + "; ".join(
                  f"{d['recording']} {len(d['epochs'])} (missing from {', '.join(d['missing_from'])})"
                  for d in dropped[:5]) + (" ..." if len(dropped) > 5 else ""))

    # ---- split by subject -----------------------------------------------------------------------
    meta_src = args.split_from or args.signal_data
    if meta_src:  # a split listing a subject twice (--split epoch) is refused: exit 2
        split = exit_on_split_leak(read_split, meta_src)
    else:
        split = split_subjects([k[1] for k in recs], seed=args.split_seed)
    train_subj = {s for name in args.train_on for s in split.get(name, [])}
    train = [d for k, d in recs.items() if k[1] in train_subj]
    # validation subjects NAP does not train on choose the best checkpoint (none with the default train_on)
    val = [d for k, d in recs.items() if k[1] in set(split.get("validation", [])) - train_subj]
    test_keys = [k for k in recs if k[1] in set(split["test"])]
    if not train or not test_keys:
        raise ValueError(f"NAP needs training and test recordings; train subjects {sorted(train_subj)}, "
                         f"test subjects {split['test']}, streams cover subjects {sorted({k[1] for k in recs})}")

    # ---- model + dimension-adaptive training ----------------------------------------------------
    run = TrainingRun(args, asdict(args), cpu=True)  # trackers, checkpoints, --resume_from_checkpoint
    config = NAPConfig(d_model=args.d_model, n_layers=args.n_layers, n_heads=args.n_heads, axes=tuple(args.axes))

    def validate(model):
        preds = [predict_nap(model, d["probs"], avail, window=args.max_len).argmax(1) for d in val]
        return val_metrics(np.concatenate([d["labels"] for d in val]), np.concatenate(preds))

    model, losses = train_nap(train, avail, config=config, steps=args.max_steps, lr=args.learning_rate,
                              batch_size=args.per_device_train_batch_size, min_len=args.min_len,
                              max_len=args.max_len, adaptive=args.adaptive, seed=args.seed, run=run,
                              evaluate=validate if val else None, eval_every=args.eval_every)
    checkpoints = run.finish(args.max_steps)
    save_model(args.output_dir, model, asdict(config))

    # ---- evaluate: NAP, soft voting, every single stream, and predictor subsets -------------------
    def rows_of(fn):
        rows = []
        for k in test_keys:
            d = recs[k]
            rows += make_rows(dataset=k[0], subjects=[k[1]] * len(d["labels"]), recordings=[k[2]] * len(d["labels"]),
                              epochs=d["epochs"], starts_s=d["starts_s"], labels=d["labels"].tolist(), probs=fn(d))
        return rows

    meta = {"kind": "nap", "config": {"args": asdict(args), "model_config": asdict(config)}, "split": split,
            "channels": channels, "predictors": predictors, "avail": avail.tolist(), "losses": losses,
            "sources": sources, "dropped_unscored": dropped, **checkpoints, "provenance": provenance()}
    metrics = write_predictions(args.output_dir, rows_of(lambda d: predict_nap(model, d["probs"], avail, window=args.max_len)),
                                extra_meta={"kind": "nap"})
    vote = write_predictions(Path(args.output_dir) / "soft_vote", rows_of(lambda d: soft_vote(d["probs"], avail)),
                             extra_meta={"kind": "soft_vote"})
    table = {"nap": metrics["pooled"], "soft_vote": vote["pooled"]}
    for ci, pi in zip(*np.nonzero(avail)):
        m = write_predictions(Path(args.output_dir) / "streams" / f"{predictors[pi]}__{channels[ci]}".replace("*", "all"),
                              rows_of(lambda d, ci=ci, pi=pi: d["probs"][ci, :, pi]))
        table[f"{predictors[pi]}@{channels[ci]}"] = m["pooled"]
    for pi, name in enumerate(predictors):  # any subset at test: NAP with one predictor left out / alone
        rest = [j for j in range(len(predictors)) if j != pi]
        if rest:
            from psgvlm.predictions import metrics_from_rows

            table[f"nap_without_{name}"] = metrics_from_rows(rows_of(
                lambda d, rest=rest: predict_nap(model, d["probs"], avail, predictors=rest, window=args.max_len)))["pooled"]
    write_json_atomic(f"{args.output_dir}/metrics_table.json", table)
    write_json_atomic(f"{args.output_dir}/meta.json", meta)
    print({k: {"kappa": round(v["kappa"], 3), "macro_f1": round(v["macro_f1"], 3)} for k, v in table.items()})
    run.publish(["model.pt", "model_config.json", "meta.json", "metrics*.json"])  # card; Hub upload if asked
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
