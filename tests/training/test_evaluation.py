"""electra_fast.training.evaluation: ROC AUC against its pairwise definition."""
import math

import pytest
import torch

from electra_fast.training.evaluation import roc_auc


def test_roc_auc_matches_pairwise_definition():
    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 6, (200,), generator=g).float()  # many ties
    labels = torch.rand(200, generator=g) < 0.3
    pos, neg = scores[labels], scores[~labels]
    pairwise = ((pos[:, None] > neg[None, :]).double() + 0.5 * (pos[:, None] == neg[None, :]).double()).mean()
    assert roc_auc(scores, labels) == pytest.approx(pairwise.item(), abs=1e-12)
    assert roc_auc(torch.tensor([0.1, 0.9]), torch.tensor([False, True])) == 1.0
    assert math.isnan(roc_auc(torch.ones(3), torch.zeros(3, dtype=torch.bool)))
