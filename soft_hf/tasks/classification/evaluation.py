# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""Evaluation of SOFT image classifiers: top-1/top-5 and per-class accuracy over a data loader, on one or many
processes, and the `soft-evaluate` command (`scripts/evaluate_model.py`) built on it.

Every process evaluates its shard; `Accelerator.gather_for_metrics` collects predictions and drops the samples
Accelerate repeats to even out the last batch, so each image counts exactly once. Unreadable images (label -1, see
`soft_hf.data.classification`) are counted and left out.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ...data.arguments import add_data_arguments, default_num_workers
from ...data.classification import (
    UNREADABLE_LABEL,
    ImageClassificationDataset,
    StreamingImageClassificationDataset,
    build_eval_transform,
    collate_image_classification,
    data_source_arguments,
    label_mapping_to_model,
    load_image_classification_data,
)
from ...models.soft.image_processing_soft import SoftImageProcessor
from .metrics import top_k_accuracy_metric


logger = logging.getLogger(__name__)


@torch.no_grad()
def evaluate_model(
    model,
    dataloader,
    accelerator,
    label_names: Sequence[str],
    *,
    top_k: Sequence[int] = (1, 5),
    predictions_path: str | os.PathLike | None = None,
) -> dict:
    """Top-k and per-class accuracy, mean cross-entropy, sample counts and throughput of `model` on `dataloader`.

    Args:
        model: an image classifier returning `.logits` (prepared by Accelerate or not, e.g. an EMA copy).
        dataloader: a loader prepared by `accelerator`, yielding `pixel_values`, `labels` and `indices`.
        accelerator: the `accelerate.Accelerator` of the run.
        label_names: class names, index = class id of the model.
        predictions_path: if given, the main process writes one JSON line per evaluated sample
            (`index`, `label`, `top_k` predicted ids) there.

    Returns:
        `{"top1_accuracy", "top5_accuracy", "loss", "num_samples", "num_skipped", "per_class_accuracy",
        "samples_per_second", "runtime_seconds"}`; identical on every process.
    """
    was_training = model.training
    model.eval()
    num_labels = len(label_names)
    k = min(max(top_k), num_labels)
    metric = top_k_accuracy_metric()
    loss_sum = torch.zeros((), dtype=torch.float64)
    num_skipped = 0
    records = []
    start = time.perf_counter()
    for batch in dataloader:
        with accelerator.autocast():
            logits = model(pixel_values=batch["pixel_values"]).logits  # (batch, num_labels)
        logits = logits.float()
        if logits.shape[-1] != num_labels:
            raise ValueError(
                f"The model predicts {logits.shape[-1]} classes but the data has {num_labels}; evaluate on data with the "
                "model's label set."
            )
        labels = batch["labels"]
        losses = F.cross_entropy(logits, labels.clamp_min(0), reduction="none")  # (batch,)
        top_predictions = logits.topk(k, dim=-1).indices  # (batch, k)
        top_predictions, labels, indices, losses = accelerator.gather_for_metrics(
            (top_predictions, labels, batch["indices"], losses)
        )
        valid = labels != UNREADABLE_LABEL
        num_skipped += int((~valid).sum())
        top_predictions, labels, indices, losses = top_predictions[valid], labels[valid], indices[valid], losses[valid]
        loss_sum += losses.double().sum().cpu()
        metric.add_batch(predictions=top_predictions.cpu().tolist(), references=labels.cpu().tolist())
        if predictions_path is not None:
            records.extend(
                {"index": int(index), "label": int(label), "top_k": prediction}
                for index, label, prediction in zip(indices.tolist(), labels.tolist(), top_predictions.tolist())
            )
    runtime = time.perf_counter() - start
    results = metric.compute(top_k=tuple(top_k), label_names=list(label_names))
    results["loss"] = float(loss_sum) / results["num_samples"]
    results["num_skipped"] = num_skipped
    results["runtime_seconds"] = runtime
    results["samples_per_second"] = (results["num_samples"] + num_skipped) / runtime if runtime > 0 else float("nan")
    if num_skipped:
        logger.warning("Evaluation skipped %d unreadable image(s).", num_skipped)
    if predictions_path is not None and accelerator.is_main_process:
        with open(predictions_path, "w", encoding="utf-8") as handle:
            for record in sorted(records, key=lambda record: record["index"]):
                handle.write(json.dumps(record) + "\n")
    model.train(was_training)
    return results


