# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""Write Hub-ready SOFT repositories: the one export function every script uses, plus model cards and checks.

A Hub-ready folder holds `config.json` (with an `auto_map` for AutoConfig, AutoModel, AutoModelForImageClassification
and AutoBackbone), `model.safetensors`, `preprocessor_config.json` (with its own `auto_map` for AutoImageProcessor,
both backends), the flat code files and a `README.md` model card, so that anyone can load it with
`trust_remote_code=True` without installing soft-hf.

This module does not travel with checkpoints; it imports only `soft_hf.models`.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import math
import os
import pathlib
import shutil
import string
import subprocess
import sys
import tempfile
import textwrap
import uuid
from collections.abc import Mapping
from typing import Any

import torch
from huggingface_hub import EvalResult, ModelCardData
from transformers.dynamic_module_utils import get_relative_import_files

from ..models.soft.configuration_soft import SOFT_PRESETS, SoftConfig
from ..models.soft.image_processing_soft import SoftImageProcessor


# The model files that travel with checkpoints, and the card template (package data, installed with soft_hf).
MODEL_CODE_DIR = pathlib.Path(__file__).resolve().parents[1] / "models" / "soft"
MODEL_CARD_TEMPLATE = pathlib.Path(__file__).resolve().parent / "model_card_template.md"
# The rendered per-preset cards, relative to the root of a checkout (`write_preset_cards`).
MODEL_CARDS_DIR = pathlib.Path("model_cards")
NEWTON_SCOPE_WORDS = {"head": "(image, head)", "image": "image", "batch": "batch"}

# Files every exported folder carries; the model files may import more flat modules, which are copied too.
REQUIRED_CODE_FILES = ("configuration_soft.py", "modeling_soft.py", "soft_attention.py", "image_processing_soft.py")
MODEL_AUTO_CLASSES = {
    "AutoModel": "SoftModel",
    "AutoModelForImageClassification": "SoftForImageClassification",
    "AutoBackbone": "SoftBackbone",
}
IMAGE_PROCESSOR_CLASSES = {"torchvision": "SoftImageProcessor", "pil": "SoftImageProcessorPil"}
# Dense-prediction models on a SOFT backbone (soft_hf/models/soft/modeling_soft_dense.py), by model type: the Auto
# class that loads them, their class, the pipeline task, and a title. Their image processor is Transformers' own.
DENSE_MODELS = {
    "soft_rt_detr": ("AutoModelForObjectDetection", "SoftRTDetrForObjectDetection", "object-detection", "RT-DETR"),
    "soft_upernet": (
        "AutoModelForSemanticSegmentation",
        "SoftUperNetForSemanticSegmentation",
        "image-segmentation",
        "UperNet",
    ),
}
DENSE_CODE_FILES = (
    "configuration_soft.py",
    "modeling_soft.py",
    "soft_attention.py",
    "configuration_soft_dense.py",
    "modeling_soft_dense.py",
)
# Every export lists the files it wrote (with their SHA-256) here. An existing output folder is replaced only if the
# manifest accounts for every file in it, unchanged: files of anyone else are never deleted or overwritten.
EXPORT_MANIFEST_NAME = "export_manifest.json"
EXPORT_MANIFEST_FORMAT = "soft-hf export manifest 1"
# Never uploaded to the Hub: version-control, caches, byte code, OS litter.
UPLOAD_IGNORED_DIRECTORIES = {".git", "__pycache__", ".cache", ".ipynb_checkpoints", ".hg", ".svn"}
UPLOAD_IGNORED_FILES = {".DS_Store", "Thumbs.db"}

# ImageNet-1k top-1 reported by the authors (not measured here). Plain SOFT: NeurIPS 2021 paper table, repeated in the
# official README. SOFT-Norm: the official README (github.com/fudan-zvg/SOFT, IJCV 2024 extension). Params/GFLOPs are
# the authors' figures; the official code's "small" preset has 38.9M parameters, not the 24M listed.
PAPER_RESULTS = {
    "tiny": {"params": "13M", "gflops": "1.9", "top1": "79.3", "top1_norm": "79.4"},
    "small": {"params": "24M", "gflops": "3.3", "top1": "82.2", "top1_norm": "82.4"},
    "medium": {"params": "45M", "gflops": "7.2", "top1": "82.9", "top1_norm": "83.1"},
    "large": {"params": "64M", "gflops": "11.0", "top1": "83.1", "top1_norm": "83.3"},
    "huge": {"params": "87M", "gflops": "16.3", "top1": "83.3", "top1_norm": "83.4"},
}
# Official checkpoints listed in the official README (the other presets have configs but no published weights).
OFFICIAL_CHECKPOINTS = {"soft-tiny", "soft-norm-tiny", "soft-norm-small", "soft-norm-medium", "soft-norm-large"}


# ----------------------------------------------------------------------------------------------------------------
# Code files and auto maps
# ----------------------------------------------------------------------------------------------------------------


def _module_file(cls: type) -> pathlib.Path:
    module = sys.modules.get(cls.__module__)
    path = getattr(module, "__file__", None)
    if path is None:
        raise ValueError(
            f"Cannot find the source file of {cls.__qualname__} (module {cls.__module__!r}); classes defined in "
            "__main__ or notebooks cannot be exported. Use the classes of soft_hf or of a trust_remote_code checkpoint."
        )
    return pathlib.Path(path).resolve()


def _with_relative_imports(module_file: pathlib.Path) -> dict[str, pathlib.Path]:
    files = {module_file.name: module_file}
    for needed in get_relative_import_files(str(module_file)):
        needed = pathlib.Path(needed)
        if not needed.is_file():
            raise ValueError(f"{module_file.name} imports `.{needed.stem}`, but {needed} does not exist.")
        files[needed.name] = needed
    return files


