# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""Semantic-segmentation data: label masks, and datasets of (image, mask) pairs from three sources.

- Image folders (`SegmentationImageFolder`): `root/images/**/<name>.<jpg|png|...>` and `root/masks/**/<name>.png`,
  masks holding one class index per pixel (8- or 16-bit grey or palette PNG), 255 = ignored by default. Class names
  from `id2label.json` in the folder or beside it (what `soft-make-scenes` writes).
- ADE20K as distributed (`ADEChallengeData2016/`): `images/training` + `annotations/training` for training and
  `images/validation` + `annotations/validation` for validation, masks with 0 = "other" (reduced by default: 0 is
  ignored and class k becomes k - 1), class names from `objectInfo150.txt` / `objectInfo150.csv` when present.
- Datasets of the Hub or local folders read with `datasets` (`HubSegmentationDataset`), with an image column and a
  mask column (`annotation`, `label`, `semantic_map`, ...), like `scene_parse_150`.

Every dataset returns `transform(image, mask)` with `image` an RGB PIL image (`decode_image`, the one decoder of the
package) and `mask` an int64 `(height, width)` array, or `{"image", "mask", "path"}` without a transform. With a
`seed`, sample `index` of epoch `e` is transformed under RNGs seeded with `(seed, e, index)`
(`soft_hf.data.sampling.seeded_random_state`), so augmentation depends neither on workers nor on resuming.

