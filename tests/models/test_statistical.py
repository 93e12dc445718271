"""Statistical generators (uniform RTS, unigram, cluster C-RTS): no MLM loss, no generator, C-RTS counts
updated from the discriminator's predictions in training mode only."""
import pytest
import torch

from electra_fast.flops import train_step_flops
from electra_fast.models import ElectraForPretraining
from electra_fast.samplers import ClusterSampler, UniformSampler, UnigramSampler

from .helpers import CLS, MASK, PAD, SEP, VOCAB, batch, one_thread, tiny_config, train  # noqa: F401 (autouse fixture)

SPECIALS = (PAD, CLS, SEP, MASK)


def make_sampler(kind):
    counts = torch.arange(VOCAB, 0, -1, dtype=torch.float64)  # a Zipf-like corpus
    if kind == "uniform":
        return UniformSampler(VOCAB, exclude_ids=SPECIALS)
    if kind == "unigram":
        return UnigramSampler.from_counts(counts, exclude_ids=SPECIALS)
    return ClusterSampler.from_frequencies(counts, num_clusters=8, exclude_ids=SPECIALS)


@pytest.mark.parametrize("kind", ["uniform", "unigram", "cluster"])
def test_statistical_generator_outputs(kind):
    model = ElectraForPretraining(tiny_config(generator=kind), sampler=make_sampler(kind))
    assert model.generator is None
    ids, mask = batch()
    out = model(ids, mask, seed=1)
    assert out.mlm_loss is None and out.generator_accuracy is None
    torch.testing.assert_close(out.loss, 50.0 * out.rtd_loss)
    assert out.is_replaced.any()
    assert not (out.is_replaced & ~out.is_masked).any()
    assert not torch.isin(out.corrupted_ids[out.is_replaced], torch.tensor(SPECIALS)).any()
    assert train_step_flops(model.config, 4, 24).generator == 0


@pytest.mark.parametrize("kind", ["uniform", "unigram", "cluster"])
def test_statistical_generator_overfits_in_50_steps(kind):
    torch.manual_seed(0)
    model = ElectraForPretraining(tiny_config(generator=kind), sampler=make_sampler(kind))
    ids, mask = batch()
    losses = train(model, ids, mask, 50)
    assert losses[-1] < 0.5 * losses[0], losses[::10]


def test_cluster_counts_follow_discriminator_in_training_only():
    sampler = make_sampler("cluster")
    model = ElectraForPretraining(tiny_config(generator="cluster"), sampler=sampler)
    ids, mask = batch()
    before = sampler.counts.clone()
    model.eval()
    model(ids, mask, seed=1)
    assert torch.equal(sampler.counts, before)
    model.train()
    out = model(ids, mask, seed=1)
    expected = before.clone()
    real = out.is_replaced
    c = sampler.row_of_token
    k = sampler.num_clusters
    for o, r, p in zip(ids[real].tolist(), out.corrupted_ids[real].tolist(), (out.disc_logits[real] > 0).tolist()):
        if c[o] < k and c[r] < k:
            expected[c[o], c[r]] += -1 if p else 1
    assert not torch.equal(expected, before)
    assert torch.equal(sampler.counts, expected)


def test_sampler_state_travels_with_state_dict():
    sampler = make_sampler("cluster")
    model = ElectraForPretraining(tiny_config(generator="cluster"), sampler=sampler)
    ids, mask = batch()
    model(ids, mask, seed=1)
    assert not torch.equal(sampler.counts, torch.ones_like(sampler.counts))
    state = model.state_dict()
    fresh_sampler = make_sampler("cluster")
    fresh = ElectraForPretraining(tiny_config(generator="cluster"), sampler=fresh_sampler)
    fresh.load_state_dict(state)
    assert torch.equal(fresh_sampler.counts, sampler.counts)
