# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""Peak memory of a SoftBackbone forward pass at segmentation resolutions, per pixel.

With `max_landmarks` set, every SOFT stage uses at most that many landmarks, so the kernel matrices are
(tokens x m) and memory grows linearly with the number of pixels: the "bytes per pixel" column stays flat. With the
official rule (m = HW / r^2) it grows with the pixel count.

Each measurement runs in a fresh process. CPU: growth of the peak resident set (ru_maxrss) over a warm-up pass at
64x64, i.e. activations and workspace, not weights. CUDA: torch.cuda.max_memory_allocated minus the weights.

    python -m soft_hf.benchmarks.backbone_memory                        # soft-norm-tiny, m <= 64 vs official rule
    python -m soft_hf.benchmarks.backbone_memory --sizes 512x512 1024x1024 1024x2048 --max_landmarks 64 --device cuda --train
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, resource, sys
import torch
from soft_hf import SoftBackbone, SoftConfig

preset, height, width, max_landmarks, device, train = sys.argv[1:7]
max_landmarks = None if max_landmarks == "none" else int(max_landmarks)
train = train == "1"
torch.manual_seed(0)
config = SoftConfig.from_preset(
    preset, max_landmarks=max_landmarks, out_features=["stage1", "stage2", "stage3", "stage4"]
)
model = SoftBackbone(config).to(device).train(train)


def run(h, w):
    pixel_values = torch.randn(1, 3, h, w, device=device)
    with torch.set_grad_enabled(train):
        maps = model(pixel_values).feature_maps
        if train:
            sum(feature_map.float().square().mean() for feature_map in maps).backward()
            model.zero_grad(set_to_none=True)
    del maps


run(64, 64)
if device == "cuda":
    torch.cuda.synchronize()
    weights = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    run(int(height), int(width))
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - weights
else:
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    run(int(height), int(width))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - baseline
print(json.dumps({"peak_bytes": int(peak)}))
"""


def measure(preset: str, height: int, width: int, max_landmarks: int | None, device: str, train: bool) -> int:
    environment = dict(os.environ, HF_HUB_OFFLINE="1")
    result = subprocess.run(
        [sys.executable, "-c", CHILD, preset, str(height), str(width), str(max_landmarks or "none"), device]
        + [str(int(train))],
        capture_output=True,
        text=True,
        env=environment,
    )
    if result.returncode != 0:
        raise RuntimeError(f"measurement at {height}x{width} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])["peak_bytes"]


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="soft-norm-tiny")
    parser.add_argument("--sizes", nargs="+", default=["512x512", "1024x1024", "1024x2048"], help="HxW inputs.")
    parser.add_argument("--max_landmarks", type=int, default=64)
    parser.add_argument(
        "--official_sizes", nargs="*", default=["512x512", "1024x1024"], help="Sizes also run without a landmark bound."
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--train", action="store_true", help="Forward and backward instead of inference.")
    parser.add_argument("--json", help="Also write the rows to this file.")
    args = parser.parse_args(argv)

    rows = []
    runs = [(size, args.max_landmarks) for size in args.sizes] + [(size, None) for size in args.official_sizes]
    print(f"{args.preset}, batch 1, {'forward+backward' if args.train else 'inference'} on {args.device}")
    print(f"{'input':>10} {'max_landmarks':>14} {'peak MiB':>10} {'bytes/pixel':>12}")
    for size, max_landmarks in runs:
        height, width = (int(value) for value in size.lower().split("x"))
        peak = measure(args.preset, height, width, max_landmarks, args.device, args.train)
        row = {
            "height": height,
            "width": width,
            "max_landmarks": max_landmarks,
            "peak_bytes": peak,
            "bytes_per_pixel": peak / (height * width),
        }
        rows.append(row)
        print(f"{size:>10} {str(max_landmarks):>14} {peak / 2**20:>10.1f} {row['bytes_per_pixel']:>12.0f}", flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=2)
    return rows


if __name__ == "__main__":
    main()
