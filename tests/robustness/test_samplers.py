"""Bad or extreme sampler settings: refused when they would give NaN probabilities, and extreme but valid ones
keep valid probabilities and draw valid ids."""
import pytest
import torch

import electra_fast.functional as EF
from electra_fast import samplers

V = 40


def _cluster(beta):
    return samplers.ClusterSampler(torch.arange(V) % 5, beta=beta, exclude_ids=[0, 1])


@pytest.mark.parametrize("beta", [0.0, 2.0, 800.0, 1e6, 1e300])
def test_any_finite_beta_gives_probabilities(beta):
    """beta = 1e6 used to underflow every weight to 0 while the counts are all equal: NaN probabilities (0/0),
    and sampling went on from them."""
    sampler = _cluster(beta)
    probs = sampler.cluster_probs()
    assert torch.isfinite(probs).all()
    torch.testing.assert_close(probs.sum(1), torch.ones(probs.shape[0], dtype=torch.float64))
    torch.testing.assert_close(probs[0], torch.full((5,), 0.2, dtype=torch.float64))  # equal counts: uniform
    sampler.counts[0, 3] += 5  # the discriminator missed cluster 3 for originals of cluster 0
    probs = sampler.cluster_probs()
    assert torch.isfinite(probs).all() and (beta == 0 or probs[0].argmax() == 3)
    if beta >= 800:
        assert probs[0, 3] == 1.0
    ids = torch.randint(2, V, (4, 16))
    corrupted, _, is_masked = EF.statistical_replace(ids, None, sampler, seed=0)
    assert ((corrupted >= 2) & (corrupted < V)).all() and is_masked.any()


@pytest.mark.parametrize("beta", [float("nan"), float("inf"), -1.0, -1e6, "2", True])
def test_a_beta_without_probabilities_is_refused(beta):
    with pytest.raises(ValueError, match="beta must be a finite float >= 0"):
        _cluster(beta)


def test_a_saved_bad_beta_is_refused_on_load():
    sampler = _cluster(2.0)
    state = sampler.state_dict()
    state["beta"] = torch.tensor(float("nan"), dtype=torch.float64)
    with pytest.raises(ValueError, match="beta must be a finite float >= 0"):
        _cluster(2.0).load_state_dict(state)


@pytest.mark.parametrize("build, message", [
    (lambda: samplers.UniformSampler(V, exclude_ids=range(V)), "excludes the whole vocabulary"),
    (lambda: samplers.UniformSampler(V, exclude_ids=[V]), "exclude_ids must lie in"),
    (lambda: samplers.UnigramSampler(torch.tensor([1.0, float("nan")])), "finite and non-negative"),
    (lambda: samplers.UnigramSampler(torch.tensor([-1.0, 2.0])), "finite and non-negative"),
    (lambda: samplers.UnigramSampler(torch.zeros(4)), "no token has a positive weight"),
    (lambda: samplers.ClusterSampler(torch.tensor([0, 5, -2])), "cluster ids in"),
])
def test_bad_tables_are_refused(build, message):
    with pytest.raises(ValueError, match=message):
        build()
