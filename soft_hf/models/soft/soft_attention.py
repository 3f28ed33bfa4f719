# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""Softmax-free attention: the Gaussian kernel, its Nyström approximation over convolutional landmarks, and the
Newton-Raphson Moore-Penrose inverse of the landmark matrix.

Equation numbers refer to Lu et al., "SOFT: Softmax-free Transformer with Linear Complexity" (NeurIPS 2021):
Eq. (3) the Gaussian kernel S(q, k) = exp(-||q - k||^2 / 2) with keys tied to queries, Eq. (5) the low-rank
approximation S ~ K1 A^+ K1^T over m landmarks, Eq. (7)-(8) the Newton-Raphson iteration for A^+, and
Sec. 3.3 of the IJCV version ("Softmax-free Linear Transformers") for the symmetric normalisation
D^-1/2 A^+ D^-1/2 of SOFT-Norm.

Speed notes (see scripts/benchmark.py): the attention never materialises an N x N matrix, computes
A^+ (K1^T V) before multiplying by K1 (O(N m d) instead of the official O(N m^2)), builds the kernel with one
batched matmul and in-place element-wise passes, runs the landmark and skip convolutions on channels-last views of
the projections (no head transposes), and offers an exact Cholesky solve of the landmark system
(`inverse_method="cholesky"`), which replaces the 40 m^3 flops of 20 Newton steps by m^3 / 3.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import ACT2FN, GELUActivation

from .configuration_soft import INVERSE_METHODS, NEWTON_BACKWARDS


# The official step-size search of SOFT-Norm halves the step at most this many times.
MAX_STEP_HALVINGS = 10
# Jitter of the Cholesky path when the configuration asks for no ridge (SOFT-Norm): the landmark matrix is only
# positive semi-definite when landmarks coincide, and an exact factorisation needs it definite.
CHOLESKY_MIN_RIDGE = 1e-4
# `inverse_method="auto"` keeps the paper's Newton iteration up to this many landmarks (the 7 x 7 landmark grids the
# official models are trained with at 224 px, and any bounded `max_landmarks` up to 8 x 8) and solves larger systems
# exactly with Cholesky, where 20 Newton steps cost 40 m^3 flops per matrix and no longer converge.
AUTO_NEWTON_MAX_LANDMARKS = 64
# The attention runs image by image in chunks whose query kernels K1 take about this many bytes (L2-cache sized):
# the large N x m kernel then never travels through main memory, and its buffer is reused between chunks.
ATTENTION_CHUNK_BYTES = 1 << 21

# gelu_tanh(x) = 0.5 x (1 + tanh(u)) = x * sigmoid(2 u), u = sqrt(2 / pi) (x + 0.044715 x^3)
_GELU_SIGMOID_LINEAR = 2.0 * math.sqrt(2.0 / math.pi)
_GELU_SIGMOID_CUBIC = _GELU_SIGMOID_LINEAR * 0.044715


def compute_dtype_for(dtype: torch.dtype) -> torch.dtype:
    """The dtype of the float32 island: half-precision inputs are promoted, float32/float64 are kept."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


# Elements per chunk of the CPU tanh GELU: its passes then run in the L2 cache instead of streaming memory 6 times.
GELU_CHUNK_ELEMENTS = 1 << 17


def _tanh_gelu_into(inputs: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    """output = x * sigmoid(x (a + b x^2)) for contiguous tensors, chunk by chunk, without temporaries."""
    for input_chunk, output_chunk in zip(inputs.view(-1).split(GELU_CHUNK_ELEMENTS), output.view(-1).split(GELU_CHUNK_ELEMENTS)):
        torch.mul(input_chunk, input_chunk, out=output_chunk)
        output_chunk.mul_(_GELU_SIGMOID_CUBIC).add_(_GELU_SIGMOID_LINEAR).mul_(input_chunk).sigmoid_().mul_(input_chunk)
    return output


def records_autograd(*tensors: torch.Tensor | None) -> bool:
    """Whether autograd records an op on these tensors (None entries are ignored): grad mode is on and one of them
    requires a gradient."""
    return torch.is_grad_enabled() and any(tensor is not None and tensor.requires_grad for tensor in tensors)


class FastGELUTanh(nn.Module):
    """`gelu_pytorch_tanh`. CPU inference on contiguous float32/float64 tensors computes it as x * sigmoid(2u) in
    cache-sized chunks (on small maps faster there than the vectorised `tanh`); everything else, training included,
    runs the fused `F.gelu(approximate="tanh")`, whose autograd backward (`gelu_backward`, one pass over the saved
    input) is several times faster than an element-wise formula of the derivative. The input is never written to."""

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if (
            torch.compiler.is_compiling()
            or inputs.device.type != "cpu"
            or inputs.dtype not in (torch.float32, torch.float64)
            or not inputs.is_contiguous()
            or records_autograd(inputs)
        ):
            return F.gelu(inputs, approximate="tanh")
        return _tanh_gelu_into(inputs, torch.empty_like(inputs))


def activation_for(name: str) -> nn.Module:
    """`ACT2FN[name]`, except that the tanh GELU of the SOFT blocks gets the faster equivalent `FastGELUTanh`."""
    return FastGELUTanh() if name == "gelu_pytorch_tanh" else ACT2FN[name]


def _onednn_available() -> bool:
    try:
        ops = torch.ops.mkldnn
        return torch.backends.mkldnn.is_available() and hasattr(ops, "_linear_pointwise") and hasattr(
            ops, "_convolution_pointwise"
        )
    except (AttributeError, RuntimeError):
        return False


# oneDNN's fused linear and convolution kernels (the ones `torch.compile` uses on the CPU), if this build has them.
ONEDNN_AVAILABLE = _onednn_available()


def is_concrete_size(*sizes) -> bool:
    """Whether every size is a plain Python int (eager mode), not a symbolic size of `torch.export` / dynamic
    `torch.compile` tracing, on which a comparison would specialise the traced graph to the example's value."""
    return all(type(size) is int for size in sizes)


