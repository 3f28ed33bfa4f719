# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""Image-classification data for training and evaluating SOFT: the offline Fashion-MNIST default, image folders and
Hub datasets (optionally streamed), wrapped as PyTorch datasets whose augmentation is reproducible.

Three sources, picked by `load_image_classification_data`:
- the offline default: Fashion-MNIST from the Debian package `dataset-fashion-mnist` (idx files under
  /usr/share/datasets/fashion-mnist), read into a `datasets.Dataset` with an `Image` feature and class names;
- image folders (`train_dir` / `validation_dir`, one sub-folder per class) through `datasets`' `imagefolder`;
- a dataset of the Hub by name (`dataset_name`), map-style or streamed (`streaming=True`).

Random augmentation of sample `i` in epoch `e` is drawn from RNGs seeded with `(seed, e, i)` and then the global RNG
states are restored, so a sample's augmentation does not depend on data-loader workers, the number of processes, or
whether training was resumed from a checkpoint; and loading data never moves the RNGs that dropout and mixup use.

This module does not travel with checkpoints (it is training infrastructure, not model code).
"""

from __future__ import annotations

import gzip
import logging
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import PIL.Image
import torch

from ..models.soft.image_processing_soft import convert_image_to_rgb, decode_image
from .sampling import sample_seed, seeded_random_state


logger = logging.getLogger(__name__)

DEFAULT_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_DATASET_ID = "zalando-datasets/fashion_mnist"
FASHION_MNIST_LABELS = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
# Split name -> (images file, labels file) of the idx distribution.
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension
# Names under which Hub datasets commonly publish their held-out split, in order of preference.
VALIDATION_SPLIT_NAMES = ("validation", "valid", "val", "test")
# Files from which `datasets`' imagefolder reads labels instead of folder names.
IMAGEFOLDER_METADATA_FILES = ("metadata.csv", "metadata.jsonl", "metadata.parquet")
# WordNet ids naming the class folders of ImageNet-style data (`imagenet/val/n01440764/...`).
SYNSET_PATTERN = re.compile(r"^n\d{8}$")
# At most this many unreadable images are logged one by one (all of them are counted).
MAX_LOGGED_UNREADABLE = 10
UNREADABLE_LABEL = -1


# ----------------------------------------------------------------------------------------------------------------
# Fashion-MNIST (offline default)
# ----------------------------------------------------------------------------------------------------------------


def fashion_mnist_missing_message(directory: str) -> str:
    return (
        f"The offline default dataset, Fashion-MNIST, was not found in {directory}. Install the Debian package "
        "(`sudo apt-get install dataset-fashion-mnist`), pass `--fashion_mnist_dir` pointing at the idx files, or "
        "choose other data with `--train_dir/--validation_dir` or `--dataset_name`."
    )


def read_idx_file(path: str, expected_magic: int) -> np.ndarray:
    """Read a gzipped idx file (the MNIST format): a 4-byte magic number, one big-endian int32 per dimension, then
    the unsigned-byte data. Returns an array of shape `(count, ...)`."""
    if not os.path.isfile(path):
        raise ValueError(fashion_mnist_missing_message(os.path.dirname(path)) + f" (missing file: {path})")
    with gzip.open(path, "rb") as handle:
        payload = handle.read()
    magic = int.from_bytes(payload[:4], "big")
    if magic != expected_magic:
        raise ValueError(
            f"{path} is not an idx file of the expected kind (magic {magic:#010x}, expected {expected_magic:#010x})."
        )
    num_dimensions = magic & 0xFF
    shape = tuple(int.from_bytes(payload[4 + 4 * index : 8 + 4 * index], "big") for index in range(num_dimensions))
    offset = 4 + 4 * num_dimensions
    data = np.frombuffer(payload, dtype=np.uint8, offset=offset)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path} is truncated: header announces shape {shape}, found {data.size} values.")
    return data.reshape(shape)


def load_fashion_mnist(
    split: str = "train",
    directory: str | None = None,
    max_samples: int | None = None,
    seed: int = 0,
):
    """Fashion-MNIST from its idx files as a `datasets.Dataset` with columns `image` (an `Image` feature holding the
    28x28 grayscale PNG) and `label` (a `ClassLabel` with the ten class names).

    Args:
        split: `"train"` (60,000 images) or `"test"` (10,000 images; `"validation"` is an alias).
        directory: folder of the four `*-ubyte.gz` files (default: where the Debian package installs them).
        max_samples: keep a random subset of this size (drawn with `seed`) before encoding, so small subsets are
            cheap.
    """
    import datasets

    directory = directory or DEFAULT_FASHION_MNIST_DIR
    split = "test" if split in ("validation", "t10k") else split
    if split not in FASHION_MNIST_FILES:
        raise ValueError(f"Fashion-MNIST has the splits 'train' and 'test' (alias 'validation'), got {split!r}.")
    if not os.path.isdir(directory):
        raise ValueError(fashion_mnist_missing_message(directory))
    images_file, labels_file = FASHION_MNIST_FILES[split]
    images = read_idx_file(os.path.join(directory, images_file), IDX_IMAGES_MAGIC)  # (count, 28, 28)
    labels = read_idx_file(os.path.join(directory, labels_file), IDX_LABELS_MAGIC)  # (count,)
    if len(images) != len(labels):
        raise ValueError(f"Fashion-MNIST {split}: {len(images)} images but {len(labels)} labels in {directory}.")
    if labels.size and int(labels.max()) >= len(FASHION_MNIST_LABELS):
        raise ValueError(f"Fashion-MNIST {split}: label {int(labels.max())} out of range 0-9 in {directory}.")
    indices = np.arange(len(images))
    if max_samples is not None and max_samples < len(images):
        indices = np.random.default_rng(seed).permutation(len(images))[:max_samples]
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=list(FASHION_MNIST_LABELS))}
    )
    return datasets.Dataset.from_dict(
        {"image": [images[index] for index in indices], "label": [int(labels[index]) for index in indices]},
        features=features,
        info=datasets.DatasetInfo(description=f"Fashion-MNIST ({split}) read from {directory}", features=features),
    )


# ----------------------------------------------------------------------------------------------------------------
# Loading any source
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class ImageClassificationData:
    """Splits of an image-classification dataset and what is needed to read them.

    `splits` maps split names ("train", "validation", ...) to `datasets.Dataset` or `datasets.IterableDataset`
    objects whose image column is not decoded (decoding happens in `ImageClassificationDataset`, which counts and
    skips unreadable images). `label_names[i]` is the name of class `i` as the dataset numbers it."""

    splits: dict[str, Any]
    label_names: list[str]
    image_column: str
    label_column: str
    source: str
    hub_dataset_id: str | None = None
    streaming: bool = False
    string_labels: dict[str, int] | None = field(default=None, repr=False)

    def split(self, name: str):
        if name not in self.splits:
            raise ValueError(
                f"The data ({self.source}) has no split {name!r}; available splits: {sorted(self.splits)}."
            )
        return self.splits[name]


def _check_folder(path: str, flag: str) -> None:
    if not os.path.isdir(path):
        raise ValueError(f"{flag} {path!r} is not a folder. Pass a folder with one sub-folder of images per class.")
    has_files = any(files for _, _, files in os.walk(path))
    if not has_files:
        raise ValueError(f"{flag} {path!r} contains no files. Put the images in one sub-folder per class.")


def _is_hidden(name: str) -> bool:
    """Names `datasets` skips when it lists a folder: hidden files (`.DS_Store`, macOS `._x.jpg`) and `__MACOSX`."""
    return name.startswith((".", "__"))


def check_class_folder_layout(path: str, flag: str) -> None:
    """Refuse image folders whose labels `datasets`' imagefolder would get wrong.

    Labels come from folder names only when every image sits exactly one level down (`path/<class>/<image>`):
    images deeper down are labelled by their innermost folder (`cat/indoor/1.jpg` becomes class `indoor`), and an
    image directly in `path` drops the label column altogether. Both are refused with the layout found and the fix.
    Folders with a metadata file (labels given in `metadata.csv/jsonl/parquet`) and hidden files are not checked."""
    from datasets.packaged_modules.imagefolder.imagefolder import ImageFolder

    if any(os.path.isfile(os.path.join(path, name)) for name in IMAGEFOLDER_METADATA_FILES):
        return
    extensions = {extension.lower() for extension in ImageFolder.EXTENSIONS}
    by_depth: dict[int, list[str]] = {}
    for directory, subdirectories, files in os.walk(path):
        subdirectories[:] = sorted(name for name in subdirectories if not _is_hidden(name))
        for name in sorted(files):
            if _is_hidden(name) or os.path.splitext(name)[1].lower() not in extensions:
                continue
            relative = os.path.relpath(os.path.join(directory, name), path)
            by_depth.setdefault(relative.count(os.sep) + 1, []).append(relative)

    def examples(paths: list[str]) -> str:
        return ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")

    if 1 in by_depth:
        raise ValueError(
            f"{flag} {path!r} has {len(by_depth[1])} image(s) directly in it, outside any class sub-folder: "
            f"{examples(by_depth[1])}. Every image must sit in the sub-folder of its class ({path}/<class>/<image>): "
            "move these images into their class folder or remove them."
        )
    nested = sorted(relative for depth, paths in by_depth.items() if depth > 2 for relative in paths)
    if nested:
        parts = nested[0].split(os.sep)
        layout = (
            "nested class folders (<class>/<sub-folder>/.../<image>)"
            if 2 not in by_depth
            else f"mixed depths ({len(by_depth[2])} image(s) in <class>/<image>, {len(nested)} deeper down)"
        )
        raise ValueError(
            f"{flag} {path!r} has {layout}, e.g. {examples(nested)}. Labels come from the folder that holds each "
            f"image, so {parts[0]}/{parts[1]}/... would be labelled {parts[-2]!r}, not {parts[0]!r}. Use one level of "
            f"class folders: move the images of {parts[0]}/{parts[1]}/ into {parts[0]}/ (renaming clashing files), or "
            f"make each sub-folder its own class folder directly under {path}."
        )


def _undecoded(dataset, image_column: str):
    """Cast the image column to `Image(decode=False)` so unreadable files surface where they can be counted."""
    import datasets

    feature = dataset.features.get(image_column) if dataset.features is not None else None
    if isinstance(feature, datasets.Image) and feature.decode:
        return dataset.cast_column(image_column, datasets.Image(decode=False))
    return dataset


def _label_names(dataset, label_column: str, split_name: str) -> tuple[list[str], dict[str, int] | None]:
    """Class names of the label column: a `ClassLabel`'s names, or names collected from string/int labels."""
    import datasets

    feature = dataset.features.get(label_column) if dataset.features is not None else None
    if isinstance(feature, datasets.ClassLabel):
        return list(feature.names), None
    if isinstance(dataset, datasets.IterableDataset):
        raise ValueError(
            f"The label column {label_column!r} of the streamed split {split_name!r} is not a ClassLabel, so the class "
            "names cannot be known without reading the whole stream; use a dataset with ClassLabel labels or "
            "load it without --streaming."
        )
    values = dataset[label_column]
    if all(isinstance(value, str) for value in values):
        names = sorted(set(values))
        return names, {name: index for index, name in enumerate(names)}
    if all(isinstance(value, (int, np.integer)) and not isinstance(value, bool) for value in values):
        if values and min(values) < 0:
            raise ValueError(
                f"Label column {label_column!r} has negative labels ({min(values)}); labels must be >= 0."
            )
        return [str(index) for index in range(max(values) + 1 if values else 0)], None
    raise ValueError(
        f"Label column {label_column!r} must hold class indices (ClassLabel/int) or class-name strings; found "
        f"{type(values[0]).__name__ if values else 'no values'}. Choose the column with --label_column_name."
    )


