# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""Image processors for SOFT (Softmax-Free Transformer).

The default transform is the one the official SOFT checkpoints were evaluated with, timm's ImageNet evaluation
transform: resize the shorter side to `floor(224 / crop_pct)` = 248 pixels with bicubic interpolation, centre-crop
224 x 224, rescale to [0, 1] and normalise with the ImageNet mean and standard deviation.

Two backends share one behaviour (Transformers 5 style):
- [`SoftImageProcessor`]: torchvision backend (batched tensors, optional device), the default of `AutoImageProcessor`;
- [`SoftImageProcessorPil`]: PIL/NumPy backend (`AutoImageProcessor.from_pretrained(..., backend="pil")`), which
  resizes with PIL exactly like timm does on PIL images.

Inputs may be PIL images, NumPy arrays or torch tensors (channels first or last), or lists of them. Grayscale,
grayscale+alpha, RGBA, palette, CMYK, 1-bit and 16-bit images are converted to 8-bit RGB (transparency is composited
on white); inputs that are not images, and empty inputs, raise a `ValueError` that says what was received.

[`decode_image`] is the one way image files become pixels in soft-hf: this processor (for paths), training,
evaluation, segmentation and `scripts/predict.py` all call it, so a file gives the same pixels when training and
when serving (EXIF orientation applied, 16-bit rescaled, transparency composited on white, palette/CMYK converted).

This file travels with exported checkpoints and is imported by Transformers from the checkpoint folder.
"""

from __future__ import annotations

import io
import math
import os
from typing import IO, Any

import numpy as np
import PIL.Image
import PIL.ImageOps
import torch
from transformers.image_processing_backends import PilBackend, TorchvisionBackend
from transformers.image_processing_utils import BatchFeature, get_size_dict
from transformers.image_utils import (
    IMAGENET_DEFAULT_MEAN,
    IMAGENET_DEFAULT_STD,
    PILImageResampling,
    SizeDict,
)
from transformers.processing_utils import ImagesKwargs, Unpack
from transformers.utils import logging


logger = logging.get_logger(__name__)


DEFAULT_CROP_PCT = 0.9
DEFAULT_CROP_SIZE = 224
# PIL modes that store more than 8 bits per sample; they are rescaled to 8 bits instead of being clipped.
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


class SoftImageProcessorKwargs(ImagesKwargs, total=False):
    r"""
    crop_pct (`float`, *optional*, defaults to `self.crop_pct`):
        Fraction of the resized image kept by the centre crop, as in timm: the shorter side is resized to
        `floor(crop_size / crop_pct)` before cropping `crop_size`. `None` resizes to `size` instead.
    """

    crop_pct: float | None


def resize_size_for_crop(crop_size: Any, crop_pct: float) -> dict[str, int]:
    """The resize target of timm's evaluation transform: shorter side `floor(crop / crop_pct)` (square crops only)."""
    if isinstance(crop_size, SizeDict):
        crop = dict(crop_size)
    else:
        crop = get_size_dict(crop_size, param_name="crop_size")
    height, width = crop.get("height"), crop.get("width")
    if height is None or width is None:
        raise ValueError(f"`crop_size` must give a height and a width, got {crop_size!r}.")
    if not isinstance(crop_pct, (int, float)) or isinstance(crop_pct, bool) or not 0 < crop_pct:
        raise ValueError(
            f"`crop_pct` must be a positive number such as 0.9 (or None to resize to `size`), got {crop_pct!r}."
        )
    if height != width:
        raise ValueError(
            f"`crop_pct` follows timm's evaluation transform, which resizes the shorter side for square crops only; "
            f"got crop_size {height}x{width}. Pass `crop_pct=None` and an explicit `size` for non-square crops."
        )
    return {"shortest_edge": int(math.floor(height / crop_pct))}


def _as_size_dict(size: Any) -> dict[str, int]:
    size = dict(size) if isinstance(size, SizeDict) else get_size_dict(size, default_to_square=False)
    return {key: value for key, value in size.items() if value is not None}


