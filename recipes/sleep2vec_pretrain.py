"""Pre-train sleep2vec: cross-modal contrastive alignment with DASH-InfoNCE (or plain InfoNCE).

    python recipes/sleep2vec_pretrain.py --config recipes/configs/sleep2vec_tiny_pretrain.yaml \
        --signal_data runs/isruc_signal --format isruc --input data/isruc_synth --output_dir runs/s2v_pre

Reads (or builds) the shared signal dataset, trains on the train-split subjects only, writes
``OUTPUT_DIR/model.pt`` + ``model_config.json`` + ``meta.json`` (config, dataset meta, provenance,
losses and the validation cross-modal retrieval accuracy), ``train_log.jsonl`` + ``loss_curve.png``
(the validation contrastive loss every ``eval_every`` steps), ``checkpoints/`` (the newest and the best,
lowest validation loss) and the model card ``README.md``. ``--resume_from_checkpoint latest`` continues
a run exactly (same batches, masks and weights as an uninterrupted one), ``--report_to tensorboard`` and
``--push_to_hub --hub_model_id USER/NAME`` as in every recipe. Fine-tune with
``recipes/sleep2vec_finetune.py``. ``--help`` lists every argument.

Pairs (section 3.2, one modality pair per batch): each step draws a training night that has at least two
of ``--modalities``, a pair from that night's own modalities, then the batch from the nights that hold
both, so a modality some nights lack still trains (the model gets a tokenizer for every modality at
least one training night has). Ablations: ``--loss infonce`` (vanilla), ``--dash_terms age`` (one
metadata term at a time, Table 7), ``--mask_prob 0`` / ``0.3`` (Table 9), ``--data_fraction 0.25``
(Table 11; a seeded, nested share of the training subjects). Nights shorter than one segment
(``seq_len``) cannot form a positive pair over the segment and are left out, listed in ``meta.json``.
"""

from collections import Counter
from dataclasses import asdict, dataclass, field
from itertools import combinations

import numpy as np
import torch

from psgvlm.baselines.common import (
    OptimizerArguments,
    RunArguments,
    SignalDataArguments,
    load_or_build_signal_data,
    train_loop,
)
from psgvlm.baselines.signal_data import select
from psgvlm.baselines.sleep2vec import (
    DASH_TERMS,
    SIZES,
    Sleep2vec,
    Sleep2vecConfig,
    config_dict,
    save_backbone,
)
from psgvlm.provenance import provenance, write_json_atomic
from psgvlm.training import TrainingRun, parse_args


@dataclass(kw_only=True)
class Args(OptimizerArguments, RunArguments, SignalDataArguments):
    size: str = "tiny"  # model preset: tiny | small | medium | large
    modalities: list[str] = field(default_factory=lambda: ["EEG", "EOG", "EMG"])  # token streams; each batch aligns one pair drawn from one night's own modalities
    loss: str = "dash"  # dash | infonce (ablation)
    dash_terms: list[str] = field(default_factory=lambda: list(DASH_TERMS))  # DASH-InfoNCE terms kept, of age sex site night (the others neutral; Table 7 keeps one at a time)
    mask_prob: float = 0.15  # per-token masking probability in pre-training (0 disables)
    tokenizer_input: str = "waveform"  # waveform (paper) | log_spectrum (documented deviation)
    seq_len: int = 20  # epochs per segment (paper: 120, one hour); shorter nights are left out and listed
    per_device_train_batch_size: int = 16  # segments per batch (B)
    segments_per_night: int = 2  # segments drawn from the same night (gives same-night pseudo-negatives)
    learning_rate: float = 5e-4  # peak AdamW learning rate (linear warm-up, then cosine decay)
    warmup_ratio: float = 0.03  # share of max_steps spent warming up (paper: 3%)
    data_fraction: float = 1.0  # share of the training subjects pre-trained on (seeded by --seed and nested: 0.25 is within 0.5; paper A.5.2)


