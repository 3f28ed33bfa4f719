# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""Object detection with a SOFT-Norm backbone: `rtdetr` (RT-DETR construction, batches, COCO box metrics) and
`train` (the training command, `scripts/train_detection.py`)."""
