# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""Exactness of ONNX exports (issue 12): one file per model, exported by `soft_hf.deployment.export_onnx` with dynamic
batch, height and width, run by ONNX Runtime against PyTorch eager at batch 1 and 8 and at 224x224, 288x320 and
512x512 (random weights, seed 0, 1000 classes; SOFT-Tiny and SOFT-Norm-Tiny under the official landmark rule).
Writes `benchmarks/results/onnx_exactness.json` (the table in docs/performance.md, "ONNX export").

    python -m soft_hf.benchmarks.onnx_exactness [--presets soft-tiny soft-norm-tiny] [--output-dir benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from ..deployment.onnx_export import export_onnx, onnxruntime_session
from ..models.soft.configuration_soft import SoftConfig
from ..models.soft.modeling_soft import SoftForImageClassification


BATCH_SIZES = (1, 8)
SIZES = ((224, 224), (288, 320), (512, 512))


def exactness(preset: str, folder: Path) -> dict:
    """Max |ONNX Runtime - eager| of the logits per batch and size for one exported file of `preset`."""
    torch.manual_seed(0)
    model = SoftForImageClassification(SoftConfig.from_preset(preset, num_labels=1000)).eval()
    path = folder / f"{preset}.onnx"
    report = export_onnx(model, path)
    session = onnxruntime_session(path)
    generator = torch.Generator().manual_seed(1)
    cells = {}
    for batch in BATCH_SIZES:
        for height, width in SIZES:
            pixel_values = torch.randn(batch, 3, height, width, generator=generator)
            with torch.no_grad():
                expected = model(pixel_values).logits
            actual = torch.from_numpy(session.run(None, {"pixel_values": pixel_values.numpy()})[0])
            cells[f"batch {batch}, {height}x{width}"] = {
                "max_abs_diff": float((actual - expected).abs().max()),
                "max_abs_logit": float(expected.abs().max()),
            }
            print(f"{preset:16s} batch {batch} {height}x{width}: {cells[f'batch {batch}, {height}x{width}']}", flush=True)
    return {"opset": report.opset, "export_checks": report.checks, "cells": cells}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["soft-tiny", "soft-norm-tiny"])
    parser.add_argument("--output-dir", default=str(Path("benchmarks") / "results"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="soft-onnx-exactness-") as folder:
        results = {preset: exactness(preset, Path(folder)) for preset in args.presets}
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "onnx_exactness.json").write_text(json.dumps(results, indent=1) + "\n")
    return results


if __name__ == "__main__":
    main()
