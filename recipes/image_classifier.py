"""Train an image classifier (ResNet, ConvNeXt, ViT, Swin, CLIP encoder + linear head) on rendered epochs.

The paper's image baselines, on the same images and subject splits as the VLM:

    accelerate launch recipes/image_classifier.py --config recipes/configs/resnet_isruc.yaml
    accelerate launch recipes/image_classifier.py --config recipes/configs/clip_linear_isruc.yaml
    accelerate launch --config_file recipes/accelerate/cpu.yaml recipes/image_classifier.py \
        --config recipes/configs/classifier_tiny_cpu.yaml --arch swin

``--checkpoint DIR_OR_ID`` initialises from pretrained weights (5-way head replaced), otherwise the
``--size`` preset is trained from scratch (``classifier_tiny_cpu.yaml``). ``--trainable_layers N``
fine-tunes partially: only the last N stages / encoder blocks, the final norm and the head train. The
paper configs (resnet_isruc.yaml: ResNet-152; resnet101_isruc.yaml; convnext, vit, swin_isruc.yaml) load
the hub checkpoints and use the paper's Table 3: batch 64, lr 1e-3, weight decay 1e-4, 30 epochs (ViT
and Swin 50). The run dir holds model/ (the last weights), meta.json (kind
``psgvlm-image-classifier-run``), train_log.jsonl, loss_curve.png, checkpoints/ (one per epoch: the newest
``save_total_limit`` and the best by validation kappa), the model card README.md, confusion.png, the test
split's predictions.jsonl + metrics.json and predictions_<split>/ for the other splits in
``predict_splits`` (add train for ``recipes/nap.py``), the same contract as the VLM runs.
``--resume_from_checkpoint latest`` continues exactly; ``--report_to tensorboard`` (wandb, mlflow) logs
loss, learning rate, gradient norm, samples/s and validation metrics; ``--push_to_hub --hub_model_id
USER/NAME`` uploads model/ and the card.
"""

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from accelerate.utils import set_seed

from psgvlm import training
from psgvlm.image.dataset import load_dataset
from psgvlm.training import TrackingArguments
from psgvlm.vlm.classifiers import build_classifier, predict_proba, save_classifier_run


@dataclass
class Args(TrackingArguments):  # + report_to, save_total_limit, resume_from_checkpoint, push_to_hub, hub_model_id
    dataset: str = "data/isruc_img"  # `psgvlm render` output dir
    output_dir: str = "runs/resnet_isruc"  # the run dir
    arch: str = "resnet"  # resnet | convnext | vit | swin | clip_linear
    checkpoint: str = ""  # pretrained weights (dir or hub id); empty: from scratch with `size`
    size: str = "tiny"  # from-scratch preset (see psgvlm/vlm/classifiers.py)
    image_size: int = 0  # 0: the architecture's default input size
    train_encoder: bool = False  # clip_linear: fine-tune the encoder too (default: linear probe)
    trainable_layers: int = -1  # partial fine-tuning: last N stages/blocks + final norm + head train (-1: all; 0: head only)
    num_train_epochs: int = 10  # passes over the training split
    per_device_train_batch_size: int = 32  # images per process and micro-batch
    gradient_accumulation_steps: int = 1  # micro-batches per optimizer step
    learning_rate: float = 1e-3  # peak, cosine decay after linear warmup
    warmup_ratio: float = 0.1  # share of the optimizer steps spent warming up
    weight_decay: float = 0.05  # AdamW weight decay
    max_grad_norm: float = 0.0  # clip gradients to this total norm (0: no clipping; the norm is logged either way)
    max_train_samples: int = 0  # 0: all; else a seeded subset (CPU runs)
    eval_batch_size: int = 64  # images per scoring batch
    predict_splits: list[str] = field(default_factory=lambda: ["validation", "test"])  # + train for NAP
    seed: int = 0  # initialisation and the data order
    config: str = ""  # YAML file of argument defaults (flags override it); its path is recorded in meta.json


args = training.parse_args(Args)
config = asdict(args)
out = Path(args.output_dir)
# The run: accelerate with the trackers of --report_to, the log, checkpoints, --resume_from_checkpoint.
run = training.TrainingRun(args, config, gradient_accumulation_steps=args.gradient_accumulation_steps,
                           mixed_precision=training.mixed_precision())
accelerator, main = run.accelerator, run.accelerator.is_main_process
set_seed(args.seed)

