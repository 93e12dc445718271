"""The one random stream of electra_fast: Philox4x32-10 keyed by (seed, offset).

Counter layout, the contract every backend follows bit for bit:
    key     = (lo32(seed), hi32(seed))                      seed in [0, 2^63)
    counter = (lo32(i), hi32(i), lo32(offset), hi32(offset))  i = the element's index in the stream
    words   = Philox4x32-10(counter, key) -> four uint32, w0..w3
    uniform = ((w0 >> 9) + 0.5) * 2^-23                      exact in float32, strictly inside (0, 1)
`offset` names an independent stream: DDP ranks, training steps and ops use different offsets, so
streams never overlap. An op that needs several numbers for one element uses w1..w3 of the same
counter and documents which. Implementations: csrc/include/electra_fast/philox.h (C++/CUDA),
electra_fast/triton/random.py (Triton), electra_fast/reference/random.py (torch integer math), declared
below for electra_fast/ops/_dispatch.py as PHILOX_WORDS and PHILOX_UNIFORM.
"""
from __future__ import annotations

from typing import Optional

import torch

from ._validation import check_seed
from .ops import _dispatch as dispatch
from .reference import random as _reference


def _reference_words(out: torch.Tensor, seed: int, offset: int, start: int) -> None:
    out.copy_(_reference.philox_words(out.shape[0], seed=seed, offset=offset, start=start, device=out.device))


def _reference_uniform(out: torch.Tensor, seed: int, offset: int, start: int) -> None:
    out.copy_(_reference.uniform(out.shape[0], seed=seed, offset=offset, start=start, device=out.device))


# the kernels fill `out` with counters start .. start+len(out)-1 of stream (seed, offset)
PHILOX_WORDS = dispatch.Op(
    "philox_words",
    kernel="philox_words(Tensor(a!) out, int seed, int offset, int start) -> ()",
    triton="random.philox_words_",
    reference=_reference_words,
)
PHILOX_UNIFORM = dispatch.Op(
    "philox_uniform",
    kernel="philox_uniform(Tensor(a!) out, int seed, int offset, int start) -> ()",
    triton="random.philox_uniform_",
    reference=_reference_uniform,
)


def uniform(n: int, *, seed: int, offset: int = 0, start: int = 0,
            device: Optional[torch.device | str] = None) -> torch.Tensor:
    """[n] float32 uniforms in (0, 1): element i is `uniform` of counter start + i in stream (seed, offset)."""
    check_seed(seed, offset)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if start < 0:
        raise ValueError(f"start must be >= 0, got {start}")
    out = torch.empty(n, dtype=torch.float32, device=device)
    dispatch.run(PHILOX_UNIFORM, out.device, out.dtype, out, seed, offset, start)
    return out


def philox_words(n: int, *, seed: int, offset: int = 0, start: int = 0,
                 device: Optional[torch.device | str] = None) -> torch.Tensor:
    """[n, 4] int64 holding the uint32 words of counters start .. start+n-1 (for tests and debugging)."""
    check_seed(seed, offset)
    out = torch.empty(n, 4, dtype=torch.int32, device=device)
    dispatch.run(PHILOX_WORDS, out.device, out.dtype, out, seed, offset, start)
    return out.to(torch.int64).bitwise_and(0xFFFFFFFF)
