"""Philox4x32-10 in Triton: the twin of csrc/include/electra_fast/philox.h, bit for bit.

Layout: key = (lo32(seed), hi32(seed)); counter = (lo32(index), hi32(index), lo32(offset), hi32(offset)).
"""
import struct

import torch
import triton
import triton.language as tl

PHILOX_M0 = tl.constexpr(0xD2511F53)
PHILOX_M1 = tl.constexpr(0xCD9E8D57)
PHILOX_W0 = tl.constexpr(0x9E3779B9)
PHILOX_W1 = tl.constexpr(0xBB67AE85)

# A kernel's (seed, offset) parameters, never specialised: the JIT would make a 1 a compile-time constant
# (which has no .to()) and recompile for every seed divisible by 16.
RANDOM_STREAM = ["seed", "offset"]


def float64_bits(x: float) -> int:
    """The bits of the double x as an int: the JIT passes a Python float to a kernel as float32, so a kernel
    that needs the double takes its bits and bitcasts them back (`bits.to(tl.int64).to(tl.float64, bitcast=True)`)."""
    return struct.unpack("<q", struct.pack("<d", x))[0]


@triton.jit
def philox_words(seed, offset, index):
    """Four uint32 tensors: the words of counters `index` (int64 tensor) of stream (seed, offset)."""
    idx = index.to(tl.uint64)
    off = offset.to(tl.uint64)
    s = seed.to(tl.uint64)
    c0 = (idx & 0xFFFFFFFF).to(tl.uint32)
    c1 = (idx >> 32).to(tl.uint32)
    c2 = tl.zeros_like(c0) + (off & 0xFFFFFFFF).to(tl.uint32)
    c3 = tl.zeros_like(c0) + (off >> 32).to(tl.uint32)
    k0 = (s & 0xFFFFFFFF).to(tl.uint32)
    k1 = (s >> 32).to(tl.uint32)
    for _ in tl.static_range(10):
        prev0 = c0
        prev2 = c2
        c0 = tl.umulhi(PHILOX_M1, prev2) ^ c1 ^ k0
        c2 = tl.umulhi(PHILOX_M0, prev0) ^ c3 ^ k1
        c1 = tl.mul(prev2, PHILOX_M1, sanitize_overflow=False)
        c3 = tl.mul(prev0, PHILOX_M0, sanitize_overflow=False)
        k0 = tl.add(k0, PHILOX_W0, sanitize_overflow=False)
        k1 = tl.add(k1, PHILOX_W1, sanitize_overflow=False)
    return c0, c1, c2, c3


@triton.jit
def word_to_uniform(w):
    """uint32 -> float32 ((w >> 9) + 0.5) * 2^-23, exact, in (0, 1)."""
    return ((w >> 9).to(tl.float32) + 0.5) * 1.1920928955078125e-07


@triton.jit(do_not_specialize=RANDOM_STREAM)
def _philox_words_kernel(out_ptr, n, seed, offset, start, BLOCK: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    i = pid * BLOCK + tl.arange(0, BLOCK).to(tl.int64)
    keep = i < n
    w0, w1, w2, w3 = philox_words(seed, offset, start + i)
    base = out_ptr + 4 * i
    tl.store(base + 0, w0.to(tl.int32, bitcast=True), mask=keep)
    tl.store(base + 1, w1.to(tl.int32, bitcast=True), mask=keep)
    tl.store(base + 2, w2.to(tl.int32, bitcast=True), mask=keep)
    tl.store(base + 3, w3.to(tl.int32, bitcast=True), mask=keep)


@triton.jit(do_not_specialize=RANDOM_STREAM)
def _philox_uniform_kernel(out_ptr, n, seed, offset, start, BLOCK: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    i = pid * BLOCK + tl.arange(0, BLOCK).to(tl.int64)
    w0, _, _, _ = philox_words(seed, offset, start + i)
    tl.store(out_ptr + i, word_to_uniform(w0), mask=i < n)


_BLOCK = 1024


def philox_words_(out: torch.Tensor, seed: int, offset: int, start: int) -> None:
    """Fill out [n, 4] int32 with the words of counters start .. start+n-1."""
    n = out.shape[0]
    if n:
        _philox_words_kernel[(triton.cdiv(n, _BLOCK),)](out, n, seed, offset, start, BLOCK=_BLOCK)


def philox_uniform_(out: torch.Tensor, seed: int, offset: int, start: int) -> None:
    """Fill out [n] float32 with the uniforms of counters start .. start+n-1."""
    n = out.numel()
    if n:
        _philox_uniform_kernel[(triton.cdiv(n, _BLOCK),)](out, n, seed, offset, start, BLOCK=_BLOCK)


_SCALARS = {"n": "i64", "seed": "i64", "offset": "i64", "start": "i64", "BLOCK": "constexpr"}
AOT_KERNELS = [
    (_philox_words_kernel, {"out_ptr": "*i32", **_SCALARS}, {"BLOCK": _BLOCK}),
    (_philox_uniform_kernel, {"out_ptr": "*fp32", **_SCALARS}, {"BLOCK": _BLOCK}),
]
