# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""Measurements behind the figures of docs/performance.md and docs/exactness.md; each module runs with
`python -m soft_hf.benchmarks.<name>` and writes under `benchmarks/results/` of the current folder:
- `speed`: `soft-benchmark` (attention, whole models, inverse, training step, efficiency);
- `official_baseline`: a transcription of the official forward pass, the speed baseline;
- `official_parity`: logits and gradients against the official test vectors;
- `landmark_accuracy`: accuracy effect of bounded landmarks;
- `backbone_memory`: peak memory of SoftBackbone at segmentation resolutions;
- `quantization_agreement`: int8 dynamic quantization against float32;
- `bf16_agreement`: CPU bfloat16 autocast against float32 (both built on `agreement`);
- `onnx_exactness`: ONNX Runtime against eager for exported SOFT-Tiny and SOFT-Norm-Tiny at several batches and sizes.
Benchmarks may import every other part of soft_hf; nothing imports them."""
