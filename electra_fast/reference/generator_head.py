"""The generator head in plain PyTorch, with the full [M, V] logits: the oracle of
electra_fast.ops.generator_head.

Shapes: hidden [M, E], weight [V, E] (the tied word embedding), bias [V] or None, targets [M] int64.
    x      = hidden @ weight.T + bias                           [M, V], in fp32 (fp64 for fp64 inputs)
    l_m    = logsumexp(x_m) - x_m[t_m]                           0 where t_m == ignore_index
    loss   = l ("none"), sum_m l_m ("sum"), sum_m l_m / max(#kept rows, 1) ("mean"; 0 if all ignored)
    dx_m   = s_m (softmax(x_m) - onehot(t_m))                   s_m: the row's gradient scale
    grad_hidden = dx @ weight,  grad_weight = dx.T @ hidden,  grad_bias = sum_m dx_m
    samples[m] = inverse_cdf_sample(x_m, u_m, T), u = electra_fast.random.uniform(M, seed, offset)
(samples: electra_fast/reference/sampling.py, the contract shared with sample_replace).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from . import random as _random
from .sampling import inverse_cdf_sample

REDUCTIONS = ("none", "sum", "mean")


def compute_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def logits(hidden: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    dtype = compute_dtype(hidden)
    b = None if bias is None else bias.to(dtype)
    return F.linear(hidden.to(dtype), weight.to(dtype), b)


def samples(x: torch.Tensor, temperature: float, seed: int, offset: int) -> torch.Tensor:
    u = _random.uniform(x.shape[0], seed=seed, offset=offset, device=x.device)
    return inverse_cdf_sample(x.float(), u, temperature)


def kept_rows(targets: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """0-dim count of rows whose target is not ignore_index, clamped to >= 1 (the mean's denominator)."""
    return targets.ne(ignore_index).sum().clamp(min=1)


def generator_head(hidden: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], targets: torch.Tensor, *,
                   temperature: float = 1.0, seed: int, offset: int = 0, reduction: str = "mean",
                   ignore_index: int = -100) -> Tuple[torch.Tensor, torch.Tensor]:
    """(loss, samples) through autograd on the full logits; the loss in hidden's dtype."""
    x = logits(hidden, weight, bias)
    per_row = F.cross_entropy(x, targets, ignore_index=ignore_index, reduction="none")
    if reduction == "none":
        loss = per_row
    else:
        loss = per_row.sum()
        if reduction == "mean":
            loss = loss / kept_rows(targets, ignore_index).to(loss.dtype)
    with torch.no_grad():
        ids = samples(x.detach(), temperature, seed, offset)
    return loss.to(hidden.dtype), ids


def rows_and_grads(hidden: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], targets: torch.Tensor,
                   grad_scale: torch.Tensor, temperature: float, seed: int, offset: int, ignore_index: int,
                   grads: Tuple[bool, bool, bool], sample: bool):
    """Without autograd, what a backend returns: (loss per row [M], samples [M], grad_hidden,
    grad_weight, grad_bias), the gradients for row scales grad_scale ([1] or [M]), None where not asked."""
    with torch.no_grad():
        x = logits(hidden, weight, bias)
        kept = targets.ne(ignore_index)
        safe_t = torch.where(kept, targets, torch.zeros_like(targets))
        logp = torch.log_softmax(x, dim=-1)
        loss = torch.where(kept, -logp.gather(1, safe_t[:, None]).squeeze(1), torch.zeros((), dtype=x.dtype))
        ids = samples(x, temperature, seed, offset) if sample else None
        gh = gw = gb = None
        if any(grads):
            scale = grad_scale.to(x.dtype).expand(x.shape[0]) * kept.to(x.dtype)
            dx = logp.exp_()
            dx[torch.arange(x.shape[0], device=x.device), safe_t] -= 1.0
            dx *= scale[:, None]
            if grads[0]:
                gh = dx @ weight.to(x.dtype)
            if grads[1]:
                gw = dx.t() @ hidden.to(x.dtype)
            if grads[2]:
                gb = dx.sum(0)
        return loss, ids, gh, gw, gb
