"""Print how closely soft-hf reproduces the official SOFT release on its test vectors: the largest logit difference in
float32 and float64 for each Newton step scope, and the largest relative float64 gradient error for each Newton
backward (the figures of the README's exactness table).

    python -m soft_hf.benchmarks.official_parity [--reference-dir DIR ...]

Default folders, relative to the root of a checkout: tests/fixtures/official (compact sets) and ../shared/reference
(mini sets) when present.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from ..conversion.official import convert_official_checkpoint, official_key_to_hf

DEFAULT_DIRS = [Path("tests") / "fixtures" / "official", Path("..") / "shared" / "reference"]


def logit_error(directory: Path, record: dict, variant: str, dtype: torch.dtype, **config) -> float:
    vectors = load_file(directory / f"{record['arch']}.io.safetensors")
    model = convert_official_checkpoint(directory / f"{record['arch']}.pth", variant, dtype=dtype, **config)
    suffix = "32" if dtype == torch.float32 else "64"
    errors = []
    with torch.no_grad():
        for index, case in enumerate(record["cases"]):
            logits = model(vectors[case["input"]].to(dtype)).logits
            errors.append((logits - vectors[f"logits_fp{suffix}_{index}"].to(dtype)).abs().max().item())
    return max(errors)


def gradient_error(directory: Path, record: dict, variant: str, **config) -> float:
    vectors = load_file(directory / f"{record['arch']}.io.safetensors")
    gradients = load_file(directory / f"{record['arch']}.grad.safetensors")
    model = convert_official_checkpoint(directory / f"{record['arch']}.pth", variant, dtype=torch.float64, **config)
    (model(vectors["input_0"].double()).logits * gradients["loss_weights"].double()).sum().backward()
    parameters = dict(model.named_parameters())
    errors = []
    for key, expected in gradients.items():
        if key == "loss_weights":
            continue
        grad = parameters[official_key_to_hf(key[len("grad.") :])].grad
        errors.append(((grad - expected).norm() / expected.norm().clamp_min(1e-300)).item())
    return max(errors)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference-dir", nargs="+", type=Path, default=DEFAULT_DIRS)
    args = parser.parse_args(argv)
    for directory in args.reference_dir:
        if not (directory / "vectors.json").is_file():
            print(f"{directory}: no vectors.json, skipped")
            continue
        for record in json.loads((directory / "vectors.json").read_text()):
            variant = "norm" if record["arch"].endswith("norm") else "plain"
            for scope in ("head", "image", "batch"):
                fp32 = logit_error(directory, record, variant, torch.float32, newton_step_scope=scope)
                fp64 = logit_error(directory, record, variant, torch.float64, newton_step_scope=scope)
                print(f"{record['arch']:18s} step scope {scope:5s}: logits fp32 {fp32:.1e}, fp64 {fp64:.1e}")
            scope = "batch" if variant == "norm" else "head"  # the official rule of the variant
            for backward in ("analytic", "unrolled"):
                error = gradient_error(directory, record, variant, newton_step_scope=scope, newton_backward=backward)
                print(f"{record['arch']:18s} {backward:8s} backward: max relative gradient error {error:.1e}")


if __name__ == "__main__":
    main()
