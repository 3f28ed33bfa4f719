"""SOFT model behaviour: presets, input handling, batch independence, save/load, checkpointing and training."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from soft_hf import PRESET_NAMES, SoftConfig, SoftForImageClassification, SoftModel, convert_official_checkpoint
from soft_hf.models.soft.modeling_soft import minimum_image_size, resize_position_embeddings, stage_spatial_sizes

from conftest import tiny_config_kwargs

OFFICIAL_MILLIONS = {"tiny": 13.1, "small": 38.9, "medium": 45.8, "large": 64.7, "huge": 87.1}


def tiny_model(**overrides) -> SoftForImageClassification:
    torch.manual_seed(0)
    return SoftForImageClassification(SoftConfig(**tiny_config_kwargs(**overrides)))


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_presets_have_official_parameter_counts(name):
    config = SoftConfig.from_preset(name, num_labels=1000)
    with torch.device("meta"):
        model = SoftForImageClassification(config)
    millions = sum(parameter.numel() for parameter in model.parameters()) / 1e6
    size = name.split("-")[-1]
    assert abs(millions - OFFICIAL_MILLIONS[size]) < 0.1, f"{name}: {millions:.2f}M"


@pytest.mark.parametrize("size", OFFICIAL_MILLIONS)
def test_norm_presets_differ_only_in_normalisation(size):
    plain = SoftConfig.from_preset(f"soft-{size}").to_dict()
    norm = SoftConfig.from_preset(f"soft-norm-{size}").to_dict()
    assert {key for key in plain if plain[key] != norm[key]} == {"normalization"}
    assert norm["normalization"] == "symmetric" and plain["normalization"] == "none"


def test_unknown_preset_and_bad_configs_are_explained():
    with pytest.raises(ValueError, match="soft-norm-tiny"):
        SoftConfig.from_preset("soft-gigantic")
    with pytest.raises(ValueError, match="divisible"):
        SoftConfig(hidden_sizes=[64, 128, 320, 500])
    with pytest.raises(ValueError, match="normalization"):
        SoftConfig(normalization="layer")
    with pytest.raises(ValueError, match="landmark stride"):
        SoftConfig(sr_ratios=[8, 4, 1, 1])
    with pytest.raises(ValueError, match="4 entries"):
        SoftConfig(depths=[1, 1, 1])


@pytest.mark.parametrize("height,width", [(64, 64), (96, 64), (50, 77), (33, 130)])
def test_any_supported_input_size(height, width):
    model = tiny_model().eval()
    with torch.no_grad():
        output = model(torch.randn(2, 3, height, width), output_hidden_states=True)
    assert output.logits.shape == (2, 3)
    expected = stage_spatial_sizes(height, width)
    assert [tuple(feature.shape[-2:]) for feature in output.hidden_states[1:]] == expected
    assert tuple(output.hidden_states[0].shape[-2:]) == expected[0]


def test_different_sizes_in_one_session_match_fresh_runs():
    model = tiny_model().eval()
    generator = torch.Generator().manual_seed(3)
    small, large = torch.randn(1, 3, 64, 64, generator=generator), torch.randn(1, 3, 128, 96, generator=generator)
    with torch.no_grad():
        first_small, _, second_small = model(small).logits, model(large).logits, model(small).logits
    torch.testing.assert_close(first_small, second_small, rtol=0, atol=0)


def test_position_embeddings_resize_bilinearly():
    embeddings = torch.randn(1, 16, 5)
    resized = resize_position_embeddings(embeddings, 3, 6)
    expected = torch.nn.functional.interpolate(
        embeddings.reshape(1, 4, 4, 5).permute(0, 3, 1, 2), size=(3, 6), mode="bilinear", align_corners=False
    )
    torch.testing.assert_close(resized, expected.flatten(2).transpose(1, 2))
    assert resize_position_embeddings(embeddings, 4, 4) is embeddings


def test_bad_inputs_get_clear_errors():
    model = tiny_model().eval()
    smallest = minimum_image_size(model.config)
    assert smallest == 29  # stage 1 must be >= 8 (stride 4 -> 29 px), stage 2 >= 4, stage 3 >= 2
    with pytest.raises(ValueError, match=r"too small.*at least 29x29"):
        model(torch.randn(1, 3, 28, 64))
    model(torch.randn(1, 3, smallest, smallest))
    with pytest.raises(ValueError, match="Expected 3 channels"):
        model(torch.randn(1, 1, 64, 64))
    with pytest.raises(ValueError, match="NaN or infinite"):
        model(torch.full((1, 3, 64, 64), float("nan")))
    with pytest.raises(ValueError, match=r"shape \(batch_size, 3, height, width\)"):
        model(torch.randn(3, 64, 64))
    with pytest.raises(ValueError, match="floating-point"):
        model(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))


@pytest.mark.parametrize("normalization", ["none", "symmetric"])
def test_batch_gives_per_image_outputs(normalization):
    """Images of very different statistics: each image's logits in a batch equal its logits alone (float64).
    The official SOFT-Norm shares one Newton step size across the batch, which breaks this."""
    model = tiny_model(normalization=normalization).double().eval()
    generator = torch.Generator().manual_seed(0)
    batch = torch.randn(3, 3, 64, 80, generator=generator, dtype=torch.float64)
    batch[1] *= 25.0
    batch[2] = batch[2] * 0.01 + 3.0
    with torch.no_grad():
        together = model(batch).logits
        alone = torch.cat([model(image[None]).logits for image in batch])
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-12)


def _compact_norm_batch(compact_reference) -> torch.Tensor:
    """Two images of compact_soft_norm's 224 px case with different statistics: `(2, 3, 224, 224)` float64."""
    image = load_file(compact_reference / "compact_soft_norm.io.safetensors")["input_0"].double()
    return torch.cat([image, 3.0 * image.flip(-1)])


