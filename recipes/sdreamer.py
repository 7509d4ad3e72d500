"""Train Sequence sDREAMER (MoME + self-distillation) on EEG + EMG and evaluate multi- and single-channel.

    python recipes/sdreamer.py --config recipes/configs/sdreamer_tiny.yaml \
        --signal_data runs/isruc_signal --format isruc --input data/isruc_synth --output_dir runs/sdreamer

Ablations and comparators, each one run: ``--distill_weight 0`` (no self-distillation; single-channel
accuracy collapses: the paper's Table III), ``--variant epoch`` (Epoch sDREAMER, no sequence encoder:
Table I; ``sdreamer_paper_epoch.yaml``), ``--modalities EEG`` or ``--modalities EMG`` (a model trained on
that channel alone, the comparator to the single-channel inference of the two-channel model: Table II;
``sdreamer_paper_single_channel.yaml``).

Predict-only (no training): the model of a trained run on the test subjects of another signal dataset,
e.g. corrupted recordings; writes ``predictions.jsonl`` + ``metrics.json`` + ``meta.json`` (``predict_only``,
``source_run``) to ``--output_dir``. Window K and inputs come from the source run:

    python recipes/sdreamer.py --from_run runs/sdreamer --signal_data runs/isruc_signal_other \
        --output_dir runs/sd_other
    # clean-trained, tested on failing EEG channels (evals builds {signal_data} with the run's split):
    python -m evals robustness --run runs/sdreamer --format isruc --input data/isruc_synth --out results/rob_sd \
        --predict-cmd "python recipes/sdreamer.py --from_run {run} --signal_data {signal_data} --output_dir {out}"

Writes ``predictions.jsonl`` + ``metrics.json`` (test subjects, mixed pathway), ``predictions_<split>/``
for train and validation (NAP's inputs), ``metrics_single_channel.json`` (EEG-only, EMG-only, mixed),
``model.pt`` + ``model_config.json``, ``meta.json``, ``train_log.jsonl`` + ``loss_curve.png`` (validation
kappa every ``eval_every`` steps), ``checkpoints/`` (the newest and the best by validation kappa),
``confusion.png`` and the model card ``README.md``. ``--resume_from_checkpoint latest`` continues a run
exactly, ``--report_to tensorboard`` logs to ``OUTPUT_DIR/logs``, ``--push_to_hub --hub_model_id USER/NAME``
uploads the model and card. ``--help`` lists every argument.
"""

from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from psgvlm.baselines.common import (
    OptimizerArguments,
    RunArguments,
    SignalDataArguments,
    class_weights,
    load_or_build_signal_data,
    load_source_run,
    predict_test_split,
    predict_windows,
    random_windows,
    save_model,
    train_loop,
    write_run,
)
from psgvlm.baselines.sdreamer import MODALITIES, SIZES, SDreamer, SDreamerConfig
from psgvlm.baselines.sdreamer import load as load_sdreamer
from psgvlm.baselines.signal_data import select
from psgvlm.predictions import make_rows, metrics_from_rows
from psgvlm.provenance import write_json_atomic
from psgvlm.stages import N_STAGES
from psgvlm.training import TrainingRun, parse_args, val_metrics


@dataclass(kw_only=True)
class Args(OptimizerArguments, RunArguments, SignalDataArguments):
    size: str = "tiny"  # model preset: tiny | paper
    variant: str = "sequence"  # sequence (Sequence sDREAMER, the paper's model) | epoch (Epoch sDREAMER: no sequence encoder, Table I)
    modalities: list[str] = field(default_factory=lambda: ["EEG", "EMG"])  # trained on: EEG EMG (the paper's model) or one of them (the single-channel-trained comparator, Table II)
    eeg_channel: str | None = None  # default: the first EEG channel of each recording
    emg_channel: str | None = None  # default: the first EMG channel
    seq_len: int = 16  # epochs per window (K)
    distill_weight: float = 1.0  # 0 = ablation without self-distillation
    t_eeg: float = 1.0  # distillation temperature, EEG student
    t_emg: float = 3.0  # distillation temperature, EMG student
    unimodal_ce: bool = False  # also supervise the unimodal heads with labels
    epoch_mix: bool = False  # mixed pathway at epoch level too (the paper disables it for Sequence sDREAMER)
    class_weighting: str = "inverse_sqrt_frequency"  # CE weights on the mixed (or only) pathway: none | inverse_frequency | inverse_sqrt_frequency (the paper states none; this keeps the tuned CPU default)
    per_device_train_batch_size: int = 8  # windows of seq_len epochs per batch
    from_run: str | None = None  # predict-only: a trained sDREAMER run dir (its K and inputs; no training)


