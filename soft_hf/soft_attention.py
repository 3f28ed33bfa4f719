# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""Softmax-free attention: the Gaussian kernel, its Nyström approximation over convolutional landmarks, and the
Newton-Raphson Moore-Penrose inverse of the landmark matrix.

Equation numbers refer to Lu et al., "SOFT: Softmax-free Transformer with Linear Complexity" (NeurIPS 2021):
Eq. (3) the Gaussian kernel S(q, k) = exp(-||q - k||^2 / 2) with keys tied to queries, Eq. (5) the low-rank
approximation S ~ K1 A^+ K1^T over m landmarks, Eq. (7)-(8) the Newton-Raphson iteration for A^+, and
Sec. 3.3 of the IJCV version ("Softmax-free Linear Transformers") for the symmetric normalisation
D^-1/2 A^+ D^-1/2 of SOFT-Norm.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import ACT2FN


# The official step-size search of SOFT-Norm halves the step at most this many times.
MAX_STEP_HALVINGS = 10
# Jitter of the Cholesky path when the configuration asks for no ridge (SOFT-Norm): the landmark matrix is only
# positive semi-definite when landmarks coincide, and an exact factorisation needs it definite.
CHOLESKY_MIN_RIDGE = 1e-4


def compute_dtype_for(dtype: torch.dtype) -> torch.dtype:
    """The dtype of the float32 island: half-precision inputs are promoted, float32/float64 are kept."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def gaussian_kernel(queries: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
    """Gaussian kernel of Eq. (3), k(a, b) = exp(-||a - b||^2 / 2), between two sets of row vectors.

    The squared distance is expanded as ||a||^2 + ||b||^2 - 2 a.b (one matmul) and clamped at zero, since rounding
    can make it slightly negative and exp would then exceed 1.

    Args:
        queries: `(..., num_queries, head_dim)`.
        landmarks: `(..., num_landmarks, head_dim)`.

    Returns:
        `(..., num_queries, num_landmarks)`.
    """
    batch_shape = queries.shape[:-2]
    queries_3d = queries.reshape(-1, *queries.shape[-2:])  # (batch, num_queries, head_dim)
    landmarks_3d = landmarks.reshape(-1, *landmarks.shape[-2:])  # (batch, num_landmarks, head_dim)
    query_norms = queries_3d.pow(2).sum(-1, keepdim=True)  # (batch, num_queries, 1)
    landmark_norms = landmarks_3d.pow(2).sum(-1).unsqueeze(-2)  # (batch, 1, num_landmarks)
    # ||a||^2 + ||b||^2 - 2 a.b in one fused call: (batch, num_queries, num_landmarks)
    squared_distances = torch.baddbmm(query_norms + landmark_norms, queries_3d, landmarks_3d.transpose(-1, -2), alpha=-2)
    kernel = torch.exp(squared_distances.clamp_min(0).mul(-0.5))
    return kernel.reshape(*batch_shape, *kernel.shape[-2:])


def newton_initial_step(matrix: torch.Tensor, adaptive: bool) -> torch.Tensor:
    """Step size alpha of the Newton-Raphson initialisation V0 = alpha * A (per matrix, shape `(..., 1, 1)`).

    Plain SOFT (official `newton_inv`): alpha = 0.9 * 2 / ||A||_1^2 with ||A||_1 the largest row sum.
    SOFT-Norm (official `newton_inv` of the Norm kernel): alpha = 2 / ||A||_1^2, halved while the column-sum norm
    of I - A V0 exceeds 1.01, at most 10 times. The official code takes one alpha for the whole batch, so an image's
    output depends on its neighbours; here every (image, head) matrix gets its own alpha, with a fixed number of
    vectorised checks instead of a device-synchronising while loop.
    """
    # ||A||_inf bounds the spectral radius; for the Gaussian kernel (all entries positive) it is the official
    # "max row sum", and taking absolute values keeps the iteration convergent for any symmetric matrix.
    max_row_sum = matrix.abs().sum(-1).amax(-1)[..., None, None]  # (..., 1, 1)
    if not adaptive:
        return 0.9 * 2.0 / max_row_sum.square()
    alpha = 2.0 / max_row_sum.square()
    identity = torch.eye(matrix.shape[-1], dtype=matrix.dtype, device=matrix.device)
    matrix_squared = matrix @ matrix  # (..., m, m); A V0 = alpha * A^2
    for _ in range(MAX_STEP_HALVINGS):
        residual_norm = (identity - alpha * matrix_squared).abs().sum(-2).amax(-1)[..., None, None]
        alpha = torch.where(residual_norm > 1.01, alpha * 0.5, alpha)
    return alpha


def newton_schulz_inverse(matrix: torch.Tensor, num_iterations: int, ridge: float, adaptive: bool) -> torch.Tensor:
    """Moore-Penrose inverse of `matrix + ridge * I` by the Newton-Raphson iteration of Eq. (8):
    V_{k+1} = 2 V_k - V_k P V_k, V_0 = alpha * P.

    The step size is computed from `matrix` without the ridge, as the official code does. `matrix` has shape
    `(..., m, m)`; the iteration runs on a flattened batch so each step is two batched matmuls, the second fused
    with the update (`baddbmm`).
    """
    size = matrix.shape[-1]
    alpha = newton_initial_step(matrix, adaptive)  # (..., 1, 1)
    system = matrix
    if ridge:
        system = matrix + ridge * torch.eye(size, dtype=matrix.dtype, device=matrix.device)
    inverse = (alpha * system).reshape(-1, size, size)  # (batch, m, m)
    system = system.reshape(-1, size, size)
    for _ in range(num_iterations):
        # V <- 2 V - V (P V)
        inverse = torch.baddbmm(inverse, inverse, system @ inverse, beta=2.0, alpha=-1.0)
    return inverse.reshape(matrix.shape)


class SoftNewtonInverse(torch.autograd.Function):
    """A^+ by Newton-Raphson in the forward pass only; the backward pass is the analytic gradient of a matrix
    inverse, dL/dA = -A^-T (dL/dA^+) A^-T, applied once (Sec. 3.2: the iteration is not differentiated)."""

    @staticmethod
    def forward(ctx, matrix: torch.Tensor, num_iterations: int, ridge: float, adaptive: bool) -> torch.Tensor:
        # Function.forward already runs without recording a graph.
        inverse = newton_schulz_inverse(matrix, num_iterations, ridge, adaptive)
        ctx.save_for_backward(inverse)
        return inverse

    @staticmethod
    def backward(ctx, grad_inverse: torch.Tensor):
        (inverse,) = ctx.saved_tensors
        inverse_transposed = inverse.transpose(-1, -2)
        grad_matrix = -(inverse_transposed @ grad_inverse @ inverse_transposed)
        return grad_matrix, None, None, None


def newton_inverse(matrix: torch.Tensor, num_iterations: int = 20, ridge: float = 0.0, adaptive: bool = True):
    """Differentiable Newton-Raphson pseudo-inverse of a batch of square matrices `(..., m, m)`."""
    if matrix.shape[-1] != matrix.shape[-2]:
        raise ValueError(f"newton_inverse expects square matrices, got shape {tuple(matrix.shape)}.")
    return SoftNewtonInverse.apply(matrix, num_iterations, ridge, adaptive)


def landmark_grid(height: int, width: int, max_landmarks: int | None) -> tuple[int, int] | None:
    """Grid the strided landmark map is pooled to so that it has at most `max_landmarks` cells (None: no pooling)."""
    if max_landmarks is None or height * width <= max_landmarks:
        return None
    scale = math.sqrt(max_landmarks / (height * width))
    grid_height = max(1, min(height, int(height * scale)))
    grid_width = max(1, min(width, max_landmarks // grid_height))
    return grid_height, grid_width


class SoftSelfAttention(nn.Module):
    """Softmax-free self-attention of one SOFT block (Eq. (5)):

        out = K1 A^+ (K1^T V) + DWConv(V),   K1 = k(Q, Q~),  A = k(Q~, Q~),

    with Q = X W_q / d^(1/4) (keys tied to queries), landmarks Q~ = GELU(LN(Conv_{r x r, stride r}(Q))) and a
    depthwise k x k skip convolution on V, one filter per head. SOFT-Norm replaces A^+ with D^-1/2 A^+ D^-1/2,
    D = diag(A 1). The kernel, the inverse and the products run in (at least) float32 even under autocast.
    """

    def __init__(self, config, hidden_size: int, num_attention_heads: int, sr_ratio: int, skip_kernel_size: int):
        super().__init__()
        self.hidden_size = hidden_size
        self.num_attention_heads = num_attention_heads
        self.attention_head_size = hidden_size // num_attention_heads
        self.sr_ratio = sr_ratio
        self.num_iterations = config.newton_iterations
        self.ridge = config.ridge
        self.symmetric_normalization = config.normalization == "symmetric"
        self.inverse_method = config.inverse_method
        self.max_landmarks = config.max_landmarks

        self.query = nn.Linear(hidden_size, hidden_size)
        self.value = nn.Linear(hidden_size, hidden_size)
        head_size = self.attention_head_size
        self.landmark_conv = nn.Conv2d(head_size, head_size, kernel_size=sr_ratio, stride=sr_ratio, bias=False)
        self.landmark_norm = nn.LayerNorm(head_size, eps=config.soft_layer_norm_eps)
        self.landmark_act = ACT2FN[config.landmark_act]
        self.skip_conv = nn.Conv2d(
            num_attention_heads,
            num_attention_heads,
            kernel_size=skip_kernel_size,
            padding=skip_kernel_size // 2,
            groups=num_attention_heads,
            bias=False,
        )
        self.output = nn.Linear(hidden_size, hidden_size)

    def compute_landmarks(self, query: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Q~ = GELU(LN(Conv_r(Q))): `(batch, heads, seq_len, head_size)` -> `(batch, heads, m, head_size)`."""
        batch_size, num_heads, _, head_size = query.shape
        # (batch * heads, head_size, height, width)
        query_map = query.reshape(batch_size * num_heads, height, width, head_size).permute(0, 3, 1, 2)
        landmark_map = self.landmark_conv(query_map)  # (batch * heads, head_size, height / r, width / r)
        grid = landmark_grid(landmark_map.shape[-2], landmark_map.shape[-1], self.max_landmarks)
        if grid is not None:
            landmark_map = F.adaptive_avg_pool2d(landmark_map, grid)
        # (batch, heads, m, head_size)
        landmarks = landmark_map.flatten(2).transpose(1, 2).reshape(batch_size, num_heads, -1, head_size)
        return self.landmark_act(self.landmark_norm(landmarks))

    def solve_landmark_system(self, landmark_kernel: torch.Tensor, right_hand_side: torch.Tensor) -> torch.Tensor:
        """A^+ @ rhs for `(..., m, m)` and `(..., m, head_size)` (with the configured ridge)."""
        if self.inverse_method == "cholesky":
            size = landmark_kernel.shape[-1]
            ridge = self.ridge if self.ridge > 0 else CHOLESKY_MIN_RIDGE
            system = landmark_kernel + ridge * torch.eye(size, dtype=landmark_kernel.dtype, device=landmark_kernel.device)
            factor, _ = torch.linalg.cholesky_ex(system)
            return torch.cholesky_solve(right_hand_side, factor)
        inverse = newton_inverse(
            landmark_kernel, self.num_iterations, self.ridge, adaptive=self.symmetric_normalization
        )  # (..., m, m)
        return inverse @ right_hand_side

    def forward(self, hidden_states: torch.Tensor, height: int, width: int) -> torch.Tensor:
        batch_size, seq_len, _ = hidden_states.shape
        head_size = self.attention_head_size
        # (batch, heads, seq_len, head_size)
        query = self.query(hidden_states).view(batch_size, seq_len, self.num_attention_heads, head_size).transpose(1, 2)
        query = query / math.sqrt(math.sqrt(head_size))
        value_states = self.value(hidden_states)  # (batch, seq_len, hidden_size)
        value = value_states.view(batch_size, seq_len, self.num_attention_heads, head_size).transpose(1, 2)

        landmarks = self.compute_landmarks(query, height, width)  # (batch, heads, m, head_size)

        island_dtype = compute_dtype_for(query.dtype)
        with torch.autocast(device_type=hidden_states.device.type, enabled=False):
            query_c, landmarks_c, value_c = (t.to(island_dtype) for t in (query, landmarks, value))
            query_kernel = gaussian_kernel(query_c, landmarks_c)  # K1: (batch, heads, seq_len, m)
            landmark_kernel = gaussian_kernel(landmarks_c, landmarks_c)  # A: (batch, heads, m, m)
            projected = query_kernel.transpose(-1, -2) @ value_c  # K1^T V: (batch, heads, m, head_size)
            if self.symmetric_normalization:
                inverse_sqrt_degree = landmark_kernel.sum(-1, keepdim=True).rsqrt()  # D^-1/2: (batch, heads, m, 1)
                projected = inverse_sqrt_degree * projected
            mixed = self.solve_landmark_system(landmark_kernel, projected)  # (batch, heads, m, head_size)
            if self.symmetric_normalization:
                mixed = inverse_sqrt_degree * mixed
            context = query_kernel @ mixed  # (batch, heads, seq_len, head_size)
        context = context.to(value_states.dtype).transpose(1, 2).reshape(batch_size, seq_len, self.hidden_size)

        # Depthwise skip convolution on V with one filter per head, shared by the head's channels: the same as the
        # official Conv2d(heads, heads, groups=heads) over V laid out as (batch * head_size, heads, H, W).
        value_map = value_states.transpose(1, 2).reshape(batch_size, self.hidden_size, height, width)
        skip_weight = self.skip_conv.weight.repeat_interleave(head_size, dim=0)  # (hidden_size, 1, k, k)
        skip = F.conv2d(value_map, skip_weight, padding=self.skip_conv.padding, groups=self.hidden_size)
        context = context + skip.flatten(2).transpose(1, 2)  # (batch, seq_len, hidden_size)
        return self.output(context)


__all__ = [
    "SoftSelfAttention",
    "SoftNewtonInverse",
    "gaussian_kernel",
    "newton_inverse",
    "newton_schulz_inverse",
    "newton_initial_step",
    "landmark_grid",
]
