# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""A straightforward transcription of the official SOFT forward pass, kept as the speed baseline of
`soft-benchmark` (`soft_hf.benchmarks.speed`).

It follows the computation of the official release (github.com/fudan-zvg/SOFT) step by step, as described in
`shared/reference/README.md`, with the official module and parameter names so an official state dict loads into it
unchanged (`load_state_dict(checkpoint["state_dict"])`):

- Q = W_q x / d^(1/4), K = Q, V = W_v x, heads split as `(batch, heads, tokens, head_dim)`;
- landmarks: Conv2d(d, d, r, stride r) over each (image, head) query map, then LayerNorm and exact GELU;
- the Gaussian kernel from squared distances written as `q^2 @ ones + ones @ k^2 - 2 q k^T`, then `exp(-x / 2)`;
- the landmark-matrix inverse by 20 Newton steps written as separate matmuls, `V = 2 V - V @ P @ V`, without
  autograd, with the analytic inverse gradient as backward;
- the product `(K1 @ inv(A)) @ (K1^T @ V)` in that order, and the depthwise skip convolution over V laid out as
  `(batch * head_dim, heads, H, W)`;
- post-norm SOFT blocks whose FFN uses the tanh GELU written as separate element-wise operations;
- a pre-norm softmax stage 4 with explicit `softmax(q k^T * scale) @ v`, a class token, and the final norm + head.

Nothing here is tuned: it is what a reader of the paper and the official code would write, and the benchmark's
"official forward" rows measure it. Only plain SOFT is transcribed (the official SOFT-Norm classes do not build).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def tanh_gelu(x: torch.Tensor) -> torch.Tensor:
    """GELU, tanh approximation, as separate element-wise operations (as in the official SOFT blocks)."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def subtraction_gaussian_distance(queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Squared distances `(..., n, m)` between rows of `queries (..., n, d)` and `keys (..., m, d)`, expanded as
    ||q||^2 (via a matmul with ones) + ||k||^2 (likewise) - 2 q k^T."""
    head_dim = queries.shape[-1]
    ones_for_queries = torch.ones(head_dim, keys.shape[-2], dtype=queries.dtype, device=queries.device)
    ones_for_keys = torch.ones(queries.shape[-2], head_dim, dtype=queries.dtype, device=queries.device)
    query_squares = (queries**2) @ ones_for_queries  # (..., n, m)
    key_squares = ones_for_keys @ (keys.transpose(-2, -1) ** 2)  # (..., n, m)
    return query_squares + key_squares - 2.0 * (queries @ keys.transpose(-2, -1))


def newton_schulz_iterations(matrix: torch.Tensor, num_iterations: int = 20) -> torch.Tensor:
    """Official plain-SOFT Newton iteration for the inverse of `matrix + 0.01 I`: alpha = 0.9 * 2 / (max row sum)^2
    per (image, head), V0 = alpha * P, then V <- 2 V - V @ P @ V."""
    identity = torch.eye(matrix.shape[-1], dtype=matrix.dtype, device=matrix.device)
    alpha = 0.9 * 2.0 / (torch.max(torch.sum(matrix, dim=-1), dim=-1).values ** 2)
    system = matrix + 0.01 * identity
    inverse = alpha[..., None, None] * system
    for _ in range(num_iterations):
        inverse = 2.0 * inverse - inverse @ system @ inverse
    return inverse


class NewtonInverseFunction(torch.autograd.Function):
    """Newton iteration without a graph; backward is the analytic gradient of a matrix inverse, applied once."""

    @staticmethod
    def forward(ctx, matrix: torch.Tensor) -> torch.Tensor:
        inverse = newton_schulz_iterations(matrix)
        ctx.save_for_backward(inverse)
        return inverse

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:
        (inverse,) = ctx.saved_tensors
        return -inverse.transpose(-1, -2) @ grad_output @ inverse.transpose(-1, -2)