This module does not travel with checkpoints and imports only `soft_hf.models` (and its sibling data modules).
"""

from __future__ import annotations

import copy
import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps
from torch.utils.data import Dataset

from ..models.soft.image_processing_soft import convert_image_to_rgb, decode_image
from .sampling import sample_seed, seeded_random_state


IGNORE_INDEX = 255
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
MASK_EXTENSIONS = (".png", ".tif", ".tiff", ".bmp")
# EXIF orientations that swap width and height (transpose, rotate 90/270, transverse).
EXIF_ORIENTATION_TAG = 0x0112
SWAPPING_ORIENTATIONS = (5, 6, 7, 8)
# At most this many problems are listed one by one when masks are checked (all of them are counted).
MAX_LISTED_PROBLEMS = 20
# ADE20K's scene-parsing release: sub-folders per split, and the files naming its 150 classes.
ADE20K_SPLIT_FOLDERS = {"train": "training", "validation": "validation"}
ADE20K_CLASS_FILES = ("objectInfo150.txt", "objectInfo150.csv", "object150_info.csv")
# Mask columns of common Hub segmentation datasets, in order of preference (scene_parse_150: "annotation").
MASK_COLUMN_NAMES = ("annotation", "label", "semantic_map", "segmentation_mask", "mask", "gtFine")
# Names under which Hub datasets commonly publish their held-out split, in order of preference.
VALIDATION_SPLIT_NAMES = ("validation", "valid", "val", "test")
DATASET_LAYOUTS = ("auto", "folder", "ade20k")


# ----------------------------------------------------------------------------------------------------------------------
# Masks
# ----------------------------------------------------------------------------------------------------------------------


def _open_source(source: str | os.PathLike | bytes):
    return io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source


def mask_from_pil(mask: Image.Image, name: str = "mask") -> np.ndarray:
    """`(height, width)` int64 class indices from a grey (8/16-bit), palette (indices) or 1-bit PIL image; colour
    images are refused because their colours are not class indices. The EXIF orientation is applied."""
    if mask.mode in ("RGB", "RGBA", "CMYK", "YCbCr", "LA"):
        raise ValueError(
            f"Mask {name} has colour mode {mask.mode}: masks must hold one class index per pixel (grey or palette "
            "PNG). Convert colour-coded masks to index masks first."
        )
    return np.array(ImageOps.exif_transpose(mask)).astype(np.int64)


def read_mask(path: str | os.PathLike | bytes) -> np.ndarray:
    """A label mask file (path or bytes) as `(height, width)` int64 class indices (see `mask_from_pil`)."""
    name = "<bytes>" if isinstance(path, (bytes, bytearray, memoryview)) else str(path)
    with Image.open(_open_source(path)) as mask:
        return mask_from_pil(mask, name)


def image_size_of(path: str | os.PathLike | bytes) -> tuple[int, int]:
    """`(width, height)` of an image file (path or bytes) as `decode_image` returns it (EXIF orientation applied),
    read from the header without decoding the pixels."""
    with Image.open(_open_source(path)) as image:
        width, height = image.size
        if image.getexif().get(EXIF_ORIENTATION_TAG) in SWAPPING_ORIENTATIONS:
            width, height = height, width
    return width, height


def reduce_labels(mask: np.ndarray, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """ADE20K convention: 0 ("other") becomes `ignore_index`, every other class index moves down by one."""
    reduced = mask - 1
    reduced[(mask == 0) | (mask == ignore_index)] = ignore_index
    return reduced


# ----------------------------------------------------------------------------------------------------------------------
# Datasets
# ----------------------------------------------------------------------------------------------------------------------


class SegmentationDataset(Dataset):
    """Base of the segmentation datasets: subclasses say how many pairs there are, how to read pair `index`
    (`read_image`, `read_raw_mask`, `read_image_size`) and how to name it in messages (`image_name`, `mask_name`);
    this class applies `reduce_labels`, the transform under per-sample seeds, and checks masks before training."""

    def __init__(
        self,
        transform=None,
        reduce_labels: bool = False,
        ignore_index: int = IGNORE_INDEX,
        seed: int | None = None,
        description: str = "the data",
    ):
        self.transform = transform
        self.reduce_labels = reduce_labels
        self.ignore_index = ignore_index
        self.seed = seed
        self.epoch = 0
        self.description = description

    # To implement ------------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        raise NotImplementedError

    def read_image(self, index: int) -> Image.Image:
        raise NotImplementedError

    def read_raw_mask(self, index: int) -> np.ndarray:
        """The stored mask of pair `index` as `(height, width)` int64, before `reduce_labels`."""
        raise NotImplementedError

    def read_image_size(self, index: int) -> tuple[int, int]:
        """`(width, height)` of image `index` (cheaply when possible)."""
        return self.read_image(index).size

    def image_name(self, index: int) -> str:
        return f"image {index} of {self.description}"

    def mask_name(self, index: int) -> str:
        return f"mask {index} of {self.description}"

    # Shared ------------------------------------------------------------------------------------------------------

    def with_transform(self, transform, seed: int | None = None) -> SegmentationDataset:
        """A shallow copy reading the same pairs through another `transform` (and augmentation `seed`)."""
        dataset = copy.copy(self)
        dataset.transform, dataset.seed, dataset.epoch = transform, seed, 0
        return dataset

    def load(self, index: int) -> tuple[Image.Image, np.ndarray]:
        """Image (RGB PIL) and mask (`(height, width)` int64, reduced if asked) of pair `index`."""
        image = self.read_image(index)
        mask = self.read_raw_mask(index)
        if mask.shape != (image.height, image.width):
            raise ValueError(
                f"Mask {self.mask_name(index)} is {mask.shape[1]}x{mask.shape[0]} but image {self.image_name(index)} "
                f"is {image.width}x{image.height}: masks must have the size of their image."
            )
        if self.reduce_labels:
            mask = reduce_labels(mask, self.ignore_index)
        return image, mask

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream of `epoch` (with a `seed`)."""
        self.epoch = int(epoch)

    def __getitem__(self, index: int):
        image, mask = self.load(index)
        if self.transform is None:
            return {"image": image, "mask": mask, "path": self.image_name(index)}
        if self.seed is None:
            return self.transform(image, mask)
        with seeded_random_state(sample_seed(self.seed, self.epoch, index)):
            return self.transform(image, mask)

    def check_masks(self, num_labels: int) -> None:
        """Read every mask once and check it against its image before anything is trained; raise one `ValueError`
        naming every bad pair: unreadable files, masks whose size differs from their image's, class values outside
        0 .. num_labels - 1 that are not `ignore_index`, and masks saved as 0/255 (255 is the ignore index, so such a
        "binary" data set would train background only)."""
        problems, binary, background_only = [], [], 0
        for index in range(len(self)):
            try:
                width, height = self.read_image_size(index)
            except Exception as error:  # PIL raises many types for corrupt files
                problems.append(f"cannot read image {self.image_name(index)}: {error}")
                continue
            try:
                mask = self.read_raw_mask(index)
            except Exception as error:
                problems.append(f"cannot read mask {self.mask_name(index)}: {error}")
                continue
            if mask.shape != (height, width):
                problems.append(
                    f"mask {self.mask_name(index)} is {mask.shape[1]}x{mask.shape[0]} but its image "
                    f"{self.image_name(index)} is {width}x{height}"
                )
                continue
            values = np.unique(mask)
            if not self.reduce_labels and self.ignore_index == IGNORE_INDEX:
                if set(values.tolist()) == {0, 255}:
                    binary.append(self.mask_name(index))
                background_only += set(values.tolist()) == {0}
            if self.reduce_labels:
                values = np.unique(reduce_labels(mask, self.ignore_index))
            bad = [int(value) for value in values if value != self.ignore_index and not 0 <= value < num_labels]
            if bad:
                problems.append(
                    f"mask {self.mask_name(index)} holds class values {bad[:10]} outside 0..{num_labels - 1} "
                    f"({num_labels} classes; {self.ignore_index} = ignored)"
                )
        if binary and len(binary) + background_only == len(self):
            raise ValueError(
                f"Every mask of {self.description} holds only the values 0 and 255 (e.g. {binary[0]}): binary masks "
                "saved as 0/255. 255 is the ignore index, so the foreground would be ignored and the model would learn "
                "background only (and score a mean IoU of 1.0). Save the masks as 0/1 (e.g. "
                "`Image.fromarray((np.array(Image.open(path)) > 127).astype(np.uint8)).save(path)`) and train with "
                "--num_labels 2."
            )
        if problems:
            listed = problems[:MAX_LISTED_PROBLEMS]
            more = len(problems) - len(listed)
            raise ValueError(
                f"{len(problems)} of the {len(self)} image/mask pairs of {self.description} cannot be trained "
                "on:\n  - " + "\n  - ".join(listed) + (f"\n  ... and {more} more" if more else "") + "\nFix or "
                "remove these files (masks must have the size of their image and hold class indices "
                f"0..{num_labels - 1}, or {self.ignore_index} for ignored pixels; --num_labels or --id2label sets the "
                "classes)."
            )

    def label_values(self) -> list[int]:
        """Sorted class indices present in the masks (after `reduce_labels`), without the ignore index."""
        values: set[int] = set()
        for index in range(len(self)):
            mask = self.read_raw_mask(index)
            if self.reduce_labels:
                mask = reduce_labels(mask, self.ignore_index)
            values.update(int(value) for value in np.unique(mask))
        values.discard(self.ignore_index)
        return sorted(values)


