#!/usr/bin/env python
# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""Write the Fashion-MNIST scenes dataset: COCO detection annotations and semantic masks (soft_hf.data.scenes).

python scripts/make_scenes.py --output_dir data/scenes [--num_train 2000] [--num_val 300] [--image_size 160] [--seed 0]
"""

from soft_hf.data.scenes import main


if __name__ == "__main__":
    main()
