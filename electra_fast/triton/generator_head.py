"""Triton row kernel of the fused generator head: one program per row of a chunk of fp32 logits takes
the max, the normaliser (fp64), the loss, the sample, and turns the row in place into the scaled
softmax gradient. Same contract as the C++ op electra_fast_C::generator_head_rows (math:
csrc/include/electra_fast/cross_entropy.h and sampling.h); the GEMMs are torch calls made by the chunk
driver in electra_fast/ops/generator_head.py.

Three passes over the row in blocks of BLOCK: max (and first argmax for T = 0), exp sums, then the
inverse-CDF scan (block cumsum in fp64, carried across blocks) fused with the gradient write.
"""
from typing import Optional

import torch
import triton
import triton.language as tl

from .. import backend
from .random import philox_words, word_to_uniform


@triton.jit
def _ce_rows_kernel(x_ptr, t_ptr, scale_ptr, loss_ptr, sample_ptr, v, n_scale, row_start, inv_t, seed, offset,
                    ignore_index, WRITE_GRAD: tl.constexpr, SAMPLE: tl.constexpr, TEMPERED: tl.constexpr,
                    ARGMAX: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    base = x_ptr + row * v
    t = tl.load(t_ptr + row)
    ignored = t == ignore_index
    valid = (t >= 0) & (t < v)
    tl.device_assert(ignored | valid, "generator_head: target out of range")
    s = tl.load(scale_ptr + tl.where(n_scale == 1, 0, row))
    lanes = tl.arange(0, BLOCK).to(tl.int64)

    mx = tl.full((), float("-inf"), tl.float32)
    amax = tl.full((), -1, tl.int64)
    for start in range(0, v, BLOCK):
        cols = start + lanes
        xb = tl.load(base + cols, mask=cols < v, other=float("-inf"))
        bm = tl.max(xb, 0)
        if ARGMAX:
            first = tl.min(tl.where(xb == bm, cols, v), 0)
            amax = tl.where(bm > mx, first, amax)
        mx = tl.maximum(mx, bm)
    x_t = tl.load(base + tl.where(valid, t, 0))
    x_t = tl.where(valid, x_t, 0.0)

    z = tl.full((), 0.0, tl.float64)
    z_t = tl.full((), 0.0, tl.float64)
    for start in range(0, v, BLOCK):
        cols = start + lanes
        xb = tl.load(base + cols, mask=cols < v, other=float("-inf"))
        z += tl.sum(tl.exp(xb - mx).to(tl.float64), 0)
        if TEMPERED:
            z_t += tl.sum(tl.exp((xb - mx) * inv_t).to(tl.float64), 0)
    if not TEMPERED:
        z_t = z

    pick = v
    last_positive = tl.full((), -1, tl.int64)
    if SAMPLE and not ARGMAX:
        w0, _, _, _ = philox_words(seed, offset, row_start + row)
        target_mass = word_to_uniform(w0).to(tl.float64) * z_t
        run = tl.full((), 0.0, tl.float64)
    p_scale = (s.to(tl.float64) / z).to(tl.float32)
    if WRITE_GRAD or (SAMPLE and not ARGMAX):
        for start in range(0, v, BLOCK):
            cols = start + lanes
            inside = cols < v
            xb = tl.load(base + cols, mask=inside, other=float("-inf"))
            e = tl.exp(xb - mx)
            if SAMPLE and not ARGMAX:
                if TEMPERED:
                    w = tl.exp((xb - mx) * inv_t)
                else:
                    w = e
                w64 = w.to(tl.float64)
                cdf = tl.cumsum(w64, 0) + run
                pick = tl.minimum(pick, tl.min(tl.where((cdf >= target_mass) & inside, cols, v), 0))
                last_positive = tl.maximum(last_positive, tl.max(tl.where(w > 0, cols, -1), 0))
                run += tl.sum(w64, 0)
            if WRITE_GRAD:
                g = e * p_scale - tl.where(cols == t, s, 0.0)
                g = tl.where(ignored, 0.0, g)
                tl.store(base + cols, g, mask=inside)

    loss = tl.log(z.to(tl.float32)) + mx - x_t
    tl.store(loss_ptr + row, tl.where(ignored, 0.0, loss))
    if SAMPLE:
        if ARGMAX:
            tl.store(sample_ptr + row, amax)
        else:
            tl.store(sample_ptr + row, tl.where(pick < v, pick, last_positive))


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
    block = _block(v)
    argmax = temperature == 0.0
    tempered = sample and not argmax and temperature != 1.0
    _ce_rows_kernel[(rows,)](
        logits, targets, grad_scale, loss, samples, v, grad_scale.numel(), row_start,
        1.0 / temperature if temperature > 0 else 1.0, seed, offset, ignore_index,
        WRITE_GRAD=write_grad, SAMPLE=sample, TEMPERED=tempered, ARGMAX=argmax, BLOCK=block,
        num_warps=8,
    )
    if grad_bias is not None:
        grad_bias += logits.sum(0)


def _aot(write_grad: bool, sample: bool, tempered: bool, argmax: bool):
    sig = {"x_ptr": "*fp32", "t_ptr": "*i64", "scale_ptr": "*fp32", "loss_ptr": "*fp32", "sample_ptr": "*i64",
           "v": "i64", "n_scale": "i64", "row_start": "i64", "inv_t": "fp32", "seed": "i64", "offset": "i64",
           "ignore_index": "i64", "WRITE_GRAD": "constexpr", "SAMPLE": "constexpr", "TEMPERED": "constexpr",
           "ARGMAX": "constexpr", "BLOCK": "constexpr"}
    const = {"WRITE_GRAD": write_grad, "SAMPLE": sample, "TEMPERED": tempered, "ARGMAX": argmax, "BLOCK": 4096}
    return (_ce_rows_kernel, sig, const)


AOT_KERNELS = [
    _aot(True, True, False, False),
    _aot(True, True, True, False),
    _aot(False, True, False, True),
    _aot(True, False, False, False),
]
