# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""What a training run is built from: the model to train and its image processor, the datasets and data loaders,
and the optimizer, schedule, augmentation, loss and EMA of the recipe (`TrainerSetup`, a part of `SoftTrainer`).

The order in which `SoftTrainer.__init__` calls these decides which random numbers initialise the weights: keep it."""

from __future__ import annotations

import json
import math

import torch

from ...data.arguments import default_num_workers
from ...data.classification import (
    ImageClassificationDataset,
    StreamingImageClassificationDataset,
    build_eval_transform,
    build_train_transform,
    collate_image_classification,
    data_source_arguments,
    label_mapping_to_model,
    load_image_classification_data,
)
from ...data.sampling import EpochShuffleSampler
from ...models.soft.configuration_soft import PRESET_NAMES, SoftConfig
from ...models.soft.modeling_soft import minimum_image_size
from .recipe import (
    augmentation_config,
    build_batch_augmentation,
    build_loss,
    create_lr_scheduler,
    create_optimizer,
    linear_scaled_learning_rate,
)


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


def build_model_and_processor(args, label_names: list[str]):
    """The model to train (from scratch or pretrained) and its image processor (the evaluation transform)."""
    from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification

    from ...models.soft.image_processing_soft import SoftImageProcessor

    id2label = dict(enumerate(label_names))
    overrides = json.loads(args.config_overrides) if args.config_overrides else {}
    if args.model_name_or_path is None:
        config = build_model_config(
            args.model_type, len(label_names), id2label, args.image_size, args.drop_path_rate, overrides
        )
        from ...models.soft.modeling_soft import SoftForImageClassification

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


class TrainerSetup:
    """The building half of `SoftTrainer`: sets `data`, `label_names`, `model`, `image_processor`, `image_size`, the
    datasets, sampler and loaders (`_build_data_and_model`), then `optimizer`, `scheduler`, the schedule lengths,
    `batch_augmentation`, `criterion`, `ema` and `run_setup` (`_build_optimization`), on `self.args` and
    `self.accelerator`."""

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


def _streamed_split_size(dataset) -> int | None:
    info = getattr(dataset, "info", None)
    splits = getattr(info, "splits", None) or {}
    split = getattr(dataset, "split", None)
    if split is not None and str(split) in splits:
        return splits[str(split)].num_examples
    return None


__all__ = ["MODEL_TYPES", "TRAINING_PRESETS", "TrainerSetup", "build_model_and_processor", "build_model_config"]
