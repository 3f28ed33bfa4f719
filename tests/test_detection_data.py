"""Detection data readers (soft_hf.data.detection) on real files and the real libraries: a COCO-2017-style folder
(real photographs, non-contiguous category ids 1, 5, 90, an image without annotations, a crowd region), local Hub
datasets in the common detection schema (saved with `save_to_disk` and as parquet files read by `load_dataset`), the
annotations RT-DETR's image processor consumes, COCO evaluation on the in-memory ground truth, and the errors for bad
inputs."""

from __future__ import annotations

import contextlib
import io
import json
import random
from pathlib import Path

import numpy as np
import pytest
from helpers_segmentation import load_skimage
from PIL import Image

from soft_hf.data.detection import CocoDetectionDataset, hub_detection_dataset


pytest.importorskip("pycocotools")
pytest.importorskip("skimage")

CATEGORIES = [
    {"id": 1, "name": "person", "supercategory": "person"},
    {"id": 5, "name": "airplane", "supercategory": "vehicle"},
    {"id": 90, "name": "toothbrush", "supercategory": "indoor"},
]
# image id -> (file name, scikit-image photograph)
IMAGES = {
    139: ("000000000139.jpg", "astronaut"),
    285: ("000000000285.jpg", "rocket"),
    632: ("000000000632.jpg", "coffee"),
}


def coco_2017_folder(root: Path) -> Path:
    """`root/annotations/instances_val2017.json` and `root/val2017/*.jpg` like COCO 2017's validation set."""
    (root / "annotations").mkdir(parents=True)
    (root / "val2017").mkdir()
    images = []
    for image_id, (file_name, photograph) in IMAGES.items():
        pixels = load_skimage(photograph, max_side=160)
        Image.fromarray(pixels).save(root / "val2017" / file_name, quality=95)
        height, width = pixels.shape[:2]
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height, "license": 1})
    annotations = [
        {"id": 11, "image_id": 139, "category_id": 1, "bbox": [40.5, 10.0, 60.0, 120.25], "area": 5000.0,
         "iscrowd": 0, "segmentation": [[40.5, 10.0, 100.5, 10.0, 100.5, 130.25, 40.5, 130.25]]},
        {"id": 12, "image_id": 139, "category_id": 90, "bbox": [5.0, 100.0, 20.0, 30.0], "area": 450.0,
         "iscrowd": 0, "segmentation": [[5.0, 100.0, 25.0, 100.0, 25.0, 130.0]]},
        {"id": 13, "image_id": 285, "category_id": 5, "bbox": [70.0, 20.0, 25.0, 60.0], "area": 1200.0,
         "iscrowd": 0, "segmentation": [[70.0, 20.0, 95.0, 20.0, 95.0, 80.0, 70.0, 80.0]]},
        {"id": 14, "image_id": 285, "category_id": 1, "bbox": [0.0, 80.0, 50.0, 26.0], "area": 900.0,
         "iscrowd": 1, "segmentation": {"size": [107, 160], "counts": [8560, 2, 8558]}},
    ]  # fmt: skip
    dataset = {
        "info": {"description": "COCO 2017 (tiny)"},
        "licenses": [{"id": 1, "name": "CC BY 4.0"}],
        "images": images,
        "annotations": annotations,
        "categories": CATEGORIES,
    }
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(dataset))
    return root


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory) -> Path:
    return coco_2017_folder(tmp_path_factory.mktemp("coco"))


def evaluate_ground_truth_against_itself(coco, annotations, iou_type="bbox") -> float:
    """COCO AP@[.5:.95] of the ground truth fed back as detections (1.0 when boxes and ids round-trip)."""
    from pycocotools.cocoeval import COCOeval

    results = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": list(a["bbox"]), "score": 1.0}
        for a in annotations
        if not a["iscrowd"]
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        evaluation = COCOeval(coco, coco.loadRes(results), iou_type)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return float(evaluation.stats[0])


