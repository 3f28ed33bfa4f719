"""CPU bfloat16 autocast (issue 12): the Gaussian kernel, the landmark-matrix inverse (Newton or Cholesky) and the
products with the landmark operator stay float32 inside SOFT's attention while the linear layers run in bfloat16;
and the agreement benchmarks (`bf16_agreement`, `quantization_agreement`) on a small stand-in for Fashion-MNIST."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch

import soft_hf.models.soft.soft_attention as soft_attention
from soft_hf import SoftConfig, SoftForImageClassification, SoftImageProcessor
from soft_hf.benchmarks import bf16_agreement, quantization_agreement
from soft_hf.benchmarks.agreement import predictions

from conftest import tiny_config_kwargs


def record_calls(monkeypatch, name: str, calls: list) -> None:
    """Wrap `soft_attention.<name>` to record its tensor arguments' and result's dtypes and whether autocast was on."""
    original = getattr(soft_attention, name)

    def recording(*args, **kwargs):
        result = original(*args, **kwargs)
        calls.append(
            {
                "function": name,
                "inputs": [arg.dtype for arg in args if isinstance(arg, torch.Tensor)],
                "output": result.dtype,
                "autocast": torch.is_autocast_enabled("cpu"),
            }
        )
        return result

    monkeypatch.setattr(soft_attention, name, recording)


@pytest.mark.parametrize("normalization", ["none", "symmetric"])
@pytest.mark.parametrize("inverse_method", ["newton", "cholesky"])
def test_kernel_inverse_and_products_stay_float32_under_bf16_autocast(monkeypatch, normalization, inverse_method):
    torch.manual_seed(0)
    config = SoftConfig(**tiny_config_kwargs(normalization=normalization, inverse_method=inverse_method))
    model = SoftForImageClassification(config).eval()
    calls, matmul_dtypes = [], []
    for name in ("gaussian_kernel", "newton_inverse", "cholesky_inverse_spd"):
        record_calls(monkeypatch, name, calls)
    projections = []  # the query projection's output: bfloat16 under autocast (the layers around stay low precision)
    model.soft.encoder.stages[0].layers[0].attention.query.register_forward_hook(
        lambda module, inputs, output: projections.append(output.dtype)
    )
    original_matmul = torch.Tensor.__matmul__

    def recording_matmul(left, right):  # K1^T V, W (K1^T V) and K1 (...) of the attention
        matmul_dtypes.append((left.dtype, right.dtype))
        return original_matmul(left, right)

    pixel_values = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(pixel_values).logits
        calls.clear()  # only the autocast pass is checked
        projections.clear()
        monkeypatch.setattr(torch.Tensor, "__matmul__", recording_matmul)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(pixel_values).logits
        monkeypatch.setattr(torch.Tensor, "__matmul__", original_matmul)

    num_soft_layers = sum(config.depths[:3])
    kernels = [call for call in calls if call["function"] == "gaussian_kernel"]
    inverses = [call for call in calls if call["function"] != "gaussian_kernel"]
    assert len(kernels) == 2 * num_soft_layers  # A = k(Q~, Q~) and K1 = k(Q, Q~) per layer (one chunk each)
    expected_inverse = "newton_inverse" if inverse_method == "newton" else "cholesky_inverse_spd"
    assert len(inverses) == num_soft_layers and {call["function"] for call in inverses} == {expected_inverse}
    for call in calls:
        assert call["inputs"] == [torch.float32] * len(call["inputs"]) and call["output"] == torch.float32, call
        assert call["autocast"] is False, call  # the float32 island turns autocast off
    assert projections == [torch.bfloat16]
    assert matmul_dtypes and all(dtypes == (torch.float32, torch.float32) for dtypes in matmul_dtypes), matmul_dtypes
    assert logits.dtype == torch.bfloat16
    torch.testing.assert_close(logits.float(), expected, rtol=0, atol=0.1)


# --- agreement benchmarks ------------------------------------------------------------------------------------------


def write_idx(path, array: np.ndarray, magic: int) -> None:
    header = magic.to_bytes(4, "big") + b"".join(size.to_bytes(4, "big") for size in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def tiny_fashion_mnist(tmp_path):
    """A classifier folder with ten labels and a 24-image stand-in for the Fashion-MNIST test set."""
    rng = np.random.default_rng(0)
    data = tmp_path / "fashion-mnist"
    data.mkdir()
    write_idx(data / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (24, 28, 28)), 0x00000803)
    write_idx(data / "t10k-labels-idx1-ubyte.gz", rng.integers(0, 10, (24,)), 0x00000801)
    torch.manual_seed(0)
    model = SoftForImageClassification(SoftConfig(**tiny_config_kwargs(num_labels=10, image_size=32)))
    model.save_pretrained(tmp_path / "model")
    processor = SoftImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor.save_pretrained(tmp_path / "model")
    return tmp_path / "model", data


def test_bf16_agreement_reports_accuracies_agreement_and_speeds(tiny_fashion_mnist):
    model_folder, data = tiny_fashion_mnist
    arguments = ["--model", str(model_folder), "--fashion_mnist_dir", str(data), "--batch_size", "10"]
    result = bf16_agreement.main(arguments)
    assert result["num_images"] == 24
    for key in ("float32_top1_accuracy", "bf16_top1_accuracy", "top1_agreement"):
        assert 0.0 <= result[key] <= 1.0 and result[key] * 24 == pytest.approx(round(result[key] * 24))
    assert result["float32_images_per_second"] > 0 and result["bf16_images_per_second"] > 0
    quantized = quantization_agreement.main(arguments + ["--max_samples", "12"])
    assert quantized["num_images"] == 12 and quantized["linear_layers_quantized"] > 0
    assert {"int8_top1_accuracy", "int8_images_per_second", "top1_agreement"} <= set(quantized)


def test_predictions_run_each_batch_in_the_given_context():
    torch.manual_seed(0)
    model = SoftForImageClassification(SoftConfig(**tiny_config_kwargs(num_labels=10))).eval()
    batches = [torch.randn(3, 3, 64, 64), torch.randn(2, 3, 64, 64)]
    classes, rate = predictions(model, batches)
    with torch.no_grad():
        assert torch.equal(classes, torch.cat([model(batch).logits.argmax(-1) for batch in batches]))
    seen = []
    model.register_forward_pre_hook(lambda module, inputs: seen.append(torch.is_autocast_enabled("cpu")))
    predictions(model, batches, bf16_agreement.bfloat16_autocast)
    assert seen == [True, True] and rate > 0
