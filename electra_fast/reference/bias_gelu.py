"""GELU of x plus a bias, and its gradient: the oracle of electra_fast::bias_gelu.

    bias_gelu(x [..., N], bias [N]) -> y [..., N],   y = gelu(x + bias)
    gelu(z) = z Phi(z),  Phi(z) = (1 + erf(z / sqrt 2)) / 2                      (exact erf GELU)
    backward(dy): dx = dy gelu'(z),  gelu'(z) = Phi(z) + z phi(z),  phi(z) = exp(-z^2 / 2) / sqrt(2 pi)
                  dbias = dx summed over every leading dimension
Half inputs compute in float32 and round once (dx to x's dtype; dbias is summed from the float32 dx and rounded
to bias's dtype); float64 stays float64. Written out rather than F.gelu, whose float32 CPU kernel returns NaN for
+inf; here, as in exact arithmetic (and F.gelu in float64), gelu(+inf) = +inf, gelu(-inf) = NaN, and gelu'(+-inf)
= NaN.
"""
from __future__ import annotations

import math
from typing import Tuple

import torch


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _z(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    dtype = _compute_dtype(x)
    return x.to(dtype) + bias.to(dtype)


def _normal_cdf(z: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.erf(z * math.sqrt(0.5)))


def bias_gelu(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """gelu(x + bias) in x's dtype and shape."""
    z = _z(x, bias)
    return (z * _normal_cdf(z)).to(x.dtype)


def bias_gelu_backward(grad: torch.Tensor, x: torch.Tensor, bias: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """(dx, dbias) for the upstream gradient `grad` of x's shape: dx in x's dtype, dbias [N] in bias's dtype."""
    z = _z(x, bias)
    gelu_grad = _normal_cdf(z) + z * torch.exp(-0.5 * z * z) * (1.0 / math.sqrt(2.0 * math.pi))
    dx = grad.to(z.dtype) * gelu_grad
    dbias = dx.reshape(-1, x.shape[-1]).sum(0)
    return dx.to(x.dtype), dbias.to(bias.dtype)
