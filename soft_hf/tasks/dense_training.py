# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""The training loop shared by the dense-prediction scripts (detection and segmentation), with Accelerate.

Both scripts build their data, model and evaluation and hand them to `train_dense_model`, which owns the run's
mechanics: the flags of a run (`add_run_arguments`), AdamW parameter groups, exact resume from
`OUTPUT_DIR/checkpoints/step_N` (the data order depends only on (seed, epoch), each image's augmentation only on
(seed, epoch, index)), gradient accumulation and clipping, the per-step `train_log.jsonl`, a progress bar, periodic
evaluation and checkpoints, and at the end the Hub-ready `final/` folder and `--push_to_hub`.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader, Dataset
from transformers import get_scheduler

from ..data.sampling import EpochShuffleSampler
from ..hub.export import push_to_hub
from .checkpoints import TRAINING_STATE_NAME, resolve_checkpoint, save_checkpoint, truncate_train_log
from .dense import to_jsonable


def add_backbone_arguments(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """The backbone flags of the dense-prediction scripts; returns the "model" group for the head's own flags."""
    model = parser.add_argument_group("model")
    model.add_argument(
        "--backbone",
        default="soft-norm-tiny",
        help="SOFT preset (e.g. soft-norm-small), a SOFT config.json (random init), or pvt_v2_b0/b1/b2.",
    )
    model.add_argument(
        "--pretrained_backbone",
        help="Saved/exported SOFT model folder or official .pth whose encoder initialises the backbone.",
    )
    model.add_argument("--official_variant", choices=["plain", "norm"], help="Variant of an official .pth.")
    model.add_argument("--max_landmarks", type=int, help="Bound the landmarks per SOFT stage (linear memory).")
    model.add_argument("--drop_path_rate", type=float, default=0.1)
    return model


def add_run_arguments(parser: argparse.ArgumentParser, *, learning_rate: float, weight_decay: float) -> None:
    """The optimisation, checkpoint and publishing flags common to the dense-prediction scripts."""
    training = parser.add_argument_group("training")
    training.add_argument("--output_dir", required=True)
    training.add_argument("--per_device_train_batch_size", type=int, default=8)
    training.add_argument("--per_device_eval_batch_size", type=int, default=1)
    training.add_argument("--learning_rate", type=float, default=learning_rate)
    training.add_argument("--weight_decay", type=float, default=weight_decay)
    training.add_argument("--num_train_epochs", type=int, default=10)
    training.add_argument("--max_train_steps", type=int, help="Overrides --num_train_epochs.")
    training.add_argument("--warmup_steps", type=int, default=0)
    training.add_argument("--lr_scheduler_type", default="polynomial")
    training.add_argument("--gradient_accumulation_steps", type=int, default=1)
    training.add_argument("--max_grad_norm", type=float, default=None)
    training.add_argument("--mixed_precision", choices=["no", "fp16", "bf16"], default=None)
    training.add_argument("--eval_steps", type=int, help="Evaluate every N optimiser steps (default: at the end).")
    training.add_argument("--logging_steps", type=int, default=10)
    training.add_argument("--seed", type=int, default=42)
    training.add_argument("--report_to", default=None, help="Accelerate tracker, e.g. tensorboard.")
    training.add_argument("--no_progress_bar", action="store_true", help="Print a line every --logging_steps instead.")
    run = parser.add_argument_group("checkpoints and publishing")
    run.add_argument("--checkpointing_steps", type=int, help="Save the training state every N optimiser steps.")
    run.add_argument("--checkpoints_total_limit", type=int, help="Keep only the newest N checkpoints.")
    run.add_argument(
        "--resume_from_checkpoint",
        help="'latest' (newest checkpoint in OUTPUT_DIR/checkpoints, or start afresh if none) or a checkpoint folder.",
    )
    run.add_argument(
        "--stop_after_steps",
        type=int,
        help="End this invocation after N optimiser steps with a checkpoint (continue with --resume_from_checkpoint).",
    )
    run.add_argument("--push_to_hub", action="store_true", help="Upload OUTPUT_DIR/final to --hub_model_id.")
    run.add_argument("--hub_model_id", help="Hub repository, e.g. your-name/soft-norm-tiny-rt-detr.")
    run.add_argument("--hub_private", action="store_true")


def check_run_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.checkpointing_steps is not None and args.checkpointing_steps < 1:
        parser.error("--checkpointing_steps must be at least 1.")
    if args.push_to_hub and not args.hub_model_id:
        parser.error("--push_to_hub needs --hub_model_id (e.g. your-name/soft-norm-tiny-rt-detr).")


def start_run(args: argparse.Namespace) -> Accelerator:
    """The run's `Accelerator` (gradient accumulation, mixed precision, trackers, project folder), with the seed set."""
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=args.report_to,
        project_dir=args.output_dir,
    )
    set_seed(args.seed)
    return accelerator


