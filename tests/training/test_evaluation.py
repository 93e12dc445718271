"""electra_fast.training.evaluation: the run's own held-out metrics next to the fixed yardstick."""
import pytest
import torch

from electra_fast import evaluation
from electra_fast.data import SpecialIds, collate
from electra_fast.models import ElectraConfig, ElectraForPretraining
from electra_fast.training.evaluation import evaluate

IDS = SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4)


def test_evaluate_reports_majority_rate_and_fixed_set_scores():
    torch.manual_seed(0)
    config = ElectraConfig.preset("tiny", vocab_size=64, pad_token_id=0, cls_token_id=2, sep_token_id=3,
                                  mask_token_id=4)
    model = ElectraForPretraining(config)
    ids = torch.randint(5, 64, (6, 16))
    ids[:, 0], ids[:, -1] = IDS.cls, IDS.sep
    yardstick = evaluation.build_heldout_sets(ids, IDS, torch.bincount(ids.flatten(), minlength=64))
    out = evaluate(model, [collate(ids, IDS)], torch.device("cpu"), yardstick)
    # the majority rate is the share of real tokens the run's own generator left unchanged
    assert 0.7 < out["rtd_majority"] < 1.0
    for name in ("auc_uniform", "auc_unigram", "mlm_accuracy", "majority_unigram"):
        assert name in out
    assert out["tokens"] == ids.numel()
    assert out == pytest.approx(evaluate(model, [collate(ids, IDS)], torch.device("cpu"), yardstick))
