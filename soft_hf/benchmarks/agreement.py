# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""What `quantization_agreement` (int8) and `bf16_agreement` (bfloat16 autocast) share: a SOFT classifier trained on
Fashion-MNIST with its test images as processed batches (read by `soft_hf.data.classification.load_fashion_mnist`
and the model's own image processor), the top-1 predictions of a variant of it, and the report comparing a variant
with float32 (accuracy of both, share of images whose top-1 class is unchanged, images per second of both)."""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable
from contextlib import AbstractContextManager

import numpy as np
import torch
from torch import nn
from transformers import AutoImageProcessor

from ..data.classification import load_fashion_mnist
from ..models.soft.modeling_soft import SoftForImageClassification


def add_agreement_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="A SOFT classifier folder trained on Fashion-MNIST.")
    parser.add_argument("--max_samples", type=int, default=None, help="Test images to use (default: all 10,000).")
    parser.add_argument("--batch_size", type=int, default=250)
    parser.add_argument("--fashion_mnist_dir", default=None, help="Folder of the Fashion-MNIST idx files (default: Debian's).")


def load_model_and_test_batches(args: argparse.Namespace) -> tuple[nn.Module, list[torch.Tensor], torch.Tensor]:
    """The float32 classifier in eval mode, the test images as `pixel_values` batches of `args.batch_size`, and
    their labels."""
    model = SoftForImageClassification.from_pretrained(args.model).eval()
    processor = AutoImageProcessor.from_pretrained(args.model)
    dataset = load_fashion_mnist("test", directory=args.fashion_mnist_dir, max_samples=args.max_samples)
    images = [np.asarray(image) for image in dataset["image"]]
    labels = torch.tensor(dataset["label"])
    batches = [
        processor(images[start : start + args.batch_size], return_tensors="pt")["pixel_values"]
        for start in range(0, len(images), args.batch_size)
    ]
    return model, batches, labels


def predictions(
    model: nn.Module,
    batches: list[torch.Tensor],
    context: Callable[[], AbstractContextManager] = contextlib.nullcontext,
) -> tuple[torch.Tensor, float]:
    """Top-1 class of every image (each batch run inside `context()`, e.g. autocast) and the images per second of
    the whole pass."""
    classes, count = [], 0
    start = time.perf_counter()
    with torch.no_grad():
        for pixel_values in batches:
            with context():
                classes.append(model(pixel_values).logits.argmax(-1))
            count += len(pixel_values)
    return torch.cat(classes), count / (time.perf_counter() - start)


def agreement_report(
    labels: torch.Tensor,
    float_run: tuple[torch.Tensor, float],
    variant_run: tuple[torch.Tensor, float],
    variant: str,
) -> dict:
    """Accuracy of float32 and of the variant, their top-1 agreement and both speeds, keyed by `variant`."""
    (float_classes, float_rate), (variant_classes, variant_rate) = float_run, variant_run
    return {
        "num_images": len(labels),
        "float32_top1_accuracy": (float_classes == labels).float().mean().item(),
        f"{variant}_top1_accuracy": (variant_classes == labels).float().mean().item(),
        "top1_agreement": (float_classes == variant_classes).float().mean().item(),
        "float32_images_per_second": float_rate,
        f"{variant}_images_per_second": variant_rate,
    }
