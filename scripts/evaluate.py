#!/usr/bin/env python
# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""Top-1/top-5 and per-class accuracy of a saved SOFT classifier as JSON (see `soft_hf.evaluation`).

python scripts/evaluate.py --model_name_or_path outputs/demo/final            # Fashion-MNIST test set
accelerate launch scripts/evaluate.py --model_name_or_path MODEL --validation_dir DATA/val --train_dir DATA/train
"""

import os
import sys


# scripts/evaluate.py would shadow the `evaluate` library that soft_hf uses: drop this folder from the import path.
sys.path[:] = [
    entry for entry in sys.path if os.path.abspath(entry or ".") != os.path.dirname(os.path.abspath(__file__))
]

from soft_hf.evaluation import build_evaluate_parser, run_evaluation  # noqa: E402


if __name__ == "__main__":
    run_evaluation(build_evaluate_parser().parse_args())
