# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""The reporting half of `SoftTrainer` (`TrainerReports`): validation of the model and its EMA, the `best/` export,
the final evaluation and exports (final, best, EMA), `all_results.json`, the push to the Hub and the setup log."""

from __future__ import annotations

import json
import math
import os

from ...hub.export import export_pretrained, push_to_hub
from .evaluation import evaluate_model, metrics_for_card
from .recipe import OFFICIAL_RECIPES, REFERENCE_BATCH_SIZE


class TrainerReports:
    """Evaluation, exports and logs of a `SoftTrainer` (uses the attributes `TrainerSetup` and `SoftTrainer` set)."""

    def evaluate(self, epoch: int, predictions_path: str | None = None) -> dict:
        """Validate the model (and the EMA) and record the results in the run history and trackers."""
        progress = self.progress
        results = evaluate_model(
            self.model, self.eval_dataloader, self.accelerator, self.label_names, predictions_path=predictions_path
        )
        record = {"epoch": epoch, "step": progress.completed_steps}
        record.update(
            {key: results[key] for key in ("top1_accuracy", "top5_accuracy", "loss", "num_samples", "num_skipped")}
        )
        if self.ema is not None:
            results["ema"] = evaluate_model(self.ema.module, self.eval_dataloader, self.accelerator, self.label_names)
            record["ema_top1_accuracy"] = results["ema"]["top1_accuracy"]
            record["ema_top5_accuracy"] = results["ema"]["top5_accuracy"]
        self.logger.info(
            "epoch %d step %d: top-1 %.4f top-5 %.4f loss %.4f%s",
            epoch,
            progress.completed_steps,
            results["top1_accuracy"],
            results["top5_accuracy"],
            results["loss"],
            f" (EMA top-1 {record['ema_top1_accuracy']:.4f})" if self.ema is not None else "",
        )
        if self.args.with_tracking:
            self.accelerator.log(
                {f"eval/{key}": value for key, value in record.items() if key not in ("epoch", "step")},
                step=progress.completed_steps,
            )
        progress.history.append(record)
        return results

    def end_of_epoch(self, epoch: int) -> None:
        """Validate every --eval_every_epochs epochs (not after the last one: `finish` does) and export the best."""
        every = self.args.eval_every_epochs
        if not every or (epoch + 1) % every or self.progress.completed_steps >= self.max_train_steps:
            return
        self.update_best(self.evaluate(epoch), epoch, f"epoch {epoch + 1}")

    def update_best(self, results: dict, epoch: int, when: str) -> None:
        """Export `best/` when this validation beats the earlier ones. With an EMA, as in the official runs (whose
        checkpoint saver ranks the EMA's metrics), the EMA weights are ranked and exported; else the raw weights."""
        if self.ema is not None:
            model, ranked, weights = self.ema.module, results["ema"], "the EMA weights"
        else:
            model, ranked, weights = self.accelerator.unwrap_model(self.model), results, "the weights"
        if not self.progress.improves_best(ranked["top1_accuracy"]):
            return
        self.progress.best.update(
            top1_accuracy=ranked["top1_accuracy"], epoch=epoch, step=self.progress.completed_steps
        )
        self.export(self.layout.best, model, ranked, f"best validation top-1 of {weights} ({when})")

    def export(self, target: str, model, results: dict, note: str) -> None:
        """Write a Hub-ready folder (main process) with the measured metrics in its model card."""
        if self.accelerator.is_main_process:
            metrics = metrics_for_card(results)
            metrics["train_images_per_second"] = self.progress.images_per_second
            if self.steps_per_epoch:
                metrics["epoch"] = self.progress.completed_steps / self.steps_per_epoch
            export_pretrained(
                model,
                target,
                image_processor=self.image_processor,
                metrics=metrics,
                dataset_name=self.data.hub_dataset_id,
                provenance=_provenance(
                    self.args, self.data.source, self.progress.completed_steps, self.global_batch_size, note
                ),
                repo_id=self.args.hub_model_id,
                overwrite=True,  # this run's own earlier export (best/ is rewritten as validation improves)
            )
        self.accelerator.wait_for_everyone()

    def finish(self) -> dict:
        """Final validation, exports (final, best, EMA), all_results.json and the optional push to the Hub."""
        args, accelerator, progress = self.args, self.accelerator, self.progress
        predictions_path = os.path.join(args.output_dir, "eval_predictions.jsonl") if args.save_predictions else None
        final_epoch = math.ceil(progress.completed_steps / self.steps_per_epoch) - 1 if self.steps_per_epoch else 0
        results = self.evaluate(final_epoch, predictions_path=predictions_path)
        unwrapped = accelerator.unwrap_model(self.model)
        self.update_best(results, final_epoch, "final epoch")
        self.export(self.layout.final, unwrapped, results, "final weights")
        if self.ema is not None:
            self.export(
                self.layout.ema, self.ema.module, results["ema"], f"EMA of the weights (decay {args.model_ema_decay})"
            )
        all_results = {
            **metrics_for_card(results),
            "eval_num_skipped": results["num_skipped"],
            "eval_per_class_accuracy": results["per_class_accuracy"],
            "best_top1_accuracy": progress.best["top1_accuracy"],
            "best_epoch": progress.best["epoch"],
            "best_weights": "ema" if self.ema is not None else "raw",
            "train_steps": progress.completed_steps,
            "train_epochs": progress.completed_steps / self.steps_per_epoch if self.steps_per_epoch else None,
            "train_images": progress.train_images,
            "train_skipped_images": progress.skipped_train_images,
            "train_runtime_seconds": progress.training_seconds,
            "train_images_per_second": progress.images_per_second,
            "global_batch_size": self.global_batch_size,
            "peak_learning_rate": self.learning_rate,
            "recipe": {"preset": args.recipe_preset, "config": args.recipe_config, "overrides": args.recipe_overrides},
            "num_processes": accelerator.num_processes,
            "num_parameters": sum(parameter.numel() for parameter in unwrapped.parameters()),
            "image_size": self.image_size,
            "data": self.data.source,
            "history": progress.history,
        }
        if self.ema is not None:
            all_results.update(metrics_for_card(results["ema"], prefix="ema_eval_"))
        if accelerator.is_main_process:
            with open(os.path.join(args.output_dir, "all_results.json"), "w", encoding="utf-8") as handle:
                json.dump(all_results, handle, indent=2)
            self.logger.info(
                "Done: top-1 %.4f, top-5 %.4f on %d validation images%s; %.1f training images/s. Model: %s",
                results["top1_accuracy"],
                results["top5_accuracy"],
                results["num_samples"],
                f" (EMA: top-1 {results['ema']['top1_accuracy']:.4f}, in {self.layout.ema})" if self.ema else "",
                progress.images_per_second,
                self.layout.final,
            )
            if args.push_to_hub:
                urls = push_to_hub(
                    self.layout.final,
                    args.hub_model_id,
                    token=args.hub_token,
                    private=args.hub_private_repo,
                    commit_message=f"SOFT trained on {self.data.source}",
                )
                self.logger.info("Pushed %s to %s", self.layout.final, urls["commit_url"])
        accelerator.wait_for_everyone()
        accelerator.end_training()
        return all_results

    def _log_setup(self) -> None:
        args, accelerator = self.args, self.accelerator
        num_parameters = sum(parameter.numel() for parameter in accelerator.unwrap_model(self.model).parameters())
        self.logger.info("***** Training SOFT *****")
        self.logger.info("  Data: %s (%s classes)", self.data.source, len(self.label_names))
        if not self.data.streaming:
            self.logger.info(
                "  Training images: %d, validation images: %d", len(self.train_dataset), len(self.eval_dataset)
            )
        self.logger.info("  Parameters: %.2fM, image size %d", num_parameters / 1e6, self.image_size)
        self.logger.info(
            "  Epochs: %s, optimizer steps: %d (%s per epoch), warmup steps: %d",
            self.num_epochs,
            self.max_train_steps,
            self.steps_per_epoch,
            self.warmup_steps,
        )
        self.logger.info(
            "  Global batch: %d (%d per device x %d processes x %d accumulation), peak lr %.3g, lr updated per %s",
            self.global_batch_size,
            args.per_device_train_batch_size,
            accelerator.num_processes,
            args.gradient_accumulation_steps,
            self.learning_rate,
            args.lr_schedule_updates,
        )
        recipe = OFFICIAL_RECIPES[args.recipe_preset]
        self.logger.info(
            "  Recipe: the official %s (%s): lr %g per %d images, batch %d per device, %d epochs%s",
            recipe.config_file,
            args.recipe_preset,
            recipe.learning_rate,
            REFERENCE_BATCH_SIZE,
            recipe.per_device_train_batch_size,
            recipe.num_train_epochs,
            f"; overridden by flags: {', '.join(args.recipe_overrides)}" if args.recipe_overrides else "",
        )
        self.logger.info(
            "  EMA: %s; random erasing %s; weight decay %g%s",
            f"decay {args.model_ema_decay}" if args.model_ema else "off",
            args.random_erasing_placement.replace("_", " ") if args.reprob > 0 else "off",
            args.weight_decay,
            " (position embeddings exempt)" if args.exempt_position_embeddings else "",
        )


def _provenance(args, source: str, steps: int, global_batch_size: int, note: str) -> str:
    start = (
        f"fine-tuned from `{args.model_name_or_path}`"
        if args.model_name_or_path
        else f"trained from scratch ({args.model_type})"
    )
    return (
        f"These weights were {start} with soft-hf's `scripts/train.py` on {source}: {steps} optimizer steps with a "
        f"global batch of {global_batch_size}, seed {args.seed}. This export holds the {note}; the metrics below were "
        "measured on the validation split by the training script."
    )


__all__ = ["TrainerReports"]