def test_coco_2017_folder_items_labels_and_evaluation(coco_root):
    from transformers import RTDetrImageProcessor

    annotation_file = coco_root / "annotations" / "instances_val2017.json"
    dataset = CocoDetectionDataset(coco_root / "val2017", annotation_file)
    written = json.loads(annotation_file.read_text())
    assert len(dataset) == 3 and dataset.image_ids == [139, 285, 632]
    assert dataset.categories == [{"id": c["id"], "name": c["name"]} for c in CATEGORIES]
    assert dataset.category_ids == [1, 5, 90] and dataset.num_labels == 3
    assert dataset.id2label == {0: "person", 1: "airplane", 2: "toothbrush"}
    assert dataset.label2id == {"person": 0, "airplane": 1, "toothbrush": 2}
    assert [dataset.category_to_label(c) for c in (1, 5, 90)] == [0, 1, 2]
    assert [dataset.label_to_category(label) for label in (0, 1, 2)] == [1, 5, 90]
    assert dataset.labels_to_categories(np.array([2, 0])) == [90, 1]
    with pytest.raises(ValueError, match="Category id 2 is not one of"):
        dataset.category_to_label(2)
    with pytest.raises(ValueError, match="outside 0..2"):
        dataset.label_to_category(3)

    for index, image_id in enumerate(dataset.image_ids):
        item = dataset[index]
        file_name, _ = IMAGES[image_id]
        with Image.open(coco_root / "val2017" / file_name) as opened:
            expected = np.asarray(opened.convert("RGB"))
        assert item["image_id"] == image_id and item["image"].mode == "RGB"
        np.testing.assert_array_equal(np.asarray(item["image"]), expected)
        assert item["annotations"] == [a for a in written["annotations"] if a["image_id"] == image_id]
    assert dataset[2]["annotations"] == []  # 632 has none, and stays (evaluation needs every image)
    assert CocoDetectionDataset(
        coco_root / "val2017", annotation_file, skip_images_without_annotations=True
    ).image_ids == [139, 285]

    # A transform sees the item under RNGs seeded with (seed, epoch, index): the same draw on every call of an epoch.
    seeded = CocoDetectionDataset(
        coco_root / "val2017", annotation_file, transform=lambda item: (item["image_id"], random.random()), seed=5
    )
    first = seeded[1]
    assert first[0] == 285 and seeded[1] == first
    seeded.set_epoch(1)
    assert seeded[1] != first

    # What RT-DETR's processor makes of an item: contiguous labels and the boxes, normalised (cx, cy, w, h).
    item = dataset[0]
    processor = RTDetrImageProcessor(do_resize=False)
    target = processor(
        images=[item["image"]],
        annotations=[dataset.processor_annotations(item)],
        format="coco_detection",
        return_tensors="pt",
    )["labels"][0]
    assert target["class_labels"].tolist() == [0, 2] and target["image_id"].tolist() == [139]
    width, height = item["image"].size
    x, y, w, h = item["annotations"][0]["bbox"]
    np.testing.assert_allclose(
        target["boxes"][0].numpy(), [(x + w / 2) / width, (y + h / 2) / height, w / width, h / height], rtol=1e-5
    )
    assert dataset.processor_annotations(item, contiguous_labels=False)["annotations"][1]["category_id"] == 90

    # Predictions (xyxy, contiguous labels) back to COCO results, scored against the file's ground truth.
    results = dataset.to_coco_results(139, np.array([[40.5, 10.0, 100.5, 130.25]]), [0.9], [0])
    assert results == [{"image_id": 139, "category_id": 1, "bbox": [40.5, 10.0, 60.0, 120.25], "score": 0.9}]
    assert evaluate_ground_truth_against_itself(dataset.coco, written["annotations"]) == pytest.approx(1.0)


