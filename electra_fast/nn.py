"""nn.Module wrappers of the fused ops, for models that prefer modules to functions."""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from . import functional as F
from .ops._dispatch import plain_eager


def _stream_seed() -> int:
    """A new Philox stream seed from torch's default CPU generator, so that torch.manual_seed (and a checkpoint
    of torch's RNG state) reproduce the masks."""
    return int(torch.randint(0, 2**63 - 1, (), dtype=torch.int64))


def _check_p(p: float) -> float:
    if isinstance(p, bool) or not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability must be in [0, 1], got {p!r}")
    return float(p)


class Dropout(torch.nn.Module):
    """A drop-in for torch.nn.Dropout on `electra_fast.functional.dropout`: the mask is drawn from the Philox
    stream and drawn again in backward instead of being stored.

    Each training-mode call takes a new stream seed from torch's default CPU generator, so torch.manual_seed
    (and a checkpoint of torch's RNG state) reproduce the masks. Under torch.compile it is torch's dropout,
    which inductor fuses with the ops around it (the stream's seed would be a data-dependent value there), and
    so it is for fake tensors, dispatch modes and tensor subclasses, which have no seed to draw.
    forward(x) -> x with elements zeroed with probability p and the rest scaled by 1 / (1 - p); x in eval mode.
    """

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = _check_p(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if not plain_eager((x,)):
            return torch.nn.functional.dropout(x, self.p, training=True)
        return F.dropout(x, self.p, seed=_stream_seed())

    def extra_repr(self) -> str:
        return f"p={self.p}"


class DropoutAddLayerNorm(torch.nn.LayerNorm):
    """LayerNorm(dropout(x) + residual) over the last dim, the end of a post-LN residual block, on
    `electra_fast.functional.dropout_add_layer_norm`: a torch.nn.LayerNorm (same parameters and state dict) whose
    forward also takes the block's output x and drops it out.

    Masks come from the Philox stream as in `Dropout`, one new seed per training-mode call. Under torch.compile,
    for fake tensors, dispatch modes and tensor subclasses, and for a float64 x with a float32 residual or the
    reverse, it is torch's dropout, add and layer_norm.
    forward(x [..., N], residual [..., N]) -> [..., N] in residual's dtype.
    """

    def __init__(self, normalized_shape: int, p: float = 0.1, eps: float = 1e-5, **kwargs):
        if not isinstance(normalized_shape, int):
            raise TypeError(f"normalized_shape must be an int (the last dim), got {normalized_shape!r}")
        super().__init__(normalized_shape, eps=eps, **kwargs)
        self.p = _check_p(p)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        p = self.p if self.training else 0.0
        mixed_float64 = (x.dtype == torch.float64) != (residual.dtype == torch.float64)
        if self.weight is None or self.bias is None or mixed_float64 or not plain_eager((x, residual)):
            return torch.nn.functional.layer_norm(torch.nn.functional.dropout(x, p, training=p > 0.0) + residual,
                                                  self.normalized_shape, self.weight, self.bias, self.eps)
        return F.dropout_add_layer_norm(x, residual, self.weight.to(residual.dtype), self.bias.to(residual.dtype), p,
                                        eps=self.eps, seed=_stream_seed() if p > 0.0 else None)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, p={self.p}"


class LinearGELU(torch.nn.Linear):
    """gelu(x W^T + b), the exact (erf) GELU: a torch.nn.Linear (same parameters and state dict) whose bias is added
    by `electra_fast.functional.bias_gelu` together with the activation, one pass each way (on CPU, torch's
    addmm would first copy the broadcast bias into its whole output, and gelu's backward and the bias gradient
    are two more passes). Under torch.compile, for fake tensors, dispatch modes and tensor subclasses, and
    without a bias, it is torch's linear and gelu.
    forward(x [..., in_features]) -> [..., out_features]
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bias is None or not plain_eager((x,)):
            return torch.nn.functional.gelu(super().forward(x))
        h = torch.nn.functional.linear(x, self.weight)
        return F.bias_gelu(h, self.bias.to(h.dtype))


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


class GeneratorHead(torch.nn.Module):
    """The generator's output layer: `electra_fast.functional.generator_head` as a module.

    Owns only the output bias [V] (zeros at init); the tied word embedding [V, E] is passed at call time.
    forward(hidden [M,E], weight [V,E], targets [M], *, seed, offset=0) -> (loss, samples [M] int64)
    """

    def __init__(self, vocab_size: int, *, bias: bool = True, temperature: float = 1.0, reduction: str = "mean",
                 ignore_index: int = -100, chunk_size: Optional[int] = None):
        super().__init__()
        self.vocab_size = vocab_size
        self.bias = torch.nn.Parameter(torch.zeros(vocab_size)) if bias else None
        self.temperature = temperature
        self.reduction = reduction
        self.ignore_index = ignore_index
        self.chunk_size = chunk_size

    def forward(self, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, *, seed: int,
                offset: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
        bias = None if self.bias is None else self.bias.to(hidden.dtype)
        return F.generator_head(hidden, weight, bias, targets, temperature=self.temperature, seed=seed,
                                offset=offset, reduction=self.reduction, ignore_index=self.ignore_index,
                                chunk_size=self.chunk_size)

    def extra_repr(self) -> str:
        return (f"vocab_size={self.vocab_size}, bias={self.bias is not None}, temperature={self.temperature}, "
                f"reduction={self.reduction!r}, ignore_index={self.ignore_index}, chunk_size={self.chunk_size}")
