"""export_pretrained: the Hub-ready folder, its model card, atomic writes; push_to_hub's dry run; preset cards."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import tiny_config_kwargs
from helpers_hub import REPO_ROOT, load_script_module
from huggingface_hub import ModelCard
from safetensors.torch import load_file

from soft_hf import (
    PRESET_NAMES,
    SoftBackbone,
    SoftConfig,
    SoftForImageClassification,
    SoftImageProcessorPil,
    SoftModel,
    export_pretrained,
)
from soft_hf.export import render_model_card, validate_export_folder


CODE_FILES = {"configuration_soft.py", "modeling_soft.py", "soft_attention.py", "image_processing_soft.py"}


def tiny_model(model_class=SoftForImageClassification, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return model_class(SoftConfig(**tiny_config_kwargs(**overrides))).eval()


@pytest.mark.parametrize("model_class", [SoftForImageClassification, SoftModel, SoftBackbone])
def test_export_writes_a_hub_ready_folder(model_class, tmp_path):
    model = tiny_model(model_class)
    output = export_pretrained(model, tmp_path / "soft-export")
    assert output == tmp_path / "soft-export"
    files = {path.name for path in output.iterdir()}
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "README.md"} | CODE_FILES <= files
    assert not any(name.endswith(".bin") for name in files)

    config = json.loads((output / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_soft.SoftConfig",
        "AutoModel": "modeling_soft.SoftModel",
        "AutoModelForImageClassification": "modeling_soft.SoftForImageClassification",
        "AutoBackbone": "modeling_soft.SoftBackbone",
    }
    assert config["architectures"] == [model_class.__name__]
    processor = json.loads((output / "preprocessor_config.json").read_text())
    assert processor["auto_map"] == {
        "AutoImageProcessor": {
            "torchvision": "image_processing_soft.SoftImageProcessor",
            "pil": "image_processing_soft.SoftImageProcessorPil",
        }
    }
    assert processor["crop_pct"] == 0.9 and processor["crop_size"] == {"height": 224, "width": 224}
    assert processor["size"] == {"shortest_edge": 248}  # derived from crop_pct and crop_size, saved for JSON readers
    for name in CODE_FILES:  # copied verbatim from the package
        assert (output / name).read_bytes() == (REPO_ROOT / "soft_hf" / name).read_bytes()

    # The weights are the model's, loadable back into the same class.
    weights = load_file(str(output / "model.safetensors"))
    for key, tensor in model.state_dict().items():
        torch.testing.assert_close(weights[key], tensor, atol=0, rtol=0)
    reloaded = model_class.from_pretrained(output).eval()
    pixel_values = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected, actual = model(pixel_values), reloaded(pixel_values)
    for key in expected.keys():
        if isinstance(expected[key], torch.Tensor):
            torch.testing.assert_close(actual[key], expected[key], atol=0, rtol=0)

    card = ModelCard.load(output / "README.md")
    assert card.data.library_name == "transformers"
    assert card.data.pipeline_tag == (
        "image-classification" if model_class is SoftForImageClassification else "image-feature-extraction"
    )
    assert card.data.license == "apache-2.0" and "custom_code" in card.data.tags
    assert card.data.eval_results is None  # nothing was measured
    assert "trust_remote_code=True" in card.text and "not one of the official presets" in card.text


def test_model_index_only_for_measured_metrics(tmp_path):
    model = tiny_model()
    metrics = {"eval_accuracy": 0.8125, "eval_loss": 0.61, "eval_runtime": 3.2, "epoch": 2.0}
    output = export_pretrained(
        model, tmp_path / "measured", metrics=metrics, dataset_name="beans", repo_id="me/soft-beans",
        provenance="Fine-tuned for 2 epochs by a test.",
    )
    card = ModelCard.load(output / "README.md")
    assert card.data.datasets == ["beans"]
    results = {result.metric_type: result for result in card.data.eval_results}
    assert set(results) == {"accuracy", "loss"}  # runtime and epoch are not quality metrics
    assert results["accuracy"].metric_value == 0.8125 and results["accuracy"].dataset_type == "beans"
    assert card.data.model_name == "soft-beans"
    assert "Fine-tuned for 2 epochs by a test." in card.text and "me/soft-beans" in card.text

    # Metrics without a dataset name: shown in the card, but no model-index entry.
    card = ModelCard(render_model_card(model.config, metrics={"eval_accuracy": 0.5}))
    assert card.data.eval_results is None and "| accuracy | 0.5 |" in card.text


def test_export_replaces_atomically_and_refuses_foreign_folders(tmp_path):
    first, second = tiny_model(seed=0), tiny_model(seed=1)
    output = export_pretrained(first, tmp_path / "repo")
    (output / "stale_module.py").write_text("# left over\n")
    export_pretrained(second, output, image_processor=SoftImageProcessorPil(crop_pct=0.875))
    assert not (output / "stale_module.py").exists()  # the folder was replaced, not merged
    weights = load_file(str(output / "model.safetensors"))
    torch.testing.assert_close(weights["classifier.weight"], second.classifier.weight, atol=0, rtol=0)
    assert json.loads((output / "preprocessor_config.json").read_text())["crop_pct"] == 0.875

    # A failure while writing leaves the previous export and no temporary folders.
    before = {path.name: path.read_bytes() for path in output.iterdir()}
    with pytest.raises(ValueError, match="no YAML metadata"):
        export_pretrained(first, output, model_card="just text, no metadata")
    assert {path.name: path.read_bytes() for path in output.iterdir()} == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["repo"]

    # A folder with other content (a training run) is never replaced.
    run = tmp_path / "run"
    (run / "checkpoint-10").mkdir(parents=True)
    with pytest.raises(ValueError, match="refusing to replace"):
        export_pretrained(first, run)
    assert (run / "checkpoint-10").is_dir()

    with pytest.raises(ValueError, match="expects a SOFT model"):
        export_pretrained(torch.nn.Linear(2, 2), tmp_path / "linear")


def test_validation_reports_every_problem(tmp_path):
    output = export_pretrained(tiny_model(), tmp_path / "repo")
    config = json.loads((output / "config.json").read_text())
    del config["auto_map"]["AutoBackbone"]
    (output / "config.json").write_text(json.dumps(config))
    (output / "soft_attention.py").unlink()
    (output / "modeling_soft.py").write_text((output / "modeling_soft.py").read_text() + "\nfrom soft_hf import x\n")
    with pytest.raises(ValueError) as error:
        validate_export_folder(output)
    message = str(error.value)
    assert "missing soft_attention.py" in message
    assert "auto_map lacks AutoBackbone" in message
    assert "modeling_soft.py imports soft_hf" in message


def test_committed_preset_cards_match_the_template():
    """model_cards/<preset>.md are rendered from model_cards/template.md (soft_hf.export.write_preset_cards)."""
    from soft_hf.export import write_preset_cards

    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as directory:
        written = write_preset_cards(directory)
        assert sorted(path.stem for path in written) == sorted(PRESET_NAMES)
        for path in written:
            committed = REPO_ROOT / "model_cards" / path.name
            assert committed.read_text() == path.read_text(), f"{committed} is stale: run write_preset_cards()"
    small = ModelCard.load(REPO_ROOT / "model_cards" / "soft-small.md")
    assert small.data.pipeline_tag == "image-classification" and small.data.datasets == ["imagenet-1k"]
    assert small.data.eval_results is None  # no accuracy measured by this project
    assert "38.9M" in small.text and "not 24M" in small.text and "| **82.2** |" in small.text
    norm = Path(REPO_ROOT / "model_cards" / "soft-norm-tiny.md").read_text()
    assert "SOFT-Norm variant" in norm and "| **79.4** |" in norm


def test_push_dry_run_exports_a_training_output(tmp_path):
    """A Trainer-style output (checkpoint folders, eval_results.json) is exported, validated and loaded with
    trust_remote_code in a fresh process; nothing is uploaded."""
    run = tmp_path / "run"
    model = tiny_model()
    model.save_pretrained(run / "checkpoint-5")
    model.save_pretrained(run / "checkpoint-20")
    (run / "eval_results.json").write_text(json.dumps({"eval_accuracy": 0.75, "epoch": 1.0}))
    push = load_script_module("push_to_hub")
    staging = tmp_path / "staged"
    assert push.main([str(run), "--dry-run", "--staging-dir", str(staging), "--dataset-name", "beans"]) == 0
    validate_export_folder(staging)
    card = ModelCard.load(staging / "README.md")
    assert [result.metric_value for result in card.data.eval_results] == [0.75]
    assert "checkpoint-20" in card.text  # provenance names the exported checkpoint

    assert push.main([str(tmp_path / "nothing-here"), "--dry-run", "--skip-load-check"]) == 2
    with pytest.raises(SystemExit):
        push.main([str(staging)])  # a real push needs --repo-id