def test_coco_file_errors_name_the_file_and_the_fix(coco_root, tmp_path):
    images_dir = coco_root / "val2017"
    with pytest.raises(ValueError, match=r"instances_train2017.json does not exist.*annotations_trainval2017.zip"):
        CocoDetectionDataset(images_dir, tmp_path / "instances_train2017.json")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"broken.json is not a JSON file"):
        CocoDetectionDataset(images_dir, tmp_path / "broken.json")
    captions = {"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [{"image_id": 1, "caption": "a cat"}]}
    (tmp_path / "captions.json").write_text(json.dumps(captions))
    with pytest.raises(ValueError, match=r"captions.json is not a COCO detection file: it lacks \['categories'\]"):
        CocoDetectionDataset(images_dir, tmp_path / "captions.json")
    panoptic = {**captions, "categories": CATEGORIES, "annotations": [{"image_id": 1, "segments_info": []}]}
    (tmp_path / "panoptic.json").write_text(json.dumps(panoptic))
    with pytest.raises(ValueError, match="panoptic file"):
        CocoDetectionDataset(images_dir, tmp_path / "panoptic.json")
    written = json.loads((coco_root / "annotations" / "instances_val2017.json").read_text())
    bad_category = {**written, "annotations": [{**written["annotations"][0], "category_id": 7}]}
    (tmp_path / "bad_category.json").write_text(json.dumps(bad_category))
    with pytest.raises(ValueError, match=r"annotation 11 has category 7, which is not in `categories` \(\[1, 5, 90\]"):
        CocoDetectionDataset(images_dir, tmp_path / "bad_category.json")
    with pytest.raises(ValueError, match=r"images folder .*train2017 does not exist.*file_names"):
        CocoDetectionDataset(coco_root / "train2017", coco_root / "annotations" / "instances_val2017.json")

    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "000000000139.jpg").write_bytes((images_dir / "000000000139.jpg").read_bytes())
    with pytest.raises(ValueError) as error:
        CocoDetectionDataset(partial, coco_root / "annotations" / "instances_val2017.json")
    message = str(error.value)
    assert "2 of the 3 images" in message and "000000000285.jpg, 000000000632.jpg" in message
    assert "Point images_dir at the folder" in message

    # Files without area / iscrowd (some exporters) still evaluate: both are filled in.
    minimal = {
        "images": written["images"],
        "categories": CATEGORIES,
        "annotations": [{"id": 1, "image_id": 285, "category_id": 5, "bbox": [1, 2, 10, 20]}],
    }
    (tmp_path / "minimal.json").write_text(json.dumps(minimal))
    dataset = CocoDetectionDataset(images_dir, tmp_path / "minimal.json")
    (annotation,) = dataset[1]["annotations"]
    assert annotation["area"] == 200.0 and annotation["iscrowd"] == 0


HUB_CATEGORIES = ["coverall", "face_shield", "gloves"]


def hub_rows(bbox_format: str) -> dict:
    """Three images in the Hub's detection schema (cppe-5-like); boxes given in `bbox_format`."""
    boxes_xywh = [[[10.0, 20.0, 30.0, 40.0], [0.0, 0.0, 5.0, 5.0]], [], [[50.0, 5.0, 20.5, 10.0]]]
    boxes = boxes_xywh
    if bbox_format == "pascal_voc":
        boxes = [[[x, y, x + w, y + h] for x, y, w, h in image_boxes] for image_boxes in boxes_xywh]
    return {
        "image_id": [7, 3, 12],
        "image": [Image.fromarray(load_skimage(name, max_side=96)) for name in ("chelsea", "camera", "coins")],
        "objects": [
            {"id": [100, 101], "area": [1200.0, 25.0], "bbox": boxes[0], "category": [2, 0]},
            {"id": [], "area": [], "bbox": [], "category": []},
            {"id": [102], "area": [205.0], "bbox": boxes[2], "category": [1]},
        ],
        "boxes_xywh": boxes_xywh,
    }


def hub_features():
    import datasets

    return datasets.Features(
        {
            "image_id": datasets.Value("int64"),
            "image": datasets.Image(),
            "objects": datasets.Sequence(
                {
                    "id": datasets.Value("int64"),
                    "area": datasets.Value("float32"),
                    "bbox": datasets.Sequence(datasets.Value("float32"), length=4),
                    "category": datasets.ClassLabel(names=HUB_CATEGORIES),
                }
            ),
        }
    )


