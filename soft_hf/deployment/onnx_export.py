# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""ONNX export of SOFT classifiers (logits) and backbones (feature maps) with dynamic batch, height and width: the
`soft-export-onnx` command and `export_onnx`.

    soft-export-onnx --model outputs/soft-tiny --output soft-tiny.onnx [--task classification|backbone] [--opset N]
                     [--height 224 --width 224] [--fixed-size] [--out-features stage1 stage2 stage3 stage4]

How the graph is obtained (docs/performance.md, "ONNX"): `torch.export.export(strict=False)` with explicit
`torch.export.Dim`s for batch, height and width, then `torch.onnx.export(exported_program, dynamo=True)`. Calling
`torch.onnx.export(model, dynamic_shapes=...)` directly is not safe: when tracing adds a condition on the input
size, it narrows the dynamic range to the suggested fix or falls back to another capture strategy, and the saved
graph then silently computes the example's function at every size. Here every condition ("guard") that the traced
graph relies on is read from the exported program, and the export is refused unless it is one that cannot change
values (`LAYOUT_ONLY_GUARDS`). The model computes its landmark count m = floor(h / r) floor(w / r) with shape
arithmetic, so under the official landmark rule m is a symbolic function of the input size in the graph, and one
graph is exact at every size. Configurations whose computation switches at size-dependent points
(`max_landmarks`'s pooled grid, `inverse_method="auto"`) are refused for dynamic sizes and can be exported for one
fixed size (`fixed_size=True`); `inverse_method="cholesky"` has no ONNX operator.

Before the file is written, ONNX Runtime runs the staged graph on random inputs of several shapes (batch 1 and the
example's batch, the example's size, a larger non-square size and the smallest dynamic size) and the export is
refused if any output differs from PyTorch eager by more than the tolerance. The file (and its external-data file,
if any) is written to a temporary name beside the output and renamed into place, so `output` names either the old
or the new complete model at every moment.

This module imports only `soft_hf.models`; onnx, onnxscript and onnxruntime are imported when an export runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..models.soft.configuration_soft import SoftConfig
from ..models.soft.modeling_soft import (
    SoftBackbone,
    SoftForImageClassification,
    minimum_image_size,
    stage_spatial_sizes,
)
from ..models.soft.soft_attention import AUTO_NEWTON_MAX_LANDMARKS


TASKS = ("classification", "backbone")
INPUT_NAME = "pixel_values"
# The exported example's batch: not 1, which torch.export would specialise (the graph is checked at batch 1 too).
EXAMPLE_BATCH_SIZE = 2
# Largest difference allowed between ONNX Runtime and PyTorch eager: absolute, or relative for outputs above 1.
DEFAULT_TOLERANCE = 1e-4
# Weights above this size cannot be stored inside one protobuf file (2 GiB); they go to an external-data file.
INLINE_WEIGHTS_LIMIT_BYTES = 2**31 - 2**26
# Guards the traced graph may keep because they only choose a memory layout, which ONNX graphs do not have:
# PyTorch's convolution picks channels-last or contiguous outputs depending on whether the batch is 1. The export
# check always runs ONNX Runtime at batch 1 as well.
LAYOUT_ONLY_GUARDS = frozenset({f"L['{INPUT_NAME}'].size()[0] > 1"})
# The symbolic dimensions of the graph's input, in order.
DYNAMIC_AXES = {0: "batch", 2: "height", 3: "width"}


class OnnxExportError(ValueError):
    """A model, configuration or input that cannot be exported as asked, or an exported graph that does not reproduce
    PyTorch eager; nothing was written."""


@dataclasses.dataclass
class OnnxExportReport:
    """What `export_onnx` wrote: the file, its input and outputs, which dimensions are dynamic, the input sizes it
    covers, and the checks against PyTorch eager (`max_abs_diff` per checked input shape)."""

    path: str
    task: str
    input_name: str
    output_names: list[str]
    dynamic_axes: dict[str, dict[int, str]]
    minimum_size: tuple[int, int] | None
    fixed_size: tuple[int, int] | None
    opset: int
    external_data: str | None
    tolerance: float
    checks: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------------------------------


class OnnxOutputs(nn.Module):
    """The exported function: `pixel_values` -> logits (classification) or the tuple of feature maps (backbone), as
    plain tensors named in the graph."""

    def __init__(self, model: nn.Module, task: str):
        super().__init__()
        self.model = model
        self.task = task

    def forward(self, pixel_values: torch.Tensor):
        outputs = self.model(pixel_values=pixel_values, return_dict=True)
        if self.task == "classification":
            return outputs.logits  # (batch, num_labels)
        return tuple(outputs.feature_maps)  # each (batch, channels, height / stride, width / stride)


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise OnnxExportError(f"Unknown task {task!r}: choose one of {TASKS}.")


def load_soft_model(model_or_path, task: str, out_features: Sequence[str] | None = None) -> nn.Module:
    """The SOFT model to export for `task`: `SoftForImageClassification` (classification) or `SoftBackbone`
    (backbone), given as a module or loaded from an exported folder or Hub id (a classifier's folder gives a backbone
    with its encoder's weights). Raises `OnnxExportError` for anything else."""
    _check_task(task)
    expected = "SoftForImageClassification" if task == "classification" else "SoftBackbone"
    if isinstance(model_or_path, nn.Module):
        config = getattr(model_or_path, "config", None)
        if getattr(config, "model_type", None) != SoftConfig.model_type:
            raise OnnxExportError(
                f"export_onnx exports SOFT models; got {type(model_or_path).__name__}"
                + (f" with model_type {config.model_type!r}." if config is not None else ".")
            )
        if type(model_or_path).__name__ != expected:  # by name: remote-code classes are other class objects
            raise OnnxExportError(
                f"task {task!r} exports a {expected}, got {type(model_or_path).__name__}"
                + (
                    ": load the backbone with SoftBackbone.from_pretrained(folder), which takes a classifier's "
                    "encoder weights."
                    if task == "backbone"
                    else "."
                )
            )
        if out_features is not None and list(out_features) != list(model_or_path.out_features):
            raise OnnxExportError("out_features applies to models loaded from a folder; set it in the model's config.")
        return model_or_path
    if not isinstance(model_or_path, (str, os.PathLike)):
        raise OnnxExportError(
            f"export_onnx expects a SOFT model, an exported folder or a Hub id; got {type(model_or_path).__name__}."
        )
    from transformers import PreTrainedConfig

    source = os.fspath(model_or_path)
    try:
        config_dict, _ = PreTrainedConfig.get_config_dict(source)
    except (OSError, ValueError) as error:
        raise OnnxExportError(f"Cannot read a model configuration (config.json) from {source!r}: {error}") from error
    if config_dict.get("model_type") != SoftConfig.model_type:
        raise OnnxExportError(
            f"{source} is not a SOFT model: its config.json has model_type {config_dict.get('model_type')!r}, not "
            f"{SoftConfig.model_type!r}."
        )
    model_class = SoftForImageClassification if task == "classification" else SoftBackbone
    kwargs = {"out_features": list(out_features)} if out_features is not None else {}
    try:
        model, loading_info = model_class.from_pretrained(source, output_loading_info=True, **kwargs)
    except (OSError, ValueError) as error:
        raise OnnxExportError(f"Cannot load {source} as a {expected}: {error}") from error
    if loading_info.get("missing_keys"):
        missing = sorted(loading_info["missing_keys"])
        hint = ""
        if task == "classification":
            hint = " (a backbone checkpoint has no classification head: use task='backbone')"
        raise OnnxExportError(
            f"{source} lacks weights of the {expected}{hint}: {missing[:5]}" + (" ..." if len(missing) > 5 else "")
        )
    return model


def minimum_export_size(config: SoftConfig) -> int:
    """Smallest height and width of a dynamic-size graph: every SOFT stage's landmark map (stage size // landmark
    stride) and the last stage's token map have at least 2 rows and columns. torch.export decides the layout of
    views by whether a dimension is 1; above this size none is, and the graph has no such decision left."""
    size = max(minimum_image_size(config), 2)
    ratios = config.sr_ratios[:-1]

    def too_small(side: int) -> bool:
        stages = stage_spatial_sizes(side, side)
        return min(stages[-1]) < 2 or any(min(stage) // ratio < 2 for stage, ratio in zip(stages, ratios))

    while too_small(size):
        size += 1
    return size


def check_exportable_config(config: SoftConfig, fixed_size: bool) -> None:
    """Refuse configurations one ONNX graph cannot compute exactly (`OnnxExportError` naming the fix)."""
    if config.inverse_method == "cholesky":
        raise OnnxExportError(
            "inverse_method='cholesky' cannot be exported: ONNX has no Cholesky factorisation. Export a model with "
            "inverse_method='newton' (the default, as the official checkpoints were trained); its outputs differ from "
            "the Cholesky solve where 20 Newton steps have not converged (above about 64 landmarks)."
        )
    if fixed_size:
        return
    if config.inverse_method == "auto":
        raise OnnxExportError(
            f"inverse_method='auto' switches from Newton to Cholesky above {AUTO_NEWTON_MAX_LANDMARKS} landmarks, a "
            "point that depends on the input size, so no single graph computes it at every size. Export with "
            "inverse_method='newton', or for one input size (fixed_size=True, --fixed-size)."
        )
    if config.max_landmarks is not None:
        raise OnnxExportError(
            f"max_landmarks={config.max_landmarks} pools each landmark map to a grid chosen from the input size by a "
            "discrete rule (landmark_grid), so no single graph computes it at every size. Export for one input "
            "size (fixed_size=True, --fixed-size: dynamic batch, fixed height and width), once per size you need, or "
            "export a model without max_landmarks (the official landmark rule is exported with dynamic sizes)."
        )


# ----------------------------------------------------------------------------------------------------------------------
# Export
# ----------------------------------------------------------------------------------------------------------------------


def _require_onnx_packages() -> None:
    missing = []
    for name in ("onnx", "onnxscript", "onnxruntime"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ImportError(f"ONNX export needs {', '.join(missing)}: pip install 'soft-hf[onnx]'.")


def _size_oblivious_tracing():
    """Trace sizes of 1 like any other size (the setting torch.onnx uses for dynamic 0/1 dimensions), where this
    PyTorch has the switch."""
    try:
        from torch.fx.experimental import _config as fx_config

        return fx_config.patch(backed_size_oblivious=True)
    except (ImportError, AttributeError):  # pragma: no cover - older or newer PyTorch without the switch
        import contextlib

        return contextlib.nullcontext()


def trace_for_onnx(
    module: nn.Module,
    example: torch.Tensor,
    dynamic_dims: dict[int, torch.export.Dim],
    allowed_guards: frozenset[str] = LAYOUT_ONLY_GUARDS,
) -> torch.export.ExportedProgram:
    """`torch.export.export(module, (example,), strict=False)` with `dynamic_dims` on the input, refusing
    (`OnnxExportError`) when the trace specialised a dynamic dimension or relies on any condition on the input size
    other than `allowed_guards`: ONNX Runtime would not check such a condition and would compute the traced branch
    for every input."""
    dynamic_shapes = {INPUT_NAME: dynamic_dims or None}
    try:
        with torch.no_grad(), _size_oblivious_tracing():
            exported = torch.export.export(module, (example,), dynamic_shapes=dynamic_shapes, strict=False)
    except torch._dynamo.exc.UserError as error:  # a dynamic dimension the model specialises
        raise OnnxExportError(
            "The model's computation depends on the input size in a way one graph cannot express, so the export was "
            f"refused (torch.export):\n{error}"
        ) from error
    guards = [guard for guard in getattr(exported, "_guards_code", []) if guard not in allowed_guards]
    if guards:
        listed = "\n  - ".join(guards)
        raise OnnxExportError(
            "The traced graph is only valid for inputs that satisfy these conditions, which ONNX Runtime would not "
            f"check:\n  - {listed}\nThe export was refused rather than writing a graph that computes another function "
            "for other inputs; export for one input size (fixed_size=True) or remove the size-dependent branch."
        )
    return exported


def _rename_symbolic_dims(model, names: dict[str, str]) -> None:
    """Give the graph's symbolic dimensions readable names (`s77` -> `batch`, also inside expressions)."""
    import onnx_ir as ir

    if not names:
        return
    pattern = re.compile(r"\b(" + "|".join(re.escape(symbol) for symbol in names) + r")\b")
    for value in list(model.graph.inputs) + list(model.graph.outputs):
        if value.shape is None:
            continue
        dims = []
        for dim in value.shape:
            if isinstance(dim, ir.SymbolicDim) and dim.value is not None:
                dims.append(ir.SymbolicDim(pattern.sub(lambda match: names[match.group(1)], dim.value)))
            else:
                dims.append(dim)
        value.shape = ir.Shape(dims)


def _initializer_bytes(model) -> int:
    return sum(value.const_value.nbytes for value in model.graph.initializers.values() if value.const_value is not None)


def _external_data_locations(path: Path) -> set[str]:
    """Relative names of the external-data files an ONNX file refers to (empty if it cannot be read)."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception:  # not an ONNX file: nothing of ours to clean up
        return set()
    locations = set()
    for tensor in proto.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                locations.add(entry.value)
    return locations


def _data_file_name(output: Path) -> str:
    """A new external-data name per export, so the previous model keeps its own data file until it is replaced."""
    return f"{output.name}.data-{uuid.uuid4().hex[:8]}"


def write_onnx_atomically(
    model,
    output: Path,
    *,
    external_data: bool | None = None,
    check: Callable[[Path], list[dict]] | None = None,
) -> tuple[str | None, list[dict]]:
    """Save the `onnx_ir` model in a temporary folder beside `output`, run `check` on the staged file (it raises to
    refuse), then rename it (and its external-data file, written first) into place and delete the previous
    export's external-data file. `external_data`: None stores the weights inline unless they exceed the 2 GiB
    protobuf limit. Returns the external-data file name (or None) and the checks' results."""
    import onnx_ir as ir

    parent = output.parent
    use_external = external_data
    if use_external is None:
        use_external = _initializer_bytes(model) > INLINE_WEIGHTS_LIMIT_BYTES
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.tmp-", dir=parent))
    try:
        staged = staging / output.name
        data_name = _data_file_name(output) if use_external else None
        if data_name:
            ir.save(model, staged, external_data=data_name)
        else:
            ir.save(model, staged)
        umask = os.umask(0)
        os.umask(umask)
        for path in staging.iterdir():  # ordinary files, not the private mode of the temporary folder
            os.chmod(path, 0o666 & ~umask)
        results = check(staged) if check is not None else []
        previous_data = _external_data_locations(output) if output.is_file() else set()
        if data_name:
            os.replace(staging / data_name, parent / data_name)
        os.replace(staged, output)
        for name in previous_data - {data_name}:
            stale = parent / name
            if stale.name == name and name.startswith(f"{output.name}.data-"):  # only what an export of ours wrote
                stale.unlink(missing_ok=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return data_name, results


def export_program_to_onnx(
    module: nn.Module,
    example: torch.Tensor,
    output: str | os.PathLike,
    *,
    output_names: Sequence[str],
    dynamic_dims: dict[int, torch.export.Dim],
    opset: int | None = None,
    metadata: dict[str, str] | None = None,
    external_data: bool | None = None,
    check: Callable[[Path], list[dict]] | None = None,
    allowed_guards: frozenset[str] = LAYOUT_ONLY_GUARDS,
) -> tuple[Path, int, str | None, list[dict]]:
    """Export any module with one image input `pixel_values` the way SOFT is exported (`trace_for_onnx`, then
    `torch.onnx.export` of the exported program, then `write_onnx_atomically` with `check`). Used by `export_onnx`
    and by the benchmark for its peers. Returns the path, the opset, the external-data name and the checks."""
    _require_onnx_packages()
    output = _check_output_path(output)
    training_modes = {submodule: submodule.training for submodule in module.modules()}
    module.eval()  # also while `check` compares with eager
    try:
        exported = trace_for_onnx(module, example, dynamic_dims, allowed_guards)
        try:
            with torch.no_grad():
                program = torch.onnx.export(
                    exported,
                    (example,),
                    input_names=[INPUT_NAME],
                    output_names=list(output_names),
                    opset_version=opset,
                    dynamo=True,
                    verbose=False,
                )
        except Exception as error:
            if "DispatchError" in type(error).__name__ or "No ONNX function found" in str(error):
                raise OnnxExportError(f"An operation of the model has no ONNX equivalent:\n{error}") from error
            raise
        model = program.model
        (placeholder,) = [node for node in exported.graph.nodes if node.op == "placeholder" and node.name == INPUT_NAME]
        input_shape = placeholder.meta["val"].shape  # symbolic sizes, e.g. (s77, 3, s53, s12)
        symbols = {str(input_shape[axis]): name for axis, name in DYNAMIC_AXES.items() if axis in dynamic_dims}
        _rename_symbolic_dims(model, symbols)
        model.metadata_props.update({key: str(value) for key, value in (metadata or {}).items()})
        data_name, checks = write_onnx_atomically(model, output, external_data=external_data, check=check)
    finally:
        for submodule, training in training_modes.items():
            submodule.training = training
    return output, model.opset_imports.get("", opset), data_name, checks


def _check_output_path(output: str | os.PathLike) -> Path:
    path = Path(output).expanduser().absolute()
    if path.suffix.lower() != ".onnx":
        raise OnnxExportError(f"The output must be a .onnx file, got {output}.")
    if path.is_dir():
        raise OnnxExportError(f"{output} is a folder; give the path of the .onnx file to write.")
    if not path.parent.is_dir():
        raise OnnxExportError(f"The folder {path.parent} does not exist; create it first or choose another output.")
    return path


# ----------------------------------------------------------------------------------------------------------------------
# Checks against PyTorch eager
# ----------------------------------------------------------------------------------------------------------------------


def physical_core_count() -> int:
    """Physical CPU cores (psutil if installed, else the CPUs this process may use)."""
    try:
        import psutil

        count = psutil.cpu_count(logical=False)
        if count:
            return count
    except ImportError:
        pass
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def onnxruntime_session(path: str | os.PathLike, threads: int | None = None):
    """An ONNX Runtime CPU session with all graph optimisations and `threads` intra-op threads (default: the
    physical cores)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or physical_core_count()
    return onnxruntime.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"])


def compare_with_eager(
    session, module: nn.Module, shapes: Sequence[tuple[int, ...]], tolerance: float, seed: int = 0
) -> list[dict]:
    """Run `session` and `module` on random inputs of each shape; returns one record per shape (`shape`,
    `max_abs_diff` over all outputs, `max_abs_output`, `passed`: the difference is at most `tolerance`, relative for
    outputs above 1)."""
    generator = torch.Generator().manual_seed(seed)
    records = []
    for shape in shapes:
        pixel_values = torch.randn(shape, generator=generator)
        with torch.no_grad():
            expected = module(pixel_values)
        expected = expected if isinstance(expected, tuple) else (expected,)
        actual = session.run(None, {INPUT_NAME: pixel_values.numpy()})
        difference = max(float((torch.from_numpy(a) - e).abs().max()) for a, e in zip(actual, expected))
        scale = max(float(e.abs().max()) for e in expected)
        records.append(
            {
                "shape": list(shape),
                "max_abs_diff": difference,
                "max_abs_output": scale,
                "passed": difference <= tolerance * max(1.0, scale),
            }
        )
    return records


def check_shapes(batch_size: int, height: int, width: int, minimum_size: int | None) -> list[tuple[int, ...]]:
    """Input shapes the export is checked at: the example's, batch 1 (the layout guard), and for dynamic sizes a
    larger non-square size and the smallest size of the graph."""
    shapes = [(batch_size, 3, height, width), (1, 3, height, width)]
    if minimum_size is not None:
        shapes += [(3, 3, height + 64, width + 32), (1, 3, minimum_size, minimum_size + 7)]
    return shapes


# ----------------------------------------------------------------------------------------------------------------------
# SOFT
# ----------------------------------------------------------------------------------------------------------------------


def export_onnx(
    model_or_path,
    output: str | os.PathLike,
    opset: int | None = None,
    task: str = "classification",
    *,
    height: int = 224,
    width: int = 224,
    fixed_size: bool = False,
    out_features: Sequence[str] | None = None,
    external_data: bool | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    check: bool = True,
) -> OnnxExportReport:
    """Write a SOFT classifier (task `"classification"`: input `pixel_values`, output `logits`) or backbone (task
    `"backbone"`: one output per `out_features` entry, e.g. `stage4`) as an ONNX file with dynamic batch, height and
    width, and check it against PyTorch eager with ONNX Runtime before writing it.

    Args:
        model_or_path: a `SoftForImageClassification` / `SoftBackbone`, or an exported folder or Hub id (a classifier's
            folder also gives its backbone).
        output: the `.onnx` file to write (its folder must exist); an existing file is replaced atomically.
        opset: ONNX opset (default: torch.onnx's).
        task: `"classification"` or `"backbone"`.
        height, width: size of the example input the graph is traced with (and checked at).
        fixed_size: export for inputs of exactly `height` x `width` (the batch stays dynamic): needed for
            `max_landmarks` and `inverse_method="auto"`, whose computation changes with the input size. ONNX
            Runtime rejects other sizes.
        out_features: backbone outputs when loading from a folder (default: the config's).
        external_data: store the weights in a separate file (None: only above the 2 GiB protobuf limit).
        tolerance: largest difference to eager allowed by the check (absolute; relative for outputs above 1).
        check: run the check (only disable it for measurements of the export itself).

    Returns:
        An `OnnxExportReport`. Raises `OnnxExportError` (a `ValueError`) for anything that cannot be exported exactly,
        and then writes nothing.
    """
    _check_task(task)
    if out_features is not None and task != "backbone":
        raise OnnxExportError("out_features chooses the outputs of task 'backbone'; a classifier outputs its logits.")
    output_path = _check_output_path(output)
    model = load_soft_model(model_or_path, task, out_features)
    config = model.config
    check_exportable_config(config, fixed_size)
    smallest = minimum_image_size(config)
    minimum_size = None if fixed_size else minimum_export_size(config)
    lower = smallest if fixed_size else minimum_size
    if min(height, width) < lower:
        kind = "the model" if fixed_size else "a dynamic-size graph (every landmark map at least 2 x 2)"
        raise OnnxExportError(f"The example size {height}x{width} is below the smallest size of {kind}: {lower} px.")

    wrapper = OnnxOutputs(model, task)
    output_names = ["logits"] if task == "classification" else list(model.out_features)
    dynamic_dims = {0: torch.export.Dim("batch", min=1)}
    if not fixed_size:
        dynamic_dims[2] = torch.export.Dim("height", min=minimum_size)
        dynamic_dims[3] = torch.export.Dim("width", min=minimum_size)
    generator = torch.Generator().manual_seed(0)
    example = torch.randn(EXAMPLE_BATCH_SIZE, config.num_channels, height, width, generator=generator)
    dynamic_axes = {INPUT_NAME: {axis: DYNAMIC_AXES[axis] for axis in dynamic_dims}}
    metadata = {
        "soft_hf.task": task,
        "soft_hf.input": INPUT_NAME,
        "soft_hf.outputs": json.dumps(output_names),
        "soft_hf.dynamic_axes": json.dumps(dynamic_axes[INPUT_NAME]),
        "soft_hf.minimum_size": json.dumps([lower, lower]),
        "soft_hf.fixed_size": json.dumps([height, width] if fixed_size else None),
        "soft_hf.config": config.to_json_string(use_diff=False),
    }

    def check_against_eager(staged: Path) -> list[dict]:
        if not check:
            return []
        session = onnxruntime_session(staged)
        shapes = check_shapes(EXAMPLE_BATCH_SIZE, height, width, minimum_size)
        shapes = [(shape[0], config.num_channels, *shape[2:]) for shape in shapes]
        records = compare_with_eager(session, wrapper, shapes, tolerance)
        failed = [record for record in records if not record["passed"]]
        if failed:
            raise OnnxExportError(
                f"ONNX Runtime does not reproduce PyTorch eager within {tolerance} for inputs {failed}; nothing was "
                "written."
            )
        return records

    path, opset_used, data_name, checks = export_program_to_onnx(
        wrapper,
        example,
        output_path,
        output_names=output_names,
        dynamic_dims=dynamic_dims,
        opset=opset,
        metadata=metadata,
        external_data=external_data,
        check=check_against_eager,
    )
    return OnnxExportReport(
        path=str(path),
        task=task,
        input_name=INPUT_NAME,
        output_names=output_names,
        dynamic_axes=dynamic_axes,
        minimum_size=(lower, lower),
        fixed_size=(height, width) if fixed_size else None,
        opset=opset_used,
        external_data=data_name,
        tolerance=tolerance,
        checks=checks,
    )


# ----------------------------------------------------------------------------------------------------------------------
# soft-export-onnx
# ----------------------------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="soft-export-onnx",
        description="Export a SOFT classifier (logits) or backbone (feature maps) as ONNX with dynamic batch, height "
        "and width, checked against PyTorch eager with ONNX Runtime before it is written. Prints a JSON report.",
    )
    parser.add_argument("--model", required=True, help="Exported SOFT folder or Hub id.")
    parser.add_argument("--output", required=True, help="The .onnx file to write (its folder must exist).")
    parser.add_argument("--task", default="classification", choices=TASKS)
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default: torch.onnx's).")
    parser.add_argument("--height", type=int, default=224, help="Height of the example input (default 224).")
    parser.add_argument("--width", type=int, default=224, help="Width of the example input (default 224).")
    parser.add_argument(
        "--fixed-size",
        action="store_true",
        help="Export for inputs of exactly --height x --width (batch stays dynamic); needed for max_landmarks and "
        "inverse_method='auto'.",
    )
    parser.add_argument(
        "--out-features", nargs="+", default=None, help="Backbone outputs, e.g. stem stage1 stage2 stage3 stage4."
    )
    parser.add_argument("--external-data", action="store_true", help="Store the weights in a separate file.")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE, help="Largest difference to eager.")
    return parser


def main(argv: list[str] | None = None) -> int:
    """`soft-export-onnx` and `scripts/export_onnx.py`."""
    args = build_parser().parse_args(argv)
    try:
        report = export_onnx(
            args.model,
            args.output,
            opset=args.opset,
            task=args.task,
            height=args.height,
            width=args.width,
            fixed_size=args.fixed_size,
            out_features=args.out_features,
            external_data=True if args.external_data else None,
            tolerance=args.tolerance,
        )
    except (OnnxExportError, ImportError) as error:
        print(f"error: cannot export {args.model} to {args.output}:\n{error}", file=sys.stderr)
        return 2
    print(json.dumps(report.to_dict(), indent=2))
    return 0


__all__ = [
    "DEFAULT_TOLERANCE",
    "OnnxExportError",
    "OnnxExportReport",
    "TASKS",
    "check_exportable_config",
    "compare_with_eager",
    "export_onnx",
    "export_program_to_onnx",
    "load_soft_model",
    "main",
    "minimum_export_size",
    "onnxruntime_session",
    "physical_core_count",
    "trace_for_onnx",
    "write_onnx_atomically",
]


if __name__ == "__main__":
    sys.exit(main())

