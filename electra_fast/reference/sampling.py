"""Exact row sampling by inverse CDF on the normaliser: the reference of csrc/include/electra_fast/sampling.h.

    logits [M, V], u [M] uniforms in (0, 1) (word 0 of Philox counter m), temperature T >= 0
    w[m, i] = exp((x[m, i] - max_i x[m, i]) / T)   (fp32)
    id[m]   = min { j : sum_{i<=j} w[m, i] >= u[m] * sum_i w[m, i] }   (sums in fp64)
    T == 0: argmax (first maximum). A row with a NaN or +inf logit, or without a finite one, has no sample (-1),
    as in the kernels.
This materialises [M, V] weights: it is the oracle, not the kernel.
"""
import torch


def inverse_cdf_sample(logits: torch.Tensor, u: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """[M] int64 sampled ids (-1 for rows with a NaN or +inf logit, or whose logits are all -inf)."""
    x = logits.float()
    if x.shape[0] == 0:
        return torch.empty(0, dtype=torch.int64, device=logits.device)
    mx, argmax = x.max(dim=-1)
    no_finite = torch.isneginf(mx)
    no_sample = no_finite | (torch.isnan(x) | torch.isposinf(x)).any(-1)
    if temperature == 0:
        return torch.where(no_sample, torch.full_like(argmax, -1), argmax)
    w = torch.exp((x - mx[:, None]) * (1.0 / temperature))
    w = torch.where(no_finite[:, None], torch.zeros_like(w), w)
    cdf = torch.cumsum(w.double(), dim=-1)
    target = u.double() * cdf[:, -1]
    ids = torch.searchsorted(cdf, target[:, None], right=False).squeeze(-1)
    last_positive = (w > 0).long().cumsum(-1).argmax(-1)  # last index with w > 0
    ids = torch.where(ids >= x.shape[1], last_positive, ids)
    return torch.where(no_sample, torch.full_like(ids, -1), ids)
