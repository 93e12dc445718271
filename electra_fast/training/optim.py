"""AdamW and its learning-rate schedule for pre-training.

AdamW with β 0.9/0.999, the preset's ε and peak rate, weight decay on matrices and embeddings only (biases and
LayerNorm weights excluded); the rate of step s (0-based) of S is peak * lr_factor(s, warmup, S).
"""
from __future__ import annotations

import torch
from torch import nn


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up over `warmup` steps, then linear decay to 0 at `total` (ELECTRA's schedule):
    min((s+1)/warmup, (total-s)/(total-warmup)), clamped at 0."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: decay on weight matrices and embeddings; none on biases and LayerNorm (1-D) parameters."""
    decay, no_decay = [], []
    for _name, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def adamw(model: nn.Module, *, lr: float, eps: float, weight_decay: float, warmup: int, total_steps: int
          ) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """The optimizer of `model` and its scheduler (stepped once per optimizer step). AdamW is torch's fused
    kernel where it has one (CPU and CUDA): one pass over each parameter instead of a dozen element-wise ops."""
    fused = all(p.device.type in ("cpu", "cuda") for p in model.parameters())
    optimizer = torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=(0.9, 0.999), eps=eps,
                                  fused=fused or None)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, warmup, total_steps))
    return optimizer, scheduler
