# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""Train UperNet with a SOFT / SOFT-Norm backbone for semantic segmentation (Accelerate).

Data (`soft_hf.data.segmentation`), one of:
- image folders: `--train_dir` (and optionally `--validation_dir`) each holding `images/` and `masks/` with the same
  relative file names (masks: one class index per pixel, 255 ignored), e.g. the output of `soft-make-scenes`;
- ADE20K as distributed: `--train_dir path/ADEChallengeData2016` (recognised by its `images/training` and
  `annotations/training`, or forced with `--dataset_layout ade20k`) trains on `training` and validates on
  `validation`; `--reduce_labels` is then on unless `--no_reduce_labels`, and class names come from
  `objectInfo150.txt/.csv` when present;
- a Hub dataset or local dataset folder: `--dataset_name scene_parse_150` (columns `image` and `annotation`, `label`
  or `semantic_map`; `--image_column_name` / `--mask_column_name` otherwise), read with `datasets` (offline from the
  cache or a local folder).
Without a validation folder or split, `--validation_split` of the training images is held out. Class names come from
`--id2label` (a JSON file `{"0": "sky", ...}`), else the source (`id2label.json` in or beside the image folder or in a
local dataset folder, ADE20K's objectInfo150), else `--num_labels`, else the masks are scanned.

Single process:      python scripts/train_segmentation.py --train_dir data/train --output_dir outputs/seg
Several GPUs:        accelerate launch scripts/train_segmentation.py ...
Fashion-MNIST scenes (`soft-make-scenes --output_dir data/scenes`):
    python scripts/train_segmentation.py --train_dir data/scenes/train --validation_dir data/scenes/val \
        --id2label data/scenes/id2label.json --crop_size 160 --output_dir outputs/scenes
ADE20K (512 crops, 160k iterations in mmseg; scale accordingly):
    python scripts/train_segmentation.py --train_dir ADEChallengeData2016 \
        --backbone soft-norm-small --pretrained_backbone soft-norm-small-imagenet/ --crop_size 512 \
        --max_train_steps 160000 --learning_rate 6e-5 --warmup_steps 1500 --max_landmarks 256

Every mask is checked against its image before training starts (size, class values, 0/255 binary masks); the
error names each bad file. `--checkpointing_steps N` saves the training state to `OUTPUT_DIR/checkpoints/step_N`
(as scripts/train.py does) and `--resume_from_checkpoint latest` continues exactly: the data order depends only on
(seed, epoch), each image's augmentation only on (seed, epoch, index), and the checkpoint restores weights,
optimizer, scheduler and random states.

`--backbone pvt_v2_b1` trains the same UperNet on Transformers' PVTv2-b1 (the peer of the comparison in the README).

The output folder holds `train_log.jsonl` (loss per step), `all_results.json` and `final/`: the model, its image
processor and `eval_results.json` (mean IoU with `evaluate`). With a SOFT backbone `final/` is a Hub-ready export
(`AutoModelForSemanticSegmentation.from_pretrained(folder, trust_remote_code=True)` and
`pipeline("image-segmentation", model=folder, trust_remote_code=True)` work without soft-hf installed);
`--push_to_hub --hub_model_id NAME` uploads it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

from ...data.segmentation import DATASET_LAYOUTS, SegmentationData, load_segmentation_data, read_id2label_file
from ..dense_training import (
    add_backbone_arguments,
    add_run_arguments,
    check_run_arguments,
    start_run,
    train_dense_model,
    training_loader,
)
from .upernet import (
    IGNORE_INDEX,
    SegmentationCollator,
    SegmentationEvalTransforms,
    SegmentationTrainTransforms,
    build_upernet,
    check_trainable_size,
    evaluate_segmentation,
    save_segmentation_model,
    segmentation_image_processor,
)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = parser.add_argument_group("data")
    data.add_argument("--train_dir", help="Folder with images/ and masks/, or an ADEChallengeData2016 root.")
    data.add_argument("--validation_dir", help="Folder with images/ and masks/ (default: split off the training set).")
    data.add_argument("--dataset_layout", choices=DATASET_LAYOUTS, default="auto", help="Layout of --train_dir.")
    data.add_argument("--dataset_name", help="Hub dataset id or local dataset folder (e.g. scene_parse_150).")
    data.add_argument("--dataset_config_name")
    data.add_argument("--train_split_name", default="train")
    data.add_argument("--validation_split_name", help="Default: validation/valid/val/test, if present.")
    data.add_argument("--image_column_name", default="image")
    data.add_argument("--mask_column_name", help="Default: annotation/label/semantic_map/..., the first present.")
    data.add_argument("--cache_dir", help="Cache folder of `datasets`.")
    data.add_argument("--validation_split", type=float, default=0.1, help="Held-out fraction if no validation data.")
    data.add_argument("--images_dir_name", default="images")
    data.add_argument("--masks_dir_name", default="masks")
    data.add_argument("--id2label", help='JSON file {"0": "name", ...}.')
    data.add_argument("--num_labels", type=int)
    data.add_argument(
        "--reduce_labels",
        action="store_true",
        default=None,
        help="ADE20K masks: 0 -> ignored, k -> k - 1 (default: on for the ADE20K layout, off otherwise).",
    )
    data.add_argument("--no_reduce_labels", dest="reduce_labels", action="store_false", help="Keep mask values.")
    data.add_argument("--ignore_index", type=int, default=IGNORE_INDEX)
    data.add_argument("--crop_size", type=int, nargs="+", default=[512], help="Training crop: S or H W.")
    data.add_argument("--base_size", type=int, help="Shorter side before random rescaling (default: crop size).")
    data.add_argument("--scale_range", type=float, nargs=2, default=[0.5, 2.0])
    data.add_argument("--cat_max_ratio", type=float, default=0.75)
    data.add_argument("--no_photometric", action="store_true", help="Disable the photometric distortion.")
    data.add_argument("--eval_size", type=int, help="Shorter side at evaluation (default: base size).")
    data.add_argument("--eval_max_size", type=int, default=2048, help="Longer side cap at evaluation.")
    data.add_argument("--num_workers", type=int, default=2)

    model = add_backbone_arguments(parser)
    model.add_argument("--decoder_hidden_size", type=int, default=512)
    model.add_argument("--auxiliary_channels", type=int, default=256)
    model.add_argument("--no_auxiliary_head", action="store_true")
    model.add_argument("--gradient_checkpointing", action="store_true", help="Checkpoint the backbone blocks.")

    model.add_argument("--head_lr_multiplier", type=float, default=10.0, help="LR factor of the decode heads.")
    add_run_arguments(parser, learning_rate=6e-5, weight_decay=0.01)
    args = parser.parse_args(argv)
    if (args.train_dir is None) == (args.dataset_name is None):
        parser.error("Pass either --train_dir (image folder or ADE20K root) or --dataset_name.")
    check_run_arguments(parser, args)
    if len(args.crop_size) not in (1, 2):
        parser.error("--crop_size takes one (square) or two (height width) integers.")
    if not 0.0 < args.validation_split < 1.0:
        parser.error("--validation_split must be in (0, 1).")
    return args


def read_id2label(args, data: SegmentationData) -> dict[int, str]:
    """Class names from --id2label, the data source, --num_labels, or the masks themselves."""
    if args.id2label:
        return read_id2label_file(args.id2label)
    if data.id2label is not None:
        return data.id2label
    if args.num_labels is not None:
        return {index: f"class_{index}" for index in range(args.num_labels)}
    values = data.train.label_values()
    if not values:
        raise ValueError(f"The masks of {data.source} hold no labelled pixel.")
    return {index: f"class_{index}" for index in range(max(values) + 1)}


def split_datasets(args, train_transform, eval_transform):
    """Training and validation sets with their transforms, and the data they come from."""
    data = load_segmentation_data(
        train_dir=args.train_dir,
        validation_dir=args.validation_dir,
        dataset_name=args.dataset_name,
        dataset_config_name=args.dataset_config_name,
        dataset_layout=args.dataset_layout,
        images_dir_name=args.images_dir_name,
        masks_dir_name=args.masks_dir_name,
        image_column_name=args.image_column_name,
        mask_column_name=args.mask_column_name,
        train_split_name=args.train_split_name,
        validation_split_name=args.validation_split_name,
        reduce_labels=args.reduce_labels,
        ignore_index=args.ignore_index,
        cache_dir=args.cache_dir,
    )
    train_set = data.train.with_transform(train_transform, seed=args.seed)
    if data.validation is not None:
        return train_set, data.validation.with_transform(eval_transform), data
    if len(train_set) < 2:
        raise ValueError("Need at least 2 images to split off a validation set; pass validation data.")
    order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(args.seed)).tolist()
    num_validation = min(len(train_set) - 1, max(1, round(args.validation_split * len(train_set))))
    validation_set = data.train.with_transform(eval_transform)
    return Subset(train_set, order[num_validation:]), Subset(validation_set, order[:num_validation]), data