def resolve_crop_pct(kwargs: dict, crop_pct_default: float | None, crop_size_default: Any) -> dict:
    """Settle `size` and `crop_pct` for one construction or call.

    - An explicit `size` without an explicit `crop_pct` is honoured, as Transformers' DeiT and ConvNeXt processors
      honour it: `crop_pct` is then not applied (set to None).
    - Otherwise, with `crop_pct` in effect, `size` becomes timm's resize target `floor(crop_size / crop_pct)`; an
      explicit `size` that disagrees with an explicit `crop_pct` is an error rather than being silently ignored.
    """
    kwargs = dict(kwargs)
    if kwargs.get("size") is not None and "crop_pct" not in kwargs:
        kwargs["crop_pct"] = None
        return kwargs
    crop_pct = kwargs.get("crop_pct", crop_pct_default)
    if crop_pct is None:
        return kwargs
    crop_size = kwargs.get("crop_size") if kwargs.get("crop_size") is not None else crop_size_default
    derived = resize_size_for_crop(crop_size, crop_pct)
    given = kwargs.get("size")
    if given is not None and _as_size_dict(given) != derived:
        raise ValueError(
            f"`size`={_as_size_dict(given)} contradicts crop_pct={crop_pct} with crop_size={crop_size}, which "
            f"resizes to {derived}. Pass `crop_pct=None` to resize to `size`, or drop `size`."
        )
    kwargs["size"] = derived
    return kwargs


def _center_crop_offsets(height: int, width: int, crop_height: int, crop_width: int) -> tuple[int, int]:
    """Top/left offsets of a centre crop, rounded like torchvision's `center_crop` (used by timm)."""
    return int(round((height - crop_height) / 2.0)), int(round((width - crop_width) / 2.0))


def _describe(image: Any) -> str:
    if isinstance(image, (np.ndarray, torch.Tensor)):
        return f"{type(image).__name__} of shape {tuple(image.shape)} and dtype {image.dtype}"
    return type(image).__name__


def _integer_array_to_uint8(array: np.ndarray) -> np.ndarray:
    """8-bit view of an integer or boolean array: 16-bit data is rescaled (x / 257), 8-bit ranges are cast."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if array.dtype == np.uint16:
        return np.round(array.astype(np.float32) / 257.0).astype(np.uint8)
    minimum, maximum = (int(array.min()), int(array.max())) if array.size else (0, 0)
    if minimum < 0 or maximum > 65535:
        raise ValueError(
            f"Integer image of dtype {array.dtype} has values in [{minimum}, {maximum}], outside 8-bit [0, 255] and "
            "16-bit [0, 65535] ranges: convert it to uint8 first (or to floats in [0, 1] and pass `do_rescale=False`)."
        )
    if maximum > 255:
        return np.round(array.astype(np.float32) / 257.0).astype(np.uint8)
    return array.astype(np.uint8)


def convert_image_to_rgb(image: PIL.Image.Image) -> PIL.Image.Image:
    """An 8-bit RGB copy of a PIL image, the same way for every caller: 16-bit (and 32-bit integer) images are
    rescaled to 8 bits instead of being clipped at 255, transparency (RGBA, LA, PA, palette with a transparent
    colour) is composited on white, palette, CMYK, 1-bit and the other modes are converted. RGB images are returned
    as they are. Empty images and 32-bit float images (no fixed range) raise a `ValueError`."""
    if image.width == 0 or image.height == 0:
        raise ValueError(f"Got an empty image of {image.width}x{image.height} pixels.")
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in SIXTEEN_BIT_MODES:
        # PIL's own convert("RGB") clips 16-bit values at 255; rescale to 8 bits instead.
        array = np.asarray(image.convert("I"), dtype=np.int64)  # (height, width)
        if mode.startswith("I;16"):
            array = np.round(array / 257.0).astype(np.uint8)
        return PIL.Image.fromarray(_integer_array_to_uint8(array)).convert("RGB")
    if mode == "F":
        raise ValueError(
            "32-bit float PIL images (mode 'F') have no fixed range; convert to an 8-bit image, or pass a float "
            "array scaled to [0, 255] (or to [0, 1] with `do_rescale=False`) instead."
        )
    if mode == "P" and "transparency" in image.info:
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in ("RGBA", "RGBa", "LA", "La", "PA"):
        rgba = image.convert("RGBA")
        white = PIL.Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return PIL.Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def decode_image(source: str | os.PathLike | bytes | IO[bytes]) -> PIL.Image.Image:
    """Read an image file (a path, its bytes or a binary file object) into an 8-bit RGB PIL image.

    The EXIF orientation is applied (`PIL.ImageOps.exif_transpose`), then `convert_image_to_rgb` converts the
    pixels. Unreadable or truncated files raise PIL's `OSError` (`PIL.UnidentifiedImageError` for non-images)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = io.BytesIO(source)
    with PIL.Image.open(source) as opened:
        opened.load()  # decode now: truncated files fail here, inside the `with`
        image = PIL.ImageOps.exif_transpose(opened)
        if image is opened:
            image = opened.copy()
    return convert_image_to_rgb(image)


