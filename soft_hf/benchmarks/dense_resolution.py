# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""High-resolution inference of whole detectors: time and peak memory per pixel.

RT-DETR on SOFT-Norm-Tiny (official landmark rule, and `max_landmarks`) against RT-DETR on Transformers' PVTv2-b1,
same head (the demo's: width 128, 100 queries, 3 decoder layers, 10 classes), random weights, batch 1, float32.
Each (model, size) runs in a fresh process: a warm-up pass at 128x128, then `--repeats` passes at the size; time is
the median pass, memory the growth of the peak resident set (CPU, `ru_maxrss`) over the warm-up, i.e. activations and
workspace, not weights (CUDA: `max_memory_allocated` minus the weights). The models alternate size by size.

    python -m soft_hf.benchmarks.dense_resolution                       # 1024x1024 and 1024x2048, CPU
    python -m soft_hf.benchmarks.dense_resolution --device cuda --sizes 1024x1024 1024x2048 2048x2048
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path


CHILD = r"""
import json, resource, statistics, sys, time
import torch
from soft_hf.tasks.detection.rtdetr import build_detector

backbone, max_landmarks, height, width, device, repeats = sys.argv[1:7]
max_landmarks = None if max_landmarks == "none" else int(max_landmarks)
torch.manual_seed(0)
model = build_detector(
    backbone, id2label={index: str(index) for index in range(10)}, max_landmarks=max_landmarks, hidden_size=128,
    num_queries=100, encoder_ffn_dim=512, decoder_ffn_dim=512, decoder_layers=3, num_denoising=0,
).to(device).eval()


def run(h, w):
    pixel_values = torch.randn(1, 3, h, w, device=device)
    with torch.inference_mode():
        output = model(pixel_values=pixel_values)
    if device == "cuda":
        torch.cuda.synchronize()
    return output


run(128, 128)
if device == "cuda":
    torch.cuda.synchronize()
    weights = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
else:
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
times = []
for _ in range(int(repeats)):
    start = time.perf_counter()
    output = run(int(height), int(width))
    times.append(time.perf_counter() - start)
    finite = bool(torch.isfinite(output.logits).all() and torch.isfinite(output.pred_boxes).all())
    del output
if device == "cuda":
    peak = torch.cuda.max_memory_allocated() - weights
else:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - baseline
print(json.dumps({"seconds": statistics.median(times), "times": times, "peak_bytes": int(peak), "finite": finite}))
"""

MODELS = (
    ("SOFT-Norm-Tiny, official rule", "soft-norm-tiny", None),
    ("SOFT-Norm-Tiny, max_landmarks", "soft-norm-tiny", "bounded"),
    ("PVTv2-b1", "pvt_v2_b1", None),
)


def measure(backbone: str, max_landmarks: int | None, height: int, width: int, device: str, repeats: int) -> dict:
    environment = dict(os.environ, HF_HUB_OFFLINE="1")
    command = [sys.executable, "-c", CHILD, backbone, str(max_landmarks or "none"), str(height), str(width), device]
    result = subprocess.run(command + [str(repeats)], capture_output=True, text=True, env=environment)
    if result.returncode != 0:
        return {"error": result.stderr.strip().splitlines()[-1] if result.stderr.strip() else f"exit {result.returncode}"}
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["1024x1024", "1024x2048"], help="HxW inputs.")
    parser.add_argument("--max_landmarks", type=int, default=64, help="The bound of the bounded SOFT rows.")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--output", default="benchmarks/results/dense_resolution_{device}.json")
    args = parser.parse_args(argv)

    rows = []
    print(f"RT-DETR detectors, batch 1, float32 inference on {args.device}, median of {args.repeats}")
    print(f"{'input':>10} {'backbone':>32} {'seconds':>9} {'ns/pixel':>9} {'peak MiB':>9} {'bytes/pixel':>12}")
    for size in args.sizes:
        height, width = (int(value) for value in size.lower().split("x"))
        for name, backbone, bound in MODELS:
            max_landmarks = args.max_landmarks if bound else None
            result = measure(backbone, max_landmarks, height, width, args.device, args.repeats)
            row = {"model": name, "backbone": backbone, "max_landmarks": max_landmarks, "height": height,
                   "width": width, **result}
            if "error" not in result:
                pixels = height * width
                row["ns_per_pixel"] = result["seconds"] / pixels * 1e9
                row["bytes_per_pixel"] = result["peak_bytes"] / pixels
                print(
                    f"{size:>10} {name:>32} {result['seconds']:>9.2f} {row['ns_per_pixel']:>9.0f} "
                    f"{result['peak_bytes'] / 2**20:>9.0f} {row['bytes_per_pixel']:>12.0f}",
                    flush=True,
                )
            else:
                print(f"{size:>10} {name:>32} failed: {result['error']}", flush=True)
            rows.append(row)
    for size in args.sizes:
        height, width = (int(value) for value in size.lower().split("x"))
        by_name = {row["model"]: row for row in rows if (row["height"], row["width"]) == (height, width)}
        peer = by_name.get("PVTv2-b1", {})
        for name in ("SOFT-Norm-Tiny, official rule", "SOFT-Norm-Tiny, max_landmarks"):
            soft = by_name.get(name, {})
            if "seconds" in soft and "seconds" in peer:
                soft["time_vs_pvt_v2_b1"] = soft["seconds"] / peer["seconds"]
                soft["memory_vs_pvt_v2_b1"] = soft["peak_bytes"] / max(peer["peak_bytes"], 1)
    report = {"device": args.device, "repeats": args.repeats, "rows": rows}
    output = Path(args.output.format(device=args.device))
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"Wrote {output}")
    return report


if __name__ == "__main__":
    main()
