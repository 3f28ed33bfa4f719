# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""Fashion-MNIST scenes: an offline detection and segmentation dataset made of real pixels.

Each scene is a textured background (random crops of the brick, grass and gravel photographs bundled with
scikit-image, or colour gradients with smooth noise, all randomly coloured) on which 2-5 Fashion-MNIST garments are
pasted at random scales (20%-55% of the canvas side), positions and colours. Later garments occlude earlier ones.
A garment's mask is its Fashion-MNIST intensity above a threshold (its alpha, a ramp around that threshold, blends
its edges into the background); an instance's mask is its visible part, and a garment whose visible part is below
30% of its mask or 48 pixels is left out of the scene altogether (not drawn), so every garment pixel of an image
belongs to exactly one annotated instance. The training split draws its garments from Fashion-MNIST's training
images and the validation split from its test images: no garment of the validation split is seen in training.

Output (`generate_scenes`, `soft-make-scenes`, `scripts/make_scenes.py`):

    DIR/annotations/instances_train.json   COCO detection: boxes, areas and RLE masks of the visible parts
    DIR/annotations/instances_val.json
    DIR/train/images/000000.png ...        RGB scenes (COCO `file_name`s are relative to DIR/<split>/images)
    DIR/train/masks/000000.png ...         semantic masks, uint8: 0 = background, k = COCO category k (1..10)
    DIR/val/images, DIR/val/masks
    DIR/id2label.json                      11 segmentation labels: 0 "background", 1..10 the Fashion-MNIST classes
    DIR/dataset_info.json                  provenance, licences and the generator's arguments

Scene `i` of a split is drawn from a random generator seeded with `(seed, split, i)` alone, so the same arguments
give byte-identical files, and a larger `num_train` only adds scenes.
"""

from __future__ import annotations

import argparse
import colorsys
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .classification import (
    DEFAULT_FASHION_MNIST_DIR,
    FASHION_MNIST_FILES,
    FASHION_MNIST_LABELS,
    IDX_IMAGES_MAGIC,
    IDX_LABELS_MAGIC,
    fashion_mnist_missing_message,
    read_idx_file,
)


SCENES_VERSION = "1.0"
# Scene split -> (folder name, Fashion-MNIST split its garments come from, code mixed into the random seed).
SCENE_SPLITS = {"train": ("train", "train", 0), "val": ("val", "test", 1)}
# Texture photographs of `skimage.data` (512x512 grey, CC0) and the procedural background.
TEXTURE_NAMES = ("brick", "grass", "gravel")
BACKGROUND_KINDS = TEXTURE_NAMES + ("gradient",)
FASHION_MNIST_SUPERCATEGORIES = {
    "T-shirt/top": "clothing",
    "Trouser": "clothing",
    "Pullover": "clothing",
    "Dress": "clothing",
    "Coat": "clothing",
    "Sandal": "footwear",
    "Shirt": "clothing",
    "Sneaker": "footwear",
    "Bag": "accessory",
    "Ankle boot": "footwear",
}
FASHION_MNIST_LICENSE = {
    "id": 1,
    "name": "MIT License (Fashion-MNIST, Copyright (c) 2017 Zalando SE)",
    "url": "https://github.com/zalandoresearch/fashion-mnist/blob/master/LICENSE",
}
TEXTURE_LICENSE = "CC0 1.0 (scikit-image's skimage.data.brick, grass and gravel; sources cc0textures.com, DeviantArt)"


@dataclass
class SceneConfig:
    """How scenes are drawn.

    Args:
        image_size: side of the square canvas in pixels.
        min_garments / max_garments: garments drawn per scene (inclusive; fewer remain when some are left out).
        min_scale / max_scale: side of a pasted garment (28 px in Fashion-MNIST) as a fraction of `image_size`.
        mask_threshold: Fashion-MNIST intensity (0-255) above which a pixel belongs to the garment.
        alpha_ramp: width of the intensity ramp around `mask_threshold` over which a garment's alpha goes from 0 to 1
            (smooth edges; the mask is alpha >= 0.5, i.e. intensity >= `mask_threshold`).
        min_visible_fraction / min_visible_pixels: a garment whose visible pixels fall below this fraction of its mask
            or this count is left out of the scene.
    """

    image_size: int = 160
    min_garments: int = 2
    max_garments: int = 5
    min_scale: float = 0.2
    max_scale: float = 0.55
    mask_threshold: float = 24.0
    alpha_ramp: float = 32.0
    min_visible_fraction: float = 0.3
    min_visible_pixels: int = 48

    def __post_init__(self):
        if self.image_size < 16:
            raise ValueError(f"`image_size` must be at least 16 pixels, got {self.image_size}.")
        if not 1 <= self.min_garments <= self.max_garments:
            raise ValueError(f"Need 1 <= min_garments <= max_garments, got {self.min_garments}, {self.max_garments}.")
        if not 0 < self.min_scale <= self.max_scale <= 1:
            raise ValueError(f"Need 0 < min_scale <= max_scale <= 1, got {self.min_scale}, {self.max_scale}.")


@dataclass
class SceneInstance:
    """One garment of a scene: its COCO category, its visible mask `(height, width)` bool, and its source image."""

    category_id: int
    mask: np.ndarray
    source_index: int


@dataclass
class Scene:
    """A rendered scene: `image` `(height, width, 3)` uint8, `semantic_mask` `(height, width)` uint8 (0 = background,
    k = category k), the instances bottom to top, and the background kind."""

    image: np.ndarray
    semantic_mask: np.ndarray
    instances: list[SceneInstance] = field(default_factory=list)
    background: str = ""


# ----------------------------------------------------------------------------------------------------------------------
# Sources
# ----------------------------------------------------------------------------------------------------------------------


def load_fashion_mnist_arrays(split: str, directory: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST images `(count, 28, 28)` uint8 and labels `(count,)` uint8 of `split` ("train" or "test"), read
    from the idx files of the Debian package (`soft_hf.data.classification.read_idx_file`)."""
    directory = directory or DEFAULT_FASHION_MNIST_DIR
    if not os.path.isdir(directory):
        raise ValueError(fashion_mnist_missing_message(directory))
    images_file, labels_file = FASHION_MNIST_FILES[split]
    images = read_idx_file(os.path.join(directory, images_file), IDX_IMAGES_MAGIC)  # (count, 28, 28)
    labels = read_idx_file(os.path.join(directory, labels_file), IDX_LABELS_MAGIC)  # (count,)
    if len(images) != len(labels) or images.shape[1:] != (28, 28):
        raise ValueError(f"Fashion-MNIST {split} in {directory}: {images.shape} images but {labels.shape} labels.")
    return images, labels


