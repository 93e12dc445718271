"""Triton kernels of token-level early exit: exit decision, per-row compaction (tl.cumsum), row gather
and scatter, budgeted selection. Logic twin of csrc/include/electra_fast/compaction.h; same contract as
the raw C++ ops electra_fast_C::{exit_mask, compact, gather_rows, scatter_rows, select_tokens}.

Budgeted selection: one program per row ranks each token's key against the row's keys in chunks
(pairwise; keys are unique), keeps those with fewer than k keys below, and gives them slots by tl.cumsum
in position order; the row copy kernel then gathers the kept rows.

Gather and scatter move bits: tensors are viewed as integers of their element size, so one compiled
kernel serves float32/int32, another float16/bfloat16, and so on.
"""
from typing import Optional, Tuple

import torch
import triton
import triton.language as tl

BLOCK = 1024  # tokens per program of the exit decision
BLOCK_T = 1024  # tokens per step of a row's scan
BLOCK_I = 128  # tokens ranked per step of a row's selection
BLOCK_J = 64  # keys compared against them per inner step

_BITS = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


@triton.jit
def _exit_mask_kernel(x_ptr, active_ptr, ids_ptr, keep_ptr, out_ptr, n, num_keep, bound,
                      HAS_KEEP: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    offs = pid * BLOCK + tl.arange(0, BLOCK).to(tl.int64)
    inb = offs < n
    x = tl.load(x_ptr + offs, mask=inb, other=0.0).to(tl.float32)
    active = tl.load(active_ptr + offs, mask=inb, other=0) != 0
    # bound is the smallest float32 >= logit(threshold): |x| < bound is the exact test (compaction.h)
    stays = tl.abs(x) < bound
    if HAS_KEEP:
        ids = tl.load(ids_ptr + offs, mask=inb, other=0)
        for k in range(0, num_keep):
            stays = stays | (ids == tl.load(keep_ptr + k))
    tl.store(out_ptr + offs, (active & stays).to(tl.int8), mask=inb)


@triton.jit
def _row_count_kernel(active_ptr, counts_ptr, T, BLOCK_T: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    total = tl.zeros([BLOCK_T], dtype=tl.int32)
    for start in range(0, T, BLOCK_T):
        offs = start + tl.arange(0, BLOCK_T)
        total += tl.load(active_ptr + row * T + offs, mask=offs < T, other=0).to(tl.int32)
    tl.store(counts_ptr + row, tl.sum(total, axis=0))


@triton.jit
def _row_index_kernel(active_ptr, cu_ptr, index_ptr, T, BLOCK_T: tl.constexpr):
    """index[cu[row] + (active tokens before t in the row)] = row*T + t, for each active t."""
    row = tl.program_id(0).to(tl.int64)
    slot = tl.load(cu_ptr + row).to(tl.int64)
    for start in range(0, T, BLOCK_T):
        offs = start + tl.arange(0, BLOCK_T)
        flag = tl.load(active_ptr + row * T + offs, mask=offs < T, other=0).to(tl.int32)
        before = tl.cumsum(flag, axis=0) - flag
        tl.store(index_ptr + slot + before.to(tl.int64), row * T + offs.to(tl.int64), mask=flag != 0)
        slot += tl.sum(flag, axis=0).to(tl.int64)


@triton.jit
def _copy_rows_kernel(src_ptr, dst_ptr, index_ptr, n, h, num_rows, GATHER: tl.constexpr, ZERO: tl.constexpr,
                      BLOCK_R: tl.constexpr, BLOCK_H: tl.constexpr):
    """GATHER: dst[i] = src[index[i]]; else dst[index[i]] = src[i] (zeros when ZERO). i < n, rows of h."""
    rows = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R).to(tl.int64)
    cols = tl.program_id(1).to(tl.int64) * BLOCK_H + tl.arange(0, BLOCK_H).to(tl.int64)
    row_ok = rows < n
    idx = tl.load(index_ptr + rows, mask=row_ok, other=0)
    tl.device_assert((idx >= 0) & (idx < num_rows), "index out of range")
    keep = row_ok[:, None] & (cols < h)[None, :]
    if GATHER:
        src_off = idx[:, None] * h + cols[None, :]
        dst_off = rows[:, None] * h + cols[None, :]
    else:
        src_off = rows[:, None] * h + cols[None, :]
        dst_off = idx[:, None] * h + cols[None, :]
    if ZERO:
        value = tl.zeros([BLOCK_R, BLOCK_H], dtype=dst_ptr.dtype.element_ty)
    else:
        value = tl.load(src_ptr + src_off, mask=keep)
    tl.store(dst_ptr + dst_off, value, mask=keep)


@triton.jit
def _keep_key(x_ptr, rank_ptr, row, T, t):
    """compaction.h's keep_key as int64 for positions t of a row; past the row, the largest int64."""
    inb = t < T
    x = tl.load(x_ptr + row * T + t, mask=inb, other=0.0).to(tl.float32)
    magnitude = x.to(tl.int32, bitcast=True) & 0x7FFFFFFF
    conf = tl.where(magnitude > 0x7F800000, 0x7FFFFFFF, magnitude).to(tl.int64)  # every NaN alike
    c = tl.minimum(tl.load(rank_ptr + row * T + t, mask=inb, other=2).to(tl.int64), 2)
    key = (c << 61) | tl.where(c == 1, conf << 30, 0) | t.to(tl.int64)
    return tl.where(inb, key, 0x7FFFFFFFFFFFFFFF)


@triton.jit
def _select_index_kernel(x_ptr, rank_ptr, index_ptr, flat_ptr, T, k, BLOCK_I: tl.constexpr, BLOCK_J: tl.constexpr):
    """index[row, slot] = t and flat[row*k + slot] = row*T + t for each kept token t of the row."""
    row = tl.program_id(0).to(tl.int64)
    slot = tl.zeros_like(row)
    for start in range(0, T, BLOCK_I):
        t = start + tl.arange(0, BLOCK_I)
        key = _keep_key(x_ptr, rank_ptr, row, T, t)
        below = tl.zeros([BLOCK_I], dtype=tl.int32)
        for j in range(0, T, BLOCK_J):
            other = _keep_key(x_ptr, rank_ptr, row, T, j + tl.arange(0, BLOCK_J))
            below += tl.sum((other[None, :] < key[:, None]).to(tl.int32), axis=1)
        flag = ((t < T) & (below < k)).to(tl.int32)
        out = row * k + slot + (tl.cumsum(flag, axis=0) - flag).to(tl.int64)
        tl.store(index_ptr + out, t.to(tl.int64), mask=flag != 0)
        tl.store(flat_ptr + out, row * T + t.to(tl.int64), mask=flag != 0)
        slot += tl.sum(flag, axis=0).to(tl.int64)


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.view(_BITS[t.element_size()])


def _row_blocks(h: int) -> Tuple[int, int]:
    block_h = min(max(triton.next_power_of_2(max(h, 1)), 16), 1024)
    return max(4096 // block_h, 1), block_h


def exit_mask(logits: torch.Tensor, active: torch.Tensor, input_ids: Optional[torch.Tensor],
              keep_ids: Optional[torch.Tensor], bound: float) -> torch.Tensor:
    out = torch.empty(logits.shape, dtype=torch.bool, device=logits.device)
    n = logits.numel()
    if n:
        has_keep = keep_ids is not None
        _exit_mask_kernel[(triton.cdiv(n, BLOCK),)](
            logits, active, input_ids if has_keep else active, keep_ids if has_keep else active, out.view(torch.int8),
            n, keep_ids.numel() if has_keep else 0, bound, HAS_KEEP=has_keep, BLOCK=BLOCK)
    return out


def compact(active: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, int]:
    """(index, cu_seqlens, max_seqlen) of active [B,T] uint8. Synchronises the host once (for N and
    max_seqlen, which size the outputs)."""
    rows, row_len = active.shape
    cu = torch.zeros(rows + 1, dtype=torch.int64, device=active.device)
    if rows == 0 or row_len == 0:
        return active.new_empty(0, dtype=torch.int64), cu.to(torch.int32), 0
    counts = torch.empty(rows, dtype=torch.int32, device=active.device)
    _row_count_kernel[(rows,)](active, counts, row_len, BLOCK_T=BLOCK_T)
    torch.cumsum(counts, 0, dtype=torch.int64, out=cu[1:])
    total, max_seqlen = torch.stack([cu[-1], counts.max().to(torch.int64)]).tolist()  # the one host sync
    if total > torch.iinfo(torch.int32).max:
        raise ValueError(f"gather_tokens: {total} active tokens do not fit the int32 cu_seqlens")
    index = torch.empty(total, dtype=torch.int64, device=active.device)
    if total:
        _row_index_kernel[(rows,)](active, cu, index, row_len, BLOCK_T=BLOCK_T)
    return index, cu.to(torch.int32), max_seqlen


def _copy_rows(src: Optional[torch.Tensor], dst: torch.Tensor, index: torch.Tensor, num_rows: int, gather: bool) -> None:
    n, h = index.numel(), dst.shape[1]
    if n == 0 or h == 0:
        return
    block_r, block_h = _row_blocks(h)
    dst_bits = _bits(dst)
    _copy_rows_kernel[(triton.cdiv(n, block_r), triton.cdiv(h, block_h))](
        _bits(src) if src is not None else dst_bits, dst_bits, index, n, h, num_rows,
        GATHER=gather, ZERO=src is None, BLOCK_R=block_r, BLOCK_H=block_h)


def gather_rows(src: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    out = src.new_empty((index.numel(), src.shape[1]))
    _copy_rows(src, out, index, src.shape[0], gather=True)
    return out


def scatter_rows(tokens: Optional[torch.Tensor], index: torch.Tensor, base: Optional[torch.Tensor],
                 num_rows: int) -> torch.Tensor:
    like = tokens if tokens is not None else base
    out = base.clone() if base is not None else like.new_zeros((num_rows, like.shape[1]))
    _copy_rows(tokens, out, index, num_rows, gather=False)
    return out


def select_tokens(hidden: torch.Tensor, logits: torch.Tensor, rank: torch.Tensor, k: int
                  ) -> Tuple[torch.Tensor, torch.Tensor]:
    """(tokens [B, k, H], index [B, k]): the k tokens of smallest key of each row, in position order."""
    rows, row_len, h = hidden.shape
    tokens = hidden.new_empty((rows, k, h))
    index = torch.empty((rows, k), dtype=torch.int64, device=hidden.device)
    if rows and k:
        flat = torch.empty(rows * k, dtype=torch.int64, device=hidden.device)
        _select_index_kernel[(rows,)](logits, rank, index, flat, row_len, k, BLOCK_I=BLOCK_I, BLOCK_J=BLOCK_J)
        _copy_rows(hidden.view(rows * row_len, h), tokens.view(rows * k, h), flat, rows * row_len, gather=True)
    return tokens, index


def _copy_aot(bits: str, gather: bool, zero: bool, block_h: int):
    sig = {"src_ptr": f"*{bits}", "dst_ptr": f"*{bits}", "index_ptr": "*i64", "n": "i64", "h": "i64",
           "num_rows": "i64", "GATHER": "constexpr", "ZERO": "constexpr", "BLOCK_R": "constexpr",
           "BLOCK_H": "constexpr"}
    return (_copy_rows_kernel, sig, {"GATHER": gather, "ZERO": zero, "BLOCK_R": 4096 // block_h, "BLOCK_H": block_h})


def _exit_aot(dtype: str, has_keep: bool):
    sig = {"x_ptr": f"*{dtype}", "active_ptr": "*u8", "ids_ptr": "*i64", "keep_ptr": "*i64", "out_ptr": "*i8",
           "n": "i64", "num_keep": "i64", "bound": "fp32", "HAS_KEEP": "constexpr", "BLOCK": "constexpr"}
    return (_exit_mask_kernel, sig, {"HAS_KEEP": has_keep, "BLOCK": BLOCK})


def _select_aot(dtype: str):
    sig = {"x_ptr": f"*{dtype}", "rank_ptr": "*u8", "index_ptr": "*i64", "flat_ptr": "*i64", "T": "i32", "k": "i32",
           "BLOCK_I": "constexpr", "BLOCK_J": "constexpr"}
    return (_select_index_kernel, sig, {"BLOCK_I": BLOCK_I, "BLOCK_J": BLOCK_J})


AOT_KERNELS = [
    _exit_aot("fp32", True),
    _exit_aot("bf16", False),
    _exit_aot("fp16", True),
    (_row_count_kernel, {"active_ptr": "*u8", "counts_ptr": "*i32", "T": "i32", "BLOCK_T": "constexpr"},
     {"BLOCK_T": BLOCK_T}),
    (_row_index_kernel, {"active_ptr": "*u8", "cu_ptr": "*i64", "index_ptr": "*i64", "T": "i32",
                         "BLOCK_T": "constexpr"}, {"BLOCK_T": BLOCK_T}),
    _copy_aot("i32", True, False, 256),
    _copy_aot("i16", False, False, 1024),
    _copy_aot("i16", False, True, 1024),
    _copy_aot("i8", True, False, 16),
    _copy_aot("i64", False, False, 64),
    _select_aot("fp32"),
    _select_aot("bf16"),
    _select_aot("fp64"),
]
