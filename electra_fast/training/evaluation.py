"""Held-out evaluation during training: the run's own RTD task and the fixed yardstick.

    evaluate(model, batches, device, yardstick) -> {
        rtd_loss, rtd_accuracy, rtd_auc, rtd_majority, tokens   the run's own task: held-out batch i in eval
            mode with seed EVAL_SEED and Philox offset EVAL_OFFSET + i, corrupted by the run's own generator
            (so it changes as the generator learns); rtd_majority is the accuracy of answering "original"
            everywhere, the floor rtd_accuracy has to beat
        auc_uniform, auc_unigram, recall5_*, accuracy_*, majority_*, mlm_accuracy, mlm_loss
            the fixed yardstick (electra_fast.evaluation): the same corrupted tokens for every run and step}
EVAL_OFFSET (2^61) lies beyond every training offset (step * 2^20 + shard) of a run shorter than 2^41 steps.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .. import evaluation
from .distributed import full_parameters, unwrap

EVAL_SEED = 0x5EED
EVAL_OFFSET = 2**61


@torch.no_grad()
def evaluate(model: nn.Module, batches: list[dict], device: torch.device,
             yardstick: Optional[evaluation.HeldoutSets] = None) -> dict:
    """The run's own held-out RTD metrics over the real tokens of `batches` (token-weighted means), plus
    the fixed yardstick's scores when `yardstick` is given. Leaves the model in eval mode."""
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
    replaced = torch.cat(labels)
    result = {"rtd_loss": loss_sum / tokens, "rtd_accuracy": correct / tokens,
              "rtd_auc": evaluation.roc_auc(torch.cat(scores), replaced),
              "rtd_majority": 1.0 - replaced.double().mean().item(), "tokens": int(tokens)}
    if yardstick is not None:
        with full_parameters(model):  # the yardstick calls the discriminator and generator outside forward
            result.update(evaluation.evaluate(unwrap(model), yardstick))
    return result