def main(argv=None):
    args = parse_args(Args, argv)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    torch.manual_seed(args.seed)  # parameter init; batches use rng / the generator below
    gen = torch.Generator().manual_seed(args.seed)

    # ---- data: train subjects (a --data_fraction share), the modality pairs each night holds -------
    recs, ds_meta = load_or_build_signal_data(args)
    # trackers, checkpoints (best: lowest validation contrastive loss), --resume_from_checkpoint
    run = TrainingRun(args, asdict(args), metric="val_loss", greater_is_better=False, cpu=True)
    if not 0 < args.data_fraction <= 1:
        raise ValueError(f"data_fraction must be in (0, 1], got {args.data_fraction}")
    subjects = sorted(set(map(str, ds_meta["split"]["train"])))
    order = np.random.default_rng([args.seed, 2]).permutation(len(subjects))  # nested shares: a prefix of one order
    chosen = sorted(subjects[i] for i in order[:max(1, round(args.data_fraction * len(subjects)))])
    every = select(recs, chosen)
    train = [r for r in every if r.n_epochs >= args.seq_len]
    skipped = [r.recording for r in every if r.n_epochs < args.seq_len]
    val = [r for r in select(recs, ds_meta["split"].get("validation", [])) if r.n_epochs >= args.seq_len]
    if not train:
        raise ValueError(f"no training recording with >= {args.seq_len} epochs in {args.signal_data}")

    def own(r):  # the night's own modalities, in --modalities order
        return [m for m in args.modalities if r.channels_of(m)]

    have = [own(r) for r in train]
    mods = [m for m in args.modalities if any(m in h for h in have)]  # a tokenizer for each
    anchors = [i for i, h in enumerate(have) if len(h) >= 2]
    if not anchors:
        raise ValueError(f"contrastive pre-training needs nights with >= 2 of the modalities {args.modalities}; "
                         f"the training nights hold {sorted({'+'.join(h) for h in have})}")
    pair_nights = Counter("+".join(p) for h in have for p in combinations(h, 2))

    def holding(pool, pair):  # the nights of pool that hold both modalities of the pair
        return [r for r in pool if set(pair) <= set(own(r))]

    pools = {frozenset(p): holding(train, p) for p in combinations(mods, 2)}  # once, not per step

    def batch(pool, pair, n, rng=rng):
        nights = rng.choice(len(pool), size=max(1, n // args.segments_per_night))
        xa, xb, meta = [], [], {"age": [], "sex": [], "site": [], "night": []}
        for i in nights:
            r = pool[i]
            for _ in range(args.segments_per_night):
                s = int(rng.integers(0, r.n_epochs - args.seq_len + 1))
                xa.append(r.modality_array(pair[0])[s:s + args.seq_len])
                xb.append(r.modality_array(pair[1])[s:s + args.seq_len])
                for k in ("age", "sex", "site"):
                    meta[k].append(r.meta.get(k))
                meta["night"].append(f"{r.dataset}:{r.recording}")
        return torch.from_numpy(np.stack(xa)), torch.from_numpy(np.stack(xb)), meta

    # ---- model -----------------------------------------------------------------------------------
    if args.size not in SIZES:
        raise ValueError(f"size {args.size!r} not in {list(SIZES)}")
    config = Sleep2vecConfig(modalities=tuple(mods), loss=args.loss, dash_terms=tuple(args.dash_terms),
                             mask_prob=args.mask_prob, tokenizer_input=args.tokenizer_input,
                             max_epochs=max(args.seq_len, 64), **SIZES[args.size])
    model = Sleep2vec(config=config)

    # ---- train: one modality pair per batch, drawn from one night's own modalities --------------------
    def step(_):
        pick = have[anchors[int(rng.integers(len(anchors)))]]
        pair = tuple(rng.choice(pick, size=2, replace=False))
        xa, xb, meta = batch(pools[frozenset(pair)], pair, args.per_device_train_batch_size)
        return model.pretrain_loss({pair[0]: xa, pair[1]: xb}, meta=meta, generator=gen)

    # The same validation batches at every evaluation (their own seeded rng), one per modality pair the
    # validation nights (else the training nights) hold.
    vpool = [r for r in val if len([m for m in own(r) if m in mods]) >= 2] or train
    pairs = sorted({p for r in vpool for p in combinations(own(r), 2) if p[0] in mods and p[1] in mods})

    def val_batches():
        vrng = np.random.default_rng([args.seed, 1])
        return [(pair, batch(holding(vpool, pair), pair, args.per_device_train_batch_size, vrng)) for pair in pairs]

    @torch.no_grad()
    def validate():
        per_pair = [float(model.pretrain_loss({p[0]: xa, p[1]: xb}, meta=meta)) for p, (xa, xb, meta) in val_batches()]
        return {"val_loss": float(np.mean(per_pair))}

    model.train()
    losses = train_loop(model, step, max_steps=args.max_steps, learning_rate=args.learning_rate,
                        warmup_ratio=args.warmup_ratio, weight_decay=args.weight_decay, desc="sleep2vec pretrain",
                        run=run, evaluate=validate, eval_every=args.eval_every,
                        batch_size=args.per_device_train_batch_size, rngs=[rng, gen])
    checkpoints = run.finish(args.max_steps)

    # ---- evaluate: validation loss and cross-modal retrieval recall@1 --------------------------------
    model.eval()
    evaluation = {}
    with torch.no_grad():
        for pair, (xa, xb, meta) in val_batches():
            za, zb = model.embed({pair[0]: xa, pair[1]: xb}).values()
            sim = torch.einsum("itd,jtd->tij", za, zb)
            recall1 = float((sim.argmax(-1) == torch.arange(sim.shape[-1])).float().mean())
            evaluation["+".join(pair)] = {"loss": float(model.pretrain_loss({pair[0]: xa, pair[1]: xb}, meta=meta)),
                                          "retrieval_recall_at_1": recall1, "chance": 1 / sim.shape[-1],
                                          "on": "train (no validation night holds a pair)" if vpool is train else "validation"}

    # ---- save ------------------------------------------------------------------------------------
    save_backbone(args.output_dir, model)
    write_json_atomic(f"{args.output_dir}/meta.json", {
        "kind": "sleep2vec-pretrain", "args": asdict(args), "model_config": config_dict(config),
        "dataset": {k: ds_meta.get(k) for k in ("split", "input", "rates")}, "losses": losses,
        "pretrain_subjects": chosen, "skipped_shorter_than_segment": skipped, "modality_pairs": dict(pair_nights),
        "evaluation": evaluation, **checkpoints, "provenance": provenance()})
    print({"final_loss": float(np.mean(losses[-10:])), "evaluation": evaluation})
    run.publish(["model.pt", "model_config.json", "meta.json"])  # card; Hub upload if asked
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
