"""Fine-tune a VLM with LoRA to score sleep stages from rendered PSG epochs (PSG-image paper: LLaVA-NeXT).

Any family in ``psgvlm.vlm.families`` (LLaVA-NeXT, Qwen2-VL, Qwen2.5-VL, Idefics3/SmolVLM, PaliGemma)
runs through this recipe; the family is read from the model's config (``--family`` to insist on one):

    accelerate launch recipes/llava_isruc.py --config recipes/configs/qwen2_5_vl_3b_isruc.yaml
    accelerate launch recipes/llava_isruc.py --config recipes/configs/smolvlm_256m_isruc.yaml

GPU, paper settings (ISRUC rendered by ``psgvlm render``; MASS/SHHS: same recipe, their configs):

    accelerate launch recipes/llava_isruc.py --config recipes/configs/llava_isruc.yaml
    accelerate launch recipes/llava_isruc.py --config recipes/configs/llava_mass.yaml
    accelerate launch --config_file recipes/accelerate/deepspeed_zero3.yaml recipes/llava_isruc.py \
        --config recipes/configs/llava_shhs.yaml

CPU, tiny model on synthetic ISRUC-format data (the quickstart's recipe, minutes on 2 cores; the embedded
default adds band dropout, six bands and physical scaling: recipes/configs/llava_tiny_default.yaml):

    psgvlm synth --format isruc --out data/synth_isruc --subjects 12 --minutes 30 --seed 0
    psgvlm render --format isruc --input data/synth_isruc --out data/synth_isruc_img
    psgvlm tiny-model --out runs/tiny-llava --image-size 112
    accelerate launch --config_file recipes/accelerate/cpu.yaml recipes/llava_isruc.py \
        --config recipes/configs/llava_tiny_cpu.yaml

``--context 1`` shows the model the previous and next epoch beside the scored one in one strip image composed at
load time (psgvlm/vlm/context.py); meta.json records K for predict, the evals, stage and the app.

Any flag overrides the YAML (``--learning_rate 2e-4``); ``--resume_from_checkpoint latest`` (or
``RUN/checkpoints/step-N``) continues exactly (refused when the config differs). ``--train false`` scores
the untuned model (zero-shot ablation). ``--report_to tensorboard`` (or wandb, mlflow) logs loss, learning
rate, gradient norm, samples/s and validation kappa / macro-F1 / accuracy (TensorBoard: RUN/logs);
``--push_to_hub --hub_model_id USER/NAME`` uploads adapter, processor and model card at the end.
The run dir holds adapter/ (the last weights), processor/, meta.json, train_log.jsonl, loss_curve.png,
checkpoints/ (the newest ``save_total_limit`` and the best by validation kappa), the model card README.md,
confusion.png, the test split's predictions.jsonl + metrics.json, and predictions_<split>/ (same two
files) for the other splits in ``predict_splits`` (default validation; the tiny CPU config adds train,
so that ``recipes/nap.py --predictors vlm=RUN`` can train on train + validation). Final predictions
cover whole splits; ``max_eval_samples`` limits only the validation scored during training.
"""

import math
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from accelerate.utils import set_seed
from peft import get_peft_model, prepare_model_for_kbit_training

from psgvlm import training
from psgvlm.image.dataset import load_dataset
from psgvlm.training import TrackingArguments
from psgvlm.vlm.context import ContextDataset, context_template, pin_strip_grid
from psgvlm.vlm.data import BandDropout, VLMCollator, get_template
from psgvlm.vlm.model import load_model, lora_config, trainable_parameters
from psgvlm.vlm.scoring import score_dataset


@dataclass
class Args(TrackingArguments):  # + report_to, save_total_limit, resume_from_checkpoint, push_to_hub, hub_model_id
    dataset: str = "data/isruc_img"  # `psgvlm render` output dir (train/validation/test splits)
    output_dir: str = "runs/llava_isruc"  # the run dir
    model: str = "llava-hf/llava-v1.6-mistral-7b-hf"  # hub id or local dir (`psgvlm tiny-model`)
    family: str = ""  # VLM family in psgvlm.vlm.families ("": read from the model's config model_type)
    prompt: str = "default"  # template name in psgvlm/prompts/sleep_stage.yaml, or a literal with <image>
    pin_grid: bool = True  # pin the anyres grid to one tile per epoch (false: the model's default grid)
    context: int = 0  # K: the model reads epochs e-K..e+K side by side, one strip image (psgvlm/vlm/context.py)
    train: bool = True  # False: no fine-tuning, score the untuned model (zero-shot ablation)
    lora_r: int = 16  # LoRA rank
    lora_alpha: int = 32  # LoRA scaling numerator (scale alpha / r)
    lora_dropout: float = 0.05  # dropout on the LoRA input
    lora_vision: bool = True  # LoRA on the vision tower too (the layers that feed the projector)
    quantization: str = "none"  # "4bit": bitsandbytes QLoRA (CUDA only)
    gradient_checkpointing: bool = False  # recompute activations in backward (less memory, slower)
    num_train_epochs: float = 3.0  # passes over the training split (a fraction stops mid-epoch)
    per_device_train_batch_size: int = 2  # images per process and micro-batch
    gradient_accumulation_steps: int = 8  # micro-batches per optimizer step
    learning_rate: float = 1e-4  # peak, cosine decay after linear warmup
    warmup_ratio: float = 0.1  # share of the optimizer steps spent warming up
    weight_decay: float = 0.0  # AdamW weight decay
    max_grad_norm: float = 0.0  # clip gradients to this total norm (0: no clipping; the norm is logged either way)
    max_train_samples: int = 0  # 0: all; else a seeded subset (CPU runs)
    band_dropout: float = 0.0  # share of training images with random bands drawn flat as `psgvlm stage` draws a missing channel
    single_eeg_prob: float = 0.5  # of the images with flat bands, share that keep one EEG band alone
    max_eval_samples: int = 0  # in-training validation only; final predictions cover whole splits
    predict_splits: list[str] = field(default_factory=lambda: ["validation", "test"])  # + train for NAP
    eval_batch_size: int = 8  # images per scoring batch
    eval_every: int = 0  # optimizer steps between validation scorings (0: end of each epoch)
    save_every: int = 0  # optimizer steps between checkpoints (0: end of each epoch)
    max_steps: int = 0  # stop after this many optimizer steps (0: run all epochs)
    embed_base_model: bool = False  # copy a local base model into the run dir (self-contained runs)
    seed: int = 0  # LoRA init, dropout and the data order
    config: str = ""  # YAML file of argument defaults (flags override it); its path is recorded in meta.json


