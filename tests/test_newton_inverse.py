"""The Newton-Raphson Moore-Penrose inverse (paper Eq. (7)-(8)), its analytic backward, and numerical robustness."""

from __future__ import annotations

import pytest
import torch

from soft_hf import SoftConfig, SoftForImageClassification
from soft_hf.models.soft.soft_attention import SoftNewtonInverse, gaussian_kernel, newton_initial_step, newton_inverse

from conftest import tiny_config_kwargs


def random_spd(batch: int, size: int, condition: float, dtype=torch.float64, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    basis, _ = torch.linalg.qr(torch.randn(batch, size, size, generator=generator, dtype=dtype))
    eigenvalues = torch.logspace(0, -torch.log10(torch.tensor(condition)).item(), size, dtype=dtype)
    return basis @ torch.diag_embed(eigenvalues.expand(batch, size)) @ basis.transpose(-1, -2)


@pytest.mark.parametrize("adaptive", [False, True], ids=["soft-step", "soft-norm-step"])
@pytest.mark.parametrize("size,condition", [(8, 10.0), (49, 30.0)])
def test_matches_linalg_inv_on_well_conditioned_spd(adaptive, size, condition):
    matrix = random_spd(3, size, condition)
    inverse = newton_inverse(matrix, num_iterations=30, ridge=0.0, adaptive=adaptive)
    torch.testing.assert_close(inverse, torch.linalg.inv(matrix), rtol=1e-9, atol=1e-9)


def test_ridge_is_added_before_inversion():
    matrix = random_spd(2, 16, 5.0)
    inverse = newton_inverse(matrix, num_iterations=30, ridge=0.01, adaptive=False)
    expected = torch.linalg.inv(matrix + 0.01 * torch.eye(16, dtype=matrix.dtype))
    torch.testing.assert_close(inverse, expected, rtol=1e-9, atol=1e-9)


def test_gradcheck_against_analytic_inverse_gradient():
    """gradcheck compares our once-only backward with finite differences of the converged forward."""
    matrix = random_spd(2, 6, 4.0).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda m: newton_inverse(m, 40, 0.0, True), (matrix,), eps=1e-6, atol=1e-7)


