"""scripts/convert_original_checkpoint.py: official .pth -> Hub-ready folder whose remote-loaded model reproduces the
official logits; ImageNet labels for 1000-class heads; refusal of mismatched keys and of a wrong variant."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from helpers_hub import load_script_module, run_fresh_python
from huggingface_hub import ModelCard

from soft_hf import SoftForImageClassification
from soft_hf.hub.export import validate_export_folder


TOLERANCE = 1e-4  # official float32 logits vs ours; the official fp32-vs-fp64 spread is ~3e-6


@pytest.fixture(scope="module")
def convert():
    return load_script_module("convert_original_checkpoint").main


def _save_official(path, state_dict):
    torch.save({"epoch": 1, "arch": "soft", "state_dict": state_dict, "args": argparse.Namespace(lr=1e-3)}, path)


def _official_state_dict(compact_reference, arch):
    with torch.serialization.safe_globals([argparse.Namespace]):
        return torch.load(compact_reference / f"{arch}.pth", map_location="cpu", weights_only=True)["state_dict"]


def test_reference_checkpoints_convert_to_folders_that_reproduce_official_logits_remotely(
    compact_reference, convert, tmp_path, capsys
):
    folders = {}
    for arch, variant in (("compact_soft", "plain"), ("compact_soft_norm", "norm")):
        folders[arch] = tmp_path / arch
        code = convert(
            [
                "--checkpoint", str(compact_reference / f"{arch}.pth"),
                "--variant", variant,
                "--output", str(folders[arch]),
                "--reference", str(compact_reference / f"{arch}.io.safetensors"),
            ]
        )
        report = json.loads(capsys.readouterr().out)
        assert code == 0
        assert all(case["max_abs_diff"] <= TOLERANCE for case in report["reference"])
        validate_export_folder(folders[arch])
        card = ModelCard.load(folders[arch] / "README.md")
        assert card.data.license == "mit" and card.data.eval_results is None
        assert f"`{arch}.pth`" in card.text and "reproduced the official model's float32 logits" in card.text

    result = run_fresh_python(
        f"""
        import torch
        from safetensors.torch import load_file
        from transformers import AutoImageProcessor, AutoModelForImageClassification, pipeline
        for arch, folder in {json.dumps({arch: str(path) for arch, path in folders.items()})}.items():
            model = AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True).eval()
            vectors = load_file({str(compact_reference)!r} + "/" + arch + ".io.safetensors")
            diffs = []
            for case in (0, 1):
                with torch.no_grad():
                    logits = model(vectors[f"input_{{case}}"]).logits
                diffs.append(float((logits - vectors[f"logits_fp32_{{case}}"]).abs().max()))
            # the same through pipeline(), its processor passing the official input through unchanged
            processor = AutoImageProcessor.from_pretrained(
                folder, trust_remote_code=True, do_resize=False, do_center_crop=False, do_rescale=False,
                do_normalize=False,
            )
            classifier = pipeline(
                "image-classification", model=folder, image_processor=processor, trust_remote_code=True
            )
            pipeline_diffs = []
            for case in (0, 1):
                scores = classifier(vectors[f"input_{{case}}"][0], function_to_apply="none", top_k=model.config.num_labels)
                logits = torch.zeros(model.config.num_labels)
                for item in scores:
                    logits[model.config.label2id[item["label"]]] = item["score"]
                pipeline_diffs.append(float((logits - vectors[f"logits_fp32_{{case}}"][0]).abs().max()))
            result[arch] = {{"module": type(model).__module__, "diffs": diffs, "pipeline_diffs": pipeline_diffs,
                             "normalization": model.config.normalization}}
        """,
        tmp_path / "home",
    )
    for arch, normalization in (("compact_soft", "none"), ("compact_soft_norm", "symmetric")):
        assert result[arch]["module"].startswith("transformers_modules."), result[arch]
        assert result[arch]["normalization"] == normalization
        assert max(result[arch]["diffs"]) <= TOLERANCE, result[arch]
        assert max(result[arch]["pipeline_diffs"]) <= TOLERANCE, result[arch]


def test_thousand_class_head_gets_imagenet_labels(compact_reference, convert, tmp_path, capsys):
    state_dict = _official_state_dict(compact_reference, "compact_soft")
    generator = torch.Generator().manual_seed(0)
    state_dict["head.weight"] = torch.randn(1000, state_dict["head.weight"].shape[1], generator=generator) * 0.02
    state_dict["head.bias"] = torch.zeros(1000)
    _save_official(tmp_path / "imagenet_head.pth", state_dict)
    assert convert(["--checkpoint", str(tmp_path / "imagenet_head.pth"), "--variant", "plain", "--output",
                    str(tmp_path / "out")]) == 0
    capsys.readouterr()
    model = SoftForImageClassification.from_pretrained(tmp_path / "out")
    assert model.config.num_labels == 1000
    assert model.config.id2label[0] == "tench, Tinca tinca" and model.config.id2label[281] == "tabby, tabby cat"
    assert model.config.label2id["tabby, tabby cat"] == 281
    torch.testing.assert_close(model.classifier.weight, state_dict["head.weight"], atol=0, rtol=0)
    assert ModelCard.load(tmp_path / "out" / "README.md").data.datasets == ["imagenet-1k"]


def test_mismatched_keys_are_refused_with_a_report(compact_reference, convert, tmp_path, capsys):
    state_dict = _official_state_dict(compact_reference, "compact_soft")
    del state_dict["block2.0.att.mha.W_v.weight"]
    state_dict["block2.0.att.mha.W_k.weight"] = torch.zeros(64, 64)
    state_dict["norm.weight"] = torch.ones(7)
    _save_official(tmp_path / "broken.pth", state_dict)
    output = tmp_path / "out"
    assert convert(["--checkpoint", str(tmp_path / "broken.pth"), "--variant", "plain", "--output", str(output)]) == 2
    error = capsys.readouterr().err
    assert "does not match the SOFT architecture" in error
    assert "block2.0.att.mha.W_k.weight" in error  # unknown
    assert "soft.encoder.stages.1.layers.0.attention.value.weight" in error  # missing
    assert "norm.weight: checkpoint (7,) vs model (64,)" in error  # mis-shaped
    assert not output.exists()

    assert convert(["--checkpoint", str(tmp_path / "absent.pth"), "--variant", "plain", "--output", str(output)]) == 2
    assert "No official SOFT checkpoint" in capsys.readouterr().err


def test_wrong_variant_fails_verification_and_writes_nothing(compact_reference, convert, tmp_path, capsys):
    output = tmp_path / "out"
    code = convert(
        [
            "--checkpoint", str(compact_reference / "compact_soft_norm.pth"),
            "--variant", "plain",  # the checkpoint is SOFT-Norm
            "--output", str(output),
            "--reference", str(compact_reference / "compact_soft_norm.io.safetensors"),
        ]
    )
    captured = capsys.readouterr()
    assert code == 1
    assert "does not reproduce the official logits" in captured.err
    assert max(case["max_abs_diff"] for case in json.loads(captured.out)["reference"]) > TOLERANCE
    assert not output.exists()
