# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""Top-1 agreement of a SOFT classifier under CPU bfloat16 autocast with its float32 self (issue 12).

`torch.autocast("cpu", dtype=torch.bfloat16)` runs the linear layers and convolutions in bfloat16; SOFT keeps the
Gaussian kernel, the Newton-Raphson (or Cholesky) inverse and the products with the landmark operator in float32
inside (`SoftSelfAttention.forward`, tested in tests/test_bf16_autocast.py). This script measures what autocast
changes on the demo model's Fashion-MNIST test set: accuracy of both, the share of images whose top-1 class is
unchanged, and images per second of both on this machine (shared with `quantization_agreement`:
`soft_hf.benchmarks.agreement`). `soft-evaluate --mixed_precision bf16 --cpu` gives the same bfloat16 accuracy
through the evaluation code (Accelerate's CPU autocast).

    python -m soft_hf.benchmarks.bf16_agreement --model outputs/demo/final [--max_samples N] [--batch_size 250]
"""

from __future__ import annotations

import argparse
import json

import torch

from .agreement import add_agreement_arguments, agreement_report, load_model_and_test_batches, predictions


def bfloat16_autocast():
    return torch.autocast("cpu", dtype=torch.bfloat16)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_agreement_arguments(parser)
    args = parser.parse_args(argv)

    model, batches, labels = load_model_and_test_batches(args)
    float_run = predictions(model, batches)
    result = {"model": args.model, "autocast": "torch.autocast('cpu', dtype=torch.bfloat16)"}
    result.update(agreement_report(labels, float_run, predictions(model, batches, bfloat16_autocast), "bf16"))
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
