# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""The state of a training run: where it writes (`RunLayout`), where it is and what it measured (`TrainingProgress`,
saved in every checkpoint), and the tallies of one optimizer step (`StepAccumulator`)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import torch

from ..checkpoints import TRAIN_LOG_NAME


@dataclass
class RunLayout:
    """Where a run writes: exports, checkpoints, logs."""

    output_dir: str

    @property
    def final(self) -> str:
        return os.path.join(self.output_dir, "final")

    @property
    def best(self) -> str:
        return os.path.join(self.output_dir, "best")

    @property
    def ema(self) -> str:
        return os.path.join(self.output_dir, "ema")

    @property
    def train_log(self) -> str:
        return os.path.join(self.output_dir, TRAIN_LOG_NAME)


@dataclass
class TrainingProgress:
    """Where a run is and what it measured; saved as JSON in every checkpoint (`training_state.json`)."""

    completed_steps: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0
    epoch_finished: bool = False
    history: list = field(default_factory=list)
    best: dict = field(default_factory=lambda: {"top1_accuracy": None, "epoch": None, "step": None})
    training_seconds: float = 0.0
    train_images: int = 0
    skipped_train_images: int = 0

    @property
    def images_per_second(self) -> float:
        return self.train_images / self.training_seconds if self.training_seconds > 0 else float("nan")

    def improves_best(self, top1_accuracy: float) -> bool:
        return self.best["top1_accuracy"] is None or top1_accuracy > self.best["top1_accuracy"]


class StepAccumulator:
    """Loss, images and skipped images of the micro-batches of one optimizer step, and its duration."""

    def __init__(self, device: torch.device):
        self.loss = torch.zeros((), device=device)
        self.images = torch.zeros((), device=device, dtype=torch.long)
        self.skipped = torch.zeros((), device=device, dtype=torch.long)
        self.micro_batches = 0  # the last step of an epoch may accumulate fewer batches
        self.restart_clock()

    def add(self, loss: torch.Tensor, images: int) -> None:
        self.loss += loss
        self.images += images
        self.micro_batches += 1

    def restart_clock(self) -> None:
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start


__all__ = ["RunLayout", "StepAccumulator", "TrainingProgress"]
