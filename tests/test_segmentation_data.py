"""Segmentation data sources (soft_hf.data.segmentation) and the data flags of the segmentation trainer: ADE20K's
release layout (reduced labels, class names from objectInfo150), local Hub datasets (`save_to_disk` folders and
parquet files read by `load_dataset`) with image, palette and array masks, and the errors for bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers_segmentation import load_skimage
from PIL import Image

from soft_hf.data.segmentation import (
    HubSegmentationDataset,
    SegmentationImageFolder,
    ade20k_class_names,
    load_segmentation_data,
)
from soft_hf.tasks.segmentation.train import parse_args, read_id2label, split_datasets


pytest.importorskip("skimage")

ADE_NAMES = ["wall", "building, edifice", "sky"] + [f"thing{index}" for index in range(4, 151)]


def ade_mask(image: np.ndarray, offset: int) -> np.ndarray:
    """A mask with ADE20K values: 0 ("other") in the top rows, classes 1..150 elsewhere (from the grey levels)."""
    grey = image.mean(axis=2) if image.ndim == 3 else image
    mask = (1 + (grey.astype(np.int64) * 149 // 255) + offset) % 151  # 0..150
    mask[:5] = 0
    return mask.astype(np.uint8)


def write_ade20k(root: Path, class_file: str = "txt") -> Path:
    """`root/ADEChallengeData2016/{images,annotations}/{training,validation}` and its objectInfo150 file."""
    root = root / "ADEChallengeData2016"
    for split, names in (("training", ("chelsea", "coffee", "rocket")), ("validation", ("astronaut",))):
        (root / "images" / split).mkdir(parents=True)
        (root / "annotations" / split).mkdir(parents=True)
        prefix = "ADE_train" if split == "training" else "ADE_val"
        for number, name in enumerate(names, start=1):
            image = load_skimage(name, max_side=96)
            Image.fromarray(image).save(root / "images" / split / f"{prefix}_{number:08d}.jpg")
            Image.fromarray(ade_mask(image, number)).save(root / "annotations" / split / f"{prefix}_{number:08d}.png")
    if class_file == "txt":  # the challenge release: tab-separated
        lines = ["Idx\tRatio\tTrain\tVal\tName"] + [f"{k}\t0.01\t10\t1\t{name}" for k, name in enumerate(ADE_NAMES, 1)]
        (root / "objectInfo150.txt").write_text("\n".join(lines) + "\n")
    elif class_file == "csv":  # CSAIL's repositories: comma-separated, synonyms joined by ";"
        lines = ["Idx,Ratio,Train,Val,Stuff,Name"]
        lines += [f"{k},0.01,10,1,0,{name.replace(', ', ';')}" for k, name in enumerate(ADE_NAMES, 1)]
        (root / "objectInfo150.csv").write_text("\n".join(lines) + "\n")
    return root


def test_ade20k_layout_reduces_labels_and_reads_class_names(tmp_path):
    root = write_ade20k(tmp_path)
    data = load_segmentation_data(train_dir=root)
    assert (data.layout, data.reduce_labels) == ("ade20k", True)
    assert isinstance(data.train, SegmentationImageFolder) and len(data.train) == 3 and len(data.validation) == 1
    assert data.id2label[0] == "wall" and data.id2label[1] == "building" and len(data.id2label) == 150
    sample = data.train[0]
    stored = np.array(Image.open(root / "annotations" / "training" / "ADE_train_00000001.png")).astype(np.int64)
    np.testing.assert_array_equal(sample["mask"], np.where(stored == 0, 255, stored - 1))
    assert sample["path"].endswith("images/training/ADE_train_00000001.jpg")
    assert data.validation[0]["path"].endswith("images/validation/ADE_val_00000001.jpg")
    data.train.check_masks(len(data.id2label))

    kept = load_segmentation_data(train_dir=root, reduce_labels=False)
    assert kept.id2label[0] == "other" and kept.id2label[150] == ADE_NAMES[-1] and len(kept.id2label) == 151
    np.testing.assert_array_equal(kept.train[0]["mask"], stored)

    csv_root = write_ade20k(tmp_path / "csv", class_file="csv")
    assert ade20k_class_names(csv_root)[:3] == ["wall", "building", "sky"]
    bare = write_ade20k(tmp_path / "bare", class_file=None)
    assert ade20k_class_names(bare) is None and load_segmentation_data(train_dir=bare).id2label is None
    with pytest.raises(ValueError, match="not laid out like ADEChallengeData2016"):
        load_segmentation_data(train_dir=tmp_path, dataset_layout="ade20k")


def test_trainer_flags_select_ade20k_and_its_defaults(tmp_path):
    root = write_ade20k(tmp_path)
    args = parse_args(["--train_dir", str(root), "--output_dir", str(tmp_path / "run")])
    train_set, validation_set, data = split_datasets(args, train_transform=None, eval_transform=None)
    assert data.layout == "ade20k" and train_set.reduce_labels and validation_set.reduce_labels
    assert (len(train_set), len(validation_set)) == (3, 1) and train_set.seed == args.seed
    assert read_id2label(args, data)[2] == "sky"

    args = parse_args(["--train_dir", str(root), "--output_dir", "run", "--no_reduce_labels"])
    assert split_datasets(args, None, None)[2].reduce_labels is False
    with pytest.raises(SystemExit):
        parse_args(["--output_dir", "run"])  # no data
    with pytest.raises(SystemExit):
        parse_args(["--train_dir", str(root), "--dataset_name", "scene_parse_150", "--output_dir", "run"])


def hub_segmentation_rows(mask_kind: str) -> dict:
    """Images with their masks as grey PNGs ("L"), palette PNGs ("P") or 2-D arrays ("array")."""
    images, masks = [], []
    for name in ("chelsea", "coffee", "coins"):
        image = load_skimage(name, max_side=64)
        mask = (image.mean(axis=2) if image.ndim == 3 else image) > 100  # (height, width) bool
        mask = mask.astype(np.uint8) * 2  # classes 0 and 2
        images.append(Image.fromarray(image))
        if mask_kind == "array":
            masks.append(mask.astype(np.int32).tolist())
        elif mask_kind == "L":
            masks.append(Image.fromarray(mask))  # grey
        else:
            palette_mask = Image.frombytes("P", (mask.shape[1], mask.shape[0]), mask.tobytes())
            palette_mask.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0])  # indices, shown as colours
            masks.append(palette_mask)
    return {"image": images, "masks": masks}


@pytest.mark.parametrize("mask_kind, storage", [("L", "save_to_disk"), ("P", "parquet"), ("array", "save_to_disk")])
def test_hub_datasets_from_local_folders(tmp_path, mask_kind, storage):
    import datasets

    rows = hub_segmentation_rows(mask_kind)
    column = {"L": "annotation", "P": "label", "array": "semantic_map"}[mask_kind]
    mask_feature = (
        datasets.Sequence(datasets.Sequence(datasets.Value("int32"))) if mask_kind == "array" else datasets.Image()
    )
    features = datasets.Features({"image": datasets.Image(), column: mask_feature})
    train = datasets.Dataset.from_dict({"image": rows["image"], column: rows["masks"]}, features=features)
    validation = train.select([2])
    folder = tmp_path / "hub"
    if storage == "save_to_disk":
        datasets.DatasetDict({"train": train, "validation": validation}).save_to_disk(str(folder))
    else:
        (folder / "data").mkdir(parents=True)
        train.to_parquet(str(folder / "data" / "train-00000-of-00001.parquet"))
        validation.to_parquet(str(folder / "data" / "validation-00000-of-00001.parquet"))
    (folder / "id2label.json").write_text(json.dumps({"0": "dark", "1": "unused", "2": "bright"}))

    data = load_segmentation_data(dataset_name=str(folder), cache_dir=str(tmp_path / "cache"))
    assert isinstance(data.train, HubSegmentationDataset) and data.train.mask_column == column
    assert (len(data.train), len(data.validation), data.layout) == (3, 1, "hub")
    assert data.id2label == {0: "dark", 1: "unused", 2: "bright"}
    for index in range(3):
        image, mask = data.train.load(index)
        np.testing.assert_array_equal(np.asarray(image), np.asarray(rows["image"][index].convert("RGB")))
        np.testing.assert_array_equal(mask, np.asarray(rows["masks"][index], dtype=np.int64))
        assert mask.dtype == np.int64
    assert data.train.label_values() == [0, 2]
    data.train.check_masks(3)
    with pytest.raises(ValueError, match=rf"mask \S+ \(train\) row 0 \('{column}'\) holds class values \[2\] outside"):
        data.train.check_masks(2)

    reduced = load_segmentation_data(dataset_name=str(folder), reduce_labels=True, cache_dir=str(tmp_path / "cache"))
    np.testing.assert_array_equal(reduced.train.load(0)[1], np.where(np.asarray(rows["masks"][0]) == 0, 255, 1))


def test_trainer_flags_read_a_hub_dataset_and_split_off_validation(tmp_path):
    import datasets

    rows = hub_segmentation_rows("L")
    features = datasets.Features({"picture": datasets.Image(), "gt": datasets.Image()})
    data = datasets.Dataset.from_dict({"picture": rows["image"], "gt": rows["masks"]}, features=features)
    datasets.DatasetDict({"train": data}).save_to_disk(str(tmp_path / "hub"))

    arguments = ["--dataset_name", str(tmp_path / "hub"), "--output_dir", "run", "--validation_split", "0.34"]
    with pytest.raises(ValueError, match=r"no mask column among .*columns: \['picture', 'gt'\].*--mask_column_name"):
        split_datasets(parse_args(arguments + ["--image_column_name", "picture"]), None, None)
    with pytest.raises(ValueError, match=r"has no column 'image' .*--image_column_name"):
        split_datasets(parse_args(arguments + ["--mask_column_name", "gt"]), None, None)
    args = parse_args(arguments + ["--image_column_name", "picture", "--mask_column_name", "gt"])
    train_set, validation_set, source = split_datasets(args, None, None)
    assert (len(train_set), len(validation_set)) == (2, 1) and source.validation is None
    assert sorted(train_set.indices + validation_set.indices) == [0, 1, 2]
    assert read_id2label(args, source) == {0: "class_0", 1: "class_1", 2: "class_2"}  # scanned from the masks
    with pytest.raises(ValueError, match=r"has no split 'validation' \(splits: \['train'\]\)"):
        split_datasets(parse_args([*arguments, "--image_column_name", "picture", "--mask_column_name", "gt",
                                   "--validation_split_name", "validation"]), None, None)  # fmt: skip
