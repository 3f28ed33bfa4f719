"""Top-1 agreement of a dynamically int8-quantized SOFT classifier with its float32 self (issue 15).

`torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)` replaces every linear layer of a
SOFT model (the model calls replaced modules instead of its fast paths). This script measures what that costs on
the demo model's Fashion-MNIST test set: accuracy of both, the share of images whose top-1 class is unchanged, and
images per second of both on this machine (shared with `bf16_agreement`: `soft_hf.benchmarks.agreement`).

    python -m soft_hf.benchmarks.quantization_agreement --model outputs/demo/final [--max_samples N] [--batch_size 250]
"""

from __future__ import annotations

import argparse
import json

import torch
from torch import nn

from .agreement import add_agreement_arguments, agreement_report, load_model_and_test_batches, predictions


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_agreement_arguments(parser)
    args = parser.parse_args(argv)

    model, batches, labels = load_model_and_test_batches(args)
    float_run = predictions(model, batches)
    quantized = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    num_quantized = sum(isinstance(module, torch.ao.nn.quantized.dynamic.Linear) for module in quantized.modules())
    result = {"model": args.model, "linear_layers_quantized": num_quantized}
    result.update(agreement_report(labels, float_run, predictions(quantized, batches), "int8"))
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
