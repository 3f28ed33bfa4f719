"""Time this checkout's SOFT-Tiny against another checkout's, side by side in one process (before/after a change).

The other checkout's `soft_hf` is imported under another package name, both models get the same weights, and the
two are timed alternately repetition by repetition with `soft_hf.benchmarks.speed.time_side_by_side`, so drifts of
the machine hit both alike; the ratio is what counts, not the absolute rate of a shared machine.

    python -m soft_hf.benchmarks.revision_comparison --other /path/to/old/checkout [--sizes 224 1024] [--repeats 10]
    python -m soft_hf.benchmarks.revision_comparison --other /path/to/old/checkout --training --sizes 224

With `--training` each repetition is a training step (train mode, forward + cross-entropy backward, batch 8 at
224 px) instead of inference, and the cell records the largest difference of the two models' parameter gradients
(relative to the largest gradient) besides the loss difference.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from ..models.soft.configuration_soft import SoftConfig
from ..models.soft.modeling_soft import SoftForImageClassification
from .speed import time_side_by_side


def import_other_package(checkout: Path, name: str = "soft_hf_other"):
    """The `soft_hf` package of another checkout, imported as `name` (its imports among itself are relative)."""
    spec = importlib.util.spec_from_file_location(
        name, checkout / "soft_hf" / "__init__.py", submodule_search_locations=[str(checkout / "soft_hf")]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def paired_models(other, **overrides) -> tuple[torch.nn.Module, torch.nn.Module]:
    """SOFT-Tiny of this checkout and of the other one (`other`, its `soft_hf` package), with the same weights."""
    torch.manual_seed(0)
    this = SoftForImageClassification(SoftConfig.from_preset("soft-tiny", num_labels=1000, **overrides))
    that = other.SoftForImageClassification(other.SoftConfig.from_preset("soft-tiny", num_labels=1000, **overrides))
    that.load_state_dict(this.state_dict())
    return this, that


def timed_cell(this_run, other_run, batch: int, args, **measurements) -> dict:
    """Time `this_run` against `other_run` side by side: images/s of each, their ratio, and `measurements`."""
    timings = time_side_by_side(
        {"this": this_run, "other": other_run}, torch.device("cpu"), args.repeats, args.cell_budget
    )
    cell = {
        "batch": batch,
        "this_images_per_s": batch / timings["this"]["median_s"],
        "other_images_per_s": batch / timings["other"]["median_s"],
        **measurements,
    }
    cell["this_over_other"] = cell["this_images_per_s"] / cell["other_images_per_s"]
    return cell


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--other", required=True, type=Path, help="Another soft-hf checkout (e.g. a git worktree).")
    parser.add_argument("--sizes", nargs="+", type=int, default=[224, 1024])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--cell-budget", type=float, default=120.0, help="Seconds of timed repetitions per variant.")
    parser.add_argument("--output", type=Path, help="Write the results as JSON here.")
    parser.add_argument("--training", action="store_true", help="Time training steps and compare gradients.")
    args = parser.parse_args(argv)

    other = import_other_package(args.other.resolve())
    compare = compare_training if args.training else compare_inference
    results = {"other": str(args.other), "training": args.training, "cells": compare(other, args)}
    if args.output:
        args.output.write_text(json.dumps(results, indent=1))
    return results


def compare_inference(other, args) -> dict:
    """Inference of this checkout's SOFT-Tiny against the other's, official rule and bounded landmarks."""
    variants = {"official rule": {}, "max_landmarks=49": {"max_landmarks": 49}}
    cells = {}
    for size in args.sizes:
        batch = 8 if size <= 224 else 1
        pixel_values = torch.randn(batch, 3, size, size)
        for label, overrides in variants.items():
            this, that = (model.eval() for model in paired_models(other, **overrides))
            with torch.no_grad():
                difference = (this(pixel_values).logits - that(pixel_values).logits).abs().max().item()
                cell = timed_cell(
                    lambda: this(pixel_values), lambda: that(pixel_values), batch, args, max_logit_difference=difference
                )
            cells[f"{size} px, {label}"] = cell
            print(
                f"{size:5d} px, {label:17s}: this {cell['this_images_per_s']:7.2f} img/s, other "
                f"{cell['other_images_per_s']:7.2f} img/s, ratio {cell['this_over_other']:.3f} "
                f"(logits differ by {difference:.1e})",
                flush=True,
            )
    return cells


def compare_training(other, args) -> dict:
    """Training steps of this checkout's SOFT-Tiny against the other's (same weights, same batch), side by side."""
    cells = {}
    for size in args.sizes:
        batch = 8 if size <= 224 else 1
        pixel_values = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
        labels = torch.randint(0, 1000, (batch,), generator=torch.Generator().manual_seed(1))
        this, that = (model.train() for model in paired_models(other))

        def step(model):
            model.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(pixel_values).logits, labels)
            loss.backward()
            return loss.detach()

        loss_difference = (step(this) - step(that)).abs().item()
        gradients = dict(that.named_parameters())
        largest = max(parameter.grad.abs().max().item() for parameter in gradients.values())
        gradient_difference = max(
            (parameter.grad - gradients[name].grad).abs().max().item() for name, parameter in this.named_parameters()
        )
        cell = timed_cell(
            lambda: step(this),
            lambda: step(that),
            batch,
            args,
            loss_difference=loss_difference,
            max_gradient_difference_relative=gradient_difference / largest,
        )
        cells[f"{size} px, training step"] = cell
        print(
            f"{size:5d} px, training step: this {cell['this_images_per_s']:6.2f} img/s, other "
            f"{cell['other_images_per_s']:6.2f} img/s, ratio {cell['this_over_other']:.3f} (loss differs by "
            f"{loss_difference:.1e}, gradients by {cell['max_gradient_difference_relative']:.1e} of the largest)",
            flush=True,
        )
    return cells


if __name__ == "__main__":
    main()