def main(argv=None):
    args = parse_args(Args, argv)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    torch.manual_seed(args.seed)

    # ---- data: EEG + EMG epochs at 128 Hz, K consecutive epochs --------------------------------------
    recs, ds_meta = load_or_build_signal_data(args)
    split = ds_meta["split"]
    if args.from_run:  # ---- predict-only: the source run's model on this dataset's test subjects
        src, model = load_source_run(args.from_run, "sdreamer"), load_sdreamer(args.from_run)
        metrics = predict_test_split(args.output_dir, kind="sdreamer", source_run=args.from_run, source_meta=src, recs=recs,
                                     ds_meta=ds_meta, fn=model,
                                     inputs=src["config"]["inputs"], seq_len=model.config.seq_len)
        print({"predict_only": args.from_run, "test": {k: metrics["pooled"].get(k) for k in ("kappa", "accuracy")}})
        return 0
    if not args.modalities or [m for m in args.modalities if m not in MODALITIES]:
        raise ValueError(f"modalities {args.modalities} not allowed: one or both of {list(MODALITIES)}")
    run = TrainingRun(args, asdict(args), cpu=True)  # trackers, checkpoints, --resume_from_checkpoint
    train = select(recs, split["train"])
    inputs = {m: {"EEG": args.eeg_channel, "EMG": args.emg_channel}[m] for m in MODALITIES if m in args.modalities}
    if len(inputs) == 2 and not all(r.channels_of("EMG") for r in train):
        print("some training nights have no EMG channel: training the EEG pathway alone")
        del inputs["EMG"]

    def arrays(r, names=None):
        return {m: r.modality_array(m, inputs[m]) for m in (names or inputs)}

    short = [r.recording for r in train if r.n_epochs < args.seq_len]
    pool = [(arrays(r), r.stages) for r in train if r.n_epochs >= args.seq_len]
    if not pool:
        raise ValueError(f"every training recording is shorter than K={args.seq_len}: {short}")
    val = [r for r in select(recs, split.get("validation", [])) if r.n_epochs >= args.seq_len]

    # ---- model -------------------------------------------------------------------------------------
    if args.size not in SIZES:
        raise ValueError(f"size {args.size!r} not in {list(SIZES)}")
    config = SDreamerConfig(seq_len=args.seq_len, distill_weight=args.distill_weight, t_eeg=args.t_eeg,
                            t_emg=args.t_emg, unimodal_ce=args.unimodal_ce, epoch_mix=args.epoch_mix,
                            variant=args.variant, **SIZES[args.size])
    model = SDreamer(config=config)
    weights = class_weights([s for _, s in pool], args.class_weighting)

    # ---- train: CE on the mixed pathway + self-distillation to EEG and EMG -------------------------
    history = []

    def step(_):
        x, y = random_windows(pool, seq_len=args.seq_len, batch_size=args.per_device_train_batch_size, rng=rng)
        out = model.forward_train(x)
        # --class_weighting reweights the mixed/only CE by the label prior (distillation unaffected)
        loss, parts = model.loss(out, y, class_weight=weights)
        history.append(parts)
        return loss

    def validate():
        probs = [predict_windows(model, arrays(r), seq_len=args.seq_len) for r in val]
        return val_metrics(np.concatenate([r.stages for r in val]), np.concatenate(probs).argmax(1))

    model.train()
    losses = train_loop(model, step, max_steps=args.max_steps, learning_rate=args.learning_rate,
                        warmup_ratio=args.warmup_ratio, weight_decay=args.weight_decay, desc="sDREAMER", run=run,
                        evaluate=validate if val else None, eval_every=args.eval_every,
                        batch_size=args.per_device_train_batch_size, rngs=[rng])
    checkpoints = run.finish(args.max_steps)

    # ---- save ----------------------------------------------------------------------------------------
    model.eval()
    save_model(args.output_dir, model, asdict(config))

    # ---- evaluate: mixed (or EEG-only model) for the contract files, then single-channel -----------
    def predict(rs, names=None):
        return [predict_windows(model, arrays(r, names), seq_len=args.seq_len) for r in rs]

    ds_info = {k: ds_meta.get(k) for k in ("split", "input", "rates")}
    cfg = {"args": asdict(args), "model_config": asdict(config), "inputs": inputs, "losses": losses,
           "loss_parts_last": history[-1] if history else {}, "skipped_short_train": short}
    for name in ("train", "validation"):
        rs = [r for r in select(recs, split.get(name, [])) if r.n_epochs >= args.seq_len]
        if rs:
            write_run(args.output_dir, kind="sdreamer", config=cfg, recs=rs, probs=predict(rs), dataset_meta=ds_info,
                      name=f"predictions_{name}")
    test = [r for r in select(recs, split["test"]) if r.n_epochs >= args.seq_len]
    skipped = [r.recording for r in select(recs, split["test"]) if r.n_epochs < args.seq_len]
    metrics = write_run(args.output_dir, kind="sdreamer", config=cfg, recs=test, probs=predict(test), dataset_meta=ds_info,
                        extra={"skipped_test_shorter_than_K": skipped, **checkpoints})
    single = {}
    for names in (["EEG"], ["EMG"], ["EEG", "EMG"]):
        if not all(n in inputs for n in names):
            continue
        rows = []
        for r, p in zip(test, predict(test, names)):
            rows += make_rows(dataset=r.dataset, subjects=[r.subject] * r.n_epochs, recordings=[r.recording] * r.n_epochs,
                              epochs=range(r.n_epochs), starts_s=r.starts_s, labels=r.stages.tolist(), probs=p)
        single["+".join(names).lower()] = metrics_from_rows(rows)["pooled"]
    write_json_atomic(f"{args.output_dir}/metrics_single_channel.json", single)
    print({"test": {k: metrics["pooled"].get(k) for k in ("kappa", "macro_f1", "accuracy")},
           "single_channel": {k: {"acc": round(v["accuracy"], 3), "kappa": round(v["kappa"], 3)}
                              for k, v in single.items()}, "n_classes": N_STAGES})
    run.publish(["model.pt", "model_config.json", "meta.json", "metrics*.json"])  # card; Hub upload if asked
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
