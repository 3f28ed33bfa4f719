# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""Resumable training checkpoints, shared by the tasks: `OUTPUT_DIR/checkpoints/step_N` folders written by
`accelerator.save_state` plus a `training_state.json`, renamed into place only when complete; and the per-step
`train_log.jsonl`, cut back to the resumed step when a run continues."""

from __future__ import annotations

import json
import os
import re
import shutil


TRAIN_LOG_NAME = "train_log.jsonl"
TRAINING_STATE_NAME = "training_state.json"
CHECKPOINTS_DIR_NAME = "checkpoints"
CHECKPOINT_PATTERN = re.compile(r"^step_(\d+)$")


def list_checkpoints(output_dir: str) -> list[str]:
    """Complete checkpoints in `output_dir/checkpoints`, oldest first."""
    folder = os.path.join(output_dir, CHECKPOINTS_DIR_NAME)
    if not os.path.isdir(folder):
        return []
    found = []
    for name in os.listdir(folder):
        match = CHECKPOINT_PATTERN.match(name)
        if match and os.path.isfile(os.path.join(folder, name, TRAINING_STATE_NAME)):
            found.append((int(match.group(1)), os.path.join(folder, name)))
    return [path for _, path in sorted(found)]


def resolve_checkpoint(resume_from_checkpoint: str, output_dir: str) -> str | None:
    """The checkpoint folder to resume from, or None for 'latest' when there is none yet."""
    if resume_from_checkpoint == "latest":
        checkpoints = list_checkpoints(output_dir)
        return checkpoints[-1] if checkpoints else None
    if not os.path.isfile(os.path.join(resume_from_checkpoint, TRAINING_STATE_NAME)):
        raise ValueError(
            f"--resume_from_checkpoint {resume_from_checkpoint!r} is not a checkpoint of this script (no "
            f"{TRAINING_STATE_NAME}); pass a folder OUTPUT_DIR/{CHECKPOINTS_DIR_NAME}/step_N or 'latest'."
        )
    return resume_from_checkpoint


def save_checkpoint(accelerator, output_dir: str, state: dict, total_limit: int | None = None) -> str:
    """`accelerator.save_state` into a temporary folder, then rename it to `checkpoints/step_N` (atomic for readers:
    a folder named step_N is always complete). `state` (JSON) records the position in the data and the run setup."""
    folder = os.path.join(output_dir, CHECKPOINTS_DIR_NAME)
    final = os.path.join(folder, f"step_{state['completed_steps']}")
    staging = os.path.join(folder, f".step_{state['completed_steps']}.tmp")
    if accelerator.is_main_process:
        os.makedirs(folder, exist_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(staging)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        with open(os.path.join(staging, TRAINING_STATE_NAME), "w", encoding="utf-8") as handle:
            json.dump(state, handle, indent=2)
        if os.path.exists(final):
            shutil.rmtree(final)
        os.rename(staging, final)
        if total_limit is not None:
            for old in list_checkpoints(output_dir)[:-total_limit]:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def read_train_log(output_dir: str) -> list[dict]:
    """Per-step records of `train_log.jsonl` (step, epoch, loss, learning_rate, ...), last record per step kept."""
    path = os.path.join(output_dir, TRAIN_LOG_NAME)
    records = {}
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    record = json.loads(line)
                    records[record["step"]] = record
    return [records[step] for step in sorted(records)]


def truncate_train_log(output_dir: str, completed_steps: int) -> None:
    """Drop log records past the resumed step (written by the interrupted run after its last checkpoint)."""
    path = os.path.join(output_dir, TRAIN_LOG_NAME)
    kept = [record for record in read_train_log(output_dir) if record["step"] <= completed_steps]
    with open(path, "w", encoding="utf-8") as handle:
        for record in kept:
            handle.write(json.dumps(record) + "\n")


__all__ = [
    "CHECKPOINTS_DIR_NAME",
    "TRAINING_STATE_NAME",
    "TRAIN_LOG_NAME",
    "list_checkpoints",
    "read_train_log",
    "resolve_checkpoint",
    "save_checkpoint",
    "truncate_train_log",
]
