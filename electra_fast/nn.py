"""nn.Module wrappers of the fused ops, for models that prefer modules to functions."""
from __future__ import annotations

from typing import Optional

import torch

from . import functional as F


class RTDLoss(torch.nn.Module):
    """Replaced-token-detection loss: `electra_fast.functional.rtd_loss` as a module.

    forward(logits [B,T], labels [B,T], attention_mask [B,T]=None, weight=None) -> loss
    """

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = reduction

    def forward(self, logits: torch.Tensor, labels: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
                weight: Optional[torch.Tensor] = None) -> torch.Tensor:
        return F.rtd_loss(logits, labels, attention_mask, weight=weight, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"
