# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""Command-line flags that select the data, shared by `soft-train` and `soft-evaluate`, and the data-loader worker
count. Flag names follow Transformers' image-classification example."""

from __future__ import annotations

import argparse
import os

from .classification import DEFAULT_FASHION_MNIST_DIR


def add_data_arguments(parser: argparse.ArgumentParser, evaluation_only: bool = False) -> None:
    """Data-source flags shared by training and evaluation (names follow Transformers' image-classification example)."""
    group = parser.add_argument_group("data")
    group.add_argument("--dataset_name", default=None, help="Hub dataset id or local dataset script/folder.")
    group.add_argument("--dataset_config_name", default=None)
    group.add_argument("--train_dir", default=None, help="Image folder with one sub-folder per class.")
    group.add_argument("--validation_dir", default=None, help="Image folder with one sub-folder per class.")
    group.add_argument(
        "--fashion_mnist_dir",
        default=None,
        help=f"idx files of the offline default, Fashion-MNIST (default {DEFAULT_FASHION_MNIST_DIR}, where the Debian "
        "package dataset-fashion-mnist installs them). Used when neither --dataset_name nor --train_dir is given.",
    )
    group.add_argument("--streaming", action="store_true", help="Stream a Hub dataset instead of downloading it.")
    if not evaluation_only:
        group.add_argument(
            "--shuffle_buffer_size", type=int, default=10_000, help="Shuffle buffer of a streamed training split."
        )
    group.add_argument("--image_column_name", default="image")
    group.add_argument("--label_column_name", default="label")
    group.add_argument(
        "--train_val_split",
        type=float,
        default=0.15,
        help="Fraction of the training split held out for validation when the data has no validation split.",
    )
    if not evaluation_only:
        group.add_argument("--max_train_samples", type=int, default=None, help="Train on a seeded random subset.")
    group.add_argument("--max_eval_samples", type=int, default=None, help="Evaluate on a seeded random subset.")
    group.add_argument("--cache_dir", default=None, help="Cache folder of `datasets`/Transformers downloads.")
    group.add_argument(
        "--num_workers",
        type=int,
        default=None,
        help="Data-loader workers per process (default: CPUs per process - 1).",
    )
    if evaluation_only:
        group.add_argument("--seed", type=int, default=42, help="Seed of the subset selection.")


def default_num_workers(accelerator) -> int:
    """Data-loader workers per process: the CPUs of this machine shared by its processes, minus one for the
    training process itself, at most 8."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    local_processes = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", accelerator.num_processes)))
    return max(0, min(8, cpus // local_processes - 1))


__all__ = ["add_data_arguments", "default_num_workers"]