class SegmentationImageFolder(SegmentationDataset):
    """Images and label masks paired by relative path without extension: `root/images/a/b.jpg` <->
    `root/masks/a/b.png` (`images_dir` / `masks_dir` may be nested paths, e.g. ADE20K's `images/training` and
    `annotations/training`). Items are `transform(image, mask)` with `image` an RGB PIL image and `mask` an int64
    `(height, width)` array (or `{"image", "mask", "path"}` without a transform); `samples` lists the
    `(image path, mask path)` pairs, sorted."""

    def __init__(
        self,
        root: str | os.PathLike,
        transform=None,
        images_dir: str = "images",
        masks_dir: str = "masks",
        reduce_labels: bool = False,
        ignore_index: int = IGNORE_INDEX,
        seed: int | None = None,
    ):
        self.root = Path(root)
        super().__init__(transform, reduce_labels, ignore_index, seed, description=str(self.root))
        image_root, mask_root = self.root / images_dir, self.root / masks_dir
        for folder, what in ((image_root, "images"), (mask_root, "label masks")):
            if not folder.is_dir():
                raise ValueError(
                    f"{folder} does not exist: a segmentation folder holds {images_dir}/ (images) and {masks_dir}/ "
                    f"(label masks with the same file names) — missing the folder of {what}."
                )
        masks = {}
        for path in sorted(mask_root.rglob("*")):
            if path.suffix.lower() in MASK_EXTENSIONS:
                masks[path.relative_to(mask_root).with_suffix("").as_posix()] = path
        self.samples: list[tuple[Path, Path]] = []
        unmatched = []
        for path in sorted(image_root.rglob("*")):
            if path.suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            key = path.relative_to(image_root).with_suffix("").as_posix()
            if key in masks:
                self.samples.append((path, masks[key]))
            else:
                unmatched.append(path.name)
        if unmatched:
            raise ValueError(
                f"{len(unmatched)} image(s) in {image_root} have no mask in {mask_root} (e.g. {unmatched[:3]}); "
                "every image needs a mask with the same relative path and a .png extension."
            )
        if not self.samples:
            raise ValueError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) found under {image_root}.")

    def __len__(self) -> int:
        return len(self.samples)

    def read_image(self, index: int) -> Image.Image:
        return decode_image(self.samples[index][0])

    def read_raw_mask(self, index: int) -> np.ndarray:
        return read_mask(self.samples[index][1])

    def read_image_size(self, index: int) -> tuple[int, int]:
        return image_size_of(self.samples[index][0])

    def image_name(self, index: int) -> str:
        return str(self.samples[index][0])

    def mask_name(self, index: int) -> str:
        return str(self.samples[index][1])


