"""Correctness of the fast paths (issue 6): the CPU tanh GELU, the folded kernel, the Cholesky landmark solve, bounded
landmarks, in-place inference, the meta-device estimates the benchmark uses, torch.compile, and the honesty of the
official-forward baseline. Nothing here is timed: linear cost is checked by counting FLOPs."""

from __future__ import annotations

import argparse
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch.utils.flop_counter import FlopCounterMode

from soft_hf import SoftConfig, SoftForImageClassification
from soft_hf.models.soft.modeling_soft import SoftPatchEmbeddings, fold_batch_norm
from soft_hf.models.soft.soft_attention import (
    AUTO_NEWTON_MAX_LANDMARKS,
    ONEDNN_AVAILABLE,
    GELU_CHUNK_ELEMENTS,
    FastGELUTanh,
    OneDNNLinearFunction,
    SoftSelfAttention,
    cholesky_inverse_spd,
    fused_linear,
    gaussian_kernel,
    landmark_counts,
    landmark_grid,
    resolve_inverse_method,
    underflow_exponent,
    use_onednn,
)
from transformers.activations import ACT2FN

from conftest import reference_record, tiny_config_kwargs


def load_official_baseline():
    from soft_hf.benchmarks import official_baseline

    return official_baseline


def tiny_model(dtype=torch.float32, **overrides) -> SoftForImageClassification:
    torch.manual_seed(0)
    return SoftForImageClassification(SoftConfig(**tiny_config_kwargs(**overrides))).to(dtype).eval()




# --- tanh GELU -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype,tolerance", [(torch.float32, 1e-6), (torch.float64, 1e-14)])
@pytest.mark.parametrize("numel", [7, GELU_CHUNK_ELEMENTS + 13])
def test_fast_tanh_gelu_equals_torch_tanh_gelu(dtype, tolerance, numel):
    inputs = torch.linspace(-12, 12, numel, dtype=dtype).reshape(-1, 1)
    expected = F.gelu(inputs, approximate="tanh")
    copy = inputs.clone()
    torch.testing.assert_close(FastGELUTanh()(inputs), expected, rtol=0, atol=tolerance)
    torch.testing.assert_close(inputs, copy, rtol=0, atol=0)  # the input is never written to
    # non-contiguous input: falls back to torch's kernel, still the same function
    strided = inputs.expand(-1, 2)
    torch.testing.assert_close(FastGELUTanh()(strided), F.gelu(strided, approximate="tanh"))


def test_fast_tanh_gelu_gradient():
    inputs = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(FastGELUTanh(), (inputs,))
    FastGELUTanh()(inputs).sum().backward()
    expected = torch.autograd.grad(F.gelu(inputs, approximate="tanh").sum(), inputs)[0]
    torch.testing.assert_close(inputs.grad, expected, rtol=1e-12, atol=1e-12)


def test_grad_mode_and_inference_paths_agree():
    """No-grad inference takes in-place paths (GELU, residual adds, kernel); grad mode takes autograd-safe ones."""
    model = tiny_model(torch.float64)
    pixel_values = torch.randn(2, 3, 64, 80, dtype=torch.float64)
    with torch.no_grad():
        inference = model(pixel_values).logits
    training_path = model(pixel_values).logits
    assert training_path.requires_grad
    torch.testing.assert_close(training_path.detach(), inference, rtol=0, atol=1e-12)


# --- oneDNN inference kernels ---------------------------------------------------------------------------------------

needs_onednn = pytest.mark.skipif(not ONEDNN_AVAILABLE, reason="this PyTorch build has no oneDNN fused kernels")


