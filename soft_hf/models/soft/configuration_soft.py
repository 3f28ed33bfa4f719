# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""SOFT (Softmax-Free Transformer) model configuration.

SOFT: Softmax-free Transformer with Linear Complexity (Lu et al., NeurIPS 2021) and
Softmax-free Linear Transformers (Lu et al., IJCV 2024).
"""

from __future__ import annotations

from transformers.backbone_utils import BackboneConfigMixin
from transformers.configuration_utils import PreTrainedConfig


# Official presets (github.com/fudan-zvg/SOFT, models/softmax_free_vision_transformer.py). The "small" preset of
# the official code has 38.9M parameters, not the 24M of the paper's table: the code is what checkpoints follow.
SOFT_PRESETS = {
    "tiny": {"depths": (1, 2, 3, 2), "hidden_sizes": (64, 128, 320, 512), "num_attention_heads": (2, 4, 10, 16)},
    "small": {"depths": (1, 3, 20, 4), "hidden_sizes": (64, 128, 320, 512), "num_attention_heads": (2, 4, 10, 16)},
    "medium": {"depths": (1, 3, 29, 5), "hidden_sizes": (64, 128, 288, 512), "num_attention_heads": (2, 4, 9, 16)},
    "large": {"depths": (1, 3, 40, 5), "hidden_sizes": (64, 128, 320, 512), "num_attention_heads": (2, 4, 10, 16)},
    "huge": {"depths": (1, 5, 49, 5), "hidden_sizes": (64, 128, 352, 512), "num_attention_heads": (2, 4, 11, 16)},
}
NORMALIZATIONS = ("none", "symmetric")
INVERSE_METHODS = ("newton", "cholesky", "auto")
# Which landmark matrices share one Newton step size alpha (see `SoftConfig.newton_step_scope`).
NEWTON_STEP_SCOPES = ("head", "image", "batch")
# How the Newton inverse is differentiated (see `SoftConfig.newton_backward`).
NEWTON_BACKWARDS = ("analytic", "unrolled")


class SoftConfig(BackboneConfigMixin, PreTrainedConfig):
    r"""
    Configuration of a SOFT / SOFT-Norm pyramid. Defaults give SOFT-Tiny as released officially.

    Stages 1-3 are SOFT stages (post-norm blocks whose attention is the Nyström-approximated Gaussian kernel);
    stage 4 is an ordinary pre-norm softmax-attention stage that carries the classification token.

    Args:
        image_size (`int`, defaults to 224):
            Resolution the position embeddings are learned at (grids of `image_size // 4, 8, 16, 32`). Any input
            size is accepted; position embeddings are resized bilinearly like the official code does.
        num_channels (`int`, defaults to 3): Number of input channels.
        hidden_sizes (`list[int]`): Width of each of the four stages.
        depths (`list[int]`): Number of blocks in each stage.
        num_attention_heads (`list[int]`): Heads per stage (head dimension 32 in every official preset).
        sr_ratios (`list[int]`, defaults to `[8, 4, 2, 1]`):
            Landmark strides r of the SOFT stages: landmarks come from a stride-r convolution of the query map, so
            m = floor(H / r) * floor(W / r). The last entry belongs to the softmax stage, which has no reduction.
        mlp_ratios (`list[int]`, defaults to `[8, 8, 4, 4]`):
            As in the official constructor. Only the last entry is used (stage-4 MLP); the official SOFT blocks
            ignore it and use `soft_mlp_ratio`.
        soft_mlp_ratio (`int`, defaults to 4): FFN expansion of the SOFT blocks.
        skip_conv_kernel_sizes (`list[int]`, defaults to `[9, 5, 3]`):
            Kernel of the depthwise skip convolution on V in SOFT stages 1-3.
        stem_hidden_size (`int`, defaults to 32): Width of the first two 3x3 stem convolutions.
        hidden_act (`str`, defaults to `"gelu"`): Activation of the stage-4 MLP (exact GELU).
        soft_hidden_act (`str`, defaults to `"gelu_pytorch_tanh"`): Activation of the SOFT-block FFN (tanh GELU).
        landmark_act (`str`, defaults to `"gelu"`): Activation after the landmark LayerNorm.
        newton_iterations (`int`, defaults to 20): Newton-Raphson steps for the Moore-Penrose inverse.
        newton_ridge (`float`, *optional*):
            Ridge added to the landmark matrix before inversion. `None` picks the official value: 0.01 for plain
            SOFT, 0 for SOFT-Norm.
        newton_step_scope (`str`, *optional*):
            Which landmark matrices share the step size alpha of the Newton initialisation V0 = alpha A (Eq. (8)).
            20 steps are often far from converged, so alpha is part of the function a checkpoint learned.
            `"head"`: one alpha per (image, head), the official plain SOFT rule. `"image"`: one alpha per image,
            shared by the heads of the layer; the official SOFT-Norm rule for a single image, and independent of the
            batch. `"batch"`: one alpha for the whole batch, exactly the official SOFT-Norm code, whose output for
            an image depends on the other images of its batch (only to replicate evaluations made with it).
            `None` picks the official rule without its batch dependence: `"head"` for SOFT, `"image"` for
            SOFT-Norm.
        newton_backward (`str`, *optional*):
            How the Newton inverse is differentiated. `"analytic"`: the paper's once-only gradient of a matrix
            inverse, dL/dA = -A^+T (dL/dA^+) A^+T (Sec. 3.2), which the official plain SOFT trains with.
            `"unrolled"`: autograd through the step size and the unrolled Newton steps, as the official SOFT-Norm
            code trains; the two agree only where the iteration has converged. `None` follows each official
            variant: `"analytic"` for SOFT, `"unrolled"` for SOFT-Norm.
        normalization (`str`, defaults to `"none"`): `"none"` for SOFT, `"symmetric"` for SOFT-Norm
            (D^-1/2 A^+ D^-1/2, D the row sums of the landmark kernel).
        inverse_method (`str`, defaults to `"newton"`):
            `"newton"`: the paper's 20-step iteration (the official behaviour). `"cholesky"`: exact solve of the
            regularised SPD system (m^3/3 instead of 40 m^3 flops, and the true inverse where 20 Newton steps have
            not converged, beyond ~64 landmarks; outputs then differ from Newton's). `"auto"`: Newton up to 64
            landmarks, Cholesky above.
        max_landmarks (`int`, *optional*):
            If set, the landmark map of each SOFT stage is average-pooled to at most `max_landmarks` landmarks
            (a grid of at most that many cells), and the last stage's softmax attention takes its keys and values
            from the classification token and the token map pooled the same way, so cost becomes linear in the
            number of pixels at any resolution. `None` keeps the official rule m = HW / r^2 and full softmax
            attention in the last stage. Weights are unchanged by this option, and maps at or below the bound
            (7 x 7 = 49 at 224 px) are not pooled.
        layer_norm_eps (`float`, defaults to 1e-6): eps of the stage-4 and final LayerNorms.
        soft_layer_norm_eps (`float`, defaults to 1e-5): eps of the SOFT-block and landmark LayerNorms.
        hidden_dropout_prob (`float`, defaults to 0.0): Dropout after position embeddings and in the stage-4 MLP.
        attention_probs_dropout_prob (`float`, defaults to 0.0): Dropout on stage-4 attention probabilities.
        drop_path_rate (`float`, defaults to 0.0):
            Stochastic depth, linearly increasing over all blocks. As in the official code, SOFT blocks apply the
            per-block rate as plain dropout on their residual branches; stage-4 blocks use drop path.
        qkv_bias (`bool`, defaults to `True`): Bias of the stage-4 query/key/value projections.
        initializer_range (`float`, defaults to 0.02): Std of the truncated-normal initialisation.
        out_features / out_indices: Feature maps returned by [`SoftBackbone`] among `stem`, `stage1` .. `stage4`.
    """

    model_type = "soft"

    image_size: int = 224
    num_channels: int = 3
    hidden_sizes: list[int] | tuple[int, ...] = (64, 128, 320, 512)
    depths: list[int] | tuple[int, ...] = (1, 2, 3, 2)
    num_attention_heads: list[int] | tuple[int, ...] = (2, 4, 10, 16)
    sr_ratios: list[int] | tuple[int, ...] = (8, 4, 2, 1)
    mlp_ratios: list[int] | tuple[int, ...] = (8, 8, 4, 4)
    soft_mlp_ratio: int = 4
    skip_conv_kernel_sizes: list[int] | tuple[int, ...] = (9, 5, 3)
    stem_hidden_size: int = 32
    hidden_act: str = "gelu"
    soft_hidden_act: str = "gelu_pytorch_tanh"
    landmark_act: str = "gelu"
    newton_iterations: int = 20
    newton_ridge: float | None = None
    newton_step_scope: str | None = None
    newton_backward: str | None = None
    normalization: str = "none"
    inverse_method: str = "newton"
    max_landmarks: int | None = None
    layer_norm_eps: float = 1e-6
    soft_layer_norm_eps: float = 1e-5
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    drop_path_rate: float = 0.0
    qkv_bias: bool = True
    initializer_range: float = 0.02
    _out_features: list[str] | None = None
    _out_indices: list[int] | None = None

    def __post_init__(self, **kwargs):
        for name in ("hidden_sizes", "depths", "num_attention_heads", "sr_ratios", "mlp_ratios", "skip_conv_kernel_sizes"):
            setattr(self, name, [int(value) for value in getattr(self, name)])
        self.validate_architecture()
        self.stage_names = ["stem"] + [f"stage{index}" for index in range(1, len(self.depths) + 1)]
        self.set_output_features_output_indices(
            out_indices=kwargs.pop("out_indices", None), out_features=kwargs.pop("out_features", None)
        )
        super().__post_init__(**kwargs)

    def validate_architecture(self) -> None:
        """Raise a `ValueError` naming the field and the fix when the architecture is not buildable."""
        num_stages = len(self.depths)
        if num_stages != 4:
            raise ValueError(f"SOFT is a 4-stage pyramid: `depths` must have 4 entries, got {list(self.depths)}.")
        for name in ("hidden_sizes", "num_attention_heads", "sr_ratios", "mlp_ratios"):
            if len(getattr(self, name)) != num_stages:
                raise ValueError(f"`{name}` must have one entry per stage (4), got {getattr(self, name)}.")
        if len(self.skip_conv_kernel_sizes) != num_stages - 1:
            raise ValueError(
                f"`skip_conv_kernel_sizes` must have one entry per SOFT stage (3), got {self.skip_conv_kernel_sizes}."
            )
        for stage, (width, heads) in enumerate(zip(self.hidden_sizes, self.num_attention_heads), start=1):
            if heads < 1 or width % heads != 0:
                raise ValueError(
                    f"Stage {stage}: hidden size {width} is not divisible by {heads} attention heads; "
                    "choose `num_attention_heads` that divide `hidden_sizes`."
                )
        for stage, ratio in enumerate(self.sr_ratios[:-1], start=1):
            if ratio < 2:
                raise ValueError(
                    f"Stage {stage}: SOFT stages need a landmark stride (`sr_ratios`) of at least 2, got {ratio}."
                )
        if any(kernel % 2 == 0 or kernel < 1 for kernel in self.skip_conv_kernel_sizes):
            raise ValueError(f"`skip_conv_kernel_sizes` must be odd and positive, got {self.skip_conv_kernel_sizes}.")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"`normalization` must be one of {NORMALIZATIONS}, got {self.normalization!r}.")
        if self.inverse_method not in INVERSE_METHODS:
            raise ValueError(f"`inverse_method` must be one of {INVERSE_METHODS}, got {self.inverse_method!r}.")
        if self.newton_step_scope is not None and self.newton_step_scope not in NEWTON_STEP_SCOPES:
            raise ValueError(
                f"`newton_step_scope` must be None or one of {NEWTON_STEP_SCOPES}, got {self.newton_step_scope!r}."
            )
        if self.newton_backward is not None and self.newton_backward not in NEWTON_BACKWARDS:
            raise ValueError(f"`newton_backward` must be None or one of {NEWTON_BACKWARDS}, got {self.newton_backward!r}.")
        if self.newton_iterations < 1:
            raise ValueError(f"`newton_iterations` must be at least 1, got {self.newton_iterations}.")
        if self.max_landmarks is not None and self.max_landmarks < 1:
            raise ValueError(f"`max_landmarks` must be None or a positive integer, got {self.max_landmarks}.")
        if self.image_size % 32 != 0:
            raise ValueError(
                f"`image_size` sets the position-embedding grids (image_size/4 ... /32) and must be a multiple of 32, "
                f"got {self.image_size}."
            )

    @property
    def ridge(self) -> float:
        """The ridge added to the landmark matrix: the official 0.01 (SOFT) or 0 (SOFT-Norm) unless overridden."""
        if self.newton_ridge is not None:
            return float(self.newton_ridge)
        return 0.0 if self.normalization == "symmetric" else 0.01

    @property
    def step_scope(self) -> str:
        """Which matrices share one Newton step size: `newton_step_scope`, else per (image, head) for SOFT and per
        image for SOFT-Norm (the official rules, without SOFT-Norm's dependence on the batch)."""
        if self.newton_step_scope is not None:
            return self.newton_step_scope
        return "image" if self.normalization == "symmetric" else "head"

    @property
    def inverse_backward(self) -> str:
        """How the Newton inverse is differentiated: `newton_backward`, else as each official variant trained
        (analytic once-only for SOFT, unrolled steps for SOFT-Norm)."""
        if self.newton_backward is not None:
            return self.newton_backward
        return "unrolled" if self.normalization == "symmetric" else "analytic"

    @classmethod
    def from_preset(cls, name: str, **kwargs) -> "SoftConfig":
        """Build an official preset: `soft-tiny` ... `soft-huge`, or `soft-norm-tiny` ... `soft-norm-huge`.

        Plain and -Norm twins differ only in `normalization` (and hence the default ridge, Newton step scope and
        Newton backward).
        """
        key = name.lower().replace("_", "-")
        key = key[len("soft-") :] if key.startswith("soft-") else key
        normalization = "none"
        if key.startswith("norm-"):
            key, normalization = key[len("norm-") :], "symmetric"
        if key not in SOFT_PRESETS:
            names = [f"soft-{size}" for size in SOFT_PRESETS] + [f"soft-norm-{size}" for size in SOFT_PRESETS]
            raise ValueError(f"Unknown SOFT preset {name!r}; choose one of {names}.")
        arguments = {key_: list(value) for key_, value in SOFT_PRESETS[key].items()}
        arguments["normalization"] = normalization
        arguments.update(kwargs)
        return cls(**arguments)


PRESET_NAMES = [f"soft-{size}" for size in SOFT_PRESETS] + [f"soft-norm-{size}" for size in SOFT_PRESETS]

__all__ = ["SoftConfig", "SOFT_PRESETS", "PRESET_NAMES"]
