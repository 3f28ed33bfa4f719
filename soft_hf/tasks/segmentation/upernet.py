# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""Semantic segmentation with a SOFT / SOFT-Norm backbone: UperNet construction, the usual augmentations, batching,
prediction and mean IoU (an `evaluate` metric).

This module is part of the installed package only (it does not travel with checkpoints). A saved UperNet folder is
loaded with `UperNetForSemanticSegmentation.from_pretrained(folder)` after `import soft_hf`, which registers the
`"soft"` backbone with Transformers' Auto classes.

The data (image folders, ADE20K, Hub datasets; masks; `reduce_labels`) is in `soft_hf.data.segmentation`, whose
names this module re-exports for existing imports.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import datasets
import evaluate
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import SegformerImageProcessor, UperNetConfig, UperNetForSemanticSegmentation

from ...data.segmentation import (  # noqa: F401  (re-exported: the data once lived here)
    IGNORE_INDEX,
    SegmentationImageFolder,
    image_size_of,
    read_mask,
    reduce_labels,
)
from ...models.soft.configuration_soft import SoftConfig
from ...models.soft.configuration_soft_dense import SoftUperNetConfig
from ...models.soft.modeling_soft import minimum_image_size
from ...models.soft.modeling_soft_dense import SoftUperNetForSemanticSegmentation
from ..dense import DENSE_FEATURES, dense_backbone_config, is_soft_backbone, load_backbone_weights, save_dense_model


# The four pyramid levels UperNet consumes (strides 4, 8, 16, 32).
UPERNET_OUT_FEATURES = list(DENSE_FEATURES)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ----------------------------------------------------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------------------------------------------------


def build_upernet(
    backbone: str | SoftConfig = "soft-norm-tiny",
    *,
    num_labels: int | None = None,
    id2label: dict[int, str] | None = None,
    pretrained_backbone: str | os.PathLike | None = None,
    official_variant: str | None = None,
    max_landmarks: int | None = None,
    drop_path_rate: float | None = None,
    decoder_hidden_size: int = 512,
    auxiliary_channels: int = 256,
    use_auxiliary_head: bool = True,
    auxiliary_loss_weight: float = 0.4,
    ignore_index: int = IGNORE_INDEX,
) -> UperNetForSemanticSegmentation:
    """UperNet on a SOFT backbone (`SoftUperNetForSemanticSegmentation`, loadable with remote code) or, for
    comparisons, on Transformers' PVTv2 (`UperNetForSemanticSegmentation`).

    Args:
        backbone: a preset name (`"soft-norm-tiny"` ... `"soft-huge"`, see `SoftConfig.from_preset`), a
            `SoftConfig`, a SOFT `config.json` file or a folder holding one (architecture only, random weights),
            or a PVTv2 name (`"pvt_v2_b1"`, see `soft_hf.tasks.backbones.PVT_V2_PRESETS`) / `PvtV2Config`.
            Ignored when `pretrained_backbone` is given, whose checkpoint sets the architecture.
        num_labels / id2label: the segmentation classes (one of them is required).
        pretrained_backbone: a saved/exported SOFT model folder or an official `.pth` whose encoder weights
            initialise the backbone (an ImageNet classification checkpoint, typically).
        official_variant: `"plain"` or `"norm"`, for an official `.pth`.
        max_landmarks: bound the landmarks of every SOFT stage (memory linear in pixels at high resolution).
        drop_path_rate: stochastic depth of the backbone (`None` keeps the config's).
        decoder_hidden_size: channels of the UperNet decoder (512 in the mmsegmentation configs).
        auxiliary_channels / use_auxiliary_head / auxiliary_loss_weight: the FCN auxiliary head on stage 3.
        ignore_index: label value ignored by the loss.
    """
    if id2label is not None:
        id2label = {int(index): str(name) for index, name in id2label.items()}
        if sorted(id2label) != list(range(len(id2label))):
            raise ValueError(f"`id2label` keys must be 0 .. num_labels - 1, got {sorted(id2label)}.")
        if num_labels is not None and num_labels != len(id2label):
            raise ValueError(f"`num_labels`={num_labels} disagrees with the {len(id2label)} entries of `id2label`.")
        num_labels = len(id2label)
    if num_labels is None or num_labels < 2:
        raise ValueError(f"Semantic segmentation needs `num_labels` >= 2 (or an `id2label`), got {num_labels}.")
    if id2label is None:
        id2label = {index: f"class_{index}" for index in range(num_labels)}

    backbone_state_dict = None
    if pretrained_backbone is not None:
        source_config, backbone_state_dict = load_backbone_weights(
            pretrained_backbone, official_variant, UPERNET_OUT_FEATURES
        )
        backbone = source_config
    backbone_config = dense_backbone_config(
        backbone, UPERNET_OUT_FEATURES, max_landmarks=max_landmarks, drop_path_rate=drop_path_rate
    )
    config_class, model_class = UperNetConfig, UperNetForSemanticSegmentation
    if is_soft_backbone(backbone_config):
        config_class, model_class = SoftUperNetConfig, SoftUperNetForSemanticSegmentation

    config = config_class(
        backbone_config=backbone_config,
        hidden_size=decoder_hidden_size,
        auxiliary_channels=auxiliary_channels,
        use_auxiliary_head=use_auxiliary_head,
        auxiliary_loss_weight=auxiliary_loss_weight,
        loss_ignore_index=ignore_index,
        num_labels=num_labels,
        id2label=id2label,
        label2id={name: index for index, name in id2label.items()},
    )
    model = model_class(config)
    if backbone_state_dict is not None:
        model.backbone.load_state_dict(backbone_state_dict, strict=True)
    return model


