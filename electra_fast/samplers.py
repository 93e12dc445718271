"""Statistical generators for electra_fast.functional.statistical_replace: replacement tokens without a network
(Di Liello, Gabburo, Moschitti 2022: RTS and C-RTS; and unigram frequency sampling).

Every sampler reduces to one table shape, SamplerTables, which one kernel per backend draws from:
    row_of_token [V] int64   the cdf row an original token uses (its cluster; R - 1 for "no cluster")
    cdf [R, K] float64       cumulative cluster weights per row (not normalised)
    offsets [K+1], members [N] int64: cluster c holds the tokens members[offsets[c] : offsets[c+1]]
A masked position with original o draws cluster c = first j with cdf[r, j] > u * cdf[r, K-1] (r =
row_of_token[o], u from Philox word 2), then a token uniformly in c (word 3), see
csrc/include/electra_fast/masking.h. So:
    UniformSampler  R = K = 1, one cluster of all allowed tokens                  (RTS)
    UnigramSampler  R = 1, K = N singleton clusters, cdf = cumsum(weights)        (O(log V) per draw)
    ClusterSampler  R = K + 1: row c = softmax(beta * minmax(counts[c, :])) over the non-empty
                    clusters; row K (originals without a cluster) uniform over them  (C-RTS)
Samplers are plain objects holding tensors: `.to(device)` moves them (in place, returns self),
`state_dict()` / `load_state_dict()` save and restore them with a checkpoint.
"""
from __future__ import annotations

from typing import Dict, NamedTuple, Sequence

import torch


class SamplerTables(NamedTuple):
    row_of_token: torch.Tensor
    cdf: torch.Tensor
    offsets: torch.Tensor
    members: torch.Tensor


def _exclusion_mask(vocab_size: int, exclude_ids: Sequence[int]) -> torch.Tensor:
    allowed = torch.ones(vocab_size, dtype=torch.bool)
    ids = [int(i) for i in exclude_ids]
    bad = [i for i in ids if not 0 <= i < vocab_size]
    if bad:
        raise ValueError(f"exclude_ids must lie in [0, vocab_size={vocab_size}), got {bad}")
    allowed[ids] = False
    return allowed


class _Sampler:
    """Shared plumbing: the tensors named in _state are moved, saved and restored together."""

    _state: tuple = ()

    @property
    def vocab_size(self) -> int:
        return self.row_of_token.numel()

    @property
    def device(self) -> torch.device:
        return self.row_of_token.device

    def to(self, device) -> "_Sampler":
        for name in self._state:
            setattr(self, name, getattr(self, name).to(device))
        self._cache_key = None
        return self

    def state_dict(self) -> Dict[str, torch.Tensor]:
        return {name: getattr(self, name).clone() for name in self._state}

    def load_state_dict(self, state: Dict[str, torch.Tensor]) -> None:
        missing = [name for name in self._state if name not in state]
        if missing:
            raise KeyError(f"{type(self).__name__}.load_state_dict: missing {missing}")
        for name in self._state:
            cur, new = getattr(self, name), state[name]
            if new.shape != cur.shape or new.dtype != cur.dtype:
                raise ValueError(f"{type(self).__name__}.load_state_dict: {name} has shape {tuple(new.shape)} "
                                 f"{new.dtype}, expected {tuple(cur.shape)} {cur.dtype}")
            setattr(self, name, new.to(cur.device).clone())
        self._cache_key = None


class UniformSampler(_Sampler):
    """RTS: the replacement is uniform over the vocabulary minus `exclude_ids` (e.g. the special tokens)."""

    _state = ("row_of_token", "cdf", "offsets", "members")

    def __init__(self, vocab_size: int, exclude_ids: Sequence[int] = ()):
        if vocab_size < 1:
            raise ValueError(f"vocab_size must be >= 1, got {vocab_size}")
        allowed = _exclusion_mask(vocab_size, exclude_ids)
        self.members = allowed.nonzero().squeeze(1)
        if self.members.numel() == 0:
            raise ValueError("exclude_ids excludes the whole vocabulary")
        self.row_of_token = torch.zeros(vocab_size, dtype=torch.int64)
        self.cdf = torch.ones(1, 1, dtype=torch.float64)
        self.offsets = torch.tensor([0, self.members.numel()], dtype=torch.int64)

    def tables(self) -> SamplerTables:
        return SamplerTables(self.row_of_token, self.cdf, self.offsets, self.members)

    def probs(self) -> torch.Tensor:
        """[V] float64 replacement probabilities (for tests and inspection)."""
        p = torch.zeros(self.vocab_size, dtype=torch.float64, device=self.device)
        p[self.members] = 1.0 / self.members.numel()
        return p


