"""electra_fast::dropout_add_layer_norm: LayerNorm(dropout(x) + residual), the residual block's end, in one op.

    dropout_add_layer_norm(x [..., N], residual [..., N], weight [N], bias [N], eps, p, seed, offset)
        -> (y, s, mean, rstd)
    s = dropout(x) + residual,  y = (s - mean(s)) / sqrt(var(s) + eps) * weight + bias   (per row of N)
The dropout mask is electra_fast::dropout's (Philox stream (seed, offset), flat index of x), drawn again in
backward, so of x's size the op keeps only s (torch's dropout + add + layer_norm keeps the mask too). Forward and
backward are one pass each over a row; the backward also sums the weight and bias gradients. Math, rounding and
dtypes (x may be half precision under a float32 residual, as autocast makes it): the reference,
electra_fast/reference/dropout_add_layer_norm.py. There is no double backward.

Kernels: csrc/cpu/dropout_add_layer_norm.cpp, csrc/cuda/dropout_add_layer_norm.cu,
electra_fast/triton/dropout_add_layer_norm.py; the eager path of the cpp and cuda backends, a C++ autograd node:
csrc/autograd/dropout_add_layer_norm.cpp. Tests: tests/ops/test_dropout_add_layer_norm.py. Benchmark:
benchmarks/bench_dropout_add_layer_norm.py.
"""
from __future__ import annotations

import numbers
from typing import Optional, Tuple

import torch

from .._validation import check_same_device, check_same_shape, check_seed, check_tensor
from ..reference import dropout_add_layer_norm as reference
from . import _dispatch as dispatch

_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)

DROPOUT_ADD_LAYER_NORM = dispatch.Op(
    "dropout_add_layer_norm",
    kernel="dropout_add_layer_norm(Tensor x, Tensor residual, Tensor weight, Tensor bias, float eps, float p, "
           "int seed, int offset) -> (Tensor, Tensor, Tensor, Tensor)",
    triton="dropout_add_layer_norm.dropout_add_layer_norm",
    reference=reference.dropout_add_layer_norm,
    reference_dtypes=(torch.float64,),
    kernel_autograd="dropout_add_layer_norm_autograd",
)

DROPOUT_ADD_LAYER_NORM_BACKWARD = dispatch.Op(
    "dropout_add_layer_norm_backward",
    kernel="dropout_add_layer_norm_backward(Tensor grad, Tensor s, Tensor mean, Tensor rstd, Tensor weight, "
           "float p, int seed, int offset, ScalarType x_dtype) -> (Tensor, Tensor, Tensor, Tensor)",
    triton="dropout_add_layer_norm.dropout_add_layer_norm_backward",
    reference=reference.dropout_add_layer_norm_backward,
    reference_dtypes=(torch.float64,),
)

Four = Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


@torch.library.custom_op("electra_fast::dropout_add_layer_norm", mutates_args=())
def dropout_add_layer_norm_op(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                              eps: float, p: float, seed: int, offset: int) -> Four:
    """(y, s, mean, rstd); every tensor contiguous, weight and bias of residual's dtype."""
    return dispatch.run(DROPOUT_ADD_LAYER_NORM, residual.device, residual.dtype, x, residual, weight, bias, eps, p,
                        seed, offset)


@dropout_add_layer_norm_op.register_fake
def _(x, residual, weight, bias, eps, p, seed, offset):
    rows = x.numel() // x.shape[-1]
    stats = residual.new_empty(rows, dtype=reference.compute_dtype(residual.dtype))
    return torch.empty_like(residual), torch.empty_like(residual), stats, torch.empty_like(stats)


@torch.library.custom_op("electra_fast::dropout_add_layer_norm_backward", mutates_args=())
def dropout_add_layer_norm_backward_op(grad: torch.Tensor, s: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor,
                                       weight: torch.Tensor, p: float, seed: int, offset: int,
                                       x_dtype: torch.dtype) -> Four:
    """(dx in x_dtype, dresidual, dweight, dbias) for the upstream gradient of y; every tensor contiguous."""
    return dispatch.run(DROPOUT_ADD_LAYER_NORM_BACKWARD, s.device, s.dtype, grad, s, mean, rstd, weight, p, seed,
                        offset, x_dtype)