def use_onednn(inputs: torch.Tensor, *parameters: torch.Tensor | None, allow_grad: bool = False) -> bool:
    """Whether an op on `inputs` with these `parameters` (weights, biases; None entries are ignored) runs through
    oneDNN's kernels: float32 CPU tensors, eager mode, `torch.backends.mkldnn.enabled`, and no autograd graph (neither
    the input nor any parameter needs a gradient) unless `allow_grad` (ops with a backward of their own,
    `OneDNNLinearFunction`; never under functorch transforms). PyTorch's eager `F.linear` calls the BLAS library
    (MKL) instead, whose float32 GEMM takes its AVX2 path on AMD processors; oneDNN dispatches on the instruction set
    (AVX-512 on Zen 4/5) and ran 2.3x faster on the benchmark machine (`scripts/benchmark.py`, section "efficiency"),
    and in inference it applies a following GELU/ReLU (and the folded eval-mode BatchNorm) inside the same kernel.
    Everything else (half precision, autocast, GPUs, `torch.compile`, tracing,
    `torch.backends.mkldnn.flags(enabled=False)`) runs the ordinary PyTorch modules."""
    parameters = [parameter for parameter in parameters if parameter is not None]
    needs_grad = records_autograd(inputs, *parameters)
    return (
        ONEDNN_AVAILABLE
        and torch.backends.mkldnn.enabled
        and inputs.dtype == torch.float32
        and inputs.device.type == "cpu"
        and all(parameter.dtype == torch.float32 and parameter.device.type == "cpu" for parameter in parameters)
        and (not needs_grad or (allow_grad and not torch._C._are_functorch_transforms_active()))
        and not torch.is_autocast_enabled("cpu")
        and not torch.compiler.is_compiling()
        and not torch.jit.is_tracing()
        and not torch.jit.is_scripting()
    )


