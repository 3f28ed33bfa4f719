# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""Object-detection data: COCO detection files and Hub datasets, as items the Transformers detection image processors
take, with a pycocotools ground truth for COCO evaluation.

Both readers return items

    {"image": RGB PIL image (decode_image), "image_id": int, "annotations": [COCO annotation dicts]}

whose annotation dicts hold at least `id`, `image_id`, `category_id`, `bbox` `[x, y, width, height]` (pixels, top-left
corner), `area` and `iscrowd` (COCO files keep their other fields, e.g. `segmentation`), i.e. what
`RTDetrImageProcessor(images, annotations=[{"image_id": ..., "annotations": [...]}], format="coco_detection")` takes.
`dataset.coco` is the pycocotools `COCO` ground truth of the whole split (built in memory for Hub datasets), so one
evaluator (`COCOeval(dataset.coco, dataset.coco.loadRes(results), "bbox")`) serves every source.

Models predict contiguous class indices 0..K-1, while COCO category ids need not be contiguous (COCO 2017: 1..90 with
gaps). Label `i` is the `i`-th category in increasing id order: `dataset.category_ids[i]`; `id2label` / `label2id`
(for the model config) name these labels, and `category_to_label`, `label_to_category`, `to_label_annotations` and
`to_coco_results` convert both ways.

- `CocoDetectionDataset(images_dir, annotation_file)`: any COCO detection json, e.g. COCO 2017
  (`annotations/instances_val2017.json` with `val2017/`) or `soft-make-scenes` output
  (`annotations/instances_val.json` with `val/images/`).
- `hub_detection_dataset(name_or_path, split)`: a dataset in the Hub's common detection schema (an `image` column and
  an `objects` column with `bbox` and `category`, like `cppe-5` or `detection-datasets/coco`), from the Hub, its cache
  (offline) or a local folder, through `datasets`.

This module does not travel with checkpoints and imports only `soft_hf.models` (and its sibling data modules).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from ..models.soft.image_processing_soft import convert_image_to_rgb, decode_image
from .sampling import sample_seed, seeded_random_state
from .segmentation import image_size_of, load_dataset_dict


logger = logging.getLogger(__name__)

# Box formats of Hub datasets: COCO's [x, y, width, height] (cppe-5) and Pascal VOC's [x_min, y_min, x_max, y_max]
# (detection-datasets/coco).
BBOX_FORMATS = ("coco", "pascal_voc")
# Keys of the `objects` column that give an annotation's id, in order of preference.
OBJECT_ID_KEYS = ("id", "bbox_id")
# At most this many missing images are named in an error (all of them are counted).
MAX_LISTED_FILES = 5


def as_numpy(values) -> np.ndarray:
    """A NumPy array from an array, a list or a (CPU or GPU) tensor."""
    return np.asarray(values.detach().cpu() if hasattr(values, "detach") else values)


def quiet_coco(dataset: dict):
    """A pycocotools `COCO` over an in-memory COCO dictionary, without its progress prints."""
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


