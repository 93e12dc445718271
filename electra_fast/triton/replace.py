"""Triton kernels of masking and sampled replacement: twins of csrc/cpu/replace.cpp and
csrc/include/electra_fast/masking.h, drawing the same Philox words (layout: electra_fast/ops/replace.py).

mask_tokens: one program per row; the k-th smallest selection key is found by a 63-step binary search
on the key value (count of keys <= mid per step), which needs no sort and gives the same k-subset as
the C++ nth_element. sample_replace: one program per masked row, sampled by sampling.sample_row in
BLOCK_V chunks. statistical_fill: one lane per position, a fixed-length binary search in the cdf row.
"""
from typing import Optional, Tuple

import torch
import triton
import triton.language as tl

from .random import RANDOM_STREAM, float64_bits, philox_words, word_to_uniform
from ..reference.sampling import inverse_temperature
from .sampling import ROW_EMPTY, ROW_NON_FINITE, ROW_SAMPLED, sample_row

_INT64_MAX = tl.constexpr(9223372036854775807)


@triton.jit(do_not_specialize=RANDOM_STREAM + ["mask_prob_bits"])
def _mask_tokens_kernel(ids_ptr, am_ptr, spec_ptr, out_ptr, masked_ptr, T, n_spec, mask_prob_bits, mask_id, frac,
                        seed, offset, HAS_MASK: tl.constexpr, BLOCK_T: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    t = tl.arange(0, BLOCK_T).to(tl.int64)
    inb = t < T
    ptrs = row * T + t
    ids = tl.load(ids_ptr + ptrs, mask=inb, other=0).to(tl.int64)
    real = inb
    if HAS_MASK:
        real = real & (tl.load(am_ptr + ptrs, mask=inb, other=0) != 0)
    cand = real & (ids != mask_id)
    for s in range(n_spec):
        cand = cand & (ids != tl.load(spec_ptr + s))
    w0, w1, _, _ = philox_words(seed, offset, ptrs)
    key = tl.where(cand, (w0.to(tl.int64) << 31) | t, _INT64_MAX)
    n_real = tl.sum(real.to(tl.int64), axis=0)
    n_cand = tl.sum(cand.to(tl.int64), axis=0)
    # k = min(max(1, round_half_even(n_real * mask_prob)), n_cand), as masked_count in masking.h: x is
    # compared with r + 1/2, never subtracted from, so no fused multiply-add can skip the product's rounding
    x = n_real.to(tl.float64) * mask_prob_bits.to(tl.int64).to(tl.float64, bitcast=True)
    r = x.to(tl.int64)
    half = r.to(tl.float64) + 0.5
    r = tl.where((x > half) | ((x == half) & ((r & 1) == 1)), r + 1, r)
    k = tl.minimum(tl.maximum(r, 1), n_cand)
    # smallest v with #{key <= v} >= k: the k-th smallest key (keys are unique)
    lo = tl.zeros((), tl.int64)
    hi = tl.zeros((), tl.int64) + (_INT64_MAX - 1)
    for _ in range(63):
        mid = lo + ((hi - lo) >> 1)
        enough = tl.sum((key <= mid).to(tl.int64), axis=0) >= k
        hi = tl.where(enough, mid, hi)
        lo = tl.where(enough, lo, mid + 1)
    is_masked = cand & (key <= hi) & (k > 0)
    show_mask = is_masked & (word_to_uniform(w1) < frac)
    out = tl.where(show_mask, mask_id, ids)
    tl.store(out_ptr + ptrs, out.to(out_ptr.dtype.element_ty), mask=inb)
    tl.store(masked_ptr + ptrs, is_masked.to(tl.int8), mask=inb)


@triton.jit(do_not_specialize=RANDOM_STREAM)
def _sample_replace_kernel(x_ptr, ids_ptr, pos_ptr, out_ptr, replaced_ptr, status_ptr, V, inv_t, seed, offset,
                           DISALLOW: tl.constexpr, GREEDY: tl.constexpr, BLOCK_V: tl.constexpr):
    m = tl.program_id(0).to(tl.int64)
    p = tl.load(pos_ptr + m)
    if p >= 0:
        orig = tl.load(ids_ptr + p).to(tl.int64)
        skip = -1
        if DISALLOW:
            skip = tl.where((orig >= 0) & (orig < V), orig, -1)
        w0, _, _, _ = philox_words(seed, offset, m)
        pick, status, _ = sample_row(x_ptr + m * V, V, skip, inv_t, word_to_uniform(w0), GREEDY, BLOCK_V)
        if status == ROW_SAMPLED:
            tl.store(out_ptr + p, pick.to(out_ptr.dtype.element_ty))
            tl.store(replaced_ptr + p, (pick != orig).to(tl.int8))
        tl.store(status_ptr + m, status.to(tl.int8))


@triton.jit(do_not_specialize=RANDOM_STREAM)
def _statistical_fill_kernel(ids_ptr, mask_ptr, row_ptr, cdf_ptr, off_ptr, mem_ptr, out_ptr, replaced_ptr, n, V, R,
                             K, n_iter, seed, offset, BLOCK: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    p = pid * BLOCK + tl.arange(0, BLOCK).to(tl.int64)
    inb = p < n
    orig = tl.load(ids_ptr + p, mask=inb, other=0).to(tl.int64)
    masked = (tl.load(mask_ptr + p, mask=inb, other=0) != 0) & inb
    _, _, w2, w3 = philox_words(seed, offset, p)
    inside = (orig >= 0) & (orig < V)
    row = tl.load(row_ptr + tl.where(inside, orig, 0), mask=masked, other=0)
    row = tl.where(inside, row, R - 1)
    base = cdf_ptr + row * K
    target = word_to_uniform(w2).to(tl.float64) * tl.load(base + (K - 1), mask=masked, other=1.0)
    lo = tl.zeros_like(p)
    hi = tl.zeros_like(p) + (K - 1)
    for _ in range(n_iter):  # first j with cdf[row, j] > target, as cdf_search in masking.h
        mid = lo + ((hi - lo) >> 1)
        go = tl.load(base + mid, mask=masked, other=0.0) > target
        open_ = lo < hi
        hi = tl.where(open_ & go, mid, hi)
        lo = tl.where(open_ & ~go, mid + 1, lo)
    begin = tl.load(off_ptr + lo, mask=masked, other=0)
    size = tl.load(off_ptr + lo + 1, mask=masked, other=0) - begin
    pick = begin + ((w3.to(tl.uint64) * size.to(tl.uint64)) >> 32).to(tl.int64)
    token = tl.load(mem_ptr + pick, mask=masked, other=0)
    out = tl.where(masked, token, orig)
    tl.store(out_ptr + p, out.to(out_ptr.dtype.element_ty), mask=inb)
    tl.store(replaced_ptr + p, (out != orig).to(tl.int8), mask=inb)


def mask_tokens(input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor], special_ids: torch.Tensor,
                mask_prob: float, mask_token_id: int, mask_fraction: float, seed: int,
                offset: int) -> Tuple[torch.Tensor, torch.Tensor]:
    b, t = input_ids.shape
    out = torch.empty_like(input_ids)
    is_masked = torch.empty_like(input_ids, dtype=torch.bool)
    if b and t:
        _mask_tokens_kernel[(b,)](
            input_ids, attention_mask if attention_mask is not None else is_masked, special_ids, out,
            is_masked.view(torch.int8), t, special_ids.numel(), float64_bits(mask_prob), mask_token_id, mask_fraction,
            seed, offset, HAS_MASK=attention_mask is not None, BLOCK_T=triton.next_power_of_2(t))
    return out, is_masked


def masked_positions(is_masked: torch.Tensor, rows: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """(position [rows] int64 of the m-th masked position, or -1; number of masked positions [1]) without a
    host sync: the rank of each masked position is a cumsum, positions beyond `rows` go to a dump slot."""
    flat = is_masked.reshape(-1)
    rank = torch.cumsum(flat, 0, dtype=torch.int64) - 1
    slot = torch.where(flat & (rank < rows), rank, torch.full_like(rank, rows))
    position = torch.full((rows + 1,), -1, dtype=torch.int64, device=flat.device)
    position.scatter_(0, slot, torch.arange(flat.numel(), dtype=torch.int64, device=flat.device))
    count = rank[-1:] + 1 if flat.numel() else torch.zeros(1, dtype=torch.int64, device=flat.device)
    return position[:rows].contiguous(), count


def sample_replace(logits: torch.Tensor, input_ids: torch.Tensor, is_masked: torch.Tensor, temperature: float,
                   disallow_original: bool, seed: int, offset: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    rows, vocab = logits.shape
    position, count = masked_positions(is_masked, rows)
    corrupted = input_ids.clone()
    is_replaced = torch.zeros_like(input_ids, dtype=torch.bool)
    status = torch.full((rows,), ROW_SAMPLED.value, dtype=torch.int8, device=logits.device)
    if rows:
        _sample_replace_kernel[(rows,)](
            logits, input_ids, position, corrupted, is_replaced.view(torch.int8), status, vocab,
            inverse_temperature(temperature), seed, offset, DISALLOW=disallow_original, GREEDY=temperature == 0.0,
            BLOCK_V=min(triton.next_power_of_2(vocab), _BLOCK_V), num_warps=8)
    counts = torch.cat([count, (status == ROW_NON_FINITE.value).sum().reshape(1),
                        (status == ROW_EMPTY.value).sum().reshape(1)])
    return corrupted, is_replaced, counts


def statistical_fill(input_ids: torch.Tensor, is_masked: torch.Tensor, row_of_token: torch.Tensor, cdf: torch.Tensor,
                     offsets: torch.Tensor, members: torch.Tensor, seed: int, offset: int) -> Tuple[torch.Tensor, torch.Tensor]:
    n = input_ids.numel()
    out = torch.empty_like(input_ids)
    is_replaced = torch.empty_like(input_ids, dtype=torch.bool)
    rows, k = cdf.shape
    if n:
        _statistical_fill_kernel[(triton.cdiv(n, _FILL_BLOCK),)](
            input_ids, is_masked.view(torch.int8), row_of_token, cdf, offsets, members, out,
            is_replaced.view(torch.int8), n, row_of_token.numel(), rows, k, max(k - 1, 0).bit_length(), seed,
            offset, BLOCK=_FILL_BLOCK)
    return out, is_replaced


_FILL_BLOCK = 256
_BLOCK_V = 2048
_SEED = {"seed": "i64", "offset": "i64"}


def _aot_mask(ids: str, has_mask: bool):
    sig = {"ids_ptr": f"*{ids}", "am_ptr": "*i1", "spec_ptr": "*i64", "out_ptr": f"*{ids}", "masked_ptr": "*i8",
           "T": "i32", "n_spec": "i32", "mask_prob_bits": "i64", "mask_id": "i64", "frac": "fp32", **_SEED,
           "HAS_MASK": "constexpr", "BLOCK_T": "constexpr"}
    return (_mask_tokens_kernel, sig, {"HAS_MASK": has_mask, "BLOCK_T": 512})


def _aot_sample(dtype: str, ids: str, disallow: bool, greedy: bool):
    sig = {"x_ptr": f"*{dtype}", "ids_ptr": f"*{ids}", "pos_ptr": "*i64", "out_ptr": f"*{ids}", "replaced_ptr": "*i8",
           "status_ptr": "*i8", "V": "i32", "inv_t": "fp32", **_SEED,
           "DISALLOW": "constexpr", "GREEDY": "constexpr", "BLOCK_V": "constexpr"}
    return (_sample_replace_kernel, sig, {"DISALLOW": disallow, "GREEDY": greedy, "BLOCK_V": _BLOCK_V})


AOT_KERNELS = [
    _aot_mask("i64", True),
    _aot_mask("i32", False),
    _aot_sample("fp32", "i64", False, False),
    _aot_sample("bf16", "i64", True, False),
    _aot_sample("fp16", "i32", False, True),
    (_statistical_fill_kernel,
     {"ids_ptr": "*i64", "mask_ptr": "*i8", "row_ptr": "*i64", "cdf_ptr": "*fp64", "off_ptr": "*i64",
      "mem_ptr": "*i64", "out_ptr": "*i64", "replaced_ptr": "*i8", "n": "i32", "V": "i32", "R": "i32", "K": "i32",
      "n_iter": "i32", **_SEED, "BLOCK": "constexpr"}, {"BLOCK": _FILL_BLOCK}),
]
