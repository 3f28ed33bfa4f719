# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""The official ImageNet recipe of SOFT image classifiers, and the optimizer, schedule, augmentation and loss built
from it.

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

The flags are in `arguments`, the loop that uses these pieces in `trainer`.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from ...data.classification import AugmentationConfig


# The official learning rates are given per 1024 images of global batch.
REFERENCE_BATCH_SIZE = 1024

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


__all__ = [
    "FALLBACK_RECIPE",
    "OFFICIAL_RECIPES",
    "RECIPE_CHOICES",
    "REFERENCE_BATCH_SIZE",
    "BatchAugmentation",
    "OfficialRecipe",
    "apply_official_recipe",
    "augmentation_config",
    "build_batch_augmentation",
    "build_loss",
    "create_lr_scheduler",
    "create_optimizer",
    "is_no_weight_decay_parameter",
    "linear_scaled_learning_rate",
    "parameter_groups",
    "recipe_preset",
]