def collect_code_files(model, image_processor=None) -> dict[str, pathlib.Path]:
    """The flat code files of an export, by file name.

    Model and configuration files (and whatever they import with `from .x import`) come from the directory of the
    model class's module: `soft_hf/models/soft/` for installed classes, `transformers_modules/...` for a model loaded
    with `trust_remote_code=True`. The image processor file comes from the processor's class when it is a SOFT
    processor, otherwise from `soft_hf/models/soft/`."""
    files = _with_relative_imports(_module_file(type(model)))
    files.update({k: v for k, v in _with_relative_imports(_module_file(type(model.config))).items() if k not in files})
    processor_class = type(image_processor) if image_processor is not None else None
    dense = model.config.model_type in DENSE_MODELS
    if processor_class is not None and processor_class.__name__ in IMAGE_PROCESSOR_CLASSES.values():
        files.update(_with_relative_imports(_module_file(processor_class)))
    elif not dense:
        files.update(_with_relative_imports(MODEL_CODE_DIR / "image_processing_soft.py"))
    missing = [name for name in (DENSE_CODE_FILES if dense else REQUIRED_CODE_FILES) if name not in files]
    if missing:
        raise ValueError(f"Cannot export: the code files {missing} were not found beside {_module_file(type(model))}.")
    return files


def model_auto_map(model) -> dict[str, str]:
    """`auto_map` of config.json: `module.Class` entries for AutoConfig and the three model Auto classes (a dense
    model: AutoConfig and its task's Auto class)."""
    model_module = type(model).__module__
    config_class = type(model.config)
    config_reference = f"{config_class.__module__.rsplit('.', 1)[-1]}.{config_class.__name__}"
    if model.config.model_type in DENSE_MODELS:
        auto_class, class_name, _, _ = DENSE_MODELS[model.config.model_type]
        return {"AutoConfig": config_reference, auto_class: f"{model_module.rsplit('.', 1)[-1]}.{class_name}"}
    module = sys.modules[model_module]
    missing = [name for name in MODEL_AUTO_CLASSES.values() if not hasattr(module, name)]
    if missing:
        raise ValueError(f"{model_module} does not define {missing}; export needs the SOFT modeling file.")
    auto_map = {"AutoConfig": config_reference}
    for auto_class, class_name in MODEL_AUTO_CLASSES.items():
        auto_map[auto_class] = f"{model_module.rsplit('.', 1)[-1]}.{class_name}"
    return auto_map


def image_processor_auto_map() -> dict[str, dict[str, str]]:
    """`auto_map` of preprocessor_config.json: one class per backend (Transformers 5 format)."""
    return {"AutoImageProcessor": {b: f"image_processing_soft.{name}" for b, name in IMAGE_PROCESSOR_CLASSES.items()}}


def _check_model(model) -> None:
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) in DENSE_MODELS:
        expected = DENSE_MODELS[config.model_type][1]
        if type(model).__name__ != expected:
            raise ValueError(f"A {config.model_type!r} model must be a {expected}, got {type(model).__name__}.")
        return
    if not isinstance(model, torch.nn.Module) or getattr(config, "model_type", None) != SoftConfig.model_type:
        raise ValueError(
            f"export_pretrained expects a SOFT model (SoftForImageClassification, SoftModel or SoftBackbone), got "
            f"{type(model).__name__}" + (f" with model_type {config.model_type!r}." if config is not None else ".")
        )
    if type(model).__name__ not in MODEL_AUTO_CLASSES.values():
        raise ValueError(
            f"export_pretrained exports SoftForImageClassification, SoftModel or SoftBackbone, got "
            f"{type(model).__name__}: export the SOFT model inside it instead."
        )


# ----------------------------------------------------------------------------------------------------------------
# Model cards
# ----------------------------------------------------------------------------------------------------------------


def detect_preset(config) -> str | None:
    """Preset name (`soft-tiny`, `soft-norm-small`, ...) whose architecture `config` has, or None."""
    for size, preset in SOFT_PRESETS.items():
        if all(list(getattr(config, key)) == list(value) for key, value in preset.items()):
            if tuple(config.sr_ratios) != (8, 4, 2, 1) or tuple(config.skip_conv_kernel_sizes) != (9, 5, 3):
                return None
            return f"soft-norm-{size}" if config.normalization == "symmetric" else f"soft-{size}"
    return None


def preset_title(preset: str) -> str:
    size = preset.rsplit("-", 1)[-1].capitalize()
    return f"SOFT-{size}-Norm" if preset.startswith("soft-norm-") else f"SOFT-{size}"


def count_parameters(config) -> int:
    """Parameters of `SoftForImageClassification(config)`, counted on the meta device (no memory, no init)."""
    from ..models.soft.modeling_soft import SoftForImageClassification

    with torch.device("meta"):
        model = SoftForImageClassification(SoftConfig(**config.to_dict()))
    return sum(parameter.numel() for parameter in model.parameters())


def _format_count(count: int) -> str:
    return f"{count / 1e6:.1f}M" if count >= 1e5 else f"{count / 1e3:.1f}K"