def _cell_bytes(value: Any) -> bytes | str | None:
    """The file behind a `datasets` image cell that is not decoded (`{"bytes", "path"}`), or None."""
    if isinstance(value, dict):
        if value.get("bytes") is not None:
            return value["bytes"]
        if value.get("path"):
            return value["path"]
    return None


class HubSegmentationDataset(SegmentationDataset):
    """A `datasets.Dataset` with an image column and a mask column as (image, mask) pairs.

    The image column is read with `decode_image` (or converted like it when it holds in-memory images); the mask
    column may be an `Image` feature (grey or palette PNGs) or a 2-D array of class indices. Columns holding `Image`
    features are read undecoded, so masks keep their exact values and unreadable files are reported by row.

    Args:
        dataset: the `datasets.Dataset` of one split.
        image_column / mask_column: column names (`mask_column=None`: the first of `MASK_COLUMN_NAMES` present).
        description: how messages name the split, e.g. `"scene_parse_150 (train)"`.
        transform / reduce_labels / ignore_index / seed: as for `SegmentationImageFolder`.
    """

    def __init__(
        self,
        dataset,
        image_column: str = "image",
        mask_column: str | None = None,
        transform=None,
        reduce_labels: bool = False,
        ignore_index: int = IGNORE_INDEX,
        seed: int | None = None,
        description: str = "the dataset",
    ):
        import datasets

        super().__init__(transform, reduce_labels, ignore_index, seed, description=description)
        columns = list(dataset.column_names)
        if mask_column is None:
            mask_column = next((name for name in MASK_COLUMN_NAMES if name in columns), None)
            if mask_column is None:
                raise ValueError(
                    f"{description} has no mask column among {list(MASK_COLUMN_NAMES)} (columns: {columns}); pass "
                    "--mask_column_name."
                )
        for column, flag in ((image_column, "--image_column_name"), (mask_column, "--mask_column_name")):
            if column not in columns:
                raise ValueError(f"{description} has no column {column!r} (columns: {columns}); pass {flag}.")
        for column in (image_column, mask_column):
            feature = dataset.features.get(column)
            if isinstance(feature, datasets.Image) and feature.decode:
                dataset = dataset.cast_column(column, datasets.Image(decode=False))
        self.dataset = dataset
        self.image_column = image_column
        self.mask_column = mask_column

    def __len__(self) -> int:
        return len(self.dataset)

    def read_image(self, index: int) -> Image.Image:
        value = self.dataset[int(index)][self.image_column]
        source = _cell_bytes(value)
        if source is not None:
            return decode_image(source)
        if isinstance(value, Image.Image):
            return convert_image_to_rgb(value)
        if isinstance(value, (str, os.PathLike)):
            return decode_image(value)
        raise ValueError(f"Cannot read an image from {type(value).__name__} in {self.image_name(index)}.")

    def read_raw_mask(self, index: int) -> np.ndarray:
        value = self.dataset[int(index)][self.mask_column]
        source = _cell_bytes(value)
        if source is not None:
            return read_mask(source)
        if isinstance(value, Image.Image):
            return mask_from_pil(value, self.mask_name(index))
        if isinstance(value, (str, os.PathLike)):
            return read_mask(value)
        array = np.asarray(value)
        if array.ndim != 2 or not (np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_):
            raise ValueError(
                f"{self.mask_name(index)} is neither an image nor a 2-D array of class indices (got "
                f"{array.dtype} of shape {array.shape})."
            )
        return array.astype(np.int64)

    def read_image_size(self, index: int) -> tuple[int, int]:
        source = _cell_bytes(self.dataset[int(index)][self.image_column])
        return image_size_of(source) if source is not None else self.read_image(index).size

    def image_name(self, index: int) -> str:
        return f"{self.description} row {index} ({self.image_column!r})"

    def mask_name(self, index: int) -> str:
        return f"{self.description} row {index} ({self.mask_column!r})"


# ----------------------------------------------------------------------------------------------------------------------
# Sources
# ----------------------------------------------------------------------------------------------------------------------