@pytest.mark.parametrize("backward", ["analytic", "unrolled"])
def test_official_norm_model_is_batch_independent(compact_reference, backward):
    """Default step scope (one alpha per image): a batch equals its images one by one, outputs and gradients."""
    model = convert_official_checkpoint(
        compact_reference / "compact_soft_norm.pth", "norm", dtype=torch.float64, newton_backward=backward
    )
    pixel_values = _compact_norm_batch(compact_reference).requires_grad_(True)
    together = model(pixel_values).logits
    alone = torch.cat([model(image[None]).logits for image in pixel_values])
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-12)
    (grad_together,) = torch.autograd.grad(together.sum(), pixel_values)
    (grad_alone,) = torch.autograd.grad(alone.sum(), pixel_values)
    torch.testing.assert_close(grad_together, grad_alone, rtol=0, atol=1e-12)


def test_official_batched_step_size_depends_on_the_batch(compact_reference):
    """`newton_step_scope="batch"` is the official SOFT-Norm rule: one alpha for the whole batch, so an image's
    logits change with its batch neighbours where 20 Newton steps have not converged (compact_soft_norm)."""
    model = convert_official_checkpoint(
        compact_reference / "compact_soft_norm.pth", "norm", dtype=torch.float64, newton_step_scope="batch"
    )
    default = convert_official_checkpoint(compact_reference / "compact_soft_norm.pth", "norm", dtype=torch.float64)
    pixel_values = _compact_norm_batch(compact_reference)
    with torch.no_grad():
        batched = model(pixel_values).logits
        per_image = default(pixel_values).logits
        torch.testing.assert_close(model(pixel_values[:1]).logits, default(pixel_values[:1]).logits, rtol=0, atol=0)
    assert (batched - per_image).abs().max() > 1e-3


def test_save_pretrained_round_trip(tmp_path):
    model = tiny_model(normalization="symmetric", id2label={0: "cat", 1: "dog", 2: "cup"}).eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    reloaded = SoftForImageClassification.from_pretrained(tmp_path).eval()
    assert reloaded.config.id2label == {0: "cat", 1: "dog", 2: "cup"}
    assert reloaded.config.normalization == "symmetric"
    pixel_values = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(pixel_values).logits, model(pixel_values).logits, rtol=0, atol=0)
    base = SoftModel.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(base(pixel_values).pooler_output, model.soft(pixel_values).pooler_output, rtol=0, atol=0)


def test_loading_with_a_new_label_set(tmp_path):
    model = tiny_model().eval()
    model.save_pretrained(tmp_path)
    with pytest.raises(Exception, match="size mismatch|mismatched|shape"):
        SoftForImageClassification.from_pretrained(tmp_path, num_labels=5)
    resized = SoftForImageClassification.from_pretrained(tmp_path, num_labels=5, ignore_mismatched_sizes=True).eval()
    assert resized.classifier.weight.shape == (5, 32)
    pixel_values = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(resized.soft(pixel_values).pooler_output, model.soft(pixel_values).pooler_output)


@pytest.mark.parametrize("use_reentrant", [True, False])
def test_gradient_checkpointing_gives_the_same_gradients(use_reentrant):
    model = tiny_model().train()
    pixel_values, labels = torch.randn(2, 3, 64, 64), torch.tensor([0, 2])
    model(pixel_values, labels=labels).loss.backward()
    reference = {name: parameter.grad.clone() for name, parameter in model.named_parameters()}
    model.zero_grad()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": use_reentrant})
    model(pixel_values, labels=labels).loss.backward()
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(parameter.grad, reference[name], rtol=1e-5, atol=1e-7, msg=name)


def test_training_steps_reduce_the_loss():
    model = tiny_model(normalization="symmetric").train()
    generator = torch.Generator().manual_seed(0)
    pixel_values, labels = torch.randn(8, 3, 64, 64, generator=generator), torch.arange(8) % 3
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(8):
        loss = model(pixel_values, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


def test_tuple_output_matches_model_output():
    model = tiny_model().eval()
    pixel_values = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        as_dict = model(pixel_values, labels=torch.tensor([1]), output_hidden_states=True)
        as_tuple = model(pixel_values, labels=torch.tensor([1]), output_hidden_states=True, return_dict=False)
    torch.testing.assert_close(as_tuple[0], as_dict.loss)
    torch.testing.assert_close(as_tuple[1], as_dict.logits)
    assert len(as_tuple[2]) == len(as_dict.hidden_states) == 5