def _architecture_section(config, num_parameters: int | None) -> str:
    stages = [
        "| stage | blocks | attention | width | heads | landmark stride r | skip conv on V |",
        "|---|---|---|---|---|---|---|",
    ]
    for index in range(4):
        soft_stage = index < 3
        stages.append(
            f"| {index + 1} | {config.depths[index]} | "
            + ("SOFT (post-norm)" if soft_stage else "softmax (pre-norm) + class token")
            + f" | {config.hidden_sizes[index]} | {config.num_attention_heads[index]} | "
            + (f"{config.sr_ratios[index]}" if soft_stage else "-")
            + " | "
            + (f"{config.skip_conv_kernel_sizes[index]}x{config.skip_conv_kernel_sizes[index]}" if soft_stage else "-")
            + " |"
        )
    details = [
        f"- Parameters: {_format_count(num_parameters)} ({num_parameters:,})" if num_parameters else None,
        f"- Classes: {config.num_labels}",
        f"- Normalisation of the landmark inverse: `{config.normalization}`"
        + (" (SOFT-Norm: D^-1/2 A^+ D^-1/2)" if config.normalization == "symmetric" else " (plain SOFT)"),
        f"- Inverse: `{config.inverse_method}`, {config.newton_iterations} Newton-Raphson steps, ridge {config.ridge}, "
        f"one step size per {NEWTON_SCOPE_WORDS[config.step_scope]}, {config.inverse_backward} backward",
        "- Landmarks: stride-r convolution of the query map (m = HW / r^2)"
        + (f", pooled to at most {config.max_landmarks}" if config.max_landmarks else ""),
        f"- Position embeddings learned at {config.image_size} x {config.image_size}, resized bilinearly to other "
        "sizes",
        "- Stem: three 3x3 convolutions (strides 2, 1, 2) with BatchNorm and ReLU; later stages downsample with a "
        "3x3 stride-2 convolution",
    ]
    return "\n".join(stages) + "\n\n" + "\n".join(line for line in details if line)


def _paper_results_section(preset: str | None) -> str:
    rows = [
        "| model | params (paper) | GFLOPs | top-1 % | source |",
        "|---|---|---|---|---|",
    ]
    for size, result in PAPER_RESULTS.items():
        for norm in (False, True):
            name = f"soft-norm-{size}" if norm else f"soft-{size}"
            title = preset_title(name)
            top1 = result["top1_norm" if norm else "top1"]
            source = "official README (IJCV 2024 extension)" if norm else "NeurIPS 2021 paper"
            cells = [title, result["params"], result["gflops"], top1, source]
            if name == preset:
                cells = [f"**{cell}**" for cell in cells[:4]] + [cells[4]]
            rows.append("| " + " | ".join(cells) + " |")
    note = (
        "ImageNet-1k validation top-1 at 224 x 224 as reported by the authors: SOFT rows from the NeurIPS 2021 paper "
        "(also in the official README), SOFT-Norm rows from the README of the official repository (see the IJCV 2024 "
        "paper for details). They are **not** measurements of this repository's weights. Parameter counts are the "
        "authors' figures: the official code's SOFT-Small preset has 38.9M parameters, not 24M."
    )
    if preset is None:
        note += " This model is not one of the official presets, so none of the rows describes it."
    return note + "\n\n" + "\n".join(rows)


def _metric_rows(metrics: Mapping[str, Any]) -> list[tuple[str, float]]:
    rows = []
    for name, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
            continue
        rows.append((name[len("eval_") :] if name.startswith("eval_") else name, float(value)))
    return rows


def _is_quality_metric(name: str) -> bool:
    return not (name in ("epoch", "step") or name.endswith(("runtime", "_per_second")))


def _eval_results(task_type: str, dataset_name: str | None, metric_rows: list[tuple[str, float]]):
    """model-index entries of the card metadata: only quality metrics measured on a named dataset, else None."""
    if not (dataset_name and metric_rows):
        return None
    return [
        EvalResult(
            task_type=task_type,
            dataset_type=dataset_name,
            dataset_name=dataset_name,
            metric_type=name,
            metric_value=value,
        )
        for name, value in metric_rows
        if _is_quality_metric(name)
    ] or None


def render_model_card(
    config,
    *,
    num_parameters: int | None = None,
    metrics: Mapping[str, Any] | None = None,
    dataset_name: str | None = None,
    provenance: str | None = None,
    repo_id: str | None = None,
    license: str = "apache-2.0",
    datasets: list[str] | None = None,
    template: str | os.PathLike | None = None,
) -> str:
    """The README.md of a SOFT repository, from the template `soft_hf/hub/model_card_template.md`.

    Hub metadata: library_name, pipeline_tag, license, datasets, tags, and a model-index only when `metrics` were
    measured on a named `dataset_name`. The authors' ImageNet table is always shown as theirs."""
    template_path = pathlib.Path(template) if template is not None else MODEL_CARD_TEMPLATE
    if not template_path.is_file():
        raise ValueError(
            f"Model card template not found at {template_path} (package data of soft_hf: reinstall soft-hf) or pass "
            "the card text with `model_card=`."
        )
    preset = detect_preset(config)
    title = preset_title(preset) if preset else "SOFT"
    variant = "SOFT-Norm" if config.normalization == "symmetric" else "SOFT"
    repo_id = repo_id or (f"<namespace>/{preset}" if preset else "<namespace>/<repository>")
    metric_rows = _metric_rows(metrics or {})
    architectures = getattr(config, "architectures", None) or ["SoftForImageClassification"]
    is_classifier = architectures[0] == "SoftForImageClassification"

    tags = ["image-classification", "vision", "soft", "softmax-free-attention", "custom_code"]
    dataset_ids = list(datasets) if datasets is not None else ([dataset_name] if dataset_name else None)
    eval_results = _eval_results("image-classification", dataset_name, metric_rows)
    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag="image-classification" if is_classifier else "image-feature-extraction",
        license=license,
        datasets=dataset_ids,
        tags=tags,
        model_name=repo_id.rsplit("/", 1)[-1] if eval_results else None,
        eval_results=eval_results,
    )

    kind = (
        f"image classifier ({config.num_labels} classes"
        if is_classifier
        else f"feature extractor (`{architectures[0]}`, no classification head"
    )
    summary = (
        f"{title} {kind}"
        + (f", {_format_count(num_parameters)} parameters" if num_parameters else "")
        + (", official preset" if preset else ", custom architecture (not one of the official presets)")
        + ") in Hugging Face Transformers format, loadable with `trust_remote_code=True`."
    )
    if variant == "SOFT-Norm":
        variant_sentence = (
            "This is the SOFT-Norm variant: the landmark inverse is symmetrically normalised, "
            "D^-1/2 A^+ D^-1/2 with D the row sums of the landmark kernel, which generalises better to the larger "
            "inputs of detection and segmentation."
        )
    else:
        variant_sentence = "This is the plain SOFT variant of the NeurIPS 2021 paper (no normalisation of the inverse)."
    if provenance is None:
        provenance = (
            "Exported with soft-hf. The exporter was not told where these weights come from (training run, "
            "fine-tuning or conversion); the repository owner should state it here."
        )
    if metric_rows:
        evaluation = (
            "Measured by the run that produced these weights"
            + (f" on `{dataset_name}`" if dataset_name else " (dataset not recorded, so no model-index entry)")
            + ":\n\n| metric | value |\n|---|---|\n"
            + "\n".join(f"| {name} | {value:.6g} |" for name, value in metric_rows)
        )
    else:
        evaluation = (
            "No evaluation of these weights was run when this card was written; the table above is the authors' and "
            "does not describe these weights unless they are the authors' own checkpoint."
        )

    text = pathlib.Path(template_path).read_text(encoding="utf-8")
    return string.Template(text).substitute(
        metadata=card_data.to_yaml().strip(),
        title=title,
        summary=summary,
        variant_sentence=variant_sentence,
        provenance=provenance.strip(),
        repo_id=repo_id,
        architecture=_architecture_section(config, num_parameters),
        paper_results=_paper_results_section(preset),
        evaluation=evaluation,
    )