def metrics_for_card(results: dict, prefix: str = "eval_") -> dict[str, float]:
    """The scalar numbers of `evaluate_model`'s results, prefixed (for model cards and trackers)."""
    keys = ("top1_accuracy", "top5_accuracy", "loss", "num_samples")
    return {f"{prefix}{key}": results[key] for key in keys if key in results}


# ----------------------------------------------------------------------------------------------------------------
# soft-evaluate
# ----------------------------------------------------------------------------------------------------------------


def build_evaluate_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Top-1/top-5 and per-class accuracy of a saved SOFT classifier, printed as JSON. "
        "Runs on one process or under `accelerate launch` (every image is counted once)."
    )
    parser.add_argument("--model_name_or_path", required=True, help="Exported folder or Hub id of a SOFT classifier.")
    parser.add_argument(
        "--split",
        default="validation",
        help="Split to evaluate (default: validation; Fashion-MNIST's test set is 'validation' and 'test').",
    )
    parser.add_argument("--per_device_eval_batch_size", type=int, default=128)
    parser.add_argument("--output_file", default=None, help="Also write the JSON results to this file.")
    parser.add_argument("--save_predictions", default=None, help="Write per-sample predictions (JSON lines) here.")
    parser.add_argument(
        "--trust_remote_code",
        action="store_true",
        help="Load the model with its own code files (needed for Hub repositories when soft_hf is not imported).",
    )
    parser.add_argument("--mixed_precision", choices=("no", "fp16", "bf16"), default=None)
    parser.add_argument("--cpu", action="store_true", help="Run on the CPU even if accelerators are present.")
    add_data_arguments(parser, evaluation_only=True)
    return parser


def run_evaluation(args: argparse.Namespace) -> dict:
    """Load a saved model and its image processor, evaluate it on the chosen data and split, return the results."""
    from accelerate import Accelerator
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    accelerator = Accelerator(cpu=args.cpu, mixed_precision=args.mixed_precision)
    model = AutoModelForImageClassification.from_pretrained(
        args.model_name_or_path, trust_remote_code=args.trust_remote_code
    )
    try:
        image_processor = AutoImageProcessor.from_pretrained(
            args.model_name_or_path, trust_remote_code=args.trust_remote_code
        )
    except (OSError, ValueError) as error:
        logger.warning(
            "No image processor with %s (%s); using the default SoftImageProcessor.", args.model_name_or_path, error
        )
        image_processor = SoftImageProcessor()

    with accelerator.main_process_first():
        data = load_image_classification_data(**data_source_arguments(args), load_train=args.split == "train")
    split = data.split(args.split)
    if args.split == "train" and args.max_eval_samples is not None and not data.streaming:
        split = split.shuffle(seed=args.seed).select(range(min(args.max_eval_samples, len(split))))
    label_mapping = label_mapping_to_model(data.label_names, model.config.id2label, for_training=False)
    label_names = [model.config.id2label[index] for index in sorted(model.config.id2label)]
    dataset_class = StreamingImageClassificationDataset if data.streaming else ImageClassificationDataset
    dataset = dataset_class(
        split,
        build_eval_transform(image_processor),
        image_column=data.image_column,
        label_column=data.label_column,
        label_mapping=label_mapping,
        string_labels=data.string_labels,
        seed=args.seed,
    )
    num_workers = args.num_workers if args.num_workers is not None else default_num_workers(accelerator)
    dataloader = torch.utils.data.DataLoader(
        dataset,
        batch_size=args.per_device_eval_batch_size,
        shuffle=False,
        collate_fn=collate_image_classification,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(args.seed),
    )
    model, dataloader = accelerator.prepare(model, dataloader)
    results = evaluate_model(model, dataloader, accelerator, label_names, predictions_path=args.save_predictions)
    results.update(
        {
            "model": str(args.model_name_or_path),
            "data": data.source,
            "split": args.split,
            "num_processes": accelerator.num_processes,
        }
    )
    if accelerator.is_main_process:
        text = json.dumps(results, indent=2)
        print(text)
        if args.output_file:
            with open(args.output_file, "w", encoding="utf-8") as handle:
                handle.write(text + "\n")
    accelerator.end_training()
    return results


def main(argv: list[str] | None = None) -> None:
    """`soft-evaluate` and `scripts/evaluate_model.py`: the results are printed as JSON."""
    run_evaluation(build_evaluate_parser().parse_args(argv))


__all__ = ["build_evaluate_parser", "evaluate_model", "main", "metrics_for_card", "run_evaluation"]


if __name__ == "__main__":
    main()
