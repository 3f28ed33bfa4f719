# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""Training SOFT image classifiers with Accelerate, following the official ImageNet recipe.

The defaults are the recipe of the official code (github.com/fudan-zvg/SOFT: `main.py`, run with timm 0.3.2, and
`config/SOFT_*.yaml`), preset by preset (`OFFICIAL_RECIPES`; `--recipe`):
- AdamW (betas 0.9/0.999, eps 1e-8), peak learning rate `lr x global batch / 1024` (linear scaling), with `lr` and
  the batch per device of the preset's config: 1e-3 / 128 for Tiny and Small, 3.5e-4 / 32 Medium, 3.3e-4 / 32
  Large, 2.7e-4 / 32 Huge, and the same for the Norm variants except Medium-Norm (4e-4 / 32);
- weight decay 0.05 except on 1-D parameters (norm weights, biases) and the classification token (timm 0.3.2's
  `create_optimizer` with the official model's `no_weight_decay() == {"cls_token"}`); position embeddings are decayed;
- timm's `CosineLRScheduler` over the epochs, stepped once per epoch: 10 warmup epochs from 1e-6 (the first epoch
  runs at 1e-6), cosine to 5e-5 over 300 epochs (the warmup counts towards the cosine period);
- gradient clipping at 1.0, label smoothing 0.1, mixup 0.8 / cutmix 1.0 (timm's `Mixup` with
  `SoftTargetCrossEntropy`), RandAugment `rand-m9-mstd0.5-inc1` (timm's `create_transform`), random erasing 0.25
  applied to the mixed batch (as timm's prefetching loader does), drop path 0.1;
- an EMA of the weights (decay 0.99996, updated after every optimizer step) that is validated every epoch; "best" is
  chosen on the EMA's top-1 accuracy and exported from the EMA weights, as the official checkpoint saver does.
Each official choice has a flag for the alternative: `--no_model_ema`, `--lr_schedule_updates step` (per optimizer
step, for short runs), `--random_erasing_placement per_image`, `--exempt_position_embeddings`.

Accelerate provides devices, mixed precision, gradient accumulation, multi-process training (`accelerate launch`),
trackers and `save_state`/`load_state` checkpoints. Resuming is exact: the data order depends only on
`(seed, epoch)`, each sample's augmentation only on `(seed, epoch, index)`, `load_state` restores the model,
optimizer, EMA and RNG states (mixup and batch-level random erasing draw from the restored global RNGs), and the
learning rate is a function of the position in training (the epoch, or the number of completed optimizer steps).

`scripts/train.py` is `main()`; `train(args)` can be called from Python with `parse_train_args([...])`.
This module does not travel with checkpoints.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import re
import shutil
import time
from collections import deque
from dataclasses import dataclass, field

import torch
from torch import nn

from .configuration_soft import PRESET_NAMES, SoftConfig
from .data import (
    DEFAULT_FASHION_MNIST_DIR,
    UNREADABLE_LABEL,
    AugmentationConfig,
    EpochShuffleSampler,
    ImageClassificationDataset,
    StreamingImageClassificationDataset,
    build_eval_transform,
    build_train_transform,
    collate_image_classification,
    data_source_arguments,
    label_mapping_to_model,
    load_image_classification_data,
)
from .evaluation import evaluate_model, metrics_for_card
from .export import export_pretrained, push_to_hub
from .modeling_soft import minimum_image_size


logger = logging.getLogger(__name__)

# Architectures for short runs, beside the official presets of `SoftConfig.from_preset`. Small inputs need small
# landmark strides: with the official (8, 4, 2) a 32x32 image leaves one landmark per SOFT stage.
TRAINING_PRESETS = {
    # ~1.2M parameters, for 32x32 inputs (Fashion-MNIST demo on a CPU).
    "soft-demo": {
        "hidden_sizes": [32, 64, 128, 192],
        "depths": [1, 1, 2, 1],
        "num_attention_heads": [1, 2, 4, 6],
        "sr_ratios": [4, 2, 2, 1],
        "stem_hidden_size": 16,
        "image_size": 32,
    },
}
MODEL_TYPES = PRESET_NAMES + list(TRAINING_PRESETS)
REFERENCE_BATCH_SIZE = 1024
TRAIN_LOG_NAME = "train_log.jsonl"
TRAINING_STATE_NAME = "training_state.json"
CHECKPOINTS_DIR_NAME = "checkpoints"
CHECKPOINT_PATTERN = re.compile(r"^step_(\d+)$")


# ----------------------------------------------------------------------------------------------------------------
# The official recipe, preset by preset
# ----------------------------------------------------------------------------------------------------------------

# github.com/fudan-zvg/SOFT `main.py`: `--model-ema` defaults to True with `--model-ema-decay 0.99996`, and no config
# file overrides them; `--warmup-lr 1e-6`, `--weight-decay 0.05`, `--opt-eps 1e-8` are main.py defaults as well.
OFFICIAL_MODEL_EMA_DECAY = 0.99996
OFFICIAL_WARMUP_LEARNING_RATE = 1e-6
OFFICIAL_WEIGHT_DECAY = 0.05
# The names the official model's `no_weight_decay()` returns (models/softmax_free_vision_transformer.py); timm 0.3.2's
# `create_optimizer` exempts them, every 1-D parameter and every `.bias` from weight decay.
OFFICIAL_NO_WEIGHT_DECAY_NAMES = ("cls_token",)


@dataclass(frozen=True)
class OfficialRecipe:
    """The per-preset values of an official ImageNet-1k run, as its config file (`config/SOFT_*.yaml` of
    github.com/fudan-zvg/SOFT) sets them; `model_ema_decay` is main.py's default (no config sets it).

    `learning_rate` is the config's `lr`, the rate for 1024 images of global batch: main.py scales it by
    `batch_size x world_size / 1024`. `per_device_train_batch_size` is the config's `batch_size` (per GPU)."""

    config_file: str
    learning_rate: float  # lr
    per_device_train_batch_size: int  # batch_size
    warmup_epochs: int  # warmup_epochs
    min_learning_rate: float  # min_lr
    num_train_epochs: int  # epochs
    max_grad_norm: float  # clip_grad
    model_ema_decay: float = OFFICIAL_MODEL_EMA_DECAY


# One row per preset: the config file of the PyTorch Gaussian kernel (the `*_cuda.yaml` configs of the CUDA kernel
# agree except SOFT_Large_cuda.yaml, which has lr 3.5e-4).
OFFICIAL_RECIPES = {
    "soft-tiny": OfficialRecipe("config/SOFT_Tiny.yaml", 1e-3, 128, 10, 5e-5, 300, 1.0),
    "soft-small": OfficialRecipe("config/SOFT_Small.yaml", 1e-3, 128, 10, 5e-5, 300, 1.0),
    "soft-medium": OfficialRecipe("config/SOFT_Medium.yaml", 3.5e-4, 32, 10, 5e-5, 300, 1.0),
    "soft-large": OfficialRecipe("config/SOFT_Large.yaml", 3.3e-4, 32, 10, 5e-5, 300, 1.0),
    "soft-huge": OfficialRecipe("config/SOFT_Huge.yaml", 2.7e-4, 32, 10, 5e-5, 300, 1.0),
    "soft-norm-tiny": OfficialRecipe("config/SOFT_Tiny_norm.yaml", 1e-3, 128, 10, 5e-5, 300, 1.0),
    "soft-norm-small": OfficialRecipe("config/SOFT_Small_norm.yaml", 1e-3, 128, 10, 5e-5, 300, 1.0),
    "soft-norm-medium": OfficialRecipe("config/SOFT_Medium_norm.yaml", 4e-4, 32, 10, 5e-5, 300, 1.0),
    "soft-norm-large": OfficialRecipe("config/SOFT_Large_norm.yaml", 3.3e-4, 32, 10, 5e-5, 300, 1.0),
    "soft-norm-huge": OfficialRecipe("config/SOFT_Huge_norm.yaml", 2.7e-4, 32, 10, 5e-5, 300, 1.0),
}
# Architectures without an official run (`TRAINING_PRESETS`) take this preset's recipe.
FALLBACK_RECIPE = "soft-tiny"
RECIPE_CHOICES = ("official", *OFFICIAL_RECIPES)


def recipe_preset(recipe: str, model_type: str) -> str:
    """The preset whose official config gives the defaults: `--recipe official` means the config of `--model_type`
    (SOFT-Tiny's for architectures without an official run); `--recipe soft-medium` etc. names one explicitly (e.g. to
    fine-tune a pretrained SOFT-Medium with its own recipe)."""
    if recipe != "official":
        if recipe not in OFFICIAL_RECIPES:
            raise ValueError(f"Unknown --recipe {recipe!r}; choose one of {list(RECIPE_CHOICES)}.")
        return recipe
    return model_type if model_type in OFFICIAL_RECIPES else FALLBACK_RECIPE


def apply_official_recipe(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the flags left unset (None) with the chosen official config's values, and record the choice in
    `args.recipe_preset`, `args.recipe_config` and `args.recipe_overrides` (the recipe flags given explicitly).
    Idempotent."""
    if getattr(args, "recipe_preset", None) is not None:
        return args
    preset = recipe_preset(args.recipe, args.model_type)
    recipe = OFFICIAL_RECIPES[preset]
    overrides = []
    for field_ in dataclasses.fields(OfficialRecipe):
        if field_.name == "config_file":
            continue
        if getattr(args, field_.name) is None:
            setattr(args, field_.name, getattr(recipe, field_.name))
        else:
            overrides.append(field_.name)
    args.recipe_preset, args.recipe_config, args.recipe_overrides = preset, recipe.config_file, overrides
    return args


def linear_scaled_learning_rate(
    base_learning_rate: float, global_batch_size: int, reference: int = REFERENCE_BATCH_SIZE
) -> float:
    """The official linear scaling rule: `base_learning_rate` is the rate for `reference` images per update."""
    return base_learning_rate * global_batch_size / reference


def is_no_weight_decay_parameter(
    name: str, parameter: torch.Tensor, exempt_position_embeddings: bool = False
) -> bool:
    """The official exemptions (timm 0.3.2 `add_weight_decay` with the official model's `no_weight_decay()`): 1-D
    parameters (norm weights, biases), biases and the classification token. Position embeddings are decayed, as in
    the official runs, unless `exempt_position_embeddings`."""
    leaf = name.rpartition(".")[2]
    if parameter.ndim == 1 or leaf == "bias" or leaf in OFFICIAL_NO_WEIGHT_DECAY_NAMES:
        return True
    return exempt_position_embeddings and leaf == "position_embeddings"


def parameter_groups(model: nn.Module, weight_decay: float, exempt_position_embeddings: bool = False) -> list[dict]:
    """Two AdamW parameter groups: decayed weights and the exempt parameters (`is_no_weight_decay_parameter`).
    Each group also lists its parameter names (under "names") for inspection."""
    decay, no_decay, decay_names, no_decay_names = [], [], [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        if is_no_weight_decay_parameter(name, parameter, exempt_position_embeddings):
            no_decay.append(parameter)
            no_decay_names.append(name)
        else:
            decay.append(parameter)
            decay_names.append(name)
    return [
        {"params": decay, "weight_decay": weight_decay, "names": decay_names},
        {"params": no_decay, "weight_decay": 0.0, "names": no_decay_names},
    ]


def create_optimizer(
    model: nn.Module,
    learning_rate: float,
    weight_decay: float,
    betas=(0.9, 0.999),
    eps: float = 1e-8,
    exempt_position_embeddings: bool = False,
):
    groups = [
        {key: value for key, value in group.items() if key != "names"}
        for group in parameter_groups(model, weight_decay, exempt_position_embeddings)
    ]
    return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, eps=eps)


def create_lr_scheduler(
    optimizer,
    total_steps: float,
    warmup_steps: float,
    warmup_learning_rate: float,
    min_learning_rate: float,
    t_in_epochs: bool = False,
):
    """timm's cosine schedule: linear warmup from `warmup_learning_rate` over `warmup_steps`, then cosine to
    `min_learning_rate` at `total_steps` (the warmup counts towards the cosine period, as in the official runs).

    With `t_in_epochs=True` (the official runs) both lengths are in epochs and the schedule is driven by
    `scheduler.step(epoch)`, so the rate changes once per epoch; otherwise they are optimizer steps and it is driven
    by `scheduler.step_update(completed_steps)`."""
    from timm.scheduler import CosineLRScheduler

    def whole(value):
        return int(value) if float(value).is_integer() else value

    return CosineLRScheduler(
        optimizer,
        t_initial=whole(total_steps) if t_in_epochs else max(1, total_steps),
        lr_min=min_learning_rate,
        warmup_t=whole(warmup_steps),
        warmup_lr_init=warmup_learning_rate,
        t_in_epochs=t_in_epochs,
    )


class BatchAugmentation:
    """What happens to a training batch before the forward pass: timm's Mixup/CutMix (labels become soft targets),
    then timm's RandomErasing of each mixed image. The official runs erase after mixing: timm 0.3.2's prefetching
    loader mixes in its collate function (`FastCollateMixup`) and erases the normalised batch on the GPU. Either part
    may be absent (`None`)."""

    def __init__(self, mixup=None, random_erasing=None):
        self.mixup = mixup
        self.random_erasing = random_erasing

    def __call__(self, pixel_values: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`pixel_values` (batch, 3, H, W), `labels` (batch,) -> augmented pixel values and targets (soft
        (batch, num_labels) targets with mixup, else the labels)."""
        targets = labels
        if self.mixup is not None:
            pixel_values, targets = self.mixup(pixel_values, labels)
        if self.random_erasing is not None:
            pixel_values = self.random_erasing(pixel_values)  # in place, image by image
        return pixel_values, targets


def build_batch_augmentation(args: argparse.Namespace, num_labels: int, device) -> BatchAugmentation:
    """Mixup/CutMix as configured, and random erasing when `--random_erasing_placement after_mixup` (the default;
    with `per_image` it is part of each image's transform instead, `augmentation_config`)."""
    from timm.data import Mixup
    from timm.data.random_erasing import RandomErasing

    mixup = None
    if args.mixup > 0 or args.cutmix > 0:
        mixup = Mixup(
            mixup_alpha=args.mixup,
            cutmix_alpha=args.cutmix,
            prob=args.mixup_prob,
            switch_prob=args.mixup_switch_prob,
            mode=args.mixup_mode,
            label_smoothing=args.label_smoothing,
            num_classes=num_labels,
        )
    random_erasing = None
    if args.reprob > 0 and args.random_erasing_placement == "after_mixup":
        random_erasing = RandomErasing(
            probability=args.reprob, mode=args.remode, max_count=args.recount, device=device
        )
    return BatchAugmentation(mixup, random_erasing)


def augmentation_config(args: argparse.Namespace, image_size: int, mean, std) -> AugmentationConfig:
    """The per-image training transform's settings; random erasing is in it only with
    `--random_erasing_placement per_image`."""
    return AugmentationConfig(
        image_size=image_size,
        scale=tuple(args.scale),
        ratio=tuple(args.ratio),
        hflip=args.hflip,
        color_jitter=args.color_jitter,
        auto_augment=args.auto_augment,
        interpolation=args.train_interpolation,
        re_prob=args.reprob if args.random_erasing_placement == "per_image" else 0.0,
        re_mode=args.remode,
        re_count=args.recount,
        mean=tuple(mean),
        std=tuple(std),
    )


def build_loss(mixup_active: bool, label_smoothing: float) -> nn.Module:
    from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

    if mixup_active:
        return SoftTargetCrossEntropy()  # the smoothing is in the mixed targets
    if label_smoothing > 0:
        return LabelSmoothingCrossEntropy(smoothing=label_smoothing)
    return nn.CrossEntropyLoss()


def build_model_config(
    model_type: str,
    num_labels: int,
    id2label: dict[int, str],
    image_size: int | None = None,
    drop_path_rate: float = 0.1,
    config_overrides: dict | None = None,
) -> SoftConfig:
    """Config of a model trained from scratch: an official preset (`soft-tiny` ...) or a `TRAINING_PRESETS` entry,
    with `config_overrides` (any SoftConfig field) applied last."""
    key = model_type.lower()
    arguments = dict(TRAINING_PRESETS.get(key, {}))
    arguments.update(
        num_labels=num_labels,
        id2label=dict(id2label),
        label2id={name: index for index, name in id2label.items()},
        drop_path_rate=drop_path_rate,
    )
    if image_size is not None:
        arguments["image_size"] = image_size
    arguments.update(config_overrides or {})
    if key in TRAINING_PRESETS:
        return SoftConfig(**arguments)
    if key not in [name.lower() for name in PRESET_NAMES]:
        raise ValueError(f"Unknown --model_type {model_type!r}; choose one of {MODEL_TYPES}.")
    return SoftConfig.from_preset(key, **arguments)


def default_num_workers(accelerator) -> int:
    """Data-loader workers per process: the CPUs of this machine shared by its processes, minus one for the
    training process itself, at most 8."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    local_processes = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", accelerator.num_processes)))
    return max(0, min(8, cpus // local_processes - 1))


# ----------------------------------------------------------------------------------------------------------------
# Arguments
# ----------------------------------------------------------------------------------------------------------------


def add_data_arguments(parser: argparse.ArgumentParser, evaluation_only: bool = False) -> None:
    """Data-source flags shared by training and evaluation (names follow Transformers' image-classification example)."""
    group = parser.add_argument_group("data")
    group.add_argument("--dataset_name", default=None, help="Hub dataset id or local dataset script/folder.")
    group.add_argument("--dataset_config_name", default=None)
    group.add_argument("--train_dir", default=None, help="Image folder with one sub-folder per class.")
    group.add_argument("--validation_dir", default=None, help="Image folder with one sub-folder per class.")
    group.add_argument(
        "--fashion_mnist_dir",
        default=None,
        help=f"idx files of the offline default, Fashion-MNIST (default {DEFAULT_FASHION_MNIST_DIR}, where the Debian "
        "package dataset-fashion-mnist installs them). Used when neither --dataset_name nor --train_dir is given.",
    )
    group.add_argument("--streaming", action="store_true", help="Stream a Hub dataset instead of downloading it.")
    if not evaluation_only:
        group.add_argument(
            "--shuffle_buffer_size", type=int, default=10_000, help="Shuffle buffer of a streamed training split."
        )
    group.add_argument("--image_column_name", default="image")
    group.add_argument("--label_column_name", default="label")
    group.add_argument(
        "--train_val_split",
        type=float,
        default=0.15,
        help="Fraction of the training split held out for validation when the data has no validation split.",
    )
    if not evaluation_only:
        group.add_argument("--max_train_samples", type=int, default=None, help="Train on a seeded random subset.")
    group.add_argument("--max_eval_samples", type=int, default=None, help="Evaluate on a seeded random subset.")
    group.add_argument("--cache_dir", default=None, help="Cache folder of `datasets`/Transformers downloads.")
    group.add_argument(
        "--num_workers",
        type=int,
        default=None,
        help="Data-loader workers per process (default: CPUs per process - 1).",
    )
    if evaluation_only:
        group.add_argument("--seed", type=int, default=42, help="Seed of the subset selection.")


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
            "--validation_dir needs --train_dir (evaluate a saved model with scripts/evaluate.py instead)."
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


# ----------------------------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------------------------


def list_checkpoints(output_dir: str) -> list[str]:
    """Complete checkpoints in `output_dir/checkpoints`, oldest first."""
    folder = os.path.join(output_dir, CHECKPOINTS_DIR_NAME)
    if not os.path.isdir(folder):
        return []
    found = []
    for name in os.listdir(folder):
        match = CHECKPOINT_PATTERN.match(name)
        if match and os.path.isfile(os.path.join(folder, name, TRAINING_STATE_NAME)):
            found.append((int(match.group(1)), os.path.join(folder, name)))
    return [path for _, path in sorted(found)]


def resolve_checkpoint(resume_from_checkpoint: str, output_dir: str) -> str | None:
    """The checkpoint folder to resume from, or None for 'latest' when there is none yet."""
    if resume_from_checkpoint == "latest":
        checkpoints = list_checkpoints(output_dir)
        return checkpoints[-1] if checkpoints else None
    if not os.path.isfile(os.path.join(resume_from_checkpoint, TRAINING_STATE_NAME)):
        raise ValueError(
            f"--resume_from_checkpoint {resume_from_checkpoint!r} is not a checkpoint of this script (no "
            f"{TRAINING_STATE_NAME}); pass a folder OUTPUT_DIR/{CHECKPOINTS_DIR_NAME}/step_N or 'latest'."
        )
    return resume_from_checkpoint


def save_checkpoint(accelerator, output_dir: str, state: dict, total_limit: int | None = None) -> str:
    """`accelerator.save_state` into a temporary folder, then rename it to `checkpoints/step_N` (atomic for readers:
    a folder named step_N is always complete). `state` (JSON) records the position in the data and the run setup."""
    folder = os.path.join(output_dir, CHECKPOINTS_DIR_NAME)
    final = os.path.join(folder, f"step_{state['completed_steps']}")
    staging = os.path.join(folder, f".step_{state['completed_steps']}.tmp")
    if accelerator.is_main_process:
        os.makedirs(folder, exist_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(staging)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        with open(os.path.join(staging, TRAINING_STATE_NAME), "w", encoding="utf-8") as handle:
            json.dump(state, handle, indent=2)
        if os.path.exists(final):
            shutil.rmtree(final)
        os.rename(staging, final)
        if total_limit is not None:
            for old in list_checkpoints(output_dir)[:-total_limit]:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def read_train_log(output_dir: str) -> list[dict]:
    """Per-step records of `train_log.jsonl` (step, epoch, loss, learning_rate, ...), last record per step kept."""
    path = os.path.join(output_dir, TRAIN_LOG_NAME)
    records = {}
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    record = json.loads(line)
                    records[record["step"]] = record
    return [records[step] for step in sorted(records)]


def _truncate_train_log(output_dir: str, completed_steps: int) -> None:
    """Drop log records past the resumed step (written by the interrupted run after its last checkpoint)."""
    path = os.path.join(output_dir, TRAIN_LOG_NAME)
    kept = [record for record in read_train_log(output_dir) if record["step"] <= completed_steps]
    with open(path, "w", encoding="utf-8") as handle:
        for record in kept:
            handle.write(json.dumps(record) + "\n")


# ----------------------------------------------------------------------------------------------------------------
# Model and data setup
# ----------------------------------------------------------------------------------------------------------------


def build_model_and_processor(args, label_names: list[str]):
    """The model to train (from scratch or pretrained) and its image processor (the evaluation transform)."""
    from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification

    from .image_processing_soft import SoftImageProcessor

    id2label = dict(enumerate(label_names))
    overrides = json.loads(args.config_overrides) if args.config_overrides else {}
    if args.model_name_or_path is None:
        config = build_model_config(
            args.model_type, len(label_names), id2label, args.image_size, args.drop_path_rate, overrides
        )
        from .modeling_soft import SoftForImageClassification

        model = SoftForImageClassification(config)
        image_processor = None
    else:
        pretrained_config = AutoConfig.from_pretrained(
            args.model_name_or_path, cache_dir=args.cache_dir, trust_remote_code=args.trust_remote_code
        )
        if pretrained_config.num_labels != len(label_names) and not args.ignore_mismatched_sizes:
            raise ValueError(
                f"{args.model_name_or_path} has {pretrained_config.num_labels} classes and the data has "
                f"{len(label_names)}: pass --ignore_mismatched_sizes to fine-tune with a new classifier."
            )
        config_arguments = dict(
            num_labels=len(label_names),
            id2label=id2label,
            label2id={name: index for index, name in id2label.items()},
            drop_path_rate=args.drop_path_rate,
            **overrides,
        )
        config = AutoConfig.from_pretrained(
            args.model_name_or_path,
            cache_dir=args.cache_dir,
            trust_remote_code=args.trust_remote_code,
            **config_arguments,
        )
        model = AutoModelForImageClassification.from_pretrained(
            args.model_name_or_path,
            config=config,
            cache_dir=args.cache_dir,
            ignore_mismatched_sizes=args.ignore_mismatched_sizes,
            trust_remote_code=args.trust_remote_code,
        )
        image_processor = None
        if args.image_size is None:
            try:
                image_processor = AutoImageProcessor.from_pretrained(
                    args.model_name_or_path, cache_dir=args.cache_dir, trust_remote_code=args.trust_remote_code
                )
            except (OSError, ValueError):
                image_processor = None
    if image_processor is None:
        crop = args.image_size or model.config.image_size
        image_processor = SoftImageProcessor(crop_size={"height": crop, "width": crop}, crop_pct=args.crop_pct)
    crop = dict(image_processor.crop_size)["height"]
    smallest = minimum_image_size(model.config)
    if crop < smallest:
        raise ValueError(
            f"Images of {crop}x{crop} are too small for this SOFT (landmark strides {model.config.sr_ratios[:-1]} "
            f"need at least {smallest}x{smallest}); raise --image_size or lower sr_ratios with --config_overrides."
        )
    return model, image_processor


@dataclass
class RunLayout:
    """Where a run writes: exports, checkpoints, logs."""

    output_dir: str

    @property
    def final(self) -> str:
        return os.path.join(self.output_dir, "final")

    @property
    def best(self) -> str:
        return os.path.join(self.output_dir, "best")

    @property
    def ema(self) -> str:
        return os.path.join(self.output_dir, "ema")

    @property
    def train_log(self) -> str:
        return os.path.join(self.output_dir, TRAIN_LOG_NAME)


# ----------------------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class TrainingProgress:
    """Where a run is and what it measured; saved as JSON in every checkpoint (`training_state.json`)."""

    completed_steps: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0
    epoch_finished: bool = False
    history: list = field(default_factory=list)
    best: dict = field(default_factory=lambda: {"top1_accuracy": None, "epoch": None, "step": None})
    training_seconds: float = 0.0
    train_images: int = 0
    skipped_train_images: int = 0

    @property
    def images_per_second(self) -> float:
        return self.train_images / self.training_seconds if self.training_seconds > 0 else float("nan")

    def improves_best(self, top1_accuracy: float) -> bool:
        return self.best["top1_accuracy"] is None or top1_accuracy > self.best["top1_accuracy"]


class SoftTrainer:
    """One training run as configured by `build_train_parser` flags (see the module docstring for the recipe).

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

    # Setup --------------------------------------------------------------------------------------------------------

    def _build_data_and_model(self) -> None:
        args, accelerator = self.args, self.accelerator
        with accelerator.main_process_first():
            self.data = load_image_classification_data(
                **data_source_arguments(args),
                max_train_samples=args.max_train_samples,
                trust_remote_code=args.trust_remote_code,
                shuffle_buffer_size=args.shuffle_buffer_size,
            )
        self.label_names = self.data.label_names
        self.model, self.image_processor = build_model_and_processor(args, self.label_names)
        self.image_size = dict(self.image_processor.crop_size)["height"]
        augmentation = augmentation_config(
            args, self.image_size, self.image_processor.image_mean, self.image_processor.image_std
        )
        dataset_kwargs = dict(
            image_column=self.data.image_column,
            label_column=self.data.label_column,
            label_mapping=label_mapping_to_model(self.label_names, self.model.config.id2label),
            string_labels=self.data.string_labels,
            seed=args.seed,
            blank_size=self.image_size,
        )
        dataset_class = StreamingImageClassificationDataset if self.data.streaming else ImageClassificationDataset
        self.train_dataset = dataset_class(
            self.data.split("train"), build_train_transform(augmentation), **dataset_kwargs
        )
        self.eval_dataset = dataset_class(
            self.data.split("validation"), build_eval_transform(self.image_processor), **dataset_kwargs
        )
        per_step = args.per_device_train_batch_size * accelerator.num_processes
        if not self.data.streaming and len(self.train_dataset) < per_step:
            raise ValueError(
                f"The training split has {len(self.train_dataset)} images, fewer than one batch of "
                f"{args.per_device_train_batch_size} x {accelerator.num_processes} processes; lower "
                "--per_device_train_batch_size or add data."
            )
        loader_kwargs = dict(
            collate_fn=collate_image_classification,
            num_workers=args.num_workers if args.num_workers is not None else default_num_workers(accelerator),
            pin_memory=torch.cuda.is_available(),
            generator=torch.Generator().manual_seed(args.seed),  # loader iterators leave the global RNG alone
        )
        self.train_sampler = None
        if not self.data.streaming:
            self.train_sampler = EpochShuffleSampler(len(self.train_dataset), seed=args.seed)
        self.train_dataloader = torch.utils.data.DataLoader(
            self.train_dataset,
            batch_size=args.per_device_train_batch_size,
            sampler=self.train_sampler,
            drop_last=True,
            **loader_kwargs,
        )
        self.eval_dataloader = torch.utils.data.DataLoader(
            self.eval_dataset, batch_size=args.per_device_eval_batch_size, shuffle=False, **loader_kwargs
        )

    def _build_optimization(self) -> None:
        args, accelerator = self.args, self.accelerator
        self.global_batch_size = (
            args.per_device_train_batch_size * accelerator.num_processes * args.gradient_accumulation_steps
        )
        self.learning_rate = (
            args.learning_rate
            if args.no_lr_scaling
            else linear_scaled_learning_rate(args.learning_rate, self.global_batch_size)
        )
        self.optimizer = create_optimizer(
            self.model,
            self.learning_rate,
            args.weight_decay,
            betas=(args.adam_beta1, args.adam_beta2),
            eps=args.adam_epsilon,
            exempt_position_embeddings=args.exempt_position_embeddings,
        )
        self.model, self.optimizer, self.train_dataloader, self.eval_dataloader = accelerator.prepare(
            self.model, self.optimizer, self.train_dataloader, self.eval_dataloader
        )

        if self.data.streaming:
            num_examples = _streamed_split_size(self.data.split("train"))
            if num_examples is not None and args.max_train_samples is not None:
                num_examples = min(num_examples, args.max_train_samples)
            per_step = args.per_device_train_batch_size * accelerator.num_processes
            self.batches_per_epoch = num_examples // per_step if num_examples else None
        else:
            self.batches_per_epoch = len(self.train_dataloader)
        self.steps_per_epoch = (
            math.ceil(self.batches_per_epoch / args.gradient_accumulation_steps) if self.batches_per_epoch else None
        )
        if self.steps_per_epoch is None and (
            args.max_train_steps is None or args.warmup_steps is None or args.lr_schedule_updates == "epoch"
        ):
            raise ValueError(
                "The streamed training split does not announce its size, so epochs cannot be converted to steps: "
                "pass --max_train_steps, --warmup_steps and --lr_schedule_updates step."
            )
        self.max_train_steps = args.max_train_steps or args.num_train_epochs * self.steps_per_epoch
        self.num_epochs = math.ceil(self.max_train_steps / self.steps_per_epoch) if self.steps_per_epoch else 10**9
        self.warmup_steps = (
            args.warmup_steps if args.warmup_steps is not None else round(args.warmup_epochs * self.steps_per_epoch)
        )
        min_learning_rate = args.min_learning_rate
        if min_learning_rate > self.learning_rate:
            self.logger.warning(
                "--min_learning_rate %.3g is above the peak learning rate %.3g (global batch %d): the cosine would "
                "rise; using the peak as the floor.",
                min_learning_rate,
                self.learning_rate,
                self.global_batch_size,
            )
            min_learning_rate = self.learning_rate
        if args.lr_schedule_updates == "epoch":  # lengths in (possibly fractional) epochs, as the official runs
            self.scheduler = create_lr_scheduler(
                self.optimizer,
                self.max_train_steps / self.steps_per_epoch,
                self.warmup_steps / self.steps_per_epoch if args.warmup_steps is not None else args.warmup_epochs,
                args.warmup_learning_rate,
                min_learning_rate,
                t_in_epochs=True,
            )
        else:
            self.scheduler = create_lr_scheduler(
                self.optimizer, self.max_train_steps, self.warmup_steps, args.warmup_learning_rate, min_learning_rate
            )

        self.batch_augmentation = build_batch_augmentation(args, len(self.label_names), accelerator.device)
        self.criterion = build_loss(self.batch_augmentation.mixup is not None, args.label_smoothing)

        self.ema = None
        if args.model_ema:
            from timm.utils import ModelEmaV3

            # A constant decay from the first step, as timm 0.3.2's ModelEma of the official runs.
            self.ema = ModelEmaV3(accelerator.unwrap_model(self.model), decay=args.model_ema_decay)
            accelerator.register_for_checkpointing(self.ema)
            horizon = 1 / max(1e-12, 1 - args.model_ema_decay)
            if horizon > self.max_train_steps:
                self.logger.warning(
                    "The EMA (decay %g) averages over about %d optimizer steps, more than this run's %d: its weights, "
                    "which 'best' is chosen from, stay close to the initial ones. Short runs: pass a lower "
                    "--model_ema_decay or --no_model_ema.",
                    args.model_ema_decay,
                    horizon,
                    self.max_train_steps,
                )
        self.run_setup = {
            "num_processes": accelerator.num_processes,
            "per_device_train_batch_size": args.per_device_train_batch_size,
            "gradient_accumulation_steps": args.gradient_accumulation_steps,
            "max_train_steps": self.max_train_steps,
            "seed": args.seed,
            "model_ema": args.model_ema,
        }

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
            _truncate_train_log(args.output_dir, self.progress.completed_steps)
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
            _truncate_train_log(args.output_dir, 0)  # a fresh run starts a fresh log
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

    # Evaluation, checkpoints, exports -----------------------------------------------------------------------------

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

    def save_checkpoint(self) -> str:
        state = {**dataclasses.asdict(self.progress), "setup": self.run_setup}
        return save_checkpoint(self.accelerator, self.args.output_dir, state, self.args.checkpoints_total_limit)

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


class StepAccumulator:
    """Loss, images and skipped images of the micro-batches of one optimizer step, and its duration."""

    def __init__(self, device: torch.device):
        self.loss = torch.zeros((), device=device)
        self.images = torch.zeros((), device=device, dtype=torch.long)
        self.skipped = torch.zeros((), device=device, dtype=torch.long)
        self.micro_batches = 0  # the last step of an epoch may accumulate fewer batches
        self.restart_clock()

    def add(self, loss: torch.Tensor, images: int) -> None:
        self.loss += loss
        self.images += images
        self.micro_batches += 1

    def restart_clock(self) -> None:
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start


def train(args: argparse.Namespace) -> dict:
    """Train as configured by `build_train_parser` flags (see `SoftTrainer`); returns the final results."""
    return SoftTrainer(args).train()


def _streamed_split_size(dataset) -> int | None:
    info = getattr(dataset, "info", None)
    splits = getattr(info, "splits", None) or {}
    split = getattr(dataset, "split", None)
    if split is not None and str(split) in splits:
        return splits[str(split)].num_examples
    return None


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


def main(argv: list[str] | None = None) -> dict:
    return train(parse_train_args(argv))


__all__ = [
    "MODEL_TYPES",
    "OFFICIAL_RECIPES",
    "OfficialRecipe",
    "TRAINING_PRESETS",
    "BatchAugmentation",
    "add_data_arguments",
    "apply_official_recipe",
    "augmentation_config",
    "build_batch_augmentation",
    "build_loss",
    "build_model_config",
    "build_train_parser",
    "create_lr_scheduler",
    "create_optimizer",
    "linear_scaled_learning_rate",
    "list_checkpoints",
    "main",
    "parameter_groups",
    "SoftTrainer",
    "TrainingProgress",
    "parse_train_args",
    "read_train_log",
    "resolve_checkpoint",
    "save_checkpoint",
    "train",
]
