#!/usr/bin/env python
# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""Train RT-DETR with a SOFT-Norm backbone on a COCO-format detection dataset (soft_hf.tasks.detection.train).

python scripts/train_detection.py --train_dir scenes/train/images --train_annotations scenes/annotations/instances_train.json \
    --validation_dir scenes/val/images --validation_annotations scenes/annotations/instances_val.json --output_dir outputs/det
accelerate launch scripts/train_detection.py ...
"""

from soft_hf.tasks.detection.train import main


if __name__ == "__main__":
    main()
