"""Held-out evaluation: RTD loss, accuracy and ROC AUC of the discriminator on fixed held-out batches.

Batch i runs in eval mode with seed EVAL_SEED and Philox offset EVAL_OFFSET + i, so the masked positions (and a
statistical generator's replacements) are the same in every evaluation of every run. EVAL_OFFSET (2^61) lies
beyond every training offset (step * 2^20 + shard) of a run shorter than 2^41 steps.
"""
from __future__ import annotations

import torch
from torch import nn

EVAL_SEED = 0x5EED
EVAL_OFFSET = 2**61


@torch.no_grad()
def evaluate(model: nn.Module, batches: list[dict], device: torch.device) -> dict:
    """{rtd_loss, rtd_accuracy, rtd_auc, tokens} over the real (unpadded) tokens of `batches`; the loss and
    accuracy are token-weighted means."""
    model.eval()
    loss_sum = correct = tokens = 0.0
    scores, labels = [], []
    for i, batch in enumerate(batches):
        batch = {k: t.to(device) for k, t in batch.items()}
        out = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"],
                    seed=EVAL_SEED, offset=EVAL_OFFSET + i, step=None)
        real = batch["attention_mask"].bool()
        n = real.sum().item()
        loss_sum += out.rtd_loss.float().item() * n
        correct += out.rtd_accuracy.float().item() * n
        tokens += n
        scores.append(out.disc_logits.float()[real].cpu())
        labels.append(out.is_replaced[real].cpu())
    return {"rtd_loss": loss_sum / tokens, "rtd_accuracy": correct / tokens,
            "rtd_auc": roc_auc(torch.cat(scores), torch.cat(labels)), "tokens": int(tokens)}


def roc_auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve of `scores` for binary `labels` (ties share their average rank); nan if
    one class is absent."""
    scores, labels = scores.double().flatten(), labels.bool().flatten()
    n_pos = int(labels.sum())
    n_neg = labels.numel() - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = torch.argsort(scores)
    sorted_scores = scores[order]
    _, inverse, counts = torch.unique_consecutive(sorted_scores, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    avg_rank = (ends - (counts.double() - 1) / 2)[inverse]  # 1-based average rank of each sorted score
    pos_rank_sum = avg_rank[labels[order]].sum().item()
    return (pos_rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
