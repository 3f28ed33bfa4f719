"""Dense models on a SOFT backbone leave the process as Hub-ready folders: RT-DETR and UperNet exported here load in a
fresh Python that never imports soft_hf, from the folder and by repo id from an offline Hub cache, give the same
outputs, and run in Transformers' pipelines with their saved image processors on a real photo."""

from __future__ import annotations

import json

import PIL.Image
import pytest
import torch
from helpers_hub import populate_hub_cache, run_fresh_python, write_photos
from helpers_segmentation import tiny_soft_norm_kwargs
from safetensors.torch import save_file
from transformers import AutoModelForObjectDetection, AutoModelForSemanticSegmentation, pipeline

from soft_hf import SoftConfig, SoftRTDetrForObjectDetection, SoftUperNetForSemanticSegmentation
from soft_hf.hub.export import export_pretrained, validate_export_folder
from soft_hf.tasks.detection.rtdetr import build_detector, detection_image_processor
from soft_hf.tasks.segmentation.upernet import build_upernet, segmentation_image_processor


pytestmark = pytest.mark.slow

LABELS = {0: "cat", 1: "cup", 2: "person"}


def tiny_detector(seed: int = 0) -> SoftRTDetrForObjectDetection:
    torch.manual_seed(seed)
    return build_detector(
        SoftConfig(**tiny_soft_norm_kwargs()),
        id2label=LABELS,
        hidden_size=32,
        num_queries=12,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        decoder_layers=1,
        num_denoising=4,
    ).eval()


def tiny_segmenter(seed: int = 0) -> SoftUperNetForSemanticSegmentation:
    torch.manual_seed(seed)
    return build_upernet(
        SoftConfig(**tiny_soft_norm_kwargs()), id2label=LABELS, decoder_hidden_size=16, auxiliary_channels=8
    ).eval()


FRESH_PROCESS_CHECK = """
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import AutoConfig, AutoImageProcessor, {auto_class}, pipeline

expected = load_file({expected!r})
outputs = {{}}
for source in ({folder!r}, {repo_id!r}):
    config = AutoConfig.from_pretrained(source, trust_remote_code=True)
    model = {auto_class}.from_pretrained(source, trust_remote_code=True).eval()
    processor = AutoImageProcessor.from_pretrained(source)
    with torch.no_grad():
        output = model(pixel_values=expected["pixel_values"])
    outputs[source] = {{
        key: float((getattr(output, key) - expected[key]).abs().max()) for key in {output_keys!r}
    }}
    outputs[source]["modules"] = [type(config).__module__, type(model).__module__]
    outputs[source]["backbone"] = type(model.{backbone_path}).__name__
runner = pipeline({task!r}, model={repo_id!r}, trust_remote_code=True)
predictions = runner(Image.open({photo!r}), **{pipeline_kwargs!r})
result["outputs"] = outputs
result["predictions"] = [
    {{key: value for key, value in prediction.items() if key != "mask"}} | (
        {{"mask": sorted(set(prediction["mask"].getdata()))}} if "mask" in prediction else {{}}
    )
    for prediction in predictions
]
"""


