"""Triton row kernel of the fused generator head: one program per row of a chunk of fp32 logits draws the
sample, takes the normaliser (fp64) and the loss, and turns the row in place into the scaled softmax
gradient. Same contract as the C++ op electra_fast_C::generator_head_rows (math:
csrc/include/electra_fast/cross_entropy.h and sampling.h); the GEMMs are torch calls made by the chunk
driver in electra_fast/ops/generator_head.py.

Passes over the row in blocks of BLOCK: the sample (sampling.sample_row, shared with sample_replace, which
also gives the max) or the max alone, exp sums, then the gradient write.
"""
from typing import Optional

import torch
import triton
import triton.language as tl

from .. import backend
from .random import RANDOM_STREAM, philox_words, word_to_uniform
from ..reference.sampling import inverse_temperature
from .sampling import sample_row


@triton.jit(do_not_specialize=RANDOM_STREAM)
def _ce_rows_kernel(x_ptr, t_ptr, scale_ptr, loss_ptr, sample_ptr, v, n_scale, row_start, inv_t, seed, offset,
                    ignore_index, WRITE_GRAD: tl.constexpr, SAMPLE: tl.constexpr, GREEDY: tl.constexpr,
                    BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    base = x_ptr + row * v
    t = tl.load(t_ptr + row)
    ignored = t == ignore_index
    valid = (t >= 0) & (t < v)
    tl.device_assert(ignored | valid, "generator_head: target out of range")
    lanes = tl.arange(0, BLOCK).to(tl.int64)

    if SAMPLE:
        w0, _, _, _ = philox_words(seed, offset, row_start + row)
        pick, _, mx = sample_row(base, v, -1, inv_t, word_to_uniform(w0), GREEDY, BLOCK)
        tl.store(sample_ptr + row, pick)
    else:
        mx = tl.full((), float("-inf"), tl.float32)
        for start in range(0, v, BLOCK):
            cols = start + lanes
            mx = tl.maximum(mx, tl.max(tl.load(base + cols, mask=cols < v, other=float("-inf")), 0))
    x_t = tl.load(base + tl.where(valid, t, 0))
    x_t = tl.where(valid, x_t, 0.0)

    z = tl.full((), 0.0, tl.float64)
    for start in range(0, v, BLOCK):
        cols = start + lanes
        xb = tl.load(base + cols, mask=cols < v, other=float("-inf"))
        z += tl.sum(tl.exp(xb - mx).to(tl.float64), 0)

    if WRITE_GRAD:
        s = tl.load(scale_ptr + tl.where(n_scale == 1, 0, row))
        p_scale = (s.to(tl.float64) / z).to(tl.float32)
        for start in range(0, v, BLOCK):
            cols = start + lanes
            inside = cols < v
            xb = tl.load(base + cols, mask=inside, other=float("-inf"))
            g = tl.exp(xb - mx) * p_scale - tl.where(cols == t, s, 0.0)
            g = tl.where(ignored, 0.0, g)
            tl.store(base + cols, g, mask=inside)

    loss = tl.log(z.to(tl.float32)) + mx - x_t
    tl.store(loss_ptr + row, tl.where(ignored, 0.0, loss))


def _block(v: int) -> int:
    # the interpreter pays per block, a GPU per register: whole rows there, 4096-wide tiles here
    cap = 1 << 15 if backend.triton_interpreted() else 4096
    return min(triton.next_power_of_2(max(v, 16)), cap)


def generator_head_rows(logits: torch.Tensor, targets: torch.Tensor, grad_scale: torch.Tensor, loss: torch.Tensor,
                        samples: torch.Tensor, grad_bias: Optional[torch.Tensor], row_start: int, temperature: float,
                        seed: int, offset: int, ignore_index: int, write_grad: bool, sample: bool) -> None:
    """Same contract as electra_fast_C::generator_head_rows (in place on the fp32 chunk `logits`)."""
    rows, v = logits.shape
    if rows == 0:
        return
    _ce_rows_kernel[(rows,)](
        logits, targets, grad_scale, loss, samples, v, grad_scale.numel(), row_start, inverse_temperature(temperature),
        seed, offset, ignore_index, WRITE_GRAD=write_grad, SAMPLE=sample, GREEDY=temperature == 0.0, BLOCK=_block(v),
        num_warps=8,
    )
    if grad_bias is not None:
        grad_bias += logits.sum(0)


def _aot(write_grad: bool, sample: bool, greedy: bool):
    sig = {"x_ptr": "*fp32", "t_ptr": "*i64", "scale_ptr": "*fp32", "loss_ptr": "*fp32", "sample_ptr": "*i64",
           "v": "i64", "n_scale": "i64", "row_start": "i64", "inv_t": "fp32", "seed": "i64", "offset": "i64",
           "ignore_index": "i64", "WRITE_GRAD": "constexpr", "SAMPLE": "constexpr", "GREEDY": "constexpr",
           "BLOCK": "constexpr"}
    const = {"WRITE_GRAD": write_grad, "SAMPLE": sample, "GREEDY": greedy, "BLOCK": 4096}
    return (_ce_rows_kernel, sig, const)


AOT_KERNELS = [
    _aot(True, True, False),
    _aot(False, True, True),
    _aot(True, False, False),
]