def _check_columns(dataset, image_column: str, label_column: str, split_name: str, source: str) -> None:
    columns = list(dataset.column_names or (dataset.features.keys() if dataset.features else []))
    for column, flag in ((image_column, "--image_column_name"), (label_column, "--label_column_name")):
        if column not in columns:
            raise ValueError(
                f"Split {split_name!r} of {source} has no column {column!r} (columns: {columns}); pass {flag}."
            )


# Command-line flags (`soft_hf.data.arguments`, shared by training and evaluation) that select the data source.
DATA_SOURCE_FLAGS = (
    "dataset_name",
    "dataset_config_name",
    "train_dir",
    "validation_dir",
    "fashion_mnist_dir",
    "streaming",
    "image_column_name",
    "label_column_name",
    "train_val_split",
    "max_eval_samples",
    "seed",
    "cache_dir",
)


def data_source_arguments(args) -> dict[str, Any]:
    """The `load_image_classification_data` keyword arguments given by parsed command-line flags."""
    return {name: getattr(args, name) for name in DATA_SOURCE_FLAGS}


def load_image_classification_data(
    *,
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    train_dir: str | None = None,
    validation_dir: str | None = None,
    fashion_mnist_dir: str | None = None,
    streaming: bool = False,
    image_column_name: str = "image",
    label_column_name: str = "label",
    train_val_split: float | None = 0.15,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    seed: int = 42,
    cache_dir: str | None = None,
    trust_remote_code: bool = False,
    load_train: bool = True,
    shuffle_buffer_size: int = 10_000,
) -> ImageClassificationData:
    """Load train/validation splits from the chosen source (see the module docstring).

    With neither `dataset_name` nor `train_dir`/`validation_dir`, the offline Fashion-MNIST is used, with its 60,000
    training images as "train" and its 10,000 test images as "validation" (also available as "test").
    A Hub dataset without a validation split gets one carved out of "train" (`train_val_split`, seeded).
    `max_train_samples` / `max_eval_samples` keep seeded random subsets (for debugging and tests).
    `load_train=False` skips reading the offline training images (for evaluation of held-out splits).
    A streamed training split is shuffled through a buffer of `shuffle_buffer_size` examples (reshuffled every
    epoch by `set_epoch`).
    """
    import datasets

    if dataset_name is not None and (train_dir is not None or validation_dir is not None):
        raise ValueError("Pass either --dataset_name or --train_dir/--validation_dir, not both.")

    if dataset_name is None and train_dir is None and validation_dir is None:
        directory = fashion_mnist_dir or DEFAULT_FASHION_MNIST_DIR
        if streaming:
            logger.info("--streaming is ignored for the offline Fashion-MNIST default (it is read into memory).")
        test = _undecoded(load_fashion_mnist("test", directory, max_samples=max_eval_samples, seed=seed), "image")
        splits = {"validation": test, "test": test}
        if load_train:
            splits["train"] = _undecoded(
                load_fashion_mnist("train", directory, max_samples=max_train_samples, seed=seed), "image"
            )
        return ImageClassificationData(
            splits=splits,
            label_names=list(FASHION_MNIST_LABELS),
            image_column="image",
            label_column="label",
            source=f"Fashion-MNIST (offline, {directory})",
            hub_dataset_id=FASHION_MNIST_DATASET_ID,
        )

    if dataset_name is not None:
        try:
            loaded = datasets.load_dataset(
                dataset_name,
                dataset_config_name,
                cache_dir=cache_dir,
                streaming=streaming,
                **({"trust_remote_code": True} if trust_remote_code else {}),
            )
        except (FileNotFoundError, datasets.exceptions.DatasetNotFoundError) as error:
            raise ValueError(
                f"Could not load the dataset {dataset_name!r}: {error}. Check the name (and network access; offline, "
                "use --train_dir/--validation_dir or the built-in Fashion-MNIST default)."
            ) from error
        source = f"{dataset_name}" + (f" ({dataset_config_name})" if dataset_config_name else "")
        hub_dataset_id = dataset_name if not os.path.exists(dataset_name) else None
    else:
        data_files = {}
        for split_name, folder, flag in (
            ("train", train_dir, "--train_dir"),
            ("validation", validation_dir, "--validation_dir"),
        ):
            if folder is not None:
                _check_folder(folder, flag)
                check_class_folder_layout(folder, flag)
                data_files[split_name] = os.path.join(folder, "**")
        loaded = datasets.load_dataset("imagefolder", data_files=data_files, cache_dir=cache_dir, streaming=streaming)
        source = "image folders " + ", ".join(
            f"{name}={folder}" for name, folder in (("train", train_dir), ("validation", validation_dir)) if folder
        )
        hub_dataset_id = None

    splits = dict(loaded.items())
    if not splits:
        raise ValueError(f"{source} has no splits.")
    if "validation" not in splits:
        for alias in VALIDATION_SPLIT_NAMES[1:]:
            if alias in splits:
                splits["validation"] = splits[alias]
                break
    if "validation" not in splits and "train" in splits and train_val_split:
        if streaming:
            raise ValueError(
                f"{source} has no validation split and a streamed split cannot be divided; pass --validation_dir or a "
                "dataset with a validation split, or load it without --streaming."
            )
        divided = splits["train"].train_test_split(test_size=train_val_split, seed=seed, stratify_by_column=None)
        splits["train"], splits["validation"] = divided["train"], divided["test"]
        logger.info("No validation split in %s: held out %.0f%% of the training split.", source, 100 * train_val_split)

    for split_name, dataset in list(splits.items()):
        _check_columns(dataset, image_column_name, label_column_name, split_name, source)
        if not streaming and len(dataset) == 0:
            raise ValueError(f"Split {split_name!r} of {source} is empty; it needs at least one image.")
        splits[split_name] = _undecoded(dataset, image_column_name)

    reference_split = "train" if "train" in splits else next(iter(splits))
    label_names, string_labels = _label_names(splits[reference_split], label_column_name, reference_split)
    if not label_names:
        raise ValueError(f"{source} has no classes in its label column {label_column_name!r}.")

    if not streaming:
        if max_train_samples is not None and "train" in splits:
            splits["train"] = (
                splits["train"].shuffle(seed=seed).select(range(min(max_train_samples, len(splits["train"]))))
            )
        if max_eval_samples is not None:
            for split_name in splits:
                if split_name != "train":
                    dataset = splits[split_name]
                    splits[split_name] = dataset.shuffle(seed=seed).select(range(min(max_eval_samples, len(dataset))))
    else:
        if max_train_samples is not None and "train" in splits:
            splits["train"] = splits["train"].take(max_train_samples)
        if "train" in splits and shuffle_buffer_size > 1:
            splits["train"] = splits["train"].shuffle(seed=seed, buffer_size=shuffle_buffer_size)
        if max_eval_samples is not None:
            for split_name in splits:
                if split_name != "train":
                    splits[split_name] = splits[split_name].take(max_eval_samples)

    return ImageClassificationData(
        splits=splits,
        label_names=label_names,
        image_column=image_column_name,
        label_column=label_column_name,
        source=source,
        hub_dataset_id=hub_dataset_id,
        streaming=streaming,
        string_labels=string_labels,
    )