def segmentation_image_processor(
    eval_size: int = 512,
    max_size: int | None = 2048,
    image_mean: Sequence[float] = IMAGENET_MEAN,
    image_std: Sequence[float] = IMAGENET_STD,
) -> SegformerImageProcessor:
    """Inference preprocessing saved with a segmentation model and used for its evaluation: keep the aspect ratio,
    resize the shorter side to `eval_size` (the longer capped at `max_size`), bilinear, normalise."""
    size = {"shortest_edge": int(eval_size)}
    if max_size is not None:
        if max_size < eval_size:
            raise ValueError(f"`max_size` ({max_size}) must be at least `eval_size` ({eval_size}).")
        size["longest_edge"] = int(max_size)
    return SegformerImageProcessor(
        do_resize=True,
        size=size,
        resample=Image.Resampling.BILINEAR,
        do_rescale=True,
        do_normalize=True,
        image_mean=list(image_mean),
        image_std=list(image_std),
        do_reduce_labels=False,
    )


def save_segmentation_model(
    model: UperNetForSemanticSegmentation,
    output_dir: str | os.PathLike,
    image_processor: SegformerImageProcessor | None = None,
    metrics: dict | None = None,
    overwrite: bool = True,
) -> Path:
    """Write model, image processor (default: `segmentation_image_processor()`) and metrics (`eval_results.json`) to
    `output_dir` atomically; a UperNet on SOFT as a Hub-ready export (`soft_hf.tasks.dense.save_dense_model`)."""
    if image_processor is None:
        image_processor = segmentation_image_processor()
    return save_dense_model(model, output_dir, image_processor, metrics=metrics, overwrite=overwrite)


# ----------------------------------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------------------------------


