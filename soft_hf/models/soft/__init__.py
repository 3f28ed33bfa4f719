# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""SOFT and SOFT-Norm: configuration, attention, models and image processor.

Every file of this folder except this one is copied into exported checkpoints (`soft_hf.hub.export`) and loaded
from there with `trust_remote_code=True`; this `__init__.py` is never copied."""

from .configuration_soft import PRESET_NAMES, SOFT_PRESETS, SoftConfig
from .configuration_soft_dense import SoftRTDetrConfig, SoftUperNetConfig
from .image_processing_soft import SoftImageProcessor, SoftImageProcessorPil
from .modeling_soft import SoftBackbone, SoftForImageClassification, SoftModel, SoftPreTrainedModel
from .modeling_soft_dense import SoftRTDetrForObjectDetection, SoftUperNetForSemanticSegmentation


__all__ = [
    "PRESET_NAMES",
    "SOFT_PRESETS",
    "SoftBackbone",
    "SoftConfig",
    "SoftForImageClassification",
    "SoftImageProcessor",
    "SoftImageProcessorPil",
    "SoftModel",
    "SoftPreTrainedModel",
    "SoftRTDetrConfig",
    "SoftRTDetrForObjectDetection",
    "SoftUperNetConfig",
    "SoftUperNetForSemanticSegmentation",
]
