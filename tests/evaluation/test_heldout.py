"""electra_fast.evaluation.heldout: the fixed corrupted sets (same tokens for every model, cached by
content), the scores, and the errors for a model or a split that does not fit."""
import pytest
import torch

from electra_fast import evaluation
from electra_fast.data import SpecialIds
from electra_fast.models import ElectraConfig, ElectraForPretraining

IDS = SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4)
VOCAB = 200


def heldout_ids(n=12, t=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (n, t), generator=g)
    ids[:, 0], ids[:, -1] = IDS.cls, IDS.sep
    ids[0, 10:] = IDS.pad  # one padded row
    return ids


def counts():
    c = torch.zeros(VOCAB, dtype=torch.float64)
    c[5:50] = 100.0  # the unigram corrupter draws from these frequent tokens only
    c[50:] = 1.0
    return c


def model(vocab=VOCAB, **overrides):
    torch.manual_seed(0)
    cfg = ElectraConfig.preset("tiny", vocab_size=vocab, pad_token_id=0, cls_token_id=2, sep_token_id=3,
                               mask_token_id=4, max_position_embeddings=32, **overrides)
    return ElectraForPretraining(cfg)


def test_sets_share_positions_and_differ_only_in_the_corrupter():
    ids = heldout_ids()
    sets = evaluation.build_heldout_sets(ids, IDS, counts(), seed=0)
    uni, gram = sets.rtd["uniform"], sets.rtd["unigram"]
    changed_uni = uni.input_ids != ids
    changed_gram = gram.input_ids != ids
    assert torch.equal(uni.is_replaced, changed_uni) and torch.equal(gram.is_replaced, changed_gram)
    # both corrupt (a subset of) the same mask_tokens positions; the MLM set masks those positions too
    assert not (changed_uni & ~sets.mlm.is_masked).any() and not (changed_gram & ~sets.mlm.is_masked).any()
    assert 0.1 < sets.mlm.is_masked[uni.scored].float().mean() < 0.2
    # specials and padding are never corrupted nor scored
    special = (ids == IDS.cls) | (ids == IDS.sep) | (ids == IDS.pad)
    assert not (changed_uni & special).any() and not uni.scored[special].any()
    # the unigram corrupter draws frequent tokens, the uniform one any non-special token
    assert (gram.input_ids[changed_gram] < 50).float().mean() > 0.9
    assert (uni.input_ids[changed_uni] >= 50).float().mean() > 0.5
    assert not torch.isin(uni.input_ids[changed_uni], torch.tensor([0, 1, 2, 3, 4])).any()


def test_sets_are_fixed_by_seed_and_cached_by_content(tmp_path):
    ids = heldout_ids()
    a = evaluation.heldout_sets(ids, IDS, counts(), seed=0, cache_dir=tmp_path)
    assert len(list((tmp_path / "eval_sets").glob("*.pt"))) == 1
    b = evaluation.heldout_sets(ids, IDS, counts(), seed=0, cache_dir=tmp_path)
    assert torch.equal(a.rtd["unigram"].input_ids, b.rtd["unigram"].input_ids)
    c = evaluation.heldout_sets(ids, IDS, counts(), seed=1, cache_dir=tmp_path)
    assert not torch.equal(a.rtd["unigram"].input_ids, c.rtd["unigram"].input_ids)
    assert len(list((tmp_path / "eval_sets").glob("*.pt"))) == 2
    # a damaged cache file is rebuilt, not trusted
    for path in (tmp_path / "eval_sets").glob("*.pt"):
        path.write_bytes(b"garbage")
    d = evaluation.heldout_sets(ids, IDS, counts(), seed=0, cache_dir=tmp_path)
    assert torch.equal(a.rtd["uniform"].input_ids, d.rtd["uniform"].input_ids)


def test_scores_of_a_perfect_and_a_blind_detector():
    sets = evaluation.build_heldout_sets(heldout_ids(), IDS, counts())
    rtd_set = sets.rtd["uniform"]

    class Oracle(torch.nn.Module):
        def __init__(self, sign):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(()))
            self.sign = sign

        def forward(self, input_ids, attention_mask, token_type_ids):
            rows = {tuple(r.tolist()): i for i, r in enumerate(rtd_set.input_ids)}
            labels = torch.stack([rtd_set.is_replaced[rows[tuple(r.tolist())]] for r in input_ids])
            return None, self.sign * (labels.float() * 2 - 1)

    perfect = evaluation.score_discriminator(Oracle(1.0), rtd_set)
    assert perfect["auc"] == 1.0 and perfect["recall_at_fpr"] == 1.0 and perfect["accuracy"] == 1.0
    replaced = rtd_set.is_replaced[rtd_set.scored].double().mean().item()
    assert perfect["majority_rate"] == pytest.approx(1 - replaced)
    inverted = evaluation.score_discriminator(Oracle(-1.0), rtd_set)
    assert inverted["auc"] == 0.0 and inverted["recall_at_fpr"] == 0.0


def test_evaluate_an_untrained_model_scores_near_chance():
    sets = evaluation.build_heldout_sets(heldout_ids(40, 32), IDS, counts())
    out = evaluation.evaluate(model(), sets)
    assert set(out) >= {"auc_uniform", "auc_unigram", "recall5_uniform", "recall5_unigram", "mlm_accuracy",
                        "mlm_loss", "majority_uniform", "accuracy_unigram"}
    assert abs(out["auc_uniform"] - 0.5) < 0.15 and abs(out["auc_unigram"] - 0.5) < 0.15
    assert out["mlm_loss"] == pytest.approx(torch.log(torch.tensor(float(VOCAB))).item(), rel=0.1)
    # a statistical generator has no MLM head: the generator's metrics are left out
    stat = ElectraForPretraining(model().config.replace(generator="uniform"),
                                 __import__("electra_fast").samplers.UniformSampler(VOCAB))
    assert "mlm_accuracy" not in evaluation.evaluate(stat, sets)
    with pytest.raises(ValueError, match="network generator"):
        evaluation.score_generator(stat, sets.mlm)


def test_mismatched_model_or_empty_split_is_a_clear_error():
    sets = evaluation.build_heldout_sets(heldout_ids(), IDS, counts())
    with pytest.raises(ValueError, match=r"vocabulary \(300 tokens\) differs from the held-out set's \(200\)"):
        evaluation.evaluate(model(vocab=300), sets)
    other = model().config.replace(mask_token_id=7)
    with pytest.raises(ValueError, match="mask_token_id is 7 but the held-out set's tokenizer has 4"):
        evaluation.evaluate(ElectraForPretraining(other), sets)
    with pytest.raises(ValueError, match="held-out split is empty"):
        evaluation.build_heldout_sets(torch.zeros(0, 24, dtype=torch.int64), IDS, counts())
    with pytest.raises(ValueError, match=r"must lie in \[0, 200\)"):
        evaluation.build_heldout_sets(heldout_ids() + 500, IDS, counts())
    with pytest.raises(TypeError, match="electra_fast model"):
        evaluation.check_compatible(torch.nn.Linear(2, 2), sets)
