#!/usr/bin/env python
# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""The `soft-train` command for `accelerate launch scripts/train.py ...`: train or fine-tune a SOFT image classifier
with the official recipe (soft_hf.tasks.classification.trainer).

accelerate launch scripts/train.py --train_dir DATA/train --validation_dir DATA/val --output_dir runs/soft-tiny
python scripts/train.py --help
"""

from soft_hf.tasks.classification.trainer import main


if __name__ == "__main__":
    main()