def image_to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> float tensor `(3, height, width)` in [0, 1]."""
    array = np.asarray(image, dtype=np.uint8)  # (height, width, 3)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)


def resize_pair(image: torch.Tensor, mask: torch.Tensor, height: int, width: int):
    """Bilinear (antialiased) image `(3, H, W)`, nearest-neighbour mask `(H, W)` to `(height, width)`."""
    image = F.interpolate(image[None], size=(height, width), mode="bilinear", align_corners=False, antialias=True)[0]
    # class indices stay exact as float32 (< 2^24)
    mask = F.interpolate(mask[None, None].float(), size=(height, width), mode="nearest")[0, 0].long()
    return image.clamp_(0.0, 1.0), mask


def rgb_to_hsv(image: torch.Tensor) -> torch.Tensor:
    """`(3, H, W)` RGB in [0, 1] -> HSV in [0, 1]."""
    red, green, blue = image
    maximum, _ = image.max(0)
    minimum, _ = image.min(0)
    delta = maximum - minimum
    safe_delta = torch.where(delta > 0, delta, torch.ones_like(delta))
    hue = torch.where(
        maximum == red,
        ((green - blue) / safe_delta) % 6,
        torch.where(maximum == green, (blue - red) / safe_delta + 2, (red - green) / safe_delta + 4),
    )
    hue = torch.where(delta > 0, hue / 6.0, torch.zeros_like(hue))
    saturation = torch.where(maximum > 0, delta / torch.where(maximum > 0, maximum, torch.ones_like(maximum)), 0.0)
    return torch.stack((hue, saturation, maximum))


def hsv_to_rgb(image: torch.Tensor) -> torch.Tensor:
    """`(3, H, W)` HSV in [0, 1] -> RGB in [0, 1]."""
    hue, saturation, value = image
    sector = hue * 6.0
    index = torch.floor(sector) % 6
    fraction = sector - torch.floor(sector)
    p = value * (1 - saturation)
    q = value * (1 - saturation * fraction)
    t = value * (1 - saturation * (1 - fraction))
    choices = [(value, t, p), (q, value, p), (p, value, t), (p, q, value), (t, p, value), (value, p, q)]
    red, green, blue = (torch.zeros_like(value) for _ in range(3))
    for sector_index, (r, g, b) in enumerate(choices):
        selected = index == sector_index
        red = torch.where(selected, r, red)
        green = torch.where(selected, g, green)
        blue = torch.where(selected, b, blue)
    return torch.stack((red, green, blue))


def photometric_distortion(
    image: torch.Tensor,
    brightness_delta: float = 32 / 255,
    contrast_range: tuple[float, float] = (0.5, 1.5),
    saturation_range: tuple[float, float] = (0.5, 1.5),
    hue_delta: float = 18 / 360,
) -> torch.Tensor:
    """mmsegmentation's PhotoMetricDistortion on a `(3, H, W)` image in [0, 1]: random brightness, contrast (before or
    after the colour changes), saturation and hue, each applied with probability 1/2."""

    def coin() -> bool:
        return bool(torch.rand(()) < 0.5)

    def uniform(low: float, high: float) -> float:
        return float(low + (high - low) * torch.rand(()))

    def contrast(img: torch.Tensor) -> torch.Tensor:
        return img * uniform(*contrast_range) if coin() else img

    if coin():
        image = image + uniform(-brightness_delta, brightness_delta)
    contrast_first = coin()
    if contrast_first:
        image = contrast(image).clamp(0.0, 1.0)
    change_saturation, change_hue = coin(), coin()
    if change_saturation or change_hue:
        hsv = rgb_to_hsv(image.clamp(0.0, 1.0))
        if change_saturation:
            hsv[1] = (hsv[1] * uniform(*saturation_range)).clamp(0.0, 1.0)
        if change_hue:
            hsv[0] = (hsv[0] + uniform(-hue_delta, hue_delta)) % 1.0
        image = hsv_to_rgb(hsv)
    if not contrast_first:
        image = contrast(image)
    return image.clamp(0.0, 1.0)


class SegmentationTrainTransforms:
    """Training augmentation of mmsegmentation's ADE20K/Cityscapes pipelines: random rescale (ratio in
    `scale_range` of a base size whose shorter side is `base_size`, longer side at most `max_size`), random crop of
    `crop_size` in which no class covers more than `cat_max_ratio` of the labelled pixels (10 tries), horizontal
    flip, photometric distortion, normalisation, padding to `crop_size` (image with 0, mask with `ignore_index`).

    Call with an RGB PIL image and an int64 mask `(H, W)`; returns `{"pixel_values": (3, h, w), "labels": (h, w)}`.
    Randomness comes from torch's generator (seeded per DataLoader worker).
    """

    def __init__(
        self,
        crop_size: int | tuple[int, int] = 512,
        base_size: int | None = None,
        max_size: int | None = None,
        scale_range: tuple[float, float] = (0.5, 2.0),
        cat_max_ratio: float = 0.75,
        flip_probability: float = 0.5,
        photometric: bool = True,
        image_mean: Sequence[float] = IMAGENET_MEAN,
        image_std: Sequence[float] = IMAGENET_STD,
        ignore_index: int = IGNORE_INDEX,
    ):
        self.crop_height, self.crop_width = (crop_size, crop_size) if isinstance(crop_size, int) else crop_size
        self.base_size = base_size if base_size is not None else min(self.crop_height, self.crop_width)
        self.max_size = max_size if max_size is not None else 4 * self.base_size
        if not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"`scale_range` must be (low, high) with 0 < low <= high, got {scale_range}.")
        self.scale_range = scale_range
        self.cat_max_ratio = cat_max_ratio
        self.flip_probability = flip_probability
        self.photometric = photometric
        self.image_mean = torch.tensor(image_mean, dtype=torch.float32).view(3, 1, 1)
        self.image_std = torch.tensor(image_std, dtype=torch.float32).view(3, 1, 1)
        self.ignore_index = ignore_index

    def random_scale_size(self, height: int, width: int) -> tuple[int, int]:
        low, high = self.scale_range
        ratio = low + (high - low) * float(torch.rand(()))
        # base rescale: shorter side to base_size, longer side capped at max_size (mmseg's keep-ratio scale)
        base = min(self.base_size / min(height, width), self.max_size / max(height, width))
        scale = base * ratio
        return max(1, int(height * scale + 0.5)), max(1, int(width * scale + 0.5))

    def random_crop_box(self, mask: torch.Tensor) -> tuple[int, int, int, int]:
        height, width = mask.shape
        crop_height, crop_width = min(self.crop_height, height), min(self.crop_width, width)
        for _ in range(10):
            top = int(torch.randint(0, height - crop_height + 1, ()))
            left = int(torch.randint(0, width - crop_width + 1, ()))
            if self.cat_max_ratio >= 1.0:
                break
            crop = mask[top : top + crop_height, left : left + crop_width]
            counts = torch.unique(crop[crop != self.ignore_index], return_counts=True)[1]
            if len(counts) > 1 and counts.max() / counts.sum() < self.cat_max_ratio:
                break
        return top, left, crop_height, crop_width

    def __call__(self, image: Image.Image, mask: np.ndarray) -> dict[str, torch.Tensor]:
        pixels = image_to_tensor(image)  # (3, H, W)
        labels = torch.as_tensor(mask, dtype=torch.long)  # (H, W)
        height, width = self.random_scale_size(*labels.shape)
        pixels, labels = resize_pair(pixels, labels, height, width)
        top, left, crop_height, crop_width = self.random_crop_box(labels)
        pixels = pixels[:, top : top + crop_height, left : left + crop_width]
        labels = labels[top : top + crop_height, left : left + crop_width]
        if float(torch.rand(())) < self.flip_probability:
            pixels, labels = pixels.flip(-1), labels.flip(-1)
        if self.photometric:
            pixels = photometric_distortion(pixels)
        pixels = (pixels - self.image_mean) / self.image_std
        pad_bottom, pad_right = self.crop_height - crop_height, self.crop_width - crop_width
        if pad_bottom or pad_right:
            pixels = F.pad(pixels, (0, pad_right, 0, pad_bottom), value=0.0)
            labels = F.pad(labels, (0, pad_right, 0, pad_bottom), value=self.ignore_index)
        return {"pixel_values": pixels.contiguous(), "labels": labels.contiguous()}


class SegmentationEvalTransforms:
    """Evaluation: the model's image processor (keep-ratio resize, normalise) on the image; the mask is kept at its
    original resolution, since predictions are upsampled to it before scoring."""

    def __init__(self, image_processor: SegformerImageProcessor):
        self.image_processor = image_processor

    def __call__(self, image: Image.Image, mask: np.ndarray) -> dict[str, torch.Tensor]:
        pixel_values = self.image_processor(images=image, return_tensors="pt")["pixel_values"][0]  # (3, h, w)
        return {"pixel_values": pixel_values, "labels": torch.as_tensor(mask, dtype=torch.long)}


class SegmentationCollator:
    """Stack samples of possibly different sizes: images are zero-padded at the bottom/right to the largest in the
    batch, masks padded with `ignore_index`. `image_sizes` / `label_sizes` `(batch, 2)` keep the unpadded sizes."""

    def __init__(self, ignore_index: int = IGNORE_INDEX):
        self.ignore_index = ignore_index

    def __call__(self, samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        image_sizes = torch.tensor([sample["pixel_values"].shape[-2:] for sample in samples])
        label_sizes = torch.tensor([sample["labels"].shape[-2:] for sample in samples])
        max_image, max_label = image_sizes.amax(0).tolist(), label_sizes.amax(0).tolist()
        pixel_values = torch.zeros(len(samples), samples[0]["pixel_values"].shape[0], *max_image)
        labels = torch.full((len(samples), *max_label), self.ignore_index, dtype=torch.long)
        for index, sample in enumerate(samples):
            height, width = sample["pixel_values"].shape[-2:]
            pixel_values[index, :, :height, :width] = sample["pixel_values"]
            height, width = sample["labels"].shape
            labels[index, :height, :width] = sample["labels"]
        return {"pixel_values": pixel_values, "labels": labels, "image_sizes": image_sizes, "label_sizes": label_sizes}


def check_trainable_size(config: SoftConfig, crop_size: int | tuple[int, int]) -> None:
    """Raise a `ValueError` when crops are smaller than the backbone accepts."""
    smallest = minimum_image_size(config)
    crop = (crop_size, crop_size) if isinstance(crop_size, int) else crop_size
    if min(crop) < smallest:
        raise ValueError(f"Crop {crop} is too small for this SOFT backbone: use crops of at least {smallest} pixels.")


# ----------------------------------------------------------------------------------------------------------------------
# Prediction and mean IoU
# ----------------------------------------------------------------------------------------------------------------------


def predict_label_maps(
    logits: torch.Tensor, image_sizes: torch.Tensor, label_sizes: torch.Tensor, fill_value: int = IGNORE_INDEX
) -> torch.Tensor:
    """Class maps at the masks' resolution from logits of a padded batch.

    Each sample's logits `(num_labels, H, W)` are cropped to its unpadded image size, upsampled bilinearly to its
    mask size and arg-maxed. Returns `(batch, max mask height, max mask width)`; padding holds `fill_value`.
    """
    batch_size = logits.shape[0]
    max_height, max_width = label_sizes.amax(0).tolist()
    predictions = torch.full((batch_size, max_height, max_width), fill_value, dtype=torch.long, device=logits.device)
    for index in range(batch_size):
        image_height, image_width = image_sizes[index].tolist()
        label_height, label_width = label_sizes[index].tolist()
        sample_logits = logits[index : index + 1, :, :image_height, :image_width]
        sample_logits = F.interpolate(
            sample_logits.float(), size=(label_height, label_width), mode="bilinear", align_corners=False
        )
        predictions[index, :label_height, :label_width] = sample_logits[0].argmax(0)
    return predictions


def intersection_and_union(
    predictions: Iterable[np.ndarray], references: Iterable[np.ndarray], num_labels: int, ignore_index: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-class pixel counts summed over image pairs: intersection, union, predicted and reference areas.
    Reference pixels equal to `ignore_index` are skipped; predicted values outside [0, num_labels) count for no
    class."""
    totals = np.zeros((4, num_labels), dtype=np.float64)
    for prediction, reference in zip(predictions, references):
        prediction, reference = np.asarray(prediction).ravel(), np.asarray(reference).ravel()
        if prediction.shape != reference.shape:
            raise ValueError(f"Prediction and reference sizes differ: {prediction.shape} vs {reference.shape}.")
        keep = reference != ignore_index
        prediction, reference = prediction[keep], reference[keep]
        in_range = (prediction >= 0) & (prediction < num_labels)
        area_prediction = np.bincount(prediction[in_range], minlength=num_labels)[:num_labels]
        valid_reference = (reference >= 0) & (reference < num_labels)
        area_reference = np.bincount(reference[valid_reference], minlength=num_labels)[:num_labels]
        hits = prediction[(prediction == reference) & in_range]
        area_intersection = np.bincount(hits, minlength=num_labels)[:num_labels]
        totals += np.stack(
            (area_intersection, area_prediction + area_reference - area_intersection, area_prediction, area_reference)
        )
    return tuple(totals)


