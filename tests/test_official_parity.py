"""The official release's outputs and gradients, reproduced from its own checkpoints.

The compact sets (tests/fixtures/official, batch 1, Newton not converged) run in every clone; the larger mini sets
(batches of two) run when shared/reference is present. The official SOFT-Norm code shares one Newton step size over
its whole batch, so its batch-of-two outputs are reproduced with `newton_step_scope="batch"`.
"""

from __future__ import annotations

import argparse

import pytest
import torch
from safetensors.torch import load_file

from soft_hf import SoftForImageClassification, convert_official_checkpoint
from soft_hf.conversion.official import infer_config, load_official_state_dict, official_key_to_hf

from conftest import COMPACT_ARCHES, FULL_ARCHES, reference_record

# (arch, variant, config overrides that reproduce the official run)
VECTOR_SETS = [(arch, variant, {}) for arch, variant in COMPACT_ARCHES] + [
    (arch, variant, {"newton_step_scope": "batch"} if variant == "norm" else {}) for arch, variant in FULL_ARCHES
]


@pytest.fixture(scope="module", params=VECTOR_SETS, ids=[arch for arch, _, _ in VECTOR_SETS])
def official(request):
    arch, variant, overrides = request.param
    directory = request.getfixturevalue("compact_reference" if arch.startswith("compact") else "reference")
    return dict(
        arch=arch,
        variant=variant,
        overrides=overrides,
        directory=directory,
        record=reference_record(directory, arch),
        checkpoint=directory / f"{arch}.pth",
        io=load_file(directory / f"{arch}.io.safetensors"),
    )


def test_inferred_config_matches_official_constructor(official):
    constructor = official["record"]["constructor"]
    config = infer_config(load_official_state_dict(official["checkpoint"]), official["variant"])
    assert config.hidden_sizes == constructor["embed_dims"]
    assert config.depths == constructor["depths"]
    assert config.num_attention_heads[:3] == constructor["num_heads"][:3]
    assert config.hidden_sizes[3] // config.num_attention_heads[3] == 32  # the converter's softmax-stage head dim
    assert config.sr_ratios == constructor["sr_ratios"]
    assert config.num_labels == constructor["num_classes"]
    assert config.mlp_ratios[-1] == constructor["mlp_ratios"][-1]
    assert config.normalization == ("symmetric" if official["variant"] == "norm" else "none")


@pytest.mark.parametrize("dtype,tolerance", [(torch.float32, 1e-4), (torch.float64, 1e-8)], ids=["fp32", "fp64"])
def test_logits_match_official(official, dtype, tolerance):
    model = convert_official_checkpoint(official["checkpoint"], official["variant"], dtype=dtype, **official["overrides"])
    assert not model.training
    for index, case in enumerate(official["record"]["cases"]):
        pixel_values = official["io"][case["input"]]
        assert tuple(pixel_values.shape[-2:]) == (case["height"], case["width"])
        with torch.no_grad():
            logits = model(pixel_values.to(dtype)).logits
        expected = official["io"][f"logits_fp{'32' if dtype == torch.float32 else '64'}_{index}"].to(dtype)
        assert logits.dtype == dtype
        torch.testing.assert_close(logits, expected, rtol=0, atol=tolerance)


def official_gradient_errors(official, **overrides) -> dict[str, float]:
    """Relative error of our float64 gradient of every parameter against the official one (eval mode,
    loss = sum(logits * loss_weights) on input_0)."""
    gradients = load_file(official["directory"] / f"{official['arch']}.grad.safetensors")
    model = convert_official_checkpoint(
        official["checkpoint"], official["variant"], dtype=torch.float64, **{**official["overrides"], **overrides}
    )
    logits = model(official["io"]["input_0"].double()).logits
    (logits * gradients["loss_weights"].double()).sum().backward()

    parameters = dict(model.named_parameters())
    expected = {official_key_to_hf(key[len("grad.") :]): value for key, value in gradients.items() if key != "loss_weights"}
    assert set(expected) == set(parameters), "every parameter must have an official gradient and vice versa"
    errors = {}
    for name, expected_grad in expected.items():
        grad = parameters[name].grad
        assert grad is not None, name
        errors[name] = ((grad - expected_grad).norm() / expected_grad.norm().clamp_min(1e-300)).item()
    return errors


