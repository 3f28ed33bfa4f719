# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""PyTorch SOFT (Softmax-Free Transformer) models.

Lu et al., "SOFT: Softmax-free Transformer with Linear Complexity", NeurIPS 2021, and "Softmax-free Linear
Transformers", IJCV 2024. The architecture and numerics follow the official release (github.com/fudan-zvg/SOFT),
whose checkpoints load through `soft_hf.convert_official_checkpoint`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init
from transformers.backbone_utils import BackboneMixin
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BackboneOutput, BaseModelOutputWithPooling, ImageClassifierOutput
from transformers.modeling_utils import PreTrainedModel

from .configuration_soft import SoftConfig
from .soft_attention import (
    SoftSelfAttention,
    activation_for,
    channels_last_map,
    fused_linear,
    is_concrete_size,
    is_unobserved,
    landmark_grid,
    use_onednn,
)


def drop_path(input: torch.Tensor, drop_prob: float = 0.0, training: bool = False) -> torch.Tensor:
    """Stochastic depth per sample (as in timm and Transformers' PVTv2)."""
    if drop_prob == 0.0 or not training:
        return input
    keep_prob = 1 - drop_prob
    shape = (input.shape[0],) + (1,) * (input.ndim - 1)
    random_tensor = keep_prob + torch.rand(shape, dtype=input.dtype, device=input.device)
    random_tensor.floor_()
    return input.div(keep_prob) * random_tensor


class SoftDropPath(nn.Module):
    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return drop_path(hidden_states, self.drop_prob, self.training)

    def extra_repr(self) -> str:
        return f"p={self.drop_prob}"


def stage_spatial_sizes(height: int, width: int, num_stages: int = 4) -> list[tuple[int, int]]:
    """Feature-map size of each stage: the stem halves twice, every later stage once (3x3 convs, stride 2, pad 1)."""
    sizes = []
    height, width = (height + 1) // 2, (width + 1) // 2
    for _ in range(num_stages):
        height, width = (height + 1) // 2, (width + 1) // 2
        sizes.append((height, width))
    return sizes


def minimum_image_size(config: SoftConfig) -> int:
    """Smallest square input whose SOFT stages are at least as large as their landmark stride."""
    size = 1
    while any(min(stage) < ratio for stage, ratio in zip(stage_spatial_sizes(size, size), config.sr_ratios[:-1])):
        size += 1
    return size