# The official dense-prediction results (README of github.com/fudan-zvg/SOFT, SOFT-Norm backbones, 1x schedule):
# COCO box / mask mAP and ADE20K mIoU. The authors' figures, not measurements of this repository's weights.
OFFICIAL_DENSE_RESULTS = (
    "| backbone | RetinaNet box mAP | Mask R-CNN box mAP | Mask R-CNN mask mAP | UperNet ADE20K mIoU |\n"
    "|---|---|---|---|---|\n"
    "| SOFT-Tiny-Norm | 40.0 | 41.2 | 38.2 | 46.2 |\n"
    "| SOFT-Small-Norm | 42.8 | 43.8 | 40.1 | 48.6 |\n"
    "| SOFT-Medium-Norm | 44.3 | 46.6 | 42.0 | 49.8 |\n"
    "| SOFT-Large-Norm | 45.3 | 47.0 | 42.2 | 50.4 |"
)


def render_dense_model_card(
    config,
    *,
    num_parameters: int | None = None,
    metrics: Mapping[str, Any] | None = None,
    dataset_name: str | None = None,
    provenance: str | None = None,
    repo_id: str | None = None,
    license: str = "apache-2.0",
) -> str:
    """The README.md of a detector (`soft_rt_detr`) or segmenter (`soft_upernet`) on a SOFT backbone."""
    auto_class, class_name, task, head = DENSE_MODELS[config.model_type]
    backbone = config.backbone_config
    preset = detect_preset(backbone)
    backbone_title = preset_title(preset) if preset else "SOFT"
    repo_id = repo_id or "<namespace>/<repository>"
    metric_rows = _metric_rows(metrics or {})
    eval_results = _eval_results(task, dataset_name, metric_rows)
    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag=task,
        license=license,
        datasets=[dataset_name] if dataset_name else None,
        tags=[task, "vision", "soft", "softmax-free-attention", head.lower(), "custom_code"],
        model_name=repo_id.rsplit("/", 1)[-1] if eval_results else None,
        eval_results=eval_results,
    )
    labels = ", ".join(str(config.id2label[index]) for index in sorted(config.id2label))
    if metric_rows:
        evaluation = (
            "Measured by the run that produced these weights"
            + (f" on `{dataset_name}`" if dataset_name else "")
            + ":\n\n| metric | value |\n|---|---|\n"
            + "\n".join(f"| {name} | {value:.6g} |" for name, value in metric_rows)
        )
    else:
        evaluation = "No evaluation of these weights was recorded when this card was written."
    if provenance is None:
        provenance = "Exported with soft-hf; the repository owner should state where these weights come from."
    landmarks = (
        f"at most {backbone.max_landmarks} landmarks per SOFT stage (memory linear in the pixel count)"
        if backbone.max_landmarks
        else "the official landmark rule (m = HW / r^2 per SOFT stage)"
    )
    if task == "object-detection":
        snippet = (
            "```python\nfrom transformers import pipeline\n\n"
            f'detector = pipeline("object-detection", model="{repo_id}", trust_remote_code=True)\n'
            'print(detector("image.jpg", threshold=0.5))  # [{"score", "label", "box": {xmin, ymin, xmax, ymax}}]\n```'
        )
    else:
        snippet = (
            "```python\nfrom transformers import pipeline\n\n"
            f'segmenter = pipeline("image-segmentation", model="{repo_id}", trust_remote_code=True)\n'
            'masks = segmenter("image.jpg")  # one {"label", "mask": PIL image} per class present\n```'
        )
    lines = [
        "---",
        card_data.to_yaml().strip(),
        "---",
        "",
        f"# {backbone_title} {head}",
        "",
        f"{head} ({task}, {config.num_labels} classes"
        + (f", {_format_count(num_parameters)} parameters" if num_parameters else "")
        + f") on a {backbone_title} backbone (SOFT, Softmax-Free Transformer: Lu et al., NeurIPS 2021; SOFT-Norm: "
        "Lu et al., IJCV 2024) in Hugging Face Transformers format. The head, losses and post-processing are "
        f"Transformers' own `{class_name.replace('Soft', '', 1)}`; the SOFT backbone code ships with this repository, so "
        "loading needs `trust_remote_code=True` and nothing else (no soft-hf install).",
        "",
        f"- Classes: {labels}",
        f"- Backbone: {backbone_title}, feature maps {', '.join(backbone.out_features)}, {landmarks}",
        "",
        "## Usage",
        "",
        snippet,
        "",
        "```python",
        f"from transformers import AutoImageProcessor, {auto_class}",
        "",
        f'processor = AutoImageProcessor.from_pretrained("{repo_id}")',
        f'model = {auto_class}.from_pretrained("{repo_id}", trust_remote_code=True).eval()',
        "```",
        "",
        "## Weights and provenance",
        "",
        provenance.strip(),
        "",
        "## Evaluation",
        "",
        evaluation,
        "",
        "## The authors' dense-prediction results",
        "",
        "For reference, the official release's SOFT-Norm backbones (ImageNet-pretrained, COCO 1x schedule, ADE20K "
        "160k): the authors' figures with other heads (RetinaNet, Mask R-CNN), not measurements of these weights.",
        "",
        OFFICIAL_DENSE_RESULTS,
        "",
    ]
    return "\n".join(lines)


