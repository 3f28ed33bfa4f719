"""Helpers of the segmentation and backbone tests: a tiny SOFT-Norm config and a small real-image segmentation folder
(scikit-image photographs, masks by Otsu thresholding of their grey levels)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]

# Photographs bundled with scikit-image (no download). Colour and grey images of different sizes and aspect ratios.
TRAIN_IMAGES = ("chelsea", "coffee", "astronaut", "rocket", "camera", "coins")
VALIDATION_IMAGES = ("immunohistochemistry", "clock")


def tiny_soft_norm_kwargs(**overrides) -> dict:
    """A SOFT-Norm pyramid of a few ten-thousand parameters with every part of the architecture."""
    kwargs = dict(
        image_size=64,
        hidden_sizes=[16, 32, 32, 32],
        depths=[1, 1, 2, 1],
        num_attention_heads=[1, 2, 2, 2],
        stem_hidden_size=8,
        normalization="symmetric",
    )
    kwargs.update(overrides)
    return kwargs


def otsu_mask(image: np.ndarray) -> np.ndarray:
    """Two classes by Otsu's threshold of the grey levels: 0 dark, 1 bright (uint8)."""
    from skimage.color import rgb2gray
    from skimage.filters import threshold_otsu

    grey = rgb2gray(image) if image.ndim == 3 else image.astype(np.float64) / 255.0
    return (grey > threshold_otsu(grey)).astype(np.uint8)


def load_skimage(name: str, max_side: int = 160) -> np.ndarray:
    """An RGB uint8 scikit-image photograph, downscaled so its longer side is at most `max_side`."""
    import skimage.data

    image = getattr(skimage.data, name)()
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    image = image[..., :3].astype(np.uint8)
    height, width = image.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
    return image


def write_segmentation_folder(root: Path, names, max_side: int = 160) -> Path:
    """`root/images/<name>.jpg|png` + `root/masks/<name>.png` (Otsu masks); colour photos as JPEG, grey as PNG."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for index, name in enumerate(names):
        image = load_skimage(name, max_side)
        extension = ".jpg" if index % 2 == 0 else ".png"
        Image.fromarray(image).save(root / "images" / f"{name}{extension}")
        Image.fromarray(otsu_mask(image), mode="L").save(root / "masks" / f"{name}.png")
    return root


def write_segmentation_dataset(root: Path, max_side: int = 160) -> Path:
    """`root/train`, `root/validation` and `root/id2label.json` (2 classes)."""
    write_segmentation_folder(root / "train", TRAIN_IMAGES, max_side)
    write_segmentation_folder(root / "validation", VALIDATION_IMAGES, max_side)
    (root / "id2label.json").write_text(json.dumps({"0": "dark", "1": "bright"}))
    return root


def isolated_env(tmp_path: Path) -> dict:
    """Environment of a subprocess: offline Hub, private HF cache, one thread per process."""
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        HF_HOME=str(tmp_path / "hf_home"),
        HF_MODULES_CACHE=str(tmp_path / "hf_home" / "modules"),
        OMP_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONPATH=str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
    )
    env.pop("HF_DATASETS_CACHE", None)
    return env


def run_python(code_or_args, tmp_path: Path, timeout: int = 300, cwd: Path | None = None):
    """Run `python -c code` (str) or `python *args` (list) in a fresh interpreter; fail with its output."""
    command = [sys.executable, "-c", code_or_args] if isinstance(code_or_args, str) else [sys.executable, *code_or_args]
    result = subprocess.run(
        command, env=isolated_env(tmp_path), cwd=cwd or tmp_path, capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        output = f"{result.stdout[-4000:]}\n{result.stderr[-6000:]}"
        raise AssertionError(f"subprocess failed ({result.returncode}):\n{output}")
    return result
