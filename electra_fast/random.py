"""The one random stream of electra_fast: Philox4x32-10 keyed by (seed, offset).

Counter layout, the contract every backend follows bit for bit:
    key     = (lo32(seed), hi32(seed))                      seed in [0, 2^63)
    counter = (lo32(i), hi32(i), lo32(offset), hi32(offset))  i = the element's index in the stream
    words   = Philox4x32-10(counter, key) -> four uint32, w0..w3
    uniform = ((w0 >> 9) + 0.5) * 2^-23                      exact in float32, strictly inside (0, 1)
`offset` names an independent stream: DDP ranks, training steps and ops use different offsets, so
streams never overlap. An op that needs several numbers for one element uses w1..w3 of the same
counter and documents which. Implementations: csrc/include/electra_fast/philox.h (C++/CUDA),
electra_fast/triton/random.py (Triton), electra_fast/reference/random.py (torch integer math).
"""
from __future__ import annotations

from typing import Optional

import torch

from . import backend
from ._validation import check_seed
from .reference import random as _reference


def _run(kind: str, out: torch.Tensor, n: int, seed: int, offset: int, start: int) -> torch.Tensor:
    name = backend.select(out.device)
    if name in ("cpp", "cuda"):
        getattr(torch.ops.electra_fast_C, f"philox_{kind}")(out, seed, offset, start)
    elif name == "triton":
        from .triton import random as triton_random

        getattr(triton_random, f"philox_{kind}_")(out, seed, offset, start)
    else:
        ref = _reference.uniform if kind == "uniform" else _reference.philox_words
        out.copy_(ref(n, seed=seed, offset=offset, start=start, device=out.device))
    return out


def uniform(n: int, *, seed: int, offset: int = 0, device: Optional[torch.device | str] = None) -> torch.Tensor:
    """[n] float32 uniforms in (0, 1): element i is `uniform` of counter i in stream (seed, offset)."""
    check_seed(seed, offset)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    out = torch.empty(n, dtype=torch.float32, device=device)
    return _run("uniform", out, n, seed, offset, 0)


def philox_words(n: int, *, seed: int, offset: int = 0, start: int = 0,
                 device: Optional[torch.device | str] = None) -> torch.Tensor:
    """[n, 4] int64 holding the uint32 words of counters start .. start+n-1 (for tests and debugging)."""
    check_seed(seed, offset)
    out = torch.empty(n, 4, dtype=torch.int32, device=device)
    _run("words", out, n, seed, offset, start)
    return out.to(torch.int64).bitwise_and(0xFFFFFFFF)
