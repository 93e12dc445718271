"""Replaced-token-detection loss and metrics in plain PyTorch: the oracle of electra_fast.ops.rtd_loss.

Shapes: logits, labels, attention_mask, weight are all [B, T] (any equal shapes work).
    l_t   = BCE(sigmoid(x_t), y_t) = max(x_t, 0) - x_t y_t + log(1 + exp(-|x_t|))
    loss  = sum_t m_t w_t l_t            (reduction "sum")
          = sum_t m_t w_t l_t / max(sum_t m_t, 1)   ("mean": over real tokens, as ELECTRA; 0 for an all-pad batch)
          = m_t w_t l_t per token         ("none")
    dloss/dx_t = m_t w_t (sigmoid(x_t) - y_t) [/ max(sum m, 1)]
Metrics over real tokens, prediction "replaced" iff x_t > 0: accuracy, precision = TP / max(pred, 1),
recall = TP / max(actual, 1), replaced fraction = actual / max(real, 1).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F

REDUCTIONS = ("none", "sum", "mean")


def _compute_dtype(logits: torch.Tensor) -> torch.dtype:
    return torch.float64 if logits.dtype == torch.float64 else torch.float32


def _scale(logits: torch.Tensor, mask: Optional[torch.Tensor], weight: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    dtype = _compute_dtype(logits)
    scale = None
    if mask is not None:
        scale = (mask != 0).to(dtype)
    if weight is not None:
        scale = weight.to(dtype) if scale is None else scale * weight.to(dtype)
    return scale


def rtd_loss(logits: torch.Tensor, labels: torch.Tensor, attention_mask: Optional[torch.Tensor] = None, *,
             weight: Optional[torch.Tensor] = None, reduction: str = "mean") -> torch.Tensor:
    """The RTD loss through autograd; returns the logits' dtype (computed in fp32, fp64 for fp64)."""
    x = logits.to(_compute_dtype(logits))
    per_token = F.binary_cross_entropy_with_logits(x, labels.to(x.dtype), reduction="none")
    scale = _scale(logits, attention_mask, weight)
    if scale is not None:
        per_token = per_token * scale
    if reduction == "none":
        return per_token.to(logits.dtype)
    total = per_token.sum()
    if reduction == "mean":
        real = attention_mask.ne(0).sum() if attention_mask is not None else torch.tensor(logits.numel())
        total = total / real.clamp(min=1).to(total.dtype)
    return total.to(logits.dtype)


def rtd_loss_and_grad(logits: torch.Tensor, labels: torch.Tensor, attention_mask: Optional[torch.Tensor],
                      weight: Optional[torch.Tensor], reduction: str, compute_grad: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    """(loss, d loss / d logits) without autograd: the reference backend of the custom op."""
    with torch.no_grad():
        loss = rtd_loss(logits, labels, attention_mask, weight=weight, reduction=reduction)
        if not compute_grad:
            return loss, logits.new_empty(0)
        x = logits.to(_compute_dtype(logits))
        grad = torch.sigmoid(x) - labels.to(x.dtype)
        scale = _scale(logits, attention_mask, weight)
        if scale is not None:
            grad = grad * scale
        if reduction == "mean":
            real = attention_mask.ne(0).sum() if attention_mask is not None else torch.tensor(logits.numel())
            grad = grad / real.clamp(min=1).to(grad.dtype)
        return loss, grad.to(logits.dtype)


def rtd_counts(logits: torch.Tensor, labels: torch.Tensor, attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """[4] int64: real tokens, true positives, predicted positives, actual positives."""
    real = attention_mask.ne(0) if attention_mask is not None else torch.ones_like(labels, dtype=torch.bool)
    pred = logits > 0
    actual = labels.ne(0)
    return torch.stack([real.sum(), (real & pred & actual).sum(), (real & pred).sum(), (real & actual).sum()]).to(torch.int64)