@pytest.mark.parametrize("storage", ["save_to_disk", "parquet"])
def test_hub_detection_dataset_from_a_local_folder(tmp_path, storage):
    import datasets

    rows = hub_rows("coco")
    boxes_xywh = rows.pop("boxes_xywh")
    split = datasets.Dataset.from_dict(rows, features=hub_features())
    if storage == "save_to_disk":
        datasets.DatasetDict({"train": split}).save_to_disk(str(tmp_path / "cppe"))
    else:
        (tmp_path / "cppe" / "data").mkdir(parents=True)
        split.to_parquet(str(tmp_path / "cppe" / "data" / "train-00000-of-00001.parquet"))
    dataset = hub_detection_dataset(str(tmp_path / "cppe"), "train", cache_dir=str(tmp_path / "cache"))

    assert len(dataset) == 3 and dataset.image_ids == [7, 3, 12]
    assert dataset.id2label == dict(enumerate(HUB_CATEGORIES)) and dataset.category_ids == [0, 1, 2]
    item = dataset[0]
    np.testing.assert_array_equal(np.asarray(item["image"]), np.asarray(rows["image"][0].convert("RGB")))
    assert item["image_id"] == 7
    assert item["annotations"] == [
        {"id": 100, "image_id": 7, "category_id": 2, "bbox": boxes_xywh[0][0], "area": 1200.0, "iscrowd": 0},
        {"id": 101, "image_id": 7, "category_id": 0, "bbox": boxes_xywh[0][1], "area": 25.0, "iscrowd": 0},
    ]
    assert dataset[1]["annotations"] == []
    coco = dataset.coco
    assert sorted(coco.imgs) == [3, 7, 12] and coco.imgs[12]["width"] == rows["image"][2].width
    assert [coco.cats[k]["name"] for k in sorted(coco.cats)] == HUB_CATEGORIES
    everything = [annotation for index in range(len(dataset)) for annotation in dataset[index]["annotations"]]
    assert evaluate_ground_truth_against_itself(coco, everything) == pytest.approx(1.0)


def test_hub_detection_dataset_converts_pascal_voc_boxes_and_reports_bad_schemas(tmp_path, caplog):
    import datasets

    rows = hub_rows("pascal_voc")
    boxes_xywh = rows.pop("boxes_xywh")
    # width/height columns, as detection-datasets/coco has (the ground truth takes the sizes from them)
    rows["width"], rows["height"] = [image.width for image in rows["image"]], [image.height for image in rows["image"]]
    features = datasets.Features({**hub_features(), **{key: datasets.Value("int64") for key in ("width", "height")}})
    datasets.DatasetDict({"validation": datasets.Dataset.from_dict(rows, features=features)}).save_to_disk(
        str(tmp_path / "voc")
    )
    dataset = hub_detection_dataset(str(tmp_path / "voc"), "validation", bbox_format="pascal_voc")
    assert [a["bbox"] for a in dataset[0]["annotations"]] == boxes_xywh[0]
    assert [a["bbox"] for a in dataset[2]["annotations"]] == boxes_xywh[2]
    assert [(image["width"], image["height"]) for image in dataset.coco.dataset["images"]] == [
        image.size for image in rows["image"]
    ]

    # Read as COCO boxes, the x_max/y_max of the first box reach outside the 96-pixel image: a warning says so.
    with caplog.at_level("WARNING", logger="soft_hf.data.detection"):
        hub_detection_dataset(str(tmp_path / "voc"), "validation", bbox_format="coco")
    assert "reach outside their image" in caplog.text and "bbox_format='pascal_voc'" in caplog.text

    with pytest.raises(ValueError, match=r"has no split 'train' \(splits: \['validation'\]\)"):
        hub_detection_dataset(str(tmp_path / "voc"), "train")
    with pytest.raises(ValueError, match=r"has no column 'boxes' .*pass objects_column="):
        hub_detection_dataset(str(tmp_path / "voc"), "validation", objects_column="boxes")
    with pytest.raises(ValueError, match="`bbox_format` must be one of"):
        hub_detection_dataset(str(tmp_path / "voc"), "validation", bbox_format="yolo")
    # objects as a list of dicts (the other layout `datasets` gives), without categories
    no_category = datasets.Dataset.from_dict(
        {"image": rows["image"][:1], "objects": [[{"bbox": [1.0, 2.0, 3.0, 4.0]}]]}
    )
    no_category.save_to_disk(str(tmp_path / "no_category"))
    with pytest.raises(ValueError, match=r"'objects' column has no 'category' field \(it has \['bbox'\]\)"):
        hub_detection_dataset(str(tmp_path / "no_category"), "train")
