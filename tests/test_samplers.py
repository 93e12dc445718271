"""The statistical generators of electra_fast.samplers: their draw distributions (chi-square tests that a
wrong distribution, an off-by-one id or a biased RNG fail), exclusions, C-RTS count updates (also through
torch.distributed), frequency clusters, device moves and checkpoints."""

import pytest
import torch
from scipy import stats

from electra_fast import samplers
from electra_fast import functional as F

VOCAB = 40
EXCLUDE = (0, 1, 2)


def _draw(sampler, *, originals, seed=0):
    """Replacements for every position of a [1, N] batch of originals (every position is masked)."""
    ids = originals[None, :]
    from electra_fast.ops.replace import statistical_fill_op

    out, _ = statistical_fill_op(ids.contiguous(), torch.ones_like(ids, dtype=torch.bool), *sampler.tables(), seed, 0)
    return out[0]


def _chi2(counts, p):
    keep = p > 0
    e = p[keep] * counts.sum()
    return (((counts[keep] - e) ** 2) / e).sum().item(), int(keep.sum()) - 1


def _assert_fits(counts, p, *, wrong):
    stat, dof = _chi2(counts, p)
    limit = stats.chi2.ppf(0.9999, dof)
    assert stat < limit, (stat, limit)
    for q in wrong:  # the same data rejects nearby wrong distributions: the test can fail
        assert _chi2(counts, q)[0] > limit


def test_uniform_sampler_distribution_and_exclusions():
    sampler = samplers.UniformSampler(VOCAB, exclude_ids=EXCLUDE)
    out = _draw(sampler, originals=torch.full((60000,), 7))
    counts = torch.bincount(out, minlength=VOCAB).double()
    assert counts[list(EXCLUDE)].sum() == 0
    p = sampler.probs()
    tilt = p * torch.linspace(0.9, 1.1, VOCAB, dtype=torch.float64)
    _assert_fits(counts, p, wrong=[tilt / tilt.sum(), torch.roll(p, 1)])


def test_unigram_sampler_distribution():
    counts_in = torch.arange(VOCAB, dtype=torch.float64) % 7  # zeros included: never drawn
    sampler = samplers.UnigramSampler.from_counts(counts_in, exclude_ids=EXCLUDE, power=0.75)
    out = _draw(sampler, originals=torch.full((80000,), 5), seed=3)
    counts = torch.bincount(out, minlength=VOCAB).double()
    p = sampler.probs()
    expected = counts_in ** 0.75
    expected[list(EXCLUDE)] = 0
    torch.testing.assert_close(p, expected / expected.sum())
    assert counts[p == 0].sum() == 0
    flat = counts_in.clamp(max=1) * (p > 0)  # power 0 instead of 0.75
    _assert_fits(counts, p, wrong=[flat / flat.sum(), torch.roll(p, 1)])


def test_cluster_sampler_distribution_follows_counts():
    t2c = torch.arange(VOCAB) % 4
    t2c[39] = -1  # a token without a cluster
    sampler = samplers.ClusterSampler(t2c, beta=2.0, exclude_ids=EXCLUDE)
    sampler.counts[1] = torch.tensor([1, 5, 3, 9])  # row of cluster 1
    probs = sampler.cluster_probs()
    norm = torch.tensor([0.0, 0.5, 0.25, 1.0], dtype=torch.float64)
    torch.testing.assert_close(probs[1], torch.softmax(2.0 * norm, 0))
    torch.testing.assert_close(probs[4], torch.full((4,), 0.25, dtype=torch.float64))  # unclustered originals
    n = 80000
    out = _draw(sampler, originals=torch.full((n,), 5), seed=1)  # token 5 is in cluster 1
    assert not torch.isin(out, torch.tensor(EXCLUDE + (39,))).any()
    got = torch.bincount(t2c[out], minlength=4).double()
    _assert_fits(got, probs[1], wrong=[torch.softmax(2.2 * norm, 0), torch.roll(probs[1], 1)])
    # inside a cluster the token is uniform
    in_three = out[t2c[out] == 3]
    members = torch.bincount(in_three, minlength=VOCAB).double()[3::4][:9]
    _assert_fits(members, torch.full((9,), 1 / 9, dtype=torch.float64), wrong=[])
    out_none = _draw(sampler, originals=torch.full((20000,), 39), seed=2)
    _assert_fits(torch.bincount(t2c[out_none], minlength=4).double(), probs[4], wrong=[])