def label_mapping_to_model(
    dataset_label_names: Sequence[str], id2label: dict[int, str], for_training: bool = True
) -> list[int]:
    """Map dataset class indices to a model's class indices.

    If the model names its classes (anything but Transformers' placeholder `LABEL_i`), classes are matched by name
    and every dataset class must exist in the model; otherwise the counts must agree and indices are kept. Class
    folders named by WordNet synset (`n01440764`, ImageNet-style data) map to a 1000-class model in ImageNet-1k
    order (timm's, the order of converted official checkpoints, whose labels are timm's descriptions).
    Raises `ValueError` naming the mismatch and the fix (`for_training` selects the advice: a new head when
    fine-tuning, matching data when evaluating)."""
    model_names = [id2label[index] for index in sorted(id2label)]
    fix = (
        "Fine-tune a new head with --ignore_mismatched_sizes, or train on data with the model's label set."
        if for_training
        else "Evaluate on data whose class folders (or label names) are the model's classes (config.id2label), or "
        "WordNet synset ids (n01440764, ...) for an ImageNet-1k model."
    )
    positions = {name: index for index, name in enumerate(model_names)}
    if dataset_label_names and all(name in positions for name in dataset_label_names):
        return [positions[name] for name in dataset_label_names]
    synset_mapping = imagenet_synset_mapping(dataset_label_names, model_names)
    if synset_mapping is not None:
        return synset_mapping
    generic = all(name == f"LABEL_{index}" for index, name in enumerate(model_names))
    if generic:
        if len(model_names) != len(dataset_label_names):
            raise ValueError(
                f"The model has {len(model_names)} output classes but the data has {len(dataset_label_names)}. {fix}"
            )
        return list(range(len(dataset_label_names)))
    missing = [name for name in dataset_label_names if name not in positions]
    raise ValueError(
        f"The data has classes the model does not know: {missing[:10]}{' ...' if len(missing) > 10 else ''} "
        f"(model classes: {model_names[:10]}{' ...' if len(model_names) > 10 else ''}). {fix}"
    )


