"""Triton kernels of dropout_add_layer_norm (contract: electra_fast/reference/dropout_add_layer_norm.py).

Forward: one program per row, the whole row in registers (BLOCK = N rounded up to a power of two); each element
takes word i mod 4 of its counter i // 4. Backward: a program per ROWS rows, which also sums their weight and
bias gradients into its row of the [programs, 2, N] float32 partials, summed afterwards.
"""
from typing import Tuple

import torch
import triton
import triton.language as tl

from .random import RANDOM_STREAM, philox_words, word_to_uniform
from ..reference.dropout import dropout_scale

_ROWS = 16  # rows per backward program
_MAX_N = 65536  # the largest row kept in registers


@triton.jit
def _dropped(v, i, p, scale, seed, offset, DROP: tl.constexpr):
    """v * scale where element i is kept, else 0 (v where nothing is dropped)."""
    if DROP:
        w0, w1, w2, w3 = philox_words(seed, offset, i // 4)
        k = i % 4
        word = tl.where(k == 0, w0, tl.where(k == 1, w1, tl.where(k == 2, w2, w3)))
        v = tl.where(word_to_uniform(word) >= p, v * scale, 0.0)
    return v


@triton.jit(do_not_specialize=RANDOM_STREAM)
def _forward_kernel(x_ptr, r_ptr, w_ptr, b_ptr, y_ptr, s_ptr, mean_ptr, rstd_ptr, n, eps, p, scale, seed, offset,
                    DROP: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    j = tl.arange(0, BLOCK)
    inb = j < n
    i = row * n + j
    x = _dropped(tl.load(x_ptr + i, mask=inb, other=0.0).to(tl.float32), i, p, scale, seed, offset, DROP)
    s = (x + tl.load(r_ptr + i, mask=inb, other=0.0).to(tl.float32)).to(s_ptr.dtype.element_ty)
    tl.store(s_ptr + i, s, mask=inb)
    s = s.to(tl.float32)
    mean = tl.sum(tl.where(inb, s, 0.0), 0) / n
    d = tl.where(inb, s - mean, 0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(d * d, 0) / n + eps)
    w = tl.load(w_ptr + j, mask=inb, other=0.0).to(tl.float32)
    b = tl.load(b_ptr + j, mask=inb, other=0.0).to(tl.float32)
    tl.store(y_ptr + i, (d * rstd * w + b).to(y_ptr.dtype.element_ty), mask=inb)
    tl.store(mean_ptr + row, mean)
    tl.store(rstd_ptr + row, rstd)


@triton.jit(do_not_specialize=RANDOM_STREAM)
def _backward_kernel(g_ptr, s_ptr, mean_ptr, rstd_ptr, w_ptr, dx_ptr, dr_ptr, partials_ptr, rows, n, p, scale, seed,
                     offset, DROP: tl.constexpr, ROWS: tl.constexpr, BLOCK: tl.constexpr):
    program = tl.program_id(0).to(tl.int64)
    j = tl.arange(0, BLOCK)
    inb = j < n
    w = tl.load(w_ptr + j, mask=inb, other=0.0).to(tl.float32)
    dw = tl.zeros([BLOCK], dtype=tl.float32)
    db = tl.zeros([BLOCK], dtype=tl.float32)
    for r in range(0, ROWS):
        row = program * ROWS + r
        live = row < rows
        m = inb & live
        i = row * n + j
        dy = tl.load(g_ptr + i, mask=m, other=0.0).to(tl.float32)
        s = tl.load(s_ptr + i, mask=m, other=0.0).to(tl.float32)
        mean = tl.load(mean_ptr + row, mask=live, other=0.0)
        rstd = tl.load(rstd_ptr + row, mask=live, other=0.0)
        xhat = tl.where(m, (s - mean) * rstd, 0.0)
        g = dy * w
        g_mean = tl.sum(g, 0) / n
        gx_mean = tl.sum(g * xhat, 0) / n
        ds = (g - g_mean - xhat * gx_mean) * rstd
        tl.store(dr_ptr + i, ds.to(dr_ptr.dtype.element_ty), mask=m)
        tl.store(dx_ptr + i, _dropped(ds, i, p, scale, seed, offset, DROP).to(dx_ptr.dtype.element_ty), mask=m)
        dw += dy * xhat
        db += dy
    tl.store(partials_ptr + program * 2 * n + j, dw, mask=inb)
    tl.store(partials_ptr + program * 2 * n + n + j, db, mask=inb)


def _block(n: int) -> int:
    if n > _MAX_N:
        raise ValueError(f"the Triton dropout_add_layer_norm keeps a row in registers: rows of at most {_MAX_N} "
                         f"elements, got {n}")
    return triton.next_power_of_2(n)


def dropout_add_layer_norm(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                           eps: float, p: float, seed: int, offset: int
                           ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(y, s, mean, rstd) for contiguous inputs; p, eps and the scale reach the kernel as float32."""
    n = x.shape[-1]
    rows = x.numel() // n
    y, s = torch.empty_like(residual), torch.empty_like(residual)
    mean = torch.empty(rows, dtype=torch.float32, device=x.device)
    rstd = torch.empty_like(mean)
    if rows:
        _forward_kernel[(rows,)](x, residual, weight, bias, y, s, mean, rstd, n, eps, p, dropout_scale(p), seed,
                                 offset, DROP=p > 0.0, BLOCK=_block(n))
    return y, s, mean, rstd


def dropout_add_layer_norm_backward(grad: torch.Tensor, s: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor,
                                    weight: torch.Tensor, p: float, seed: int, offset: int, x_dtype: torch.dtype
                                    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dx in x_dtype, dresidual, dweight, dbias) for contiguous inputs."""
    n = s.shape[-1]
    rows = s.numel() // n
    dx = torch.empty(s.shape, dtype=x_dtype, device=s.device)
    dresidual = torch.empty_like(s)
    programs = max(1, triton.cdiv(rows, _ROWS))
    partials = torch.zeros(programs, 2, n, dtype=torch.float32, device=s.device)
    if rows:
        _backward_kernel[(programs,)](grad, s, mean, rstd, weight, dx, dresidual, partials, rows, n, p,
                                      dropout_scale(p), seed, offset, DROP=p > 0.0, ROWS=_ROWS, BLOCK=_block(n))
    return dx, dresidual, partials[:, 0].sum(0).to(weight.dtype), partials[:, 1].sum(0).to(weight.dtype)


def _aot(x: str, r: str, block: int):
    forward = {"x_ptr": f"*{x}", "r_ptr": f"*{r}", "w_ptr": f"*{r}", "b_ptr": f"*{r}", "y_ptr": f"*{r}",
               "s_ptr": f"*{r}", "mean_ptr": "*fp32", "rstd_ptr": "*fp32", "n": "i64", "eps": "fp32", "p": "fp32",
               "scale": "fp32", "seed": "i64", "offset": "i64", "DROP": "constexpr", "BLOCK": "constexpr"}
    backward = {"g_ptr": f"*{r}", "s_ptr": f"*{r}", "mean_ptr": "*fp32", "rstd_ptr": "*fp32", "w_ptr": f"*{r}",
                "dx_ptr": f"*{x}", "dr_ptr": f"*{r}", "partials_ptr": "*fp32", "rows": "i64", "n": "i64",
                "p": "fp32", "scale": "fp32", "seed": "i64", "offset": "i64", "DROP": "constexpr",
                "ROWS": "constexpr", "BLOCK": "constexpr"}
    return [(_forward_kernel, forward, {"DROP": True, "BLOCK": block}),
            (_backward_kernel, backward, {"DROP": True, "ROWS": _ROWS, "BLOCK": block})]


# the ELECTRA hidden sizes' blocks, with the dtype pairs of plain and autocast training
AOT_KERNELS = (_aot("fp32", "fp32", 256) + _aot("bf16", "bf16", 1024) + _aot("fp16", "fp32", 1024)
               + _aot("bf16", "fp32", 256))
