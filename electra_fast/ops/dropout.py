"""electra_fast::dropout: dropout whose mask is drawn from the shared Philox stream, not stored.

    dropout(x [any shape], p, seed, offset) -> y [x's shape]
    y_i = x_i / (1 - p) if uniform_i >= p else 0, uniform_i from word i mod 4 of counter i // 4 in stream
    (seed, offset) of electra_fast.random (the contract, with its float32 rounding: electra_fast/reference/dropout.py)
The backward is the same op on the upstream gradient: the mask is drawn again, so nothing of x's size is kept
for it (torch's dropout keeps a mask: a float32 per element on CPU, a byte on CUDA). Every backend draws the same mask bit for bit.

Kernels: csrc/cpu/dropout.cpp (16 counters per SIMD step, csrc/cpu/philox_simd.h), csrc/cuda/dropout.cu,
electra_fast/triton/dropout.py; the eager path of the cpp and cuda backends, a C++ autograd node:
csrc/autograd/dropout.cpp. Tests: tests/ops/test_dropout.py. Benchmark: benchmarks/bench_dropout.py.
"""
from __future__ import annotations

import numbers

import torch

from .._validation import check_seed, check_tensor
from ..reference import dropout as reference
from . import _dispatch as dispatch

_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)

DROPOUT = dispatch.Op(
    "dropout",
    kernel="dropout(Tensor x, float p, int seed, int offset) -> Tensor",
    triton="dropout.dropout",
    reference=reference.dropout,
    reference_dtypes=(torch.float64,),
    kernel_autograd="dropout_autograd",
)


@torch.library.custom_op("electra_fast::dropout", mutates_args=())
def dropout_op(x: torch.Tensor, p: float, seed: int, offset: int) -> torch.Tensor:
    """x (contiguous) with the stream's mask and scale applied."""
    return dispatch.run(DROPOUT, x.device, x.dtype, x, p, seed, offset)


@dropout_op.register_fake
def _(x, p, seed, offset):
    return torch.empty_like(x)


def _setup_context(ctx, inputs, output):
    _, ctx.p, ctx.seed, ctx.offset = inputs


def _backward(ctx, grad):
    return dropout_op(grad.contiguous(), ctx.p, ctx.seed, ctx.offset), None, None, None


dropout_op.register_autograd(_backward, setup_context=_setup_context)


def dropout(x: torch.Tensor, p: float = 0.1, *, seed: int, offset: int = 0, training: bool = True) -> torch.Tensor:
    """Dropout with the mask of stream (seed, offset): the same (seed, offset) gives the same mask on every
    backend and device. Differentiable in x.

    Args:
        x: any shape, float32/float16/bfloat16 (float64 runs on the reference).
        p: the probability of dropping an element, in [0, 1].
        seed, offset: the Philox stream, ints in [0, 2^63); use a new one per call.
        training: False (or p = 0) returns x itself.
    Returns:
        y of x's shape and dtype (x * 1/(1-p) where kept, 0 where dropped; all 0 for p = 1).
    """
    check_tensor(x, "x", dtypes=_DTYPES)
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be a float in [0, 1], got {p!r}")
    check_seed(seed, offset)
    if not training or p == 0.0:
        return x
    return dispatch.call(DROPOUT, dropout_op, x.contiguous(), float(p), seed, offset)
