# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""Load checkpoints of the official SOFT release (github.com/fudan-zvg/SOFT) into `SoftForImageClassification`.

The official checkpoints are timm training checkpoints: a dict with `state_dict` (and possibly `state_dict_ema`),
`epoch`, `arch` and an `argparse.Namespace` of the training arguments; some are a raw state dict or `{"model": ...}`
and keys may carry a `module.` prefix from DistributedDataParallel. They are read with `torch.load(weights_only=True)`
and only `argparse.Namespace` allow-listed, never unpickled blindly.
"""

from __future__ import annotations

import argparse
import os
import re
import zipfile
from collections.abc import Mapping

import torch

from ..models.soft.configuration_soft import SoftConfig
from ..models.soft.modeling_soft import SoftForImageClassification


VARIANTS = {"plain": "none", "norm": "symmetric"}

# (official pattern, our template); groups of the pattern fill the template.
_SOFT_BLOCK_RULES = [
    (r"att\.mha\.W_q\.(weight|bias)", "attention.query.{0}"),
    (r"att\.mha\.W_v\.(weight|bias)", "attention.value.{0}"),
    (r"att\.mha\.attn\.Qlandmark_op\.weight", "attention.landmark_conv.weight"),
    (r"att\.mha\.attn\.Qnorm_act\.0\.(weight|bias)", "attention.landmark_norm.{0}"),
    (r"att\.mha\.attn\.conv\.weight", "attention.skip_conv.weight"),
    (r"att\.mha\.ff\.(weight|bias)", "attention.output.{0}"),
    (r"att\.norm1\.(weight|bias)", "attention_norm.{0}"),
    (r"att\.ff1\.(weight|bias)", "mlp.fc1.{0}"),
    (r"att\.ff2\.(weight|bias)", "mlp.fc2.{0}"),
    (r"att\.norm2\.(weight|bias)", "mlp_norm.{0}"),
]
_SOFTMAX_BLOCK_RULES = [
    (r"norm1\.(weight|bias)", "layernorm_before.{0}"),
    (r"attn\.q\.(weight|bias)", "attention.query.{0}"),
    (r"attn\.kv\.(weight|bias)", "attention.key_value.{0}"),
    (r"attn\.proj\.(weight|bias)", "attention.proj.{0}"),
    (r"norm2\.(weight|bias)", "layernorm_after.{0}"),
    (r"mlp\.fc1\.(weight|bias)", "mlp.fc1.{0}"),
    (r"mlp\.fc2\.(weight|bias)", "mlp.fc2.{0}"),
]


def official_key_to_hf(key: str) -> str | None:
    """Our parameter name for an official one (None when the key is not part of the official architecture)."""
    if match := re.fullmatch(r"pos_embed([1-4])", key):
        return f"soft.encoder.stages.{int(match[1]) - 1}.position_embeddings"
    if key == "cls_token":
        return "soft.encoder.stages.3.cls_token"
    if match := re.fullmatch(r"patch_embed([1-4])\.proj\.(\d+)\.(\w+)", key):
        return f"soft.encoder.stages.{int(match[1]) - 1}.patch_embeddings.projection.{match[2]}.{match[3]}"
    if match := re.fullmatch(r"block([1-4])\.(\d+)\.(.+)", key):
        stage, layer, rest = int(match[1]) - 1, match[2], match[3]
        for pattern, template in _SOFTMAX_BLOCK_RULES if stage == 3 else _SOFT_BLOCK_RULES:
            if inner := re.fullmatch(pattern, rest):
                return f"soft.encoder.stages.{stage}.layers.{layer}." + template.format(*inner.groups())
        return None
    if match := re.fullmatch(r"norm\.(weight|bias)", key):
        return f"soft.layernorm.{match[1]}"
    if match := re.fullmatch(r"head\.(weight|bias)", key):
        return f"classifier.{match[1]}"
    return None


def load_official_state_dict(path: str | os.PathLike, use_ema: bool = False) -> dict[str, torch.Tensor]:
    """Read an official checkpoint safely and return its model state dict without `module.` prefixes."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No official SOFT checkpoint at {path!s}.")
    with torch.serialization.safe_globals([argparse.Namespace]):
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # the unpickler names the global it refused
            raise ValueError(f"Cannot read {path!s} as a SOFT checkpoint: {describe_load_error(path, error)}") from error
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"{path!s} holds a {type(checkpoint).__name__}, not a checkpoint dict or state dict.")
    order = ("state_dict_ema", "state_dict", "model") if use_ema else ("state_dict", "model", "state_dict_ema")
    state_dict = next((checkpoint[name] for name in order if isinstance(checkpoint.get(name), Mapping)), checkpoint)
    if use_ema and "state_dict_ema" not in checkpoint:
        raise ValueError(f"use_ema=True but {path!s} has no `state_dict_ema` (keys: {sorted(checkpoint)}).")
    tensors = {}
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"Entry {key!r} of the state dict in {path!s} is a {type(value).__name__}, not a tensor.")
        tensors[key[len("module.") :] if key.startswith("module.") else key] = value
    return tensors


