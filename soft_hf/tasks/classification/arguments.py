# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""The flags of `soft-train` (`scripts/train.py`): model, data, optimisation (the official recipe's defaults, filled
in by `apply_official_recipe`) and run; and the checks that reject inconsistent combinations."""

from __future__ import annotations

import argparse
import json

from ...data.arguments import add_data_arguments
from .recipe import (
    FALLBACK_RECIPE,
    OFFICIAL_WARMUP_LEARNING_RATE,
    OFFICIAL_WEIGHT_DECAY,
    RECIPE_CHOICES,
    REFERENCE_BATCH_SIZE,
    apply_official_recipe,
)
from .wiring import MODEL_TYPES


def build_train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Train or fine-tune a SOFT image classifier with the official recipe. Run with `python` or "
        "`accelerate launch` (CPU, one or many GPUs, many nodes)."
    )
    model = parser.add_argument_group("model")
    model.add_argument(
        "--model_name_or_path", default=None, help="Fine-tune this pretrained SOFT (exported folder or Hub id)."
    )
    model.add_argument(
        "--model_type",
        default="soft-tiny",
        type=str.lower,
        choices=MODEL_TYPES,
        help="Architecture trained from scratch when --model_name_or_path is not given (default soft-tiny).",
    )
    model.add_argument(
        "--config_overrides",
        default=None,
        help="JSON object of SoftConfig fields overriding the preset, e.g. '{\"depths\": [1, 1, 1, 1]}'.",
    )
    model.add_argument(
        "--image_size",
        type=int,
        default=None,
        help="Training crop and evaluation crop size (multiple of 32; default: the model's image_size).",
    )
    model.add_argument(
        "--crop_pct", type=float, default=0.9, help="Evaluation: resize to image_size / crop_pct, crop."
    )
    model.add_argument("--drop_path_rate", type=float, default=0.1)
    model.add_argument(
        "--ignore_mismatched_sizes",
        action="store_true",
        help="Fine-tuning with a new label set: re-initialise the classifier when its size differs.",
    )
    model.add_argument("--trust_remote_code", action="store_true")

    add_data_arguments(parser)

    optimization = parser.add_argument_group(
        "optimisation (official recipe defaults; flags marked [recipe] default to the --recipe config's value)"
    )
    optimization.add_argument(
        "--recipe",
        default="official",
        type=str.lower,
        choices=RECIPE_CHOICES,
        help="Whose official config gives the [recipe] defaults: 'official' (default) takes --model_type's "
        f"(config/SOFT_*.yaml of github.com/fudan-zvg/SOFT; {FALLBACK_RECIPE}'s for architectures without an official "
        "run), or name a preset, e.g. to fine-tune a pretrained soft-medium with its recipe.",
    )
    optimization.add_argument(
        "--per_device_train_batch_size", type=int, default=None, help="[recipe] Training images per device and step."
    )
    optimization.add_argument("--per_device_eval_batch_size", type=int, default=128)
    optimization.add_argument(
        "--learning_rate",
        type=float,
        default=None,
        help=f"[recipe] Peak learning rate per {REFERENCE_BATCH_SIZE} images of global batch (scaled linearly to the "
        "real global batch: per device x processes x accumulation; see --no_lr_scaling).",
    )
    optimization.add_argument(
        "--no_lr_scaling", action="store_true", help="Use --learning_rate as is, without the linear scaling rule."
    )
    optimization.add_argument("--weight_decay", type=float, default=OFFICIAL_WEIGHT_DECAY)
    optimization.add_argument(
        "--exempt_position_embeddings",
        action="store_true",
        help="Also exempt position embeddings from weight decay (the official runs decay them; 1-D parameters, "
        "biases and the classification token are always exempt).",
    )
    optimization.add_argument("--adam_beta1", type=float, default=0.9)
    optimization.add_argument("--adam_beta2", type=float, default=0.999)
    optimization.add_argument("--adam_epsilon", type=float, default=1e-8)
    optimization.add_argument("--num_train_epochs", type=int, default=None, help="[recipe]")
    optimization.add_argument(
        "--max_train_steps", type=int, default=None, help="Total optimizer steps; overrides --num_train_epochs."
    )
    optimization.add_argument("--gradient_accumulation_steps", type=int, default=1)
    optimization.add_argument("--warmup_epochs", type=float, default=None, help="[recipe]")
    optimization.add_argument("--warmup_steps", type=int, default=None, help="Overrides --warmup_epochs.")
    optimization.add_argument("--warmup_learning_rate", type=float, default=OFFICIAL_WARMUP_LEARNING_RATE)
    optimization.add_argument("--min_learning_rate", type=float, default=None, help="[recipe]")
    optimization.add_argument(
        "--lr_schedule_updates",
        choices=("epoch", "step"),
        default="epoch",
        help="Update the learning rate once per epoch (default, as the official timm scheduler.step(epoch): the first "
        "epoch runs at --warmup_learning_rate) or after every optimizer step (smoother; better for short runs).",
    )
    optimization.add_argument(
        "--max_grad_norm", type=float, default=None, help="[recipe] Gradient clipping (0 disables)."
    )
    optimization.add_argument("--label_smoothing", type=float, default=0.1)
    optimization.add_argument("--mixup", type=float, default=0.8, help="Mixup alpha (0 disables).")
    optimization.add_argument("--cutmix", type=float, default=1.0, help="CutMix alpha (0 disables).")
    optimization.add_argument("--mixup_prob", type=float, default=1.0)
    optimization.add_argument("--mixup_switch_prob", type=float, default=0.5)
    optimization.add_argument("--mixup_mode", choices=("batch", "pair", "elem"), default="batch")
    optimization.add_argument("--auto_augment", default="rand-m9-mstd0.5-inc1", help="timm policy; 'none' disables.")
    optimization.add_argument("--color_jitter", type=float, default=0.4, help="Used only when --auto_augment is none.")
    optimization.add_argument("--reprob", type=float, default=0.25, help="Random-erasing probability.")
    optimization.add_argument(
        "--random_erasing_placement",
        choices=("after_mixup", "per_image"),
        default="after_mixup",
        help="Erase in the mixed batch (default, as the official runs' timm loader) or in each image's transform, "
        "before mixup/cutmix.",
    )
    optimization.add_argument("--remode", default="pixel")
    optimization.add_argument("--recount", type=int, default=1)
    optimization.add_argument("--scale", type=float, nargs=2, default=(0.08, 1.0), help="Random-resized-crop scale.")
    optimization.add_argument("--ratio", type=float, nargs=2, default=(3 / 4, 4 / 3))
    optimization.add_argument("--hflip", type=float, default=0.5)
    optimization.add_argument("--train_interpolation", default="random")
    optimization.add_argument(
        "--model_ema",
        action="store_true",
        help="Keep an EMA of the weights, validate it every epoch, choose and export 'best' from it (the default, "
        "as in the official runs).",
    )
    optimization.add_argument(
        "--no_model_ema", dest="model_ema", action="store_false", help="No EMA; 'best' from the raw weights."
    )
    optimization.add_argument("--model_ema_decay", type=float, default=None, help="[recipe]")
    optimization.add_argument("--seed", type=int, default=42)
    optimization.add_argument(
        "--mixed_precision",
        choices=("no", "fp16", "bf16"),
        default=None,
        help="Default: the accelerate config/launcher.",
    )
    optimization.add_argument(
        "--cpu",
        action="store_true",
        help="Run on the CPU even if accelerators are present. Several CPU processes: `accelerate launch --multi_gpu "
        "--num_processes N scripts/train.py --cpu` (torchrun + gloo; `accelerate launch --cpu` starts one process "
        "unless MPI is installed).",
    )

    run = parser.add_argument_group("run")
    run.add_argument("--output_dir", default="outputs/soft-image-classification")
    run.add_argument(
        "--checkpointing_steps",
        default=None,
        help="Save the training state every N optimizer steps, or 'epoch' at every epoch end.",
    )
    run.add_argument("--checkpoints_total_limit", type=int, default=None, help="Keep only the newest N checkpoints.")
    run.add_argument(
        "--resume_from_checkpoint",
        default=None,
        help="'latest' (newest checkpoint in OUTPUT_DIR/checkpoints, or start afresh if none) or a checkpoint folder.",
    )
    run.add_argument(
        "--stop_after_steps",
        type=int,
        default=None,
        help="End this invocation after N optimizer steps with a checkpoint, keeping the full schedule (for "
        "time-limited job slots); continue with --resume_from_checkpoint latest.",
    )
    run.add_argument(
        "--eval_every_epochs", type=int, default=1, help="Validate every N epochs (0: only at the end of training)."
    )
    run.add_argument("--save_predictions", action="store_true", help="Write per-image predictions of the final eval.")
    run.add_argument("--with_tracking", action="store_true", help="Log to trackers (--report_to).")
    run.add_argument("--report_to", default="tensorboard", help="Accelerate tracker(s): tensorboard, wandb, all, ...")
    run.add_argument("--logging_steps", type=int, default=10, help="Tracker logging interval in optimizer steps.")
    run.add_argument("--push_to_hub", action="store_true", help="Upload the final export to --hub_model_id.")
    run.add_argument("--hub_model_id", default=None)
    run.add_argument("--hub_token", default=None)
    run.add_argument("--hub_private_repo", action="store_true")
    parser.set_defaults(model_ema=True)
    return parser


def parse_train_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse `scripts/train.py` flags, fill the [recipe] defaults (`apply_official_recipe`) and check them."""
    args = apply_official_recipe(build_train_parser().parse_args(argv))
    check_train_args(args)
    return args