class UnigramSampler(_Sampler):
    """Frequency sampling: P(token) proportional to weights[token] (0 for `exclude_ids`), by inverse CDF
    on fp64 cumulative weights (binary search, O(log V) per draw)."""

    _state = ("row_of_token", "cdf", "offsets", "members")

    def __init__(self, weights: torch.Tensor, exclude_ids: Sequence[int] = ()):
        if not isinstance(weights, torch.Tensor) or weights.dim() != 1 or weights.numel() < 1:
            raise ValueError("weights must be a non-empty 1-D tensor [V]")
        w = weights.detach().to("cpu", torch.float64)
        if not torch.isfinite(w).all() or (w < 0).any():
            raise ValueError("weights must be finite and non-negative")
        w = w * _exclusion_mask(w.numel(), exclude_ids)
        self.members = (w > 0).nonzero().squeeze(1)
        if self.members.numel() == 0:
            raise ValueError("no token has a positive weight after exclude_ids")
        self.row_of_token = torch.zeros(w.numel(), dtype=torch.int64)
        self.cdf = torch.cumsum(w[self.members], 0)[None, :]
        self.offsets = torch.arange(self.members.numel() + 1, dtype=torch.int64)

    @classmethod
    def from_counts(cls, counts: torch.Tensor, exclude_ids: Sequence[int] = (), power: float = 1.0) -> "UnigramSampler":
        """weights = counts ** power for counts > 0 (power < 1 flattens the distribution, e.g. 0.75)."""
        c = counts.detach().to("cpu", torch.float64)
        return cls(torch.where(c > 0, c.clamp(min=0) ** power, torch.zeros_like(c)), exclude_ids)

    def tables(self) -> SamplerTables:
        return SamplerTables(self.row_of_token, self.cdf, self.offsets, self.members)

    def probs(self) -> torch.Tensor:
        p = torch.zeros(self.vocab_size, dtype=torch.float64, device=self.device)
        w = torch.diff(self.cdf[0], prepend=self.cdf.new_zeros(1))
        p[self.members] = w / self.cdf[0, -1]
        return p


