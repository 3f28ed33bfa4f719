# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""Backbones of the dense-prediction heads (UperNet, RT-DETR): SOFT / SOFT-Norm presets and checkpoints, and
Transformers' PVTv2 as the peer they are measured against.

`dense_backbone_config` turns a name into a backbone config with the feature maps a head needs;
`load_backbone_weights` reads SOFT encoder weights from a saved model folder or an official `.pth` (through the
official-checkpoint converter), so either head can start from ImageNet weights; `save_dense_model` writes a trained
head atomically (Hub-ready on a SOFT backbone).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from transformers import PretrainedConfig, PvtV2Config

from ..hub.export import export_pretrained, staged_folder
from ..models.soft.configuration_soft import SoftConfig
from ..models.soft.modeling_soft import SoftBackbone


# PVTv2 (Wang et al., CVMJ 2022) variants as in the paper / timm, for Transformers' `PvtV2Config` (its default is b0).
PVT_V2_PRESETS = {
    "pvt_v2_b0": {"hidden_sizes": [32, 64, 160, 256], "depths": [2, 2, 2, 2]},
    "pvt_v2_b1": {"hidden_sizes": [64, 128, 320, 512], "depths": [2, 2, 2, 2]},
    "pvt_v2_b2": {"hidden_sizes": [64, 128, 320, 512], "depths": [3, 4, 6, 3]},
}
PVT_V2_COMMON = {"num_attention_heads": [1, 2, 5, 8], "sr_ratios": [8, 4, 2, 1], "mlp_ratios": [8, 8, 4, 4]}
# Our stage names are PVTv2's too: stage1..stage4 at strides 4, 8, 16, 32.
DENSE_FEATURES = ("stage1", "stage2", "stage3", "stage4")


def is_soft_backbone(config: PretrainedConfig) -> bool:
    return getattr(config, "model_type", None) == SoftConfig.model_type


def backbone_architecture(config: SoftConfig, out_features, **overrides) -> SoftConfig:
    """A clean SOFT backbone config: the architecture fields of `config` (no labels, no hub metadata) with
    `out_features`, plus `overrides` (e.g. `max_landmarks`, `drop_path_rate`)."""
    fields = [name for name in SoftConfig.__annotations__ if not name.startswith("_")]
    arguments = {name: getattr(config, name) for name in fields}
    arguments.update(overrides)
    arguments["out_features"] = list(out_features)
    return SoftConfig(**arguments)


def load_backbone_weights(
    source: str | os.PathLike, variant: str | None = None, out_features=DENSE_FEATURES
) -> tuple[SoftConfig, dict]:
    """Read the SOFT weights of a classification, base or backbone checkpoint.

    Args:
        source: a folder written by `save_pretrained` / `export_pretrained` (any SOFT head), or an official `.pth`
            checkpoint of the SOFT release (then `variant` is required; the official converter reads it).
        variant: `"plain"` or `"norm"` for official `.pth` files (the tensors do not say which).

    Returns:
        The checkpoint's config and the state dict of a [`SoftBackbone`] (`encoder.*` keys).
    """
    path = Path(source)
    if path.is_file() and path.suffix in (".pth", ".pt", ".bin", ".tar"):
        if variant is None:
            raise ValueError(
                f"{path} is an official SOFT checkpoint: pass its variant ('plain' for SOFT, 'norm' for SOFT-Norm)."
            )
        from ..conversion.official import convert_official_checkpoint

        model = convert_official_checkpoint(path, variant)
        config = model.config
        state_dict = {name[len("soft.") :]: tensor for name, tensor in model.state_dict().items()}
    elif path.is_dir() and (path / "config.json").is_file():
        backbone, loading_info = SoftBackbone.from_pretrained(
            path, out_features=list(out_features), output_loading_info=True
        )
        missing = sorted(loading_info["missing_keys"]) + [key for key, *_ in loading_info["mismatched_keys"]]
        if missing:
            raise ValueError(
                f"{path} is not a complete SOFT checkpoint for this architecture: {len(missing)} backbone tensors are "
                f"missing or mis-shaped (e.g. {missing[:3]})."
            )
        config, state_dict = backbone.config, backbone.state_dict()
    else:
        raise ValueError(
            f"Cannot read backbone weights from {str(source)!r}: expected a folder with config.json (saved or exported "
            "SOFT model) or an official .pth checkpoint."
        )
    state_dict = {name: tensor for name, tensor in state_dict.items() if name.startswith("encoder.")}
    if not state_dict:
        raise ValueError(f"{source} holds no SOFT encoder weights (no `encoder.*` / `soft.encoder.*` tensors).")
    return config, state_dict


