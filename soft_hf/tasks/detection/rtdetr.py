# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""Object detection with a SOFT-Norm backbone: Transformers' RT-DETR, its image processor, training batches and the
COCO box metrics (pycocotools' `COCOeval`).

Why RT-DETR: of the two DETR-family detectors of Transformers that take any `backbone_config` (RT-DETR, Deformable
DETR), RT-DETR converges in far fewer steps (IoU-aware query selection, denoising queries, a hybrid encoder; Zhao et
al., CVPR 2024), which is what a few minutes on two CPU cores allow. The paper's COCO numbers use RetinaNet and Mask
R-CNN (mmdetection), which Transformers does not have; SOFT-Norm feeds RT-DETR the same stride-8/16/32 maps that
RetinaNet's FPN takes (stages 2-4).
"""

from __future__ import annotations

import contextlib
import io
import os
import random
from collections.abc import Sequence

import torch
from PIL import Image
from transformers import RTDetrConfig, RTDetrForObjectDetection, RTDetrImageProcessor

from ...models.soft.configuration_soft_dense import SoftRTDetrConfig
from ...models.soft.modeling_soft_dense import SoftRTDetrForObjectDetection
from ..dense import dense_backbone_config, is_soft_backbone, load_backbone_weights


# RT-DETR reads stride-8/16/32 maps (RetinaNet's FPN levels).
DETECTION_OUT_FEATURES = ["stage2", "stage3", "stage4"]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
COCO_METRIC_NAMES = (
    "map",
    "map_50",
    "map_75",
    "map_small",
    "map_medium",
    "map_large",
    "mar_1",
    "mar_10",
    "mar_100",
    "mar_small",
    "mar_medium",
    "mar_large",
)


# ----------------------------------------------------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------------------------------------------------


def build_detector(
    backbone: str | os.PathLike = "soft-norm-tiny",
    *,
    id2label: dict[int, str],
    pretrained_backbone: str | os.PathLike | None = None,
    official_variant: str | None = None,
    max_landmarks: int | None = None,
    drop_path_rate: float | None = None,
    hidden_size: int = 256,
    num_queries: int = 300,
    encoder_ffn_dim: int = 1024,
    decoder_ffn_dim: int = 1024,
    decoder_layers: int = 6,
    num_denoising: int = 100,
    freeze_backbone_batch_norms: bool | None = None,
) -> RTDetrForObjectDetection:
    """RT-DETR on a SOFT backbone (`SoftRTDetrForObjectDetection`, loadable with remote code) or, for comparisons, on
    Transformers' PVTv2 (`RTDetrForObjectDetection`).

    Args:
        backbone: a SOFT preset (`"soft-norm-tiny"` ...), a SOFT config file/folder, or a PVTv2 name
            (`"pvt_v2_b1"`); ignored when `pretrained_backbone` is given.
        id2label: the classes, `{0: "name", ...}` (contiguous label ids; see the dataset's category mapping).
        pretrained_backbone: a saved/exported SOFT model folder or an official `.pth` (then `official_variant`,
            `"norm"` for SOFT-Norm) whose encoder initialises the backbone.
        max_landmarks: bound the landmarks of every SOFT stage (memory linear in the pixel count).
        hidden_size / num_queries / encoder_ffn_dim / decoder_ffn_dim / decoder_layers / num_denoising: RT-DETR's
            `d_model` (= hybrid-encoder width), queries and depths; the defaults are RT-DETR's.
        freeze_backbone_batch_norms: RT-DETR's frozen BatchNorm (default: frozen only for a pretrained backbone).
    """
    id2label = {int(index): str(name) for index, name in id2label.items()}
    if sorted(id2label) != list(range(len(id2label))) or not id2label:
        raise ValueError(f"`id2label` keys must be 0 .. num_labels - 1, got {sorted(id2label)}.")
    backbone_state_dict = None
    if pretrained_backbone is not None:
        backbone, backbone_state_dict = load_backbone_weights(
            pretrained_backbone, official_variant, DETECTION_OUT_FEATURES
        )
    backbone_config = dense_backbone_config(
        backbone, DETECTION_OUT_FEATURES, max_landmarks=max_landmarks, drop_path_rate=drop_path_rate
    )
    config_class, model_class = RTDetrConfig, RTDetrForObjectDetection
    if is_soft_backbone(backbone_config):
        config_class, model_class = SoftRTDetrConfig, SoftRTDetrForObjectDetection
    # stage k has hidden_sizes[k - 1] channels, in SOFT as in PVTv2.
    channels = [backbone_config.hidden_sizes[int(name.removeprefix("stage")) - 1] for name in DETECTION_OUT_FEATURES]
    if freeze_backbone_batch_norms is None:
        freeze_backbone_batch_norms = pretrained_backbone is not None
    config = config_class(
        backbone_config=backbone_config,
        freeze_backbone_batch_norms=freeze_backbone_batch_norms,
        encoder_in_channels=channels,
        feat_strides=[8, 16, 32],
        encoder_hidden_dim=hidden_size,
        d_model=hidden_size,
        decoder_in_channels=[hidden_size] * 3,
        encoder_ffn_dim=encoder_ffn_dim,
        decoder_ffn_dim=decoder_ffn_dim,
        decoder_layers=decoder_layers,
        num_queries=num_queries,
        num_denoising=num_denoising,
        num_labels=len(id2label),
        id2label=id2label,
        label2id={name: index for index, name in id2label.items()},
    )
    model = model_class(config)
    if backbone_state_dict is not None:
        model.model.backbone.model.load_state_dict(backbone_state_dict, strict=True)
    return model


def detection_image_processor(image_size: int | Sequence[int] = 640) -> RTDetrImageProcessor:
    """RT-DETR's processor as a SOFT/PVTv2 backbone needs it: resize to `image_size` (square, or height width) and
    normalise with the ImageNet statistics (RT-DETR's own ResNet skips the normalisation)."""
    height, width = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    return RTDetrImageProcessor(
        size={"height": int(height), "width": int(width)},
        do_normalize=True,
        image_mean=list(IMAGENET_MEAN),
        image_std=list(IMAGENET_STD),
    )


# ----------------------------------------------------------------------------------------------------------------------
# Batches
# ----------------------------------------------------------------------------------------------------------------------


class RandomHorizontalFlip:
    """Training augmentation of a detection item (`{"image", "image_id", "annotations"}` with COCO `bbox`
    [x, y, w, h]): a horizontal flip with probability `probability`. Run it as a dataset's seeded `transform`
    (`CocoDetectionDataset(..., transform=RandomHorizontalFlip(), seed=...)`): the draw then depends only on
    (seed, epoch, index), so a resumed run sees the same images."""

    def __init__(self, probability: float = 0.5):
        self.probability = probability

    def __call__(self, item: dict) -> dict:
        if random.random() >= self.probability:
            return item
        image = item["image"].transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        annotations = []
        for annotation in item["annotations"]:
            x, y, w, h = annotation["bbox"]
            annotations.append({**annotation, "bbox": [image.width - x - w, y, w, h]})
        return {**item, "image": image, "annotations": annotations}


class DetectionCollator:
    """Detection items to `pixel_values` and RT-DETR `labels` (contiguous class labels, normalised cx, cy, w, h
    boxes) through the detector's image processor, as at inference. Crowd annotations are left out."""

    def __init__(self, image_processor: RTDetrImageProcessor, category_id_to_label: dict[int, int]):
        self.image_processor = image_processor
        self.category_id_to_label = dict(category_id_to_label)

    def __call__(self, samples: list[dict]) -> dict:
        annotations = [
            {
                "image_id": sample["image_id"],
                "annotations": [
                    {**annotation, "category_id": self.category_id_to_label[annotation["category_id"]]}
                    for annotation in sample["annotations"]
                    if not annotation.get("iscrowd", 0)
                ],
            }
            for sample in samples
        ]
        encoding = self.image_processor(
            images=[sample["image"] for sample in samples], annotations=annotations, return_tensors="pt"
        )
        return {"pixel_values": encoding["pixel_values"], "labels": encoding["labels"]}


# ----------------------------------------------------------------------------------------------------------------------
# COCO metrics
# ----------------------------------------------------------------------------------------------------------------------


def coco_detection_metrics(coco_ground_truth, detections: list[dict], image_ids=None) -> dict[str, float]:
    """Box AP/AR of `detections` (COCO result dicts: image_id, category_id, bbox [x, y, w, h], score) against a
    pycocotools `COCO` ground truth, computed by pycocotools' `COCOeval` over `image_ids` (default: all images).

    Returns `map` (AP@[.50:.95]), `map_50`, `map_75`, `map_small/medium/large` and the `mar_*` recalls; -1 where
    the ground truth has no objects of that kind."""
    from pycocotools.cocoeval import COCOeval

    image_ids = sorted(coco_ground_truth.getImgIds() if image_ids is None else (int(i) for i in image_ids))
    if not detections:
        return {name: 0.0 for name in COCO_METRIC_NAMES}
    with contextlib.redirect_stdout(io.StringIO()):
        predictions = coco_ground_truth.loadRes([dict(detection) for detection in detections])
        evaluator = COCOeval(coco_ground_truth, predictions, iouType="bbox")
        evaluator.params.imgIds = image_ids
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {name: float(value) for name, value in zip(COCO_METRIC_NAMES, evaluator.stats)}


@torch.no_grad()
def evaluate_detector(
    model: torch.nn.Module,
    dataset,
    image_processor: RTDetrImageProcessor,
    indices: Sequence[int] | None = None,
    batch_size: int = 8,
    accelerator=None,
) -> dict[str, float]:
    """COCO box metrics of `model` on the images `indices` (default: all) of a detection dataset
    (`soft_hf.data.detection`: items `{"image", "image_id", ...}`, `.coco`, `.to_coco_results`), images
    preprocessed by the saved `image_processor`, boxes mapped back to each image's own size. With an `accelerator`,
    each process scores its share of the images and the detections are gathered."""
    was_training = model.training
    model.eval()
    indices = list(range(len(dataset))) if indices is None else [int(index) for index in indices]
    image_ids = [dataset.image_ids[index] for index in indices]
    mine = indices
    if accelerator is not None and accelerator.num_processes > 1:
        mine = indices[accelerator.process_index :: accelerator.num_processes]
    device = next(model.parameters()).device
    detections = []
    for first in range(0, len(mine), batch_size):
        items = [dataset[index] for index in mine[first : first + batch_size]]
        images = [item["image"] for item in items]
        inputs = image_processor(images=images, return_tensors="pt").to(device)
        outputs = model(pixel_values=inputs["pixel_values"])
        results = image_processor.post_process_object_detection(
            outputs, threshold=0.0, target_sizes=[(image.height, image.width) for image in images]
        )
        for item, result in zip(items, results):
            detections += dataset.to_coco_results(item["image_id"], result["boxes"], result["scores"], result["labels"])
    if accelerator is not None and accelerator.num_processes > 1:
        from accelerate.utils import gather_object

        detections = gather_object(detections)
    model.train(was_training)
    return coco_detection_metrics(dataset.coco, detections, image_ids)


__all__ = [
    "DETECTION_OUT_FEATURES",
    "DetectionCollator",
    "RandomHorizontalFlip",
    "build_detector",
    "coco_detection_metrics",
    "detection_image_processor",
    "evaluate_detector",
]
