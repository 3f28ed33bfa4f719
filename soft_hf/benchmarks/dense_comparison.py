# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""SOFT-Norm-Tiny against PVTv2-b1 as the backbone of the same dense heads, on the same work (`make demo-dense`).

Generates the Fashion-MNIST scenes (`soft_hf.data.scenes`), then trains, with the same head, data, steps, seed,
batch and image size, from random initialisation:
- RT-DETR (`scripts/train_detection.py`) on SOFT-Norm-Tiny and on PVTv2-b1: COCO box mAP / mAP50 / mAP75;
- UperNet (`scripts/train_segmentation.py`) on SOFT-Norm-Tiny and on PVTv2-b1: mean IoU;
and writes the table (`OUTPUT_DIR/dense_comparison.json`, printed as Markdown). The SOFT detector's and segmenter's
`final/` folders are then loaded in a fresh Python without soft_hf and run through `pipeline(...)` once each.

    python -m soft_hf.benchmarks.dense_comparison --output_dir outputs/dense        # ~20 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path


BACKBONES = (("SOFT-Norm-Tiny", "soft-norm-tiny"), ("PVTv2-b1", "pvt_v2_b1"))


def detection_arguments(args, scenes: Path, backbone: str, output_dir: Path) -> list[str]:
    # fmt: off
    return [
        "--train_dir", str(scenes / "train" / "images"),
        "--train_annotations", str(scenes / "annotations" / "instances_train.json"),
        "--validation_dir", str(scenes / "val" / "images"),
        "--validation_annotations", str(scenes / "annotations" / "instances_val.json"),
        "--backbone", backbone, "--image_size", str(args.image_size),
        "--hidden_size", "128", "--num_queries", "100", "--ffn_dim", "512", "--decoder_layers", "3",
        "--num_denoising", "50", "--drop_path_rate", "0.0",
        "--max_train_steps", str(args.detection_steps), "--per_device_train_batch_size", str(args.batch_size),
        "--per_device_eval_batch_size", "16",
        "--learning_rate", str(args.detection_learning_rate), "--backbone_lr_multiplier", "1.0",
        "--warmup_steps", str(args.detection_steps // 10), "--lr_scheduler_type", "cosine",
        "--num_workers", str(args.num_workers), "--seed", str(args.seed), "--output_dir", str(output_dir),
        "--no_progress_bar", "--logging_steps", "25",
    ]
    # fmt: on


def segmentation_arguments(args, scenes: Path, backbone: str, output_dir: Path) -> list[str]:
    # fmt: off
    return [
        "--train_dir", str(scenes / "train"), "--validation_dir", str(scenes / "val"),
        "--id2label", str(scenes / "id2label.json"),
        "--backbone", backbone, "--crop_size", str(args.image_size), "--eval_size", str(args.image_size),
        "--scale_range", "0.75", "1.5", "--decoder_hidden_size", "128", "--auxiliary_channels", "64",
        "--drop_path_rate", "0.0",
        "--max_train_steps", str(args.segmentation_steps), "--per_device_train_batch_size", str(args.batch_size),
        "--per_device_eval_batch_size", "8",
        "--learning_rate", str(args.segmentation_learning_rate), "--head_lr_multiplier", "1.0",
        "--warmup_steps", str(args.segmentation_steps // 10),
        "--num_workers", str(args.num_workers), "--seed", str(args.seed), "--output_dir", str(output_dir),
        "--no_progress_bar", "--logging_steps", "25",
    ]
    # fmt: on


def markdown_table(rows: list[dict]) -> str:
    lines = [
        "| task | backbone | params (backbone) | box mAP | mAP50 | mAP75 | mIoU | train time |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        metrics = row["metrics"]
        cells = [
            row["task"],
            row["backbone"],
            f"{row['parameters'] / 1e6:.1f}M ({row['backbone_parameters'] / 1e6:.1f}M)",
            *(f"{metrics[key]:.3f}" if key in metrics else "-" for key in ("eval_map", "eval_map_50", "eval_map_75")),
            f"{metrics['eval_mean_iou']:.3f}" if "eval_mean_iou" in metrics else "-",
            f"{row['train_seconds'] / 60:.1f} min",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def count_parameters(folder: Path) -> tuple[int, int]:
    """(all parameters, backbone parameters) of a saved model, read from its safetensors header."""
    from safetensors import safe_open

    sizes = {}
    with safe_open(str(folder / "model.safetensors"), "pt") as handle:
        for name in handle.keys():
            sizes[name] = math.prod(handle.get_slice(name).get_shape())
    return sum(sizes.values()), sum(size for name, size in sizes.items() if ".backbone." in f".{name}")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="outputs/dense")
    parser.add_argument("--num_train", type=int, default=1500)
    parser.add_argument("--num_val", type=int, default=200)
    parser.add_argument("--image_size", type=int, default=128)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--detection_steps", type=int, default=350)
    parser.add_argument("--segmentation_steps", type=int, default=200)
    parser.add_argument("--detection_learning_rate", type=float, default=4e-4)
    parser.add_argument("--segmentation_learning_rate", type=float, default=4e-4)
    parser.add_argument("--num_workers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tasks", nargs="+", default=["detection", "segmentation"])
    parser.add_argument("--skip_pipeline_check", action="store_true")
    args = parser.parse_args(argv)

    from ..data.scenes import generate_scenes
    from ..hub.export import verify_remote_loading
    from ..tasks.detection.train import main as train_detection
    from ..tasks.segmentation.train import main as train_segmentation

    start = time.time()
    output_dir = Path(args.output_dir)
    scenes = output_dir / "scenes"
    if not (scenes / "annotations" / "instances_val.json").is_file():
        generate_scenes(scenes, num_train=args.num_train, num_val=args.num_val, image_size=args.image_size, seed=0)
    rows = []
    for task in args.tasks:
        train, arguments = {
            "detection": (train_detection, detection_arguments),
            "segmentation": (train_segmentation, segmentation_arguments),
        }[task]
        for title, backbone in BACKBONES:
            run_dir = output_dir / f"{task}-{backbone}"
            print(f"\n=== {task}: {title} ===", flush=True)
            run_start = time.time()
            results = train(arguments(args, scenes, backbone, run_dir))
            total, backbone_parameters = count_parameters(run_dir / "final")
            rows.append(
                {
                    "task": task,
                    "backbone": title,
                    "parameters": total,
                    "backbone_parameters": backbone_parameters,
                    "train_seconds": results["train_runtime_s"],
                    "run_seconds": time.time() - run_start,
                    "metrics": {key: value for key, value in results.items() if key.startswith("eval_")},
                    "final": str(run_dir / "final"),
                }
            )
    checks = {}
    if not args.skip_pipeline_check:
        for row in rows:
            if row["backbone"].startswith("SOFT"):
                checks[row["task"]] = verify_remote_loading(row["final"])
    report = {
        "settings": vars(args),
        "rows": rows,
        "fresh_process_pipeline": checks,
        "wall_seconds": time.time() - start,
    }
    (output_dir / "dense_comparison.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print("\n" + markdown_table(rows))
    print(f"\nWall time {report['wall_seconds'] / 60:.1f} min; report in {output_dir / 'dense_comparison.json'}")
    return report


if __name__ == "__main__":
    main()