def test_backward_matches_autograd_through_linalg_inv():
    matrix = random_spd(2, 12, 8.0)
    upstream = torch.randn(2, 12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ours = matrix.clone().requires_grad_(True)
    (newton_inverse(ours, 40, 0.0, False) * upstream).sum().backward()
    exact = matrix.clone().requires_grad_(True)
    (torch.linalg.inv(exact) * upstream).sum().backward()
    torch.testing.assert_close(ours.grad, exact.grad, rtol=1e-9, atol=1e-10)


def test_forward_records_no_graph_of_the_iteration():
    matrix = random_spd(1, 10, 3.0).requires_grad_(True)
    inverse = newton_inverse(matrix, 20, 0.0, True)
    assert type(inverse.grad_fn).__name__ == "SoftNewtonInverseBackward"
    assert [type(fn).__name__ for fn, _ in inverse.grad_fn.next_functions] == ["AccumulateGrad"]
    assert SoftNewtonInverse.apply(matrix.detach(), 20, 0.0, True, "head").grad_fn is None


def test_step_size_is_per_matrix_not_per_batch():
    """Scope "head" (official plain SOFT): every matrix has its own step size."""
    small, large = random_spd(1, 10, 3.0, seed=1), 50 * random_spd(1, 10, 3.0, seed=2)
    together = newton_initial_step(torch.cat([small, large]), adaptive=True)
    alone = torch.cat([newton_initial_step(small, adaptive=True), newton_initial_step(large, adaptive=True)])
    torch.testing.assert_close(together, alone, rtol=0, atol=0)


def _official_batched_step(matrices: torch.Tensor) -> torch.Tensor:
    """The official SOFT-Norm rule written as its while loop: one alpha from the largest row sum of all matrices,
    halved while the largest column sum of |I - A V0| over all of them exceeds 1.01 (at most 10 times)."""
    identity = torch.eye(matrices.shape[-1], dtype=matrices.dtype)
    alpha = 2.0 / matrices.sum(-1).max() ** 2
    halvings = 0
    while (identity - alpha * matrices @ matrices).abs().sum(-2).max() > 1.01 and halvings < 10:
        alpha, halvings = alpha / 2, halvings + 1
    return alpha


@pytest.mark.parametrize("scale", [1.0, 40.0])
def test_step_scopes_group_the_matrices_they_name(scale):
    """(batch 2, heads 3) matrices: "image" shares one alpha over an image's heads, "batch" over everything; each
    equals the official while loop on its group."""
    matrices = torch.stack([random_spd(3, 8, 5.0, seed=seed) for seed in range(2)]).abs()  # (2, 3, 8, 8)
    matrices[1, 2] *= scale
    per_image = newton_initial_step(matrices, adaptive=True, scope="image")
    per_batch = newton_initial_step(matrices, adaptive=True, scope="batch")
    assert per_image.shape == (2, 1, 1, 1) and per_batch.shape == (1, 1, 1, 1)
    for image in range(2):
        torch.testing.assert_close(per_image[image].squeeze(), _official_batched_step(matrices[image]), rtol=0, atol=0)
    torch.testing.assert_close(per_batch.squeeze(), _official_batched_step(matrices), rtol=0, atol=0)


@pytest.mark.parametrize("adaptive", [False, True], ids=["soft-step", "soft-norm-step"])
def test_unrolled_backward_is_the_derivative_of_an_unconverged_forward(adaptive):
    """After 4 steps the iteration is far from A^-1: gradcheck (finite differences of the forward itself) accepts the
    unrolled backward, step size included, and rejects the analytic inverse gradient."""
    matrix = random_spd(2, 6, 30.0).requires_grad_(True)
    unrolled = lambda m: newton_inverse(m, 4, 0.0, adaptive, step_scope="image", backward="unrolled")  # noqa: E731
    analytic = lambda m: newton_inverse(m, 4, 0.0, adaptive, step_scope="image", backward="analytic")  # noqa: E731
    assert (unrolled(matrix) @ matrix - torch.eye(6, dtype=matrix.dtype)).abs().max() > 0.1
    assert torch.autograd.gradcheck(unrolled, (matrix,), eps=1e-6, atol=1e-7)
    assert not torch.autograd.gradcheck(analytic, (matrix,), eps=1e-6, atol=1e-7, raise_exception=False)


def test_unrolled_and_analytic_backward_agree_at_convergence():
    matrix = random_spd(2, 8, 4.0)
    upstream = torch.randn(2, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    grads = []
    for backward in ("analytic", "unrolled"):
        leaf = matrix.clone().requires_grad_(True)
        (newton_inverse(leaf, 40, 0.0, True, backward=backward) * upstream).sum().backward()
        grads.append(leaf.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-9, atol=1e-10)


def test_unknown_backward_is_refused():
    with pytest.raises(ValueError, match="analytic"):
        newton_inverse(random_spd(1, 4, 2.0), backward="autograd")


def collapsed_landmark_kernel(dtype=torch.float32) -> torch.Tensor:
    """Gaussian kernel of landmarks that nearly coincide: rank ~1, condition number far beyond float32."""
    generator = torch.Generator().manual_seed(0)
    centre = torch.randn(1, 1, 1, 32, generator=generator)
    landmarks = centre + 1e-4 * torch.randn(2, 3, 49, 32, generator=generator)
    return gaussian_kernel(landmarks.to(dtype), landmarks.to(dtype))


@pytest.mark.parametrize("adaptive,ridge", [(False, 0.01), (True, 0.0)], ids=["soft", "soft-norm"])
def test_nearly_singular_landmark_matrix_stays_finite(adaptive, ridge):
    kernel = collapsed_landmark_kernel()
    assert torch.linalg.cond(kernel.double()).max() > 1e7
    inverse = newton_inverse(kernel, 20, ridge, adaptive)
    assert torch.isfinite(inverse).all()


def collapse_landmarks(model: SoftForImageClassification) -> None:
    """Zero the landmark convolutions: every landmark becomes LayerNorm(0) -> identical points, A = all ones."""
    for module in model.modules():
        if hasattr(module, "landmark_conv"):
            torch.nn.init.zeros_(module.landmark_conv.weight)


@pytest.mark.parametrize("normalization", ["none", "symmetric"])
def test_model_output_finite_with_collapsed_landmarks_fp32_and_bf16_autocast(normalization):
    torch.manual_seed(0)
    model = SoftForImageClassification(SoftConfig(**tiny_config_kwargs(normalization=normalization))).eval()
    collapse_landmarks(model)
    pixel_values = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        logits = model(pixel_values).logits
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits_bf16 = model(pixel_values).logits
    assert torch.isfinite(logits).all() and torch.isfinite(logits_bf16).all()
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(pixel_values, labels=torch.tensor([0, 1])).loss
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_kernel_and_inverse_run_in_float32_under_autocast():
    """Record the dtypes reaching the Newton inverse under bf16 autocast: float32, never bfloat16."""
    torch.manual_seed(0)
    model = SoftForImageClassification(SoftConfig(**tiny_config_kwargs())).eval()
    seen = []
    original = SoftNewtonInverse.forward

    def recording_forward(ctx, matrix, *args):
        seen.append(matrix.dtype)
        return original(ctx, matrix, *args)

    SoftNewtonInverse.forward = staticmethod(recording_forward)
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            model(torch.randn(1, 3, 64, 64))
    finally:
        SoftNewtonInverse.forward = staticmethod(original)
    assert seen and set(seen) == {torch.float32}


def test_gaussian_kernel_is_exact_and_bounded():
    generator = torch.Generator().manual_seed(0)
    queries = torch.randn(2, 3, 20, 8, generator=generator, dtype=torch.float64)
    landmarks = torch.randn(2, 3, 5, 8, generator=generator, dtype=torch.float64)
    expected = torch.exp(-0.5 * torch.cdist(queries, landmarks).pow(2))
    torch.testing.assert_close(gaussian_kernel(queries, landmarks), expected, rtol=1e-12, atol=1e-12)
    same = gaussian_kernel(queries.float(), queries.float())
    assert same.max() <= 1.0 and torch.allclose(same.diagonal(dim1=-2, dim2=-1), torch.ones(()))
