"""Ranking metrics of a binary detector: ROC-AUC and recall at a fixed false-positive rate.

    roc_auc(s, y)       = P(s_pos > s_neg) + 0.5 P(s_pos = s_neg)   (Mann-Whitney U, ties at average rank)
    recall_at_fpr(s, y) = #{pos : s > tau} / #pos,  tau = the smallest score with #{neg : s > tau} <= fpr #neg
Both take scores [N] (any float dtype) and labels [N] (bool or 0/1) and return a Python float; nan when
one of the classes is absent.
"""
from __future__ import annotations

import math

import torch


def _flat(scores: torch.Tensor, labels: torch.Tensor):
    scores, labels = scores.detach().double().flatten().cpu(), labels.detach().bool().flatten().cpu()
    if scores.numel() != labels.numel():
        raise ValueError(f"scores and labels must have the same number of elements, got {scores.numel()} "
                         f"and {labels.numel()}")
    return scores, labels


def roc_auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve of `scores` for binary `labels` (ties share their average rank)."""
    scores, labels = _flat(scores, labels)
    n_pos = int(labels.sum())
    n_neg = labels.numel() - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    order = torch.argsort(scores)
    _, inverse, counts = torch.unique_consecutive(scores[order], return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    avg_rank = (ends - (counts.double() - 1) / 2)[inverse]  # 1-based average rank of each sorted score
    pos_rank_sum = avg_rank[labels[order]].sum().item()
    return (pos_rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def recall_at_fpr(scores: torch.Tensor, labels: torch.Tensor, fpr: float = 0.05) -> float:
    """Share of positives scored strictly above the threshold that lets at most `fpr` of the negatives
    through (a detector that must not flag more than 5% of the original tokens: how many replacements
    does it catch?)."""
    if not 0.0 <= fpr < 1.0:
        raise ValueError(f"fpr must be in [0, 1), got {fpr}")
    scores, labels = _flat(scores, labels)
    pos, neg = scores[labels], scores[~labels]
    if pos.numel() == 0 or neg.numel() == 0:
        return math.nan
    allowed = math.floor(fpr * neg.numel())  # negatives that may lie above the threshold
    neg_desc = torch.sort(neg, descending=True).values
    threshold = neg_desc[allowed].item()  # every negative at or below it stays below the cut
    return (pos > threshold).double().mean().item()
