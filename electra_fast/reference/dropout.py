"""Dropout on the shared Philox stream: the oracle of electra_fast::dropout.

    y_i = x_i * scale if keep_i else 0,    scale = float32(1 / (1 - p)) (0 when p = 1)
    keep_i = uniform(word_{i mod 4} of counter floor(i / 4)) >= float32(p)
for the flat (row-major) index i of x, in stream (seed, offset) of electra_fast.random: one Philox counter
gives four elements their words. Half inputs are scaled in float32 and rounded once. The gradient is the same
map applied to the upstream gradient (dropout is linear in x with a mask that depends only on the stream),
so no mask is stored: the backward draws it again.
"""
from __future__ import annotations

import torch

from .random import philox_words, word_to_uniform


def dropout_scale(p: float) -> float:
    """The float32 factor of the kept elements: 1 / (1 - p), or 0 for p = 1 (every element dropped)."""
    return 0.0 if p == 1.0 else float(torch.tensor(1.0 / (1.0 - p), dtype=torch.float32))


def keep_mask(n: int, p: float, seed: int, offset: int, device=None) -> torch.Tensor:
    """[n] bool: keep_i of the contract above."""
    words = philox_words((n + 3) // 4, seed=seed, offset=offset, device=device).reshape(-1)[:n]
    return word_to_uniform(words) >= torch.tensor(p, dtype=torch.float32, device=device)


def dropout(x: torch.Tensor, p: float, seed: int, offset: int) -> torch.Tensor:
    """x with the contract's mask and scale applied (same shape and dtype)."""
    keep = keep_mask(x.numel(), p, seed, offset, device=x.device).view(x.shape)
    scaled = x.to(torch.float32 if x.dtype != torch.float64 else x.dtype) * dropout_scale(p)
    return torch.where(keep, scaled, torch.zeros((), dtype=scaled.dtype, device=x.device)).to(x.dtype)
