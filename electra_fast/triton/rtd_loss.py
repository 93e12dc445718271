"""Triton kernels of the RTD loss: fused per-token loss (+ gradient) with per-block partial sums, and
the confusion counts of the metrics. Math twin of csrc/include/electra_fast/bce.h.

Partial sums are written per block of BLOCK tokens and added by torch afterwards: with a fixed BLOCK
the result is deterministic, and no atomics or host synchronisation are needed.
"""
from typing import Optional, Tuple

import torch
import triton
import triton.language as tl

BLOCK = 1024


@triton.jit
def _rtd_loss_fwd_kernel(x_ptr, y_ptr, m_ptr, w_ptr, inv_denom_ptr, loss_ptr, grad_ptr, partial_ptr, n,
                         HAS_MASK: tl.constexpr, HAS_WEIGHT: tl.constexpr, WRITE_LOSS: tl.constexpr,
                         WRITE_GRAD: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    offs = pid * BLOCK + tl.arange(0, BLOCK).to(tl.int64)
    keep = offs < n
    x = tl.load(x_ptr + offs, mask=keep, other=0.0).to(tl.float32)
    y = tl.load(y_ptr + offs, mask=keep, other=0).to(tl.float32)
    scale = keep.to(tl.float32)
    if HAS_MASK:
        scale = scale * (tl.load(m_ptr + offs, mask=keep, other=0) != 0).to(tl.float32)
    if HAS_WEIGHT:
        scale = scale * tl.load(w_ptr + offs, mask=keep, other=0.0)
    e = tl.exp(-tl.abs(x))
    loss = scale * (tl.maximum(x, 0.0) - x * y + tl.log(1.0 + e))
    if WRITE_LOSS:
        tl.store(loss_ptr + offs, loss.to(loss_ptr.dtype.element_ty), mask=keep)
    if WRITE_GRAD:
        inv = 1.0 / (1.0 + e)
        sig = tl.where(x >= 0, inv, e * inv)
        grad = scale * tl.load(inv_denom_ptr) * (sig - y)
        tl.store(grad_ptr + offs, grad.to(grad_ptr.dtype.element_ty), mask=keep)
    tl.store(partial_ptr + pid, tl.sum(loss, axis=0))


@triton.jit
def _rtd_counts_kernel(x_ptr, y_ptr, m_ptr, partial_ptr, n, HAS_MASK: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    offs = pid * BLOCK + tl.arange(0, BLOCK).to(tl.int64)
    keep = offs < n
    real = keep
    if HAS_MASK:
        real = real & (tl.load(m_ptr + offs, mask=keep, other=0) != 0)
    pred = tl.load(x_ptr + offs, mask=keep, other=0.0).to(tl.float32) > 0
    actual = tl.load(y_ptr + offs, mask=keep, other=0) != 0
    tl.store(partial_ptr + 4 * pid + 0, tl.sum(real.to(tl.int32), axis=0))
    tl.store(partial_ptr + 4 * pid + 1, tl.sum((real & pred & actual).to(tl.int32), axis=0))
    tl.store(partial_ptr + 4 * pid + 2, tl.sum((real & pred).to(tl.int32), axis=0))
    tl.store(partial_ptr + 4 * pid + 3, tl.sum((real & actual).to(tl.int32), axis=0))


def rtd_loss_fwd(logits: torch.Tensor, labels: torch.Tensor, mask: Optional[torch.Tensor],
                 weight: Optional[torch.Tensor], reduction: int, compute_grad: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    """Same contract as the raw C++ op electra_fast_C::rtd_loss_fwd (uint8 labels/mask, fp32 weight)."""
    n = logits.numel()
    blocks = max(triton.cdiv(n, BLOCK), 1)
    if reduction == 2:
        real = mask.ne(0).sum() if mask is not None else torch.tensor(n, device=logits.device)
        denom = real.clamp(min=1).to(torch.float32)
    else:
        denom = torch.ones((), dtype=torch.float32, device=logits.device)
    inv_denom = 1.0 / denom
    loss_none = torch.empty_like(logits) if reduction == 0 else logits.new_empty(0)
    grad = torch.empty_like(logits) if compute_grad else logits.new_empty(0)
    partial = torch.zeros(blocks, dtype=torch.float32, device=logits.device)
    if n:
        _rtd_loss_fwd_kernel[(blocks,)](
            logits, labels, mask if mask is not None else labels, weight if weight is not None else inv_denom,
            inv_denom, loss_none, grad, partial, n,
            HAS_MASK=mask is not None, HAS_WEIGHT=weight is not None, WRITE_LOSS=reduction == 0,
            WRITE_GRAD=compute_grad, BLOCK=BLOCK,
        )
    loss = loss_none if reduction == 0 else (partial.sum() / denom).to(logits.dtype)
    return loss, grad


def rtd_counts(logits: torch.Tensor, labels: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    n = logits.numel()
    blocks = max(triton.cdiv(n, BLOCK), 1)
    partial = torch.zeros(blocks, 4, dtype=torch.int32, device=logits.device)
    if n:
        _rtd_counts_kernel[(blocks,)](logits, labels, mask if mask is not None else labels, partial, n,
                                      HAS_MASK=mask is not None, BLOCK=BLOCK)
    return partial.sum(0, dtype=torch.int64)


def _aot(dtype: str, has_mask: bool, has_weight: bool, write_loss: bool):
    sig = {"x_ptr": f"*{dtype}", "y_ptr": "*u8", "m_ptr": "*u8", "w_ptr": "*fp32", "inv_denom_ptr": "*fp32",
           "loss_ptr": f"*{dtype}", "grad_ptr": f"*{dtype}", "partial_ptr": "*fp32", "n": "i64",
           "HAS_MASK": "constexpr", "HAS_WEIGHT": "constexpr", "WRITE_LOSS": "constexpr", "WRITE_GRAD": "constexpr",
           "BLOCK": "constexpr"}
    const = {"HAS_MASK": has_mask, "HAS_WEIGHT": has_weight, "WRITE_LOSS": write_loss, "WRITE_GRAD": True,
             "BLOCK": BLOCK}
    return (_rtd_loss_fwd_kernel, sig, const)


AOT_KERNELS = [
    _aot("fp32", True, True, True),
    _aot("fp16", True, False, False),
    _aot("bf16", False, False, True),
    (_rtd_counts_kernel, {"x_ptr": "*bf16", "y_ptr": "*u8", "m_ptr": "*u8", "partial_ptr": "*i32", "n": "i64",
                          "HAS_MASK": "constexpr", "BLOCK": "constexpr"}, {"HAS_MASK": True, "BLOCK": BLOCK}),
]
