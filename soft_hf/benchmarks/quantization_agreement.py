"""Top-1 agreement of a dynamically int8-quantized SOFT classifier with its float32 self (issue 15).

`torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)` replaces every linear layer of a
SOFT model (the model calls replaced modules instead of its fast paths). This script measures what that costs on
the demo model's Fashion-MNIST test set: accuracy of both, the share of images whose top-1 class is unchanged, and
images per second of both on this machine.

    python -m soft_hf.benchmarks.quantization_agreement --model outputs/demo/final [--max_samples N] [--batch_size 250]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from torch import nn
from transformers import AutoImageProcessor

from ..data.classification import load_fashion_mnist
from ..models.soft.modeling_soft import SoftForImageClassification


def predictions(model: nn.Module, batches: list[torch.Tensor]) -> tuple[torch.Tensor, float]:
    """Top-1 class of every image and the images per second of the whole pass."""
    classes, count = [], 0
    start = time.perf_counter()
    with torch.no_grad():
        for pixel_values in batches:
            classes.append(model(pixel_values).logits.argmax(-1))
            count += len(pixel_values)
    return torch.cat(classes), count / (time.perf_counter() - start)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="A SOFT classifier folder trained on Fashion-MNIST.")
    parser.add_argument("--max_samples", type=int, default=None, help="Test images to use (default: all 10,000).")
    parser.add_argument("--batch_size", type=int, default=250)
    args = parser.parse_args(argv)

    model = SoftForImageClassification.from_pretrained(args.model).eval()
    processor = AutoImageProcessor.from_pretrained(args.model)
    dataset = load_fashion_mnist("test", max_samples=args.max_samples)
    images = [np.asarray(image) for image in dataset["image"]]
    labels = torch.tensor(dataset["label"])
    batches = [
        processor(images[start : start + args.batch_size], return_tensors="pt")["pixel_values"]
        for start in range(0, len(images), args.batch_size)
    ]
    float_classes, float_rate = predictions(model, batches)
    quantized = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    num_quantized = sum(isinstance(module, torch.ao.nn.quantized.dynamic.Linear) for module in quantized.modules())
    int8_classes, int8_rate = predictions(quantized, batches)
    result = {
        "model": args.model,
        "num_images": len(labels),
        "linear_layers_quantized": num_quantized,
        "float32_top1_accuracy": (float_classes == labels).float().mean().item(),
        "int8_top1_accuracy": (int8_classes == labels).float().mean().item(),
        "top1_agreement": (float_classes == int8_classes).float().mean().item(),
        "float32_images_per_second": float_rate,
        "int8_images_per_second": int8_rate,
    }
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