def onednn_op_calls(function) -> dict[str, int]:
    """How often `function()` called each oneDNN fused op (read from the profiler's op records)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        function()
    return {
        event.key: event.count for event in profile.key_averages() if event.key.startswith("mkldnn::_")
    }


def test_onednn_is_used_only_for_float32_cpu_inference():
    weight = torch.randn(4, 3, requires_grad=True)
    inputs = torch.randn(2, 3)
    assert use_onednn(inputs, weight) == (ONEDNN_AVAILABLE and not torch.is_grad_enabled())  # grad mode: autograd
    with torch.no_grad():
        assert use_onednn(inputs, weight) == ONEDNN_AVAILABLE
        assert not use_onednn(inputs.double(), weight.double())  # float64 keeps PyTorch's kernels (parity tests)
        assert not use_onednn(inputs.bfloat16(), weight.bfloat16())
        with torch.backends.mkldnn.flags(enabled=False):
            assert not use_onednn(inputs, weight)
        with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast keeps its lower-precision linear layers
            assert not use_onednn(inputs, weight)
            assert fused_linear(torch.nn.Linear(3, 4), inputs).dtype == torch.bfloat16
    # any parameter that needs a gradient (here only the bias: bias-only fine-tuning) keeps autograd's kernels
    frozen_weight, trainable_bias = weight.detach(), torch.zeros(4, requires_grad=True)
    assert not use_onednn(inputs, frozen_weight, trainable_bias)
    with torch.no_grad():
        assert use_onednn(inputs, frozen_weight, trainable_bias) == ONEDNN_AVAILABLE


@needs_onednn
@pytest.mark.parametrize("activation_name", ["gelu_pytorch_tanh", "gelu", "relu"])
def test_fused_linear_matches_nn_linear_with_and_without_fused_activation(activation_name):
    torch.manual_seed(0)
    layer = torch.nn.Linear(48, 96)
    activation = ACT2FN[activation_name] if activation_name != "gelu_pytorch_tanh" else FastGELUTanh()
    inputs = torch.randn(2, 37, 48) * 3
    expected_linear = F.linear(inputs, layer.weight, layer.bias)
    expected = activation(expected_linear.clone())
    with torch.no_grad():
        calls = onednn_op_calls(lambda: fused_linear(layer, inputs))
        assert calls.get("mkldnn::_linear_pointwise") == 1
        torch.testing.assert_close(fused_linear(layer, inputs), expected_linear, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(fused_linear(layer, inputs, activation), expected, rtol=1e-5, atol=1e-5)
        fused = onednn_op_calls(lambda: fused_linear(layer, inputs, activation))
        assert fused == {"mkldnn::_linear_pointwise": 1}  # fused or not, one GEMM call; ReLU runs after it
        with torch.backends.mkldnn.flags(enabled=False):  # the switch that turns the fast path off
            assert onednn_op_calls(lambda: fused_linear(layer, inputs)) == {}
        handle = layer.register_forward_hook(lambda *args: None)  # an observed layer is called, on PyTorch's kernel
        assert onednn_op_calls(lambda: fused_linear(layer, inputs)) == {}
        handle.remove()
    # with autograd: the GEMM runs on oneDNN too (OneDNNLinearFunction), the activation module is called after it
    output = fused_linear(layer, inputs, activation)
    assert output.requires_grad and onednn_op_calls(lambda: fused_linear(layer, inputs)) == {
        "mkldnn::_linear_pointwise": 1
    }
    torch.testing.assert_close(output, expected, rtol=1e-5, atol=1e-5)
    output.sum().backward()
    assert layer.weight.grad is not None and torch.isfinite(layer.weight.grad).all()


# --- oneDNN training GEMMs --------------------------------------------------------------------------------------------


@needs_onednn
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("trainable", ["all", "input_only", "weight_only"])
def test_training_linear_on_onednn_equals_f_linear(with_bias, trainable):
    torch.manual_seed(0)
    layer = torch.nn.Linear(48, 96, bias=with_bias)
    layer.requires_grad_(trainable != "input_only")
    # a strided (transposed) 3-D input, as the attention's reshapes can give
    inputs = torch.randn(37, 2, 48).transpose(0, 1).requires_grad_(trainable != "weight_only")
    grad_output = torch.randn(2, 37, 96)
    leaves = [tensor for tensor in (inputs, layer.weight, layer.bias) if tensor is not None and tensor.requires_grad]

    calls = onednn_op_calls(lambda: fused_linear(layer, inputs).backward(grad_output))
    # one GEMM forward, and one more for the input gradient when the input needs one
    assert calls == {"mkldnn::_linear_pointwise": 1 + int(inputs.requires_grad)}
    output = fused_linear(layer, inputs)
    assert output.grad_fn is not None and "OneDNNLinearFunction" in output.grad_fn.next_functions[0][0].name()
    grads = torch.autograd.grad(output, leaves, grad_output)
    expected_output = F.linear(inputs, layer.weight, layer.bias)
    expected_grads = torch.autograd.grad(expected_output, leaves, grad_output)
    torch.testing.assert_close(output, expected_output, rtol=1e-5, atol=1e-5)
    for grad, expected in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(grad, expected, rtol=1e-5, atol=1e-5)


@needs_onednn
def test_training_linear_on_onednn_supports_double_backward():
    torch.manual_seed(0)
    inputs = torch.randn(5, 7, requires_grad=True)
    weight, bias = torch.randn(3, 7, requires_grad=True), torch.randn(3, requires_grad=True)

    def input_gradient_penalty(linear):
        (grad_inputs,) = torch.autograd.grad(linear(inputs, weight, bias).square().sum(), inputs, create_graph=True)
        return torch.autograd.grad(grad_inputs.square().sum(), (inputs, weight, bias))

    for actual, expected in zip(
        input_gradient_penalty(OneDNNLinearFunction.apply), input_gradient_penalty(F.linear)
    ):
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


@needs_onednn
def test_training_linear_falls_back_under_functorch_and_float64():
    torch.manual_seed(0)
    layer = torch.nn.Linear(6, 4)
    inputs = torch.randn(3, 6)
    params = dict(layer.named_parameters())

    def loss(params, inputs):
        return torch.func.functional_call(layer, params, (inputs,)).square().sum()

    # torch.func transforms see no custom Function: the module's own kernels run, the gradient is the plain one
    calls = onednn_op_calls(lambda: torch.func.grad(lambda p: loss(p, inputs))(params))
    assert calls == {}
    actual = torch.func.grad(lambda p: loss(p, inputs))(params)
    expected = torch.autograd.grad(F.linear(inputs, layer.weight, layer.bias).square().sum(), (layer.weight, layer.bias))
    torch.testing.assert_close(actual["weight"], expected[0])
    layer64 = torch.nn.Linear(6, 4).double()
    assert onednn_op_calls(lambda: fused_linear(layer64, inputs.double().requires_grad_()).sum().backward()) == {}


@needs_onednn
@pytest.mark.parametrize("normalization", ["none", "symmetric"])
def test_training_step_on_onednn_gives_the_plain_gradients(normalization):
    """A whole training step (float32) with the oneDNN GEMMs gives the gradients of the plain PyTorch computation,
    in-place residual adds into their outputs included."""
    model = tiny_model(normalization=normalization).train()
    pixel_values = torch.randn(2, 3, 64, 80)

    def step():
        model.zero_grad(set_to_none=True)
        loss = model(pixel_values).logits.square().sum()
        loss.backward()
        return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}

    calls = onednn_op_calls(step)
    num_linear = sum(isinstance(module, torch.nn.Linear) for module in model.modules())
    # every linear layer but the (called) classifier, forward and input gradient
    assert calls == {"mkldnn::_linear_pointwise": 2 * (num_linear - 1)}
    torch.manual_seed(1)
    loss, grads = step()
    with torch.backends.mkldnn.flags(enabled=False):
        torch.manual_seed(1)
        expected_loss, expected_grads = step()
    torch.testing.assert_close(loss, expected_loss, rtol=1e-5, atol=1e-5)
    for name, expected in expected_grads.items():
        torch.testing.assert_close(grads[name], expected, rtol=1e-4, atol=1e-5, msg=name)


def test_fold_batch_norm_is_exact_in_float64():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(5, 7, 3, stride=2, padding=1).double()
    norm = torch.nn.BatchNorm2d(7).double().eval()
    norm.running_mean.normal_()
    norm.running_var.uniform_(0.2, 3.0)
    norm.weight.data.normal_()
    norm.bias.data.normal_()
    inputs = torch.randn(2, 5, 17, 12, dtype=torch.float64)
    weight, bias = fold_batch_norm(conv, norm)
    with torch.no_grad():
        torch.testing.assert_close(F.conv2d(inputs, weight, bias, stride=2, padding=1), norm(conv(inputs)), rtol=1e-12, atol=1e-12)


@needs_onednn
@pytest.mark.parametrize("stage_index", [0, 1])
def test_fused_patch_embeddings_match_the_modules_and_train_mode_uses_batch_statistics(stage_index):
    torch.manual_seed(0)
    config = SoftConfig(**tiny_config_kwargs())
    embeddings = SoftPatchEmbeddings(config, stage_index).eval()
    for module in embeddings.projection:
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_()
            module.running_var.uniform_(0.2, 3.0)
            module.weight.data.normal_()
            module.bias.data.normal_()
    channels = config.num_channels if stage_index == 0 else config.hidden_sizes[0]
    inputs = torch.randn(2, channels, 33, 26).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        expected = embeddings.projection(inputs)
        calls = onednn_op_calls(lambda: embeddings(inputs))
        assert calls == {"mkldnn::_convolution_pointwise": len(embeddings.projection) // 3}
        torch.testing.assert_close(embeddings(inputs), expected, rtol=1e-5, atol=1e-5)
        embeddings.train()  # batch statistics: the modules run, unchanged
        assert onednn_op_calls(lambda: embeddings(inputs)) == {}
        torch.testing.assert_close(embeddings(inputs), embeddings.projection(inputs), rtol=0, atol=0)


@needs_onednn
def test_model_inference_on_onednn_matches_pytorch_kernels():
    model = tiny_model()
    pixel_values = torch.randn(2, 3, 64, 80)
    with torch.no_grad():
        calls = onednn_op_calls(lambda: model(pixel_values))
        fast = model(pixel_values).logits
        with torch.backends.mkldnn.flags(enabled=False):
            reference = model(pixel_values).logits
    num_linear = sum(isinstance(module, torch.nn.Linear) for module in model.modules())
    assert calls["mkldnn::_linear_pointwise"] == num_linear - 1  # all but the classifier, which is called
    assert calls["mkldnn::_convolution_pointwise"] == len(model.config.depths) + 2  # 3 stem convs, 1 per later stage
    torch.testing.assert_close(fast, reference, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("normalization", ["none", "symmetric"])
def test_attention_chunked_over_images_matches_the_whole_batch(monkeypatch, normalization):
    """CPU inference runs the attention in image chunks of about ATTENTION_CHUNK_BYTES of K1 (autograd takes the whole
    batch): any chunking gives the outputs of the whole batch (float64, one image per chunk)."""
    import soft_hf.models.soft.soft_attention as soft_attention

    model = tiny_model(torch.float64, normalization=normalization)
    attention = model.soft.encoder.stages[0].layers[0].attention
    pixel_values = torch.randn(3, 3, 64, 48, dtype=torch.float64)
    tokens = torch.zeros(3, 12 * 16, 8, dtype=torch.float64)
    whole = model(pixel_values).logits  # grad mode: the whole batch at once
    monkeypatch.setattr(soft_attention, "ATTENTION_CHUNK_BYTES", 1)  # one image per chunk
    assert attention.images_per_chunk(tokens.requires_grad_(), 4) == 3  # never chunked under autograd
    with torch.no_grad():
        assert attention.images_per_chunk(tokens, 4) == 1
        chunked = model(pixel_values).logits
        monkeypatch.setattr(soft_attention, "ATTENTION_CHUNK_BYTES", 1 << 40)
        assert attention.images_per_chunk(tokens, 4) == 3
        unchunked = model(pixel_values).logits
    torch.testing.assert_close(chunked, whole.detach(), rtol=0, atol=1e-12)
    torch.testing.assert_close(unchunked, whole.detach(), rtol=0, atol=1e-12)


@needs_onednn
def test_chunked_inference_mlp_matches_the_unchunked_mlp(monkeypatch):
    """Float32 CPU inference on many tokens runs the MLP in token chunks (3 chunks of 256 rows here, one partial);
    the result equals the one-shot MLP."""
    import soft_hf.models.soft.modeling_soft as modeling_soft

    torch.manual_seed(0)
    mlp = modeling_soft.SoftMlp(16, 64, "gelu_pytorch_tanh").eval()
    hidden_states = torch.randn(2, 300, 16)
    with torch.no_grad():
        whole = mlp(hidden_states)  # 600 tokens <= 2^20 / 64 rows: one shot
        monkeypatch.setattr(modeling_soft, "MLP_CHUNK_ELEMENTS", 256 * 64)
        assert mlp.rows_per_chunk() == 256
        calls = onednn_op_calls(lambda: mlp(hidden_states))
        chunked = mlp(hidden_states)
    assert calls == {"mkldnn::_linear_pointwise": 2 * 3}  # fc1 and fc2 for each of 3 chunks
    torch.testing.assert_close(chunked, whole, rtol=1e-6, atol=1e-6)


# --- kernel and landmark system ------------------------------------------------------------------------------------


def test_gaussian_kernel_query_scale_is_folded_exactly():
    generator = torch.Generator().manual_seed(0)
    queries = torch.randn(3, 40, 8, generator=generator, dtype=torch.float64)
    landmarks = torch.randn(3, 6, 8, generator=generator, dtype=torch.float64)
    scale = 8**-0.25
    expected = torch.exp(-0.5 * torch.cdist(scale * queries, landmarks).pow(2))
    torch.testing.assert_close(gaussian_kernel(queries, landmarks, query_scale=scale), expected, rtol=1e-12, atol=1e-13)
    with_grad = gaussian_kernel(queries.requires_grad_(), landmarks, query_scale=scale)
    torch.testing.assert_close(with_grad.detach(), expected, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gaussian_kernel_of_far_queries_is_the_smallest_normal_number_not_subnormal(dtype):
    """Queries far from every landmark: entries whose exponent lies below `underflow_exponent` (exp would be subnormal
    or zero, the slow path of the CPU's exp) are the smallest normal number; all others are the plain exp."""
    generator = torch.Generator().manual_seed(0)
    spread = 6.0 if dtype == torch.float32 else 18.0
    queries = torch.randn(2, 64, 8, generator=generator, dtype=dtype) * spread
    landmarks = torch.randn(2, 6, 8, generator=generator, dtype=dtype)
    exact_exponent = -0.5 * torch.cdist(queries.double(), landmarks.double()).pow(2)
    lowest = underflow_exponent(dtype)
    below, above = exact_exponent < lowest - 1, exact_exponent > lowest + 1
    assert below.any() and above.any()  # both regimes are exercised
    tiny = torch.finfo(dtype).tiny
    for requires_grad in (False, True):
        kernel = gaussian_kernel(queries.clone().requires_grad_(requires_grad), landmarks)
        assert kernel.dtype == dtype and bool((kernel >= tiny).all()) and bool((kernel <= 1).all())
        assert bool((kernel[below] == torch.exp(torch.tensor(lowest, dtype=dtype))).all())
        # the float32 exponent carries the rounding of ||q||^2 ~ 10^3: about 1e-4 relative on the kernel
        torch.testing.assert_close(kernel[above].double(), exact_exponent[above].exp(), rtol=2e-3, atol=0)
    far_queries = queries.clone().requires_grad_()
    gaussian_kernel(far_queries, landmarks).sum().backward()
    assert torch.isfinite(far_queries.grad).all()
    only_below = below.all(-1)  # queries far from every landmark: the clamp passes no gradient
    assert only_below.any() and bool((far_queries.grad[only_below] == 0).all())


def test_cholesky_inverse_matches_exact_inverse_and_falls_back_on_indefinite():
    generator = torch.Generator().manual_seed(0)
    points = torch.randn(4, 30, 8, generator=generator, dtype=torch.float64)
    kernel = gaussian_kernel(points, points)
    expected = torch.linalg.inv(kernel + 0.01 * torch.eye(30, dtype=torch.float64))
    torch.testing.assert_close(cholesky_inverse_spd(kernel, 0.01), expected, rtol=1e-10, atol=1e-10)
    # a symmetric indefinite matrix: Cholesky fails, LU inverts it
    indefinite = torch.diag(torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64))
    expected = torch.linalg.inv(indefinite + 1e-4 * torch.eye(3, dtype=torch.float64))
    torch.testing.assert_close(cholesky_inverse_spd(indefinite, 0.0), expected)