class SoftmaxFreeAttentionKernel(nn.Module):
    """Landmarks, Gaussian kernels, Newton inverse and the skip convolution (official `attn`)."""

    def __init__(self, dim: int, num_heads: int, ratio: int, conv_size: int):
        super().__init__()
        self.head_dim = dim // num_heads
        self.num_heads = num_heads
        self.Q_scale = math.sqrt(math.sqrt(self.head_dim))
        self.Qlandmark_op = nn.Conv2d(self.head_dim, self.head_dim, kernel_size=ratio, stride=ratio, bias=False)
        self.Qnorm_act = nn.Sequential(nn.LayerNorm(self.head_dim), nn.GELU())
        self.conv = nn.Conv2d(num_heads, num_heads, conv_size, padding=conv_size // 2, bias=False, groups=num_heads)

    def forward(self, Q: torch.Tensor, V: torch.Tensor, H: int, W: int) -> torch.Tensor:
        b, nhead, N, headdim = Q.shape
        Q = Q / self.Q_scale
        K = Q
        landmark_input = Q.reshape(b * nhead, H * W, headdim).reshape(b * nhead, H, W, headdim).permute(0, 3, 1, 2)
        Q_landmarks = self.Qlandmark_op(landmark_input)
        Q_landmarks = Q_landmarks.flatten(2).transpose(1, 2).reshape(b, nhead, -1, headdim)
        Q_landmarks = self.Qnorm_act(Q_landmarks)
        K_landmarks = Q_landmarks

        kernel_1 = torch.exp(-subtraction_gaussian_distance(Q, K_landmarks) / 2)  # (b, nhead, N, m)
        kernel_2 = torch.exp(-subtraction_gaussian_distance(Q_landmarks, K_landmarks) / 2)  # (b, nhead, m, m)
        kernel_3 = kernel_1.transpose(-1, -2)  # the same kernel from landmarks to keys (K = Q)
        X = torch.matmul(torch.matmul(kernel_1, NewtonInverseFunction.apply(kernel_2)), torch.matmul(kernel_3, V))

        # Depthwise skip convolution: V as (b * headdim, nhead, H, W), one filter per head.
        V_map = V.permute(0, 3, 1, 2).reshape(b * headdim, nhead, H, W)
        skip = self.conv(V_map).reshape(b, headdim, nhead, N).permute(0, 2, 3, 1)
        return X + skip


class SoftmaxFreeAttention(nn.Module):
    """Projections, head split/merge and output projection (official `mha`)."""

    def __init__(self, dim: int, num_heads: int, ratio: int, conv_size: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.W_q = nn.Linear(dim, dim)
        self.W_v = nn.Linear(dim, dim)
        self.attn = SoftmaxFreeAttentionKernel(dim, num_heads, ratio, conv_size)
        self.ff = nn.Linear(dim, dim)

    def split_heads(self, X: torch.Tensor) -> torch.Tensor:
        return X.reshape(X.size(0), X.size(1), self.num_heads, self.head_dim).transpose(1, 2)

    def combine_heads(self, X: torch.Tensor) -> torch.Tensor:
        return X.transpose(1, 2).reshape(X.size(0), X.size(2), self.num_heads * self.head_dim)

    def forward(self, X: torch.Tensor, H: int, W: int) -> torch.Tensor:
        Q = self.split_heads(self.W_q(X))
        V = self.split_heads(self.W_v(X))
        return self.ff(self.combine_heads(self.attn(Q, V, H, W)))


class SoftmaxFreeTransformer(nn.Module):
    """Post-norm SOFT layer with a tanh-GELU FFN of ratio 4 (official `att`)."""

    def __init__(self, dim: int, num_heads: int, ratio: int, conv_size: int):
        super().__init__()
        self.mha = SoftmaxFreeAttention(dim, num_heads, ratio, conv_size)
        self.norm1 = nn.LayerNorm(dim)
        self.ff1 = nn.Linear(dim, 4 * dim)
        self.ff2 = nn.Linear(4 * dim, dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, X: torch.Tensor, H: int, W: int) -> torch.Tensor:
        X = self.norm1(X + self.mha(X, H, W))
        return self.norm2(X + self.ff2(tanh_gelu(self.ff1(X))))


class SoftmaxFreeBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, ratio: int, conv_size: int):
        super().__init__()
        self.att = SoftmaxFreeTransformer(dim, num_heads, ratio, conv_size)

    def forward(self, X: torch.Tensor, H: int, W: int) -> torch.Tensor:
        return self.att(X, H, W)


class PyramidAttention(nn.Module):
    """Stage-4 softmax attention with explicit score matrices (PVT style)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        q = self.q(x).reshape(B, N, self.num_heads, C // self.num_heads).permute(0, 2, 1, 3)
        kv = self.kv(x).reshape(B, -1, 2, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        k, v = kv[0], kv[1]
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(B, N, C)
        return self.proj(x)


class PyramidMlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class PyramidBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = PyramidAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = PyramidMlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    """3x3 stride-2 conv + BN + ReLU (stages 2-4) or the 3-conv stem (stage 1), as `proj`."""

    def __init__(self, in_chans: int, embed_dim: int, stem: int | None):
        super().__init__()
        if stem is None:
            self.proj = nn.Sequential(
                nn.Conv2d(in_chans, embed_dim, 3, 2, 1), nn.BatchNorm2d(embed_dim), nn.ReLU(inplace=True)
            )
        else:
            self.proj = nn.Sequential(
                nn.Conv2d(in_chans, stem, 3, 2, 1), nn.BatchNorm2d(stem), nn.ReLU(inplace=True),
                nn.Conv2d(stem, stem, 3, 1, 1), nn.BatchNorm2d(stem), nn.ReLU(inplace=True),
                nn.Conv2d(stem, embed_dim, 3, 2, 1), nn.BatchNorm2d(embed_dim), nn.ReLU(inplace=True),
            )  # fmt: skip

    def forward(self, x: torch.Tensor):
        x = self.proj(x)
        H, W = x.shape[-2:]
        return x.flatten(2).transpose(1, 2), (H, W)


class OfficialSoftBaseline(nn.Module):
    """The official SOFT classifier, transcribed. Arguments are the official constructor's."""

    def __init__(
        self,
        img_size: int = 224,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dims=(64, 128, 320, 512),
        num_heads=(2, 4, 10, 16),
        mlp_ratios=(8, 8, 4, 4),
        depths=(1, 2, 3, 2),
        sr_ratios=(8, 4, 2, 1),
        conv_sizes=(9, 5, 3),
        stem_channels: int = 32,
    ):
        super().__init__()
        self.depths = list(depths)
        previous = in_chans
        for stage in range(4):
            dim = embed_dims[stage]
            grid = img_size // (4 * 2**stage)
            setattr(self, f"patch_embed{stage + 1}", PatchEmbed(previous, dim, stem_channels if stage == 0 else None))
            setattr(self, f"pos_embed{stage + 1}", nn.Parameter(torch.zeros(1, grid * grid + int(stage == 3), dim)))
            if stage < 3:
                blocks = [SoftmaxFreeBlock(dim, num_heads[stage], sr_ratios[stage], conv_sizes[stage]) for _ in range(depths[stage])]
            else:
                blocks = [PyramidBlock(dim, num_heads[stage], mlp_ratios[stage]) for _ in range(depths[stage])]
            setattr(self, f"block{stage + 1}", nn.ModuleList(blocks))
            previous = dim
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dims[3]))
        self.norm = nn.LayerNorm(embed_dims[3], eps=1e-6)
        self.head = nn.Linear(embed_dims[3], num_classes)

    @staticmethod
    def resized_pos_embed(pos_embed: torch.Tensor, H: int, W: int) -> torch.Tensor:
        grid = int(math.sqrt(pos_embed.shape[1]))
        if grid * grid == H * W and grid == H:
            return pos_embed
        pos_map = pos_embed.reshape(1, grid, grid, -1).permute(0, 3, 1, 2)
        return F.interpolate(pos_map, size=(H, W), mode="bilinear").reshape(1, -1, H * W).permute(0, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B = x.shape[0]
        for stage in range(1, 4):
            x, (H, W) = getattr(self, f"patch_embed{stage}")(x)
            x = x + self.resized_pos_embed(getattr(self, f"pos_embed{stage}"), H, W)
            for block in getattr(self, f"block{stage}"):
                x = block(x, H, W)
            x = x.reshape(B, H, W, -1).permute(0, 3, 1, 2).contiguous()
        x, (H, W) = self.patch_embed4(x)
        cls_tokens = self.cls_token.expand(B, -1, -1)
        x = torch.cat((cls_tokens, x), dim=1)
        pos_embed = torch.cat((self.pos_embed4[:, :1], self.resized_pos_embed(self.pos_embed4[:, 1:], H, W)), dim=1)
        x = x + pos_embed
        for block in self.block4:
            x = block(x, H, W)
        x = self.norm(x)
        return self.head(x[:, 0])


def baseline_for_config(config) -> OfficialSoftBaseline:
    """An `OfficialSoftBaseline` with the architecture of a plain-SOFT `SoftConfig` (eval mode)."""
    if config.normalization != "none":
        raise ValueError("The official-forward baseline transcribes plain SOFT only; use normalization='none'.")
    return OfficialSoftBaseline(
        img_size=config.image_size,
        in_chans=config.num_channels,
        num_classes=config.num_labels,
        embed_dims=config.hidden_sizes,
        num_heads=config.num_attention_heads,
        mlp_ratios=config.mlp_ratios,
        depths=config.depths,
        sr_ratios=config.sr_ratios,
        conv_sizes=config.skip_conv_kernel_sizes,
        stem_channels=config.stem_hidden_size,
    ).eval()


def baseline_from_soft_model(model) -> OfficialSoftBaseline:
    """The baseline carrying the weights of a `SoftForImageClassification` (names mapped back to official ones)."""
    from ..conversion.official import official_key_to_hf

    baseline = baseline_for_config(model.config)
    ours = model.state_dict()
    official = {}
    for key in baseline.state_dict():
        hf_key = official_key_to_hf(key)
        if hf_key is None or hf_key not in ours:
            raise ValueError(f"No SOFT parameter for official key {key!r}.")
        official[key] = ours[hf_key]
    baseline.load_state_dict(official, strict=True)
    return baseline.to(next(model.parameters()).dtype)


__all__ = ["OfficialSoftBaseline", "baseline_for_config", "baseline_from_soft_model", "tanh_gelu"]
