#!/usr/bin/env python
# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""Train UperNet with a SOFT / SOFT-Norm backbone on an image-folder segmentation dataset
(soft_hf.tasks.segmentation.train).

python scripts/train_segmentation.py --train_dir data/train --output_dir outputs/seg
accelerate launch scripts/train_segmentation.py ...
"""

from soft_hf.tasks.segmentation.train import main


if __name__ == "__main__":
    main()