def test_cholesky_and_newton_models_agree_where_newton_converges():
    """With well-separated landmarks (random weights), 20 Newton steps on A + 0.01 I reach the exact inverse, so the
    exact solve gives the same logits and gradients. (SOFT-Norm's Newton step size is not meant to converge to the
    inverse of such matrices, so only plain SOFT is compared.)"""
    newton = tiny_model(torch.float64)
    cholesky = tiny_model(torch.float64, inverse_method="cholesky")
    pixel_values = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    newton_logits, cholesky_logits = newton(pixel_values).logits, cholesky(pixel_values).logits
    torch.testing.assert_close(cholesky_logits, newton_logits, rtol=1e-7, atol=1e-9)
    newton_logits.sum().backward()
    cholesky_logits.sum().backward()
    for (name, first), (_, second) in zip(newton.named_parameters(), cholesky.named_parameters()):
        torch.testing.assert_close(second.grad, first.grad, rtol=1e-6, atol=1e-9, msg=name)


def test_auto_inverse_method_switches_at_the_documented_size():
    assert resolve_inverse_method("auto", AUTO_NEWTON_MAX_LANDMARKS) == "newton"
    assert resolve_inverse_method("auto", AUTO_NEWTON_MAX_LANDMARKS + 1) == "cholesky"
    assert resolve_inverse_method("newton", 10_000) == "newton"
    assert resolve_inverse_method("cholesky", 4) == "cholesky"
    with pytest.raises(ValueError, match="inverse_method"):
        resolve_inverse_method("lu", 4)
    # in a model: 4 landmarks per layer at 64 px, so "auto" computes the Newton result bit for bit
    newton, auto = tiny_model(), tiny_model()
    for module in auto.modules():
        if isinstance(module, SoftSelfAttention):
            module.inverse_method = "auto"
    pixel_values = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(auto(pixel_values).logits, newton(pixel_values).logits, rtol=0, atol=0)


