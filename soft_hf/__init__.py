# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""SOFT (Softmax-Free Transformer) for Hugging Face Transformers.

Importing the package registers SOFT with the Auto factories (AutoConfig, AutoModel,
AutoModelForImageClassification, AutoBackbone, AutoImageProcessor) and its dense models (AutoModelForObjectDetection:
RT-DETR on SOFT; AutoModelForSemanticSegmentation: UperNet on SOFT), so
`UperNetConfig(backbone_config=SoftConfig(...))` and `AutoModel.from_config(SoftConfig())` work without remote code.

The package's parts and what each may import are described in docs/architecture.md: `models/soft/` (the files that
travel with checkpoints), `data/`, `tasks/` (classification and segmentation training, evaluation, prediction),
`hub/` (export and publishing), `conversion/` (official checkpoints) and `benchmarks/`.
"""

from transformers import (
    AutoBackbone,
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForObjectDetection,
    AutoModelForSemanticSegmentation,
)

from .conversion.official import convert_official_checkpoint
from .hub.export import export_pretrained
from .models.soft.configuration_soft import PRESET_NAMES, SOFT_PRESETS, SoftConfig
from .models.soft.image_processing_soft import SoftImageProcessor, SoftImageProcessorPil
from .models.soft.configuration_soft_dense import SoftRTDetrConfig, SoftUperNetConfig
from .models.soft.modeling_soft import SoftBackbone, SoftForImageClassification, SoftModel, SoftPreTrainedModel
from .models.soft.modeling_soft_dense import SoftRTDetrForObjectDetection, SoftUperNetForSemanticSegmentation


def register_auto_classes() -> None:
    """Register SOFT's classes with Transformers' Auto factories (idempotent)."""
    AutoConfig.register(SoftConfig.model_type, SoftConfig, exist_ok=True)
    AutoModel.register(SoftConfig, SoftModel, exist_ok=True)
    AutoModelForImageClassification.register(SoftConfig, SoftForImageClassification, exist_ok=True)
    AutoBackbone.register(SoftConfig, SoftBackbone, exist_ok=True)
    AutoImageProcessor.register(
        SoftConfig,
        image_processor_classes={"torchvision": SoftImageProcessor, "pil": SoftImageProcessorPil},
        exist_ok=True,
    )
    AutoConfig.register(SoftRTDetrConfig.model_type, SoftRTDetrConfig, exist_ok=True)
    AutoModelForObjectDetection.register(SoftRTDetrConfig, SoftRTDetrForObjectDetection, exist_ok=True)
    AutoConfig.register(SoftUperNetConfig.model_type, SoftUperNetConfig, exist_ok=True)
    AutoModelForSemanticSegmentation.register(SoftUperNetConfig, SoftUperNetForSemanticSegmentation, exist_ok=True)


register_auto_classes()

__version__ = "0.1.0"

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
    "convert_official_checkpoint",
    "export_pretrained",
    "register_auto_classes",
]
