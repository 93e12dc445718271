"""Token-level early exit in plain PyTorch: the oracle of electra_fast.ops.early_exit.

Shapes: B rows of T tokens, hidden size H, N active tokens in all, L = the most active tokens of a row.

exit_mask: exit_logits [B,T] float, active [B,T] bool, input_ids [B,T] int, keep_ids [K] int -> [B,T] bool
    still_active = active & (conf < threshold | input_ids in keep_ids),  conf = max(p, 1 - p), p = sigmoid(x)
  conf = sigmoid(|x|) is increasing in |x|, so the test is evaluated exactly, without rounding a sigmoid:
    conf < threshold  <=>  |x| < logit(threshold),  logit(t) = log(t) - log1p(-t) in float64 (inf at t = 1)
  A token exactly at the threshold exits; t <= 0.5 lets every token exit; NaN logits exit.

compact: active [B,T] bool -> index [N] int64, cu_seqlens [B+1] int32, max_seqlen
    index      = flat positions b*T + t of the active tokens, row by row, in order (a per-row prefix sum)
    cu_seqlens = [0, n_0, n_0 + n_1, ...] (n_b = active tokens of row b; flash-attention's varlen layout)
gather_rows(src [M,H], index [N]) -> src[index]                                          [N,H]
scatter_rows(tokens [N,H]?, index [N], base [M,H]?, M) -> base (zeros if None) with rows index := tokens
                                                         (zero rows if tokens is None)  [M,H]
padded_index(cu_seqlens, max_seqlen) -> [N] int64: position b*L + j of packed token cu_seqlens[b] + j in [B,L]

select_tokens: hidden [B,T,H], logits [B,T] float, rank [B,T] uint8, k -> tokens [B,k,H], index [B,k] int64
    row b keeps the k positions of smallest key(t) = (c << 61) | (conf << 30) | t, in ascending order:
    c = min(rank, 2) (0 kept id, 1 ordinary, 2 inactive); conf = the bits of |float32(logit)| when
    c == 1, else 0, with every NaN as 0x7FFFFFFF (above +inf). tokens[b, j] = hidden[b, index[b, j]].
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch


def threshold_logit(threshold: float) -> float:
    """logit(threshold) in float64: the bound on |logit| below which a token stays active."""
    if threshold >= 1.0:
        return math.inf
    return math.log(threshold) - math.log1p(-threshold)


def exit_mask(exit_logits: torch.Tensor, active: torch.Tensor, threshold: float,
              keep_ids: Optional[torch.Tensor] = None, input_ids: Optional[torch.Tensor] = None) -> torch.Tensor:
    """[B,T] bool: still active after an exit layer (see the module docstring)."""
    stays = exit_logits.detach().double().abs() < threshold_logit(threshold)
    if keep_ids is not None:
        stays = stays | torch.isin(input_ids, keep_ids.to(input_ids.dtype))
    return active & stays


def compact(active: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, int]:
    """(index [N] int64, cu_seqlens [B+1] int32, max_seqlen) of a [B,T] bool mask. One host sync."""
    counts = active.sum(1, dtype=torch.int64)
    cu = torch.zeros(active.shape[0] + 1, dtype=torch.int64, device=active.device)
    torch.cumsum(counts, 0, out=cu[1:])
    index = active.reshape(-1).nonzero().reshape(-1)
    max_seqlen = int(counts.max()) if counts.numel() else 0
    return index, cu.to(torch.int32), max_seqlen


def gather_rows(src: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return src.index_select(0, index)


def scatter_rows(tokens: Optional[torch.Tensor], index: torch.Tensor, base: Optional[torch.Tensor],
                 num_rows: int) -> torch.Tensor:
    like = tokens if tokens is not None else base
    out = base.clone() if base is not None else like.new_zeros((num_rows, like.shape[1]))
    rows = tokens if tokens is not None else out.new_zeros((index.numel(), out.shape[1]))
    return out.index_copy(0, index, rows)


def padded_index(cu_seqlens: torch.Tensor, max_seqlen: int) -> torch.Tensor:
    """[N] int64: where each packed token sits in the flattened [B, max_seqlen] padded layout."""
    cu = cu_seqlens.to(torch.int64)
    n = torch.arange(int(cu[-1]), device=cu.device)
    row = torch.searchsorted(cu[1:], n, right=True)
    return row * max_seqlen + n - cu[row]


def keep_keys(logits: torch.Tensor, rank: torch.Tensor) -> torch.Tensor:
    """[B,T] int64: select_tokens' key of every position (see the module docstring)."""
    magnitude = logits.detach().float().contiguous().view(torch.int32) & 0x7FFFFFFF
    conf = torch.where(magnitude > 0x7F800000, 0x7FFFFFFF, magnitude).to(torch.int64)
    c = rank.to(torch.int64).clamp(max=2)
    t = torch.arange(logits.shape[1], device=logits.device)
    return (c << 61) | torch.where(c == 1, conf << 30, 0) | t


def select_tokens(hidden: torch.Tensor, logits: torch.Tensor, rank: torch.Tensor,
                  k: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """(tokens [B,k,H], index [B,k] int64): each row's k positions of smallest key, ascending."""
    smallest = keep_keys(logits, rank).topk(k, dim=1, largest=False).values
    index = (smallest & (2**30 - 1)).sort(dim=1).values
    return hidden.gather(1, index[..., None].expand(-1, -1, hidden.shape[2])), index


# The public ops in [B,T,H] terms, through autograd: the oracle for values and gradients.

def gather_tokens(hidden: torch.Tensor, active: torch.Tensor):
    """(tokens [N,H], index [N], cu_seqlens [B+1] int32, max_seqlen): the active tokens, row by row."""
    index, cu, max_seqlen = compact(active)
    return hidden.reshape(-1, hidden.shape[-1])[index], index, cu, max_seqlen


def scatter_tokens(tokens: torch.Tensor, index: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """base [B,T,H] with the rows at the flat positions `index` replaced by tokens [N,H]."""
    flat = base.reshape(-1, base.shape[-1])
    return flat.index_copy(0, index, tokens).view(base.shape)


def pad_packed(packed, batch_size: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """(padded [B,L,H] with zeros after each row's tokens, pad_mask [B,L] bool, True at real tokens)."""
    tokens, _, cu, max_seqlen = packed
    counts = cu[1:].to(torch.int64) - cu[:-1].to(torch.int64)
    pad_mask = torch.arange(max_seqlen, device=tokens.device) < counts[:, None]
    padded = tokens.new_zeros((batch_size * max_seqlen, tokens.shape[1]))
    padded = padded.index_copy(0, padded_index(cu, max_seqlen), tokens)
    return padded.view(batch_size, max_seqlen, tokens.shape[1]), pad_mask


def unpad(padded: torch.Tensor, packed) -> torch.Tensor:
    """[N,H]: the real tokens of padded [B,L,H] in packed order (the inverse of pad_packed)."""
    _, _, cu, max_seqlen = packed
    return padded.reshape(-1, padded.shape[-1])[padded_index(cu, max_seqlen)]
