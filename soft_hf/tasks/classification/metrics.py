# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""Top-k and per-class accuracy as a Hugging Face `evaluate` metric.

`evaluate.load("accuracy")` fetches its script from the Hub, which offline machines cannot do, and has no top-5;
`TopKAccuracy` is an `evaluate.Metric` defined here, so it works offline and keeps `evaluate`'s interface
(`add_batch`, `compute`). Predictions are the model's top-k class indices, best first.

This module does not travel with checkpoints.
"""

from __future__ import annotations

from collections.abc import Sequence

import datasets
import evaluate
import numpy as np


_DESCRIPTION = """Top-k accuracy (the reference is among the first k predicted classes) for k in `top_k`, and the
top-1 accuracy of every class (None for classes without samples)."""

_INPUTS = """
Args:
    predictions (`list[list[int]]`): per sample, predicted class indices sorted by decreasing score (at least
        max(top_k) of them, or all classes if there are fewer).
    references (`list[int]`): per sample, the true class index.
    top_k (`Sequence[int]`, defaults to (1, 5)): the k values to report, capped at the number of predictions.
    label_names (`Sequence[str]`, *optional*): class names; enables `per_class_accuracy` keyed by name.
Returns:
    `top{k}_accuracy` for each k, `num_samples`, and `per_class_accuracy` when `label_names` is given.
"""


class TopKAccuracy(evaluate.Metric):
    """`evaluate` metric for top-1/top-5 and per-class accuracy of image classifiers."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_INPUTS,
            features=datasets.Features(
                {"predictions": datasets.Sequence(datasets.Value("int64")), "references": datasets.Value("int64")}
            ),
        )

    def _compute(
        self,
        predictions: list[list[int]],
        references: list[int],
        top_k: Sequence[int] = (1, 5),
        label_names: Sequence[str] | None = None,
    ) -> dict:
        references = np.asarray(references, dtype=np.int64)  # (num_samples,)
        if len(references) == 0:
            raise ValueError("No samples to compute accuracy on: every sample was skipped or the data is empty.")
        predictions = np.asarray(predictions, dtype=np.int64)  # (num_samples, k)
        if predictions.ndim != 2 or predictions.shape[0] != len(references):
            raise ValueError(
                f"Predictions must be one list of class indices per reference; got shape {predictions.shape} for "
                f"{len(references)} references."
            )
        hits = predictions == references[:, None]  # (num_samples, k)
        results = {}
        for k in top_k:
            results[f"top{k}_accuracy"] = float(hits[:, : min(k, predictions.shape[1])].any(axis=1).mean())
        results["num_samples"] = int(len(references))
        if label_names is not None:
            per_class = {}
            for index, name in enumerate(label_names):
                mask = references == index
                per_class[name] = float(hits[mask, 0].mean()) if mask.any() else None
            results["per_class_accuracy"] = per_class
        return results


def top_k_accuracy_metric() -> TopKAccuracy:
    """A fresh in-memory `TopKAccuracy` (nothing is written to the `evaluate` cache)."""
    return TopKAccuracy(keep_in_memory=True)


__all__ = ["TopKAccuracy", "top_k_accuracy_metric"]
