# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""Configurations of the dense-prediction models built on a SOFT / SOFT-Norm backbone.

The heads are Transformers' own: RT-DETR (object detection) and UperNet (semantic segmentation). These classes only
give the combination a model type of its own (`"soft_rt_detr"`, `"soft_upernet"`) so that a saved model names its
remote code in `auto_map`, and they make the `"soft"` backbone type known to `AutoConfig` before the nested
`backbone_config` is read. With that, a saved detector or segmenter loads in a Python without soft-hf installed:

```python
from transformers import AutoModelForObjectDetection
model = AutoModelForObjectDetection.from_pretrained("org/soft-norm-tiny-rt-detr", trust_remote_code=True)
```

Paper: SOFT-Norm (the symmetric normalisation of Lu et al., IJCV 2024, Sec. 3.4) is the variant meant for dense
prediction; the official release pairs it with RetinaNet / Mask R-CNN (COCO) and UperNet (ADE20K).
"""

from __future__ import annotations

from transformers import AutoConfig, RTDetrConfig, UperNetConfig
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from .configuration_soft import SoftConfig


def register_soft_config() -> None:
    """Make `AutoConfig` (and so every `backbone_config={"model_type": "soft", ...}`) resolve the SOFT config.

    A class registered earlier wins (the installed soft_hf registers its own on import): code loaded with
    `trust_remote_code` never replaces it."""
    if SoftConfig.model_type not in CONFIG_MAPPING:
        AutoConfig.register(SoftConfig.model_type, SoftConfig)


register_soft_config()


class SoftRTDetrConfig(RTDetrConfig):
    r"""[`RTDetrConfig`] whose `backbone_config` is a [`SoftConfig`] (typically SOFT-Norm with
    `out_features=["stage2", "stage3", "stage4"]`, strides 8, 16, 32). Every argument is RT-DETR's."""

    model_type = "soft_rt_detr"


class SoftUperNetConfig(UperNetConfig):
    r"""[`UperNetConfig`] whose `backbone_config` is a [`SoftConfig`] (typically SOFT-Norm with
    `out_features=["stage1", "stage2", "stage3", "stage4"]`, strides 4, 8, 16, 32). Every argument is UperNet's."""

    model_type = "soft_upernet"


__all__ = ["SoftRTDetrConfig", "SoftUperNetConfig", "register_soft_config"]
