# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""Deployment formats: `onnx_export` writes SOFT classifiers and backbones as ONNX graphs with dynamic batch, height
and width, checked against PyTorch eager with ONNX Runtime before the file is written (the `soft-export-onnx`
command). Imports only `soft_hf.models`; onnx, onnxscript and onnxruntime (`pip install soft-hf[onnx]`) are imported
when an export runs."""

from .onnx_export import OnnxExportError, OnnxExportReport, export_onnx, export_program_to_onnx


__all__ = ["OnnxExportError", "OnnxExportReport", "export_onnx", "export_program_to_onnx"]
