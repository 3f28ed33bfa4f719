"""Object detection with a SOFT-Norm backbone (soft_hf.tasks.detection): RT-DETR built on SOFT or PVTv2, the COCO
evaluator (pycocotools) scoring ground truth as perfect and a shifted box as imperfect, the backbone initialised from
an official SOFT-Norm checkpoint, and `scripts/train_detection.py` lowering the loss on the Fashion-MNIST scenes,
resuming exactly, and writing a Hub-ready `final/` whose metrics are those of the saved model."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers_segmentation import run_python, tiny_soft_norm_kwargs

from soft_hf import SoftConfig, SoftRTDetrForObjectDetection, convert_official_checkpoint
from soft_hf.data.detection import CocoDetectionDataset
from soft_hf.tasks.detection.rtdetr import (
    DetectionCollator,
    RandomHorizontalFlip,
    build_detector,
    coco_detection_metrics,
    detection_image_processor,
    evaluate_detector,
)


pytest.importorskip("pycocotools")
REPO_ROOT = Path(__file__).resolve().parents[1]
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
needs_fashion_mnist = pytest.mark.skipif(
    not FASHION_MNIST.is_file(), reason="Fashion-MNIST (Debian package dataset-fashion-mnist) is not installed"
)
TINY_HEAD = dict(hidden_size=32, num_queries=20, encoder_ffn_dim=64, decoder_ffn_dim=64, decoder_layers=1, num_denoising=8)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    if not FASHION_MNIST.is_file():
        pytest.skip("Fashion-MNIST (Debian package dataset-fashion-mnist) is not installed")
    from soft_hf.data.scenes import generate_scenes

    output_dir = tmp_path_factory.mktemp("scenes") / "data"
    generate_scenes(output_dir, num_train=32, num_val=8, image_size=96, seed=1)
    return output_dir


def validation_set(scenes: Path) -> CocoDetectionDataset:
    return CocoDetectionDataset(scenes / "val" / "images", scenes / "annotations" / "instances_val.json")


def test_coco_evaluator_scores_ground_truth_as_perfect_and_a_shifted_box_as_less(scenes):
    dataset = validation_set(scenes)
    detections = []
    for image_id in dataset.image_ids:
        for annotation in dataset.coco.loadAnns(dataset.coco.getAnnIds(imgIds=image_id)):
            detections.append(
                {"image_id": image_id, "category_id": annotation["category_id"], "bbox": annotation["bbox"], "score": 1.0}
            )
    perfect = coco_detection_metrics(dataset.coco, detections)
    assert perfect["map"] == pytest.approx(1.0) and perfect["map_50"] == perfect["map_75"] == pytest.approx(1.0)
    shifted = copy.deepcopy(detections)
    x, y, w, h = shifted[0]["bbox"]
    shifted[0]["bbox"] = [x + w, y, w, h]  # no overlap with its object any more
    worse = coco_detection_metrics(dataset.coco, shifted)
    assert worse["map"] < 1.0
    wrong_class = [dict(detection, category_id=detection["category_id"] % 10 + 1) for detection in detections]
    assert coco_detection_metrics(dataset.coco, wrong_class)["map"] < 0.2
    assert coco_detection_metrics(dataset.coco, [])["map"] == 0.0
    # restricted to some images, only their objects count
    first = dataset.image_ids[:2]
    assert coco_detection_metrics(dataset.coco, [d for d in detections if d["image_id"] in first], first)["map"] == 1.0


def test_detector_on_soft_norm_and_on_pvt_v2_and_its_backbone_from_an_official_checkpoint(compact_reference):
    detector = build_detector(SoftConfig(**tiny_soft_norm_kwargs()), id2label={0: "a", 1: "b"}, **TINY_HEAD)
    assert type(detector) is SoftRTDetrForObjectDetection
    assert detector.config.backbone_config.out_features == ["stage2", "stage3", "stage4"]
    assert detector.config.encoder_in_channels == [32, 32, 32]
    peer = build_detector("pvt_v2_b1", id2label={0: "a", 1: "b"}, **TINY_HEAD)
    assert type(peer).__name__ == "RTDetrForObjectDetection" and peer.config.encoder_in_channels == [128, 320, 512]
    pixel_values = torch.randn(2, 3, 96, 128)
    for model in (detector.eval(), peer.eval()):
        with torch.no_grad():
            output = model(pixel_values=pixel_values)
        assert output.logits.shape == (2, 20, 2) and torch.isfinite(output.pred_boxes).all()

    # An official SOFT-Norm .pth (the test vectors' checkpoint) initialises the backbone through the converter.
    checkpoint = compact_reference / "compact_soft_norm.pth"
    initialised = build_detector(pretrained_backbone=checkpoint, official_variant="norm", id2label={0: "a"}, **TINY_HEAD)
    converted = convert_official_checkpoint(checkpoint, "norm")
    backbone_state = initialised.model.backbone.model.state_dict()
    for name, tensor in converted.soft.state_dict().items():
        if name.startswith("encoder.") and not name.endswith("num_batches_tracked"):  # frozen BatchNorm keeps none
            torch.testing.assert_close(backbone_state[name], tensor, rtol=0, atol=0)
    assert initialised.config.freeze_backbone_batch_norms
    with pytest.raises(ValueError, match="variant"):
        build_detector(pretrained_backbone=checkpoint, id2label={0: "a"})
    with pytest.raises(ValueError, match="max_landmarks"):
        build_detector("pvt_v2_b1", id2label={0: "a"}, max_landmarks=16)
    with pytest.raises(ValueError, match="pvt_v2_b1"):
        build_detector("soft-norm-gigantic", id2label={0: "a"})


def test_flip_moves_boxes_with_the_image_and_batches_carry_contiguous_labels(scenes):
    dataset = CocoDetectionDataset(scenes / "train" / "images", scenes / "annotations" / "instances_train.json")
    item = dataset[0]
    flipped = RandomHorizontalFlip(probability=1.0)(item)
    np.testing.assert_array_equal(np.asarray(flipped["image"]), np.asarray(item["image"])[:, ::-1])
    for before, after in zip(item["annotations"], flipped["annotations"]):
        x, y, w, h = before["bbox"]
        assert after["bbox"] == [item["image"].width - x - w, y, w, h]
    batch = DetectionCollator(detection_image_processor(96), dataset.category_id_to_label)([item, flipped])
    assert batch["pixel_values"].shape == (2, 3, 96, 96)
    for labels, sample in zip(batch["labels"], (item, flipped)):
        expected = sorted(dataset.category_to_label(a["category_id"]) for a in sample["annotations"])
        assert sorted(labels["class_labels"].tolist()) == expected
        assert ((labels["boxes"] >= 0) & (labels["boxes"] <= 1)).all()


@needs_fashion_mnist
@pytest.mark.slow
def test_training_script_lowers_the_loss_resumes_exactly_and_saves_the_evaluated_model(scenes, tmp_path):
    config_path = tmp_path / "tiny_soft_norm.json"
    SoftConfig(**tiny_soft_norm_kwargs()).to_json_file(config_path)

    def arguments(output_dir: Path, *extra: str) -> list[str]:
        # fmt: off
        return [
            str(REPO_ROOT / "scripts" / "train_detection.py"),
            "--train_dir", str(scenes / "train" / "images"),
            "--train_annotations", str(scenes / "annotations" / "instances_train.json"),
            "--validation_dir", str(scenes / "val" / "images"),
            "--validation_annotations", str(scenes / "annotations" / "instances_val.json"),
            "--backbone", str(config_path), "--image_size", "96", "--hidden_size", "32", "--num_queries", "20",
            "--ffn_dim", "64", "--decoder_layers", "1", "--num_denoising", "8", "--learning_rate", "1e-3",
            "--backbone_lr_multiplier", "1", "--per_device_train_batch_size", "4", "--max_train_steps", "16",
            "--num_workers", "0", "--seed", "0", "--output_dir", str(output_dir), "--no_progress_bar", *extra,
        ]
        # fmt: on

    full = tmp_path / "full"
    run_python(arguments(full), tmp_path, timeout=900)
    losses = [json.loads(line)["loss"] for line in (full / "train_log.jsonl").read_text().splitlines()]
    assert len(losses) == 16 and all(np.isfinite(losses))
    assert np.mean(losses[-4:]) < np.mean(losses[:4]), losses

    interrupted = tmp_path / "interrupted"
    run_python(arguments(interrupted, "--checkpointing_steps", "8", "--stop_after_steps", "8"), tmp_path, timeout=900)
    assert not (interrupted / "final").exists()
    run_python(arguments(interrupted, "--resume_from_checkpoint", "latest"), tmp_path, timeout=900)
    resumed = [json.loads(line)["loss"] for line in (interrupted / "train_log.jsonl").read_text().splitlines()]
    np.testing.assert_allclose(resumed, losses, rtol=1e-5)

    # final/ is the evaluated model: reloading it (installed classes) and scoring the validation set again gives the
    # metrics the run reported.
    results = json.loads((full / "all_results.json").read_text())
    from transformers import AutoImageProcessor, AutoModelForObjectDetection

    model = AutoModelForObjectDetection.from_pretrained(full / "final")
    processor = AutoImageProcessor.from_pretrained(full / "final")
    assert type(model) is SoftRTDetrForObjectDetection and processor.size == {"height": 96, "width": 96}
    assert model.config.id2label[0] == "T-shirt/top"
    metrics = evaluate_detector(model, validation_set(scenes), processor)
    assert metrics["map"] == pytest.approx(results["eval_map"], abs=1e-6)
    saved = json.loads((full / "final" / "export_manifest.json").read_text())["files"]
    assert {"modeling_soft_dense.py", "configuration_soft_dense.py", "README.md", "model.safetensors"} <= set(saved)