class ClusterSampler(_Sampler):
    """C-RTS: the replacement's cluster is drawn from softmax(beta * minmax(counts[c_orig, :])) over the
    non-empty clusters, the token uniformly inside it. `counts` [K, K] starts at ones; `update` adds +1 to
    counts[c_orig, c_repl] where the discriminator missed a replaced token and -1 where it caught it.

    Args:
        token_to_cluster: [V] int64 cluster of each token in [0, K), or -1 (never drawn; as an original it
            uses a uniform choice among the non-empty clusters).
        num_clusters: K (default: max cluster + 1). beta: the softmax sharpness (2 in the paper).
        exclude_ids: tokens never drawn (they keep their cluster as originals).
    """

    _state = ("row_of_token", "offsets", "members", "counts")

    def __init__(self, token_to_cluster: torch.Tensor, *, num_clusters: int | None = None, beta: float = 2.0,
                 exclude_ids: Sequence[int] = ()):
        t2c = token_to_cluster.detach().to("cpu", torch.int64)
        if t2c.dim() != 1 or t2c.numel() < 1:
            raise ValueError("token_to_cluster must be a non-empty 1-D tensor [V]")
        k = int(t2c.max()) + 1 if num_clusters is None else int(num_clusters)
        if k < 1 or (t2c < -1).any() or (t2c >= k).any():
            raise ValueError(f"token_to_cluster must hold cluster ids in [0, {k}) or -1")
        self.beta = _check_beta(beta)
        drawable = (t2c >= 0) & _exclusion_mask(t2c.numel(), exclude_ids)
        ids = drawable.nonzero().squeeze(1)
        order = torch.argsort(t2c[ids], stable=True)
        self.members = ids[order]
        sizes = torch.bincount(t2c[ids], minlength=k)
        if sizes.sum() == 0:
            raise ValueError("no token can be drawn: every cluster is empty after exclude_ids")
        self.offsets = torch.cat([torch.zeros(1, dtype=torch.int64), sizes.cumsum(0)])
        self.row_of_token = torch.where(t2c >= 0, t2c, torch.full_like(t2c, k))
        self.counts = torch.ones(k, k, dtype=torch.int64)

    @property
    def num_clusters(self) -> int:
        return self.counts.shape[0]

    @classmethod
    def from_frequencies(cls, counts: torch.Tensor, num_clusters: int = 100, *, beta: float = 2.0,
                         exclude_ids: Sequence[int] = ()) -> "ClusterSampler":
        """Clusters of equal frequency mass from corpus counts [V]: tokens sorted by count (descending) are cut
        into num_clusters buckets of equal cumulative mass (a very frequent token may fill a bucket alone;
        empty buckets are dropped, so K <= num_clusters). `exclude_ids` get no cluster."""
        freq = counts.detach().to("cpu", torch.float64).clamp(min=0)
        keep = _exclusion_mask(freq.numel(), exclude_ids)
        freq = torch.where(keep, freq, torch.zeros_like(freq))
        if freq.sum() == 0:
            freq = keep.double()
        ids = keep.nonzero().squeeze(1)
        order = ids[torch.argsort(-freq[ids], stable=True)]
        mass = freq[order]
        before = torch.cumsum(mass, 0) - mass
        bucket = (before / mass.sum() * num_clusters).floor().to(torch.int64).clamp(max=num_clusters - 1)
        _, bucket = torch.unique(bucket, return_inverse=True)
        t2c = torch.full_like(freq, -1, dtype=torch.int64)
        t2c[order] = bucket
        return cls(t2c, beta=beta, exclude_ids=exclude_ids)

    def _nonempty(self) -> torch.Tensor:
        return self.offsets[1:] > self.offsets[:-1]

    def tables(self) -> SamplerTables:
        """The cluster cdf from the current counts (K x K float64 math on the sampler's device, no sync),
        cached until the counts change (tracked by the tensor's version counter, so in-place edits count)."""
        if torch.compiler.is_compiling():  # traced into the graph instead (the version counter is not traceable)
            return SamplerTables(self.row_of_token, self._cluster_cdf(), self.offsets, self.members)
        key = (id(self.counts), self.counts._version, self.counts.device, self.beta)
        if getattr(self, "_cache_key", None) != key:
            self._cache = SamplerTables(self.row_of_token, self._cluster_cdf(), self.offsets, self.members)
            self._cache_key = key
        return self._cache

    def _cluster_cdf(self) -> torch.Tensor:
        nonempty = self._nonempty()
        s = self.counts.double()
        lo = torch.where(nonempty, s, torch.full_like(s, float("inf"))).amin(1, keepdim=True)
        hi = torch.where(nonempty, s, torch.full_like(s, float("-inf"))).amax(1, keepdim=True)
        span = hi - lo
        norm = torch.where(span > 0, (s - lo) / torch.where(span > 0, span, torch.ones_like(span)), torch.zeros_like(s))
        # softmax(beta * norm) up to its normaliser (the cdf need not be normalised), shifted by the row's
        # largest norm (1, or 0 where every count is equal): the exponent is <= 0, nothing overflows, and the
        # row's largest weight is exp(0) = 1, so no beta can underflow a whole row to 0 (and the probabilities
        # to 0/0)
        top = torch.where(span > 0, torch.ones_like(span), torch.zeros_like(span))
        weights = torch.exp(self.beta * (norm - top)) * nonempty
        weights = torch.cat([weights, nonempty.double()[None, :]], 0)
        return torch.cumsum(weights, 1)

    def cluster_probs(self) -> torch.Tensor:
        """[K+1, K] float64: row c = P(replacement cluster | original cluster c); row K for unclustered."""
        cdf = self.tables().cdf
        return torch.diff(cdf, dim=1, prepend=cdf.new_zeros(cdf.shape[0], 1)) / cdf[:, -1:]

    @torch.no_grad()
    def update(self, original_ids: torch.Tensor, corrupted_ids: torch.Tensor, is_replaced: torch.Tensor,
               disc_predictions: torch.Tensor) -> None:
        """counts[c_orig, c_repl] += 1 where the discriminator called a replaced token original (wrong),
        -= 1 where it called it replaced (right), over the replaced positions whose two tokens both have a
        cluster. disc_predictions: bool/0-1 "replaced" predictions, or float logits (> 0 = replaced). The
        change is all-reduced (summed) across processes when torch.distributed is initialised."""
        for name, t in (("original_ids", original_ids), ("corrupted_ids", corrupted_ids),
                        ("is_replaced", is_replaced), ("disc_predictions", disc_predictions)):
            if not isinstance(t, torch.Tensor) or t.shape != original_ids.shape:
                raise ValueError(f"{name} must be a tensor of original_ids' shape {tuple(original_ids.shape)}")
        k = self.num_clusters
        device = self.counts.device
        pred = disc_predictions > 0 if disc_predictions.is_floating_point() else disc_predictions != 0
        sel = is_replaced.reshape(-1).to(device) != 0
        co = self.row_of_token[original_ids.reshape(-1).to(device).clamp(0, self.vocab_size - 1)]
        cr = self.row_of_token[corrupted_ids.reshape(-1).to(device).clamp(0, self.vocab_size - 1)]
        valid = sel & (co < k) & (cr < k)
        delta = torch.where(pred.reshape(-1).to(device), -1, 1) * valid
        change = torch.zeros(k * k, dtype=torch.int64, device=device)
        change.index_add_(0, (co * k + cr).clamp(max=k * k - 1), delta.to(torch.int64))
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(change)
        self.counts += change.view(k, k)

    def state_dict(self) -> Dict[str, torch.Tensor]:
        state = super().state_dict()
        state["beta"] = torch.tensor(self.beta, dtype=torch.float64)
        return state

    def load_state_dict(self, state: Dict[str, torch.Tensor]) -> None:
        super().load_state_dict(state)
        if "beta" in state:
            self.beta = _check_beta(float(state["beta"]))


def _check_beta(beta) -> float:
    """C-RTS's softmax sharpness: a finite float >= 0 (0: uniform over the clusters)."""
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0 <= beta < float("inf"):
        raise ValueError(f"beta must be a finite float >= 0, got {beta!r}")
    return float(beta)
