"""Philox4x32-10 in plain torch integer math: the reference twin of csrc/include/electra_fast/philox.h.

uint32 arithmetic is emulated on int64 tensors: every value is kept in [0, 2^32), and the 32x32->64
multiply is split into 16-bit halves so no intermediate leaves int64's range.
Layout (the documented contract, see electra_fast.random):
    key = (lo32(seed), hi32(seed)); counter = (lo32(index), hi32(index), lo32(offset), hi32(offset)).
"""
from __future__ import annotations

from typing import Tuple

import torch

MASK32 = 0xFFFFFFFF
PHILOX_M0, PHILOX_M1 = 0xD2511F53, 0xCD9E8D57
PHILOX_W0, PHILOX_W1 = 0x9E3779B9, 0xBB67AE85


def _mulhilo32(a: int, b: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """(hi, lo) 32-bit halves of the 64-bit product a * b, for a constant a and b in [0, 2^32)."""
    lo_part = b.bitwise_and(0xFFFF) * a  # < 2^48
    hi_part = b.bitwise_right_shift(16) * a  # < 2^48
    t = hi_part + lo_part.bitwise_right_shift(16)  # product = t * 2^16 + (lo_part & 0xFFFF)
    lo = t.bitwise_and(0xFFFF).bitwise_left_shift(16).bitwise_or(lo_part.bitwise_and(0xFFFF))
    hi = t.bitwise_right_shift(16)
    return hi, lo


def _u32(x: int) -> int:
    return x & MASK32


def philox4x32_10(counter: Tuple[torch.Tensor, ...], seed: int) -> torch.Tensor:
    """Ten Philox rounds on int64 tensors holding uint32 values; returns [n, 4] int64 words."""
    c0, c1, c2, c3 = counter
    seed = seed & 0xFFFFFFFFFFFFFFFF
    k0, k1 = _u32(seed), _u32(seed >> 32)
    for _ in range(10):
        hi0, lo0 = _mulhilo32(PHILOX_M0, c0)
        hi1, lo1 = _mulhilo32(PHILOX_M1, c2)
        c0, c1, c2, c3 = hi1.bitwise_xor(c1).bitwise_xor(k0), lo1, hi0.bitwise_xor(c3).bitwise_xor(k1), lo0
        k0, k1 = _u32(k0 + PHILOX_W0), _u32(k1 + PHILOX_W1)
    return torch.stack([c0, c1, c2, c3], dim=-1)


def philox_words(n: int, *, seed: int, offset: int = 0, start: int = 0, device=None) -> torch.Tensor:
    """[n, 4] int64 (values in [0, 2^32)): the words of counters start .. start+n-1 of stream (seed, offset)."""
    index = _index_words(n, start, device)
    offset = offset & 0xFFFFFFFFFFFFFFFF
    c2 = torch.full_like(index[0], _u32(offset))
    c3 = torch.full_like(index[0], _u32(offset >> 32))
    return philox4x32_10((index[0], index[1], c2, c3), seed)


def _index_words(n: int, start: int, device) -> Tuple[torch.Tensor, torch.Tensor]:
    """(lo32, hi32) of the 64-bit indices start .. start+n-1 (wrapping modulo 2^64)."""
    start = start & 0xFFFFFFFFFFFFFFFF
    i = torch.arange(n, dtype=torch.int64, device=device)
    lo = i + _u32(start)  # < 2^33
    carry = lo.bitwise_right_shift(32)
    return lo.bitwise_and(MASK32), (carry + _u32(start >> 32)).bitwise_and(MASK32)


def word_to_uniform(word: torch.Tensor) -> torch.Tensor:
    """uint32 words (in int64) -> float32 uniforms ((w >> 9) + 0.5) * 2^-23, exact and in (0, 1)."""
    return (word.bitwise_right_shift(9).to(torch.float32) + 0.5) * (2.0**-23)


def uniform(n: int, *, seed: int, offset: int = 0, start: int = 0, device=None) -> torch.Tensor:
    """[n] float32 uniforms of counters start .. start+n-1 (word 0 of each)."""
    return word_to_uniform(philox_words(n, seed=seed, offset=offset, start=start, device=device)[:, 0])