class DetectionDataset(Dataset):
    """What every detection source shares: the mapping between COCO category ids and contiguous labels, conversions of
    annotations and predictions, and per-sample seeded transforms. Subclasses set `categories` (then call
    `set_categories`), implement `__len__`, `load(index)` (the item) and the `coco` ground truth."""

    categories: list[dict]

    def __init__(self, transform: Callable[[dict], Any] | None = None, seed: int | None = None):
        self.transform = transform
        self.seed = seed
        self.epoch = 0

    def set_categories(self, categories: Sequence[dict]) -> None:
        """`categories`: COCO category dicts (`id`, `name`, ...); labels follow increasing category id."""
        self.categories = [dict(category) for category in sorted(categories, key=lambda category: category["id"])]
        self.category_ids: list[int] = [int(category["id"]) for category in self.categories]
        if len(set(self.category_ids)) != len(self.category_ids):
            raise ValueError(f"Category ids are not unique: {self.category_ids}.")
        self.category_id_to_label: dict[int, int] = {
            category_id: label for label, category_id in enumerate(self.category_ids)
        }
        self.id2label: dict[int, str] = {label: str(category["name"]) for label, category in enumerate(self.categories)}
        self.label2id: dict[str, int] = {name: label for label, name in self.id2label.items()}

    @property
    def num_labels(self) -> int:
        return len(self.category_ids)

    # Conversions ---------------------------------------------------------------------------------------------------

    def category_to_label(self, category_id: int) -> int:
        """The contiguous label (0..K-1) of a COCO category id."""
        try:
            return self.category_id_to_label[int(category_id)]
        except KeyError:
            raise ValueError(f"Category id {category_id} is not one of this dataset's {self.category_ids}.") from None

    def label_to_category(self, label: int) -> int:
        """The COCO category id of a contiguous label (0..K-1)."""
        if not 0 <= int(label) < len(self.category_ids):
            raise ValueError(f"Label {label} is outside 0..{len(self.category_ids) - 1}.")
        return self.category_ids[int(label)]

    def labels_to_categories(self, labels) -> list[int]:
        """COCO category ids of a sequence / array / tensor of labels."""
        return [self.label_to_category(int(label)) for label in np.asarray(labels).reshape(-1)]

    def to_label_annotations(self, annotations: Sequence[dict]) -> list[dict]:
        """Copies of annotation dicts whose `category_id` is the contiguous label (what a model with `id2label` is
        trained on); the other fields are kept."""
        return [
            {**annotation, "category_id": self.category_to_label(annotation["category_id"])}
            for annotation in annotations
        ]

    def processor_annotations(self, item: dict, contiguous_labels: bool = True) -> dict:
        """`{"image_id", "annotations"}` of an item for `annotations=[...]` of a detection image processor
        (`format="coco_detection"`), with contiguous labels as `category_id` by default."""
        annotations = self.to_label_annotations(item["annotations"]) if contiguous_labels else item["annotations"]
        return {"image_id": item["image_id"], "annotations": annotations}

    def to_coco_results(self, image_id: int, boxes, scores, labels, box_format: str = "xyxy") -> list[dict]:
        """COCO result dicts (`image_id`, `category_id`, `bbox` `[x, y, w, h]`, `score`) of one image's predictions:
        `boxes` `(num_boxes, 4)` in pixels as `[x_min, y_min, x_max, y_max]` (`box_format="xyxy"`, what
        `post_process_object_detection` returns) or `[x, y, w, h]` (`"xywh"`), `scores` and `labels` `(num_boxes,)`
        with contiguous labels, converted to category ids. Arrays or tensors."""
        boxes = as_numpy(boxes).astype(np.float64).reshape(-1, 4)  # (num_boxes, 4)
        scores = as_numpy(scores).astype(np.float64).reshape(-1)  # (num_boxes,)
        labels = as_numpy(labels).reshape(-1)  # (num_boxes,)
        if box_format == "xyxy":
            boxes = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)  # (num_boxes, 4) xywh
        elif box_format != "xywh":
            raise ValueError(f"`box_format` must be 'xyxy' or 'xywh', got {box_format!r}.")
        return [
            {
                "image_id": int(image_id),
                "category_id": self.label_to_category(int(label)),
                "bbox": [float(value) for value in box],
                "score": float(score),
            }
            for box, score, label in zip(boxes, scores, labels)
        ]

    # Items ---------------------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        raise NotImplementedError

    def load(self, index: int) -> dict:
        raise NotImplementedError

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream of `epoch` (with a `seed`)."""
        self.epoch = int(epoch)

    def __getitem__(self, index: int):
        item = self.load(int(index))
        if self.transform is None:
            return item
        if self.seed is None:
            return self.transform(item)
        with seeded_random_state(sample_seed(self.seed, self.epoch, int(index))):
            return self.transform(item)


# ----------------------------------------------------------------------------------------------------------------------
# COCO files
# ----------------------------------------------------------------------------------------------------------------------


def read_coco_detection_file(annotation_file: str | os.PathLike) -> dict:
    """Read and check a COCO detection json: `images` (with `id` and `file_name`), `categories` (with `id` and `name`)
    and `annotations` (with `image_id`, `category_id` and a 4-number `bbox`) that refer to existing images and
    categories. Annotations without `area` get the box area, without `iscrowd` 0 (pycocotools' evaluation needs both).
    Raises a `ValueError` naming the file and what is wrong."""
    path = Path(annotation_file)
    if not path.is_file():
        raise ValueError(
            f"The COCO annotation file {path} does not exist. For COCO 2017 it is annotations/instances_train2017.json "
            "or instances_val2017.json (from annotations_trainval2017.zip); for soft-make-scenes output "
            "annotations/instances_train.json or instances_val.json."
        )
    try:
        dataset = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not a JSON file ({error}); expected a COCO detection annotation file.") from None
    if not isinstance(dataset, dict):
        raise ValueError(f"{path} holds a JSON {type(dataset).__name__}, not a COCO detection file (an object).")
    missing = [key for key in ("images", "annotations", "categories") if key not in dataset]
    if missing:
        hint = " It looks like a COCO captions file." if "annotations" in dataset and "categories" in missing else ""
        raise ValueError(
            f"{path} is not a COCO detection file: it lacks {missing} (a detection file has images, annotations and "
            f"categories; COCO 2017's are annotations/instances_*.json).{hint}"
        )
    image_ids = set()
    for image in dataset["images"]:
        if not isinstance(image, dict) or "id" not in image or "file_name" not in image:
            raise ValueError(f"{path}: an entry of `images` lacks `id` or `file_name`: {str(image)[:200]}.")
        image_ids.add(image["id"])
    category_ids = set()
    for category in dataset["categories"]:
        if not isinstance(category, dict) or "id" not in category or "name" not in category:
            raise ValueError(f"{path}: an entry of `categories` lacks `id` or `name`: {str(category)[:200]}.")
        category_ids.add(category["id"])
    for annotation in dataset["annotations"]:
        if not isinstance(annotation, dict) or "segments_info" in annotation:
            raise ValueError(
                f"{path} is not a COCO detection file: its annotations are {str(annotation)[:120]}... (a panoptic "
                "file?). Use the instances_*.json file."
            )
        bbox = annotation.get("bbox")
        if "image_id" not in annotation or "category_id" not in annotation or not (
            isinstance(bbox, list) and len(bbox) == 4
        ):
            raise ValueError(
                f"{path} is not a COCO detection file: annotation {str(annotation)[:200]} lacks `image_id`, "
                "`category_id` or a `bbox` [x, y, width, height]."
            )
        if annotation["image_id"] not in image_ids:
            raise ValueError(
                f"{path}: annotation {annotation.get('id')} refers to image {annotation['image_id']}, which is not in "
                "`images`."
            )
        if annotation["category_id"] not in category_ids:
            raise ValueError(
                f"{path}: annotation {annotation.get('id')} has category {annotation['category_id']}, which is not in "
                f"`categories` ({sorted(category_ids)[:20]})."
            )
        annotation.setdefault("area", float(bbox[2]) * float(bbox[3]))
        annotation.setdefault("iscrowd", 0)
    if len({annotation.get("id") for annotation in dataset["annotations"]}) != len(dataset["annotations"]):
        for number, annotation in enumerate(dataset["annotations"], start=1):
            annotation["id"] = number  # pycocotools indexes annotations by id: give them unique ones
    return dataset


class CocoDetectionDataset(DetectionDataset):
    """The images of a COCO detection file with their annotations (see the module docstring for items and labels).

    Args:
        images_dir: the folder the `file_name`s of the file are relative to (COCO 2017: `train2017/`, `val2017/`;
            soft-make-scenes: `DIR/train/images`, `DIR/val/images`).
        annotation_file: the COCO detection json (checked by `read_coco_detection_file`).
        transform: optional callable applied to each item (under per-sample seeds with `seed`, as the other datasets).
        skip_images_without_annotations: leave out images with no (or only crowd) annotation; COCO 2017's training
            set has about 1,000 (DETR-style training keeps them, evaluation must).
        check_images: check at construction that every image file exists (one directory listing).

    Attributes:
        coco: the pycocotools `COCO` of the whole file (every image, including skipped ones).
        image_ids: the image ids of the items, in increasing order.
        categories, category_ids, id2label, label2id: see `DetectionDataset`.
    """

    def __init__(
        self,
        images_dir: str | os.PathLike,
        annotation_file: str | os.PathLike,
        transform: Callable[[dict], Any] | None = None,
        seed: int | None = None,
        skip_images_without_annotations: bool = False,
        check_images: bool = True,
    ):
        super().__init__(transform, seed)
        self.images_dir = Path(images_dir)
        self.annotation_file = Path(annotation_file)
        if not self.images_dir.is_dir():
            raise ValueError(
                f"The images folder {self.images_dir} does not exist: pass the folder that the file_names of "
                f"{self.annotation_file} are relative to (COCO 2017: train2017/ or val2017/; soft-make-scenes: "
                "DIR/train/images or DIR/val/images)."
            )
        self.coco = quiet_coco(read_coco_detection_file(self.annotation_file))
        self.set_categories(
            [{"id": category["id"], "name": category["name"]} for category in self.coco.dataset["categories"]]
        )
        image_ids = sorted(self.coco.imgs)
        if skip_images_without_annotations:
            image_ids = [
                image_id
                for image_id in image_ids
                if any(not annotation.get("iscrowd", 0) for annotation in self.coco.imgToAnns.get(image_id, []))
            ]
        self.image_ids: list[int] = image_ids
        if check_images:
            self.check_images()

    def check_images(self) -> None:
        """Raise a `ValueError` naming the missing files when images of the file are absent from `images_dir`."""
        names = [self.coco.imgs[image_id]["file_name"] for image_id in self.image_ids]
        try:
            present = set(os.listdir(self.images_dir))
        except OSError:
            present = set()
        missing = [name for name in names if name not in present and not (self.images_dir / name).is_file()]
        if missing:
            listed = ", ".join(missing[:MAX_LISTED_FILES]) + (" ..." if len(missing) > MAX_LISTED_FILES else "")
            raise ValueError(
                f"{len(missing)} of the {len(names)} images of {self.annotation_file} are not in {self.images_dir}: "
                f"{listed}. Point images_dir at the folder their file_names are relative to (e.g. coco/val2017 for "
                "instances_val2017.json), finish extracting the images, or pass check_images=False to find out at "
                "reading time."
            )

    def __len__(self) -> int:
        return len(self.image_ids)

    def image_path(self, index: int) -> Path:
        return self.images_dir / self.coco.imgs[self.image_ids[index]]["file_name"]

    def load(self, index: int) -> dict:
        image_id = self.image_ids[index]
        annotations = [dict(annotation) for annotation in self.coco.imgToAnns.get(image_id, [])]
        path = self.image_path(index)
        if not path.is_file():
            raise ValueError(f"Image {path} (id {image_id} of {self.annotation_file}) does not exist.")
        return {"image": decode_image(path), "image_id": int(image_id), "annotations": annotations}


# ----------------------------------------------------------------------------------------------------------------------
# Hub datasets
# ----------------------------------------------------------------------------------------------------------------------


def _objects_as_lists(objects: Any, description: str) -> dict[str, list]:
    """The `objects` cell as a dict of equally long lists (datasets gives a dict of lists for `Sequence({...})`
    features and a list of dicts for `List({...})`)."""
    if isinstance(objects, dict):
        return {key: list(value) for key, value in objects.items()}
    if isinstance(objects, list):
        keys = sorted({key for item in objects for key in item})
        return {key: [item.get(key) for item in objects] for key in keys}
    raise ValueError(f"{description}: the objects column holds {type(objects).__name__}, expected a dict of lists.")


class HubDetectionDataset(DetectionDataset):
    """A `datasets.Dataset` in the Hub's common detection schema as detection items (see `hub_detection_dataset`).

    The annotations of every row are read once at construction (the objects column only); `coco`, the pycocotools
    ground truth, is built on first use (image sizes from `width`/`height` columns or the image headers)."""

    def __init__(
        self,
        dataset,
        image_column: str = "image",
        objects_column: str = "objects",
        bbox_format: str = "coco",
        transform: Callable[[dict], Any] | None = None,
        seed: int | None = None,
        description: str = "the dataset",
    ):
        import datasets

        super().__init__(transform, seed)
        if bbox_format not in BBOX_FORMATS:
            raise ValueError(f"`bbox_format` must be one of {BBOX_FORMATS}, got {bbox_format!r}.")
        columns = list(dataset.column_names)
        for column, what in ((image_column, "image_column"), (objects_column, "objects_column")):
            if column not in columns:
                raise ValueError(
                    f"{description} has no column {column!r} (columns: {columns}); pass {what}=... . The common "
                    "detection schema has an image column and an objects column with bbox and category."
                )
        feature = dataset.features.get(image_column)
        if isinstance(feature, datasets.Image) and feature.decode:
            dataset = dataset.cast_column(image_column, datasets.Image(decode=False))
        self.dataset = dataset
        self.image_column = image_column
        self.objects_column = objects_column
        self.bbox_format = bbox_format
        self.description = description

        image_ids = dataset["image_id"] if "image_id" in columns else list(range(len(dataset)))
        self.image_ids: list[int] = [int(image_id) for image_id in image_ids]
        if len(set(self.image_ids)) != len(self.image_ids):
            raise ValueError(f"{description}: the image_id column holds duplicates; image ids must be unique.")
        rows = [_objects_as_lists(objects, description) for objects in dataset[objects_column]]
        for key in ("bbox", "category"):
            lacking = next((row for row in rows if key not in row), None)
            if lacking is not None:
                raise ValueError(
                    f"{description}: the {objects_column!r} column has no {key!r} field (it has {sorted(lacking)}); "
                    "expected bbox and category."
                )
        # Category ids: a ClassLabel's indices (with its names), integer categories as they are, class-name strings
        # numbered in sorted order.
        names = self._category_names(dataset.features.get(objects_column))
        string_categories: dict[str, int] = {}
        if names is None:
            values = {value for row in rows for value in row["category"]}
            if all(isinstance(value, str) for value in values):
                string_categories = {value: index for index, value in enumerate(sorted(values))}
                names = {index: value for value, index in string_categories.items()}
            elif all(isinstance(value, (int, np.integer)) and not isinstance(value, bool) for value in values):
                names = {int(value): str(value) for value in sorted(values)}
            else:
                raise ValueError(f"{description}: categories must be class indices or class-name strings.")
        self.set_categories([{"id": category_id, "name": name} for category_id, name in names.items()])

        self.annotations: list[list[dict]] = []
        next_id = 1
        for image_id, row in zip(self.image_ids, rows):
            count = len(row.get("bbox", []))
            ids = next((row[key] for key in OBJECT_ID_KEYS if key in row and None not in row[key]), None)
            annotations = []
            for position in range(count):
                box = [float(value) for value in row["bbox"][position]]
                if len(box) != 4:
                    raise ValueError(f"{description}: image {image_id} has a box of {len(box)} numbers: {box}.")
                if bbox_format == "pascal_voc":
                    box = [box[0], box[1], box[2] - box[0], box[3] - box[1]]
                category = row["category"][position]
                category_id = string_categories[category] if isinstance(category, str) else int(category)
                area = row["area"][position] if "area" in row and row["area"][position] is not None else None
                iscrowd = row["iscrowd"][position] if "iscrowd" in row else 0
                annotations.append(
                    {
                        "id": int(ids[position]) if ids is not None else next_id,
                        "image_id": image_id,
                        "category_id": category_id,
                        "bbox": box,
                        "area": float(area) if area is not None else box[2] * box[3],
                        "iscrowd": int(iscrowd or 0),
                    }
                )
                next_id += 1
            self.annotations.append(annotations)
        all_ids = [annotation["id"] for annotations in self.annotations for annotation in annotations]
        if len(set(all_ids)) != len(all_ids):  # ids of the objects column are per image: number them afresh
            number = 0
            for annotations in self.annotations:
                for annotation in annotations:
                    number += 1
                    annotation["id"] = number
        unknown = sorted({a["category_id"] for b in self.annotations for a in b} - set(self.category_ids))
        if unknown:
            raise ValueError(f"{description}: categories {unknown[:10]} are outside the class names {self.id2label}.")
        self._coco = None

    @staticmethod
    def _category_names(objects_feature) -> dict[int, str] | None:
        """`{category id: name}` from a ClassLabel `category` feature of the objects column, else None."""
        import datasets

        # A dict of per-field lists, or a list (`feature`) of dicts, depending on how the schema was declared.
        feature = getattr(objects_feature, "feature", objects_feature)
        if isinstance(feature, dict):
            category = feature.get("category")
            category = getattr(category, "feature", category)
            if isinstance(category, datasets.ClassLabel):
                return dict(enumerate(category.names))
        return None

    def __len__(self) -> int:
        return len(self.dataset)

    def read_image(self, index: int) -> Image.Image:
        value = self.dataset[int(index)][self.image_column]
        if isinstance(value, dict) and value.get("bytes") is not None:
            return decode_image(value["bytes"])
        if isinstance(value, dict) and value.get("path"):
            return decode_image(value["path"])
        if isinstance(value, Image.Image):
            return convert_image_to_rgb(value)
        if isinstance(value, (str, os.PathLike)):
            return decode_image(value)
        raise ValueError(f"{self.description} row {index}: cannot read an image from {type(value).__name__}.")

    def image_size(self, index: int) -> tuple[int, int]:
        """`(width, height)` of image `index`: the dataset's width/height columns, else the image header."""
        row = self.dataset[int(index)]
        if row.get("width") and row.get("height"):
            return int(row["width"]), int(row["height"])
        value = row[self.image_column]
        if isinstance(value, dict) and (value.get("bytes") is not None or value.get("path")):
            return image_size_of(value["bytes"] if value.get("bytes") is not None else value["path"])
        return self.read_image(index).size

    def load(self, index: int) -> dict:
        return {
            "image": self.read_image(index),
            "image_id": self.image_ids[index],
            "annotations": [dict(annotation) for annotation in self.annotations[index]],
        }

    @property
    def coco(self):
        """The pycocotools `COCO` ground truth of the split, built in memory on first use."""
        if self._coco is None:
            columns = self.dataset.column_names
            if "width" in columns and "height" in columns:  # one read per column, not per row
                sizes = list(zip(self.dataset["width"], self.dataset["height"]))
            else:
                sizes = [self.image_size(index) for index in range(len(self))]
            images = [
                {"id": image_id, "file_name": f"{image_id}", "width": int(width), "height": int(height)}
                for image_id, (width, height) in zip(self.image_ids, sizes)
            ]
            dataset = {
                "info": {"description": self.description},
                "licenses": [],
                "images": images,
                "annotations": [dict(annotation) for annotations in self.annotations for annotation in annotations],
                "categories": [dict(category) for category in self.categories],
            }
            self._coco = quiet_coco(dataset)
        return self._coco


def hub_detection_dataset(
    name_or_path: str,
    split: str = "train",
    *,
    config_name: str | None = None,
    cache_dir: str | None = None,
    image_column: str = "image",
    objects_column: str = "objects",
    bbox_format: str = "coco",
    transform: Callable[[dict], Any] | None = None,
    seed: int | None = None,
) -> HubDetectionDataset:
    """One split of a detection dataset in the Hub's common schema: an image column and an objects column whose
    `bbox` and `category` (optionally `area`, `iscrowd`, `id`/`bbox_id`) list the boxes of each image; `image_id`,
    `width` and `height` columns are used when present.

    Args:
        name_or_path: a Hub id (read from the cache when offline), a local folder `datasets.load_dataset` reads
            (parquet, ...) or a folder written by `save_to_disk`.
        split: the split to read.
        bbox_format: `"coco"` for `[x, y, width, height]` boxes (cppe-5), `"pascal_voc"` for
            `[x_min, y_min, x_max, y_max]` (detection-datasets/coco); annotations are COCO boxes either way.

    Category ids are the dataset's class indices (a ClassLabel's 0..K-1 with its names), so labels and category ids
    coincide; string categories are numbered in sorted order.
    """
    splits = load_dataset_dict(name_or_path, config_name, cache_dir)
    if split not in splits:
        raise ValueError(f"{name_or_path} has no split {split!r} (splits: {sorted(splits)}).")
    dataset = HubDetectionDataset(
        splits[split],
        image_column=image_column,
        objects_column=objects_column,
        bbox_format=bbox_format,
        transform=transform,
        seed=seed,
        description=f"{name_or_path} ({split})",
    )
    outside = 0
    for index in range(min(len(dataset), 50)):  # a sample: boxes of the other format often reach outside the image
        if dataset.annotations[index]:
            width, height = dataset.image_size(index)
            outside += sum(
                x + box_width > width + 1 or y + box_height > height + 1
                for x, y, box_width, box_height in (annotation["bbox"] for annotation in dataset.annotations[index])
            )
    if outside:
        logger.warning(
            "%d boxes of the first images of %s reach outside their image: are the boxes in %r format? Pass "
            "bbox_format=%r otherwise.",
            outside,
            dataset.description,
            bbox_format,
            "pascal_voc" if bbox_format == "coco" else "coco",
        )
    return dataset


__all__ = [
    "BBOX_FORMATS",
    "CocoDetectionDataset",
    "DetectionDataset",
    "HubDetectionDataset",
    "hub_detection_dataset",
    "quiet_coco",
    "read_coco_detection_file",
]
