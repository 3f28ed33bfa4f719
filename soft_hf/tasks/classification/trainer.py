# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""The training loop of SOFT image classifiers with Accelerate (`soft-train`, `scripts/train.py`).

`SoftTrainer` is put together from three parts: `TrainerSetup` (`wiring`: model, data, optimizer, schedule, EMA),
this loop, and `TrainerReports` (`reports`: validation, exports, results). The recipe's values and pieces are in
`recipe`, the flags in `arguments`, checkpoints in `soft_hf.tasks.checkpoints`.

Accelerate provides devices, mixed precision, gradient accumulation, multi-process training (`accelerate launch`),
trackers and `save_state`/`load_state` checkpoints. Resuming is exact: the data order depends only on
`(seed, epoch)`, each sample's augmentation only on `(seed, epoch, index)`, `load_state` restores the model,
optimizer, EMA and RNG states (mixup and batch-level random erasing draw from the restored global RNGs), and the
learning rate is a function of the position in training (the epoch, or the number of completed optimizer steps).

`soft-train` and `scripts/train.py` are `main()`; `train(args)` can be called from Python with
`parse_train_args([...])`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
from collections import deque

from ...data.classification import UNREADABLE_LABEL
from ..checkpoints import (
    CHECKPOINTS_DIR_NAME,
    TRAINING_STATE_NAME,
    resolve_checkpoint,
    save_checkpoint,
    truncate_train_log,
)
from .arguments import check_train_args, parse_train_args
from .progress import RunLayout, StepAccumulator, TrainingProgress
from .recipe import apply_official_recipe
from .reports import TrainerReports
from .wiring import TrainerSetup


