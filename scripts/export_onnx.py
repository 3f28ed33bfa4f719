#!/usr/bin/env python
# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""The `soft-export-onnx` command: a SOFT classifier or backbone -> an ONNX file with dynamic batch, height and width,
checked against PyTorch eager with ONNX Runtime before it is written (soft_hf.deployment.onnx_export).

python scripts/export_onnx.py --model outputs/soft-tiny --output soft-tiny.onnx [--task backbone] [--opset 20]
"""

import sys

from soft_hf.deployment.onnx_export import main


if __name__ == "__main__":
    sys.exit(main())