def check_train_args(args: argparse.Namespace) -> None:
    """Reject inconsistent flags with a message that names the fix."""
    if args.dataset_name is not None and (args.train_dir is not None or args.validation_dir is not None):
        raise ValueError("Pass either --dataset_name or --train_dir/--validation_dir, not both.")
    if args.validation_dir is not None and args.train_dir is None:
        raise ValueError(
            "--validation_dir needs --train_dir (evaluate a saved model with soft-evaluate instead)."
        )
    for name in (
        "per_device_train_batch_size",
        "per_device_eval_batch_size",
        "gradient_accumulation_steps",
        "num_train_epochs",
    ):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be at least 1, got {getattr(args, name)}.")
    if args.max_train_steps is not None and args.max_train_steps < 1:
        raise ValueError(f"--max_train_steps must be at least 1, got {args.max_train_steps}.")
    if (args.mixup > 0 or args.cutmix > 0) and args.per_device_train_batch_size % 2:
        raise ValueError(
            f"Mixup/CutMix pair up images within a batch: --per_device_train_batch_size must be even, got "
            f"{args.per_device_train_batch_size} (or pass --mixup 0 --cutmix 0)."
        )
    if args.checkpointing_steps is not None and args.checkpointing_steps != "epoch":
        if not str(args.checkpointing_steps).isdigit() or int(args.checkpointing_steps) < 1:
            raise ValueError(
                f"--checkpointing_steps must be a positive integer or 'epoch', got {args.checkpointing_steps!r}."
            )
    if args.model_ema_decay is not None and not 0 <= args.model_ema_decay < 1:
        raise ValueError(f"--model_ema_decay must be in [0, 1), got {args.model_ema_decay}.")
    if args.push_to_hub and not args.hub_model_id:
        raise ValueError("--push_to_hub needs --hub_model_id (e.g. your-name/soft-tiny-finetuned).")
    if args.image_size is not None and (args.image_size < 32 or args.image_size % 32):
        raise ValueError(f"--image_size must be a multiple of 32 and at least 32, got {args.image_size}.")
    if args.config_overrides is not None:
        try:
            overrides = json.loads(args.config_overrides)
        except json.JSONDecodeError as error:
            raise ValueError(f"--config_overrides must be a JSON object: {error}") from error
        if not isinstance(overrides, dict):
            raise ValueError(f"--config_overrides must be a JSON object, got {args.config_overrides!r}.")


__all__ = ["build_train_parser", "check_train_args", "parse_train_args"]