# --- bounded landmarks ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_landmarks", [1, 4, 16, 49, 100])
def test_landmark_grid_never_exceeds_the_bound(max_landmarks):
    for height in range(1, 70, 3):
        for width in (1, 2, 5, 13, 64, 257):
            grid = landmark_grid(height, width, max_landmarks)
            if height * width <= max_landmarks:
                assert grid is None
            else:
                assert 1 <= grid[0] * grid[1] <= max_landmarks
                assert grid[0] <= height and grid[1] <= width


def test_bounded_landmarks_shapes_and_identity_below_the_bound():
    official, bounded = tiny_model(), tiny_model(max_landmarks=4)
    small = torch.randn(1, 3, 64, 64)  # 2 x 2 = 4 landmarks per layer: no pooling, identical outputs
    with torch.no_grad():
        torch.testing.assert_close(bounded(small).logits, official(small).logits, rtol=0, atol=0)
    large = torch.randn(1, 3, 256, 192)
    assert min(landmark_counts(official, large)) > 4
    counts = landmark_counts(bounded, large)
    assert len(counts) == sum(bounded.config.depths[:3]) and max(counts) <= 4
    with torch.no_grad():
        logits = bounded(large).logits
    assert logits.shape == (1, 3) and torch.isfinite(logits).all()


