"""Triton kernel of dropout on the Philox stream (contract: electra_fast/reference/dropout.py): one lane per
counter, whose four words decide four consecutive elements."""
import torch
import triton
import triton.language as tl

from .random import RANDOM_STREAM, philox_words, word_to_uniform
from ..reference.dropout import dropout_scale

_BLOCK = 1024  # counters per program


@triton.jit
def _apply(x_ptr, y_ptr, i, n, word, p, scale):
    inb = i < n
    x = tl.load(x_ptr + i, mask=inb, other=0.0).to(tl.float32)
    y = tl.where(word_to_uniform(word) >= p, x * scale, 0.0)
    tl.store(y_ptr + i, y.to(y_ptr.dtype.element_ty), mask=inb)


@triton.jit(do_not_specialize=RANDOM_STREAM)
def _dropout_kernel(x_ptr, y_ptr, n, p, scale, seed, offset, BLOCK: tl.constexpr):
    counter = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK).to(tl.int64)
    w0, w1, w2, w3 = philox_words(seed, offset, counter)
    _apply(x_ptr, y_ptr, 4 * counter, n, w0, p, scale)
    _apply(x_ptr, y_ptr, 4 * counter + 1, n, w1, p, scale)
    _apply(x_ptr, y_ptr, 4 * counter + 2, n, w2, p, scale)
    _apply(x_ptr, y_ptr, 4 * counter + 3, n, w3, p, scale)


def dropout(x: torch.Tensor, p: float, seed: int, offset: int) -> torch.Tensor:
    """x (contiguous) with the stream's mask and scale applied; p and scale reach the kernel as float32."""
    y = torch.empty_like(x)
    n = x.numel()
    if n:
        _dropout_kernel[(triton.cdiv(triton.cdiv(n, 4), _BLOCK),)](x, y, n, p, dropout_scale(p), seed, offset,
                                                                   BLOCK=_BLOCK)
    return y


def _aot(dtype: str):
    sig = {"x_ptr": f"*{dtype}", "y_ptr": f"*{dtype}", "n": "i64", "p": "fp32", "scale": "fp32", "seed": "i64",
           "offset": "i64", "BLOCK": "constexpr"}
    return (_dropout_kernel, sig, {"BLOCK": _BLOCK})


AOT_KERNELS = [_aot("fp32"), _aot("bf16"), _aot("fp16")]