def dense_backbone_config(
    backbone: str | os.PathLike | PretrainedConfig,
    out_features,
    *,
    max_landmarks: int | None = None,
    drop_path_rate: float | None = None,
) -> PretrainedConfig:
    """The backbone config of a dense head.

    Args:
        backbone: a SOFT preset (`"soft-norm-tiny"` ... `"soft-huge"`), a PVTv2 name (`"pvt_v2_b0"`, `"pvt_v2_b1"`,
            `"pvt_v2_b2"`), a `SoftConfig` / `PvtV2Config`, or a SOFT `config.json` / folder holding one
            (architecture only).
        out_features: the feature maps the head consumes (`stage1` .. `stage4`, strides 4 .. 32).
        max_landmarks: bound the landmarks of every SOFT stage (SOFT only).
        drop_path_rate: stochastic depth (`None` keeps the config's).
    """
    overrides = {}
    if drop_path_rate is not None:
        overrides["drop_path_rate"] = drop_path_rate
    if isinstance(backbone, PvtV2Config) or (isinstance(backbone, str) and backbone in PVT_V2_PRESETS):
        if max_landmarks is not None:
            raise ValueError("`max_landmarks` bounds SOFT's landmarks; a PVTv2 backbone has none.")
        if isinstance(backbone, PvtV2Config):
            arguments = backbone.to_dict()
            arguments.pop("model_type", None)
        else:
            arguments = {**PVT_V2_COMMON, **PVT_V2_PRESETS[backbone]}
        arguments.update(overrides)
        arguments.update(out_features=list(out_features), out_indices=None)
        return PvtV2Config(**arguments)
    if max_landmarks is not None:
        overrides["max_landmarks"] = max_landmarks
    if isinstance(backbone, SoftConfig):
        source = backbone
    elif isinstance(backbone, (str, os.PathLike)) and Path(backbone).is_file():
        source = SoftConfig.from_json_file(backbone)
    elif isinstance(backbone, (str, os.PathLike)) and Path(backbone).is_dir():
        source = SoftConfig.from_pretrained(backbone)
    elif isinstance(backbone, str):
        try:
            source = SoftConfig.from_preset(backbone)
        except ValueError as error:
            raise ValueError(f"{error} PVTv2 backbones: {', '.join(PVT_V2_PRESETS)}.") from None
    else:
        raise ValueError(f"`backbone` must be a preset name or a backbone config, got {type(backbone).__name__}.")
    return backbone_architecture(source, out_features, **overrides)


def to_jsonable(value):
    """Numpy scalars/arrays (and NaN) to plain JSON values."""
    if isinstance(value, dict):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item) for item in value]
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return None if math.isnan(value) else value
    if isinstance(value, np.integer):
        return int(value)
    return value


def save_dense_model(model, output_dir, image_processor, metrics: dict | None = None, overwrite: bool = True) -> Path:
    """Write a dense model, its image processor and `eval_results.json` (`metrics`) to `output_dir` atomically.

    On a SOFT backbone (`soft_rt_detr`, `soft_upernet`) the folder is a Hub-ready export
    (`soft_hf.hub.export.export_pretrained`: code files, model card, manifest) that loads with
    `trust_remote_code=True` where soft-hf is not installed; on another backbone (PVTv2: all Transformers) it is
    `save_pretrained` into a temporary folder beside `output_dir`, then swapped in (`staged_folder`)."""
    output_dir = Path(output_dir).resolve()
    metrics = to_jsonable(metrics) if metrics is not None else None
    with tempfile.TemporaryDirectory() as scratch:
        results = Path(scratch) / "eval_results.json"
        if metrics is not None:
            results.write_text(json.dumps(metrics, indent=2) + "\n")
        if is_soft_backbone(model.config.backbone_config):
            extra_files = {"eval_results.json": results} if metrics is not None else {}
            return export_pretrained(
                model,
                output_dir,
                image_processor=image_processor,
                metrics=metrics,
                overwrite=overwrite,
                extra_files=extra_files,
            )
        if output_dir.exists() and not overwrite:
            raise ValueError(f"{output_dir} exists; pass overwrite=True or choose another folder.")
        with staged_folder(output_dir) as staging:
            model.save_pretrained(staging)
            if image_processor is not None:
                image_processor.save_pretrained(staging)
            if metrics is not None:
                shutil.copyfile(results, staging / "eval_results.json")
    return output_dir


__all__ = [
    "DENSE_FEATURES",
    "PVT_V2_PRESETS",
    "backbone_architecture",
    "dense_backbone_config",
    "is_soft_backbone",
    "load_backbone_weights",
    "save_dense_model",
    "to_jsonable",
]