def imagenet_synset_mapping(dataset_label_names: Sequence[str], model_names: Sequence[str]) -> list[int] | None:
    """Model indices of ImageNet-1k class folders named by WordNet synset, or None when the data is not named by
    synsets or the model does not have 1000 classes. The model's class `i` must be ImageNet-1k class `i` (named by
    timm's description, its synset, or `LABEL_i`); otherwise a `ValueError` says which class disagrees."""
    if not dataset_label_names or not all(SYNSET_PATTERN.match(name) for name in dataset_label_names):
        return None
    if len(model_names) != 1000:
        return None
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    order = {synset: index for index, synset in enumerate(info.label_names())}
    unknown = [name for name in dataset_label_names if name not in order]
    if unknown:
        raise ValueError(f"The class folders {unknown[:10]} are WordNet synsets but not ImageNet-1k classes.")
    mapping = [order[name] for name in dataset_label_names]
    for synset, index in zip(dataset_label_names, mapping):
        description = info.index_to_description(index)
        if model_names[index] not in (description, synset, f"LABEL_{index}"):
            raise ValueError(
                f"The class folder {synset} is ImageNet-1k class {index} ({description!r}), but the model names its "
                f"class {index} {model_names[index]!r}: the model's classes are not in ImageNet-1k order, so the "
                "folders cannot be matched to them."
            )
    return mapping