def flops_per_pixel(model, size: int) -> float:
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.randn(1, 3, size, size))
    return counter.get_total_flops() / size**2


def test_bounded_landmarks_make_cost_linear_in_pixels():
    """FLOPs per pixel stay flat from 128 to 512 px with bounded landmarks and grow with the official rule."""
    bounded, official = tiny_model(max_landmarks=4), tiny_model()
    bounded_flops = [flops_per_pixel(bounded, size) for size in (128, 256, 512)]
    official_growth = flops_per_pixel(official, 512) / flops_per_pixel(official, 128)
    # every stage is bounded, the softmax stage 4 included: the cost per pixel is flat
    assert max(bounded_flops) / min(bounded_flops) < 1.02, bounded_flops
    assert official_growth > 2.0, official_growth


def test_bounded_last_stage_attends_to_the_pooled_token_map():
    """With `max_landmarks`, stage-4 keys/values come from [cls, average-pooled patch tokens]: checked against a
    direct float64 computation, and unchanged at or below the bound."""
    model = tiny_model(torch.float64, max_landmarks=4)
    attention = model.soft.encoder.stages[-1].layers[0].attention
    height, width = 5, 3
    hidden_states = torch.randn(2, 1 + height * width, attention.proj.in_features, dtype=torch.float64)
    grid = landmark_grid(height, width, 4)
    patch_map = hidden_states[:, 1:].reshape(2, height, width, -1).permute(0, 3, 1, 2)
    pooled = F.adaptive_avg_pool2d(patch_map, grid).flatten(2).transpose(1, 2)
    keys_from = torch.cat((hidden_states[:, :1], pooled), dim=1)  # (2, 1 + 4, hidden)
    heads, head_size = attention.num_attention_heads, attention.attention_head_size

    def split(tokens):  # (batch, n, hidden) -> (batch, heads, n, head_size)
        return tokens.reshape(tokens.shape[0], tokens.shape[1], heads, head_size).transpose(1, 2)

    query = split(attention.query(hidden_states))
    key, value = attention.key_value(keys_from).split(heads * head_size, dim=-1)
    scores = query @ split(key).transpose(-1, -2) / math.sqrt(head_size)  # (batch, heads, n, 1 + 4)
    context = (scores.softmax(-1) @ split(value)).transpose(1, 2).reshape(hidden_states.shape)
    with torch.no_grad():
        torch.testing.assert_close(attention(hidden_states, height, width), attention.proj(context), rtol=1e-12, atol=1e-12)
        small = hidden_states[:, : 1 + 4]  # a 2 x 2 map: no pooling
        attention.max_keys = None
        unbounded = attention(small, 2, 2)
        attention.max_keys = 4
        torch.testing.assert_close(attention(small, 2, 2), unbounded, rtol=0, atol=0)