def load_textures() -> dict[str, np.ndarray]:
    """The texture photographs bundled with scikit-image (no download) as `(512, 512)` float32 in [0, 1]."""
    try:
        import skimage.data
    except ImportError as error:
        raise ImportError(
            "The scene backgrounds are scikit-image's texture photographs: `pip install scikit-image` (or "
            "`pip install soft-hf[train]`)."
        ) from error
    return {name: getattr(skimage.data, name)().astype(np.float32) / 255.0 for name in TEXTURE_NAMES}


# ----------------------------------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------------------------------


def random_colour(rng: np.random.Generator, saturation: tuple[float, float], value: tuple[float, float]) -> np.ndarray:
    """An RGB colour `(3,)` float32 in [0, 255] of random hue and the given saturation and value ranges."""
    hue = rng.random()
    rgb = colorsys.hsv_to_rgb(hue, rng.uniform(*saturation), rng.uniform(*value))
    return np.asarray(rgb, dtype=np.float32) * 255.0


def resize_plane(plane: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of a float32 plane `(h, w)` to `(height, width)` (PIL, antialiased when shrinking)."""
    return np.asarray(Image.fromarray(plane).resize((width, height), Image.Resampling.BILINEAR))


def linear_ramp(rng: np.random.Generator, size: int) -> np.ndarray:
    """`(size, size)` float32 ramp in [0, 1] along a random direction."""
    angle = rng.uniform(0.0, 2.0 * np.pi)
    coordinates = np.linspace(-0.5, 0.5, size, dtype=np.float32)
    ramp = np.cos(angle) * coordinates[None, :] + np.sin(angle) * coordinates[:, None]  # (size, size)
    return (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1e-6)


def render_background(
    rng: np.random.Generator, size: int, textures: dict[str, np.ndarray]
) -> tuple[np.ndarray, str]:
    """A `(size, size, 3)` float32 background in [0, 255] and its kind: a randomly cropped, scaled, rotated and
    coloured texture photograph, or a two-colour gradient modulated by smooth noise; both lit by a random gradient
    and with pixel noise."""
    kind = BACKGROUND_KINDS[rng.integers(len(BACKGROUND_KINDS))]
    if kind in textures:
        texture = textures[kind]
        crop = int(rng.integers(max(8, size // 2), texture.shape[0] + 1))
        top, left = rng.integers(0, texture.shape[0] - crop + 1, size=2)
        pattern = np.rot90(texture[top : top + crop, left : left + crop], k=int(rng.integers(4)))
        pattern = resize_plane(np.ascontiguousarray(pattern), size, size)  # (size, size)
        low, high = np.percentile(pattern[::4, ::4], (1, 99))  # contrast stretch, from a subsample
        pattern = np.clip((pattern - low) / max(high - low, 1e-3), 0.0, 1.0)
    else:
        blotches = rng.random((4, 4), dtype=np.float32)
        blotches = np.asarray(
            Image.fromarray(blotches).resize((size, size), Image.Resampling.BICUBIC)
        )  # (size, size), smooth
        pattern = np.clip(0.7 * linear_ramp(rng, size) + 0.3 * blotches, 0.0, 1.0)
    dark = random_colour(rng, (0.0, 0.8), (0.05, 0.6))
    light = random_colour(rng, (0.0, 0.8), (0.4, 1.0))
    background = dark + (light - dark) * pattern[..., None]  # (size, size, 3)
    lighting = 0.75 + 0.5 * linear_ramp(rng, size)  # (size, size)
    background = background * lighting[..., None]
    background += rng.uniform(0.0, 4.0) * rng.standard_normal(background.shape, dtype=np.float32)
    return background, kind


def render_scene(
    rng: np.random.Generator,
    garments: np.ndarray,
    garment_labels: np.ndarray,
    textures: dict[str, np.ndarray],
    config: SceneConfig,
) -> Scene:
    """Draw one scene (see the module docstring) with garments drawn from `garments` `(count, 28, 28)` uint8 whose
    Fashion-MNIST labels are `garment_labels` `(count,)`."""
    size = config.image_size
    background, kind = render_background(rng, size, textures)
    num_garments = int(rng.integers(config.min_garments, config.max_garments + 1))

    # Draw every garment: source, side, position, flip, colour; its alpha and shaded colour on its square.
    drawn = []
    for _ in range(num_garments):
        source_index = int(rng.integers(len(garments)))
        side = max(4, int(round(rng.uniform(config.min_scale, config.max_scale) * size)))
        top, left = (int(value) for value in rng.integers(0, size - side + 1, size=2))
        intensity = garments[source_index].astype(np.float32)  # (28, 28)
        if rng.random() < 0.5:
            intensity = intensity[:, ::-1]
        intensity = resize_plane(np.ascontiguousarray(intensity), side, side)  # (side, side), 0..255
        alpha = np.clip((intensity - config.mask_threshold) / config.alpha_ramp + 0.5, 0.0, 1.0)  # (side, side)
        tint = random_colour(rng, (0.25, 1.0), (0.45, 1.0))
        shading = 0.25 + 0.75 * np.clip(intensity / 255.0, 0.0, 1.0)  # (side, side)
        colour = tint * shading[..., None]  # (side, side, 3)
        full_mask = np.zeros((size, size), dtype=bool)
        full_mask[top : top + side, left : left + side] = alpha >= 0.5
        drawn.append((source_index, top, left, side, alpha, colour, full_mask))

    # Keep garments from the top down: a garment stays if enough of it shows under the ones kept above it; a garment
    # left out is not drawn, which only uncovers those below it.
    covered = np.zeros((size, size), dtype=bool)
    kept = []
    for order in reversed(range(num_garments)):
        full_mask = drawn[order][-1]
        visible = full_mask & ~covered
        visible_pixels, full_pixels = int(visible.sum()), int(full_mask.sum())
        if visible_pixels >= config.min_visible_pixels and visible_pixels >= config.min_visible_fraction * full_pixels:
            kept.append((order, visible))
            covered |= full_mask
    kept.reverse()  # bottom to top

    canvas = background
    semantic_mask = np.zeros((size, size), dtype=np.uint8)
    instances = []
    for order, visible in kept:
        source_index, top, left, side, alpha, colour, full_mask = drawn[order]
        region = canvas[top : top + side, left : left + side]  # (side, side, 3), a view
        region += alpha[..., None] * (colour - region)
        category_id = int(garment_labels[source_index]) + 1
        semantic_mask[full_mask] = category_id
        instances.append(SceneInstance(category_id=category_id, mask=visible, source_index=source_index))
    image = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)  # (size, size, 3)
    return Scene(image=image, semantic_mask=semantic_mask, instances=instances, background=kind)


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The random generator of scene `index` of `split`: a function of `(seed, split, index)` only."""
    return np.random.default_rng([int(seed), SCENE_SPLITS[split][2], int(index)])


# ----------------------------------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------------------------------


def encode_rle(mask: np.ndarray) -> dict:
    """COCO RLE of a `(height, width)` bool mask, with `counts` as a str (JSON-serialisable)."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(size) for size in rle["size"]], "counts": rle["counts"].decode("ascii")}


def tight_bbox(mask: np.ndarray) -> list[int]:
    """`[x, y, width, height]` of the smallest box holding every True pixel of a `(height, width)` mask."""
    rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return [int(columns[0]), int(rows[0]), int(columns[-1] - columns[0] + 1), int(rows[-1] - rows[0] + 1)]


def coco_categories() -> list[dict]:
    """The ten Fashion-MNIST classes as COCO categories 1..10."""
    return [
        {"id": index + 1, "name": name, "supercategory": FASHION_MNIST_SUPERCATEGORIES[name]}
        for index, name in enumerate(FASHION_MNIST_LABELS)
    ]


def write_png(array: np.ndarray, path: Path, compress_level: int = 6) -> None:
    Image.fromarray(array).save(path, format="PNG", compress_level=compress_level)


def generate_split(
    output_dir: Path,
    split: str,
    num_images: int,
    seed: int,
    config: SceneConfig,
    textures: dict[str, np.ndarray],
    garments: np.ndarray,
    garment_labels: np.ndarray,
) -> dict:
    """Render `num_images` scenes of `split` ("train" or "val") with garments drawn from `garments` `(count, 28, 28)`
    (Fashion-MNIST labels `garment_labels`, of the split's source split) into `output_dir/<split>/{images,masks}`
    and return their COCO detection dictionary."""
    folder, source_split, _ = SCENE_SPLITS[split]
    images_dir, masks_dir = output_dir / folder / "images", output_dir / folder / "masks"
    images_dir.mkdir(parents=True, exist_ok=True)
    masks_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for index in range(num_images):
        scene = render_scene(scene_rng(seed, split, index), garments, garment_labels, textures, config)
        file_name = f"{index:06d}.png"
        write_png(scene.image, images_dir / file_name, compress_level=1)  # photographs: level 6 saves ~10%, 2x slower
        write_png(scene.semantic_mask, masks_dir / file_name)
        image_id = index + 1
        images.append(
            {
                "id": image_id,
                "file_name": file_name,
                "width": config.image_size,
                "height": config.image_size,
                "license": FASHION_MNIST_LICENSE["id"],
                "background": scene.background,
            }
        )
        for instance in scene.instances:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": instance.category_id,
                    "bbox": tight_bbox(instance.mask),
                    "area": int(instance.mask.sum()),
                    "iscrowd": 0,
                    "segmentation": encode_rle(instance.mask),
                    "fashion_mnist_split": source_split,
                    "fashion_mnist_index": instance.source_index,
                }
            )
    return {
        "info": {
            "description": f"Fashion-MNIST scenes ({split}): garments of Fashion-MNIST's {source_split} split on "
            "textured backgrounds (soft-hf, soft_hf.data.scenes)",
            "version": SCENES_VERSION,
            "contributor": "soft-hf",
            "url": "https://github.com/zalandoresearch/fashion-mnist",
        },
        "licenses": [FASHION_MNIST_LICENSE],
        "images": images,
        "annotations": annotations,
        "categories": coco_categories(),
    }


def write_json(value, path: Path) -> None:
    path.write_text(json.dumps(value, indent=None, separators=(",", ":")) + "\n", encoding="utf-8")


def generate_scenes(
    output_dir: str | os.PathLike,
    num_train: int = 2000,
    num_val: int = 300,
    image_size: int = 160,
    seed: int = 0,
    fashion_mnist_dir: str | None = None,
    overwrite: bool = False,
    **scene_options,
) -> dict:
    """Write the scenes dataset (layout in the module docstring) to `output_dir` and return its `dataset_info.json`
    content. `scene_options` are further `SceneConfig` fields. The folder must be absent or empty unless
    `overwrite=True`, which deletes it first."""
    output_dir = Path(output_dir)
    if output_dir.exists() and any(output_dir.iterdir()) and not overwrite:
        raise ValueError(f"{output_dir} exists and is not empty: choose another folder or pass --overwrite.")
    if num_train < 1 or num_val < 1:
        raise ValueError(f"Need at least one image per split, got num_train={num_train}, num_val={num_val}.")
    config = SceneConfig(image_size=image_size, **scene_options)
    textures = load_textures()
    sources = {split: load_fashion_mnist_arrays(SCENE_SPLITS[split][1], fashion_mnist_dir) for split in SCENE_SPLITS}
    if output_dir.exists():
        shutil.rmtree(output_dir)
    output_dir.mkdir(parents=True)
    (output_dir / "annotations").mkdir()
    counts = {}
    for split, num_images in (("train", num_train), ("val", num_val)):
        coco = generate_split(output_dir, split, num_images, seed, config, textures, *sources[split])
        write_json(coco, output_dir / "annotations" / f"instances_{split}.json")
        counts[split] = {"images": len(coco["images"]), "instances": len(coco["annotations"])}
    id2label = {"0": "background", **{str(index + 1): name for index, name in enumerate(FASHION_MNIST_LABELS)}}
    (output_dir / "id2label.json").write_text(json.dumps(id2label, indent=2) + "\n", encoding="utf-8")
    info = {
        "name": "fashion-mnist-scenes",
        "version": SCENES_VERSION,
        "generator": "soft_hf.data.scenes.generate_scenes (soft-make-scenes)",
        "arguments": {"num_train": num_train, "num_val": num_val, "seed": seed, **asdict(config)},
        "splits": {
            split: {**counts[split], "garments_from": f"Fashion-MNIST {SCENE_SPLITS[split][1]}"} for split in counts
        },
        "layout": {
            "annotations/instances_{split}.json": "COCO detection: bbox [x, y, w, h] tight around the visible mask, "
            "area = visible pixels, segmentation = RLE of the visible mask; file_name relative to {split}/images",
            "{split}/images/*.png": "RGB scenes",
            "{split}/masks/*.png": "semantic masks, uint8: 0 = background, k = COCO category k",
            "id2label.json": "segmentation labels 0..10",
        },
        "sources": {
            "garments": {
                "dataset": "Fashion-MNIST (Xiao, Rasul and Vollgraf, 2017)",
                "license": FASHION_MNIST_LICENSE["name"],
                "url": "https://github.com/zalandoresearch/fashion-mnist",
                "read_from": "idx files of the Debian package dataset-fashion-mnist",
            },
            "backgrounds": {
                "textures": [f"skimage.data.{name}" for name in TEXTURE_NAMES],
                "license": TEXTURE_LICENSE,
                "also": "two-colour gradients with smooth noise",
            },
        },
    }
    (output_dir / "dataset_info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return info


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] + " Writes COCO detection annotations, semantic masks and id2label.json.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--output_dir", required=True, help="Folder to create (must be absent or empty).")
    parser.add_argument("--num_train", type=int, default=2000, help="Training scenes (garments: Fashion-MNIST train).")
    parser.add_argument("--num_val", type=int, default=300, help="Validation scenes (garments of Fashion-MNIST test).")
    parser.add_argument("--image_size", type=int, default=160, help="Side of the square scenes in pixels.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min_garments", type=int, default=SceneConfig.min_garments)
    parser.add_argument("--max_garments", type=int, default=SceneConfig.max_garments)
    parser.add_argument("--fashion_mnist_dir", help=f"Fashion-MNIST idx files (default {DEFAULT_FASHION_MNIST_DIR}).")
    parser.add_argument("--overwrite", action="store_true", help="Delete a non-empty --output_dir first.")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    info = generate_scenes(
        args.output_dir,
        num_train=args.num_train,
        num_val=args.num_val,
        image_size=args.image_size,
        seed=args.seed,
        fashion_mnist_dir=args.fashion_mnist_dir,
        overwrite=args.overwrite,
        min_garments=args.min_garments,
        max_garments=args.max_garments,
    )
    splits = ", ".join(
        f"{split}: {count['images']} images, {count['instances']} garments" for split, count in info["splits"].items()
    )
    print(f"Wrote {args.output_dir} ({splits}) in {time.perf_counter() - start:.1f}s.")
    return info


__all__ = [
    "BACKGROUND_KINDS",
    "Scene",
    "SceneConfig",
    "SceneInstance",
    "coco_categories",
    "encode_rle",
    "generate_scenes",
    "load_fashion_mnist_arrays",
    "load_textures",
    "render_scene",
    "scene_rng",
    "tight_bbox",
]


if __name__ == "__main__":
    main()