# ----------------------------------------------------------------------------------------------------------------
# Decoding and reproducible augmentation (seeds: `soft_hf.data.sampling`)
# ----------------------------------------------------------------------------------------------------------------


def decode_dataset_image(value: Any) -> PIL.Image.Image:
    """An RGB PIL image from what a `datasets` image column holds: a PIL image, `{"bytes", "path"}`, a path or an
    array. Files go through `decode_image` and in-memory images through `convert_image_to_rgb` (both from
    `image_processing_soft`), so training and evaluation see the pixels the image processor and `predict.py` see.
    Raises `OSError`/`ValueError` for unreadable data."""
    if isinstance(value, PIL.Image.Image):
        return convert_image_to_rgb(value)
    if isinstance(value, dict) and value.get("bytes") is not None:
        return decode_image(value["bytes"])
    if isinstance(value, dict) and value.get("path"):
        return decode_image(value["path"])
    if isinstance(value, (str, os.PathLike)):
        return decode_image(value)
    if isinstance(value, np.ndarray):
        return convert_image_to_rgb(PIL.Image.fromarray(value))
    raise ValueError(f"Cannot read an image from a value of type {type(value).__name__}.")


def _describe_source(value: Any) -> str:
    if isinstance(value, dict) and value.get("path"):
        return str(value["path"])
    if isinstance(value, str):
        return value
    return "<in-memory image>"