def main(argv=None) -> dict:
    args = parse_args(argv)
    accelerator = start_run(args)
    crop_size = args.crop_size[0] if len(args.crop_size) == 1 else tuple(args.crop_size)
    base_size = args.base_size or min(args.crop_size)
    eval_size = args.eval_size or base_size

    image_processor = segmentation_image_processor(eval_size=eval_size, max_size=args.eval_max_size)
    train_transform = SegmentationTrainTransforms(
        crop_size=crop_size,
        base_size=base_size,
        scale_range=tuple(args.scale_range),
        cat_max_ratio=args.cat_max_ratio,
        photometric=not args.no_photometric,
        image_mean=image_processor.image_mean,
        image_std=image_processor.image_std,
        ignore_index=args.ignore_index,
    )
    train_set, validation_set, data = split_datasets(args, train_transform, SegmentationEvalTransforms(image_processor))
    train_folder = train_set.dataset if isinstance(train_set, Subset) else train_set
    id2label = read_id2label(args, data)
    # Every mask is checked now, not when a batch first needs it.
    data.train.check_masks(len(id2label))
    if data.validation is not None:
        data.validation.check_masks(len(id2label))

    model = build_upernet(
        args.backbone,
        id2label=id2label,
        pretrained_backbone=args.pretrained_backbone,
        official_variant=args.official_variant,
        max_landmarks=args.max_landmarks,
        drop_path_rate=args.drop_path_rate,
        decoder_hidden_size=args.decoder_hidden_size,
        auxiliary_channels=args.auxiliary_channels,
        use_auxiliary_head=not args.no_auxiliary_head,
        ignore_index=args.ignore_index,
    )
    check_trainable_size(model.config.backbone_config, crop_size)
    check_trainable_size(model.config.backbone_config, eval_size)
    if args.gradient_checkpointing:
        model.backbone.activation_checkpointing_enable()

    collator = SegmentationCollator(ignore_index=args.ignore_index)
    train_loader, train_sampler = training_loader(args, train_set, collator)
    validation_loader = DataLoader(
        validation_set, batch_size=args.per_device_eval_batch_size, collate_fn=collator, num_workers=args.num_workers
    )
    validation_loader = accelerator.prepare(validation_loader)

    def save_final(trained, folder: Path, results: dict) -> Path:
        return save_segmentation_model(trained, folder, image_processor, metrics=results)

    source = args.pretrained_backbone or args.backbone
    return train_dense_model(
        args,
        accelerator,
        model,
        train_loader,
        train_sampler,
        epoch_datasets=[train_folder],
        compute_loss=lambda model, batch: model(pixel_values=batch["pixel_values"], labels=batch["labels"]).loss,
        evaluate=lambda prepared_model: evaluate_segmentation(
            prepared_model, validation_loader, accelerator, args.ignore_index
        ),
        metric_name="mean_iou",
        save_final=save_final,
        description=(
            f"Training UperNet + {source}: {len(train_set)} training / {len(validation_set)} validation images, "
            f"{len(id2label)} classes"
        ),
        head_lr_multiplier=args.head_lr_multiplier,
    )

if __name__ == "__main__":
    main()
