"""Dropout, residual add and LayerNorm in one op: the oracle of electra_fast::dropout_add_layer_norm.

Rows of N (the last dim), R rows; residual of x's shape, w and b [N] of residual's dtype (x's may differ: a
half-precision x with a float32 residual is what autocast gives); c = float32 (float64 when residual is float64):
    s    = round(dropout(c(x)) + c(residual))      dropout: electra_fast.reference.dropout, stream (seed, offset),
                                                    flat index of x; [R,N]
    mean = sum_j c(s_j) / N,   rstd = 1 / sqrt(sum_j (c(s_j) - mean)^2 / N + eps)       [R] in c
    y    = round((c(s) - mean) * rstd * c(w) + c(b))
round() is the one rounding to residual's dtype (torch's dropout(x) + residual rounds twice in half precision); the
statistics are of the rounded s. s, mean and rstd are what the backward keeps.
Backward, with xhat = (c(s) - mean) * rstd and g = c(dy) * c(w):
    ds        = rstd * (g - mean_j(g) - xhat * mean_j(g * xhat))       per row
    dresidual = round(ds),  dx = dropout(ds) rounded to x's dtype   (the same mask, drawn again),
    dw = sum over rows of c(dy) * xhat,  db = sum over rows of c(dy)   (accumulated in c, returned in w's dtype)
"""
from __future__ import annotations

from typing import Tuple

import torch

from .dropout import dropout


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """c of the contract for a residual of `dtype` (also the dtype of mean and rstd)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def dropout_add_layer_norm(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                           eps: float, p: float, seed: int,
                           offset: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(y, s, mean, rstd) of the contract: y and s of x's shape and residual's dtype, mean and rstd
    [x.numel() / N] in c."""
    c = compute_dtype(residual.dtype)
    n = x.shape[-1]
    s = (dropout(x.to(c), p, seed, offset) + residual.to(c)).to(residual.dtype)
    rows = s.reshape(-1, n).to(c)
    mean = rows.mean(dim=1)
    centred = rows - mean[:, None]
    rstd = torch.rsqrt((centred * centred).mean(dim=1) + eps)
    y = centred * rstd[:, None] * weight.to(c) + bias.to(c)
    return y.to(residual.dtype).view(x.shape), s, mean, rstd


def dropout_add_layer_norm_backward(grad: torch.Tensor, s: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor,
                                    weight: torch.Tensor, p: float, seed: int, offset: int,
                                    x_dtype: torch.dtype) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dx, dresidual, dweight, dbias) of the contract for the upstream gradient `grad` of y; dx in x_dtype."""
    c = compute_dtype(s.dtype)
    n = s.shape[-1]
    dy = grad.reshape(-1, n).to(c)
    xhat = (s.reshape(-1, n).to(c) - mean[:, None]) * rstd[:, None]
    g = dy * weight.to(c)
    ds = rstd[:, None] * (g - g.mean(dim=1, keepdim=True) - xhat * (g * xhat).mean(dim=1, keepdim=True))
    ds = ds.view(s.shape)
    dx = dropout(ds, p, seed, offset).to(x_dtype)
    dweight = (dy * xhat).sum(dim=0).to(weight.dtype)
    dbias = dy.sum(dim=0).to(weight.dtype)
    return dx, ds.to(s.dtype), dweight, dbias