def test_gradients_match_official(official):
    """Default settings: the analytic once-only backward for SOFT, the unrolled Newton steps for SOFT-Norm, each as
    its official code trains."""
    errors = official_gradient_errors(official)
    worst = max(errors, key=errors.get)
    assert errors[worst] < 1e-8, f"{worst}: relative gradient error {errors[worst]:.2e}"


def test_norm_backward_choice_matters_where_newton_has_not_converged(compact_reference):
    """On compact_soft_norm the once-only analytic gradient is not the official (unrolled) one: the option is part of
    what fine-tuning an official SOFT-Norm checkpoint continues."""
    arch = "compact_soft_norm"
    official = dict(
        arch=arch, variant="norm", overrides={}, directory=compact_reference,
        checkpoint=compact_reference / f"{arch}.pth", io=load_file(compact_reference / f"{arch}.io.safetensors"),
    )
    assert max(official_gradient_errors(official, newton_backward="analytic").values()) > 1e-2


def _newton_nodes(logits: torch.Tensor) -> int:
    seen, stack, newton_nodes = set(), [logits.grad_fn], 0
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if "SoftNewtonInverse" in type(node).__name__:
            newton_nodes += 1
        stack.extend(next_node for next_node, _ in node.next_functions)
    return newton_nodes


@pytest.mark.parametrize("backward", [None, "analytic", "unrolled"])
def test_newton_backward_graph(official, backward):
    """Analytic: one SoftNewtonInverse node per SOFT block and no Newton matmuls behind it; unrolled: none."""
    model = convert_official_checkpoint(
        official["checkpoint"], official["variant"], dtype=torch.float64, newton_backward=backward
    )
    logits = model(official["io"]["input_1"].double()).logits
    resolved = backward or ("unrolled" if official["variant"] == "norm" else "analytic")
    assert model.config.inverse_backward == resolved
    assert _newton_nodes(logits) == (sum(model.config.depths[:3]) if resolved == "analytic" else 0)


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


def test_mismatched_checkpoint_reports_every_problem(compact_reference, tmp_path):
    state_dict = load_official_state_dict(compact_reference / "compact_soft.pth")
    state_dict["block1.0.att.mha.extra.weight"] = torch.zeros(1)
    del state_dict["block2.0.att.ff1.bias"]
    state_dict["block3.0.att.ff2.weight"] = torch.zeros(48, 7)
    path = tmp_path / "broken.pth"
    torch.save({"state_dict": state_dict}, path)
    with pytest.raises(ValueError) as error:
        convert_official_checkpoint(path, "plain")
    message = str(error.value)
    assert "unknown keys (1): block1.0.att.mha.extra.weight" in message
    assert "missing keys (1): soft.encoder.stages.1.layers.0.mlp.fc1.bias" in message
    assert "shape mismatches (1): block3.0.att.ff2.weight" in message


def test_variant_must_be_stated(compact_reference):
    with pytest.raises(ValueError, match="plain"):
        convert_official_checkpoint(compact_reference / "compact_soft.pth", "softmax")


def test_plain_and_norm_checkpoints_differ_only_in_normalisation(compact_reference):
    plain = infer_config(load_official_state_dict(compact_reference / "compact_soft.pth"), "plain")
    norm = infer_config(load_official_state_dict(compact_reference / "compact_soft_norm.pth"), "norm")
    plain_dict, norm_dict = plain.to_dict(), norm.to_dict()
    differing = {key for key in plain_dict if plain_dict[key] != norm_dict.get(key)}
    assert differing == {"normalization"}
    assert (plain.ridge, norm.ridge) == (0.01, 0.0)
    assert (plain.step_scope, norm.step_scope) == ("head", "image")
    assert (plain.inverse_backward, norm.inverse_backward) == ("analytic", "unrolled")
    assert isinstance(SoftForImageClassification(norm), SoftForImageClassification)
