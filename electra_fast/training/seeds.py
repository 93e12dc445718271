"""The random streams of a training step: which Philox offset and torch seed each micro-batch uses.

Micro-batch m (shard m = rank * A + k of a step with W ranks and A accumulation micro-steps) of step s:
    offset = s * 2^SHARD_BITS + m                            its Philox stream (the model uses 2*offset, 2*offset+1)
    torch seed = (seed ^ (offset * 0x9E3779B97F4A7C15)) mod 2^63    set before it, for dropout
so both depend on (seed, s, m) only, never on the process layout or on resuming. W * A is at most
2^SHARD_BITS.
"""
from __future__ import annotations

SHARD_BITS = 20


def step_offset(step: int, shard: int) -> int:
    """The Philox offset of micro-batch `shard` of step `step` (distinct for every pair)."""
    if not 0 <= shard < 2**SHARD_BITS:
        raise ValueError(f"shard must be in [0, 2^{SHARD_BITS}), got {shard}")
    return (step << SHARD_BITS) | shard


def dropout_seed(seed: int, offset: int) -> int:
    """The torch seed of the micro-batch with Philox offset `offset`: the run's seed mixed with the offset
    by a multiplicative (Fibonacci) hash, in [0, 2^63)."""
    return (seed ^ (offset * 0x9E3779B97F4A7C15)) % 2**63