class OneDNNLinearFunction(torch.autograd.Function):
    """`F.linear(inputs, weight, bias)` for float32 CPU training: the forward GEMM and the input gradient
    dL/dx = dL/dy W run on oneDNN (see `use_onednn`), the weight gradient dL/dW = (dL/dy)^T x on PyTorch's `mm`
    (it reads both activations transposed, which oneDNN's linear would first copy), dL/db = sum of dL/dy. The same
    function and gradients as `F.linear` up to float32 rounding (tested), double backward included; autograd saves the
    same two tensors as for `F.linear`."""

    @staticmethod
    def forward(ctx, rows: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """`rows` `(tokens, in_features)` -> `(tokens, out_features)`, a tensor of its own (not a view), so callers
        may add into it in place."""
        ctx.save_for_backward(rows, weight)
        return torch.ops.mkldnn._linear_pointwise(rows, weight, bias, "none", [], "")

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        # written with differentiable ops (this Function included), so double backward (create_graph=True) works
        rows, weight = ctx.saved_tensors
        grad_rows = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_rows = OneDNNLinearFunction.apply(grad_output, weight.t(), None)  # dL/dy W: (tokens, in_features)
        if ctx.needs_input_grad[1]:
            grad_weight = grad_output.t().mm(rows)  # (out_features, in_features)
        if ctx.needs_input_grad[2]:
            grad_bias = grad_output.sum(0)
        return grad_rows, grad_weight, grad_bias


def _global_module_hooks_present() -> bool:
    """Whether hooks registered for every module (`torch.nn.modules.module.register_module_forward_hook` and its
    siblings, used e.g. by `FlopCounterMode`'s module tracker) are active."""
    from torch.nn.modules import module as module_module

    return any(
        getattr(module_module, name, None)
        for name in (
            "_global_forward_hooks",
            "_global_forward_pre_hooks",
            "_global_backward_hooks",
            "_global_backward_pre_hooks",
        )
    )


def is_unobserved(*modules: nn.Module) -> bool:
    """Whether a fast path may compute what these modules compute without calling them: nothing could tell the
    difference. False when any of them has forward or backward hooks (feature extractors, Grad-CAM, FLOP counters,
    torchinfo, quantization observers), when module hooks are registered globally, or when a module's `forward` was
    replaced on the instance (Accelerate's offloading and device-placement hooks do that). Callers also check the
    module types they expect: adapters (PEFT) and quantized replacements are other types, and are always called."""
    if _global_module_hooks_present():
        return False
    return not any(
        module._forward_hooks
        or module._forward_pre_hooks
        or module._backward_hooks
        or module._backward_pre_hooks
        or "forward" in module.__dict__
        for module in modules
    )


def is_plain_unobserved_conv(conv: nn.Module, inputs: torch.Tensor) -> bool:
    """Whether the attention may convolve with `conv`'s weight directly instead of calling it: a plain `nn.Conv2d`
    that nothing observes (`is_unobserved`), whose weight is on the inputs' device (not offloaded)."""
    return type(conv) is nn.Conv2d and is_unobserved(conv) and conv.weight.device == inputs.device


def fused_linear(linear: nn.Module, inputs: torch.Tensor, activation: nn.Module | None = None) -> torch.Tensor:
    """`activation(linear(inputs))` (or `linear(inputs)`), computed by oneDNN's GEMM when the layer is a plain
    `nn.Linear`, `use_onednn` allows it and nothing observes the modules (`is_unobserved`); otherwise the modules are
    called. Both give the same function (tested). In training the GEMM is `OneDNNLinearFunction` and the activation
    module is called on its output. In inference a GELU (`FastGELUTanh`, or Transformers' exact `GELUActivation`)
    fuses as a post-op of the GEMM; any other activation is called after it."""
    if not (
        type(linear) is nn.Linear
        and use_onednn(inputs, linear.weight, linear.bias, allow_grad=True)
        and is_unobserved(linear)
    ):
        outputs = linear(inputs)
        return outputs if activation is None else activation(outputs)
    if records_autograd(inputs, linear.weight, linear.bias):
        # training: oneDNN's GEMM with a backward of its own; the activation is called (autograd keeps its input)
        rows = inputs.reshape(-1, inputs.shape[-1])  # (tokens, in_features)
        outputs = OneDNNLinearFunction.apply(rows, linear.weight, linear.bias).view(*inputs.shape[:-1], -1)
        return outputs if activation is None else activation(outputs)
    gelu = onednn_gelu_algorithm(activation) if activation is not None else None
    if gelu is not None and is_unobserved(activation):
        return torch.ops.mkldnn._linear_pointwise(inputs, linear.weight, linear.bias, "gelu", [], gelu)
    outputs = torch.ops.mkldnn._linear_pointwise(inputs, linear.weight, linear.bias, "none", [], "")
    return outputs if activation is None else activation(outputs)


def onednn_gelu_algorithm(activation: nn.Module) -> str | None:
    """oneDNN's name for the GELU `activation` computes ("tanh" or "none" for erf), or None if it is not a GELU."""
    if isinstance(activation, FastGELUTanh):
        return "tanh"
    if isinstance(activation, GELUActivation) and activation.act is F.gelu:
        return "none"
    return None


def autocast_disabled(device_type: str):
    """A context that turns autocast off for `device_type` (a no-op on devices without autocast, e.g. "meta")."""
    if torch.amp.is_autocast_available(device_type):
        return torch.autocast(device_type=device_type, enabled=False)
    return contextlib.nullcontext()


def underflow_exponent(dtype: torch.dtype) -> float:
    """The most negative exponent x of `dtype` whose exp(x) is still a normal number (at least `finfo.tiny`): the log
    of the smallest normal number, rounded to `dtype` and stepped towards zero until its exponential is normal."""
    tiny = torch.finfo(dtype).tiny
    exponent = torch.tensor(math.log(tiny), dtype=dtype)
    while torch.exp(exponent.to(compute_dtype_for(dtype))).item() < tiny:
        exponent = torch.nextafter(exponent, torch.zeros_like(exponent))
    return exponent.item()


# Computed once here, so that traced and compiled code only looks them up.
UNDERFLOW_EXPONENTS = {
    dtype: underflow_exponent(dtype) for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64)
}


