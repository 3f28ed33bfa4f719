#!/usr/bin/env python
# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""The `soft-evaluate` command: top-1/top-5 and per-class accuracy of a saved SOFT classifier as JSON
(soft_hf.tasks.classification.evaluation).

python scripts/evaluate_model.py --model_name_or_path outputs/demo/final            # Fashion-MNIST test set
accelerate launch scripts/evaluate_model.py --model_name_or_path MODEL --validation_dir DATA/val --train_dir DATA/train
"""

from soft_hf.tasks.classification.evaluation import main


if __name__ == "__main__":
    main()