def standardize_image(image: Any) -> Any:
    """Check one image and convert what the backends cannot take (16-bit, 1-bit, CMYK, 2-D arrays, odd dtypes)."""
    if isinstance(image, PIL.Image.Image):
        return convert_image_to_rgb(image)
    if isinstance(image, (np.ndarray, torch.Tensor)):
        if image.ndim not in (2, 3):
            raise ValueError(
                f"Expected an image of shape (height, width), (height, width, channels) or (channels, height, width), "
                f"got a {_describe(image)}."
            )
        if 0 in tuple(image.shape):
            raise ValueError(f"Got an empty image: {_describe(image)}.")
        if image.ndim == 3 and image.shape[0] not in (1, 3, 4) and image.shape[-1] not in (1, 3, 4):
            raise ValueError(
                f"Expected 1 (grayscale), 3 (RGB) or 4 (RGBA) channels first or last, got a {_describe(image)}."
            )
        if isinstance(image, torch.Tensor):
            if image.dtype == torch.uint8 or image.is_floating_point():
                return image if image.ndim == 3 else image[None]
            image = image.cpu().numpy()
        if image.ndim == 2:
            image = image[..., None]  # (height, width, 1)
        if np.issubdtype(image.dtype, np.floating):
            return image
        if not (np.issubdtype(image.dtype, np.integer) or image.dtype == np.bool_):
            raise ValueError(f"Unsupported image dtype: got a {_describe(image)}.")
        return _integer_array_to_uint8(image)
    raise ValueError(
        f"SoftImageProcessor expects PIL images, NumPy arrays, torch tensors, paths or URLs (or a list of them), "
        f"got {_describe(image)}."
    )


def flatten_images(images: Any) -> list:
    """A flat list of standardised images from one image, a batch array/tensor, or a (nested) list."""
    if images is None:
        raise ValueError("No images given: pass a PIL image, a NumPy array, a torch tensor or a list of them.")
    if isinstance(images, (list, tuple)):
        if len(images) == 0:
            raise ValueError("Got an empty list of images: pass at least one image.")
        flat = []
        for item in images:
            if isinstance(item, (list, tuple)):
                flat.extend(flatten_images(item))
            else:
                flat.extend(flatten_images(item) if _is_batch(item) else [standardize_image(item)])
        return flat
    if _is_batch(images):
        if images.shape[0] == 0:
            raise ValueError(f"Got an empty batch of images: {_describe(images)}.")
        return [standardize_image(image) for image in images]
    return [standardize_image(images)]


def _is_batch(images: Any) -> bool:
    return isinstance(images, (np.ndarray, torch.Tensor)) and images.ndim == 4


class SoftImageProcessorMixin:
    """Behaviour shared by both backends: defaults, input checks and conversion, timm's crop_pct and centre crop."""

    valid_kwargs = SoftImageProcessorKwargs
    model_input_names = ["pixel_values"]

    resample = PILImageResampling.BICUBIC
    image_mean = IMAGENET_DEFAULT_MEAN
    image_std = IMAGENET_DEFAULT_STD
    size = {"shortest_edge": int(math.floor(DEFAULT_CROP_SIZE / DEFAULT_CROP_PCT))}
    crop_size = {"height": DEFAULT_CROP_SIZE, "width": DEFAULT_CROP_SIZE}
    crop_pct = DEFAULT_CROP_PCT
    default_to_square = False
    do_resize = True
    do_center_crop = True
    do_rescale = True
    do_normalize = True
    do_convert_rgb = True

    def __init__(self, **kwargs: Unpack[SoftImageProcessorKwargs]):
        kwargs = resolve_crop_pct(kwargs, type(self).crop_pct, type(self).crop_size)
        super().__init__(**kwargs)

    def preprocess(self, images, *args, **kwargs: Unpack[SoftImageProcessorKwargs]) -> BatchFeature:
        """Preprocess an image or a batch of images (see the class docstring for accepted inputs)."""
        if kwargs.get("do_rescale", self.do_rescale) and _has_float_images_in_unit_range(images):
            logger.warning_once(
                "It looks like you are trying to rescale already rescaled images: float pixel values in [0, 1] are "
                "divided by 255 again with `do_rescale=True`. Pass `do_rescale=False` for images in [0, 1]."
            )
        kwargs = resolve_crop_pct(kwargs, self.crop_pct, self.crop_size)
        return super().preprocess(images, *args, **kwargs)

    @classmethod
    def from_dict(cls, image_processor_dict: dict[str, Any], **kwargs):
        """Build from saved settings (`preprocessor_config.json`) updated by `kwargs`. The saved `size` is the one
        `crop_pct` derived, so a new `crop_pct` (without `size`) derives it anew, and a new `size` (without
        `crop_pct`) is honoured as is."""
        image_processor_dict = dict(image_processor_dict)
        if "crop_pct" in kwargs and "size" not in kwargs:
            image_processor_dict.pop("size", None)
        if "size" in kwargs and "crop_pct" not in kwargs:
            image_processor_dict["crop_pct"] = None
        return super().from_dict(image_processor_dict, **kwargs)

    def fetch_images(self, image_url_or_urls):
        """Open local image files with `decode_image` (EXIF orientation, 16-bit rescaled, transparency on white:
        the same pixels as in training); URLs go to the backend."""
        if isinstance(image_url_or_urls, (list, tuple)):
            return [self.fetch_images(item) for item in image_url_or_urls]
        if isinstance(image_url_or_urls, str) and os.path.isfile(image_url_or_urls):
            return decode_image(image_url_or_urls)
        return super().fetch_images(image_url_or_urls)

    def _prepare_images_structure(self, images, expected_ndims: int = 3) -> list:
        """Load paths/URLs, then check, convert and flatten the images (see `flatten_images`)."""
        images = self.fetch_images(images) if _contains_strings(images) else images
        return flatten_images(images)