class SoftTrainer(TrainerSetup, TrainerReports):
    """One training run as configured by `build_train_parser` flags (the recipe: `soft_hf.tasks.classification.recipe`).

    `SoftTrainer(args).train()` builds everything with Accelerate, resumes if asked, trains, validates every
    `--eval_every_epochs`, checkpoints, and finally evaluates and exports the final, best and EMA models."""

    def __init__(self, args: argparse.Namespace):
        import datasets
        import transformers
        from accelerate import Accelerator
        from accelerate.logging import get_logger
        from accelerate.utils import set_seed

        apply_official_recipe(args)
        check_train_args(args)
        self.args = args
        tracking = {"log_with": args.report_to, "project_dir": args.output_dir} if args.with_tracking else {}
        self.accelerator = Accelerator(
            cpu=args.cpu,
            gradient_accumulation_steps=args.gradient_accumulation_steps,
            mixed_precision=args.mixed_precision,
            **tracking,
        )
        logging.basicConfig(
            format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", datefmt="%H:%M:%S", level=logging.INFO
        )
        self.logger = get_logger(__name__)
        self.logger.info(self.accelerator.state, main_process_only=False)
        verbosity = "warning" if self.accelerator.is_local_main_process else "error"
        getattr(datasets.utils.logging, f"set_verbosity_{verbosity}")()
        getattr(transformers.utils.logging, f"set_verbosity_{verbosity}")()
        transformers.utils.logging.disable_progress_bar()  # the exports' "Writing model shards" bars
        self.layout = RunLayout(args.output_dir)
        if self.accelerator.is_main_process:
            os.makedirs(args.output_dir, exist_ok=True)
            with open(os.path.join(args.output_dir, "training_args.json"), "w", encoding="utf-8") as handle:
                json.dump(vars(args), handle, indent=2)

        set_seed(args.seed)  # the same initial weights on every process
        self._build_data_and_model()
        self._build_optimization()
        # Dropout, drop path and mixup draw per-process streams from here on.
        set_seed(args.seed, device_specific=True)
        self.progress = TrainingProgress()

    # Resume -------------------------------------------------------------------------------------------------------

    def resume(self) -> bool:
        """Load the checkpoint named by --resume_from_checkpoint. Returns whether the validation of the epoch the
        checkpoint finished is still due (step checkpoints taken on the last batch of an epoch)."""
        args = self.args
        checkpoint = resolve_checkpoint(args.resume_from_checkpoint, args.output_dir)
        if checkpoint is None:
            self.logger.info("No checkpoint in %s yet: starting from scratch.", args.output_dir)
            return False
        with open(os.path.join(checkpoint, TRAINING_STATE_NAME), encoding="utf-8") as handle:
            saved = json.load(handle)
        # Keys a checkpoint does not record (written before they were added) are not compared.
        changed = {key: (saved["setup"][key], value) for key, value in self.run_setup.items() if key in saved["setup"]}
        changed = {key: pair for key, pair in changed.items() if pair[0] != pair[1]}
        if changed:
            differences = ", ".join(f"{key}: {old} -> {new}" for key, (old, new) in changed.items())
            raise ValueError(
                f"Cannot resume {checkpoint} exactly: the run setup changed ({differences}). Resume with the same "
                "processes, batch size, accumulation, schedule length, seed and EMA setting."
            )
        self.accelerator.load_state(checkpoint)
        saved.pop("setup")
        self.progress = TrainingProgress(**saved)
        evaluation_due = False
        if self.batches_per_epoch is not None and self.progress.batches_in_epoch >= self.batches_per_epoch:
            evaluation_due = not self.progress.epoch_finished
            self.progress.epoch, self.progress.batches_in_epoch = self.progress.epoch + 1, 0
        self.logger.info(
            "Resumed from %s at step %d (epoch %d, batch %d).",
            checkpoint,
            self.progress.completed_steps,
            self.progress.epoch,
            self.progress.batches_in_epoch,
        )
        if self.accelerator.is_main_process:
            truncate_train_log(args.output_dir, self.progress.completed_steps)
        return evaluation_due

    # Loop ---------------------------------------------------------------------------------------------------------

    def train(self) -> dict:
        """Run (or continue) training; returns the final results, also written to OUTPUT_DIR/all_results.json.
        Returns early, without final evaluation or export, when --stop_after_steps ends the invocation."""
        from tqdm.auto import tqdm

        args, accelerator, progress = self.args, self.accelerator, self.progress
        evaluation_due = self.resume() if args.resume_from_checkpoint else False
        progress = self.progress
        if progress.completed_steps == 0 and accelerator.is_main_process:
            truncate_train_log(args.output_dir, 0)  # a fresh run starts a fresh log
        if args.with_tracking:
            hyperparameters = {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool))}
            accelerator.init_trackers("soft_image_classification", config=hyperparameters)
        self._log_setup()

        checkpointing_steps = int(args.checkpointing_steps) if str(args.checkpointing_steps).isdigit() else None
        self.progress_bar = tqdm(
            total=self.max_train_steps,
            initial=progress.completed_steps,
            disable=not accelerator.is_local_main_process,
            desc="train",
            dynamic_ncols=True,
        )
        self.log_handle = open(self.layout.train_log, "a", encoding="utf-8") if accelerator.is_main_process else None
        self.recent_steps = deque(maxlen=20)  # (images, seconds) of recent steps, for the progress bar
        if evaluation_due:
            self.end_of_epoch(progress.epoch - 1)
        stopped_early = False
        first_epoch, resume_batches = progress.epoch, progress.batches_in_epoch
        for epoch in range(first_epoch, self.num_epochs):
            if progress.completed_steps >= self.max_train_steps:
                break
            skip_batches = resume_batches if epoch == first_epoch else 0
            stopped_early = self.train_epoch(epoch, skip_batches=skip_batches, every=checkpointing_steps)
            if stopped_early or progress.completed_steps >= self.max_train_steps:
                break
            self.end_of_epoch(epoch)
            if args.checkpointing_steps == "epoch":
                progress.epoch_finished = True
                self.save_checkpoint()
        self.progress_bar.close()
        last_checkpoint = os.path.join(args.output_dir, CHECKPOINTS_DIR_NAME, f"step_{progress.completed_steps}")
        if args.checkpointing_steps and not stopped_early and not os.path.isdir(last_checkpoint):
            self.save_checkpoint()  # the end of training, so that resuming a finished run only re-exports
        if self.log_handle is not None:
            self.log_handle.close()

        if stopped_early:
            self.logger.info(
                "Stopped after step %d of %d as asked (--stop_after_steps); continue with --resume_from_checkpoint "
                "latest.",
                progress.completed_steps,
                self.max_train_steps,
            )
            accelerator.wait_for_everyone()
            accelerator.end_training()
            return {"completed_steps": progress.completed_steps, "stopped_early": True}
        return self.finish()

    def train_epoch(self, epoch: int, skip_batches: int = 0, every: int | None = None) -> bool:
        """Train one epoch (from batch `skip_batches` when resuming), checkpointing every `every` steps.
        Returns True when --stop_after_steps ended the run."""
        args, accelerator, progress = self.args, self.accelerator, self.progress
        self.model.train()
        # The data order depends on (seed, epoch), each sample's augmentation on (seed, epoch, index).
        if self.train_sampler is not None:
            self.train_sampler.set_epoch(epoch)
        self.train_dataset.set_epoch(epoch)
        self.train_dataloader.set_epoch(epoch)
        dataloader = self.train_dataloader
        if skip_batches:
            dataloader = accelerator.skip_first_batches(self.train_dataloader, skip_batches)
        progress.epoch, progress.batches_in_epoch, progress.epoch_finished = epoch, skip_batches, False

        step = StepAccumulator(accelerator.device)
        for batch in dataloader:
            progress.batches_in_epoch += 1
            with accelerator.accumulate(self.model):
                self.training_step(batch, step)
            if not accelerator.sync_gradients:
                continue
            self.after_optimizer_step(epoch, step)
            step = StepAccumulator(accelerator.device)  # time spent on logging and checkpoints is not counted

            stop_now = (
                args.stop_after_steps is not None
                and args.stop_after_steps <= progress.completed_steps < self.max_train_steps
            )
            if (every and progress.completed_steps % every == 0) or stop_now:
                self.save_checkpoint()
            if stop_now:
                return True
            if progress.completed_steps >= self.max_train_steps:
                break
            step.restart_clock()
        return False

    def training_step(self, batch: dict, step: "StepAccumulator") -> None:
        """Forward and backward of one micro-batch (unreadable images dropped), and the optimizer step when
        gradients are synchronised (with clipping and the learning rate of the step)."""
        args, accelerator = self.args, self.accelerator
        pixel_values, labels = batch["pixel_values"], batch["labels"]  # (batch, 3, H, W), (batch,)
        num_images = len(labels)  # images trained on (an image paired with itself counts once)
        valid = labels != UNREADABLE_LABEL
        step.skipped += (~valid).sum()
        if not bool(valid.all()):
            pixel_values, labels = pixel_values[valid], labels[valid]
            if len(labels) == 0:
                raise ValueError("Every image of a training batch was unreadable; check the training data.")
            num_images = len(labels)
            mixup = self.batch_augmentation.mixup
            if mixup is not None and len(labels) == 1:
                # Mixup pairs images up: the one readable image is paired with itself (mixing it changes nothing).
                pixel_values, labels = pixel_values.repeat(2, 1, 1, 1), labels.repeat(2)
            elif mixup is not None and len(labels) % 2:
                pixel_values, labels = pixel_values[:-1], labels[:-1]  # mixup pairs images up
                num_images = len(labels)
        # Mixup/cutmix (targets: (batch, num_labels) soft labels), then random erasing of the mixed images.
        pixel_values, targets = self.batch_augmentation(pixel_values, labels)
        logits = self.model(pixel_values=pixel_values).logits  # (batch, num_labels)
        loss = self.criterion(logits.float(), targets)
        accelerator.backward(loss)
        if accelerator.sync_gradients and args.max_grad_norm > 0:
            accelerator.clip_grad_norm_(self.model.parameters(), args.max_grad_norm)
        self.set_learning_rate()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        step.add(loss.detach(), num_images)

    def set_learning_rate(self) -> None:
        """The learning rate of the coming optimizer step: a function of the epoch (`--lr_schedule_updates epoch`,
        timm's `scheduler.step(epoch)` as in the official runs) or of the completed steps (`step_update`)."""
        if self.args.lr_schedule_updates == "epoch":
            self.scheduler.step(self.progress.epoch)
        else:
            self.scheduler.step_update(self.progress.completed_steps)

    def after_optimizer_step(self, epoch: int, step: "StepAccumulator") -> None:
        """Count the step, update the EMA, and log loss, learning rate and throughput (JSON lines, trackers, bar)."""
        args, accelerator, progress = self.args, self.accelerator, self.progress
        learning_rate = self.optimizer.param_groups[0]["lr"]
        progress.completed_steps += 1
        if self.ema is not None:
            self.ema.update(accelerator.unwrap_model(self.model))
        mean_loss = accelerator.reduce(step.loss / step.micro_batches, reduction="mean").item()
        images = int(accelerator.reduce(step.images, reduction="sum").item())
        skipped = int(accelerator.reduce(step.skipped, reduction="sum").item())
        seconds = step.elapsed()
        progress.training_seconds += seconds
        progress.train_images += images
        progress.skipped_train_images += skipped
        self.recent_steps.append((images, seconds))
        images_per_second = sum(count for count, _ in self.recent_steps) / max(
            1e-9, sum(duration for _, duration in self.recent_steps)
        )
        record = {
            "step": progress.completed_steps,
            "epoch": epoch,
            "loss": mean_loss,
            "learning_rate": learning_rate,
            "images_per_second": images_per_second,
            "skipped_images": skipped,
        }
        if self.log_handle is not None:
            self.log_handle.write(json.dumps(record) + "\n")
            self.log_handle.flush()
        if skipped:
            self.logger.warning("Step %d skipped %d unreadable training image(s).", progress.completed_steps, skipped)
        if args.with_tracking and (
            progress.completed_steps % args.logging_steps == 0 or progress.completed_steps == 1
        ):
            accelerator.log(
                {f"train/{key}": value for key, value in record.items() if key != "step"},
                step=progress.completed_steps,
            )
        self.progress_bar.update(1)
        self.progress_bar.set_postfix(
            loss=f"{mean_loss:.4f}", lr=f"{learning_rate:.2e}", img_s=f"{images_per_second:.0f}"
        )

    def save_checkpoint(self) -> str:
        state = {**dataclasses.asdict(self.progress), "setup": self.run_setup}
        return save_checkpoint(self.accelerator, self.args.output_dir, state, self.args.checkpoints_total_limit)


def train(args: argparse.Namespace) -> dict:
    """Train as configured by `build_train_parser` flags (see `SoftTrainer`); returns the final results."""
    return SoftTrainer(args).train()


def main(argv: list[str] | None = None) -> None:
    """`soft-train` and `scripts/train.py` (the results are in OUTPUT_DIR/all_results.json)."""
    train(parse_train_args(argv))


__all__ = ["SoftTrainer", "main", "train"]


if __name__ == "__main__":
    main()