def gaussian_kernel(queries: torch.Tensor, landmarks: torch.Tensor, query_scale: float = 1.0) -> torch.Tensor:
    """Gaussian kernel of Eq. (3), k(a, b) = exp(-||a - b||^2 / 2), between `query_scale * queries` and `landmarks`.

    The exponent -||s q - l||^2 / 2 = s q.l - s^2 ||q||^2 / 2 - ||l||^2 / 2 is one batched matmul of augmented
    vectors, [q, -s^2 ||q||^2 / 2, 1] . [s l, 1, -||l||^2 / 2], so neither norm term needs a pass over the
    `num_queries x num_landmarks` result, and building the augmented queries is the only copy of the queries (a
    strided per-head view of a projection is read in place). The exponent is clamped at zero, since rounding can
    make it slightly positive and the kernel would then exceed 1, and from below at `underflow_exponent` (about
    -87.3 in float32): entries that would be subnormal or zero (a query about 13 units or more from a landmark) are
    the smallest normal number instead. They then add nothing visible to any sum, as before, but the exponential
    stays on its fast path: on the CPU `torch.exp` (MKL VML) runs 10-30x slower on inputs whose result underflows.

    Args:
        queries: `(..., num_queries, head_dim)`, any strides.
        landmarks: `(..., num_landmarks, head_dim)`.
        query_scale: factor s applied to the queries.

    Returns:
        `(..., num_queries, num_landmarks)`, contiguous.
    """
    # -s^2 ||q||^2 / 2: (..., num_queries, 1);  -||l||^2 / 2: (..., num_landmarks, 1)
    query_terms = torch.linalg.vector_norm(queries, dim=-1, keepdim=True).square().mul(-0.5 * query_scale**2)
    landmark_terms = torch.linalg.vector_norm(landmarks, dim=-1, keepdim=True).square().mul(-0.5)
    augmented_queries = torch.cat((queries, query_terms, torch.ones_like(query_terms)), dim=-1)  # (..., n, d + 2)
    scaled_landmarks = landmarks * query_scale if query_scale != 1.0 else landmarks
    augmented_landmarks = torch.cat((scaled_landmarks, torch.ones_like(landmark_terms), landmark_terms), dim=-1)
    exponent = torch.matmul(augmented_queries, augmented_landmarks.transpose(-1, -2))  # (..., n, m)
    lowest = UNDERFLOW_EXPONENTS[exponent.dtype]
    if records_autograd(queries, landmarks):
        return torch.exp(exponent.clamp(lowest, 0.0))
    return exponent.clamp_(lowest, 0.0).exp_()  # inference: reuse the matmul's buffer


def _reduce_over_scope(values: torch.Tensor, scope: str, reduce) -> torch.Tensor:
    """Reduce per-matrix `values` `(batch, ..., 1, 1)` over the matrices that share one step size: none ("head"),
    all but the batch dimension ("image"), or all ("batch"); the result keeps the dimensions for broadcasting."""
    if scope == "head" or values.dim() <= 2:
        return values
    dims = tuple(range(values.dim() - 2)) if scope == "batch" else tuple(range(1, values.dim() - 2))
    return reduce(values, dim=dims, keepdim=True) if dims else values


def newton_initial_step(matrix: torch.Tensor, adaptive: bool, scope: str = "head") -> torch.Tensor:
    """Step size alpha of the Newton-Raphson initialisation V0 = alpha * A (Eq. (8)), shape `(..., 1, 1)`.

    Plain SOFT (official `newton_inv`): alpha = 0.9 * 2 / ||A||_1^2 with ||A||_1 the largest row sum.
    SOFT-Norm (official `newton_inv` of the Norm kernel): alpha = 2 / ||A||_1^2, halved while the largest column sum
    of |I - A V0| exceeds 1.01, at most 10 times.

    `scope` says which matrices of `matrix` `(batch, heads, m, m)` share one alpha: `"head"` each (image, head) its
    own (the official plain rule), `"image"` the heads of one image (the official Norm rule for a batch of one),
    `"batch"` all of them (the official Norm code, whose outputs then depend on the batch). A shared alpha takes the
    largest row sum of the group and is halved while any matrix of the group fails the test, like the official
    while loop, here as a fixed number of vectorised checks with no device synchronisation. The halving decisions are
    not differentiable; alpha is, through the row sum (as in the official unrolled SOFT-Norm backward).
    """
    # ||A||_inf bounds the spectral radius; for the Gaussian kernel (all entries positive) it is the official
    # "max row sum", and taking absolute values keeps the iteration convergent for any symmetric matrix.
    max_row_sum = _reduce_over_scope(matrix.abs().sum(-1).amax(-1)[..., None, None], scope, torch.amax)  # (.., 1, 1)
    if not adaptive:
        return 0.9 * 2.0 / max_row_sum.square()
    alpha = 2.0 / max_row_sum.square()
    with torch.no_grad():
        identity = torch.eye(matrix.shape[-1], dtype=matrix.dtype, device=matrix.device)
        matrix_squared = matrix @ matrix  # (..., m, m); A V0 = alpha * A^2
        step = alpha.detach()
        for _ in range(MAX_STEP_HALVINGS):
            residual_norm = (identity - step * matrix_squared).abs().sum(-2).amax(-1)[..., None, None]
            halve = _reduce_over_scope(residual_norm > 1.01, scope, torch.any)
            step = torch.where(halve, step * 0.5, step)
        halvings = step / alpha.detach()  # 2^-k, exact in floating point
    return alpha * halvings


