"""Fine-tune a pre-trained sleep2vec for sleep staging: LoRA on q/k/v, gated fusion, per-epoch MLP head.

    python recipes/sleep2vec_finetune.py --config recipes/configs/sleep2vec_tiny_finetune.yaml \
        --signal_data runs/isruc_signal --pretrained runs/s2v_pre --output_dir runs/s2v_ft

One run fine-tunes on one channel set (``--modalities``) and is tested on that set. The paper's Table 1
(appendix A.7.1: AdamW lr 1e-4, weight decay 1e-5, no class weighting, whole nights) is one run per set
(``psgvlm.baselines.sleep2vec.CHANNEL_SETS``), on one pre-trained backbone:

    for set in EEG "EEG EOG EMG" "ECG RESP" "EEG EOG EMG ECG RESP SPO2"; do
        python recipes/sleep2vec_finetune.py --config recipes/configs/sleep2vec_paper_finetune.yaml \
            --signal_data runs/shhs_signal --pretrained runs/s2v_medium_pre --modalities $set \
            --output_dir "runs/s2v_ft_${set// /+}"
    done

Whole nights: a ``seq_len`` longer than the pre-training segments extends the rotary position table
(``Sleep2vec.extend_positions``: sinusoidal, the pre-trained rows unchanged); nights shorter than
``seq_len`` are padded at the end and masked (attention and loss) in training, and predicted as one
window of their own length; none is dropped from any split.

Trains on the train-split subjects, writes ``predictions.jsonl`` + ``metrics.json`` for the test
subjects (the run's channel set), ``predictions_<split>/`` for train and validation (NAP's inputs),
``metrics_subsets.json`` when ``eval_subsets`` asks (this one model on subsets of its modalities: channel
loss at inference, not Table 1), and, as every recipe, ``train_log.jsonl`` + ``loss_curve.png``, ``checkpoints/`` (the newest and the best by validation
kappa), ``confusion.png`` and the model card ``README.md`` (``--resume_from_checkpoint latest``,
``--report_to tensorboard``, ``--push_to_hub --hub_model_id USER/NAME``).

Predict-only (no training, no ``--pretrained``): the fine-tuned model of a run on the test subjects of
another signal dataset, e.g. corrupted recordings; writes ``predictions.jsonl`` + ``metrics.json`` +
``meta.json`` (``predict_only``, ``source_run``) to ``--output_dir``, with the source run's modalities and
window:

    python recipes/sleep2vec_finetune.py --from_run runs/s2v_ft --signal_data runs/isruc_signal_other \
        --output_dir runs/s2v_other
    # clean-trained, tested on failing EEG channels (evals builds {signal_data} with the run's split):
    python -m evals robustness --run runs/s2v_ft --format isruc --input data/isruc --out results/rob_s2v \
        --predict-cmd "python recipes/sleep2vec_finetune.py --from_run {run} --signal_data {signal_data} \
        --output_dir {out}"
"""

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from psgvlm.baselines.common import (
    OptimizerArguments,
    RunArguments,
    SignalDataArguments,
    arrays_for,
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
from psgvlm.baselines.signal_data import select
from psgvlm.baselines.sleep2vec import (
    Sleep2vecStager,
    Sleep2vecStagerConfig,
    config_dict,
    load_backbone,
    load_stager,
)
from psgvlm.predictions import make_rows, metrics_from_rows
from psgvlm.provenance import write_json_atomic
from psgvlm.stages import N_STAGES, UNSCORED
from psgvlm.training import TrainingRun, parse_args, val_metrics


@dataclass(kw_only=True)
class Args(OptimizerArguments, RunArguments, SignalDataArguments):
    pretrained: str | None = None  # run dir of recipes/sleep2vec_pretrain.py (needed unless --from_run)
    modalities: list[str] = field(default_factory=list)  # the channel set fine-tuned on and tested on, one run per set (sleep2vec.CHANNEL_SETS); default: every pre-trained modality
    eval_subsets: list[str] = field(default_factory=list)  # extra test metrics of this one model on subsets of its modalities, e.g. EEG EEG+EOG (inference-time channel loss; Table 1 fine-tunes per set instead)
    use_lora: bool = True  # False: frozen backbone, head + gates only
    lora_r: int = 8  # LoRA rank on q/k/v
    lora_alpha: int = 16  # LoRA scaling numerator (scale alpha / r)
    lora_dropout: float = 0.05  # dropout on the LoRA input
    fusion: str = "gate"  # gate | mean
    train_tokenizers: bool = True  # the tokenizers are small; the paper fine-tunes the backbone via LoRA only
    modality_dropout: float = 0.3  # chance per batch of training on a random subset (any-subset inference)
    seq_len: int = 20  # epochs per window (K); beyond the pre-training segment the rotary positions are extended; shorter nights are padded and masked, never dropped
    weight_decay: float = 1e-5  # AdamW weight decay (the paper's fine-tuning: 1e-5)
    class_weighting: str = "none"  # cross-entropy class weights: none (the paper: A.7.1 states none) | inverse_frequency | inverse_sqrt_frequency
    from_run: str | None = None  # predict-only: a fine-tuned sleep2vec run dir (its modalities and K; no training)


def main(argv=None):
    args = parse_args(Args, argv)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    torch.manual_seed(args.seed)

    # ---- data ------------------------------------------------------------------------------------
    recs, ds_meta = load_or_build_signal_data(args)
    split = ds_meta["split"]
    if args.from_run:  # ---- predict-only: the source run's model on this dataset's test subjects
        src, model = load_source_run(args.from_run, "sleep2vec"), load_stager(args.from_run)
        metrics = predict_test_split(args.output_dir, kind="sleep2vec", source_run=args.from_run, source_meta=src, recs=recs,
                                     ds_meta=ds_meta, fn=model, inputs={m: None for m in model.modalities},
                                     seq_len=src["config"]["args"]["seq_len"], allow_short=True)
        print({"predict_only": args.from_run, "test": {k: metrics["pooled"].get(k) for k in ("kappa", "accuracy")}})
        return 0
    if not args.pretrained:
        raise ValueError("--pretrained (a recipes/sleep2vec_pretrain.py run dir) is needed to fine-tune; "
                         "--from_run RUN predicts with a fine-tuned run instead")
    run = TrainingRun(args, asdict(args), cpu=True)  # trackers, checkpoints, --resume_from_checkpoint
    backbone = load_backbone(args.pretrained)
    positions = {"pretrained_max_epochs": backbone.config.max_epochs, "method": "rotary table extended, not interpolated"}
    backbone.extend_positions(args.seq_len)  # whole nights: a no-op when the pre-trained table is long enough
    positions["max_epochs"] = backbone.config.max_epochs
    mods = list(args.modalities or backbone.config.modalities)
    inputs = {m: None for m in mods}  # the run's channel set: trained, validated and tested on it
    train, val = select(recs, split["train"]), select(recs, split.get("validation", []))
    if not train:
        raise ValueError(f"no training recording in {args.signal_data} (split train: {split['train']})")
    pool = [(arrays_for(r, inputs), r.stages) for r in train]  # every night; shorter ones padded per batch

    # ---- model + LoRA --------------------------------------------------------------------------------
    stager_kw = dict(modalities=mods, lora_r=args.lora_r, lora_alpha=args.lora_alpha,
                     lora_dropout=args.lora_dropout, use_lora=args.use_lora, fusion=args.fusion,
                     train_tokenizers=args.train_tokenizers)
    model = Sleep2vecStager(backbone=backbone, config=Sleep2vecStagerConfig(**stager_kw))
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_all = sum(p.numel() for p in model.parameters())
    weights = class_weights([r.stages for r in train], args.class_weighting)

    # ---- train -----------------------------------------------------------------------------------
    def step(_):
        x, y, valid = random_windows(pool, seq_len=args.seq_len, batch_size=args.per_device_train_batch_size, rng=rng,
                                     pad=True)  # padded epochs: masked from attention, UNSCORED for the loss
        if len(mods) > 1 and rng.random() < args.modality_dropout:  # a random non-empty subset
            keep = [m for m in mods if rng.random() < 0.5] or [mods[int(rng.integers(len(mods)))]]
            x = {m: x[m] for m in keep}
        logits = model(x, attention_mask=valid)
        return F.cross_entropy(logits.reshape(-1, N_STAGES), y.reshape(-1), weight=weights,
                               ignore_index=UNSCORED)

    def predict(rs, subset):
        return [predict_windows(model, arrays_for(r, {m: None for m in subset}), seq_len=args.seq_len, allow_short=True)
                for r in rs]

    def validate():
        return val_metrics(np.concatenate([r.stages for r in val]), np.concatenate(predict(val, mods)).argmax(1))

    model.train()
    losses = train_loop(model, step, max_steps=args.max_steps, learning_rate=args.learning_rate,
                        warmup_ratio=args.warmup_ratio, weight_decay=args.weight_decay, desc="sleep2vec finetune",
                        run=run, evaluate=validate if val else None, eval_every=args.eval_every,
                        batch_size=args.per_device_train_batch_size, rngs=[rng])
    checkpoints = run.finish(args.max_steps)

    # ---- save + evaluate ----------------------------------------------------------------------------
    model.eval()
    save_model(args.output_dir, model, {"backbone": config_dict(backbone.config), "stager": stager_kw})

    ds_info = {k: ds_meta.get(k) for k in ("split", "input", "rates")}
    short = {name: [r.recording for r in select(recs, split.get(name, [])) if r.n_epochs < args.seq_len]
             for name in ("train", "validation", "test")}
    config = {"args": asdict(args), "channel_set": "+".join(mods), "trainable_params": n_train, "all_params": n_all,
              "fusion_weights": model.fusion_weights(mods), "positions": positions,
              "short_nights_padded": short, "losses": losses}
    for name in ("train", "validation"):
        rs = select(recs, split.get(name, []))
        if rs:
            write_run(args.output_dir, kind="sleep2vec", config=config, recs=rs, probs=predict(rs, mods),
                      dataset_meta=ds_info, name=f"predictions_{name}")
    test = select(recs, split["test"])
    metrics = write_run(args.output_dir, kind="sleep2vec", config=config, recs=test, probs=predict(test, mods),
                        dataset_meta=ds_info, extra={"pretrained": args.pretrained, **checkpoints})
    subsets = {}
    for s in args.eval_subsets:
        sub = s.split("+")
        if not all(m in mods for m in sub):
            print(f"eval_subsets: {s} skipped (not within this run's channel set {'+'.join(mods)})")
            continue
        rows = []
        for r, p in zip(test, predict(test, sub)):
            rows += make_rows(dataset=r.dataset, subjects=[r.subject] * r.n_epochs, recordings=[r.recording] * r.n_epochs,
                              epochs=range(r.n_epochs), starts_s=r.starts_s, labels=r.stages.tolist(), probs=p)
        subsets[s] = metrics_from_rows(rows)["pooled"]
    if subsets:
        write_json_atomic(f"{args.output_dir}/metrics_subsets.json", subsets)
    print({"test": {k: metrics["pooled"].get(k) for k in ("kappa", "macro_f1", "accuracy")},
           "subsets": {s: round(m["kappa"], 3) for s, m in subsets.items()}, "trainable": n_train})
    run.publish(["model.pt", "model_config.json", "meta.json", "metrics*.json"])  # card; Hub upload if asked
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