def resize_position_embeddings(position_embeddings: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize learned position embeddings `(1, grid * grid, channels)` to `(1, height * width, channels)` bilinearly
    (align_corners=False), as the official forward pass does at every call."""
    grid = int(math.sqrt(position_embeddings.shape[1]))
    # Symbolic sizes (torch.export with dynamic height and width) always interpolate: comparing them would fix the
    # exported graph to the example's size, and resizing to the same size is the identity (weights 1 and 0).
    if is_concrete_size(height, width) and grid == height and grid == width:
        return position_embeddings
    channels = position_embeddings.shape[-1]
    position_map = position_embeddings.reshape(1, grid, grid, channels).permute(0, 3, 1, 2)  # (1, C, grid, grid)
    position_map = F.interpolate(position_map, size=(height, width), mode="bilinear", align_corners=False)
    return position_map.flatten(2).transpose(1, 2)  # (1, height * width, C)


class SoftPatchEmbeddings(nn.Module):
    """Overlapping convolutional patch embedding. Stage 1 is a 3-conv stem (stride 4 in all), later stages a single
    3x3 stride-2 conv; every conv is followed by BatchNorm and ReLU. Module indices match the official `proj`."""

    def __init__(self, config: SoftConfig, stage_index: int):
        super().__init__()
        out_channels = config.hidden_sizes[stage_index]
        if stage_index == 0:
            stem = config.stem_hidden_size
            self.projection = nn.Sequential(
                nn.Conv2d(config.num_channels, stem, kernel_size=3, stride=2, padding=1),
                nn.BatchNorm2d(stem),
                nn.ReLU(),
                nn.Conv2d(stem, stem, kernel_size=3, stride=1, padding=1),
                nn.BatchNorm2d(stem),
                nn.ReLU(),
                nn.Conv2d(stem, out_channels, kernel_size=3, stride=2, padding=1),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(),
            )
        else:
            in_channels = config.hidden_sizes[stage_index - 1]
            self.projection = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=2, padding=1),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(),
            )

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        layers = list(self.projection)
        if (
            is_conv_norm_relu_chain(layers)
            and use_onednn(pixel_values, *self.projection.parameters())
            and is_unobserved(self.projection, *layers)
        ):
            # float32 CPU inference that nothing observes: each conv + eval-mode BatchNorm + ReLU as one oneDNN
            # convolution
            hidden_states = pixel_values
            for conv, norm, _ in zip(layers[0::3], layers[1::3], layers[2::3]):
                weight, bias = fold_batch_norm(conv, norm)
                hidden_states = torch.ops.mkldnn._convolution_pointwise(
                    hidden_states, weight, bias, list(conv.padding), list(conv.stride), list(conv.dilation),
                    conv.groups, "relu", [], "",
                )
            return hidden_states
        return self.projection(pixel_values)  # (batch, channels, height, width)


def is_conv_norm_relu_chain(layers: list[nn.Module]) -> bool:
    """Whether `layers` are (Conv2d, eval-mode BatchNorm2d with running statistics, ReLU) triples that
    `fold_batch_norm` can merge (a replaced or training-mode module disables the merge)."""
    if not layers or len(layers) % 3:
        return False
    for conv, norm, act in zip(layers[0::3], layers[1::3], layers[2::3]):
        if type(conv) is not nn.Conv2d or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            return False
        if type(norm) is not nn.BatchNorm2d or norm.training or norm.running_mean is None or not norm.affine:
            return False
        if type(act) is not nn.ReLU:
            return False
    return True


def fold_batch_norm(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of the convolution that equals `norm(conv(x))` for an eval-mode BatchNorm:
    W' = W * gamma / sqrt(var + eps) per output channel, b' = (b - mean) * gamma / sqrt(var + eps) + beta."""
    scale = norm.weight * torch.rsqrt(norm.running_var + norm.eps)  # (out_channels,)
    weight = conv.weight * scale.reshape(-1, 1, 1, 1)  # (out_channels, in_channels / groups, k, k)
    conv_bias = conv.bias if conv.bias is not None else torch.zeros_like(norm.running_mean)
    return weight, (conv_bias - norm.running_mean) * scale + norm.bias


def add_residual(branch: torch.Tensor, residual: torch.Tensor, in_place: bool) -> torch.Tensor:
    """`residual + branch`, written into the branch's buffer when `in_place` (the branch is the fresh output of a
    block's attention or MLP that no hook can hold, and no autograd formula needs it), which saves a full-size
    allocation per add."""
    if in_place and branch.dtype == residual.dtype and branch.shape == residual.shape and not torch.compiler.is_compiling():
        return branch.add_(residual)
    return residual + branch


# Inference MLPs on many tokens run in chunks of at most this many intermediate activations (4 MiB of float32, which
# stay in the L2/L3 cache between fc1 and fc2), and at least this many tokens (so each GEMM stays efficient).
MLP_CHUNK_ELEMENTS = 1 << 20
MLP_MIN_CHUNK_ROWS = 256


class SoftMlp(nn.Module):
    """fc2(Dropout(act(fc1(x)))) followed by dropout; the activation is fused into fc1's GEMM in float32 CPU inference
    (`fused_linear`)."""

    def __init__(self, hidden_size: int, intermediate_size: int, hidden_act: str, dropout_prob: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, intermediate_size)
        self.act = activation_for(hidden_act)  # ACT2FN, with a faster tanh GELU on the CPU
        self.activation_dropout = nn.Dropout(dropout_prob)
        self.fc2 = nn.Linear(intermediate_size, hidden_size)
        self.dropout = nn.Dropout(dropout_prob)

    def rows_per_chunk(self) -> int:
        """Tokens per chunk of the chunked inference MLP (see `MLP_CHUNK_ELEMENTS`)."""
        return max(MLP_MIN_CHUNK_ROWS, MLP_CHUNK_ELEMENTS // self.fc1.out_features)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        # The token count is compared last: under torch.export (where `use_onednn` is False) it is symbolic, and
        # comparing it would bound the exported graph's input size.
        chunked = (
            type(self.fc1) is nn.Linear
            and type(self.fc2) is nn.Linear
            and use_onednn(hidden_states, self.fc1.weight, self.fc1.bias, self.fc2.weight, self.fc2.bias)
            and is_unobserved(self.fc1, self.act, self.activation_dropout, self.fc2, self.dropout)
            and hidden_states.numel() // max(hidden_states.shape[-1], 1) > self.rows_per_chunk()
        )
        if not chunked:
            hidden_states = self.activation_dropout(fused_linear(self.fc1, hidden_states, self.act))
            return self.dropout(fused_linear(self.fc2, hidden_states))
        # Inference on many tokens (high resolution) that nothing observes: the MLP acts on each token alone, so it
        # runs on chunks of tokens whose intermediate activations stay in the cache instead of streaming through
        # memory.
        rows_per_chunk = self.rows_per_chunk()
        tokens = hidden_states.reshape(-1, hidden_states.shape[-1])  # (batch * seq_len, hidden_size)
        output = tokens.new_empty(tokens.shape[0], self.fc2.out_features)
        for start in range(0, tokens.shape[0], rows_per_chunk):
            chunk = self.activation_dropout(fused_linear(self.fc1, tokens[start : start + rows_per_chunk], self.act))
            output[start : start + rows_per_chunk] = self.dropout(fused_linear(self.fc2, chunk))
        return output.reshape(*hidden_states.shape[:-1], self.fc2.out_features)


class SoftLayer(GradientCheckpointingLayer):
    """A SOFT block (post-norm, as released):
    x = LN(x + Dropout(SoftAttention(x)));  x = LN(x + Dropout(FFN(x))), FFN with tanh-GELU and ratio 4.
    The official code names the residual dropout "drop_path" but applies plain (element-wise) dropout."""

    def __init__(self, config: SoftConfig, stage_index: int, drop_prob: float):
        super().__init__()
        hidden_size = config.hidden_sizes[stage_index]
        self.attention = SoftSelfAttention(
            config,
            hidden_size,
            config.num_attention_heads[stage_index],
            config.sr_ratios[stage_index],
            config.skip_conv_kernel_sizes[stage_index],
        )
        self.attention_dropout = nn.Dropout(drop_prob)
        self.attention_norm = nn.LayerNorm(hidden_size, eps=config.soft_layer_norm_eps)
        self.mlp = SoftMlp(hidden_size, config.soft_mlp_ratio * hidden_size, config.soft_hidden_act)
        self.mlp_dropout = nn.Dropout(drop_prob)
        self.mlp_norm = nn.LayerNorm(hidden_size, eps=config.soft_layer_norm_eps)

    def forward(self, hidden_states: torch.Tensor, height: int, width: int) -> torch.Tensor:
        attention_output = self.attention(hidden_states, height, width)
        # the branches are fresh buffers unless a hook could hold them (on the block's modules that return them)
        own_attention_output = is_unobserved(self.attention, self.attention.output, self.attention_dropout)
        hidden_states = self.attention_norm(
            add_residual(self.attention_dropout(attention_output), hidden_states, in_place=own_attention_output)
        )
        mlp_output = self.mlp(hidden_states)
        own_mlp_output = is_unobserved(self.mlp, self.mlp.fc2, self.mlp.dropout, self.mlp_dropout)
        return self.mlp_norm(add_residual(self.mlp_dropout(mlp_output), hidden_states, in_place=own_mlp_output))


class SoftSoftmaxAttention(nn.Module):
    """Ordinary multi-head softmax attention of the last stage (PVT-style, no spatial reduction).

    With `config.max_landmarks` set, keys and values come from the classification token and the patch-token map
    average-pooled to at most `max_landmarks` cells (the linear spatial-reduction attention of PVTv2-Li, on the same
    grid rule as the SOFT landmarks), so this stage, whose cost is otherwise quadratic in the number of tokens, also
    becomes linear. Maps at or below the bound (7 x 7 at 224 px) are not pooled, so outputs there are unchanged.
    Pooling the normalised tokens before the key/value projection equals pooling the keys and values (the projection
    is affine)."""

    def __init__(self, config: SoftConfig, hidden_size: int, num_attention_heads: int):
        super().__init__()
        self.num_attention_heads = num_attention_heads
        self.attention_head_size = hidden_size // num_attention_heads
        self.max_keys = config.max_landmarks
        self.query = nn.Linear(hidden_size, hidden_size, bias=config.qkv_bias)
        self.key_value = nn.Linear(hidden_size, 2 * hidden_size, bias=config.qkv_bias)
        self.attention_dropout_prob = config.attention_probs_dropout_prob
        self.proj = nn.Linear(hidden_size, hidden_size)
        self.proj_dropout = nn.Dropout(config.hidden_dropout_prob)

    def key_value_inputs(self, hidden_states: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """The tokens keys and values are computed from: all of them, or with `max_keys` the classification token
        followed by the pooled patch-token map `(batch, 1 + m, hidden_size)`."""
        grid = landmark_grid(height, width, self.max_keys)
        if grid is None:
            return hidden_states
        patch_map = channels_last_map(hidden_states[:, 1:], height, width)  # (batch, hidden_size, height, width)
        pooled = F.adaptive_avg_pool2d(patch_map, grid).flatten(2).transpose(1, 2)  # (batch, m, hidden_size)
        return torch.cat((hidden_states[:, :1], pooled), dim=1)

    def forward(self, hidden_states: torch.Tensor, height: int, width: int) -> torch.Tensor:
        batch_size, seq_len, hidden_size = hidden_states.shape
        heads, head_size = self.num_attention_heads, self.attention_head_size
        query = fused_linear(self.query, hidden_states).view(batch_size, seq_len, heads, head_size).transpose(1, 2)
        key_value_inputs = self.key_value_inputs(hidden_states, height, width)  # (batch, num_keys, hidden_size)
        num_keys = key_value_inputs.shape[1]
        # (2, batch, heads, num_keys, head_size)
        key_value = fused_linear(self.key_value, key_value_inputs)
        key_value = key_value.view(batch_size, num_keys, 2, heads, head_size).permute(2, 0, 3, 1, 4)
        context = F.scaled_dot_product_attention(
            query, key_value[0], key_value[1], dropout_p=self.attention_dropout_prob if self.training else 0.0
        )  # (batch, heads, seq_len, head_size)
        context = context.transpose(1, 2).reshape(batch_size, seq_len, hidden_size)
        return self.proj_dropout(fused_linear(self.proj, context))


class SoftSoftmaxLayer(GradientCheckpointingLayer):
    """Pre-norm transformer block of stage 4: x = x + DropPath(Attn(LN(x))); x = x + DropPath(MLP(LN(x)))."""

    def __init__(self, config: SoftConfig, stage_index: int, drop_prob: float):
        super().__init__()
        hidden_size = config.hidden_sizes[stage_index]
        self.layernorm_before = nn.LayerNorm(hidden_size, eps=config.layer_norm_eps)
        self.attention = SoftSoftmaxAttention(config, hidden_size, config.num_attention_heads[stage_index])
        self.attention_drop_path = SoftDropPath(drop_prob) if drop_prob > 0.0 else nn.Identity()
        self.mlp_drop_path = SoftDropPath(drop_prob) if drop_prob > 0.0 else nn.Identity()
        self.layernorm_after = nn.LayerNorm(hidden_size, eps=config.layer_norm_eps)
        self.mlp = SoftMlp(
            hidden_size,
            int(hidden_size * config.mlp_ratios[stage_index]),
            config.hidden_act,
            config.hidden_dropout_prob,
        )

    def forward(self, hidden_states: torch.Tensor, height: int, width: int) -> torch.Tensor:
        attention_output = self.attention(self.layernorm_before(hidden_states), height, width)
        hidden_states = hidden_states + self.attention_drop_path(attention_output)
        return hidden_states + self.mlp_drop_path(self.mlp(self.layernorm_after(hidden_states)))


class SoftStage(nn.Module):
    """Patch embedding, learned position embeddings (resized to the input) and the stage's blocks. The last stage
    prepends the classification token."""

    def __init__(self, config: SoftConfig, stage_index: int, drop_probs: list[float]):
        super().__init__()
        hidden_size = config.hidden_sizes[stage_index]
        self.is_last = stage_index == len(config.depths) - 1
        grid = config.image_size // (4 * 2**stage_index)
        self.patch_embeddings = SoftPatchEmbeddings(config, stage_index)
        self.position_embeddings = nn.Parameter(torch.zeros(1, grid * grid + int(self.is_last), hidden_size))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, hidden_size)) if self.is_last else None
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        layer_class = SoftSoftmaxLayer if self.is_last else SoftLayer
        self.layers = nn.ModuleList(
            [layer_class(config, stage_index, drop_probs[index]) for index in range(config.depths[stage_index])]
        )

    def add_position_embeddings(self, embeddings: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Add the resized position embeddings to patch tokens `(batch, height * width, channels)`; the last stage
        first prepends the classification token, whose position embedding is not resized."""
        if self.is_last:
            cls_position = self.position_embeddings[:, :1]
            patch_positions = resize_position_embeddings(self.position_embeddings[:, 1:], height, width)
            cls_tokens = self.cls_token.expand(embeddings.shape[0], -1, -1)
            embeddings = torch.cat((cls_tokens, embeddings), dim=1)  # (batch, 1 + height * width, channels)
            return self.dropout(embeddings + torch.cat((cls_position, patch_positions), dim=1))
        embeddings = embeddings + resize_position_embeddings(self.position_embeddings, height, width)
        return self.dropout(embeddings)

    def forward(self, embeddings: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Run the blocks on patch tokens `(batch, height * width, channels)` from `patch_embeddings`."""
        hidden_states = self.add_position_embeddings(embeddings, height, width)
        for layer in self.layers:
            hidden_states = layer(hidden_states, height, width)
        return hidden_states


class SoftEncoder(nn.Module):
    def __init__(self, config: SoftConfig):
        super().__init__()
        self.config = config
        num_blocks = sum(config.depths)
        # stochastic-depth rates rising linearly over all blocks (plain Python: the model may be built on "meta")
        drop_probs = [config.drop_path_rate * index / max(num_blocks - 1, 1) for index in range(num_blocks)]
        starts = [sum(config.depths[:index]) for index in range(len(config.depths))]
        self.stages = nn.ModuleList(
            [
                SoftStage(config, index, drop_probs[start : start + depth])
                for index, (start, depth) in enumerate(zip(starts, config.depths))
            ]
        )

    def forward(self, pixel_values: torch.Tensor, output_hidden_states: bool = False):
        """Returns the last stage's tokens `(batch, 1 + h * w, channels)` (classification token first) and, if asked,
        the feature maps `(batch, channels, height, width)` of the stem (stage-1 patch embeddings, stride 4) and of
        every stage (strides 4, 8, 16, 32; stage 4 without the classification token)."""
        batch_size = pixel_values.shape[0]
        # The patch embeddings run channels-last: oneDNN/cuDNN convolutions are faster in that layout, the patch tokens
        # are then a free view of each embedding map, and each stage's tokens a free view for the next embedding.
        # Feature maps that are returned are contiguous copies that the model itself continues from (so they stay on
        # the gradient path).
        hidden_states = pixel_values.contiguous(memory_format=torch.channels_last)
        feature_maps = ()
        for stage in self.stages:
            embedding_map = stage.patch_embeddings(hidden_states)  # (batch, channels, height, width)
            height, width = embedding_map.shape[-2:]
            if output_hidden_states and not feature_maps:
                embedding_map = embedding_map.contiguous()
                feature_maps += (embedding_map,)
            tokens = stage(embedding_map.flatten(2).transpose(1, 2), height, width)  # (batch, [1 +] h * w, channels)
            spatial_tokens = tokens[:, 1:] if stage.is_last else tokens
            # (batch, channels, height, width): a channels-last view of the tokens
            hidden_states = spatial_tokens.reshape(batch_size, height, width, spatial_tokens.shape[-1]).permute(0, 3, 1, 2)
            if output_hidden_states:
                hidden_states = hidden_states.contiguous()
                feature_maps += (hidden_states,)
        return tokens, feature_maps if output_hidden_states else None


class SoftPreTrainedModel(PreTrainedModel):
    config: SoftConfig
    config_class = SoftConfig
    base_model_prefix = "soft"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["SoftLayer", "SoftSoftmaxLayer"]

    def _init_weights(self, module: nn.Module) -> None:
        """Official initialisation: truncated normal (std 0.02) for linear layers, position embeddings and the
        classification token; PyTorch's default (Kaiming uniform) for convolutions; unit/zero norms."""
        super()._init_weights(module)
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            init.trunc_normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Conv2d):
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            if module.bias is not None:
                fan_in = module.weight.shape[1] * module.weight.shape[2] * module.weight.shape[3]
                bound = 1 / math.sqrt(fan_in)
                init.uniform_(module.bias, -bound, bound)
        elif isinstance(module, SoftStage):
            init.trunc_normal_(module.position_embeddings, mean=0.0, std=std)
            if module.cls_token is not None:
                init.trunc_normal_(module.cls_token, mean=0.0, std=std)

    def get_input_embeddings(self) -> nn.Module:
        """The stage-1 patch embeddings (the convolutional stem), the module that turns pixels into tokens, as ViT's
        `get_input_embeddings` returns its patch embeddings. `enable_input_require_grads` hooks its output, which
        PEFT adapters need under reentrant activation checkpointing when every weight before them is frozen."""
        return self.base_model.encoder.stages[0].patch_embeddings

    def check_pixel_values(self, pixel_values: torch.Tensor) -> None:
        """Raise a `ValueError` that says what was expected for inputs the architecture cannot take."""
        if not isinstance(pixel_values, torch.Tensor):
            raise ValueError(f"`pixel_values` must be a torch.Tensor, got {type(pixel_values).__name__}.")
        if pixel_values.ndim != 4:
            raise ValueError(
                f"`pixel_values` must have shape (batch_size, {self.config.num_channels}, height, width), "
                f"got shape {tuple(pixel_values.shape)}."
            )
        if pixel_values.shape[1] != self.config.num_channels:
            raise ValueError(
                f"Expected {self.config.num_channels} channels in `pixel_values` (batch_size, channels, height, width), "
                f"got {pixel_values.shape[1]}: convert the images (e.g. grayscale to RGB) or set `num_channels`."
            )
        if not pixel_values.is_floating_point():
            raise ValueError(
                f"`pixel_values` must be a floating-point tensor (normalised pixels), got {pixel_values.dtype}: "
                "use SoftImageProcessor or convert with `.float()` and normalise."
            )
        height, width = pixel_values.shape[-2:]
        smallest = minimum_image_size(self.config)
        if min(height, width) < smallest:
            raise ValueError(
                f"Input of {height}x{width} pixels is too small: SOFT with landmark strides {self.config.sr_ratios[:-1]} "
                f"needs at least {smallest}x{smallest} pixels; resize the images (the default processor gives 224x224)."
            )
        # reading the values on the host is free on the CPU; on an accelerator it would synchronise every forward pass
        if pixel_values.device.type == "cpu" and not torch.compiler.is_compiling():
            if not bool(torch.isfinite(pixel_values).all()):
                raise ValueError(
                    "`pixel_values` contains NaN or infinite values; check the image decoding and normalisation."
                )


class SoftModel(SoftPreTrainedModel):
    """Bare SOFT pyramid. `last_hidden_state` is the final LayerNorm of the last stage's tokens (classification token
    first), `pooler_output` the normalised classification token, `hidden_states` the four stage feature maps."""

    def __init__(self, config: SoftConfig):
        super().__init__(config)
        self.config = config
        self.encoder = SoftEncoder(config)
        self.layernorm = nn.LayerNorm(config.hidden_sizes[-1], eps=config.layer_norm_eps)
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> tuple | BaseModelOutputWithPooling:
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        self.check_pixel_values(pixel_values)

        tokens, feature_maps = self.encoder(pixel_values, output_hidden_states=output_hidden_states)
        sequence_output = self.layernorm(tokens)  # (batch, 1 + h * w, channels)
        pooled_output = sequence_output[:, 0]  # (batch, channels)

        if not return_dict:
            return tuple(value for value in (sequence_output, pooled_output, feature_maps) if value is not None)
        return BaseModelOutputWithPooling(
            last_hidden_state=sequence_output, pooler_output=pooled_output, hidden_states=feature_maps
        )


class SoftForImageClassification(SoftPreTrainedModel):
    """SOFT with a linear classifier on the normalised classification token (the official `head`)."""

    def __init__(self, config: SoftConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.soft = SoftModel(config)
        self.classifier = (
            nn.Linear(config.hidden_sizes[-1], config.num_labels) if config.num_labels > 0 else nn.Identity()
        )
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> tuple | ImageClassifierOutput:
        r"""
        labels (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
            Class indices for single-label classification (cross-entropy), floats for regression (`num_labels == 1`,
            MSE) or multi-hot floats for multi-label classification (BCE); see `config.problem_type`.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.soft(pixel_values, output_hidden_states=output_hidden_states, return_dict=True)
        logits = self.classifier(outputs.pooler_output)  # (batch, num_labels)

        loss = None
        if labels is not None:
            loss = self.loss_function(labels, logits, self.config)

        if not return_dict:
            output = (logits,) + ((outputs.hidden_states,) if outputs.hidden_states is not None else ())
            return ((loss,) + output) if loss is not None else output
        return ImageClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states)


class SoftBackbone(BackboneMixin, SoftPreTrainedModel):
    """SOFT as a backbone: feature maps selected by `out_features` among `stem` (stride 4, the stage-1 patch
    embeddings) and `stage1` .. `stage4` (strides 4, 8, 16, 32)."""

    def __init__(self, config: SoftConfig):
        super().__init__(config)
        self.encoder = SoftEncoder(config)
        self.num_features = [config.hidden_sizes[0]] + list(config.hidden_sizes)
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> tuple | BackboneOutput:
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        self.check_pixel_values(pixel_values)
        _, hidden_states = self.encoder(pixel_values, output_hidden_states=True)
        feature_maps = tuple(
            hidden_states[index] for index, stage in enumerate(self.stage_names) if stage in self.out_features
        )
        if not return_dict:
            output = (feature_maps,)
            if output_hidden_states:
                output += (hidden_states,)
            return output
        return BackboneOutput(
            feature_maps=feature_maps, hidden_states=hidden_states if output_hidden_states else None, attentions=None
        )


__all__ = [
    "SoftPreTrainedModel",
    "SoftModel",
    "SoftForImageClassification",
    "SoftBackbone",
    "SoftLayer",
    "SoftSoftmaxLayer",
    "SoftEncoder",
    "minimum_image_size",
    "stage_spatial_sizes",
]
