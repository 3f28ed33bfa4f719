"""scripts/predict.py: unreadable inputs are reported and skipped, hidden files ignored, URLs fail fast offline, and
the images are decoded exactly as in training."""

from __future__ import annotations

import json

import numpy as np
import PIL.Image
import pytest
import torch
from conftest import tiny_config_kwargs
from helpers_hub import load_script_module, photo_arrays

from soft_hf import SoftConfig, SoftForImageClassification, SoftImageProcessorPil, export_pretrained


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    torch.manual_seed(0)
    model = SoftForImageClassification(SoftConfig(**tiny_config_kwargs())).eval()
    processor = SoftImageProcessorPil(crop_size={"height": 64, "width": 64})
    return export_pretrained(model, tmp_path_factory.mktemp("predict") / "model", image_processor=processor)


def test_bad_inputs_are_reported_and_skipped_and_the_others_classified(model_folder, tmp_path, capsys):
    """Defect 6: a truncated JPEG or a macOS `._img.jpg` aborted the whole run; an offline URL gave a 100-line
    traceback after the model had loaded."""
    photos = tmp_path / "photos"
    photos.mkdir()
    arrays = photo_arrays()
    PIL.Image.fromarray(arrays["chelsea"]).save(photos / "cat.jpg")
    PIL.Image.fromarray(arrays["coffee"]).save(photos / "coffee.png")
    jpeg = (photos / "cat.jpg").read_bytes()
    (photos / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 3])
    (photos / "._cat.jpg").write_bytes(b"\0\5\26\7\0\2\0\0Mac OS X        ")  # AppleDouble metadata
    url = "http://127.0.0.1:9/dog.jpg"  # nothing listens on the discard port: refused at once

    predict = load_script_module("predict")
    code = predict.main(["--model", str(model_folder), str(photos), url, "--json", "--top-k", "2", "--installed-code"])
    captured = capsys.readouterr()
    results = {pathlib_name(result["image"]): result for result in json.loads(captured.out)}
    assert code == 1  # some inputs failed, the others were classified
    assert set(results) == {"cat.jpg", "coffee.png", "truncated.jpg", "dog.jpg"}  # the hidden file is skipped
    for name in ("cat.jpg", "coffee.png"):
        assert len(results[name]["predictions"]) == 2
    assert "truncated" in results["truncated.jpg"]["error"]
    assert "download failed" in results["dog.jpg"]["error"]
    assert f"error: {photos / 'truncated.jpg'}: cannot read the image" in captured.err
    assert f"error: {url}: download failed" in captured.err and "Traceback" not in captured.err

    assert predict.main(["--model", str(model_folder), str(photos / "cat.jpg"), "--installed-code"]) == 0
    assert predict.main(["--model", str(model_folder), str(tmp_path / "missing.jpg")]) == 2


def pathlib_name(item: str) -> str:
    return item.rsplit("/", 1)[-1]


def test_predict_decodes_like_training(model_folder, tmp_path, capsys):
    """Defect 3: predict.py clipped 16-bit images and dropped alpha (load_image converts to RGB first): it must
    give what the model gives on the processor's pixels for the file (the pixels training sees)."""
    gray = np.array(PIL.Image.fromarray(photo_arrays()["astronaut"]).convert("L"))
    PIL.Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "gray16.png")
    alpha = np.zeros(gray.shape, np.uint8)
    alpha[:, : gray.shape[1] // 2] = 255
    PIL.Image.fromarray(np.dstack([photo_arrays()["astronaut"], alpha]), "RGBA").save(tmp_path / "rgba.png")

    predict = load_script_module("predict")
    code = predict.main(["--model", str(model_folder), str(tmp_path), "--json", "--top-k", "3", "--installed-code"])
    assert code == 0
    results = {pathlib_name(result["image"]): result for result in json.loads(capsys.readouterr().out)}
    model = SoftForImageClassification.from_pretrained(model_folder).eval()
    processor = SoftImageProcessorPil.from_pretrained(model_folder)
    for name in ("gray16.png", "rgba.png"):
        with torch.no_grad():
            logits = model(processor(str(tmp_path / name), return_tensors="pt").pixel_values).logits
        expected = logits.softmax(-1)[0].topk(3)
        scores = [prediction["score"] for prediction in results[name]["predictions"]]
        np.testing.assert_allclose(scores, expected.values.numpy(), atol=1e-5)
        assert [prediction["label"] for prediction in results[name]["predictions"]] == [
            model.config.id2label[int(index)] for index in expected.indices
        ]
