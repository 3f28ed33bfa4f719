"""The official release's outputs and gradients, reproduced from its own checkpoints (shared/reference)."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from safetensors.torch import load_file

from soft_hf import SoftForImageClassification, convert_official_checkpoint
from soft_hf.convert_official import infer_config, load_official_state_dict, official_key_to_hf

ARCHES = [("mini_soft", "plain"), ("mini_soft_norm", "norm")]


@pytest.fixture(scope="module", params=ARCHES, ids=[arch for arch, _ in ARCHES])
def official(request, reference):
    arch, variant = request.param
    record = next(item for item in json.loads((reference / "vectors.json").read_text()) if item["arch"] == arch)
    return dict(
        arch=arch,
        variant=variant,
        record=record,
        checkpoint=reference / f"{arch}.pth",
        io=load_file(reference / f"{arch}.io.safetensors"),
    )


def test_inferred_config_matches_official_constructor(official):
    constructor = official["record"]["constructor"]
    config = infer_config(load_official_state_dict(official["checkpoint"]), official["variant"])
    assert config.hidden_sizes == constructor["embed_dims"]
    assert config.depths == constructor["depths"]
    assert config.num_attention_heads == constructor["num_heads"]
    assert config.sr_ratios == constructor["sr_ratios"]
    assert config.num_labels == constructor["num_classes"]
    assert config.mlp_ratios[-1] == constructor["mlp_ratios"][-1]
    assert config.normalization == ("symmetric" if official["variant"] == "norm" else "none")


@pytest.mark.parametrize("dtype,tolerance", [(torch.float32, 1e-4), (torch.float64, 1e-8)], ids=["fp32", "fp64"])
def test_logits_match_official(official, dtype, tolerance):
    model = convert_official_checkpoint(official["checkpoint"], official["variant"], dtype=dtype)
    assert not model.training
    for index, case in enumerate(official["record"]["cases"]):
        pixel_values = official["io"][case["input"]]
        assert tuple(pixel_values.shape[-2:]) == (case["height"], case["width"])
        with torch.no_grad():
            logits = model(pixel_values.to(dtype)).logits
        expected = official["io"][f"logits_fp{'32' if dtype == torch.float32 else '64'}_{index}"].to(dtype)
        assert logits.dtype == dtype
        torch.testing.assert_close(logits, expected, rtol=0, atol=tolerance)


def test_gradients_match_official(official, reference):
    """float64, eval mode, loss = sum(logits * loss_weights) on input_0; the Newton inverse's backward is the
    once-only analytic gradient (the official SOFT-Norm differentiates through its 20 steps; both agree)."""
    gradients = load_file(reference / f"{official['arch']}.grad.safetensors")
    model = convert_official_checkpoint(official["checkpoint"], official["variant"], dtype=torch.float64)
    logits = model(official["io"]["input_0"].double()).logits
    (logits * gradients["loss_weights"].double()).sum().backward()

    parameters = dict(model.named_parameters())
    expected = {official_key_to_hf(key[len("grad.") :]): value for key, value in gradients.items() if key != "loss_weights"}
    assert set(expected) == set(parameters), "every parameter must have an official gradient and vice versa"
    for name, expected_grad in expected.items():
        grad = parameters[name].grad
        assert grad is not None, name
        relative = ((grad - expected_grad).norm() / expected_grad.norm().clamp_min(1e-300)).item()
        assert relative < 1e-8, f"{name}: relative gradient error {relative:.2e}"


def test_newton_backward_is_analytic_and_once_only(official):
    """The graph holds one SoftNewtonInverse node per SOFT block and no Newton matmuls behind it."""
    model = convert_official_checkpoint(official["checkpoint"], official["variant"], dtype=torch.float64)
    logits = model(official["io"]["input_1"].double()).logits
    seen, stack, newton_nodes = set(), [logits.grad_fn], 0
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if "SoftNewtonInverse" in type(node).__name__:
            newton_nodes += 1
        stack.extend(next_node for next_node, _ in node.next_functions)
    assert newton_nodes == sum(model.config.depths[:3])


def test_checkpoint_layouts_and_module_prefix(official, tmp_path):
    """timm layouts with `model` / raw state dicts and DDP `module.` prefixes load to the same weights."""
    state_dict = load_official_state_dict(official["checkpoint"])
    reference_model = convert_official_checkpoint(official["checkpoint"], official["variant"])
    layouts = {
        "raw": state_dict,
        "model": {"model": {f"module.{key}": value for key, value in state_dict.items()}},
        "ema": {"state_dict": state_dict, "state_dict_ema": state_dict, "args": argparse.Namespace(model="x")},
    }
    pixel_values = official["io"]["input_1"]
    for name, payload in layouts.items():
        path = tmp_path / f"{name}.pth"
        torch.save(payload, path)
        model = convert_official_checkpoint(path, official["variant"], use_ema=(name == "ema"))
        with torch.no_grad():
            torch.testing.assert_close(model(pixel_values).logits, reference_model(pixel_values).logits, rtol=0, atol=0)


class _NotAllowed:
    pass


def test_unsafe_pickles_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {}, "payload": _NotAllowed()}, path)
    with pytest.raises(ValueError, match="safe loader"):
        load_official_state_dict(path)


def test_mismatched_checkpoint_reports_every_problem(reference, tmp_path):
    state_dict = load_official_state_dict(reference / "mini_soft.pth")
    state_dict["block1.0.att.mha.extra.weight"] = torch.zeros(1)
    del state_dict["block2.0.att.ff1.bias"]
    state_dict["block3.0.att.ff2.weight"] = torch.zeros(96, 7)
    path = tmp_path / "broken.pth"
    torch.save({"state_dict": state_dict}, path)
    with pytest.raises(ValueError) as error:
        convert_official_checkpoint(path, "plain")
    message = str(error.value)
    assert "unknown keys (1): block1.0.att.mha.extra.weight" in message
    assert "missing keys (1): soft.encoder.stages.1.layers.0.mlp.fc1.bias" in message
    assert "shape mismatches (1): block3.0.att.ff2.weight" in message


def test_variant_must_be_stated(reference):
    with pytest.raises(ValueError, match="plain"):
        convert_official_checkpoint(reference / "mini_soft.pth", "softmax")


def test_plain_and_norm_checkpoints_differ_only_in_normalisation(reference):
    plain = infer_config(load_official_state_dict(reference / "mini_soft.pth"), "plain")
    norm = infer_config(load_official_state_dict(reference / "mini_soft_norm.pth"), "norm")
    plain_dict, norm_dict = plain.to_dict(), norm.to_dict()
    differing = {key for key in plain_dict if plain_dict[key] != norm_dict.get(key)}
    assert differing == {"normalization"}
    assert (plain.ridge, norm.ridge) == (0.01, 0.0)
    assert isinstance(SoftForImageClassification(norm), SoftForImageClassification)
