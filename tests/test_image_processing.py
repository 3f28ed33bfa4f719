"""SoftImageProcessor (torchvision and PIL backends) against timm's evaluation transform, input conversion, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from helpers_hub import photo_arrays
from transformers import AutoImageProcessor

from soft_hf import SoftConfig, SoftImageProcessor, SoftImageProcessorPil


BACKENDS = {"torchvision": SoftImageProcessor, "pil": SoftImageProcessorPil}
# Tolerances against timm (float32 pixel values after normalisation). The PIL backend resizes with PIL like timm
# does: identical up to float rounding. The torchvision backend resizes uint8 tensors with torchvision's antialiased
# bicubic kernel, which differs from PIL's by at most one 8-bit level on a few pixels: 1/255/0.224 = 0.0175 after
# normalisation by the smallest std. Measured: max 0.0175, mean 4e-5 to 8e-5 on these photos.
MAX_ABS_TOLERANCE = {"pil": 1e-6, "torchvision": 1.01 / 255 / 0.224}
MEAN_ABS_TOLERANCE = {"pil": 1e-7, "torchvision": 5e-4}


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    arrays = photo_arrays()
    # 330 x 500 resizes to 248 x 375: the centre crop offset (375 - 224) / 2 = 75.5 is where torchvision's rounding
    # (76, used by timm) and floor division (75) differ.
    arrays["coffee_330x500"] = arrays["coffee"][:330, :500]
    return arrays


@pytest.fixture(scope="module")
def timm_eval_transform():
    import timm.data

    return timm.data.create_transform(input_size=224, crop_pct=0.9, interpolation="bicubic", is_training=False)


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_matches_timm_evaluation_transform_on_photos(backend, photos, timm_eval_transform):
    processor = BACKENDS[backend]()
    for name, array in photos.items():
        image = PIL.Image.fromarray(array)
        expected = timm_eval_transform(image)  # (3, 224, 224)
        pixel_values = processor(image, return_tensors="pt").pixel_values
        assert pixel_values.shape == (1, 3, 224, 224) and pixel_values.dtype == torch.float32
        difference = (pixel_values[0] - expected).abs()
        assert difference.max() <= MAX_ABS_TOLERANCE[backend], (name, float(difference.max()))
        assert difference.mean() <= MEAN_ABS_TOLERANCE[backend], (name, float(difference.mean()))


def test_defaults_are_the_official_evaluation_transform():
    for processor in (SoftImageProcessor(), SoftImageProcessorPil()):
        assert processor.crop_pct == 0.9
        assert processor.size.shortest_edge == 248  # floor(224 / 0.9)
        assert (processor.crop_size.height, processor.crop_size.width) == (224, 224)
        assert processor.resample == PIL.Image.Resampling.BICUBIC
        assert tuple(processor.image_mean) == (0.485, 0.456, 0.406)
        assert tuple(processor.image_std) == (0.229, 0.224, 0.225)
    assert SoftImageProcessor().backend == "torchvision" and SoftImageProcessorPil().backend == "pil"


def test_crop_pct_sets_the_resize_and_conflicts_are_refused(photos):
    image = PIL.Image.fromarray(photos["chelsea"])  # 451 x 300
    full = SoftImageProcessorPil(crop_pct=1.0)
    assert full.size.shortest_edge == 224
    # crop_pct=1: shorter side 224, nothing cropped vertically
    assert full(image, do_normalize=False, do_rescale=False, return_tensors="np").pixel_values.shape == (1, 3, 224, 224)
    by_size = SoftImageProcessorPil(crop_pct=None, size={"shortest_edge": 256})
    assert by_size.size.shortest_edge == 256
    resized_only = by_size(image, do_center_crop=False, return_tensors="np").pixel_values
    assert resized_only.shape == (1, 3, 256, 384)  # 451 * 256 / 300 = 384.9 -> 384, as torchvision/timm
    with pytest.raises(ValueError, match="contradicts crop_pct"):
        SoftImageProcessor(size={"shortest_edge": 256}, crop_pct=0.9)
    with pytest.raises(ValueError, match="contradicts crop_pct"):
        SoftImageProcessor()(image, size={"shortest_edge": 300}, crop_pct=0.9)
    with pytest.raises(ValueError, match="square crops"):
        SoftImageProcessor(crop_size={"height": 224, "width": 192})
    with pytest.raises(ValueError, match="positive number"):
        SoftImageProcessor(crop_pct=0)


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_explicit_size_is_honoured_like_deit_and_convnext(backend, photos, tmp_path):
    """A `size` given without `crop_pct` (at call time, to the constructor or to `from_pretrained`) is used as is;
    without one, the official crop_pct 0.9 evaluation transform stays the default."""
    image = PIL.Image.fromarray(photos["chelsea"])  # 451 x 300
    processor = BACKENDS[backend]()
    square = processor(image, size={"height": 64, "width": 64}, do_center_crop=False, return_tensors="pt")
    assert tuple(square.pixel_values.shape) == (1, 3, 64, 64)
    assert processor.crop_pct == 0.9 and processor.size.shortest_edge == 248  # the call changed nothing
    assert tuple(processor(image, return_tensors="pt").pixel_values.shape) == (1, 3, 224, 224)
    by_size = BACKENDS[backend](size={"shortest_edge": 256})
    assert by_size.crop_pct is None and by_size.size.shortest_edge == 256
    assert tuple(by_size(image, do_center_crop=False, return_tensors="pt").pixel_values.shape) == (1, 3, 256, 384)

    processor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert saved["size"] == {"shortest_edge": 248} and saved["crop_pct"] == 0.9  # readable without Python
    sized = BACKENDS[backend].from_pretrained(tmp_path, size={"height": 64, "width": 64}, do_center_crop=False)
    assert sized.crop_pct is None
    assert tuple(sized(image, return_tensors="pt").pixel_values.shape) == (1, 3, 64, 64)
    cropped = BACKENDS[backend].from_pretrained(tmp_path, crop_pct=0.95)
    assert cropped.size.shortest_edge == 235  # floor(224 / 0.95), derived anew
    assert tuple(cropped(image, return_tensors="pt").pixel_values.shape) == (1, 3, 224, 224)


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_save_and_reload_keeps_settings_and_outputs(backend, tmp_path, photos):
    processor = BACKENDS[backend](crop_pct=0.875)
    processor.save_pretrained(tmp_path)
    # AutoImageProcessor resolves the class through soft_hf's registration (SoftConfig -> both backends).
    SoftConfig(hidden_sizes=[32, 64, 96, 128], num_attention_heads=[1, 2, 3, 4]).save_pretrained(tmp_path)
    reloaded = AutoImageProcessor.from_pretrained(tmp_path, backend=backend)
    assert type(reloaded) is BACKENDS[backend]
    assert reloaded.crop_pct == 0.875 and reloaded.size.shortest_edge == 256
    # Settings can be overridden at load time; crop_pct then sets the resize.
    overridden = AutoImageProcessor.from_pretrained(tmp_path, backend=backend, crop_pct=0.95)
    assert overridden.size.shortest_edge == 235  # floor(224 / 0.95)
    by_size = BACKENDS[backend](crop_pct=None, size={"shortest_edge": 230})
    by_size.save_pretrained(tmp_path / "by_size")
    reloaded_by_size = BACKENDS[backend].from_pretrained(tmp_path / "by_size")
    assert reloaded_by_size.crop_pct is None and reloaded_by_size.size.shortest_edge == 230
    image = PIL.Image.fromarray(photos["astronaut"])
    torch.testing.assert_close(
        reloaded(image, return_tensors="pt").pixel_values, processor(image, return_tensors="pt").pixel_values
    )


def _rgb_reference(processor, image: PIL.Image.Image) -> torch.Tensor:
    return processor(image, return_tensors="pt").pixel_values


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_converts_grayscale_alpha_palette_and_16_bit_images(backend, photos, tmp_path):
    processor = BACKENDS[backend]()
    rgb = photos["chelsea"]
    gray = np.array(PIL.Image.fromarray(rgb).convert("L"))  # (300, 451) uint8, writable
    gray_rgb = _rgb_reference(processor, PIL.Image.fromarray(gray).convert("RGB"))

    # Grayscale: PIL "L", a 2-D array, a (H, W, 1) array, a 1-channel tensor.
    for image in (PIL.Image.fromarray(gray), gray, gray[..., None], torch.from_numpy(gray)[None]):
        torch.testing.assert_close(_rgb_reference(processor, image), gray_rgb, atol=0, rtol=0)

    # 16-bit grayscale (PIL "I;16" and uint16 arrays) is rescaled to 8 bits, not clipped at 255.
    gray16 = gray.astype(np.uint16) * 257
    sixteen_bit = PIL.Image.fromarray(gray16)
    assert sixteen_bit.mode == "I;16"
    torch.testing.assert_close(_rgb_reference(processor, sixteen_bit), gray_rgb, atol=0, rtol=0)
    torch.testing.assert_close(_rgb_reference(processor, gray16), gray_rgb, atol=0, rtol=0)
    sixteen_bit.save(tmp_path / "gray16.png")  # a 16-bit PNG file, given by path
    torch.testing.assert_close(_rgb_reference(processor, str(tmp_path / "gray16.png")), gray_rgb, atol=0, rtol=0)
    rgb16 = rgb.astype(np.uint16) * 257
    torch.testing.assert_close(
        _rgb_reference(processor, rgb16), _rgb_reference(processor, PIL.Image.fromarray(rgb)), atol=0, rtol=0
    )

    # RGBA and LA: transparency is composited on white (an opaque alpha changes nothing).
    opaque = PIL.Image.fromarray(rgb).convert("RGBA")
    torch.testing.assert_close(_rgb_reference(processor, opaque), _rgb_reference(processor, PIL.Image.fromarray(rgb)))
    transparent = np.dstack([rgb, np.zeros(rgb.shape[:2], np.uint8)])  # fully transparent
    white = _rgb_reference(processor, PIL.Image.new("RGB", (rgb.shape[1], rgb.shape[0]), (255, 255, 255)))
    torch.testing.assert_close(_rgb_reference(processor, PIL.Image.fromarray(transparent, "RGBA")), white)
    torch.testing.assert_close(_rgb_reference(processor, PIL.Image.fromarray(gray).convert("LA")), gray_rgb)

    # Palette and 1-bit images: same result as converting them to RGB first.
    for image in (PIL.Image.fromarray(rgb).quantize(64), PIL.Image.fromarray(gray).convert("1")):
        assert image.mode in ("P", "1")
        torch.testing.assert_close(_rgb_reference(processor, image), _rgb_reference(processor, image.convert("RGB")))

    # Channels-first tensors and a 4-D batch give the same pixels as the PIL image.
    chw = torch.from_numpy(rgb).permute(2, 0, 1).contiguous()
    expected = _rgb_reference(processor, PIL.Image.fromarray(rgb))
    torch.testing.assert_close(_rgb_reference(processor, chw), expected, atol=0, rtol=0)
    batch = processor(np.stack([rgb, rgb]), return_tensors="pt").pixel_values
    assert batch.shape == (2, 3, 224, 224)
    torch.testing.assert_close(batch[1:], expected, atol=0, rtol=0)


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_non_images_and_empty_inputs_raise_clear_errors(backend):
    processor = BACKENDS[backend]()
    cases = [
        (None, "No images given"),
        ([], "empty list of images"),
        ((), "empty list of images"),
        (42, "expects PIL images, NumPy arrays, torch tensors"),
        ({"pixels": [1, 2, 3]}, "expects PIL images, NumPy arrays, torch tensors"),
        ([PIL.Image.new("RGB", (8, 8)), "not an image".encode()], "got bytes"),
        (np.zeros((0, 10, 3), np.uint8), "empty image"),
        (np.zeros((0, 3, 10, 10), np.uint8), "empty batch"),
        (PIL.Image.new("RGB", (0, 0)), "empty image"),
        (np.zeros((10, 10, 5), np.uint8), "1 \\(grayscale\\), 3 \\(RGB\\) or 4 \\(RGBA\\) channels"),
        (np.zeros((2, 2, 10, 10, 3), np.uint8), "Expected an image of shape"),
        (np.full((10, 10, 3), -3, np.int32), "outside 8-bit"),
        (PIL.Image.new("F", (10, 10)), "mode 'F'"),
    ]
    for images, message in cases:
        with pytest.raises(ValueError, match=message):
            processor(images, return_tensors="pt")


# ----------------------------------------------------------------------------------------------------------------
# One decoding for training, evaluation, segmentation, prediction and the processor (issue 16)
# ----------------------------------------------------------------------------------------------------------------


def write_awkward_images(directory, rgb: np.ndarray) -> dict[str, "Path"]:
    """Files whose decoding differed between training and serving: 16-bit grey PNG, RGBA and LA PNGs with
    transparency, a palette PNG with a transparent colour, a CMYK JPEG and a JPEG with an EXIF rotation."""
    directory.mkdir(parents=True, exist_ok=True)
    height, width = rgb.shape[:2]
    gray = np.array(PIL.Image.fromarray(rgb).convert("L"))
    alpha = np.zeros((height, width), np.uint8)
    alpha[: height // 2] = 255  # top half opaque, bottom half fully transparent
    paths = {name: directory / name for name in (
        "gray16.png", "rgba.png", "la.png", "palette.png", "cmyk.jpg", "rotated.jpg"
    )}
    PIL.Image.fromarray(gray.astype(np.uint16) * 257).save(paths["gray16.png"])
    PIL.Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(paths["rgba.png"])
    PIL.Image.fromarray(np.dstack([gray, alpha]), "LA").save(paths["la.png"])
    palette = PIL.Image.fromarray(rgb).quantize(16)
    palette.info["transparency"] = 0
    palette.save(paths["palette.png"], transparency=0)
    PIL.Image.fromarray(rgb).convert("CMYK").save(paths["cmyk.jpg"], quality=95)
    exif = PIL.Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    PIL.Image.fromarray(rgb).save(paths["rotated.jpg"], quality=95, exif=exif)
    return paths


def test_decode_image_semantics(photos, tmp_path):
    from soft_hf.models.soft.image_processing_soft import decode_image

    rgb = photos["chelsea"][:120, :160]
    paths = write_awkward_images(tmp_path, rgb)
    gray = np.array(PIL.Image.fromarray(rgb).convert("L"))
    decoded = {name: np.asarray(decode_image(path)) for name, path in paths.items()}
    assert all(array.dtype == np.uint8 and array.shape[-1] == 3 for array in decoded.values())
    # 16-bit: rescaled, not clipped to white.
    np.testing.assert_array_equal(decoded["gray16.png"][..., 0], gray)
    # Transparent pixels are white; opaque ones keep their colour.
    for name in ("rgba.png", "la.png"):
        assert (decoded[name][60:] == 255).all()
    np.testing.assert_array_equal(decoded["rgba.png"][:60], rgb[:60])
    assert (decoded["palette.png"] == 255).all(axis=-1).any()
    # EXIF orientation 6: the displayed image is the stored one rotated clockwise (120x160 -> 160x120).
    stored = np.asarray(PIL.Image.open(paths["rotated.jpg"]).convert("RGB"))
    assert decoded["rotated.jpg"].shape == (160, 120, 3)
    np.testing.assert_array_equal(decoded["rotated.jpg"], np.rot90(stored, k=-1))
    np.testing.assert_array_equal(decoded["cmyk.jpg"], np.asarray(PIL.Image.open(paths["cmyk.jpg"]).convert("RGB")))


def test_same_file_gives_the_same_pixels_in_training_evaluation_segmentation_and_the_processor(photos, tmp_path):
    """Defect 3: 16-bit images were 99.6% white in training, transparency black in training but white in the
    processor, EXIF orientation ignored in training and evaluation."""
    from soft_hf.data.classification import (
        ImageClassificationDataset,
        build_eval_transform,
        load_image_classification_data,
    )
    from soft_hf.tasks.segmentation.upernet import SegmentationImageFolder

    rgb = photos["coffee"][:150, :200]
    paths = write_awkward_images(tmp_path / "train" / "awkward", rgb)
    (tmp_path / "train" / "plain").mkdir()
    PIL.Image.fromarray(rgb).save(tmp_path / "train" / "plain" / "plain.png")  # imagefolder needs two classes
    paths["plain.png"] = tmp_path / "train" / "plain" / "plain.png"
    # What the processor serves for the file, before resizing: (height, width, 3) uint8.
    unresized = SoftImageProcessorPil(do_resize=False, do_center_crop=False, do_rescale=False, do_normalize=False)
    expected = {
        path.name: unresized(str(path), return_tensors="pt").pixel_values[0].permute(1, 2, 0).round().to(torch.uint8)
        for path in paths.values()
    }

    # Training and evaluation: the dataset decodes, the transform sees the decoded image (here: kept as is).
    data = load_image_classification_data(
        train_dir=str(tmp_path / "train"), train_val_split=None, cache_dir=str(tmp_path / "cache")
    )
    split = data.split("train")
    raw = ImageClassificationDataset(split, transform=lambda image: torch.from_numpy(np.asarray(image).copy()))
    names = [split[index]["image"]["path"].rsplit("/", 1)[-1] for index in range(len(split))]
    for index, name in enumerate(names):
        sample = raw[index]
        assert sample["labels"] == (1 if name == "plain.png" else 0), name  # readable
        torch.testing.assert_close(sample["pixel_values"], expected[name], atol=0, rtol=0, msg=name)

    # Evaluation transform vs the processor given the path (both backends) and the decoded image.
    from soft_hf.models.soft.image_processing_soft import decode_image

    processor = SoftImageProcessorPil(crop_size={"height": 64, "width": 64})
    evaluation = ImageClassificationDataset(split, transform=build_eval_transform(processor))
    for index, name in enumerate(names):
        served = processor(str(paths[name]), return_tensors="pt").pixel_values[0]
        torch.testing.assert_close(evaluation[index]["pixel_values"], served, atol=1e-5, rtol=0, msg=name)
        torch.testing.assert_close(
            processor(decode_image(paths[name]), return_tensors="pt").pixel_values[0], served, atol=0, rtol=0
        )
        torchvision = SoftImageProcessor(crop_size={"height": 64, "width": 64})
        torch.testing.assert_close(
            torchvision(str(paths[name]), return_tensors="pt").pixel_values,
            torchvision(decode_image(paths[name]), return_tensors="pt").pixel_values,
            atol=0,
            rtol=0,
        )

    # Segmentation reads its images the same way.
    segmentation = tmp_path / "segmentation"
    (segmentation / "images").mkdir(parents=True)
    (segmentation / "masks").mkdir()
    for name, path in paths.items():
        (segmentation / "images" / name).write_bytes(path.read_bytes())
        height, width = expected[name].shape[:2]
        PIL.Image.new("L", (width, height)).save(segmentation / "masks" / (path.stem + ".png"))
    folder = SegmentationImageFolder(segmentation)
    for index in range(len(folder)):
        sample = folder[index]
        name = sample["path"].rsplit("/", 1)[-1]
        torch.testing.assert_close(torch.from_numpy(np.asarray(sample["image"]).copy()), expected[name], atol=0, rtol=0)
    folder.check_masks(num_labels=2)  # sizes agree after the EXIF rotation