def preset_provenance(preset: str) -> str:
    """Provenance paragraph of the committed per-preset cards (weights converted from the official release)."""
    title = preset_title(preset)
    if preset in OFFICIAL_CHECKPOINTS:
        availability = f"The official README lists a released {title} checkpoint."
    else:
        availability = (
            f"The official README lists no released {title} checkpoint (only its config), so a repository with this "
            "card holds weights only if someone trained them; replace this paragraph with their origin."
        )
    return (
        f"Intended for the {title} weights of the official release, converted with soft-hf's "
        "`scripts/convert_original_checkpoint.py` (a key-by-key rename; the state dict is read with "
        "`torch.load(weights_only=True)`; depths and widths are read from the checkpoint itself). "
        f"{availability} The ImageNet-1k class names are timm's copy of the WordNet synset descriptions. "
        "No accuracy was measured by soft-hf for these weights: the table below is the authors'. Weights of the "
        "official release are under the MIT license of github.com/fudan-zvg/SOFT; the code files are Apache-2.0."
    )


def write_preset_cards(directory: str | os.PathLike = MODEL_CARDS_DIR) -> list[pathlib.Path]:
    """(Re)write `model_cards/<preset>.md` (relative to the current folder: run at the root of a checkout) for every
    official preset from the template."""
    directory = pathlib.Path(directory)
    written = []
    for size in SOFT_PRESETS:
        for preset in (f"soft-{size}", f"soft-norm-{size}"):
            config = SoftConfig.from_preset(preset, num_labels=1000)
            card = render_model_card(
                config,
                num_parameters=count_parameters(config),
                provenance=preset_provenance(preset),
                repo_id=f"<namespace>/{preset}",
                license="mit",
                datasets=["imagenet-1k"],
            )
            path = directory / f"{preset}.md"
            path.write_text(card, encoding="utf-8")
            written.append(path)
    return written


# ----------------------------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------------------------


def validate_export_folder(folder: str | os.PathLike) -> pathlib.Path:
    """Check that `folder` is a complete Hub-ready SOFT repository; raise one `ValueError` listing every problem."""
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder.")
    problems = []
    config = _read_json(folder / "config.json", problems)
    dense = config is not None and config.get("model_type") in DENSE_MODELS
    for name in ("config.json", "preprocessor_config.json", "README.md") + (
        DENSE_CODE_FILES if dense else REQUIRED_CODE_FILES
    ):
        if not (folder / name).is_file():
            problems.append(f"missing {name}")
    if not (folder / "model.safetensors").is_file() and not (folder / "model.safetensors.index.json").is_file():
        problems.append("missing model.safetensors (or model.safetensors.index.json)")
    if (folder / "pytorch_model.bin").exists():
        problems.append("pytorch_model.bin present: Hub-ready folders carry safetensors only")
    if config is not None:
        auto_map = config.get("auto_map") or {}
        needed = (DENSE_MODELS[config["model_type"]][0],) if dense else tuple(MODEL_AUTO_CLASSES)
        for auto_class in ("AutoConfig",) + needed:
            if auto_class not in auto_map:
                problems.append(f"config.json auto_map lacks {auto_class}")
        for reference in auto_map.values():
            _check_reference(folder, reference, problems)
        if config.get("model_type") != SoftConfig.model_type and not dense:
            problems.append(f"config.json model_type is {config.get('model_type')!r}, not 'soft'")
        if dense and (config.get("backbone_config") or {}).get("model_type") != SoftConfig.model_type:
            problems.append("config.json backbone_config is not a SOFT config")
    processor = _read_json(folder / "preprocessor_config.json", problems)
    if processor is not None:
        reference = (processor.get("auto_map") or {}).get("AutoImageProcessor")
        if reference is None and not dense:
            problems.append("preprocessor_config.json auto_map lacks AutoImageProcessor")
        for value in reference.values() if isinstance(reference, dict) else [reference] if reference else []:
            _check_reference(folder, value, problems)
    for path in folder.glob("*.py"):
        try:
            compile(path.read_text(encoding="utf-8"), str(path), "exec")
        except SyntaxError as error:
            problems.append(f"{path.name} does not compile: {error}")
        if "from soft_hf" in path.read_text(encoding="utf-8") or "import soft_hf" in path.read_text(encoding="utf-8"):
            problems.append(f"{path.name} imports soft_hf, which users of the checkpoint do not have")
    readme = folder / "README.md"
    if readme.is_file() and not readme.read_text(encoding="utf-8").startswith("---\n"):
        problems.append("README.md has no YAML metadata block")
    if problems:
        raise ValueError(f"{folder} is not a Hub-ready SOFT repository:\n  - " + "\n  - ".join(problems))
    return folder