@dropout_add_layer_norm_backward_op.register_fake
def _(grad, s, mean, rstd, weight, p, seed, offset, x_dtype):
    return (torch.empty_like(s, dtype=x_dtype), torch.empty_like(s), torch.empty_like(weight),
            torch.empty_like(weight))


def _setup_context(ctx, inputs, output):
    x, _, weight, _, _, ctx.p, ctx.seed, ctx.offset = inputs
    _, s, mean, rstd = output
    ctx.x_dtype = x.dtype
    ctx.save_for_backward(s, mean, rstd, weight)
    ctx.mark_non_differentiable(s, mean, rstd)
    ctx.set_materialize_grads(False)


def _backward(ctx, grad, *_):
    """The kernels' backward of y; s, mean and rstd have no gradient. There is no second derivative: an eager
    backward with create_graph=True raises (torch.compile traces every backward in grad mode, so the check is
    for eager only)."""
    if torch.is_grad_enabled() and dispatch.plain_eager(()):
        raise RuntimeError("electra_fast dropout_add_layer_norm supports one backward only; for a double backward "
                           "(create_graph=True) use electra_fast.reference.dropout_add_layer_norm")
    if grad is None:
        return (None,) * 8
    s, mean, rstd, weight = ctx.saved_tensors
    dx, dresidual, dweight, dbias = dropout_add_layer_norm_backward_op(grad.contiguous(), s, mean, rstd, weight, ctx.p,
                                                                       ctx.seed, ctx.offset, ctx.x_dtype)
    return dx, dresidual, dweight, dbias, None, None, None, None


dropout_add_layer_norm_op.register_autograd(_backward, setup_context=_setup_context)


def dropout_add_layer_norm(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                           p: float = 0.1, *, eps: float = 1e-5, seed: Optional[int] = None, offset: int = 0,
                           training: bool = True) -> torch.Tensor:
    """LayerNorm(dropout(x) + residual) over the last dim: the end of a post-LN residual block, fused.
    Differentiable in x, residual, weight and bias (once).

    Args:
        x: [..., N] float32/float16/bfloat16 (float64 runs on the reference), the block's output.
        residual: x's shape, the block's input; its dtype is the output's (x may be of lower precision,
            as autocast makes it). Both float64 or neither.
        weight, bias: [N] of residual's dtype, LayerNorm's affine parameters.
        p: the probability of dropping an element of x, in [0, 1].
        eps: LayerNorm's epsilon, >= 0.
        seed, offset: the Philox stream of the mask (as electra_fast.functional.dropout), ints in [0, 2^63); a new
            one per call. Needed only when training with p > 0.
        training: False (or p = 0) adds x without dropout.
    Returns:
        y of x's shape and residual's dtype.
    """
    check_tensor(x, "x", dtypes=_DTYPES)
    check_tensor(residual, "residual", dtypes=_DTYPES)
    check_same_shape(residual, "residual", x, "x")
    check_same_device(residual, "residual", x, "x")
    if x.dim() == 0 or x.shape[-1] == 0:
        raise ValueError(f"x must have a non-empty last dimension (the normalized one), got shape {tuple(x.shape)}")
    if (x.dtype == torch.float64) != (residual.dtype == torch.float64):
        raise TypeError(f"x and residual must both be float64 or neither, got {x.dtype} and {residual.dtype}")
    n = x.shape[-1]
    for name, t in (("weight", weight), ("bias", bias)):
        check_tensor(t, name, dtypes=(residual.dtype,), dim=1)
        if t.shape[0] != n:
            raise ValueError(f"{name} must have shape [{n}] (x's last dimension), got {tuple(t.shape)}")
        check_same_device(t, name, x, "x")
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be a float in [0, 1], got {p!r}")
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not eps >= 0.0:
        raise ValueError(f"eps must be a float >= 0, got {eps!r}")
    if not training:
        p = 0.0
    if p == 0.0:
        seed, offset = 0, 0
    elif seed is None:
        raise ValueError("seed is required when training with p > 0 (the Philox stream of the dropout mask)")
    check_seed(seed, offset)
    y, _, _, _ = dispatch.call(DROPOUT_ADD_LAYER_NORM, dropout_add_layer_norm_op, x.contiguous(),
                               residual.contiguous(), weight.contiguous(), bias.contiguous(), float(eps), float(p),
                               seed, offset)
    return y
