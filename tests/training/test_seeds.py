"""electra_fast.training.seeds: every (step, shard) pair has its own Philox offset and dropout seed."""
import pytest

from electra_fast.training.seeds import SHARD_BITS, dropout_seed, step_offset


def test_offsets_are_distinct_per_step_and_shard():
    seen = {step_offset(s, m) for s in range(50) for m in range(8)}
    assert len(seen) == 400
    assert step_offset(3, 0) != step_offset(0, 3)
    with pytest.raises(ValueError, match="shard"):
        step_offset(0, 2**SHARD_BITS)


def test_dropout_seeds_are_distinct_and_in_range():
    seeds = {dropout_seed(7, step_offset(s, m)) for s in range(50) for m in range(8)}
    assert len(seeds) == 400 and all(0 <= x < 2**63 for x in seeds)
    assert dropout_seed(0, step_offset(1, 0)) != dropout_seed(1, step_offset(1, 0))