args = training.parse_args(Args)
config = asdict(args)
out = Path(args.output_dir)
# The run: accelerate with the trackers of --report_to, the log, checkpoints, --resume_from_checkpoint.
run = training.TrainingRun(args, config, gradient_accumulation_steps=args.gradient_accumulation_steps,
                           mixed_precision=training.mixed_precision())
accelerator, main = run.accelerator, run.accelerator.is_main_process
set_seed(args.seed)  # torch RNG drives LoRA init and dropout; data order uses its own seeded rng

# ----------------------------------------------------------------------------- data
dsd, dataset_meta = load_dataset(args.dataset)
training.check_image_splits(dsd, args.dataset, predict_splits=args.predict_splits,
                            need=("train", "validation") if args.train else ())
# --context K: each row's image is the strip of its 2K+1 epochs, composed from the split's own rows at load time
# (each epoch stored once); K=0 is the row's own image. One sentence of the prompt says so.
dsd = {name: ContextDataset(ds, args.context) for name, ds in dsd.items()}
template = context_template(get_template(args.prompt, channels=dataset_meta.get("channels")), args.context)
dropout = BandDropout(dataset_meta, p=args.band_dropout, single_eeg_prob=args.single_eeg_prob) \
    if args.train and args.band_dropout > 0 else None

# ----------------------------------------------------------------------------- model
# 4-bit weights must be placed on this process's GPU at load time.
model, processor = load_model(args.model, quantization=args.quantization, pin_grid=args.pin_grid, dtype="auto",
                              device_map={"": accelerator.device} if args.quantization == "4bit" else None,
                              family=args.family or None)
if args.pin_grid and args.context:  # one tile per epoch of the strip, each at full resolution
    pin_strip_grid(model, processor, args.context)
train_collator = VLMCollator(processor, template, mode="train")
score_collator = VLMCollator(processor, template, mode="score")

# ----------------------------------------------------------------------------- LoRA
if args.train:
    if args.quantization == "4bit":  # norms to fp32, input grads on: peft's QLoRA preparation
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=args.gradient_checkpointing)
    elif args.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model = get_peft_model(model, lora_config(model, r=args.lora_r, alpha=args.lora_alpha,
                                              dropout=args.lora_dropout, vision=args.lora_vision))
else:
    model.requires_grad_(False)  # zero-shot: nothing is trained
params = trainable_parameters(model)
accelerator.print(f"trainable parameters: {params['trainable']:,} of {params['total']:,} ({params['per_part']})")


def evaluate(ds, desc):
    """Label-score ``ds`` across processes -> (probs (n, 5), labels (n,)) on every process."""
    idx = list(range(len(ds)))
    with accelerator.split_between_processes(idx) as mine:
        probs = score_dataset(accelerator.unwrap_model(model), score_collator, ds.select(mine) if mine else [],
                              batch_size=args.eval_batch_size, progress=main)
    from accelerate.utils import gather_object

    probs = np.concatenate(gather_object([probs]))
    return probs, np.asarray(ds["label"])[: len(probs)]