def _read_json(path: pathlib.Path, problems: list[str]) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        problems.append(f"{path.name} is not valid JSON: {error}")
        return None


def _check_reference(folder: pathlib.Path, reference: Any, problems: list[str]) -> None:
    if not isinstance(reference, str) or reference.count(".") != 1:
        problems.append(f"auto_map entry {reference!r} is not of the form module.Class")
        return
    module, class_name = reference.split(".")
    path = folder / f"{module}.py"
    if not path.is_file():
        problems.append(f"auto_map entry {reference} needs {module}.py")
    elif f"class {class_name}(" not in path.read_text(encoding="utf-8"):
        problems.append(f"auto_map entry {reference}: {module}.py defines no class {class_name}")


_REMOTE_CHECK = textwrap.dedent(
    """
    import json, sys, torch
    from transformers import AutoConfig, AutoImageProcessor, AutoModel
    folder = sys.argv[1]
    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    processor = AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)
    size = processor.crop_size["height"] if processor.do_center_crop else max(64, config.image_size)
    with torch.no_grad():
        output = model(torch.randn(1, config.num_channels, size, size, generator=torch.Generator().manual_seed(0)))
    print(json.dumps({
        "modules": [type(config).__module__, type(model).__module__, type(processor).__module__],
        "finite": bool(torch.isfinite(output.pooler_output).all()),
    }))
    """
)


_DENSE_REMOTE_CHECK = textwrap.dedent(
    """
    import json, sys, numpy, torch
    from PIL import Image
    from transformers import AutoConfig, AutoImageProcessor, pipeline
    folder, task = sys.argv[1], sys.argv[2]
    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    runner = pipeline(task, model=folder, trust_remote_code=True)
    image = Image.fromarray(numpy.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=numpy.uint8))
    outputs = runner(image, **({"threshold": 0.0} if task == "object-detection" else {}))
    print(json.dumps({
        "modules": [type(config).__module__, type(runner.model).__module__],
        "finite": all(torch.isfinite(p).all().item() for p in runner.model.parameters()),
        "outputs": len(outputs),
    }))
    """
)


def verify_remote_loading(folder: str | os.PathLike, timeout: float = 300) -> dict:
    """Load `folder` with `trust_remote_code=True` in a fresh Python that never imports soft_hf (offline, with a
    temporary modules cache) and run one forward pass; raise `ValueError` with the child's error output on failure."""
    folder = pathlib.Path(folder).resolve()
    with tempfile.TemporaryDirectory(prefix="soft-remote-check-") as home:
        environment = dict(os.environ, HF_HOME=home, HF_MODULES_CACHE=os.path.join(home, "modules"), HF_HUB_OFFLINE="1")
        environment.pop("PYTHONPATH", None)
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        command = [sys.executable, "-c", _REMOTE_CHECK, str(folder)]
        if config.get("model_type") in DENSE_MODELS:
            command = [sys.executable, "-c", _DENSE_REMOTE_CHECK, str(folder), DENSE_MODELS[config["model_type"]][2]]
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=environment,
            cwd=home,
        )
    if result.returncode != 0:
        raise ValueError(f"{folder} does not load with trust_remote_code=True:\n{result.stderr[-4000:]}")
    report = json.loads(result.stdout.strip().splitlines()[-1])
    if not all(module.startswith("transformers_modules") for module in report["modules"]) or not report["finite"]:
        raise ValueError(
            f"Loading {folder} with remote code did not use the folder's code or gave non-finite outputs: {report}"
        )
    return report


def push_to_hub(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool = False,
    revision: str | None = None,
    commit_message: str = "Upload SOFT",
    check_remote_loading: bool = True,
) -> dict:
    """Validate a Hub-ready folder (and, by default, load it with remote code in a fresh process), create the
    repository (and `revision` branch) if needed and upload exactly the files of `upload_file_list(folder)` (every
    file but version-control folders, caches and byte code); files of the Hub repository that the folder does not
    have are left alone. Returns the repo and commit URLs and the uploaded files."""
    from huggingface_hub import create_branch, create_repo, upload_folder

    folder = validate_export_folder(folder)
    if check_remote_loading:
        verify_remote_loading(folder)
    files = upload_file_list(folder)
    repo_url = create_repo(repo_id, private=private, exist_ok=True, token=token, repo_type="model")
    if revision:
        create_branch(repo_id, branch=revision, exist_ok=True, token=token)
    commit = upload_folder(
        repo_id=repo_id,
        folder_path=folder,
        revision=revision,
        commit_message=commit_message,
        token=token,
        allow_patterns=files,
    )
    return {"repo_url": str(repo_url), "commit_url": str(getattr(commit, "commit_url", commit)), "files": files}


def upload_file_list(folder: str | os.PathLike) -> list[str]:
    """The files of `folder` that are uploaded to the Hub, as sorted relative POSIX paths: everything except
    version-control folders (`.git/`), caches (`__pycache__/`, `.cache/`), byte code and OS litter."""
    folder = pathlib.Path(folder)
    files = []
    for directory, subdirectories, names in os.walk(folder):
        subdirectories[:] = [name for name in subdirectories if name not in UPLOAD_IGNORED_DIRECTORIES]
        for name in names:
            if name in UPLOAD_IGNORED_FILES or name.endswith((".pyc", ".pyo")):
                continue
            files.append((pathlib.Path(directory) / name).relative_to(folder).as_posix())
    return sorted(files)


# ----------------------------------------------------------------------------------------------------------------
# Export
# ----------------------------------------------------------------------------------------------------------------


