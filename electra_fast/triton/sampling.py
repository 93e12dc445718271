"""The row sampler of csrc/include/electra_fast/sampling.h in Triton, shared by the sample_replace kernel
(replace.py) and the fused generator head (generator_head.py), so both draw the same id from the same logits.

One program samples one row in BLOCK-wide passes: max (with the NaN/+inf check), fp64 normaliser, then an
fp64 prefix scan (block cumsum carried across blocks) that stops at the block holding u * Z. On a GPU the
block cumsum is a parallel scan whose prefixes need not grow with every zero weight, so a hit needs w > 0,
and with no hit the sample is the row's last positive weight (the contract's rule).
"""
import torch
import triton
import triton.language as tl

# The row outcomes of sampling.h's RowStatus (the same values).
ROW_SAMPLED = tl.constexpr(0)
ROW_NON_FINITE = tl.constexpr(1)
ROW_EMPTY = tl.constexpr(2)


def inverse_temperature(temperature: float) -> float:
    """inv_t of the contract: 1/T computed in fp64 and rounded once to fp32 (0.0 for T == 0, argmax), so the
    kernel's fp32 argument holds exactly the C++ launchers' value."""
    if temperature == 0.0:
        return 0.0
    return torch.tensor(1.0 / temperature, dtype=torch.float32).item()


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
        z = tl.zeros((), tl.float64)
        for start in range(0, V, BLOCK):
            j = start + cols
            x = tl.load(row + j, mask=j < V, other=float("-inf")).to(tl.float32)
            w = tl.where((j < V) & (j != skip), tl.exp((x - mx) * inv_t), 0.0)
            z += tl.sum(w.to(tl.float64), axis=0)
        target = u.to(tl.float64) * z
        run = tl.zeros((), tl.float64)
        pick = tl.zeros((), tl.int64) + big
        last = tl.zeros((), tl.int64) - 1
        start = tl.zeros((), tl.int64)
        while (start < V) & (pick == big):
            j = start + cols
            x = tl.load(row + j, mask=j < V, other=float("-inf")).to(tl.float32)
            w = tl.where((j < V) & (j != skip), tl.exp((x - mx) * inv_t), 0.0)
            cs = run + tl.cumsum(w.to(tl.float64), axis=0)
            pick = tl.min(tl.where((cs >= target) & (w > 0.0), j, big), axis=0)
            last = tl.maximum(last, tl.max(tl.where(w > 0.0, j, -1), axis=0))
            run += tl.sum(w.to(tl.float64), axis=0)
            start += BLOCK
        pick = tl.where(pick == big, last, pick)
    pick = tl.where(status == ROW_SAMPLED, pick, -1)
    return pick, status, mx
