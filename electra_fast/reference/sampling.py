"""Exact row sampling by inverse CDF on the normaliser: the reference of csrc/include/electra_fast/sampling.h.

    logits [M, V], u [M] uniforms in (0, 1) (word 0 of Philox counter m), temperature T >= 0,
    inv_t = float32(1 / T):
    w[m, i] = exp((x[m, i] - max_i x[m, i]) * inv_t)          (fp32)
    S[m, j] = sum_{i<=j} w[m, i],  t[m] = u[m] * S[m, V-1]    (sums in fp64)
    id[m]   = min { j : S[m, j] >= t[m] }
    A near tie, t within NEAR_TIE * Z of S[id-1] or S[id], is decided again from fp64 weights,
    w64 = exp(float64(x - max) * float64(inv_t)), by the same rule (the last positive weight if rounding
    leaves no j). T == 0: argmax (first maximum). A row with a NaN or +inf logit, or without a finite one, has
    no sample (-1), as in the kernels.
This materialises [M, V] weights: it is the oracle, not the kernel.
"""
import torch

# Where the fp32 decision is not trusted, relative to the normaliser Z (csrc/include/electra_fast/sampling.h says
# why this size): the backends' fp32 exp (libm, Sleef, CUDA, Triton) differ by 1-2 ulp per weight, which moves S
# and t by a few 1e-9 of Z; fp64 weights differ by ~1e-16, so past this margin every backend decides alike.
NEAR_TIE = 2.0 ** -22


def inverse_temperature(temperature: float) -> float:
    """inv_t of the contract: 1/T computed in fp64 and rounded once to fp32 (0.0 for T == 0, argmax), exactly the
    C++ launchers' value (sampling.h: inverse_temperature); the Triton launchers pass it as the kernels' fp32
    argument."""
    if temperature == 0.0:
        return 0.0
    return torch.tensor(1.0 / temperature, dtype=torch.float32, device="cpu").item()


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
    inv_t = inverse_temperature(temperature)
    shifted = x - mx[:, None]
    w = torch.where(no_finite[:, None], torch.zeros_like(x), torch.exp(shifted * inv_t))
    ids, near = _decide(w.double(), u)
    rows = (near & ~no_sample).nonzero().squeeze(1)
    if rows.numel():
        w64 = torch.exp(shifted[rows].double() * inv_t)
        ids[rows] = _decide(w64, u[rows])[0]
    return torch.where(no_sample, torch.full_like(ids, -1), ids)


def _decide(w: torch.Tensor, u: torch.Tensor):
    """(ids, near) for fp64 weights w [R, V]: the first j with S_j >= t (the last positive weight if none), and
    whether t is within NEAR_TIE * Z of S_{id-1} or S_id (or no j was found)."""
    cdf = torch.cumsum(w, dim=-1)
    z = cdf[:, -1]
    target = u.double() * z
    ids = torch.searchsorted(cdf, target[:, None], right=False).squeeze(-1)
    found = ids < w.shape[1]
    at = ids.clamp(max=w.shape[1] - 1)[:, None]
    above = cdf.gather(1, at).squeeze(1)
    below = above - w.gather(1, at).squeeze(1)
    margin = NEAR_TIE * z
    near = ~found | (above - target < margin) | (target - below < margin)
    last_positive = (w > 0).long().cumsum(-1).argmax(-1)  # last index with w > 0
    return torch.where(found, ids, last_positive), near
