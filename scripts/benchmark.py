#!/usr/bin/env python
# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""The `soft-benchmark` command: speed and memory of SOFT against the official forward pass and its peers
(soft_hf.benchmarks.speed; `make benchmark`).

python scripts/benchmark.py [--quick] [--threads 1] [--device cuda --dtype bfloat16]
"""

from soft_hf.benchmarks.speed import main


if __name__ == "__main__":
    main()
