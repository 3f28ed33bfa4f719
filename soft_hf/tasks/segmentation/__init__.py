# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""Semantic segmentation with a SOFT / SOFT-Norm backbone: `upernet` (UperNet construction, image-folder datasets
with their augmentations, batching, prediction and mean IoU) and `train` (the training command,
`scripts/train_segmentation.py`)."""
