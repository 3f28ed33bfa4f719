# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""Dense-prediction models on a SOFT / SOFT-Norm backbone: Transformers' RT-DETR and UperNet with [`SoftBackbone`].

The heads, losses and post-processing are Transformers' (`RTDetrForObjectDetection`,
`UperNetForSemanticSegmentation`); the subclasses exist so that saved models carry their code (`auto_map`) and build
their backbone with [`SoftBackbone`] whichever copy of the SOFT config class the configuration holds (with remote
code, the config file and this file may be imported from different cache folders).
"""

from __future__ import annotations

from transformers import (
    AutoBackbone,
    AutoModelForObjectDetection,
    AutoModelForSemanticSegmentation,
    RTDetrForObjectDetection,
    UperNetForSemanticSegmentation,
)

from .configuration_soft_dense import SoftRTDetrConfig, SoftUperNetConfig
from .modeling_soft import SoftBackbone


def register_soft_backbone(config_class: type) -> None:
    """Make `AutoBackbone.from_config` (used by the heads' `load_backbone`) build a [`SoftBackbone`] for
    `config_class`, unless a backbone is already registered for it (the installed soft_hf registers its own)."""
    if config_class not in AutoBackbone._model_mapping.keys():
        AutoBackbone.register(config_class, SoftBackbone)


def _register_head(auto_class, config_class: type, model_class: type) -> None:
    # So that pipelines list the class among the models their task supports (no "not supported" error log).
    if config_class not in auto_class._model_mapping.keys():
        auto_class.register(config_class, model_class)


class SoftRTDetrForObjectDetection(RTDetrForObjectDetection):
    """RT-DETR (Zhao et al., CVPR 2024: hybrid encoder, IoU-aware query selection, deformable decoder with denoising)
    on a SOFT-Norm backbone, fed the stride-8/16/32 maps of stages 2-4."""

    config_class = SoftRTDetrConfig

    def __init__(self, config: SoftRTDetrConfig):
        register_soft_backbone(type(config.backbone_config))
        super().__init__(config)


class SoftUperNetForSemanticSegmentation(UperNetForSemanticSegmentation):
    """UperNet (Xiao et al., ECCV 2018: PPM + FPN decoder, optional FCN auxiliary head on stage 3) on a SOFT-Norm
    backbone, the official ADE20K setting, fed the stride-4/8/16/32 maps of stages 1-4."""

    config_class = SoftUperNetConfig

    def __init__(self, config: SoftUperNetConfig):
        register_soft_backbone(type(config.backbone_config))
        super().__init__(config)


_register_head(AutoModelForObjectDetection, SoftRTDetrConfig, SoftRTDetrForObjectDetection)
_register_head(AutoModelForSemanticSegmentation, SoftUperNetConfig, SoftUperNetForSemanticSegmentation)


__all__ = ["SoftRTDetrForObjectDetection", "SoftUperNetForSemanticSegmentation", "register_soft_backbone"]
