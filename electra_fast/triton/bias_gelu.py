"""Triton kernels of bias_gelu (contract: electra_fast/reference/bias_gelu.py): one program per tile of
BLOCK_M rows x BLOCK_N columns. The forward writes gelu(x + bias); the backward writes dx and the tile's column sums
of dx in float32 to partials[row block, column], which torch sums over the row blocks for dbias (a fixed tiling:
deterministic, no atomics). erf is libdevice's (tl.math.erf), within 2 ulp."""
from typing import Tuple

import torch
import triton
import triton.language as tl

BLOCK_M = 32
BLOCK_N = 128
_SQRT_HALF = tl.constexpr(0.7071067811865476)
_INV_SQRT_2PI = tl.constexpr(0.3989422804014327)


@triton.jit
def _tile(m, n, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """Flat offsets of this program's tile, its mask, and its columns."""
    rows = tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M).to(tl.int64)
    cols = tl.program_id(1).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N).to(tl.int64)
    inb = (rows[:, None] < m) & (cols[None, :] < n)
    return rows[:, None] * n + cols[None, :], inb, cols


@triton.jit
def _bias_gelu_kernel(x_ptr, b_ptr, y_ptr, m, n, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    offs, inb, cols = _tile(m, n, BLOCK_M, BLOCK_N)
    b = tl.load(b_ptr + cols, mask=cols < n, other=0.0).to(tl.float32)
    z = tl.load(x_ptr + offs, mask=inb, other=0.0).to(tl.float32) + b[None, :]
    y = z * 0.5 * (1.0 + tl.math.erf(z * _SQRT_HALF))
    tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty), mask=inb)


@triton.jit
def _bias_gelu_backward_kernel(g_ptr, x_ptr, b_ptr, dx_ptr, partial_ptr, m, n, BLOCK_M: tl.constexpr,
                               BLOCK_N: tl.constexpr):
    offs, inb, cols = _tile(m, n, BLOCK_M, BLOCK_N)
    b = tl.load(b_ptr + cols, mask=cols < n, other=0.0).to(tl.float32)
    z = tl.load(x_ptr + offs, mask=inb, other=0.0).to(tl.float32) + b[None, :]
    g = tl.load(g_ptr + offs, mask=inb, other=0.0).to(tl.float32)
    cdf = 0.5 * (1.0 + tl.math.erf(z * _SQRT_HALF))
    dx = g * (cdf + z * tl.exp(-0.5 * z * z) * _INV_SQRT_2PI)
    tl.store(dx_ptr + offs, dx.to(dx_ptr.dtype.element_ty), mask=inb)
    column_sums = tl.sum(tl.where(inb, dx, 0.0), axis=0)
    tl.store(partial_ptr + tl.program_id(0).to(tl.int64) * n + cols, column_sums, mask=cols < n)


def _grid(m: int, n: int):
    return (triton.cdiv(m, BLOCK_M), triton.cdiv(n, BLOCK_N))


def bias_gelu(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """gelu(x + bias); x [..., N] and bias [N] contiguous, of one dtype."""
    y = torch.empty_like(x)
    n = x.shape[-1]
    m = x.numel() // n if n else 0
    if m and n:
        _bias_gelu_kernel[_grid(m, n)](x, bias, y, m, n, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N)
    return y


def bias_gelu_backward(grad: torch.Tensor, x: torch.Tensor, bias: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """(dx, dbias) for the upstream gradient `grad` (contiguous, of x's shape and dtype)."""
    dx = torch.empty_like(x)
    n = x.shape[-1]
    m = x.numel() // n if n else 0
    partials = torch.empty(triton.cdiv(m, BLOCK_M), n, device=x.device, dtype=torch.float32)
    if m and n:
        _bias_gelu_backward_kernel[_grid(m, n)](grad, x, bias, dx, partials, m, n, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N)
    return dx, partials.sum(0).to(bias.dtype)


def _aot_forward(dtype: str):
    sig = {"x_ptr": f"*{dtype}", "b_ptr": f"*{dtype}", "y_ptr": f"*{dtype}", "m": "i32", "n": "i32",
           "BLOCK_M": "constexpr", "BLOCK_N": "constexpr"}
    return (_bias_gelu_kernel, sig, {"BLOCK_M": BLOCK_M, "BLOCK_N": BLOCK_N})


def _aot_backward(dtype: str):
    sig = {"g_ptr": f"*{dtype}", "x_ptr": f"*{dtype}", "b_ptr": f"*{dtype}", "dx_ptr": f"*{dtype}",
           "partial_ptr": "*fp32", "m": "i32", "n": "i32", "BLOCK_M": "constexpr", "BLOCK_N": "constexpr"}
    return (_bias_gelu_backward_kernel, sig, {"BLOCK_M": BLOCK_M, "BLOCK_N": BLOCK_N})


AOT_KERNELS = [make(dtype) for make in (_aot_forward, _aot_backward) for dtype in ("fp32", "bf16", "fp16")]
