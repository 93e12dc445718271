"""Argument checks shared by the public ops: clear errors that name the argument and what is expected."""
from __future__ import annotations

import math
from typing import Iterable, Optional

import torch

MAX_SEED = 2**63


def check_seed(seed, offset) -> None:
    for name, value in (("seed", seed), ("offset", offset)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be a Python int, got {type(value).__name__}")
        if not 0 <= value < MAX_SEED:
            raise ValueError(f"{name} must be in [0, 2^63), got {value}")


def check_tensor(t, name: str, *, dtypes: Optional[Iterable[torch.dtype]] = None, dim: Optional[int] = None) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if dtypes is not None:
        dtypes = tuple(dtypes)
        if t.dtype not in dtypes:
            expected = ", ".join(str(d).replace("torch.", "") for d in dtypes)
            raise TypeError(f"{name} must have dtype in ({expected}), got {str(t.dtype).replace('torch.', '')}")
    if dim is not None and t.dim() != dim:
        raise ValueError(f"{name} must be {dim}-D, got shape {tuple(t.shape)}")


def check_same_shape(t: torch.Tensor, name: str, ref: torch.Tensor, ref_name: str) -> None:
    if t.shape != ref.shape:
        raise ValueError(f"{name} must have the shape of {ref_name} {tuple(ref.shape)}, got {tuple(t.shape)}")


def check_same_device(t: torch.Tensor, name: str, ref: torch.Tensor, ref_name: str) -> None:
    if t.device != ref.device:
        raise ValueError(f"{name} is on {t.device} but {ref_name} is on {ref.device}; put them on one device")


# The smallest double that rounds to inf in float32: the midpoint between FLT_MAX and 2^128 (ties go to the even
# 2^128). Plain float arithmetic, so that torch.compile traces the check without a graph break.
_FLOAT32_OVERFLOW = 2.0 ** 128 - 2.0 ** 103


def check_temperature(temperature) -> float:
    """The sampling temperature as a float: 0 (argmax) or positive and finite with a finite float32 inverse
    (the kernels scale by float(1 / T): an infinite one would turn every weight into NaN). Shared by
    sample_replace, generator_head and ElectraConfig, so that a config cannot hold a value the ops reject."""
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise TypeError(f"temperature must be a float, got {type(temperature).__name__}")
    temperature = float(temperature)
    inverse_finite = temperature > 0.0 and math.isfinite(temperature) and 1.0 / temperature < _FLOAT32_OVERFLOW
    if temperature != 0.0 and not inverse_finite:
        raise ValueError(f"temperature must be 0 (argmax) or a positive finite float whose inverse is finite in "
                         f"float32 (T above about 2.9e-39), got {temperature}")
    return temperature