def mean_iou_from_areas(area_intersection, area_union, area_prediction, area_reference) -> dict:
    """mIoU, mean class accuracy and pixel accuracy as in mmsegmentation (classes absent from both are NaN and left
    out of the means)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = area_intersection / area_union
        accuracy = area_intersection / area_reference
        overall = area_intersection.sum() / area_reference.sum()
    return {
        "mean_iou": float(np.nanmean(iou)) if not np.all(np.isnan(iou)) else float("nan"),
        "mean_accuracy": float(np.nanmean(accuracy)) if not np.all(np.isnan(accuracy)) else float("nan"),
        "overall_accuracy": float(overall),
        "per_category_iou": iou,
        "per_category_accuracy": accuracy,
    }


class MeanIoU(evaluate.Metric):
    """Mean Intersection-over-Union as an `evaluate` metric, with the inputs and outputs of the Hub's `mean_iou`
    (mmsegmentation's definition) but computed here, so it works offline.

    `add_batch(predictions=..., references=...)` with `(height, width)` integer class maps (any sizes), then
    `compute(num_labels=..., ignore_index=255)` -> `mean_iou`, `mean_accuracy`, `overall_accuracy`,
    `per_category_iou`, `per_category_accuracy` (NaN for classes absent from both, left out of the means).
    """

    def _info(self) -> evaluate.MetricInfo:
        label_map = datasets.Sequence(datasets.Sequence(datasets.Value("int32")))
        return evaluate.MetricInfo(
            description="Mean Intersection-over-Union of semantic segmentation maps (mmsegmentation convention).",
            citation="",
            inputs_description="predictions, references: lists of (height, width) integer class maps.",
            features=datasets.Features({"predictions": label_map, "references": label_map}),
        )

    def _compute(self, predictions, references, num_labels: int, ignore_index: int = IGNORE_INDEX) -> dict:
        if len(references) == 0:
            raise ValueError("No segmentation maps to score: the evaluation data is empty.")
        areas = intersection_and_union(
            (np.asarray(item, dtype=np.int64) for item in predictions),
            (np.asarray(item, dtype=np.int64) for item in references),
            num_labels,
            ignore_index,
        )
        return mean_iou_from_areas(*areas)


@torch.no_grad()
def evaluate_segmentation(
    model: UperNetForSemanticSegmentation,
    dataloader,
    accelerator=None,
    ignore_index: int | None = None,
) -> dict:
    """Mean IoU of `model` over `dataloader` (batches from `SegmentationCollator`), gathered across processes when an
    `accelerate.Accelerator` is given. Scores are computed at each mask's own resolution."""
    was_training = model.training
    model.eval()
    num_labels = (accelerator.unwrap_model(model) if accelerator is not None else model).config.num_labels
    if ignore_index is None:
        ignore_index = (accelerator.unwrap_model(model) if accelerator is not None else model).config.loss_ignore_index
    # the metric's Arrow cache lives in a private temporary folder: no files left behind, no clash between runs
    with tempfile.TemporaryDirectory(prefix="soft-mean-iou-") as cache_dir:
        metric = MeanIoU(cache_dir=cache_dir)
        for batch in dataloader:
            logits = model(pixel_values=batch["pixel_values"]).logits  # (batch, num_labels, h, w)
            predictions = predict_label_maps(
                logits, batch["image_sizes"], batch["label_sizes"], fill_value=ignore_index
            )  # (batch, max mask height, max mask width)
            references, label_sizes = batch["labels"], batch["label_sizes"]
            if accelerator is not None:
                predictions = accelerator.pad_across_processes(predictions, dim=1, pad_index=ignore_index)
                predictions = accelerator.pad_across_processes(predictions, dim=2, pad_index=ignore_index)
                references = accelerator.pad_across_processes(references, dim=1, pad_index=ignore_index)
                references = accelerator.pad_across_processes(references, dim=2, pad_index=ignore_index)
                predictions, references, label_sizes = accelerator.gather_for_metrics(
                    (predictions, references, label_sizes)
                )
            predictions, references = predictions.cpu().numpy(), references.cpu().numpy()
            sizes = label_sizes.cpu().tolist()
            metric.add_batch(
                predictions=[predictions[i, :h, :w] for i, (h, w) in enumerate(sizes)],
                references=[references[i, :h, :w] for i, (h, w) in enumerate(sizes)],
            )
        results = metric.compute(num_labels=num_labels, ignore_index=ignore_index)
    model.train(was_training)
    return results


__all__ = [
    "IGNORE_INDEX",
    "UPERNET_OUT_FEATURES",
    "SegmentationCollator",
    "SegmentationEvalTransforms",
    "SegmentationImageFolder",
    "SegmentationTrainTransforms",
    "build_upernet",
    "check_trainable_size",
    "evaluate_segmentation",
    "image_size_of",
    "intersection_and_union",
    "MeanIoU",
    "mean_iou_from_areas",
    "photometric_distortion",
    "predict_label_maps",
    "read_mask",
    "reduce_labels",
    "save_segmentation_model",
    "segmentation_image_processor",
]
