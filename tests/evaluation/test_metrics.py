"""electra_fast.evaluation.metrics: ROC-AUC and recall at a fixed false-positive rate, against their
pairwise / counting definitions."""
import math

import pytest
import torch

from electra_fast.evaluation import recall_at_fpr, roc_auc


def test_roc_auc_matches_pair_counting_with_ties():
    g = torch.Generator().manual_seed(1)
    scores = torch.randint(0, 5, (60,), generator=g).float()
    labels = torch.rand(60, generator=g) < 0.4
    pos, neg = scores[labels], scores[~labels]
    pairs = (pos[:, None] > neg[None, :]).double() + 0.5 * (pos[:, None] == neg[None, :]).double()
    assert roc_auc(scores, labels) == pytest.approx(pairs.mean().item(), abs=1e-12)
    assert roc_auc(torch.tensor([0.1, 0.9]), torch.tensor([False, True])) == 1.0
    assert roc_auc(torch.tensor([0.9, 0.1]), torch.tensor([False, True])) == 0.0
    assert math.isnan(roc_auc(torch.ones(3), torch.zeros(3, dtype=torch.bool)))


def test_recall_at_fpr_counts_positives_above_the_negative_quantile():
    neg = torch.arange(100, dtype=torch.float32)          # 100 negatives scored 0..99
    pos = torch.tensor([94.5, 95.5, 99.5, 10.0])          # 2 above the 5% cut (95 passes 4 negatives: 96..99)
    scores = torch.cat([neg, pos])
    labels = torch.cat([torch.zeros(100, dtype=torch.bool), torch.ones(4, dtype=torch.bool)])
    # at most 5 negatives may lie above the threshold: the threshold is the 6th highest negative, 94
    assert recall_at_fpr(scores, labels, 0.05) == pytest.approx(3 / 4)
    assert recall_at_fpr(scores, labels, 0.0) == pytest.approx(1 / 4)   # above every negative: only 99.5
    assert math.isnan(recall_at_fpr(neg, torch.zeros(100, dtype=torch.bool)))


def test_recall_at_fpr_never_lets_more_negatives_through_than_allowed():
    g = torch.Generator().manual_seed(3)
    scores = torch.randint(0, 20, (500,), generator=g).float()  # many ties
    labels = torch.rand(500, generator=g) < 0.3
    neg = scores[~labels]
    for fpr in (0.01, 0.05, 0.2):
        threshold_pass = [s for s in torch.unique(scores).tolist()
                          if (neg > s).sum().item() <= math.floor(fpr * neg.numel())]
        best = min(threshold_pass)
        expected = (scores[labels] > best).double().mean().item()
        assert recall_at_fpr(scores, labels, fpr) == pytest.approx(expected)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="same number of elements"):
        roc_auc(torch.zeros(3), torch.zeros(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="fpr must be in"):
        recall_at_fpr(torch.zeros(3), torch.zeros(3, dtype=torch.bool), 1.5)
