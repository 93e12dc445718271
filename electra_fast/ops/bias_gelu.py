"""electra_fast::bias_gelu: the exact (erf) GELU of x plus a bias, fused, with a fused backward.

    bias_gelu(x [..., N], bias [N]) -> y [..., N],   y = gelu(x + bias),  gelu(z) = z (1 + erf(z / sqrt 2)) / 2
    backward(dy): dx = dy gelu'(z),  gelu'(z) = Phi(z) + z phi(z),  dbias = dx summed over the leading dims
(oracle: electra_fast/reference/bias_gelu.py). For an FFN, bias_gelu(F.linear(a, W1), b1) replaces
F.gelu(F.linear(a, W1, b1)): the bias is added where the GELU reads its input (on CPU, addmm first copies the
broadcast bias into its whole output), and the backward writes dx and sums dbias in the same pass (against
gelu_backward plus a separate sum). Only x and bias are kept for the backward, z is recomputed: the memory of
torch's gelu, which keeps z. Half inputs compute in float32 and round once; dbias is accumulated in float32 and
returned in bias's dtype; float64 runs on the reference. There is no double backward: differentiating the
gradient (after a backward with create_graph=True) raises, on every backend.

Kernels: csrc/cpu/bias_gelu.cpp, csrc/cuda/bias_gelu.cu (math and its erf error bound in
csrc/include/electra_fast/gelu.h), electra_fast/triton/bias_gelu.py; the eager path of the cpp and cuda
backends, a C++ autograd node: csrc/autograd/bias_gelu.cpp. Tests: tests/ops/test_bias_gelu.py. Benchmark:
benchmarks/bench_bias_gelu.py.
"""
from __future__ import annotations

from typing import Tuple

import torch

from .._validation import check_same_device, check_tensor
from ..reference import bias_gelu as reference
from . import _dispatch as dispatch

_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
_NO_DOUBLE_BACKWARD = ("electra_fast bias_gelu supports one backward only: its gradient has no gradient (double "
                       "backward); for a second derivative use electra_fast.reference.bias_gelu")

BIAS_GELU = dispatch.Op(
    "bias_gelu",
    kernel="bias_gelu(Tensor x, Tensor bias) -> Tensor",
    triton="bias_gelu.bias_gelu",
    reference=reference.bias_gelu,
    reference_dtypes=(torch.float64,),
    kernel_autograd="bias_gelu_autograd",
)

BIAS_GELU_BACKWARD = dispatch.Op(
    "bias_gelu_backward",
    kernel="bias_gelu_backward(Tensor grad, Tensor x, Tensor bias) -> (Tensor, Tensor)",
    triton="bias_gelu.bias_gelu_backward",
    reference=reference.bias_gelu_backward,
    reference_dtypes=(torch.float64,),
)


@torch.library.custom_op("electra_fast::bias_gelu", mutates_args=())
def bias_gelu_op(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """gelu(x + bias); x [..., N] and bias [N] contiguous, of one dtype."""
    return dispatch.run(BIAS_GELU, x.device, x.dtype, x, bias)


@bias_gelu_op.register_fake
def _(x, bias):
    return torch.empty_like(x)


@torch.library.custom_op("electra_fast::bias_gelu_backward", mutates_args=())
def bias_gelu_backward_op(grad: torch.Tensor, x: torch.Tensor, bias: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """(dx, dbias) of bias_gelu for the upstream gradient `grad` (contiguous, of x's shape and dtype)."""
    return dispatch.run(BIAS_GELU_BACKWARD, x.device, x.dtype, grad, x, bias)


@bias_gelu_backward_op.register_fake
def _(grad, x, bias):
    return torch.empty_like(x), torch.empty_like(bias)


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _backward(ctx, grad):
    x, bias = ctx.saved_tensors
    return bias_gelu_backward_op(grad.contiguous(), x, bias)


def _no_double_backward(ctx, grad_dx, grad_dbias):
    raise RuntimeError(_NO_DOUBLE_BACKWARD)


bias_gelu_op.register_autograd(_backward, setup_context=_setup_context)
bias_gelu_backward_op.register_autograd(_no_double_backward)


def bias_gelu(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """gelu(x + bias) with the exact (erf) GELU, bias broadcast over x's last dimension, in one pass each way.
    Differentiable in x and bias, once (no double backward).

    Args:
        x: [..., N], float32/float16/bfloat16 (float64 runs on the reference), at least 1-D.
        bias: [N], of x's dtype and device.
    Returns:
        y of x's shape and dtype.
    """
    check_tensor(x, "x", dtypes=_DTYPES)
    check_tensor(bias, "bias", dtypes=_DTYPES)
    if x.dim() == 0:
        raise ValueError("x must have at least one dimension [..., N], got a 0-d tensor")
    if bias.dim() != 1 or bias.shape[0] != x.shape[-1]:
        raise ValueError(f"bias must be 1-D of size x.shape[-1] = {x.shape[-1]}, got shape {tuple(bias.shape)}")
    if bias.dtype != x.dtype:
        raise TypeError(f"bias must have x's dtype {str(x.dtype).replace('torch.', '')}, "
                        f"got {str(bias.dtype).replace('torch.', '')}")
    check_same_device(bias, "bias", x, "x")
    return dispatch.call(BIAS_GELU, bias_gelu_op, x.contiguous(), bias.contiguous())
