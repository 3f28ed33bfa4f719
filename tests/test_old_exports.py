"""An export made before the package layout changed (issue 13) still loads: with its own code files and no soft_hf,
with the installed soft_hf classes, and as an earlier export the new `export_pretrained` may replace.

The fixture `tests/fixtures/export_before_layout/` was written by soft-hf at commit 791af68, when the model files sat
directly in `soft_hf/`: a tiny random SOFT classifier exported with `export_pretrained`, and `reference.safetensors`
holding an input batch and the logits that version computed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from helpers_hub import run_fresh_python
from safetensors.torch import load_file
from transformers import AutoModelForImageClassification

from soft_hf import SoftForImageClassification, SoftImageProcessor, export_pretrained
from soft_hf.hub.export import validate_export_folder


FIXTURE = Path(__file__).resolve().parent / "fixtures" / "export_before_layout"
CODE_FILES = {"configuration_soft.py", "modeling_soft.py", "soft_attention.py", "image_processing_soft.py"}


def test_old_export_names_its_flat_code_files_in_auto_map():
    folder = FIXTURE / "model"
    auto_map = json.loads((folder / "config.json").read_text())["auto_map"]
    assert auto_map == {
        "AutoConfig": "configuration_soft.SoftConfig",
        "AutoModel": "modeling_soft.SoftModel",
        "AutoModelForImageClassification": "modeling_soft.SoftForImageClassification",
        "AutoBackbone": "modeling_soft.SoftBackbone",
    }
    assert CODE_FILES <= {path.name for path in folder.iterdir()}
    validate_export_folder(folder)


def test_old_export_loads_with_the_installed_classes():
    reference = load_file(str(FIXTURE / "reference.safetensors"))
    for model in (
        SoftForImageClassification.from_pretrained(FIXTURE / "model"),
        AutoModelForImageClassification.from_pretrained(FIXTURE / "model"),  # registered classes win
    ):
        assert type(model).__module__ == "soft_hf.models.soft.modeling_soft"
        with torch.no_grad():
            logits = model.eval()(reference["pixel_values"]).logits
        torch.testing.assert_close(logits, reference["logits"], rtol=0, atol=1e-5)
    assert dict(SoftImageProcessor.from_pretrained(FIXTURE / "model").crop_size)["height"] == 64


def test_old_export_loads_with_its_own_code_without_soft_hf(tmp_path):
    folder = shutil.copytree(FIXTURE / "model", tmp_path / "old-export")
    result = run_fresh_python(
        f"""
        import torch
        from safetensors.torch import load_file
        from transformers import AutoImageProcessor, AutoModelForImageClassification

        reference = load_file({str(FIXTURE / "reference.safetensors")!r})
        model = AutoModelForImageClassification.from_pretrained({str(folder)!r}, trust_remote_code=True).eval()
        processor = AutoImageProcessor.from_pretrained({str(folder)!r}, trust_remote_code=True)
        with torch.no_grad():
            result["diff"] = float((model(reference["pixel_values"]).logits - reference["logits"]).abs().max())
        result["modules"] = [type(model).__module__, type(processor).__module__]
        """,
        tmp_path / "home",
    )
    assert all(module.startswith("transformers_modules.") for module in result["modules"]), result["modules"]
    assert result["diff"] <= 1e-5


def test_new_export_replaces_an_old_export_and_keeps_the_file_names(tmp_path):
    folder = shutil.copytree(FIXTURE / "model", tmp_path / "export")
    model = SoftForImageClassification.from_pretrained(folder).eval()
    export_pretrained(model, folder, image_processor=SoftImageProcessor.from_pretrained(folder), overwrite=True)
    assert CODE_FILES <= {path.name for path in folder.iterdir()}
    old_config = json.loads((FIXTURE / "model" / "config.json").read_text())
    assert json.loads((folder / "config.json").read_text())["auto_map"] == old_config["auto_map"]
    reference = load_file(str(FIXTURE / "reference.safetensors"))
    with torch.no_grad():
        logits = SoftForImageClassification.from_pretrained(folder).eval()(reference["pixel_values"]).logits
    torch.testing.assert_close(logits, reference["logits"], rtol=0, atol=1e-5)
