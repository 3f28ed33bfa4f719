"""The Fashion-MNIST scenes dataset (soft_hf.data.scenes): deterministic files, valid COCO detection annotations whose
boxes, areas and RLE masks describe the visible garments exactly, semantic masks that agree with them, no validation
garment taken from Fashion-MNIST's training images (nor training garment from its test images), and the segmentation
trainer and the detection reader reading the folder as written."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from soft_hf.data.classification import FASHION_MNIST_LABELS
from soft_hf.data.scenes import SceneConfig, generate_scenes, load_fashion_mnist_arrays, main, tight_bbox


pytest.importorskip("pycocotools")
pytest.importorskip("skimage")
if not Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz").is_file():
    pytest.skip("Fashion-MNIST (Debian package dataset-fashion-mnist) is not installed", allow_module_level=True)

NUM_TRAIN, NUM_VAL, SEED = 10, 6, 3
SPLITS = {"train": NUM_TRAIN, "val": NUM_VAL}


@pytest.fixture(scope="module")
def scenes_dir(tmp_path_factory) -> Path:
    output_dir = tmp_path_factory.mktemp("scenes") / "data"
    generate_scenes(output_dir, num_train=NUM_TRAIN, num_val=NUM_VAL, seed=SEED)
    return output_dir


def read_coco(path: Path):
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def decode(segmentation: dict) -> np.ndarray:
    from pycocotools import mask as mask_utils

    return mask_utils.decode({"size": segmentation["size"], "counts": segmentation["counts"].encode()}).astype(bool)


def relative_files(root: Path) -> dict[str, bytes]:
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def test_the_folder_has_the_documented_layout(scenes_dir):
    files = relative_files(scenes_dir)
    for split, count in SPLITS.items():
        names = [f"{index:06d}.png" for index in range(count)]
        assert sorted(name for name in files if name.startswith(f"{split}/images/")) == [
            f"{split}/images/{name}" for name in names
        ]
        assert sorted(name for name in files if name.startswith(f"{split}/masks/")) == [
            f"{split}/masks/{name}" for name in names
        ]
        assert f"annotations/instances_{split}.json" in files
    id2label = json.loads(files["id2label.json"])
    assert id2label == {"0": "background", **{str(k + 1): name for k, name in enumerate(FASHION_MNIST_LABELS)}}
    info = json.loads(files["dataset_info.json"])
    assert info["arguments"]["seed"] == SEED and info["arguments"]["image_size"] == 160
    assert info["splits"]["val"]["garments_from"] == "Fashion-MNIST test"
    assert "MIT" in info["sources"]["garments"]["license"] and "CC0" in info["sources"]["backgrounds"]["license"]
    image = Image.open(scenes_dir / "train" / "images" / "000000.png")
    mask = Image.open(scenes_dir / "train" / "masks" / "000000.png")
    assert (image.mode, image.size, mask.mode, mask.size) == ("RGB", (160, 160), "L", (160, 160))


def test_same_arguments_give_byte_identical_files_and_more_scenes_only_add_scenes(scenes_dir, tmp_path):
    again = tmp_path / "again"
    generate_scenes(again, num_train=NUM_TRAIN, num_val=NUM_VAL, seed=SEED)
    first, second = relative_files(scenes_dir), relative_files(again)
    assert sorted(first) == sorted(second)
    assert [name for name in first if first[name] != second[name]] == []

    # Scene i depends on (seed, split, i) only: a smaller run writes the same first scenes.
    fewer = tmp_path / "fewer"
    generate_scenes(fewer, num_train=4, num_val=2, seed=SEED)
    for name, content in relative_files(fewer).items():
        if name.startswith(("train/", "val/")):
            assert content == first[name], name
    # Another seed gives other scenes.
    other = tmp_path / "other"
    generate_scenes(other, num_train=2, num_val=1, seed=SEED + 1)
    assert (other / "train/images/000000.png").read_bytes() != first["train/images/000000.png"]


def test_annotations_are_valid_coco_detection_and_evaluate_perfectly_against_themselves(scenes_dir):
    from pycocotools.cocoeval import COCOeval

    for split, count in SPLITS.items():
        coco = read_coco(scenes_dir / "annotations" / f"instances_{split}.json")
        assert [coco.cats[k] for k in sorted(coco.cats)] == [
            {"id": k + 1, "name": name, "supercategory": coco.cats[k + 1]["supercategory"]}
            for k, name in enumerate(FASHION_MNIST_LABELS)
        ]
        assert {coco.cats[6]["supercategory"], coco.cats[9]["supercategory"]} == {"footwear", "accessory"}
        assert sorted(coco.imgs) == list(range(1, count + 1))
        for image in coco.imgs.values():
            with Image.open(scenes_dir / split / "images" / image["file_name"]) as opened:
                assert opened.size == (image["width"], image["height"])
        annotations = list(coco.anns.values())
        assert len(annotations) >= 2 * count * 0.5  # 2-5 garments drawn per scene, few left out
        assert len({annotation["id"] for annotation in annotations}) == len(annotations)
        assert all(annotation["iscrowd"] == 0 for annotation in annotations)

        # The ground truth fed back as detections: loadRes accepts it and COCOeval scores it perfectly.
        results = [
            {key: annotation[key] for key in ("image_id", "category_id", "bbox", "segmentation")} | {"score": 1.0}
            for annotation in annotations
        ]
        for iou_type in ("bbox", "segm"):
            with contextlib.redirect_stdout(io.StringIO()):
                detections = coco.loadRes([dict(result) for result in results])
                evaluation = COCOeval(coco, detections, iou_type)
                evaluation.evaluate()
                evaluation.accumulate()
                evaluation.summarize()
            assert evaluation.stats[0] == pytest.approx(1.0), (split, iou_type)  # AP@[.5:.95]


def test_boxes_and_areas_are_tight_around_the_visible_masks(scenes_dir):
    from pycocotools import mask as mask_utils

    config = SceneConfig()
    for split in SPLITS:
        coco = read_coco(scenes_dir / "annotations" / f"instances_{split}.json")
        for annotation in coco.anns.values():
            image = coco.imgs[annotation["image_id"]]
            mask = decode(annotation["segmentation"])  # (height, width)
            assert mask.shape == (image["height"], image["width"])
            rows, columns = np.nonzero(mask)
            x, y, width, height = annotation["bbox"]
            assert (x, y) == (columns.min(), rows.min())
            assert (x + width - 1, y + height - 1) == (columns.max(), rows.max())
            assert annotation["area"] == mask.sum() == coco.annToMask(annotation).sum()
            assert annotation["area"] >= config.min_visible_pixels
            rle = {"size": annotation["segmentation"]["size"], "counts": annotation["segmentation"]["counts"].encode()}
            assert mask_utils.toBbox(rle).tolist() == annotation["bbox"]
    assert tight_bbox(np.pad(np.ones((2, 3), bool), ((4, 1), (5, 0)))) == [5, 4, 3, 2]


def test_semantic_masks_are_the_union_of_the_instances(scenes_dir):
    for split, count in SPLITS.items():
        coco = read_coco(scenes_dir / "annotations" / f"instances_{split}.json")
        for image_id, image in coco.imgs.items():
            semantic = np.array(Image.open(scenes_dir / split / "masks" / image["file_name"]))  # (height, width) uint8
            expected = np.zeros_like(semantic)
            covered = np.zeros(semantic.shape, dtype=bool)
            for annotation in coco.imgToAnns[image_id]:
                mask = decode(annotation["segmentation"])
                assert not (covered & mask).any()  # visible parts never overlap
                covered |= mask
                expected[mask] = annotation["category_id"]
            np.testing.assert_array_equal(semantic, expected)
            assert set(np.unique(semantic)) <= set(range(11))
            assert covered.any()  # every scene of these shows at least one garment


def test_garments_come_from_the_fashion_mnist_split_of_their_scene_split(scenes_dir):
    train_images, train_labels = load_fashion_mnist_arrays("train")
    test_images, test_labels = load_fashion_mnist_arrays("test")
    test_hashes = {hashlib.sha1(image.tobytes()).digest() for image in test_images}
    sources = {"train": (train_images, train_labels, "train"), "val": (test_images, test_labels, "test")}
    for split, (images, labels, source_split) in sources.items():
        coco = read_coco(scenes_dir / "annotations" / f"instances_{split}.json")
        for annotation in coco.anns.values():
            assert annotation["fashion_mnist_split"] == source_split
            index = annotation["fashion_mnist_index"]
            assert 0 <= index < len(images)
            assert annotation["category_id"] == int(labels[index]) + 1
            if split == "train":
                assert hashlib.sha1(images[index].tobytes()).digest() not in test_hashes


def test_segmentation_training_reads_the_scenes_folder(scenes_dir, tmp_path):
    from helpers_hub import load_script_module
    from helpers_segmentation import tiny_soft_norm_kwargs
    from transformers import AutoModelForSemanticSegmentation

    import soft_hf  # noqa: F401  (registers the "soft" backbone)

    config_path = tmp_path / "backbone.json"
    config_path.write_text(json.dumps(tiny_soft_norm_kwargs()))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        # fmt: off
        results = load_script_module("train_segmentation").main([
            "--train_dir", str(scenes_dir / "train"), "--validation_dir", str(scenes_dir / "val"),
            "--output_dir", str(tmp_path / "run"), "--backbone", str(config_path), "--crop_size", "64",
            "--eval_size", "64", "--per_device_train_batch_size", "2", "--max_train_steps", "1",
            "--decoder_hidden_size", "16", "--auxiliary_channels", "8", "--num_workers", "0",
        ])
        # fmt: on
    finally:
        torch.set_num_threads(threads)
    assert results["step"] == 1 and len(results["eval_per_category_iou"]) == 11
    model = AutoModelForSemanticSegmentation.from_pretrained(tmp_path / "run" / "final")
    assert model.config.id2label == {0: "background", **{k + 1: name for k, name in enumerate(FASHION_MNIST_LABELS)}}


def test_detection_reader_reads_the_scenes_folder(scenes_dir):
    from soft_hf.data.detection import CocoDetectionDataset

    dataset = CocoDetectionDataset(scenes_dir / "val" / "images", scenes_dir / "annotations" / "instances_val.json")
    assert len(dataset) == NUM_VAL and dataset.category_ids == list(range(1, 11))
    assert dataset.id2label == dict(enumerate(FASHION_MNIST_LABELS))
    item = dataset[0]
    expected = np.array(Image.open(scenes_dir / "val" / "images" / "000000.png"))
    np.testing.assert_array_equal(np.array(item["image"]), expected)
    labels = [annotation["category_id"] for annotation in dataset.to_label_annotations(item["annotations"])]
    assert labels == [annotation["category_id"] - 1 for annotation in item["annotations"]]


def test_command_line_refuses_a_non_empty_folder_and_bad_options(tmp_path, capsys):
    info = main(["--output_dir", str(tmp_path / "cli"), "--num_train", "2", "--num_val", "1", "--image_size", "64"])
    assert info["splits"]["train"]["images"] == 2 and "train: 2 images" in capsys.readouterr().out
    assert Image.open(tmp_path / "cli" / "val" / "images" / "000000.png").size == (64, 64)
    with pytest.raises(ValueError, match="not empty.*--overwrite"):
        main(["--output_dir", str(tmp_path / "cli"), "--num_train", "2", "--num_val", "1"])
    main(["--output_dir", str(tmp_path / "cli"), "--num_train", "1", "--num_val", "1", "--overwrite"])
    assert sorted(path.name for path in (tmp_path / "cli" / "train" / "images").iterdir()) == ["000000.png"]
    with pytest.raises(ValueError, match="min_garments <= max_garments"):
        SceneConfig(min_garments=4, max_garments=2)
    with pytest.raises(ValueError, match="min_scale"):
        SceneConfig(max_scale=1.5)
    with pytest.raises(ValueError, match="Fashion-MNIST, was not found"):
        generate_scenes(tmp_path / "none", num_train=1, num_val=1, fashion_mnist_dir=str(tmp_path / "absent"))
