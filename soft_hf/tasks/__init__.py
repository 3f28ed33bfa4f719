# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""What one does with a SOFT model, one sub-package per task: `classification` (training with the official recipe,
evaluation, prediction) and `segmentation` (UperNet). Tasks import the model, data, hub and conversion packages;
nothing else in soft_hf imports a task, and tasks do not import each other. `checkpoints` holds the resumable
training checkpoints every task writes."""
