# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""Convert an official SOFT checkpoint (github.com/fudan-zvg/SOFT, `.pth`) into a Hub-ready folder: `soft-convert`,
also `python scripts/convert_original_checkpoint.py`.

    soft-convert --checkpoint SOFT_Tiny.pth --variant plain --output soft-tiny
    soft-convert --checkpoint mini_soft.pth --variant plain --output out/mini \\
        --reference ../shared/reference/mini_soft.io.safetensors

The architecture (depths, widths, heads, strides, classes) is read from the checkpoint; `--variant` says whether it is
plain SOFT or SOFT-Norm, which the weights alone do not tell. A head with 1000 outputs gets the ImageNet-1k class
names shipped with timm (no download). With `--reference` (a safetensors file with `input_<i>` and `logits_fp32_<i>`
made with the official code) the converted model must reproduce the official logits within `--tolerance`, or nothing
is written; the exported weights are then checked to be exactly the verified ones. Keys that do not match the
architecture are refused with a full report.
`--output` must be a new or empty folder, or an earlier export (replaced only with `--overwrite`); a folder holding
anything an export did not write is refused with the list of those files, and nothing in it is touched.
Exit status: 0 converted, 1 verification failed, 2 bad input (unreadable checkpoint, key mismatch) or an output
that cannot be written (foreign files, an earlier export without --overwrite, a read-only destination).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import sys

import torch
from safetensors.torch import load_file

from ..hub.export import export_pretrained
from .official import convert_official_checkpoint


def imagenet_labels() -> dict[int, str]:
    """ImageNet-1k class names (WordNet descriptions such as "tabby, tabby cat") from timm's bundled metadata."""
    try:
        from timm.data import ImageNetInfo
    except ImportError as error:
        raise ValueError(
            "The ImageNet-1k class names come from timm (pip install timm); or pass --no-imagenet-labels."
        ) from error
    info = ImageNetInfo()
    return {index: info.index_to_description(index) for index in range(info.num_classes())}


def compare_with_reference(model, reference_path: pathlib.Path) -> list[dict]:
    """Max |logits - official logits| for every `input_<i>` / `logits_fp32_<i>` pair of the reference file."""
    tensors = load_file(str(reference_path))
    cases = sorted(int(key.split("_")[-1]) for key in tensors if key.startswith("input_"))
    if not cases:
        raise ValueError(f"{reference_path} holds no `input_<i>` tensors; keys: {sorted(tensors)}.")
    results = []
    model.eval()
    for case in cases:
        expected = tensors.get(f"logits_fp32_{case}")
        if expected is None:
            raise ValueError(f"{reference_path} has input_{case} but no logits_fp32_{case}.")
        pixel_values = tensors[f"input_{case}"].to(model.dtype)
        with torch.no_grad():
            logits = model(pixel_values=pixel_values).logits.float()
        if logits.shape != expected.shape:
            raise ValueError(
                f"Case {case}: the converted model gives logits of shape {tuple(logits.shape)}, the reference "
                f"{tuple(expected.shape)}: the reference belongs to another checkpoint."
            )
        results.append(
            {
                "case": case,
                "input_shape": list(pixel_values.shape),
                "max_abs_diff": float((logits - expected).abs().max()),
            }
        )
    return results


def _describe(error: Exception) -> str:
    """The message of a ValueError as is; for an OSError its reason and path (e.g. a read-only destination)."""
    if isinstance(error, OSError) and error.strerror:
        return f"{error.strerror}: {error.filename}" if error.filename else error.strerror
    return str(error) or type(error).__name__


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, type=pathlib.Path, help="official .pth checkpoint")
    parser.add_argument(
        "--variant", required=True, choices=["plain", "norm"], help="plain SOFT or SOFT-Norm (symmetric normalisation)"
    )
    parser.add_argument("--output", required=True, type=pathlib.Path, help="folder to write (new or empty)")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an earlier export in --output (never other files)"
    )
    parser.add_argument("--reference", type=pathlib.Path, help="official logits to reproduce (<arch>.io.safetensors)")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="max |logit difference| allowed (default 1e-4)")
    parser.add_argument("--use-ema", action="store_true", help="convert `state_dict_ema` instead of `state_dict`")
    parser.add_argument("--no-imagenet-labels", action="store_true", help="keep LABEL_i names for a 1000-class head")
    parser.add_argument("--repo-id", help="Hub repository id shown in the model card's usage snippets")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        model = convert_official_checkpoint(args.checkpoint, args.variant, use_ema=args.use_ema)
        if model.config.num_labels == 1000 and not args.no_imagenet_labels:
            model.config.id2label = imagenet_labels()
            model.config.label2id = {label: index for index, label in model.config.id2label.items()}
        report = {
            "checkpoint": str(args.checkpoint),
            "variant": args.variant,
            "num_labels": model.config.num_labels,
            "depths": model.config.depths,
            "hidden_sizes": model.config.hidden_sizes,
            "num_parameters": sum(parameter.numel() for parameter in model.parameters()),
        }
        if args.reference is not None:
            report["reference"] = compare_with_reference(model, args.reference)
    except (ValueError, OSError) as error:
        print(f"error: cannot convert {args.checkpoint}:\n{_describe(error)}", file=sys.stderr)
        return 2

    if args.reference is not None and any(case["max_abs_diff"] > args.tolerance for case in report["reference"]):
        print(json.dumps(report, indent=2))
        print(
            f"error: the converted model does not reproduce the official logits within {args.tolerance} "
            f"(wrong --variant, or a reference file of another checkpoint?); nothing was written.",
            file=sys.stderr,
        )
        return 1

    imagenet = report["num_labels"] == 1000 and not args.no_imagenet_labels
    label_source = "timm's ImageNet-1k class names" if imagenet else "generic LABEL_i names"
    provenance = (
        f"Converted from `{args.checkpoint.name}`, a checkpoint in the official SOFT training layout "
        f"(github.com/fudan-zvg/SOFT, MIT license), with soft-hf's "
        f"`scripts/convert_original_checkpoint.py --variant {args.variant}`"
        + (" (EMA weights)" if args.use_ema else "")
        + f"; labels: {label_source}."
    )
    if args.reference is not None:
        worst = max(case["max_abs_diff"] for case in report["reference"])
        provenance += (
            f" The converted model reproduced the official model's float32 logits on {len(report['reference'])} "
            f"reference batches within {worst:.2e} (max absolute difference)."
        )
    provenance += " No accuracy was measured by soft-hf for these weights."
    try:
        output = export_pretrained(
            model,
            args.output,
            provenance=provenance,
            repo_id=args.repo_id,
            license="mit",
            dataset_name="imagenet-1k" if report["num_labels"] == 1000 else None,
            overwrite=args.overwrite,
        )
    except (ValueError, OSError) as error:
        print(f"error: cannot write {args.output}:\n{_describe(error)}", file=sys.stderr)
        return 2

    # The verified tensors must be exactly what the folder holds (the remote code is the same as soft_hf's).
    exported = load_file(str(output / "model.safetensors"))
    state_dict = model.state_dict()
    if set(exported) != set(state_dict) or any(not torch.equal(exported[k], state_dict[k]) for k in state_dict):
        shutil.rmtree(output, ignore_errors=True)
        print(f"error: the weights written to {output} differ from the converted model's; removed it.", file=sys.stderr)
        return 1
    report["output"] = str(output)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