# --- benchmark helpers ---------------------------------------------------------------------------------------------


def test_meta_device_forward_gives_shapes_without_compute():
    """The benchmark estimates FLOPs and tensor sizes on the meta device; the encoder must run there."""
    with torch.device("meta"):
        model = SoftForImageClassification(SoftConfig(**tiny_config_kwargs(inverse_method="cholesky")))
    tokens, _ = model.soft.encoder(torch.empty(2, 3, 96, 64, device="meta"))
    assert tokens.device.type == "meta" and tokens.shape == (2, 1 + 3 * 2, 32)


def test_benchmark_targets_are_ratios_of_this_runs_cells_named_by_issue():
    """The targets table divides two cells of the same results and judges each ratio against its own issue's bar."""
    from soft_hf.benchmarks.speed import evaluate_targets

    def models(images_per_s):
        return {"cells": {"224": {name: {"images_per_s": value} for name, value in images_per_s.items()}}}

    results = {
        # 1.8x the official code: issue 6's 1.5x is met, issue 12's 2x is not; PVTv2-b1 was skipped in this run.
        "models": models({"soft_tiny": 36.0, "official_forward": 20.0, "vit_tiny": 30.0}),
        "training": {"cells": {"soft_tiny": {"images_per_s": 6.0}, "official_forward": {"images_per_s": 4.0}}},
    }
    results["models"]["cells"]["224"]["pvt_v2_b1"] = {"skipped": "not requested"}
    targets = {target["target"]: target for target in evaluate_targets(results)}
    versus_official = "224 px fp32 eager, official rule: SOFT-Tiny images/s / official-forward transcription"
    assert targets[f"[issue 6] {versus_official}"]["measured"] == pytest.approx(1.8)
    assert targets[f"[issue 6] {versus_official}"]["status"] == "pass"
    assert targets[f"[issue 12] {versus_official}"]["threshold"] == ">= 2.0"
    assert targets[f"[issue 12] {versus_official}"]["status"] == "FAIL"
    assert targets["[issue 12] 224 px fp32 eager, official rule: SOFT-Tiny images/s / ViT DeiT-Tiny size"]["status"] == "pass"
    training = "[issue 12] training step 224 px fp32: SOFT-Tiny images/s / official-forward transcription"
    assert targets[training]["measured"] == pytest.approx(1.5) and targets[training]["status"] == "pass"
    for issue in ("issue 6", "issue 12"):
        skipped = targets[f"[{issue}] 224 px fp32 eager, official rule: SOFT-Tiny images/s / PVTv2-b1"]
        assert skipped["measured"] is None and skipped["status"] == "n/a"
    assert targets["[issue 12] training step 224 px fp32: SOFT-Tiny images/s / PVTv2-b1"]["status"] == "n/a"
    assert all(target["target"].startswith(("[issue 6] ", "[issue 12] ")) for target in targets.values())