# ----------------------------------------------------------------------------- data
dsd, dataset_meta = load_dataset(args.dataset)
training.check_image_splits(dsd, args.dataset, predict_splits=args.predict_splits)
train_ds = training.seeded_subset(dsd["train"], args.max_train_samples, args.seed)

# ----------------------------------------------------------------------------- model
model, pre = build_classifier(args.arch, checkpoint=args.checkpoint or None, size=args.size,
                              image_size=args.image_size or None, train_encoder=args.train_encoder,
                              trainable_layers=args.trainable_layers)


def collate(rows):
    return {"pixel_values": pre([r["image"] for r in rows]), "labels": torch.tensor([int(r["label"]) for r in rows])}


# ----------------------------------------------------------------------------- train
steps_per_epoch = math.ceil(len(train_ds) / (args.per_device_train_batch_size * accelerator.num_processes
                                            * args.gradient_accumulation_steps))
total_steps = steps_per_epoch * args.num_train_epochs
params = [p for p in model.parameters() if p.requires_grad]
optimizer = torch.optim.AdamW(params, lr=args.learning_rate, weight_decay=args.weight_decay)
# A prepared scheduler steps once per process per optimizer step, hence the factor.
scheduler = training.warmup_cosine(optimizer, total_steps=total_steps * accelerator.num_processes,
                                   warmup_ratio=args.warmup_ratio)
model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
step = run.resume()  # 0, or the checkpoint's step (weights, optimizer, RNGs and log restored)
n_trainable, n_total = sum(p.numel() for p in params), sum(p.numel() for p in model.parameters())
accelerator.print(f"{args.arch}: {n_trainable:,} of {n_total:,} parameters trainable, {total_steps} steps")


def evaluate(ds):
    net = accelerator.unwrap_model(model)
    return predict_proba(net, pre, ds["image"], batch_size=args.eval_batch_size, progress=main)


for epoch in range(args.num_train_epochs):
    # Seeded epoch order, the batches a resumed run has done skipped (None: it is past this epoch).
    batches = training.epoch_batches(accelerator, train_ds, epoch=epoch, seed=args.seed,
                                     batch_size=args.per_device_train_batch_size, collate_fn=collate,
                                     skip=(step - epoch * steps_per_epoch) * args.gradient_accumulation_steps)
    if batches is None:
        continue
    model.train()
    running, n, grad_norm = 0.0, 0, None
    for batch in batches:
        with accelerator.accumulate(model):
            loss = model(**batch).loss
            accelerator.backward(loss)
            if accelerator.sync_gradients:  # the norm is logged; gradients clipped only with max_grad_norm
                grad_norm = accelerator.clip_grad_norm_(params, args.max_grad_norm or math.inf)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
        running, n = running + loss.item(), n + 1
        if accelerator.sync_gradients:
            step += 1
            run.log_step(step, epoch=epoch, loss=running / n, lr=scheduler.get_last_lr()[0], grad_norm=grad_norm,
                         samples=n * args.per_device_train_batch_size * accelerator.num_processes)
            running, n = 0.0, 0
    # Every process scores the (small) validation split, so all agree on the best checkpoint.
    m = training.val_metrics(dsd["validation"]["label"], evaluate(dsd["validation"]).argmax(1))
    accelerator.print(f"epoch {epoch}: validation kappa {m['val_kappa']:.3f} accuracy {m['val_accuracy']:.3f}")
    if not run.evaluated(step, m, epoch=epoch):  # a new best is checkpointed at once
        run.save(step)
checkpoints = run.finish(step)  # the last checkpoint, loss_curve.png

# ----------------------------------------------------------------------------- save
accelerator.wait_for_everyone()
if main:
    net = accelerator.unwrap_model(model)
    save_classifier_run(net, pre, out, arch=args.arch, meta_extra={
        "config": config, "dataset_meta": dataset_meta, "optimizer_steps": step,
        "trainable_parameters": {"trainable": n_trainable, "total": n_total}, **checkpoints})

# ----------------------------------------------------------------------------- evaluate
    for split in args.predict_splits:
        if split not in dsd:
            accelerator.print(f"{split}: not in {args.dataset} (has {sorted(dsd)}); no predictions")
            continue
        m = training.write_split_predictions(out, split, dsd[split], evaluate(dsd[split]))
        accelerator.print(f"{split}: kappa {m['pooled']['kappa']:.3f} accuracy {m['pooled']['accuracy']:.3f}")
run.publish(["model/*", "meta.json", "metrics.json"])  # card, confusion.png; Hub if asked
