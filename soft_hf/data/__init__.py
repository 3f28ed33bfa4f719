# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""Data for the tasks (does not travel with checkpoints; imports only `soft_hf.models`):
- `classification`: image-classification sources (offline Fashion-MNIST, image folders, Hub datasets), datasets with
  reproducible augmentation, transforms and batching;
- `sampling`: per-sample augmentation seeds and the epoch-seeded sampler every task uses;
- `arguments`: the data flags of the command-line tools;
- `segmentation`: label masks and (image, mask) datasets from image folders, ADE20K's release and Hub datasets;
- `detection`: COCO detection files and Hub detection datasets, with a pycocotools ground truth;
- `scenes`: the offline Fashion-MNIST scenes dataset for detection and segmentation (`soft-make-scenes`).
"""
