# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""Train RT-DETR with a SOFT-Norm backbone (or PVTv2, for comparison) on a COCO-format detection dataset (Accelerate).

Data: `--train_dir` (images) with `--train_annotations` (COCO `instances_*.json`), likewise for validation; real COCO
2017 works as is (`--train_dir coco/train2017 --train_annotations coco/annotations/instances_train2017.json`), and so
does the scenes data set of `scripts/make_scenes.py`. `--dataset_name` reads a Hub dataset in the common detection
schema (`image`, `objects` with `bbox` and `category`) instead, offline from the Hub cache or a local folder.

Single process:   python scripts/train_detection.py --train_dir scenes/train/images \
                      --train_annotations scenes/annotations/instances_train.json \
                      --validation_dir scenes/val/images --validation_annotations scenes/annotations/instances_val.json \
                      --backbone soft-norm-tiny --image_size 160 --max_train_steps 2000 --output_dir outputs/det
Several GPUs:     accelerate launch scripts/train_detection.py ...
From ImageNet weights: --pretrained_backbone soft-norm-tiny-imagenet/ (a SOFT folder) or
                       --pretrained_backbone SOFT_Norm_Tiny.pth --official_variant norm (the official release).

Evaluation: COCO box mAP, mAP50, mAP75 (pycocotools' COCOeval) of the boxes mapped back to each image's own size.
`OUTPUT_DIR/final` is a Hub-ready folder: `AutoModelForObjectDetection.from_pretrained(folder, trust_remote_code=True)`
and `pipeline("object-detection", model=folder, trust_remote_code=True)` work without soft-hf installed.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import numpy as np
from torch.utils.data import Subset

from ...data.detection import CocoDetectionDataset, hub_detection_dataset
from ..dense import save_dense_model
from ..dense_training import (
    add_backbone_arguments,
    add_run_arguments,
    check_run_arguments,
    start_run,
    train_dense_model,
    training_loader,
)
from .rtdetr import (
    DetectionCollator,
    RandomHorizontalFlip,
    build_detector,
    detection_image_processor,
    evaluate_detector,
)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = parser.add_argument_group("data")
    data.add_argument("--train_dir", help="Folder of the training images (COCO file_name relative to it).")
    data.add_argument("--train_annotations", help="COCO detection json of the training images.")
    data.add_argument("--validation_dir", help="Folder of the validation images.")
    data.add_argument("--validation_annotations", help="COCO detection json of the validation images.")
    data.add_argument("--dataset_name", help="Hub dataset (id in the cache, or a local folder) instead of COCO files.")
    data.add_argument("--train_split", default="train")
    data.add_argument("--validation_split_name", default="validation", help="Split of --dataset_name to evaluate on.")
    data.add_argument(
        "--validation_split", type=float, default=0.1, help="Held-out fraction when no validation data is given."
    )
    data.add_argument("--image_size", type=int, nargs="+", default=[640], help="Training and inference size: S or H W.")
    data.add_argument("--no_flip", action="store_true", help="Disable the random horizontal flip.")
    data.add_argument("--num_workers", type=int, default=2)

    model = add_backbone_arguments(parser)
    model.add_argument("--hidden_size", type=int, default=256, help="RT-DETR d_model (and hybrid-encoder width).")
    model.add_argument("--num_queries", type=int, default=300)
    model.add_argument("--ffn_dim", type=int, default=1024, help="FFN width of the encoder and decoder layers.")
    model.add_argument("--decoder_layers", type=int, default=6)
    model.add_argument("--num_denoising", type=int, default=100)
    model.add_argument("--backbone_lr_multiplier", type=float, default=0.1, help="Backbone LR / head LR (RT-DETR).")

    add_run_arguments(parser, learning_rate=1e-4, weight_decay=1e-4)
    parser.set_defaults(lr_scheduler_type="constant_with_warmup", max_grad_norm=0.1, per_device_eval_batch_size=8)
    args = parser.parse_args(argv)
    check_run_arguments(parser, args)
    if args.dataset_name is None and not (args.train_dir and args.train_annotations):
        parser.error("Give --train_dir and --train_annotations (COCO files) or --dataset_name (Hub dataset).")
    if (args.validation_dir is None) != (args.validation_annotations is None):
        parser.error("--validation_dir and --validation_annotations go together.")
    if len(args.image_size) not in (1, 2):
        parser.error("--image_size takes one (square) or two (height width) integers.")
    return args


def load_datasets(args, train_transform):
    """(train, validation or None): detection datasets of `soft_hf.data.detection` (`.coco`, `.image_ids`, labels)."""
    if args.dataset_name is not None:
        train = hub_detection_dataset(args.dataset_name, args.train_split, transform=train_transform, seed=args.seed)
        try:
            validation = hub_detection_dataset(args.dataset_name, args.validation_split_name)
        except ValueError:
            validation = None
        return train, validation
    train = CocoDetectionDataset(args.train_dir, args.train_annotations, transform=train_transform, seed=args.seed)
    validation = None
    if args.validation_dir is not None:
        validation = CocoDetectionDataset(args.validation_dir, args.validation_annotations)
    return train, validation


def main(argv=None) -> dict:
    args = parse_args(argv)
    accelerator = start_run(args)
    train_data, validation_data = load_datasets(args, None if args.no_flip else RandomHorizontalFlip())
    train_indices = evaluation_indices = None
    evaluation_data = validation_data
    if validation_data is None:  # hold out a seeded fraction of the training images, scored without augmentation
        permutation = np.random.default_rng(args.seed).permutation(len(train_data))
        held_out = max(1, round(args.validation_split * len(train_data)))
        evaluation_indices, train_indices = np.sort(permutation[:held_out]), np.sort(permutation[held_out:])
        evaluation_data = copy.copy(train_data)
        evaluation_data.transform = None
    elif validation_data.category_ids != train_data.category_ids:
        raise ValueError(
            f"The validation categories {validation_data.category_ids} differ from the training categories "
            f"{train_data.category_ids}: both annotation files must list the same categories."
        )
    train_set = train_data if train_indices is None else Subset(train_data, train_indices.tolist())

    image_size = args.image_size[0] if len(args.image_size) == 1 else tuple(args.image_size)
    image_processor = detection_image_processor(image_size)
    model = build_detector(
        args.backbone,
        id2label=train_data.id2label,
        pretrained_backbone=args.pretrained_backbone,
        official_variant=args.official_variant,
        max_landmarks=args.max_landmarks,
        drop_path_rate=args.drop_path_rate,
        hidden_size=args.hidden_size,
        num_queries=args.num_queries,
        encoder_ffn_dim=args.ffn_dim,
        decoder_ffn_dim=args.ffn_dim,
        decoder_layers=args.decoder_layers,
        num_denoising=args.num_denoising,
    )
    train_loader, train_sampler = training_loader(
        args, train_set, DetectionCollator(image_processor, train_data.category_id_to_label)
    )

    def evaluate(prepared_model) -> dict:
        return evaluate_detector(
            prepared_model,
            evaluation_data,
            image_processor,
            indices=evaluation_indices,
            batch_size=args.per_device_eval_batch_size,
            accelerator=accelerator,
        )

    def save_final(trained, folder: Path, results: dict) -> Path:
        metrics = {key: value for key, value in results.items() if key.startswith("eval_")}
        return save_dense_model(trained, folder, image_processor, metrics)

    source = args.pretrained_backbone or args.backbone
    num_evaluated = len(evaluation_data) if evaluation_indices is None else len(evaluation_indices)
    return train_dense_model(
        args,
        accelerator,
        model,
        train_loader,
        train_sampler,
        epoch_datasets=[train_data],
        compute_loss=lambda model, batch: model(pixel_values=batch["pixel_values"], labels=batch["labels"]).loss,
        evaluate=evaluate,
        metric_name="map",
        save_final=save_final,
        description=(
            f"Training RT-DETR + {source}: {len(train_set)} training / {num_evaluated} validation images, "
            f"{train_data.num_labels} classes"
        ),
        backbone_lr_multiplier=args.backbone_lr_multiplier,
    )


if __name__ == "__main__":
    main()
