# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""Image classification with SOFT: training with the official recipe (`soft-train`), evaluation (`soft-evaluate`)
and prediction (`soft-predict`).

- `recipe`: the official ImageNet recipe per preset, the optimizer, schedule, batch augmentation and loss;
- `arguments`: the flags of `soft-train`;
- `wiring`: model, data loaders and optimisation of a run (`TrainerSetup`);
- `trainer`: the loop, resuming, `SoftTrainer`, `train`, `main`;
- `reports`: validation, the best/final/EMA exports and `all_results.json` (`TrainerReports`);
- `progress`: the run's state saved in checkpoints;
- `evaluation`, `metrics`: top-k and per-class accuracy (an `evaluate` metric);
- `predict`: classification through a checkpoint's own code (imports nothing from soft_hf unless asked).
"""