def training_loader(args: argparse.Namespace, train_set: Dataset, collate_fn) -> tuple[DataLoader, EpochShuffleSampler]:
    """The (unprepared) training loader and its sampler. The order of epoch e depends only on (seed, e), so a resumed
    run sees the batches of the uninterrupted one."""
    train_sampler = EpochShuffleSampler(len(train_set), seed=args.seed)
    train_loader = DataLoader(
        train_set,
        batch_size=args.per_device_train_batch_size,
        sampler=train_sampler,
        drop_last=len(train_set) > args.per_device_train_batch_size,
        collate_fn=collate_fn,
        num_workers=args.num_workers,
        generator=torch.Generator().manual_seed(args.seed),
    )
    return train_loader, train_sampler


def parameter_groups(
    model: torch.nn.Module,
    weight_decay: float,
    learning_rate: float,
    head_lr_multiplier: float = 1.0,
    backbone_lr_multiplier: float = 1.0,
) -> list[dict]:
    """AdamW groups: no decay on norms, biases, position embeddings and the classification token; the backbone's
    parameters at `backbone_lr_multiplier` and the others (the heads) at `head_lr_multiplier` times
    `learning_rate` (UperNet in mmsegmentation: heads 10x; RT-DETR: backbone 0.1x)."""
    groups = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        no_decay = parameter.ndim <= 1 or name.endswith(("position_embeddings", "cls_token"))
        is_head = ".backbone." not in f".{name}"
        key = (is_head, no_decay)
        if key not in groups:
            groups[key] = {
                "params": [],
                "weight_decay": 0.0 if no_decay else weight_decay,
                "lr": learning_rate * (head_lr_multiplier if is_head else backbone_lr_multiplier),
            }
        groups[key]["params"].append(parameter)
    return list(groups.values())


def resume(args, accelerator: Accelerator, setup: dict, progress: dict) -> dict:
    """Load the checkpoint named by --resume_from_checkpoint; return the saved progress (unchanged if none yet)."""
    checkpoint = resolve_checkpoint(args.resume_from_checkpoint, args.output_dir)
    if checkpoint is None:
        accelerator.print(f"No checkpoint in {args.output_dir} yet: starting from scratch.")
        return progress
    saved = json.loads((Path(checkpoint) / TRAINING_STATE_NAME).read_text(encoding="utf-8"))
    changed = {key: (saved["setup"].get(key), value) for key, value in setup.items() if saved["setup"].get(key) != value}
    if changed:
        differences = ", ".join(f"{key}: {old} -> {new}" for key, (old, new) in changed.items())
        raise ValueError(
            f"Cannot resume {checkpoint} exactly: the run setup changed ({differences}). Resume with the same "
            "processes, batch size, accumulation, number of steps and seed."
        )
    accelerator.load_state(checkpoint)
    accelerator.print(f"Resumed from {checkpoint} at step {saved['completed_steps']}.")
    return {key: saved[key] for key in progress}