def check_fresh_process(tmp_path, model, processor, auto_class, task, output_keys, backbone_path, pipeline_kwargs):
    folder = export_pretrained(model, tmp_path / "export", image_processor=processor)
    validate_export_folder(folder)
    photo = write_photos(tmp_path / "photos")["chelsea"]
    pixel_values = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        output = model(pixel_values=pixel_values)
    expected = {"pixel_values": pixel_values} | {key: getattr(output, key) for key in output_keys}
    save_file({key: value.contiguous() for key, value in expected.items()}, str(tmp_path / "expected.safetensors"))
    repo_id = "soft-hf-tests/dense-model"
    home = tmp_path / "home"
    populate_hub_cache(folder, repo_id, home / "hub")
    result = run_fresh_python(
        FRESH_PROCESS_CHECK.format(
            expected=str(tmp_path / "expected.safetensors"),
            folder=str(folder),
            repo_id=repo_id,
            auto_class=auto_class,
            output_keys=list(output_keys),
            backbone_path=backbone_path,
            task=task,
            photo=str(photo),
            pipeline_kwargs=pipeline_kwargs,
        ),
        home,
    )
    for source, report in result["outputs"].items():
        assert all(module.startswith("transformers_modules") for module in report["modules"]), (source, report)
        assert report["backbone"] == "SoftBackbone"
        for key in output_keys:
            assert report[key] < 1e-5, (source, key, report[key])
    # The same pipeline here (soft_hf's registered classes) predicts the same things.
    local = pipeline(task, model=str(folder), trust_remote_code=True)
    local_predictions = local(PIL.Image.open(photo), **pipeline_kwargs)
    return result["predictions"], local_predictions


def test_detector_loads_without_soft_hf_from_folder_and_hub_cache_and_runs_in_the_pipeline(tmp_path):
    predictions, local = check_fresh_process(
        tmp_path,
        tiny_detector(),
        detection_image_processor(96),
        "AutoModelForObjectDetection",
        "object-detection",
        ("logits", "pred_boxes"),
        "model.backbone.model",
        {"threshold": 0.0},
    )
    assert len(predictions) == 12  # every query, scores above 0
    width, height = PIL.Image.open(tmp_path / "photos" / "chelsea.png").size
    for prediction in predictions:
        assert prediction["label"] in LABELS.values() and 0.0 <= prediction["score"] <= 1.0
        box = prediction["box"]
        assert 0 <= box["xmin"] <= box["xmax"] <= width and 0 <= box["ymin"] <= box["ymax"] <= height
    assert [(p["label"], round(p["score"], 5), p["box"]) for p in predictions] == [
        (p["label"], round(p["score"], 5), p["box"]) for p in local
    ]


def test_upernet_loads_without_soft_hf_from_folder_and_hub_cache_and_runs_in_the_pipeline(tmp_path):
    predictions, local = check_fresh_process(
        tmp_path,
        tiny_segmenter(),
        segmentation_image_processor(64, max_size=128),
        "AutoModelForSemanticSegmentation",
        "image-segmentation",
        ("logits",),
        "backbone",
        {},
    )
    assert predictions, "the segmenter predicted no class at all"
    for prediction in predictions:
        assert prediction["label"] in LABELS.values() and prediction["mask"] in ([0], [255], [0, 255])
    assert [p["label"] for p in predictions] == [p["label"] for p in local]


def test_dense_exports_are_refused_without_their_processor_and_carry_the_task_auto_map(tmp_path):
    detector = tiny_detector()
    with pytest.raises(ValueError, match="image processor"):
        export_pretrained(detector, tmp_path / "no-processor")
    assert not (tmp_path / "no-processor").exists()
    folder = export_pretrained(detector, tmp_path / "detector", image_processor=detection_image_processor(64))
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "soft_rt_detr" and config["backbone_config"]["model_type"] == "soft"
    assert config["auto_map"] == {
        "AutoConfig": "configuration_soft_dense.SoftRTDetrConfig",
        "AutoModelForObjectDetection": "modeling_soft_dense.SoftRTDetrForObjectDetection",
    }
    card = (folder / "README.md").read_text()
    assert "pipeline_tag: object-detection" in card and 'pipeline("object-detection"' in card
    # With soft_hf imported the Auto classes resolve the installed classes (no remote code needed).
    reloaded = AutoModelForObjectDetection.from_pretrained(folder)
    assert type(reloaded) is SoftRTDetrForObjectDetection
    segmenter_folder = export_pretrained(
        tiny_segmenter(), tmp_path / "segmenter", image_processor=segmentation_image_processor(64)
    )
    assert type(AutoModelForSemanticSegmentation.from_pretrained(segmenter_folder)) is SoftUperNetForSemanticSegmentation
