#!/usr/bin/env python
# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""Classify images with a SOFT model through the `image-classification` pipeline and print the top-k labels.

    python scripts/predict.py --model my-org/soft-tiny cat.jpg photos/ https://example.com/dog.jpg --top-k 3
    python scripts/predict.py --model outputs/soft-tiny photos/ --json

`--model` is a Hub repository id or a local Hub-ready folder; its own code is loaded with `trust_remote_code=True`
(soft_hf is not imported, so this is exactly what a Hub user runs; `--installed-code` uses the installed soft_hf
classes instead, e.g. for a `save_pretrained` folder without code files). Inputs are image files, folders (their
images, sorted; `--recursive` descends) and http(s) URLs, which the pipeline downloads.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys


IMAGE_SUFFIXES = {".bmp", ".gif", ".jpeg", ".jpg", ".png", ".ppm", ".tif", ".tiff", ".webp"}


def expand_inputs(inputs: list[str], recursive: bool = False) -> list[str]:
    """Files and URLs as given; folders replaced by their image files. A missing path is a `ValueError`."""
    expanded = []
    for item in inputs:
        if item.startswith(("http://", "https://")):
            expanded.append(item)
            continue
        path = pathlib.Path(item).expanduser()
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            images = sorted(str(p) for p in path.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not images:
                raise ValueError(f"Folder {path} contains no images ({', '.join(sorted(IMAGE_SUFFIXES))}).")
            expanded.extend(images)
        elif path.is_file():
            expanded.append(str(path))
        else:
            raise ValueError(f"{item} is neither an image file, a folder nor an http(s) URL.")
    if not expanded:
        raise ValueError("No images given.")
    return expanded


def build_pipeline(model: str, device: str = "cpu", backend: str | None = None, revision: str | None = None):
    """The `image-classification` pipeline of `model` with its own (remote) code."""
    from transformers import AutoImageProcessor, pipeline

    image_processor = None
    if backend is not None:
        image_processor = AutoImageProcessor.from_pretrained(
            model, trust_remote_code=True, backend=backend, revision=revision
        )
    return pipeline(
        "image-classification",
        model=model,
        image_processor=image_processor,
        trust_remote_code=True,
        device=device,
        revision=revision,
    )


def predict(classifier, images: list[str], top_k: int = 5, batch_size: int = 8) -> list[dict]:
    """[{"image": path, "predictions": [{"label": ..., "score": ...}, ...]}, ...] in input order."""
    outputs = classifier(images, top_k=top_k, batch_size=batch_size)
    return [{"image": image, "predictions": output} for image, output in zip(images, outputs)]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", help="image files, folders or http(s) URLs")
    parser.add_argument("--model", required=True, help="Hub repository id or local Hub-ready folder")
    parser.add_argument("--top-k", type=int, default=5, help="labels to print per image (default 5)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps ...")
    parser.add_argument("--backend", choices=["torchvision", "pil"], help="image processor backend")
    parser.add_argument("--revision", help="Hub branch, tag or commit")
    parser.add_argument("--recursive", action="store_true", help="descend into sub-folders of folder inputs")
    parser.add_argument("--installed-code", action="store_true", help="use the installed soft_hf classes")
    parser.add_argument("--json", action="store_true", help="print one JSON list instead of text")
    args = parser.parse_args(argv)
    if args.top_k < 1:
        parser.error("--top-k must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        images = expand_inputs(args.inputs, recursive=args.recursive)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.installed_code:
        import soft_hf  # noqa: F401  (registers the installed classes, which then win over remote code)
    classifier = build_pipeline(args.model, device=args.device, backend=args.backend, revision=args.revision)
    results = predict(classifier, images, top_k=args.top_k, batch_size=args.batch_size)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for result in results:
            print(result["image"])
            for prediction in result["predictions"]:
                print(f"  {prediction['score']:.4f}  {prediction['label']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