def train_dense_model(
    args,
    accelerator: Accelerator,
    model: torch.nn.Module,
    train_loader,
    train_sampler,
    *,
    epoch_datasets: list,
    compute_loss: Callable[[torch.nn.Module, dict], torch.Tensor],
    evaluate: Callable[[torch.nn.Module], dict],
    metric_name: str,
    save_final: Callable[[torch.nn.Module, Path, dict], Path],
    description: str,
    head_lr_multiplier: float = 1.0,
    backbone_lr_multiplier: float = 1.0,
) -> dict:
    """Train `model` to `args.max_train_steps` (or `args.num_train_epochs`), evaluate and write `final/`.

    Args:
        args: the parsed flags of `add_run_arguments`.
        train_loader / train_sampler: the (unprepared) training loader and its `EpochShuffleSampler`.
        epoch_datasets: datasets whose `set_epoch(epoch)` seeds the epoch's augmentation.
        compute_loss: `(model, batch) -> loss`.
        evaluate: `(prepared model) -> metrics`, run on every process (gather inside).
        metric_name: the headline metric in `metrics`, printed and logged (e.g. `"map"`, `"mean_iou"`).
        save_final: `(unwrapped model, folder, results) -> folder`, writes the Hub-ready model folder (main process).
        description: one line on what is trained, printed first.

    Returns:
        `{"step", "train_runtime_s", "eval_<metric>"...}` (also `OUTPUT_DIR/all_results.json`), or
        `{"step", "stopped_early": True}` after `--stop_after_steps`.
    """
    optimizer = torch.optim.AdamW(
        parameter_groups(model, args.weight_decay, args.learning_rate, head_lr_multiplier, backbone_lr_multiplier),
        lr=args.learning_rate,
    )
    steps_per_epoch = math.ceil(len(train_loader) / args.gradient_accumulation_steps)
    max_train_steps = args.max_train_steps or args.num_train_epochs * steps_per_epoch
    scheduler = get_scheduler(
        args.lr_scheduler_type,
        optimizer=optimizer,
        num_warmup_steps=args.warmup_steps * accelerator.num_processes,
        num_training_steps=max_train_steps * accelerator.num_processes,
    )
    model, optimizer, train_loader, scheduler = accelerator.prepare(model, optimizer, train_loader, scheduler)
    if args.report_to:
        accelerator.init_trackers(Path(args.output_dir).name, config={k: str(v) for k, v in vars(args).items()})

    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    batches_per_epoch = len(train_loader)
    setup = {
        "num_processes": accelerator.num_processes,
        "per_device_train_batch_size": args.per_device_train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "max_train_steps": max_train_steps,
        "seed": args.seed,
    }
    progress = {"completed_steps": 0, "epoch": 0, "batches_in_epoch": 0}
    if args.resume_from_checkpoint:
        progress = resume(args, accelerator, setup, progress)
    if accelerator.is_main_process:
        truncate_train_log(str(output_dir), progress["completed_steps"])  # drop steps after the checkpoint
    log_file = (output_dir / "train_log.jsonl").open("a") if accelerator.is_main_process else None
    accelerator.print(f"{description}, {max_train_steps} steps.")

    from tqdm.auto import tqdm

    bar = tqdm(
        total=max_train_steps,
        initial=progress["completed_steps"],
        desc="training",
        disable=args.no_progress_bar or not accelerator.is_local_main_process,
        dynamic_ncols=True,
    )

    def checkpoint() -> None:
        save_checkpoint(
            accelerator, str(output_dir), {**progress, "setup": setup}, total_limit=args.checkpoints_total_limit
        )

    def finish() -> None:
        bar.close()
        if log_file is not None:
            log_file.close()

    step, start = progress["completed_steps"], time.time()
    model.train()
    while step < max_train_steps:
        epoch, skip = progress["epoch"], progress["batches_in_epoch"]
        train_sampler.set_epoch(epoch)
        for dataset in epoch_datasets:
            dataset.set_epoch(epoch)
        train_loader.set_epoch(epoch)  # Accelerate's loader sets its sampler's epoch from its own counter
        loader = accelerator.skip_first_batches(train_loader, skip) if skip else train_loader
        for batch in loader:
            progress["batches_in_epoch"] += 1
            with accelerator.accumulate(model):
                loss = compute_loss(model, batch)
                accelerator.backward(loss)
                if args.max_grad_norm is not None and accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            if not accelerator.sync_gradients:
                continue
            step += 1
            progress["completed_steps"] = step
            loss_value = accelerator.gather(loss.detach()).mean().item()
            record = {"step": step, "loss": loss_value, "lr": scheduler.get_last_lr()[0]}
            if log_file is not None:
                log_file.write(json.dumps(record) + "\n")
                log_file.flush()
            if args.report_to:
                accelerator.log({"train/loss": loss_value, "train/lr": record["lr"]}, step=step)
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.4f}", refresh=False)
            if bar.disable and (step % args.logging_steps == 0 or step == 1):
                accelerator.print(f"step {step}/{max_train_steps} loss {loss_value:.4f} ({time.time() - start:.0f}s)")
            if args.eval_steps and step % args.eval_steps == 0 and step < max_train_steps:
                metrics = evaluate(model)
                model.train()
                accelerator.print(f"step {step}: {metric_name} {metrics[metric_name]:.4f}")
                if args.report_to:
                    accelerator.log({f"eval/{metric_name}": metrics[metric_name]}, step=step)
            stop_now = args.stop_after_steps is not None and args.stop_after_steps <= step < max_train_steps
            if (args.checkpointing_steps and step % args.checkpointing_steps == 0) or stop_now:
                checkpoint()
            if stop_now:
                finish()
                accelerator.print(f"Stopped after step {step} as asked; continue with --resume_from_checkpoint latest.")
                accelerator.wait_for_everyone()
                accelerator.end_training()
                return {"step": step, "stopped_early": True}
            if step >= max_train_steps:
                break
        if progress["batches_in_epoch"] >= batches_per_epoch:
            progress["epoch"], progress["batches_in_epoch"] = epoch + 1, 0
    if args.checkpointing_steps and not (output_dir / "checkpoints" / f"step_{step}").is_dir():
        checkpoint()  # the end of training: resuming a finished run only re-evaluates and saves
    finish()
    train_runtime = time.time() - start

    metrics = evaluate(model)
    accelerator.print("Final: " + ", ".join(f"{name} {value:.4f}" for name, value in metrics.items() if _is_number(value)))
    results = {"step": step, "train_runtime_s": train_runtime, **{f"eval_{k}": v for k, v in metrics.items()}}
    if args.report_to:
        accelerator.log({f"eval/{metric_name}": metrics[metric_name]}, step=step)
        accelerator.end_training()
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        final_dir = save_final(accelerator.unwrap_model(model), output_dir / "final", results)
        (output_dir / "all_results.json").write_text(json.dumps(to_jsonable(results), indent=2) + "\n")
        accelerator.print(f"Saved the model to {final_dir}")
        if args.push_to_hub:
            urls = push_to_hub(final_dir, args.hub_model_id, private=args.hub_private)
            accelerator.print(f"Pushed to {urls}")
    return results


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


__all__ = ["add_backbone_arguments", "add_run_arguments", "check_run_arguments", "parameter_groups", "resume", "train_dense_model"]