def newton_schulz_inverse(
    matrix: torch.Tensor, num_iterations: int, ridge: float, adaptive: bool, step_scope: str = "head"
) -> torch.Tensor:
    """Moore-Penrose inverse of `matrix + ridge * I` by the Newton-Raphson iteration of Eq. (8):
    V_{k+1} = 2 V_k - V_k P V_k, V_0 = alpha * P.

    The step size is computed from `matrix` without the ridge, as the official code does (`newton_initial_step`).
    `matrix` has shape `(..., m, m)`; the iteration runs on a flattened batch so each step is two batched matmuls,
    the second fused with the update (`baddbmm`). Differentiable by autograd (the unrolled backward).
    """
    size = matrix.shape[-1]
    alpha = newton_initial_step(matrix, adaptive, step_scope)  # (..., 1, 1)
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
    def forward(
        ctx, matrix: torch.Tensor, num_iterations: int, ridge: float, adaptive: bool, step_scope: str
    ) -> torch.Tensor:
        # Function.forward already runs without recording a graph.
        inverse = newton_schulz_inverse(matrix, num_iterations, ridge, adaptive, step_scope)
        ctx.save_for_backward(inverse)
        return inverse

    @staticmethod
    def backward(ctx, grad_inverse: torch.Tensor):
        (inverse,) = ctx.saved_tensors
        inverse_transposed = inverse.transpose(-1, -2)
        grad_matrix = -(inverse_transposed @ grad_inverse @ inverse_transposed)
        return grad_matrix, None, None, None, None



def newton_inverse(
    matrix: torch.Tensor,
    num_iterations: int = 20,
    ridge: float = 0.0,
    adaptive: bool = True,
    step_scope: str = "head",
    backward: str = "analytic",
) -> torch.Tensor:
    """Differentiable Newton-Raphson pseudo-inverse of a batch of square matrices `(batch, ..., m, m)`.

    Args:
        num_iterations, ridge, adaptive, step_scope: see `newton_schulz_inverse` and `newton_initial_step`.
        backward: `"analytic"`, the once-only inverse gradient of `SoftNewtonInverse` (memory O(m^2) per matrix);
            `"unrolled"`, autograd through alpha and every step (keeps 2 m x m matrices per step).
    """
    if matrix.shape[-1] != matrix.shape[-2]:
        raise ValueError(f"newton_inverse expects square matrices, got shape {tuple(matrix.shape)}.")
    if backward not in NEWTON_BACKWARDS:
        raise ValueError(f"`backward` must be one of {NEWTON_BACKWARDS}, got {backward!r}.")
    if backward == "unrolled":
        return newton_schulz_inverse(matrix, num_iterations, ridge, adaptive, step_scope)
    return SoftNewtonInverse.apply(matrix, num_iterations, ridge, adaptive, step_scope)


class ContiguousGradient(torch.autograd.Function):
    """Identity whose backward makes the incoming gradient contiguous. Used under `torch.compile` before the landmark
    LayerNorm: the traced (meta) LayerNorm backward keeps a strided gradient's layout while the CPU kernel returns a
    contiguous one, and a view traced on the former fails at run time on the latter."""

    @staticmethod
    def forward(ctx, inputs: torch.Tensor) -> torch.Tensor:
        return inputs.view_as(inputs)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:
        return grad_output.contiguous()