def describe_load_error(path: str | os.PathLike, error: Exception) -> str:
    """Why `torch.load(path, weights_only=True)` failed, in words a user of the converter can act on (torch's own
    message advises `weights_only=False`, which the converter never uses)."""
    size = os.path.getsize(path)
    if size == 0:
        return "the file is empty (0 bytes)."
    message = str(error)
    refused = re.search(r"Unsupported global: GLOBAL ([\w.]+)", message)
    if refused:
        return (
            f"it holds a pickled `{refused[1]}` object, which the safe loader (tensors, containers and "
            "argparse.Namespace only) refuses; official SOFT checkpoints hold nothing else. If the file comes from a "
            "source you trust, re-save its state dict alone (`torch.save(checkpoint['state_dict'], 'clean.pth')`) "
            "and convert that."
        )
    with open(path, "rb") as handle:
        head = handle.read(2)
    damaged_zip = head == b"PK" and not zipfile.is_zipfile(path)
    if damaged_zip or isinstance(error, EOFError) or "central directory" in message or "truncated" in message.lower():
        return f"the file is truncated or corrupted ({size} bytes); download or copy it again."
    if head != b"PK" and not head.startswith(b"\x80"):
        return f"it is not a PyTorch checkpoint ({size} bytes, neither a torch.save zip archive nor a pickle)."
    details = re.search(r"WeightsUnpickler error: (.+)", message)
    first_line = (details[1] if details else message.strip().splitlines()[0] if message.strip() else "").strip()
    return f"{type(error).__name__}: {first_line}" if first_line else f"{type(error).__name__} ({size} bytes)."


