"""The row sampler of csrc/include/electra_fast/sampling.h in Triton, shared by the sample_replace kernel
(replace.py) and the fused generator head (generator_head.py), so both draw the same id from the same logits.

One program samples one row in BLOCK-wide passes: max (with the NaN/+inf check), fp64 normaliser, then an
fp64 prefix scan (block cumsum carried across blocks) that stops at the block holding t = u * Z. On a GPU the
block cumsum is a parallel scan whose prefixes need not grow with every zero weight, so a hit needs w > 0.
A hit within NEAR_TIE * Z of t, or no hit, is a near tie: the row is scanned again with the fp64 weights
(the contract's rule; the last positive weight if that finds no hit either).
"""
import triton
import triton.language as tl

from ..reference.sampling import NEAR_TIE as _NEAR_TIE

# The row outcomes of sampling.h's RowStatus (the same values).
ROW_SAMPLED = tl.constexpr(0)
ROW_NON_FINITE = tl.constexpr(1)
ROW_EMPTY = tl.constexpr(2)
NEAR_TIE = tl.constexpr(_NEAR_TIE)


@triton.jit
def sample_row(row, V, skip, inv_t, u, GREEDY: tl.constexpr, BLOCK: tl.constexpr):
    """(id int64, status, max fp32) for logits row[0..V) with id `skip` excluded (-1: none) and uniform u;
    id is -1 unless status == ROW_SAMPLED; max is over the ids other than skip."""
    cols = tl.arange(0, BLOCK).to(tl.int64)
    mx = tl.full((), float("-inf"), tl.float32)
    bad = tl.zeros((), tl.int32)
    for start in range(0, V, BLOCK):
        j = start + cols
        x = tl.load(row + j, mask=j < V, other=float("-inf")).to(tl.float32)
        bad = bad | tl.max(((x != x) | (x == float("inf"))).to(tl.int32), axis=0)
        x = tl.where(j == skip, float("-inf"), x)
        mx = tl.maximum(mx, tl.max(x, axis=0))
    status = tl.where(bad != 0, ROW_NON_FINITE, tl.where(mx == float("-inf"), ROW_EMPTY, ROW_SAMPLED))
    big = V + BLOCK
    if GREEDY:
        pick = tl.zeros((), tl.int64) + big
        for start in range(0, V, BLOCK):
            j = start + cols
            x = tl.load(row + j, mask=j < V, other=float("-inf")).to(tl.float32)
            hit = (x == mx) & (j < V) & (j != skip)
            pick = tl.minimum(pick, tl.min(tl.where(hit, j, big), axis=0))
    else:
        pick = _inverse_cdf(row, V, skip, mx, inv_t, u, NEAR_TIE, False, BLOCK)
        if pick < 0:
            pick = _inverse_cdf(row, V, skip, mx, inv_t, u, -1.0, True, BLOCK)
    pick = tl.where(status == ROW_SAMPLED, pick, -1)
    return pick, status, mx


@triton.jit
def _inverse_cdf(row, V, skip, mx, inv_t, u, near_tie, FP64: tl.constexpr, BLOCK: tl.constexpr):
    """The first j with w_j > 0 and S_j >= u * Z over the fp32 weights (FP64: the fp64 ones), or -1 when that is
    within near_tie * Z of S_{j-1} or S_j or no j is found; near_tie < 0: no near ties, and the last positive
    weight when no j is found."""
    cols = tl.arange(0, BLOCK).to(tl.int64)
    big = V + BLOCK
    z = tl.zeros((), tl.float64)
    for start in range(0, V, BLOCK):
        j = start + cols
        z += tl.sum(_weights(row, j, V, skip, mx, inv_t, FP64), axis=0)
    target = u.to(tl.float64) * z
    margin = near_tie * z
    run = tl.zeros((), tl.float64)
    pick = tl.zeros((), tl.int64) + big
    near = tl.zeros((), tl.int1)
    last = tl.zeros((), tl.int64) - 1
    start = tl.zeros((), tl.int64)
    while (start < V) & (pick == big):
        j = start + cols
        w = _weights(row, j, V, skip, mx, inv_t, FP64)
        cs = run + tl.cumsum(w, axis=0)
        pick = tl.min(tl.where((cs >= target) & (w > 0.0), j, big), axis=0)
        above = tl.sum(tl.where(j == pick, cs, 0.0), axis=0)
        below = above - tl.sum(tl.where(j == pick, w, 0.0), axis=0)
        near = (pick != big) & (margin >= 0.0) & ((above - target < margin) | (target - below < margin))
        last = tl.maximum(last, tl.max(tl.where(w > 0.0, j, -1), axis=0))
        run += tl.sum(w, axis=0)
        start += BLOCK
    if near_tie < 0.0:
        pick = tl.where(pick == big, last, pick)
    else:
        pick = tl.where((pick == big) | near, -1, pick)
    return pick


@triton.jit
def _weights(row, j, V, skip, mx, inv_t, FP64: tl.constexpr):
    """The row's weights at j as fp64 (0 past V and at skip): the fp32 exp((x - mx) * inv_t), or with FP64 the
    fp64 exp(float64(x - mx) * float64(inv_t))."""
    x = tl.load(row + j, mask=j < V, other=float("-inf")).to(tl.float32)
    d = x - mx
    if FP64:
        w = tl.exp(d.to(tl.float64) * inv_t)  # fp64 times the fp32 inv_t: exact
    else:
        w = tl.exp(d * inv_t).to(tl.float64)
    return tl.where((j < V) & (j != skip), w, 0.0)