@pytest.mark.parametrize("arch", ["compact_soft", "mini_soft"])
def test_official_baseline_reproduces_official_logits(request, arch):
    """soft_hf.benchmarks.official_baseline is an honest baseline: with the official weights it gives the official logits."""
    reference = request.getfixturevalue("compact_reference" if arch.startswith("compact") else "reference")
    baseline_module = load_official_baseline()
    record = reference_record(reference, arch)
    constructor = record["constructor"]
    baseline = baseline_module.OfficialSoftBaseline(
        embed_dims=constructor["embed_dims"],
        num_heads=constructor["num_heads"],
        mlp_ratios=constructor["mlp_ratios"],
        depths=constructor["depths"],
        sr_ratios=constructor["sr_ratios"],
        num_classes=constructor["num_classes"],
    )
    with torch.serialization.safe_globals([argparse.Namespace]):
        checkpoint = torch.load(reference / f"{arch}.pth", map_location="cpu", weights_only=True)
    baseline.load_state_dict(checkpoint["state_dict"], strict=True)
    baseline.eval()
    vectors = load_file(reference / f"{arch}.io.safetensors")
    for index in range(len(record["cases"])):
        with torch.no_grad():
            logits32 = baseline(vectors[f"input_{index}"])
            logits64 = baseline.double()(vectors[f"input_{index}"].double())
        baseline.float()
        torch.testing.assert_close(logits32, vectors[f"logits_fp32_{index}"], rtol=0, atol=1e-4)
        torch.testing.assert_close(logits64, vectors[f"logits_fp64_{index}"].double(), rtol=0, atol=1e-8)