# ----------------------------------------------------------------------------- train
step, checkpoints = 0, {}
if args.train:
    train_ds = training.seeded_subset(dsd["train"], args.max_train_samples, args.seed)
    val_ds = training.seeded_subset(dsd["validation"], args.max_eval_samples, args.seed + 1)
    steps_per_epoch = math.ceil(len(train_ds) / (args.per_device_train_batch_size * accelerator.num_processes
                                                * args.gradient_accumulation_steps))
    total_steps = math.ceil(steps_per_epoch * args.num_train_epochs)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.learning_rate,
                                  weight_decay=args.weight_decay)
    # A prepared scheduler steps once per process per optimizer step, hence the factor.
    scheduler = training.warmup_cosine(optimizer, total_steps=total_steps * accelerator.num_processes,
                                       warmup_ratio=args.warmup_ratio)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    # Checkpoints hold only the trainable (LoRA) weights, not the frozen base model.
    trainable = {n for n, p in accelerator.unwrap_model(model).named_parameters() if p.requires_grad}

    def keep_trainable(models, weights, _dir):
        if weights:  # empty under DeepSpeed/FSDP, which save their own sharded states
            weights[0] = {k: v for k, v in weights[0].items() if k.split("module.", 1)[-1] in trainable}

    accelerator.register_save_state_pre_hook(keep_trainable)
    step = run.resume(strict=False)  # 0, or the checkpoint's step (weights, optimizer, RNGs and log restored)

    def validate(epoch):  # logged; a new best by validation kappa is checkpointed at once
        probs, labels = evaluate(val_ds, "validation")
        m = training.val_metrics(labels, probs.argmax(1))
        accelerator.print(f"step {step}: validation kappa {m['val_kappa']:.3f} macro-F1 {m['val_macro_f1']:.3f} "
                          f"accuracy {m['val_accuracy']:.3f}")
        run.evaluated(step, m, epoch=epoch)

    model.train()
    running, n_micro, done, grad_norm = 0.0, 0, False, None
    for epoch in range(math.ceil(args.num_train_epochs)):
        # Seeded epoch order, the batches a resumed run has done skipped (None: it is past this epoch);
        # band dropout draws from its own (seed, epoch) rng, so a resumed run sees the same images (one draw
        # per row: the same bands flat in every epoch of a strip).
        source = train_ds.with_dropout(dropout, seed=(args.seed, epoch)) if dropout else train_ds
        batches = training.epoch_batches(accelerator, source, epoch=epoch, seed=args.seed,
                                         batch_size=args.per_device_train_batch_size, collate_fn=train_collator,
                                         skip=(step - epoch * steps_per_epoch) * args.gradient_accumulation_steps)
        if batches is None:
            continue
        for batch in batches:
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                accelerator.backward(loss)
                if accelerator.sync_gradients:  # the norm is logged; gradients clipped only with max_grad_norm
                    grad_norm = accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm or math.inf)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            running += loss.detach().float().item()
            n_micro += 1
            if not accelerator.sync_gradients:
                continue
            step += 1
            run.log_step(step, epoch=epoch, loss=running / n_micro, lr=scheduler.get_last_lr()[0], grad_norm=grad_norm,
                         samples=n_micro * args.per_device_train_batch_size * accelerator.num_processes)
            running, n_micro = 0.0, 0
            if args.eval_every and step % args.eval_every == 0:
                validate(epoch)
            if args.save_every and step % args.save_every == 0:
                run.save(step)
            if step >= total_steps or (args.max_steps and step >= args.max_steps):
                done = True
                break
        if not args.eval_every and (done or step % steps_per_epoch == 0):
            validate(epoch)
        if not args.save_every and not args.max_steps:
            run.save(step)
        if done:
            break
    checkpoints = run.finish(step)  # the last checkpoint, loss_curve.png

# ----------------------------------------------------------------------------- save
accelerator.wait_for_everyone()
net = accelerator.unwrap_model(model)
if main:
    if args.train:
        net.save_pretrained(out / "adapter")
    processor.save_pretrained(out / "processor")
    base_model = str(Path(args.model).resolve()) if Path(args.model).is_dir() else args.model
    if args.embed_base_model:
        if not Path(args.model).is_dir():
            raise SystemExit(f"--embed_base_model needs a local model dir, got {args.model!r}")
        shutil.copytree(args.model, out / "base_model", dirs_exist_ok=True)
        base_model = "base_model"  # resolved relative to the run dir by psgvlm.vlm.predict
    training.write_run_meta(out, kind="psgvlm-vlm-run", config=config, dataset_meta=dataset_meta,
                            base_model=base_model, adapter="adapter" if args.train else None,
                            prompt={"name": args.prompt, "template": template}, pin_grid=args.pin_grid,
                            family=score_collator.family, context=args.context,
                            trainable_parameters=params, optimizer_steps=step, **checkpoints)

# ----------------------------------------------------------------------------- evaluate
for split in args.predict_splits:  # whole splits: NAP joins the streams by recording and epoch
    if split not in dsd:
        accelerator.print(f"{split}: not in {args.dataset} (has {sorted(dsd)}); no predictions")
        continue
    ds = dsd[split]
    probs, _ = evaluate(ds, split)
    if main:
        m = training.write_split_predictions(out, split, ds, probs)
        accelerator.print(f"{split}: kappa {m['pooled']['kappa']:.3f} macro-F1 {m['pooled']['macro_f1']:.3f} "
                          f"accuracy {m['pooled']['accuracy']:.3f} ({len(probs)} epochs)")
run.publish(["adapter/*", "processor/*", "meta.json", "metrics.json"])  # card, confusion.png; Hub if asked