class ImageClassificationDataset(torch.utils.data.Dataset):
    """A map-style `datasets.Dataset` as PyTorch samples `{"pixel_values", "labels", "indices"}`.

    Images are decoded here: an unreadable image is logged (the first few) and returned as a blank image with label
    `UNREADABLE_LABEL` (-1), so that batches keep their shape and the training and evaluation loops can count and
    drop it. Augmentation of sample `index` in epoch `e` is seeded with `(seed, e, index)` (`seeded_random_state`).

    Args:
        dataset: a `datasets.Dataset` (image column ideally not decoded, see `load_image_classification_data`).
        transform: maps an RGB PIL image to a `(3, height, width)` tensor.
        image_column / label_column: column names.
        label_mapping: dataset class index -> model class index (`label_mapping_to_model`); identity if `None`.
        string_labels: class name -> index, for datasets whose labels are strings.
        seed: base seed of the augmentation.
        blank_size: size of the stand-in image for unreadable files (any size works with resize/crop transforms).
    """

    def __init__(
        self,
        dataset,
        transform: Callable[[PIL.Image.Image], torch.Tensor],
        image_column: str = "image",
        label_column: str = "label",
        label_mapping: Sequence[int] | None = None,
        string_labels: dict[str, int] | None = None,
        seed: int = 0,
        blank_size: int = 32,
    ):
        self.dataset = dataset
        self.transform = transform
        self.image_column = image_column
        self.label_column = label_column
        self.label_mapping = list(label_mapping) if label_mapping is not None else None
        self.string_labels = string_labels
        self.seed = seed
        self.epoch = 0
        self.blank_size = blank_size
        self.num_logged_unreadable = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream of `epoch` (call before creating the epoch's iterator)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.process(self.dataset[int(index)], int(index))

    def process(self, example: dict[str, Any], index: int) -> dict[str, Any]:
        label = self.convert_label(example[self.label_column])
        try:
            image = decode_dataset_image(example[self.image_column])
        except Exception as error:  # PIL raises many types for corrupt files
            if self.num_logged_unreadable < MAX_LOGGED_UNREADABLE:
                logger.warning(
                    "Skipping unreadable image %s (sample %d): %s",
                    _describe_source(example[self.image_column]),
                    index,
                    error,
                )
            self.num_logged_unreadable += 1
            image, label = PIL.Image.new("RGB", (self.blank_size, self.blank_size)), UNREADABLE_LABEL
        with seeded_random_state(sample_seed(self.seed, self.epoch, index)):
            pixel_values = self.transform(image)  # (3, height, width)
        return {"pixel_values": pixel_values, "labels": label, "indices": index}

    def convert_label(self, value: Any) -> int:
        if self.string_labels is not None and isinstance(value, str):
            if value not in self.string_labels:
                raise ValueError(f"Unknown class name {value!r} (known: {sorted(self.string_labels)[:10]} ...).")
            value = self.string_labels[value]
        if value is None or isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"Expected an integer class label in column {self.label_column!r}, got {value!r}.")
        value = int(value)
        if self.label_mapping is not None:
            if not 0 <= value < len(self.label_mapping):
                raise ValueError(
                    f"Label {value} in column {self.label_column!r} is outside the {len(self.label_mapping)} classes "
                    "of the dataset's label feature; check the data or --label_column_name."
                )
            value = self.label_mapping[value]
        elif value < 0:
            raise ValueError(f"Negative label {value} in column {self.label_column!r}.")
        return value