def is_ade20k_root(path: str | os.PathLike) -> bool:
    """Whether `path` is laid out like `ADEChallengeData2016/` (`images/training` and `annotations/training`)."""
    path = Path(path)
    return (path / "images" / "training").is_dir() and (path / "annotations" / "training").is_dir()


def ade20k_class_names(root: str | os.PathLike) -> list[str] | None:
    """The names of ADE20K's classes 1..N from `objectInfo150.txt` (tab-separated, the challenge release) or
    `objectInfo150.csv` / `object150_info.csv` (CSAIL's repositories) in `root`, in class order; the first synonym
    of each ("building, edifice" -> "building", "building;edifice" -> "building"). None when no such file exists."""
    root = Path(root)
    path = next((root / name for name in ADE20K_CLASS_FILES if (root / name).is_file()), None)
    if path is None:
        return None
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    delimiter = "\t" if "\t" in lines[0] else ","
    rows = list(csv.reader(lines, delimiter=delimiter))
    header = [cell.strip().lower() for cell in rows[0]]
    if "name" not in header or "idx" not in header:
        raise ValueError(f"{path} has no 'Idx' and 'Name' columns (header: {rows[0]}); cannot read ADE20K class names.")
    index_column, name_column = header.index("idx"), header.index("name")
    names = {}
    for row in rows[1:]:
        full_name = row[name_column].strip()
        names[int(row[index_column])] = full_name.replace(";", ",").split(",")[0].strip()
    if sorted(names) != list(range(1, len(names) + 1)):
        raise ValueError(f"{path} numbers its classes {sorted(names)[:5]}...; expected 1..{len(names)}.")
    return [names[index] for index in range(1, len(names) + 1)]


