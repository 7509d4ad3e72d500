"""Train an image classifier (ResNet, ConvNeXt, ViT, Swin, CLIP encoder + linear head) on rendered epochs.

The paper's image baselines, on the same images and subject splits as the VLM:

    accelerate launch recipes/image_classifier.py --config recipes/configs/resnet_isruc.yaml
    accelerate launch recipes/image_classifier.py --config recipes/configs/clip_linear_isruc.yaml
    accelerate launch --config_file recipes/accelerate/cpu.yaml recipes/image_classifier.py \
        --config recipes/configs/classifier_tiny_cpu.yaml --arch swin

``--checkpoint DIR_OR_ID`` initialises from pretrained weights (5-way head replaced), otherwise the
``--size`` preset is trained from scratch. The run dir holds model/, meta.json (kind
``psgvlm-image-classifier-run``), train_log.jsonl, loss_curve.png, the test split's predictions.jsonl +
metrics.json and predictions_<split>/ for the other splits in ``predict_splits`` (add train for
``recipes/nap.py``), the same contract as the VLM runs.
"""

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader

from psgvlm import training
from psgvlm.image.dataset import load_dataset
from psgvlm.metrics import stage_metrics
from psgvlm.vlm.classifiers import build_classifier, predict_proba, save_classifier_run


@dataclass
class Args:
    dataset: str = "data/isruc_img"  # `psgvlm render` output dir
    output_dir: str = "runs/resnet_isruc"  # the run dir
    arch: str = "resnet"  # resnet | convnext | vit | swin | clip_linear
    checkpoint: str = ""  # pretrained weights (dir or hub id); empty: from scratch with `size`
    size: str = "tiny"  # from-scratch preset (see psgvlm/vlm/classifiers.py)
    image_size: int = 0  # 0: the architecture's default input size
    train_encoder: bool = False  # clip_linear: fine-tune the encoder too (default: linear probe)
    num_train_epochs: int = 10  # passes over the training split
    per_device_train_batch_size: int = 32  # images per process and micro-batch
    gradient_accumulation_steps: int = 1  # micro-batches per optimizer step
    learning_rate: float = 1e-3  # peak, cosine decay after linear warmup
    warmup_ratio: float = 0.1  # share of the optimizer steps spent warming up
    weight_decay: float = 0.05  # AdamW weight decay
    max_train_samples: int = 0  # 0: all; else a seeded subset (CPU runs)
    eval_batch_size: int = 64  # images per scoring batch
    predict_splits: list[str] = field(default_factory=lambda: ["validation", "test"])  # + train for NAP
    seed: int = 0  # initialisation and the data order
    config: str = ""  # YAML file of argument defaults (flags override it); its path is recorded in meta.json


args = training.parse_args(Args)
config = asdict(args)
out = Path(args.output_dir)
accelerator = Accelerator(gradient_accumulation_steps=args.gradient_accumulation_steps,
                          mixed_precision=training.mixed_precision())
set_seed(args.seed)
main = accelerator.is_main_process

# ----------------------------------------------------------------------------- data
dsd, dataset_meta = load_dataset(args.dataset)
training.check_image_splits(dsd, args.dataset, predict_splits=args.predict_splits)
train_ds = training.seeded_subset(dsd["train"], args.max_train_samples, args.seed)

# ----------------------------------------------------------------------------- model
model, pre = build_classifier(args.arch, checkpoint=args.checkpoint or None, size=args.size,
                              image_size=args.image_size or None, train_encoder=args.train_encoder)


def collate(rows):
    return {"pixel_values": pre([r["image"] for r in rows]), "labels": torch.tensor([int(r["label"]) for r in rows])}


# ----------------------------------------------------------------------------- train
loader = DataLoader(train_ds, batch_size=args.per_device_train_batch_size, shuffle=True, collate_fn=collate,
                    generator=torch.Generator().manual_seed(args.seed))
steps_per_epoch = math.ceil(len(loader) / max(accelerator.num_processes, 1) / args.gradient_accumulation_steps)
total_steps = steps_per_epoch * args.num_train_epochs
params = [p for p in model.parameters() if p.requires_grad]
optimizer = torch.optim.AdamW(params, lr=args.learning_rate, weight_decay=args.weight_decay)
# A prepared scheduler steps once per process per optimizer step, hence the factor.
scheduler = training.warmup_cosine(optimizer, total_steps=total_steps * accelerator.num_processes,
                                   warmup_ratio=args.warmup_ratio)
model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
log_path = out / "train_log.jsonl"
if main and log_path.exists():
    log_path.unlink()
accelerator.print(f"{args.arch}: {sum(p.numel() for p in params):,} trainable parameters, {total_steps} steps")


def evaluate(ds):
    net = accelerator.unwrap_model(model)
    return predict_proba(net, pre, ds["image"], batch_size=args.eval_batch_size, progress=main)


step, t0 = 0, time.time()
for epoch in range(args.num_train_epochs):
    model.train()
    running, n = 0.0, 0
    for batch in loader:
        with accelerator.accumulate(model):
            loss = model(**batch).loss
            accelerator.backward(loss)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
        running, n = running + loss.item(), n + 1
        if accelerator.sync_gradients:
            step += 1
            if main:
                training.append_jsonl(log_path, {"step": step, "epoch": epoch, "loss": running / n,
                                                 "lr": scheduler.get_last_lr()[0], "elapsed_s": time.time() - t0})
            running, n = 0.0, 0
    if main:
        m = stage_metrics(dsd["validation"]["label"], evaluate(dsd["validation"]).argmax(1))
        training.append_jsonl(log_path, {"step": step, "epoch": epoch, "val_kappa": m["kappa"],
                                         "val_macro_f1": m["macro_f1"], "val_accuracy": m["accuracy"]})
        accelerator.print(f"epoch {epoch}: validation kappa {m['kappa']:.3f} accuracy {m['accuracy']:.3f}")

# ----------------------------------------------------------------------------- save
accelerator.wait_for_everyone()
if main:
    net = accelerator.unwrap_model(model)
    save_classifier_run(net, pre, out, arch=args.arch,
                        meta_extra={"config": config, "dataset_meta": dataset_meta, "optimizer_steps": step})
    training.plot_loss_curve(log_path, out / "loss_curve.png")

# ----------------------------------------------------------------------------- evaluate
    for split in args.predict_splits:
        if split not in dsd:
            accelerator.print(f"{split}: not in {args.dataset} (has {sorted(dsd)}); no predictions")
            continue
        m = training.write_split_predictions(out, split, dsd[split], evaluate(dsd[split]))
        accelerator.print(f"{split}: kappa {m['pooled']['kappa']:.3f} accuracy {m['pooled']['accuracy']:.3f}")
accelerator.end_training()