def test_cluster_sampler_update_rule():
    t2c = torch.tensor([0, 0, 1, 1, 2, 2, -1])
    sampler = samplers.ClusterSampler(t2c)
    original = torch.tensor([[0, 2, 4, 1, 6, 3]])
    corrupted = torch.tensor([[2, 2, 0, 5, 1, 4]])
    replaced = corrupted != original  # position 1 not replaced: ignored
    predicted = torch.tensor([[0.5, 9.0, -1.0, -2.0, -3.0, 4.0]])  # logits: > 0 = "replaced"
    sampler.update(original, corrupted, replaced, predicted)
    expected = torch.ones(3, 3, dtype=torch.int64)
    expected[0, 1] -= 1  # 0 -> 2 caught (right)
    expected[2, 0] += 1  # 4 -> 0 missed (wrong)
    expected[0, 2] += 1  # 1 -> 5 missed
    expected[1, 2] -= 1  # 3 -> 4 caught; 6 -> 1 has an unclustered original: ignored
    assert torch.equal(sampler.counts, expected)
    sampler.update(original, corrupted, replaced, predicted > 0)  # bool predictions
    assert sampler.counts[2, 0] == 3


def test_cluster_sampler_update_all_reduces(tmp_path):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        sampler = samplers.ClusterSampler(torch.tensor([0, 1]))
        sampler.update(torch.tensor([0]), torch.tensor([1]), torch.tensor([True]), torch.tensor([False]))
        assert sampler.counts.tolist() == [[1, 2], [1, 1]]
    finally:
        dist.destroy_process_group()


def test_from_frequencies_equal_mass_buckets():
    counts = torch.zeros(1000, dtype=torch.float64)
    counts[10:] = 1.0
    counts[5] = 490.0  # a third of the mass in one token
    sampler = samplers.ClusterSampler.from_frequencies(counts, num_clusters=10, exclude_ids=(0,))
    t2c = sampler.row_of_token.clone()
    k = sampler.num_clusters
    assert k <= 10 and t2c[0] == k  # excluded: no cluster
    mass = torch.zeros(k, dtype=torch.float64).index_add_(0, t2c[1:], counts[1:])
    assert mass[t2c[5]] == 490.0 and (t2c[1:] == t2c[5]).sum() == 1  # the heavy token alone
    rest = mass[torch.arange(k) != t2c[5]]
    share = counts.sum() / 10  # 148: buckets of equal mass, one of them partly taken by the heavy token
    assert (rest <= share + 1).all() and ((rest - share).abs() <= 1).sum() == len(rest) - 1
    assert torch.equal(sampler.offsets[-1], torch.tensor(999))


def test_to_state_dict_round_trip():
    sampler = samplers.ClusterSampler.from_frequencies(torch.arange(VOCAB, dtype=torch.float64) + 1, 5)
    sampler.counts[0, 1] = 7
    assert sampler.to("cpu") is sampler
    state = sampler.state_dict()
    fresh = samplers.ClusterSampler.from_frequencies(torch.arange(VOCAB, dtype=torch.float64) + 1, 5)
    fresh.load_state_dict(state)
    for a, b in zip(fresh.tables(), sampler.tables()):
        assert torch.equal(a, b)
    state["counts"] = torch.ones(2, 2, dtype=torch.int64)
    with pytest.raises(ValueError, match="counts has shape"):
        fresh.load_state_dict(state)
    uni = samplers.UnigramSampler(torch.ones(VOCAB))
    uni2 = samplers.UnigramSampler(torch.ones(VOCAB) * 3)
    uni2.load_state_dict(uni.state_dict())
    assert torch.equal(uni2.cdf, uni.cdf)
    with pytest.raises(KeyError, match="missing"):
        uni2.load_state_dict({})


def test_sampler_bad_arguments():
    with pytest.raises(ValueError, match="vocab_size"):
        samplers.UniformSampler(0)
    with pytest.raises(ValueError, match="exclude_ids must lie"):
        samplers.UniformSampler(5, exclude_ids=(9,))
    with pytest.raises(ValueError, match="whole vocabulary"):
        samplers.UniformSampler(2, exclude_ids=(0, 1))
    with pytest.raises(ValueError, match="finite and non-negative"):
        samplers.UnigramSampler(torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match="cluster ids"):
        samplers.ClusterSampler(torch.tensor([0, -2]))
    with pytest.raises(ValueError, match="every cluster is empty"):
        samplers.ClusterSampler(torch.tensor([0, 0]), exclude_ids=(0, 1))


def test_statistical_replace_masking_rate():
    ids = torch.randint(5, VOCAB, (2000, 20))
    _, replaced, is_masked = F.statistical_replace(ids, None, samplers.UniformSampler(VOCAB, EXCLUDE), seed=4)
    assert (is_masked.sum(1) == 3).all()  # round(20 * 0.15) = 3
    assert not (replaced & ~is_masked).any()
    # a uniform draw over 37 allowed ids keeps the original 1/37 of the time
    keep = 1 - replaced[is_masked].double().mean().item()
    assert abs(keep - 1 / 37) < 4 * (1 / 37 * 36 / 37 / is_masked.sum().item()) ** 0.5
