# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""The Gaussian kernel on queries far from their landmarks, where exp(-||q - l||^2 / 2) underflows.

PyTorch's CPU `exp` (MKL VML) is fast while its results are normal numbers and 10-30x slower on inputs below about
-87.3 (float32), whose results are subnormal or zero. `gaussian_kernel` clamps the exponent at `underflow_exponent`
in the same pass that clamps it at zero, so such entries cost nothing extra. This times, side by side, one stage-1
chunk of SOFT-Tiny (2 heads x 3136 tokens x 49 landmarks, head size 32) for queries of growing spread: the whole
`gaussian_kernel`, and the exponential alone on the same exponents, unclamped (as `torch.exp` would see them) and
clamped.

    python -m soft_hf.benchmarks.kernel_underflow --output benchmarks/results/issue12/kernel_underflow.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..models.soft.soft_attention import gaussian_kernel, underflow_exponent
from .speed import time_side_by_side, write_json_atomically


def measure(spreads: list[float], repeats: int) -> dict:
    generator = torch.Generator().manual_seed(0)
    query_scale = 32**-0.25
    lowest = underflow_exponent(torch.float32)
    cells = {}
    for spread in spreads:
        queries = torch.randn(1, 2, 3136, 32, generator=generator) * spread  # (images, heads, tokens, head_size)
        landmarks = torch.randn(1, 2, 49, 32, generator=generator)  # (images, heads, m, head_size)
        with torch.inference_mode():
            exponent = -0.5 * torch.cdist(queries * query_scale, landmarks).square()  # (1, 2, 3136, 49)
            runs = {
                "gaussian_kernel": lambda: gaussian_kernel(queries, landmarks, query_scale=query_scale),
                "exp_unclamped": lambda: torch.exp(exponent),
                "exp_clamped": lambda: torch.exp(exponent.clamp(lowest, 0.0)),
            }
            timings = time_side_by_side(runs, torch.device("cpu"), repeats, budget_s=30.0)
        cells[str(spread)] = {
            "underflowing_fraction": (exponent < lowest).float().mean().item(),
            "median_ms": {name: 1e3 * timing["median_s"] for name, timing in timings.items()},
        }
        times = ", ".join(f"{name} {value:.3f} ms" for name, value in cells[str(spread)]["median_ms"].items())
        print(f"spread {spread:4.1f}: {cells[str(spread)]['underflowing_fraction']:6.1%} underflow | {times}", flush=True)
    return {"shape": [1, 2, 3136, 49], "threads": torch.get_num_threads(), "cells": cells}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spreads", nargs="+", type=float, default=[1.0, 3.0, 4.5, 6.0, 9.0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--output", type=Path, help="Write the results here as JSON.")
    args = parser.parse_args(argv)
    results = measure(args.spreads, args.repeats)
    if args.output:
        write_json_atomically(results, args.output)
    return results


if __name__ == "__main__":
    main()