def _has_float_images_in_unit_range(images: Any) -> bool:
    """Whether the input holds a float array or tensor whose values all lie in [0, 1] (already rescaled)."""
    if isinstance(images, (list, tuple)):
        return any(_has_float_images_in_unit_range(image) for image in images)
    if isinstance(images, torch.Tensor) and images.is_floating_point() and images.numel():
        return bool(images.min() >= 0) and bool(images.max() <= 1)
    if isinstance(images, np.ndarray) and np.issubdtype(images.dtype, np.floating) and images.size:
        return bool(images.min() >= 0) and bool(images.max() <= 1)
    return False


def _contains_strings(images: Any) -> bool:
    if isinstance(images, str):
        return True
    return isinstance(images, (list, tuple)) and any(_contains_strings(item) for item in images)


class SoftImageProcessor(SoftImageProcessorMixin, TorchvisionBackend):
    r"""
    SOFT image processor, torchvision backend. Defaults reproduce the official evaluation transform (timm):
    bicubic resize of the shorter side to `floor(224 / 0.9) = 248`, centre crop 224 x 224, ImageNet mean/std.

    Args:
        crop_pct (`float`, *optional*, defaults to 0.9):
            The shorter side is resized to `floor(crop_size / crop_pct)`; `None` resizes to `size` instead.
        size (`dict[str, int]`, *optional*, defaults to `{"shortest_edge": 248}`):
            Resize target when `crop_pct` is `None` (otherwise derived from `crop_pct` and `crop_size`).
        crop_size (`dict[str, int]`, *optional*, defaults to `{"height": 224, "width": 224}`): Centre-crop size.
        resample (`PILImageResampling`, *optional*, defaults to `BICUBIC`): Interpolation of the resize.
        image_mean, image_std (`list[float]`, *optional*): ImageNet mean and standard deviation by default.
        Other arguments as in Transformers' image processors (`do_resize`, `do_center_crop`, `do_rescale`,
        `rescale_factor`, `do_normalize`, `do_convert_rgb`).
    """

    def center_crop(self, image: torch.Tensor, size: SizeDict, **kwargs) -> torch.Tensor:
        """Centre crop with torchvision's (and timm's) rounding of the offsets."""
        height, width = image.shape[-2:]
        if size.height is None or size.width is None:
            raise ValueError(f"The crop size must have 'height' and 'width', got {dict(size)}.")
        if size.height > height or size.width > width:
            return super().center_crop(image, size, **kwargs)  # pads like torchvision
        top, left = _center_crop_offsets(height, width, size.height, size.width)
        return image[..., top : top + size.height, left : left + size.width]


class SoftImageProcessorPil(SoftImageProcessorMixin, PilBackend):
    r"""
    SOFT image processor, PIL/NumPy backend: the same defaults and arguments as [`SoftImageProcessor`]; resizing is
    done by PIL, exactly as timm's evaluation transform does on PIL images.
    """

    def center_crop(self, image: np.ndarray, size: SizeDict, **kwargs) -> np.ndarray:
        """Centre crop with torchvision's (and timm's) rounding of the offsets; `image` is channels first."""
        height, width = image.shape[-2:]
        if size.height is None or size.width is None:
            raise ValueError(f"The crop size must have 'height' and 'width', got {dict(size)}.")
        if size.height > height or size.width > width:
            return super().center_crop(image, size, **kwargs)
        top, left = _center_crop_offsets(height, width, size.height, size.width)
        return image[..., top : top + size.height, left : left + size.width]


__all__ = ["SoftImageProcessor", "SoftImageProcessorPil", "convert_image_to_rgb", "decode_image"]
