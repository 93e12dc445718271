"""Masking and sampled replacement in plain PyTorch: the oracle of electra_fast.ops.replace.

Random words (Philox, see electra_fast/random.py); position p = b*T + t of a [B, T] batch uses counter p,
masked row m of the logits uses counter m, all in stream (seed, offset):

mask_tokens(input_ids [B,T], attention_mask [B,T]?) -> masked_ids [B,T], is_masked [B,T] bool
    real_t = attention_mask_t != 0;  candidate_t = real_t and id_t not in specials and id_t != mask_token_id
    k = min(max(1, round_half_even(n_real * mask_prob)), n_candidates)   (0 when no candidate)
    key_t = (word0_t << 31) | t;  masked = the k candidates with the smallest keys (a uniform k-subset)
    a masked position becomes mask_token_id iff uniform(word1_t) < mask_fraction (fp32), else keeps its id

sample_replace(logits [M,V], input_ids [B,T], is_masked [B,T]) -> corrupted [B,T], is_replaced [B,T], status [3]
    row m of logits belongs to the m-th masked position in row-major order; its sample is
    inverse_cdf_sample (electra_fast/reference/sampling.py) with u = uniform(word0 of counter m); with
    disallow_original the original id's logit counts as -inf. Rows with NaN/+inf logits or without a
    finite allowed logit keep the original. status = (#masked positions, #NaN/+inf rows, #empty rows).

statistical_fill(input_ids [B,T], is_masked [B,T], tables) -> corrupted [B,T], is_replaced [B,T]
    for a masked position with original o: row r = row_of_token[o] (R-1 when o is outside [0, V)),
    cluster c = first j with cdf[r, j] > uniform(word2) * cdf[r, K-1]   (fp64),
    token = members[offsets[c] + floor(word3 * (offsets[c+1] - offsets[c]) / 2^32)].
These materialise per-position words and, for sampling, [M, V] weights: oracles, not kernels.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch

from . import random as philox
from .sampling import inverse_cdf_sample

_NOT_CANDIDATE = 2**63 - 1


def _position_words(shape, seed: int, offset: int, device) -> torch.Tensor:
    b, t = shape
    return philox.philox_words(b * t, seed=seed, offset=offset, device=device).view(b, t, 4)


def mask_tokens(input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor], *, mask_prob: float,
                mask_token_id: int, special_token_ids: Sequence[int], mask_fraction: float, seed: int,
                offset: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """ELECTRA's masking of a [B, T] batch; mask_token_id < 0 means "no [MASK] token" (nothing replaced)."""
    b, t = input_ids.shape
    device = input_ids.device
    words = _position_words((b, t), seed, offset, device)
    real = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask != 0
    excluded = [int(s) for s in special_token_ids] + ([mask_token_id] if mask_token_id >= 0 else [])
    candidate = real & ~torch.isin(input_ids, torch.tensor(excluded, dtype=input_ids.dtype, device=device))
    n_real = real.sum(1)
    n_cand = candidate.sum(1)
    k = torch.round(n_real.double() * mask_prob).to(torch.int64).clamp(min=1)
    k = torch.where(n_cand > 0, torch.minimum(k, n_cand), torch.zeros_like(k))
    pos = torch.arange(t, dtype=torch.int64, device=device)
    key = words[..., 0].bitwise_left_shift(31).bitwise_or(pos)
    key = torch.where(candidate, key, torch.full_like(key, _NOT_CANDIDATE))
    kth = key.sort(dim=1).values.gather(1, (k - 1).clamp(min=0)[:, None]) if t else key[:, :1]
    is_masked = candidate & (key <= kth) & (k[:, None] > 0)
    u1 = philox.word_to_uniform(words[..., 1])
    to_mask = is_masked & (u1 < torch.tensor(mask_fraction, dtype=torch.float32))
    masked_ids = torch.where(to_mask, torch.full_like(input_ids, max(mask_token_id, 0)), input_ids)
    return masked_ids, is_masked


def sample_replace(logits: torch.Tensor, input_ids: torch.Tensor, is_masked: torch.Tensor, *, temperature: float,
                   disallow_original: bool, seed: int, offset: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Exact samples from softmax(logits / T) put at the masked positions (see the module docstring)."""
    flat_ids = input_ids.reshape(-1)
    positions = (is_masked.reshape(-1) != 0).nonzero().squeeze(1)
    count = positions.numel()
    n = min(count, logits.shape[0])
    positions = positions[:n]
    orig = flat_ids[positions].to(torch.int64)
    x = logits[:n].float()
    bad = (torch.isnan(x) | torch.isposinf(x)).any(1)
    if disallow_original and n:
        inside = (orig >= 0) & (orig < x.shape[1])
        x = x.clone()
        rows = torch.arange(n, device=x.device)[inside]
        x[rows, orig[inside]] = float("-inf")
    u = philox.uniform(n, seed=seed, offset=offset, device=logits.device)
    ids = inverse_cdf_sample(x, u, temperature)
    empty = (ids < 0) & ~bad
    new = torch.where(bad | empty, orig, ids)
    corrupted = flat_ids.clone()
    corrupted[positions] = new.to(corrupted.dtype)
    corrupted = corrupted.view_as(input_ids)
    status = torch.tensor([count, int(bad.sum()), int(empty.sum())], dtype=torch.int64, device=logits.device)
    return corrupted, corrupted != input_ids, status


def statistical_fill(input_ids: torch.Tensor, is_masked: torch.Tensor, row_of_token: torch.Tensor,
                     cdf: torch.Tensor, offsets: torch.Tensor, members: torch.Tensor, *, seed: int,
                     offset: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Replacements drawn from a statistical generator's tables at the masked positions."""
    words = _position_words(input_ids.shape, seed, offset, input_ids.device).view(-1, 4)
    flat_ids = input_ids.reshape(-1)
    positions = (is_masked.reshape(-1) != 0).nonzero().squeeze(1)
    orig = flat_ids[positions].to(torch.int64)
    w = words[positions]
    vocab, (rows, clusters) = row_of_token.numel(), cdf.shape
    inside = (orig >= 0) & (orig < vocab)
    row = torch.where(inside, row_of_token[orig.clamp(0, max(vocab - 1, 0))], torch.full_like(orig, rows - 1))
    u2 = philox.word_to_uniform(w[:, 2]).double()
    if rows == 1:
        target = u2 * cdf[0, -1]
        cluster = torch.searchsorted(cdf[0], target, right=True)
    else:
        table = cdf[row]
        target = u2 * table[:, -1]
        cluster = torch.searchsorted(table, target[:, None], right=True).squeeze(1)
    cluster = cluster.clamp(max=clusters - 1)
    begin = offsets[cluster]
    index = begin + (w[:, 3] * (offsets[cluster + 1] - begin)).bitwise_right_shift(32)
    corrupted = flat_ids.clone()
    corrupted[positions] = members[index].to(corrupted.dtype)
    corrupted = corrupted.view_as(input_ids)
    return corrupted, corrupted != input_ids