def channels_last_map(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Tokens `(batch, height * width, channels)` as a `(batch, channels, height, width)` map: a free channels-last
    view, which oneDNN and cuDNN convolve without reordering."""
    batch_size, _, channels = tokens.shape
    return tokens.reshape(batch_size, height, width, channels).permute(0, 3, 1, 2)


def cholesky_inverse_spd(matrix: torch.Tensor, ridge: float) -> torch.Tensor:
    """Exact inverse of A + ridge I for symmetric positive (semi-)definite A `(..., m, m)` from a Cholesky
    factorisation: about m^3 flops per matrix instead of 40 m^3 for 20 Newton steps, and differentiable by autograd.

    A ridge below `CHOLESKY_MIN_RIDGE` is raised to it. A matrix that still fails to factorise (rounding can make an
    almost singular kernel matrix slightly indefinite) is inverted by LU instead, that matrix alone, so no other
    image's output depends on it. On the CPU in eager mode the failures are read on the host (free there) and only
    the failed matrices take the LU path; elsewhere (GPUs, `torch.compile`) the choice is made on the device with
    `torch.where`, without a host synchronisation, and failed matrices never feed NaN into the selected values or
    their gradients (they are factorised as the identity instead)."""
    size = matrix.shape[-1]
    ridge = max(ridge, CHOLESKY_MIN_RIDGE)
    identity = torch.eye(size, dtype=matrix.dtype, device=matrix.device)
    system = matrix + ridge * identity  # (..., m, m)
    factor, info = torch.linalg.cholesky_ex(system)
    host_check = matrix.device.type == "cpu" and not torch.compiler.is_compiling()
    if host_check and not bool(info.any()):
        return torch.cholesky_inverse(factor)
    failed = (info != 0)[..., None, None]  # (..., 1, 1)
    factor = torch.linalg.cholesky_ex(torch.where(failed, identity, system))[0]
    inverse = torch.cholesky_inverse(factor)
    if host_check:  # only the failed matrices by LU
        index = failed.flatten().nonzero().squeeze(-1)
        flat_system, flat_inverse = system.reshape(-1, size, size), inverse.reshape(-1, size, size)
        lu_inverse = torch.linalg.inv_ex(flat_system.index_select(0, index))[0]
        return flat_inverse.index_copy(0, index, lu_inverse).reshape(system.shape)
    lu_inverse = torch.linalg.inv_ex(torch.where(failed, system, identity))[0]
    return torch.where(failed, lu_inverse, inverse)


def resolve_inverse_method(inverse_method: str, num_landmarks: int) -> str:
    """The method used for `num_landmarks` landmarks: `"auto"` keeps Newton up to `AUTO_NEWTON_MAX_LANDMARKS`."""
    if inverse_method not in INVERSE_METHODS:
        raise ValueError(f"`inverse_method` must be one of {INVERSE_METHODS}, got {inverse_method!r}.")
    if inverse_method == "auto":
        return "newton" if num_landmarks <= AUTO_NEWTON_MAX_LANDMARKS else "cholesky"
    return inverse_method


def landmark_grid(height: int, width: int, max_landmarks: int | None) -> tuple[int, int] | None:
    """The grid a `height x width` landmark map is average-pooled to so that it has at most `max_landmarks` cells
    (None: the map is within the bound and is not pooled).

    The largest grid within the bound that keeps the map's aspect ratio: along the shorter side s, `g` cells; along
    the longer side l, at most ceil(g l / s) and at least floor(g l / s) cells (within one cell of the exact ratio),
    choosing the g with the most cells (ties: the smaller g). A map too thin for any such grid (g = 1 already exceeds
    the bound) gets one row of `max_landmarks` cells. The rule depends only on the two sides, so a transposed map
    gets the transposed grid, and square maps get square grids."""
    if max_landmarks is None or height * width <= max_landmarks:
        return None
    short, long = min(height, width), max(height, width)
    best_cells, best = 0, (1, min(long, max_landmarks))
    for cells_short in range(1, min(short, max_landmarks) + 1):
        exact = cells_short * long / short  # cells along the long side that keep the aspect ratio
        cells_long = min(long, math.ceil(exact), max_landmarks // cells_short)
        if cells_long < math.floor(exact) or cells_long < 1:
            continue
        if cells_short * cells_long > best_cells:
            best_cells, best = cells_short * cells_long, (cells_short, cells_long)
    return best if height <= width else best[::-1]


class SoftSelfAttention(nn.Module):
    """Softmax-free self-attention of one SOFT block (Eq. (5)):

        out = K1 A^+ (K1^T V) + DWConv(V),   K1 = k(Q, Q~),  A = k(Q~, Q~),

    with Q = X W_q / d^(1/4) (keys tied to queries), landmarks Q~ = GELU(LN(Conv_{r x r, stride r}(Q))) and a
    depthwise k x k skip convolution on V, one filter per head. SOFT-Norm replaces A^+ with D^-1/2 A^+ D^-1/2,
    D = diag(A 1). The kernel, the inverse and the products run in (at least) float32 even under autocast.

    Cost per image and head: O(N m d) for the kernel and the products, O(N d^2) for the projections and convolutions,
    and O(m^3) for the landmark system (Newton: 40 m^3 flops, Cholesky: m^3 / 3). With `max_landmarks` set, m is
    bounded and the whole layer is linear in the number of tokens N.
    """

    def __init__(self, config, hidden_size: int, num_attention_heads: int, sr_ratio: int, skip_kernel_size: int):
        super().__init__()
        self.hidden_size = hidden_size
        self.num_attention_heads = num_attention_heads
        self.attention_head_size = hidden_size // num_attention_heads
        self.query_scale = self.attention_head_size**-0.25
        self.sr_ratio = sr_ratio
        self.num_iterations = config.newton_iterations
        self.ridge = config.ridge
        self.step_scope = config.step_scope
        self.inverse_backward = config.inverse_backward
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

    def compute_landmarks(self, query_states: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Q~ = GELU(LN(Conv_r(Q / d^(1/4)))) from the query projection `(batch, seq_len, hidden_size)`:
        returns `(batch, heads, m, head_size)`.

        The official layout runs `landmark_conv` once on the scaled queries of every (image, head),
        `(batch * heads, head_size, height, width)`. When nothing observes the convolution (`is_unobserved`), the
        same result comes from a grouped convolution on the channels-last view of the projection (no per-head copy
        of Q) with the query scale folded into the weight. With `max_landmarks` the strided landmark map is
        average-pooled to a grid of at most that many cells (`landmark_grid`)."""
        batch_size, _, hidden_size = query_states.shape
        num_heads, head_size = self.num_attention_heads, self.attention_head_size
        conv = self.landmark_conv
        if is_plain_unobserved_conv(conv, query_states):
            query_map = channels_last_map(query_states, height, width)  # (batch, hidden_size, height, width)
            weight = conv.weight * self.query_scale  # (head_size, head_size, r, r)
            if num_heads > 1:
                weight = weight.repeat(num_heads, 1, 1, 1)  # (hidden_size, head_size, r, r): one group per head
            landmark_map = F.conv2d(query_map, weight, stride=conv.stride, groups=num_heads)  # (b, C, H / r, W / r)
            landmark_map = landmark_map.reshape(batch_size * num_heads, head_size, *landmark_map.shape[-2:])
        else:
            # (batch * heads, head_size, height, width), scaled as the official code scales Q before the convolution
            query_maps = query_states.reshape(batch_size, height, width, num_heads, head_size).permute(0, 3, 4, 1, 2)
            query_maps = query_maps.reshape(batch_size * num_heads, head_size, height, width) * self.query_scale
            landmark_map = conv(query_maps)  # (batch * heads, head_size, H / r, W / r)
        grid = landmark_grid(landmark_map.shape[-2], landmark_map.shape[-1], self.max_landmarks)
        if grid is not None:
            landmark_map = F.adaptive_avg_pool2d(landmark_map, grid)
        num_landmarks = landmark_map.shape[-2] * landmark_map.shape[-1]
        # (batch * heads, head_size, m) -> (batch, heads, m, head_size)
        landmarks = landmark_map.reshape(batch_size, num_heads, head_size, num_landmarks).transpose(-1, -2)
        landmarks = self.landmark_act(self.landmark_norm(landmarks))
        return ContiguousGradient.apply(landmarks) if torch.compiler.is_compiling() else landmarks

    def landmark_operator(self, landmark_kernel: torch.Tensor) -> torch.Tensor:
        """The `(..., m, m)` matrix W of the landmark system, mixed = W (K1^T V): A^+ by Newton-Raphson (Eq. (8)) or
        the exact inverse of A + ridge I (Cholesky), and for SOFT-Norm D^-1/2 A^+ D^-1/2 with D = diag(A 1)."""
        if resolve_inverse_method(self.inverse_method, landmark_kernel.shape[-1]) == "cholesky":
            operator = cholesky_inverse_spd(landmark_kernel, self.ridge)
        else:
            operator = newton_inverse(
                landmark_kernel,
                self.num_iterations,
                self.ridge,
                adaptive=self.symmetric_normalization,
                step_scope=self.step_scope,
                backward=self.inverse_backward,
            )
        if self.symmetric_normalization:
            inverse_sqrt_degree = landmark_kernel.sum(-1, keepdim=True).rsqrt()  # D^-1/2: (..., m, 1)
            operator = inverse_sqrt_degree * operator * inverse_sqrt_degree.transpose(-1, -2)
        return operator

    def skip_connection(self, value_states: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, bool]:
        """Depthwise skip convolution on V with one k x k filter per head, shared by the head's channels: the official
        Conv2d(heads, heads, groups=heads) over V laid out as (batch * head_size, heads, H, W). Returns
        `(batch, seq_len, hidden_size)` and whether that tensor is a buffer of this layer's own (which inference may
        then write into).

        When nothing observes `skip_conv` (`is_unobserved`), the same result comes from a depthwise convolution of the
        channels-last view of V with the head's filter repeated over its channels (no copy of V)."""
        batch_size, seq_len, hidden_size = value_states.shape
        num_heads, head_size = self.num_attention_heads, self.attention_head_size
        conv = self.skip_conv
        if is_plain_unobserved_conv(conv, value_states):
            value_map = channels_last_map(value_states, height, width)  # (batch, hidden_size, height, width)
            weight = conv.weight.repeat_interleave(head_size, dim=0)  # (hidden_size, 1, k, k)
            skip = F.conv2d(value_map, weight, padding=conv.padding, groups=hidden_size)  # (b, C, H, W)
            return skip.permute(0, 2, 3, 1).reshape(batch_size, seq_len, hidden_size), True  # a view if channels-last
        # official layout: (batch * head_size, heads, height, width)
        value_maps = value_states.reshape(batch_size, height, width, num_heads, head_size).permute(0, 4, 3, 1, 2)
        skip = conv(value_maps.reshape(batch_size * head_size, num_heads, height, width))
        # (batch, head_size, heads, seq_len) -> (batch, seq_len, heads * head_size)
        skip = skip.reshape(batch_size, head_size, num_heads, seq_len).permute(0, 3, 2, 1)
        return skip.reshape(batch_size, seq_len, hidden_size), False

    def images_per_chunk(self, inputs: torch.Tensor, num_landmarks: int) -> int:
        """For CPU inference, the number of images (of `inputs`, `(batch, seq_len, hidden_size)`) whose query kernels
        K1 `(heads, seq_len, m)` together fill about `ATTENTION_CHUNK_BYTES`; otherwise the whole batch at once
        (autograd keeps every K1 for the backward pass, so chunks would not stay in the cache; GPUs; `torch.compile`)."""
        batch_size, seq_len, _ = inputs.shape
        if inputs.device.type != "cpu" or torch.compiler.is_compiling() or records_autograd(inputs):
            return batch_size
        element_size = torch.finfo(compute_dtype_for(inputs.dtype)).bits // 8
        bytes_per_image = self.num_attention_heads * seq_len * num_landmarks * element_size
        return max(1, min(batch_size, ATTENTION_CHUNK_BYTES // bytes_per_image))

    def forward(self, hidden_states: torch.Tensor, height: int, width: int) -> torch.Tensor:
        batch_size, seq_len, _ = hidden_states.shape
        num_heads, head_size = self.num_attention_heads, self.attention_head_size
        query_states = fused_linear(self.query, hidden_states)  # (batch, seq_len, hidden_size), unscaled
        value_states = fused_linear(self.value, hidden_states)  # (batch, seq_len, hidden_size)
        landmarks = self.compute_landmarks(query_states, height, width)  # (batch, heads, m, head_size)
        num_landmarks = landmarks.shape[-2]
        skip, skip_is_own = self.skip_connection(value_states, height, width)  # (batch, seq_len, hidden_size)

        island_dtype = compute_dtype_for(query_states.dtype)
        with autocast_disabled(hidden_states.device.type):
            landmarks = landmarks.to(island_dtype)
            # A = k(Q~, Q~) and its operator W (A^+, or D^-1/2 A^+ D^-1/2): (batch, heads, m, m), depends only on Q~
            operator = self.landmark_operator(gaussian_kernel(landmarks, landmarks))
            # per-head views (batch, heads, seq_len, head_size) of the projections
            query = query_states.to(island_dtype).reshape(batch_size, seq_len, num_heads, head_size).transpose(1, 2)
            value = value_states.to(island_dtype).reshape(batch_size, seq_len, num_heads, head_size).transpose(1, 2)
            # inference adds into the skip branch's buffer, if it is this layer's own
            in_place = skip_is_own and not records_autograd(skip, query)
            contexts = []
            # CPU inference: images in chunks whose K1 stays in the cache (and whose buffers the allocator reuses):
            # one chunk for small maps, one image at a time for large ones. No result depends on the chunking.
            step = self.images_per_chunk(query_states, num_landmarks)
            # a symbolic batch size (torch.export) is one chunk: a Python loop over it would fix the graph's batch size
            chunks = (
                [slice(start, start + step) for start in range(0, max(batch_size, 1), step)]
                if is_concrete_size(batch_size, step)
                else [slice(None)]
            )
            for chunk in chunks:
                # K1 = k(Q / d^(1/4), Q~): (images, heads, seq_len, m), reading Q in place
                query_kernel = gaussian_kernel(query[chunk], landmarks[chunk], query_scale=self.query_scale)
                projected = query_kernel.transpose(-1, -2) @ value[chunk]  # K1^T V: (images, heads, m, head_size)
                mixed = operator[chunk] @ projected  # (images, heads, m, head_size)
                context = query_kernel @ mixed  # (images, heads, seq_len, head_size)
                # heads back to channels: (images, seq_len, heads, head_size)
                context = context.to(skip.dtype).transpose(1, 2)
                if in_place:  # inference: add into the skip branch's buffer
                    skip[chunk].view(-1, seq_len, num_heads, head_size).add_(context)
                else:
                    contexts.append(context)
            if not in_place:
                context = contexts[0] if len(contexts) == 1 else torch.cat(contexts)
                skip = skip.view(batch_size, seq_len, num_heads, head_size) + context
        return fused_linear(self.output, skip.reshape(batch_size, seq_len, self.hidden_size))


def landmark_counts(model: nn.Module, pixel_values: torch.Tensor) -> list[int]:
    """Number of landmarks m each SOFT attention layer of `model` uses on `pixel_values`, read at the landmark
    LayerNorm, whose input is `(batch, heads, m, head_size)` (a no-grad forward pass with temporary hooks)."""
    counts = []
    hooks = [
        module.landmark_norm.register_forward_hook(lambda _module, inputs, _output: counts.append(inputs[0].shape[-2]))
        for module in model.modules()
        if isinstance(module, SoftSelfAttention)
    ]
    try:
        with torch.no_grad():
            model(pixel_values)
    finally:
        for hook in hooks:
            hook.remove()
    return counts


__all__ = [
    "SoftSelfAttention",
    "fused_linear",
    "is_unobserved",
    "is_concrete_size",
    "use_onednn",
    "OneDNNLinearFunction",
    "landmark_counts",
    "SoftNewtonInverse",
    "FastGELUTanh",
    "activation_for",
    "cholesky_inverse_spd",
    "gaussian_kernel",
    "underflow_exponent",
    "landmark_grid",
    "newton_inverse",
    "newton_schulz_inverse",
    "newton_initial_step",
    "resolve_inverse_method",
    "INVERSE_METHODS",
    "AUTO_NEWTON_MAX_LANDMARKS",
]
