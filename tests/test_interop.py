"""The fast paths are invisible to the tools that rely on module calls (issue 15): partial freezing and PEFT get the
plain computation's gradients, Accelerate's offloading reproduces the logits, hooks on every leaf module fire once and
see tensors nobody changes afterwards, dynamic quantization finds every linear layer; plus the landmark grid rule,
the per-matrix Cholesky fallback, empty batches, and no host synchronisation in the forward pass off the CPU."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from soft_hf import SoftConfig, SoftForImageClassification
from soft_hf.models.soft.soft_attention import cholesky_inverse_spd, gaussian_kernel, landmark_grid

from conftest import tiny_config_kwargs


def tiny_model(**overrides) -> SoftForImageClassification:
    torch.manual_seed(0)
    model = SoftForImageClassification(SoftConfig(**tiny_config_kwargs(**overrides))).eval()
    for module in model.modules():  # non-trivial BatchNorm statistics, so folding them would show
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 2.0)
    return model


def plain_gradients(model: nn.Module, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
    """Gradients of sum(logits^2) with every fast path disabled (oneDNN off): the plain PyTorch computation."""
    model.zero_grad(set_to_none=True)
    with torch.backends.mkldnn.flags(enabled=False):
        model(pixel_values).logits.square().sum().backward()
    return {name: parameter.grad.clone() for name, parameter in model.named_parameters() if parameter.grad is not None}


def gradients(model: nn.Module, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    model(pixel_values).logits.square().sum().backward()
    return {name: parameter.grad.clone() for name, parameter in model.named_parameters() if parameter.grad is not None}


def assert_same_gradients(actual: dict, expected: dict) -> None:
    assert sorted(actual) == sorted(expected)
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=1e-5, atol=1e-6, msg=name)


# --- 1. partial freezing ------------------------------------------------------------------------------------------


def test_bias_only_fine_tuning_gets_every_bias_gradient():
    model = tiny_model()
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name.endswith(".bias"))
    pixel_values = torch.randn(2, 3, 64, 64)
    trainable = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    actual = gradients(model, pixel_values)
    assert set(actual) == trainable
    assert_same_gradients(actual, plain_gradients(model, pixel_values))


def test_frozen_first_stem_convolution_leaves_the_rest_of_the_stem_trainable():
    model = tiny_model()
    stem = model.soft.encoder.stages[0].patch_embeddings.projection
    stem[0].requires_grad_(False)
    pixel_values = torch.randn(2, 3, 64, 64)
    actual = gradients(model, pixel_values)
    stem_names = {f"soft.encoder.stages.0.patch_embeddings.projection.{name}" for name, _ in stem.named_parameters()}
    frozen = {f"soft.encoder.stages.0.patch_embeddings.projection.0.{name}" for name in ("weight", "bias")}
    assert stem_names - frozen <= set(actual)
    assert_same_gradients(actual, plain_gradients(model, pixel_values))


def test_lora_on_projections_mlp_and_convolutions_gets_the_plain_gradients():
    import peft
    model = tiny_model()
    config = peft.LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=["query", "value", "fc1", "fc2", "landmark_conv", "skip_conv", "projection.0"],
        init_lora_weights=False,  # non-zero adapters, so they change the outputs
        bias="lora_only",
    )
    lora_model = peft.get_peft_model(model, config)
    pixel_values = torch.randn(2, 3, 64, 64)
    actual = gradients(lora_model, pixel_values)
    assert any("landmark_conv.lora_A" in name for name in actual) and any("skip_conv.lora_B" in name for name in actual)
    assert_same_gradients(actual, plain_gradients(lora_model, pixel_values))
    with torch.no_grad():  # inference through the adapters (fast paths elsewhere) equals the plain computation
        adapted = lora_model(pixel_values).logits
        with torch.backends.mkldnn.flags(enabled=False):
            plain = lora_model(pixel_values).logits
        lora_model.disable_adapter_layers()  # the adapters are used: without them the logits change
        without = lora_model(pixel_values).logits
    torch.testing.assert_close(adapted, plain, rtol=1e-4, atol=1e-5)
    assert (adapted - without).abs().max() > 1e-3


@pytest.mark.parametrize("use_reentrant", [True, False], ids=["reentrant", "non-reentrant"])
def test_lora_under_activation_checkpointing_gets_the_gradients_without_it(use_reentrant):
    """PEFT's documented order (checkpointing on, then `get_peft_model`) calls `enable_input_require_grads`, which
    hooks `get_input_embeddings()`: the stage-1 stem. Its output then requires grad although the stem is frozen, so
    reentrant checkpointing still reaches the adapters inside the checkpointed layers (without the stem as input
    embeddings the loss did not even require grad)."""
    import peft

    model = tiny_model().train()
    assert model.get_input_embeddings() is model.soft.encoder.stages[0].patch_embeddings
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": use_reentrant})
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value", "fc1", "fc2"], init_lora_weights=False)
    lora_model = peft.get_peft_model(model, config)
    trainable = {name for name, parameter in lora_model.named_parameters() if parameter.requires_grad}
    assert trainable and all(".lora_" in name for name in trainable)
    pixel_values = torch.randn(2, 3, 64, 64)
    checkpointed = gradients(lora_model, pixel_values)
    assert set(checkpointed) == trainable
    model.activation_checkpointing_disable()
    assert_same_gradients(checkpointed, gradients(lora_model, pixel_values))


# --- 2. offloading ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("offload") / "model"
    model = tiny_model(normalization="symmetric")
    model.save_pretrained(folder)
    pixel_values = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(pixel_values).logits
    return folder, pixel_values, expected


def test_device_map_auto_with_disk_offload_reproduces_the_logits(saved_model, tmp_path):
    folder, pixel_values, expected = saved_model
    model = SoftForImageClassification.from_pretrained(
        folder, device_map="auto", max_memory={"cpu": "120KB"}, offload_folder=str(tmp_path / "offload")
    ).eval()
    assert "disk" in set(model.hf_device_map.values())
    with torch.no_grad():
        torch.testing.assert_close(model(pixel_values).logits, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("offload", ["cpu_offload", "disk_offload"])
def test_accelerate_offload_reproduces_the_logits(saved_model, tmp_path, offload):
    import accelerate
    folder, pixel_values, expected = saved_model
    model = SoftForImageClassification.from_pretrained(folder).eval()
    if offload == "cpu_offload":
        model = accelerate.cpu_offload(model, execution_device=torch.device("cpu"))
    else:
        model = accelerate.disk_offload(model, str(tmp_path / "disk"), execution_device=torch.device("cpu"))
    assert any(parameter.device.type == "meta" for parameter in model.parameters())
    with torch.no_grad():
        torch.testing.assert_close(model(pixel_values).logits, expected, rtol=1e-5, atol=1e-6)


# --- 3. hooks -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("grad", [False, True], ids=["inference", "autograd"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_forward_hooks_on_every_leaf_module_fire_once_and_see_outputs_nobody_changes(grad, dtype):
    model = tiny_model().to(dtype)
    calls, captured = {}, {}

    def record(name):
        def hook(_module, _inputs, output):
            calls[name] = calls.get(name, 0) + 1
            if isinstance(output, torch.Tensor):
                captured[name] = (output, output.detach().clone())

        return hook

    leaves = {name: module for name, module in model.named_modules() if not list(module.children())}
    handles = [module.register_forward_hook(record(name)) for name, module in leaves.items()]
    pixel_values = torch.randn(2, 3, 64, 80, dtype=dtype)
    try:
        with torch.set_grad_enabled(grad):
            hooked = model(pixel_values).logits
    finally:
        for handle in handles:
            handle.remove()
    assert calls == {name: 1 for name in leaves}
    for name, (output, copy) in captured.items():
        torch.testing.assert_close(output.detach(), copy, rtol=0, atol=0, msg=f"{name}'s output changed")
    with torch.no_grad():
        torch.testing.assert_close(hooked.detach(), model(pixel_values).logits, rtol=1e-5, atol=1e-6)


def test_auxiliary_loss_on_hooked_outputs_backpropagates():
    """Eval mode with autograd (e.g. Grad-CAM, feature-matching losses): a loss term computed in a hook from a module's
    output stays valid, because nothing later writes into that output."""
    model = tiny_model()
    auxiliary = []
    for layer in model.soft.encoder.stages[0].layers:
        for module in (layer.attention, layer.mlp, layer.mlp.fc1):
            module.register_forward_hook(lambda _module, _inputs, output: auxiliary.append(output.square().mean()))
    logits = model(torch.randn(2, 3, 64, 64)).logits
    (logits.sum() + sum(auxiliary)).backward()  # no "modified by an inplace operation"
    assert model.soft.encoder.stages[0].layers[0].attention.query.weight.grad is not None


# --- 4. quantization ----------------------------------------------------------------------------------------------


def test_dynamic_quantization_quantizes_every_linear_layer():
    model = tiny_model()
    num_linear = sum(isinstance(module, nn.Linear) for module in model.modules())
    quantized = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    dynamic_linear = torch.ao.nn.quantized.dynamic.Linear
    assert sum(isinstance(module, dynamic_linear) for module in quantized.modules()) == num_linear
    assert not any(type(module) is nn.Linear for module in quantized.modules())
    pixel_values = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        reference = tiny_model()(pixel_values).logits
        logits = quantized(pixel_values).logits
    assert torch.isfinite(logits).all() and (logits - reference).abs().max() < 0.1 * reference.abs().max() + 0.05


# --- 5. landmark grid ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bound", [4, 49, 64, 100])
def test_landmark_grid_is_symmetric_square_bounded_and_keeps_the_aspect_ratio(bound):
    for height in range(1, 200):
        for width in range(height, 200):
            grid = landmark_grid(height, width, bound)
            if height * width <= bound:
                assert grid is None
                continue
            assert landmark_grid(width, height, bound) == grid[::-1]
            rows, columns = grid
            assert 1 <= rows <= height and 1 <= columns <= width and rows * columns <= bound
            if height == width:
                assert rows == columns == math.isqrt(min(bound, height * width)) or rows == columns == height
            exact = rows * width / height
            assert math.floor(exact) <= columns <= math.ceil(exact) or rows == 1


@pytest.mark.parametrize("bound", [4, 49, 100])
def test_landmark_grid_is_the_largest_aspect_keeping_grid(bound):
    for height in range(2, 90, 3):
        for width in range(height, 160, 7):
            grid = landmark_grid(height, width, bound)
            if grid is None:
                continue
            keeps = [
                (rows, columns)
                for rows in range(1, height + 1)
                for columns in range(1, width + 1)
                if rows * columns <= bound and math.floor(rows * width / height) <= columns <= math.ceil(rows * width / height)
            ]
            if keeps:
                assert grid[0] * grid[1] == max(rows * columns for rows, columns in keeps), (height, width, grid)


def test_landmark_grid_examples_from_the_issue():
    assert landmark_grid(25, 25, 49) == (7, 7)
    assert landmark_grid(65, 65, 4) == (2, 2)
    assert landmark_grid(96, 1184, 49) == (2, 24) and landmark_grid(1184, 96, 49) == (24, 2)


# --- 6. Cholesky fallback -----------------------------------------------------------------------------------------


def failing_and_healthy_landmark_kernels() -> torch.Tensor:
    """(3, 2, 49, 49) float32 landmark kernels. Image 1's landmarks nearly coincide far from the origin: rounding in the
    float32 kernel makes its matrices indefinite beyond the Cholesky ridge, so their factorisation fails."""
    generator = torch.Generator().manual_seed(0)
    landmarks = torch.randn(3, 2, 49, 32, generator=generator)
    landmarks[1] = 10 * landmarks[1, :, :1] + 1e-3 * torch.randn(2, 49, 32, generator=generator)
    return gaussian_kernel(landmarks, landmarks)


def test_cholesky_falls_back_per_matrix_and_stays_batch_independent():
    kernels = failing_and_healthy_landmark_kernels()
    _, info = torch.linalg.cholesky_ex(kernels + 1e-4 * torch.eye(49))
    assert bool(info[1].all()) and not bool(info[0].any()) and not bool(info[2].any())
    together = cholesky_inverse_spd(kernels, 0.0)
    for image in range(3):
        torch.testing.assert_close(together[image], cholesky_inverse_spd(kernels[image : image + 1], 0.0)[0], rtol=0, atol=0)
    system = kernels.double() + 1e-4 * torch.eye(49, dtype=torch.float64)
    residual = (system @ together.double() - torch.eye(49, dtype=torch.float64)).abs().amax(dim=(-2, -1))
    assert torch.isfinite(together).all()
    assert residual[0].max() < 1e-2 and residual[2].max() < 1e-2  # the healthy images: their exact inverse
    assert residual[1].max() < 1.0  # the failed ones: an LU inverse, not garbage


def test_cholesky_fallback_under_torch_compile():
    kernels = failing_and_healthy_landmark_kernels()
    compiled = torch.compile(cholesky_inverse_spd, backend="aot_eager", fullgraph=True)(kernels, 0.0)
    eager = cholesky_inverse_spd(kernels, 0.0)
    torch.testing.assert_close(compiled[0::2], eager[0::2], rtol=1e-4, atol=1e-3)  # healthy images: the same
    system = kernels[1].double() + 1e-4 * torch.eye(49, dtype=torch.float64)
    residual = (system @ compiled[1].double() - torch.eye(49, dtype=torch.float64)).abs().max()
    assert torch.isfinite(compiled).all() and residual < 1.0  # the failed image: an LU inverse, not garbage


def test_cholesky_gradient_is_finite_with_a_failing_matrix():
    kernels = failing_and_healthy_landmark_kernels().requires_grad_(True)
    cholesky_inverse_spd(kernels, 0.0).sum().backward()
    assert torch.isfinite(kernels.grad).all()


# --- 7. smaller ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("normalization", ["none", "symmetric"])
def test_empty_batch_gives_empty_outputs(normalization):
    model = tiny_model(normalization=normalization)
    with torch.no_grad():
        outputs = model(torch.zeros(0, 3, 64, 64), output_hidden_states=True)
    assert outputs.logits.shape == (0, model.config.num_labels)
    assert all(hidden.shape[0] == 0 for hidden in outputs.hidden_states)


class HostSyncCounter(TorchDispatchMode):
    """Counts ops that copy a device value to the host (`.item()`, `bool(tensor)`), which synchronise a GPU."""

    def __init__(self):
        super().__init__()
        self.syncs = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.syncs += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("inverse_method", ["newton", "cholesky"])
def test_forward_off_the_cpu_reads_no_value_on_the_host(inverse_method):
    """On the meta device (standing in for a GPU here) the whole forward pass runs without one host read: neither
    the input check nor the Cholesky fallback synchronises. On the CPU the input check reads, which costs nothing."""
    with torch.device("meta"):
        model = SoftForImageClassification(SoftConfig(**tiny_config_kwargs(inverse_method=inverse_method))).eval()
    counter = HostSyncCounter()
    with counter, torch.no_grad():
        logits = model(torch.empty(2, 3, 64, 64, device="meta")).logits
    assert logits.shape == (2, 3) and counter.syncs == 0


def test_processor_warns_when_rescaling_images_already_in_unit_range_and_advises_the_fix():
    from transformers.testing_utils import CaptureLogger

    from soft_hf import SoftImageProcessor
    from soft_hf.models.soft import image_processing_soft

    processor = SoftImageProcessor()
    image = torch.rand(3, 40, 50)  # floats in [0, 1]
    image_processing_soft.logger.warning_once.cache_clear()
    with CaptureLogger(image_processing_soft.logger) as captured:
        processor(image, return_tensors="pt")
    assert "do_rescale=False" in captured.out
    image_processing_soft.logger.warning_once.cache_clear()
    with CaptureLogger(image_processing_soft.logger) as captured:
        processor(image, do_rescale=False, return_tensors="pt")
        processor(image * 255, return_tensors="pt")
    assert captured.out == ""
    with pytest.raises(ValueError, match="do_rescale=False"):
        processor(torch.full((3, 8, 8), 70000, dtype=torch.int32).numpy(), return_tensors="pt")
