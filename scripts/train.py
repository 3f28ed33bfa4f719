#!/usr/bin/env python
# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""Train or fine-tune a SOFT image classifier with the official recipe (see `soft_hf.training`).

accelerate launch scripts/train.py --train_dir DATA/train --validation_dir DATA/val --output_dir runs/soft-tiny
python scripts/train.py --help
"""

import os
import sys


# scripts/evaluate.py would shadow the `evaluate` library that soft_hf uses: drop this folder from the import path.
sys.path[:] = [
    entry for entry in sys.path if os.path.abspath(entry or ".") != os.path.dirname(os.path.abspath(__file__))
]

from soft_hf.training import main  # noqa: E402


if __name__ == "__main__":
    main()