def test_official_baseline_matches_our_model_on_the_same_weights():
    model = tiny_model(torch.float64)
    baseline = load_official_baseline().baseline_from_soft_model(model)
    pixel_values = torch.randn(2, 3, 96, 64, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(baseline(pixel_values), model(pixel_values).logits, rtol=0, atol=1e-10)


# --- torch.compile -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [{}, {"inverse_method": "cholesky", "max_landmarks": 2}, {"normalization": "symmetric"}],
    ids=["newton", "cholesky-bounded", "soft-norm"],
)
def test_torch_compile_traces_without_graph_breaks_and_matches_eager(overrides):
    """Dynamo + AOT autograd (no C++ compilation): one graph, same logits and gradients as eager."""
    torch._dynamo.reset()
    model = tiny_model(**overrides).train()
    pixel_values = torch.randn(2, 3, 64, 64)
    eager_logits = model(pixel_values).logits
    eager_grads = torch.autograd.grad(eager_logits.sum(), list(model.parameters()), allow_unused=True)
    explanation = torch._dynamo.explain(model)(pixel_values)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    compiled_logits = compiled(pixel_values).logits
    torch.testing.assert_close(compiled_logits, eager_logits, rtol=1e-5, atol=1e-6)
    compiled_grads = torch.autograd.grad(compiled_logits.sum(), list(model.parameters()), allow_unused=True)
    for eager_grad, compiled_grad in zip(eager_grads, compiled_grads):
        if eager_grad is not None:
            torch.testing.assert_close(compiled_grad, eager_grad, rtol=1e-4, atol=1e-6)


def test_default_torch_compile_matches_eager(tmp_path, monkeypatch):
    """`torch.compile(model)` with the default (inductor) backend, once, on the tiniest model."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    torch._dynamo.reset()
    model = tiny_model(depths=[1, 1, 1, 1])
    pixel_values = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(pixel_values).logits
        compiled = torch.compile(model)(pixel_values).logits
    torch.testing.assert_close(compiled, expected, rtol=1e-5, atol=1e-6)
    assert not math.isnan(compiled.sum().item())