def read_id2label_file(path: str | os.PathLike) -> dict[int, str]:
    """`{"0": "name", ...}` from a JSON file, as `{0: "name", ...}`."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"The id2label file {path} does not exist.")
    return {int(index): str(name) for index, name in json.loads(path.read_text(encoding="utf-8")).items()}


def load_dataset_dict(name_or_path: str, config_name: str | None = None, cache_dir: str | None = None):
    """A `datasets.DatasetDict` from a Hub id (or its cache, offline), a local data folder (parquet, image folders,
    ...) or a folder written by `save_to_disk`."""
    import datasets

    path = Path(name_or_path)
    if path.is_dir() and ((path / "dataset_dict.json").is_file() or (path / "state.json").is_file()):
        loaded = datasets.load_from_disk(str(path))
    else:
        loaded = datasets.load_dataset(name_or_path, config_name, cache_dir=cache_dir)
    if isinstance(loaded, datasets.Dataset):
        loaded = datasets.DatasetDict({"train": loaded})
    return loaded


@dataclass
class SegmentationData:
    """Training and validation pairs of a segmentation source (without transforms: see
    `SegmentationDataset.with_transform`), and the class names the source gives, if any.

    `validation` is None when the source has no held-out split (the caller splits one off). `id2label` maps the class
    indices the masks hold (after `reduce_labels`) to names."""

    train: SegmentationDataset
    validation: SegmentationDataset | None
    id2label: dict[int, str] | None
    source: str
    layout: str
    reduce_labels: bool


def load_segmentation_data(
    *,
    train_dir: str | os.PathLike | None = None,
    validation_dir: str | os.PathLike | None = None,
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    dataset_layout: str = "auto",
    images_dir_name: str = "images",
    masks_dir_name: str = "masks",
    image_column_name: str = "image",
    mask_column_name: str | None = None,
    train_split_name: str = "train",
    validation_split_name: str | None = None,
    reduce_labels: bool | None = None,
    ignore_index: int = IGNORE_INDEX,
    cache_dir: str | None = None,
) -> SegmentationData:
    """The segmentation pairs of one source (see the module docstring).

    Args:
        train_dir / validation_dir: image folders (`images/` + `masks/`), or an `ADEChallengeData2016/` root as
            `train_dir` (its validation split is used unless `validation_dir` names another ADE20K root).
        dataset_name / dataset_config_name: a Hub dataset id, a local data folder `datasets.load_dataset` reads, or a
            `save_to_disk` folder; `train_split_name` and `validation_split_name` (default: the first of
            validation/valid/val/test present, else none) select its splits.
        dataset_layout: `"folder"`, `"ade20k"`, or `"auto"` (ADE20K when `train_dir` has `images/training` and
            `annotations/training`, else folder).
        reduce_labels: 0 -> ignored, k -> k - 1; default on for ADE20K, off otherwise.
    """
    if dataset_layout not in DATASET_LAYOUTS:
        raise ValueError(f"`dataset_layout` must be one of {DATASET_LAYOUTS}, got {dataset_layout!r}.")
    if dataset_name is not None:
        if train_dir is not None or validation_dir is not None:
            raise ValueError("Give either a dataset name (--dataset_name) or folders (--train_dir), not both.")
        splits = load_dataset_dict(dataset_name, dataset_config_name, cache_dir)
        if train_split_name not in splits:
            raise ValueError(f"{dataset_name} has no split {train_split_name!r} (splits: {sorted(splits)}).")
        if validation_split_name is None:
            validation_split_name = next((name for name in VALIDATION_SPLIT_NAMES if name in splits), None)
        elif validation_split_name not in splits:
            raise ValueError(f"{dataset_name} has no split {validation_split_name!r} (splits: {sorted(splits)}).")
        reduce = bool(reduce_labels)
        options = dict(
            image_column=image_column_name,
            mask_column=mask_column_name,
            reduce_labels=reduce,
            ignore_index=ignore_index,
        )
        train = HubSegmentationDataset(
            splits[train_split_name], description=f"{dataset_name} ({train_split_name})", **options
        )
        validation = None
        if validation_split_name is not None:
            validation = HubSegmentationDataset(
                splits[validation_split_name], description=f"{dataset_name} ({validation_split_name})", **options
            )
        id2label = None
        local = Path(dataset_name)
        if local.is_dir() and (local / "id2label.json").is_file():
            id2label = read_id2label_file(local / "id2label.json")
        return SegmentationData(train, validation, id2label, str(dataset_name), "hub", reduce)

    if train_dir is None:
        raise ValueError("No segmentation data: pass --train_dir (an image folder or ADE20K root) or --dataset_name.")
    train_dir = Path(train_dir)
    if not train_dir.is_dir():
        raise ValueError(f"--train_dir {train_dir} is not a folder.")
    layout = dataset_layout
    if layout == "auto":
        layout = "ade20k" if is_ade20k_root(train_dir) else "folder"

    if layout == "ade20k":
        reduce = True if reduce_labels is None else bool(reduce_labels)
        validation_root = Path(validation_dir) if validation_dir is not None else train_dir
        for root in (train_dir, validation_root):
            if not is_ade20k_root(root):
                raise ValueError(
                    f"{root} is not laid out like ADEChallengeData2016/: expected images/training and "
                    "annotations/training (and images/validation, annotations/validation) in it."
                )
        options = dict(reduce_labels=reduce, ignore_index=ignore_index)
        train = SegmentationImageFolder(
            train_dir, images_dir="images/training", masks_dir="annotations/training", **options
        )
        validation = None
        if (validation_root / "images" / "validation").is_dir():
            validation = SegmentationImageFolder(
                validation_root, images_dir="images/validation", masks_dir="annotations/validation", **options
            )
        names = ade20k_class_names(train_dir)
        id2label = None
        if names is not None:
            id2label = dict(enumerate(names)) if reduce else {0: "other", **dict(enumerate(names, start=1))}
        return SegmentationData(train, validation, id2label, str(train_dir), "ade20k", reduce)

    reduce = bool(reduce_labels)
    options = dict(
        images_dir=images_dir_name, masks_dir=masks_dir_name, reduce_labels=reduce, ignore_index=ignore_index
    )
    train = SegmentationImageFolder(train_dir, **options)
    validation = SegmentationImageFolder(validation_dir, **options) if validation_dir is not None else None
    id2label = None
    for candidate in (train_dir / "id2label.json", train_dir.parent / "id2label.json"):
        if candidate.is_file():
            id2label = read_id2label_file(candidate)
            break
    return SegmentationData(train, validation, id2label, str(train_dir), "folder", reduce)


__all__ = [
    "ADE20K_CLASS_FILES",
    "DATASET_LAYOUTS",
    "HubSegmentationDataset",
    "IGNORE_INDEX",
    "MASK_COLUMN_NAMES",
    "SegmentationData",
    "SegmentationDataset",
    "SegmentationImageFolder",
    "ade20k_class_names",
    "image_size_of",
    "is_ade20k_root",
    "load_dataset_dict",
    "load_segmentation_data",
    "mask_from_pil",
    "read_id2label_file",
    "read_mask",
    "reduce_labels",
]
