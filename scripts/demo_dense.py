#!/usr/bin/env python
# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""SOFT-Norm-Tiny vs PVTv2-b1 as the backbone of RT-DETR and UperNet on the Fashion-MNIST scenes
(soft_hf.benchmarks.dense_comparison; `make demo-dense`).

python scripts/demo_dense.py [--output_dir outputs/dense]
"""

from soft_hf.benchmarks.dense_comparison import main


if __name__ == "__main__":
    main()