class StreamingImageClassificationDataset(torch.utils.data.IterableDataset):
    """The streaming counterpart of `ImageClassificationDataset` over a `datasets.IterableDataset`.

    `set_epoch` also reshuffles the stream if it was shuffled (`datasets.IterableDataset.shuffle`). The index of a
    sample is its position in the epoch's stream (for augmentation seeds and prediction files)."""

    def __init__(self, dataset, transform, **kwargs):
        self.dataset = dataset
        self.processor = ImageClassificationDataset(dataset, transform, **kwargs)

    def set_epoch(self, epoch: int) -> None:
        self.processor.set_epoch(epoch)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        worker = torch.utils.data.get_worker_info()
        for position, example in enumerate(self.dataset):
            if worker is not None and position % worker.num_workers != worker.id:
                continue
            yield self.processor.process(example, position)


def collate_image_classification(examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack samples into `pixel_values (batch, 3, H, W)`, `labels (batch,)` and `indices (batch,)`."""
    return {
        "pixel_values": torch.stack([example["pixel_values"] for example in examples]),
        "labels": torch.tensor([example["labels"] for example in examples], dtype=torch.long),
        "indices": torch.tensor([example["indices"] for example in examples], dtype=torch.long),
    }


# ----------------------------------------------------------------------------------------------------------------
# Transforms
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class AugmentationConfig:
    """Training augmentation of the official recipe (timm's `create_transform` arguments)."""

    image_size: int = 224
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.5
    color_jitter: float | None = 0.4
    auto_augment: str | None = "rand-m9-mstd0.5-inc1"
    interpolation: str = "random"
    re_prob: float = 0.25
    re_mode: str = "pixel"
    re_count: int = 1
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)


def posterize_keeping_zero_bits(image: PIL.Image.Image, bits_to_keep: int, **kwargs) -> PIL.Image.Image:
    """timm's `posterize` op, also for 0 bits.

    RandAugment's "PosterizeIncreasing" keeps `4 - int(4 * level / 10)` bits, i.e. 0 bits at level 10, which
    `rand-m9-mstd0.5` reaches when the magnitude noise is clipped at 10. Pillow < 11 returned a black image for 0
    bits; Pillow >= 11 raises "bits must be between or equal to 1 and 8" and would end training. Keep the old result.
    """
    from timm.data.auto_augment import posterize

    if bits_to_keep <= 0:
        return PIL.Image.new(image.mode, image.size)  # every pixel & 0
    return posterize(image, bits_to_keep, **kwargs)


def _patch_posterize(transform) -> None:
    from timm.data.auto_augment import posterize

    for step in getattr(transform, "transforms", []):
        for operation in getattr(step, "ops", []):
            if getattr(operation, "aug_fn", None) is posterize:
                operation.aug_fn = posterize_keeping_zero_bits


def build_train_transform(config: AugmentationConfig):
    """timm's ImageNet training transform: random resized crop, flip, RandAugment (or colour jitter when
    RandAugment is off), normalisation and random erasing."""
    from timm.data import create_transform

    auto_augment = config.auto_augment if config.auto_augment not in (None, "", "none") else None
    transform = create_transform(
        config.image_size,
        is_training=True,
        scale=tuple(config.scale),
        ratio=tuple(config.ratio),
        hflip=config.hflip,
        color_jitter=config.color_jitter or 0.0,
        auto_augment=auto_augment,
        interpolation=config.interpolation,
        mean=tuple(config.mean),
        std=tuple(config.std),
        re_prob=config.re_prob,
        re_mode=config.re_mode,
        re_count=config.re_count,
    )
    _patch_posterize(transform)
    return transform


def build_eval_transform(image_processor):
    """The evaluation transform of a SOFT image processor, applied to PIL images with torchvision/timm: resize the
    shorter side to `size["shortest_edge"]` (or to `size` height x width), centre-crop `crop_size`, rescale and
    normalise with the processor's mean and std, using the processor's interpolation."""
    from timm.data.transforms import MaybeToTensor, str_to_interp_mode
    from torchvision import transforms

    size = dict(image_processor.size)
    crop = dict(image_processor.crop_size) if getattr(image_processor, "do_center_crop", True) else None
    resample = getattr(image_processor, "resample", PIL.Image.Resampling.BICUBIC)
    interpolation = str_to_interp_mode(PIL.Image.Resampling(int(resample)).name.lower())
    steps = []
    if getattr(image_processor, "do_resize", True):
        if size.get("shortest_edge") is not None:
            steps.append(transforms.Resize(size["shortest_edge"], interpolation=interpolation))
        else:
            steps.append(transforms.Resize((size["height"], size["width"]), interpolation=interpolation))
    if crop is not None:
        steps.append(transforms.CenterCrop((crop["height"], crop["width"])))
    steps.append(MaybeToTensor())
    if getattr(image_processor, "do_normalize", True):
        steps.append(transforms.Normalize(mean=list(image_processor.image_mean), std=list(image_processor.image_std)))
    return transforms.Compose(steps)


__all__ = [
    "AugmentationConfig",
    "DEFAULT_FASHION_MNIST_DIR",
    "FASHION_MNIST_LABELS",
    "ImageClassificationData",
    "ImageClassificationDataset",
    "StreamingImageClassificationDataset",
    "UNREADABLE_LABEL",
    "build_eval_transform",
    "build_train_transform",
    "collate_image_classification",
    "check_class_folder_layout",
    "decode_dataset_image",
    "imagenet_synset_mapping",
    "label_mapping_to_model",
    "load_fashion_mnist",
    "load_image_classification_data",
]