def infer_config(state_dict: Mapping[str, torch.Tensor], variant: str, **overrides) -> SoftConfig:
    """Read depths, widths, heads, strides and kernel sizes from the official tensors.

    Heads of the softmax stage cannot be read from the weights; every official preset uses head dimension 32 there,
    which is assumed unless `num_attention_heads` is given."""
    if variant not in VARIANTS:
        raise ValueError(f"`variant` must be one of {sorted(VARIANTS)} (plain SOFT or SOFT-Norm), got {variant!r}.")
    required = ["patch_embed1.proj.0.weight", "head.weight"] + [f"pos_embed{stage}" for stage in range(1, 5)]
    missing = [key for key in required if key not in state_dict]
    if missing:
        raise ValueError(f"Not an official SOFT state dict: missing {missing}.")
    hidden_sizes = [int(state_dict[f"pos_embed{stage}"].shape[-1]) for stage in range(1, 5)]
    depths = []
    for stage in range(1, 5):
        indices = {int(match[1]) for key in state_dict if (match := re.match(rf"block{stage}\.(\d+)\.", key))}
        depths.append(max(indices) + 1 if indices else 0)
    heads, sr_ratios, kernels = [], [], []
    for stage in range(1, 4):
        prefix = f"block{stage}.0.att.mha"
        heads.append(int(state_dict[f"{prefix}.attn.conv.weight"].shape[0]))
        sr_ratios.append(int(state_dict[f"{prefix}.attn.Qlandmark_op.weight"].shape[-1]))
        kernels.append(int(state_dict[f"{prefix}.attn.conv.weight"].shape[-1]))
    heads.append(hidden_sizes[3] // 32)
    grid = int(round(state_dict["pos_embed1"].shape[1] ** 0.5))
    arguments = dict(
        image_size=4 * grid,
        num_channels=int(state_dict["patch_embed1.proj.0.weight"].shape[1]),
        stem_hidden_size=int(state_dict["patch_embed1.proj.0.weight"].shape[0]),
        hidden_sizes=hidden_sizes,
        depths=depths,
        num_attention_heads=heads,
        sr_ratios=sr_ratios + [1],
        skip_conv_kernel_sizes=kernels,
        soft_mlp_ratio=int(state_dict["block1.0.att.ff1.weight"].shape[0]) // hidden_sizes[0],
        mlp_ratios=[8, 8, 4, int(state_dict["block4.0.mlp.fc1.weight"].shape[0]) // hidden_sizes[3]],
        qkv_bias="block4.0.attn.q.bias" in state_dict,
        num_labels=int(state_dict["head.weight"].shape[0]),
        normalization=VARIANTS[variant],
    )
    arguments.update(overrides)
    return SoftConfig(**arguments)


def convert_official_state_dict(
    state_dict: Mapping[str, torch.Tensor], model: SoftForImageClassification
) -> dict[str, torch.Tensor]:
    """Rename an official state dict to ours, checking it against `model`. Every unknown, missing or mis-shaped key
    is collected and reported in one `ValueError`."""
    expected = model.state_dict()
    converted, unknown, mismatched, mismatched_keys = {}, [], [], set()
    for key, tensor in state_dict.items():
        new_key = official_key_to_hf(key)
        if new_key is None or new_key not in expected:
            unknown.append(key)
        elif tuple(tensor.shape) != tuple(expected[new_key].shape):
            mismatched.append(f"{key}: checkpoint {tuple(tensor.shape)} vs model {tuple(expected[new_key].shape)}")
            mismatched_keys.add(new_key)
        else:
            converted[new_key] = tensor
    missing = [key for key in expected if key not in converted and key not in mismatched_keys]
    if unknown or missing or mismatched:
        lines = ["The checkpoint does not match the SOFT architecture:"]
        for title, keys in (("unknown keys", unknown), ("missing keys", missing), ("shape mismatches", mismatched)):
            if keys:
                lines.append(f"  {title} ({len(keys)}): " + ", ".join(keys))
        raise ValueError("\n".join(lines))
    return converted


def convert_official_checkpoint(
    path: str | os.PathLike,
    variant: str,
    use_ema: bool = False,
    dtype: torch.dtype = torch.float32,
    **config_overrides,
) -> SoftForImageClassification:
    """Official `.pth` -> `SoftForImageClassification` in eval mode.

    Args:
        path: the official checkpoint (timm training checkpoint or raw state dict).
        variant: `"plain"` (SOFT) or `"norm"` (SOFT-Norm); the weights alone do not tell them apart.
        use_ema: take `state_dict_ema` instead of `state_dict`.
        dtype: dtype of the returned model.
        config_overrides: `SoftConfig` fields to set (e.g. `id2label`, `num_attention_heads`, `max_landmarks`).
    """
    state_dict = load_official_state_dict(path, use_ema=use_ema)
    config = infer_config(state_dict, variant, **config_overrides)
    model = SoftForImageClassification(config)
    model.load_state_dict(convert_official_state_dict(state_dict, model), strict=True)
    return model.to(dtype).eval()


__all__ = [
    "convert_official_checkpoint",
    "convert_official_state_dict",
    "infer_config",
    "load_official_state_dict",
    "official_key_to_hf",
]