def _sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _folder_files(folder: pathlib.Path) -> list[str]:
    """Every file (and symlink) under `folder` as sorted relative POSIX paths, and empty folders as `name/`."""
    found = []
    for directory, subdirectories, names in os.walk(folder):
        found.extend((pathlib.Path(directory) / name).relative_to(folder).as_posix() for name in names)
        if not names and not subdirectories and pathlib.Path(directory) != folder:
            found.append(pathlib.Path(directory).relative_to(folder).as_posix() + "/")  # an empty folder
    return sorted(found)


def read_export_manifest(folder: str | os.PathLike) -> dict[str, str] | None:
    """`{relative path: sha256}` of the files an export wrote into `folder`, or None without a (valid) manifest."""
    path = pathlib.Path(folder) / EXPORT_MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != EXPORT_MANIFEST_FORMAT:
        return None
    files = manifest.get("files")
    return dict(files) if isinstance(files, dict) else None


def files_not_from_export(folder: str | os.PathLike) -> list[str]:
    """Files in `folder` that no export wrote: not listed in its manifest, or changed since (`name (changed since
    the export)`). Every file counts when the folder has no manifest."""
    folder = pathlib.Path(folder)
    manifest = read_export_manifest(folder) or {}
    foreign = []
    for name in _folder_files(folder):
        if name == EXPORT_MANIFEST_NAME and manifest:
            continue
        path = folder / name
        if name not in manifest or path.is_symlink() or not path.is_file():
            foreign.append(name)
        elif _sha256(path) != manifest[name]:
            foreign.append(f"{name} (changed since the export)")
    return foreign


def _check_replaceable(output_dir: pathlib.Path, overwrite: bool) -> None:
    """Refuse to write into a folder holding anything an earlier export did not write (listing it), and to replace
    an earlier export unless `overwrite`."""
    if not output_dir.exists() and not output_dir.is_symlink():
        return
    if not output_dir.is_dir() or output_dir.is_symlink():
        raise ValueError(f"{output_dir} exists and is not a folder; choose another output path.")
    if not any(output_dir.iterdir()):
        return  # an empty folder
    foreign = files_not_from_export(output_dir)
    if foreign:
        listed = "\n  - ".join(foreign[:20]) + (f"\n  ... and {len(foreign) - 20} more" if len(foreign) > 20 else "")
        raise ValueError(
            f"{output_dir} holds files that no earlier export wrote (per its {EXPORT_MANIFEST_NAME}):\n  - {listed}\n"
            "Refusing to export there, so that none of them is deleted or overwritten: export to a new or empty "
            "folder, or move these files away first."
        )
    if not overwrite:
        raise ValueError(
            f"{output_dir} holds an earlier export. Pass overwrite=True (--overwrite on the command line) to replace "
            "it, or export to a new folder."
        )


def _exchange_paths(first: pathlib.Path, second: pathlib.Path) -> bool:
    """Swap two existing paths in one step with Linux's `renameat2(RENAME_EXCHANGE)`. Returns False where that is
    not available (other systems, old kernels, file systems without support)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    renameat2.restype = ctypes.c_int
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(first), at_fdcwd, os.fsencode(second), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(second))


def _backup_name(destination: pathlib.Path) -> str:
    return f".{destination.name}.old-"


@contextlib.contextmanager
def staged_folder(output_dir: pathlib.Path):
    """A fresh folder beside `output_dir` (same file system, ordinary permissions) to write an export into; when the
    block ends it is swapped into place (`replace_folder`), and when the block raises it is deleted, so `output_dir`
    is never left half-written."""
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = pathlib.Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.tmp-", dir=output_dir.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)  # mkdtemp makes it private; the export is an ordinary folder
    try:
        yield staging
        replace_folder(staging, output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def replace_folder(staging: str | os.PathLike, destination: str | os.PathLike, exchange: bool = True) -> None:
    """Move the complete folder `staging` to `destination`, replacing what is there.

    On Linux the two folders are swapped in one atomic step (`renameat2(RENAME_EXCHANGE)`), so at every moment
    `destination` names either the old or the new complete folder, whenever the process is killed; the old folder
    is then deleted. Elsewhere (or with `exchange=False`) the old folder is first renamed to a hidden backup beside
    it, restored if the second rename fails, and restored by `restore_interrupted_replace` if the process died
    between the two renames."""
    staging, destination = pathlib.Path(staging), pathlib.Path(destination)
    if not destination.exists():
        os.rename(staging, destination)
        return
    if exchange and _exchange_paths(staging, destination):
        shutil.rmtree(staging, ignore_errors=True)  # now the old folder
        return
    backup = destination.with_name(_backup_name(destination) + uuid.uuid4().hex[:8])
    os.rename(destination, backup)
    try:
        os.rename(staging, destination)
    except BaseException:
        os.rename(backup, destination)
        raise
    shutil.rmtree(backup, ignore_errors=True)


def restore_interrupted_replace(destination: str | os.PathLike) -> pathlib.Path | None:
    """If `destination` is missing because a `replace_folder` without atomic exchange was killed between its two
    renames, rename the hidden backup (the old complete folder) back. Returns the restored path, or None."""
    destination = pathlib.Path(destination)
    if destination.exists() or not destination.parent.is_dir():
        return None
    backups = sorted(
        (path for path in destination.parent.glob(_backup_name(destination) + "*") if path.is_dir()),
        key=lambda path: path.stat().st_mtime,
    )
    if not backups:
        return None
    os.rename(backups[-1], destination)
    return destination


def _write_json(path: pathlib.Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def export_pretrained(
    model,
    output_dir,
    *,
    image_processor=None,
    model_card: str | None = None,
    metrics: dict | None = None,
    dataset_name: str | None = None,
    provenance: str | None = None,
    repo_id: str | None = None,
    license: str = "apache-2.0",
    overwrite: bool = False,
    extra_files: Mapping[str, str | os.PathLike] | None = None,
) -> pathlib.Path:
    """Write a Hub-ready folder atomically (temp dir beside `output_dir`, then swapped in, see `replace_folder`).

    Contents: `config.json` whose `auto_map` covers AutoConfig, AutoModel, AutoModelForImageClassification and
    AutoBackbone; `model.safetensors`; `preprocessor_config.json` (`image_processor` or a default
    `SoftImageProcessor`) with its own `auto_map` for AutoImageProcessor (torchvision and PIL backends); the flat code
    files (configuration_soft.py, modeling_soft.py, soft_attention.py, image_processing_soft.py and any flat module
    they import with `from .x import`); `README.md` (`model_card` text if given, else generated from
    `soft_hf/hub/model_card_template.md` with the config, `metrics` measured on `dataset_name`, `provenance` and
    `repo_id`); `export_manifest.json`, the SHA-256 of every file written.

    Nothing that an export did not write is ever deleted or overwritten: an existing `output_dir` must be empty or
    hold only the unchanged files of an earlier export (listed in its manifest), and the latter is replaced only with
    `overwrite=True`. Anything else is refused with a `ValueError` listing the files.

    Works for models of soft_hf and for models loaded with `trust_remote_code=True` (classes in
    `transformers_modules`): code files are copied from the directory of the model class's module.

    Args:
        model: `SoftForImageClassification`, `SoftModel` or `SoftBackbone` (from soft_hf or remote code), or a dense
            model on a SOFT backbone (`SoftRTDetrForObjectDetection`, `SoftUperNetForSemanticSegmentation`: its
            `auto_map` names AutoConfig and the task's Auto class, its processor is Transformers' own and required).
        output_dir: the folder to write: new, empty, or an earlier export (replaced only with `overwrite`).
        image_processor: processor to save (default: `SoftImageProcessor()`, the official evaluation transform).
        model_card: full README.md text, used as is.
        metrics: numbers measured for these weights (e.g. `{"eval_accuracy": 0.91}`), shown in the card; they go into
            the model-index metadata only together with `dataset_name`.
        dataset_name: Hub id of the dataset the weights were trained/evaluated on (e.g. `"imagenet-1k"`).
        provenance: where the weights come from (conversion, training run); shown in the card.
        repo_id: Hub repository id used in the card's usage snippets.
        license: Hub license identifier of the card metadata.
        overwrite: replace an earlier export in `output_dir` (never files that an export did not write).
        extra_files: more files or folders to copy into the export, `{relative name: source path}` (e.g. the
            images of a hand-written card); they are listed in the manifest like the generated files.

    Returns:
        The path of the written folder.
    """
    _check_model(model)
    output_dir = pathlib.Path(output_dir).expanduser().absolute()
    restore_interrupted_replace(output_dir)
    _check_replaceable(output_dir, overwrite)
    dense = model.config.model_type in DENSE_MODELS
    if dense and image_processor is None:
        raise ValueError(
            f"Exporting a {type(model).__name__} needs the image processor it was trained and evaluated with "
            "(e.g. RTDetrImageProcessor or SegformerImageProcessor): pass image_processor=."
        )
    code_files = collect_code_files(model, image_processor)
    auto_map = model_auto_map(model)
    processor = image_processor if image_processor is not None else SoftImageProcessor()

    with staged_folder(output_dir) as staging:
        original_auto_map = getattr(model.config, "auto_map", None)
        model.config.auto_map = dict(auto_map)
        try:
            model.save_pretrained(staging)
        finally:
            model.config.auto_map = original_auto_map
        config_path = staging / "config.json"
        config_dict = json.loads(config_path.read_text(encoding="utf-8"))
        config_dict["auto_map"] = auto_map  # custom_object_save may have rewritten single entries
        _write_json(config_path, config_dict)

        processor.save_pretrained(staging)
        processor_path = staging / "preprocessor_config.json"
        processor_dict = json.loads(processor_path.read_text(encoding="utf-8"))
        if type(processor).__name__ in IMAGE_PROCESSOR_CLASSES.values():
            processor_dict["auto_map"] = image_processor_auto_map()
            processor_dict["image_processor_type"] = IMAGE_PROCESSOR_CLASSES["torchvision"]
        _write_json(processor_path, processor_dict)

        for name, source in code_files.items():
            shutil.copyfile(source, staging / name)

        if model_card is None:
            render = render_dense_model_card if dense else render_model_card
            model_card = render(
                model.config,
                num_parameters=sum(parameter.numel() for parameter in model.parameters()),
                metrics=metrics,
                dataset_name=dataset_name,
                provenance=provenance,
                repo_id=repo_id,
                license=license,
            )
        (staging / "README.md").write_text(model_card, encoding="utf-8")
        for name, source in (extra_files or {}).items():
            target = staging / name
            if target.exists() or pathlib.PurePosixPath(name).is_absolute() or ".." in pathlib.PurePosixPath(name).parts:
                raise ValueError(f"extra_files entry {name!r} would replace a file of the export or leave the folder.")
            target.parent.mkdir(parents=True, exist_ok=True)
            if pathlib.Path(source).is_dir():
                shutil.copytree(source, target, symlinks=False)
            else:
                shutil.copyfile(source, target)
        validate_export_folder(staging)
        manifest = {name: _sha256(staging / name) for name in _folder_files(staging)}
        _write_json(staging / EXPORT_MANIFEST_NAME, {"format": EXPORT_MANIFEST_FORMAT, "files": manifest})

        _check_replaceable(output_dir, overwrite)  # again: the folder may have changed while the model was saved
    return output_dir


__all__ = [
    "export_pretrained",
    "files_not_from_export",
    "push_to_hub",
    "read_export_manifest",
    "render_dense_model_card",
    "render_model_card",
    "replace_folder",
    "staged_folder",
    "restore_interrupted_replace",
    "upload_file_list",
    "validate_export_folder",
    "verify_remote_loading",
    "write_preset_cards",
]
