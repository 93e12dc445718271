"""The ELECTRA discriminator: encoder + RTD head, with token-level early exit.

Shapes: B rows, T tokens, H hidden, L layers.
    RTDHead:  h [..., H] -> dense(H, H) -> GELU -> dense(H, 1) -> logit [...]   (D(x,t) = sigmoid(logit))
    exit head (after each exit layer only): h [..., H] -> dense(H, 1) -> logit [...]

Early exit (config.early_exit, see EarlyExitConfig). After exit layer l the exit head scores the tokens
of the current level, then:
- budget policy: `select_tokens` keeps each row's k = ceil(keep * T) least confident positions ([CLS]/[SEP]
  first, padding last): the next layers run on [B, k, H]. Static shapes, no host synchronisation, so the
  path compiles with torch.compile(fullgraph=True) and is CUDA-graph-safe.
- threshold policy: `exit_mask` stops the confident tokens (never [CLS]/[SEP]/[MASK]), `gather_tokens`
  packs the rest and `pad_packed` re-pads them into [B, L', H] (L' = the most active tokens of a row):
  one host synchronisation per exit layer (the packed size).
Either way attention is among the tokens still active in the same row. Exits nest: the stack of levels is
unwound (scatter_tokens) before the final layer (restore_last_layer) or at the output. A token's logit is
that of the head at its exit layer (the final head for tokens that never exit). The exit heads are not
part of the Hugging Face export (electra_fast.hf): they are a training device.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .. import functional as EF
from .config import ElectraConfig, exit_layers_of
from .encoder import Embeddings, Encoder, key_mask


class RTDHead(nn.Module):
    """dense(H, H) -> GELU -> dense(H, 1): [..., H] -> [...] replaced-token logits."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.dense_prediction = nn.Linear(hidden_size, 1)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.dense_prediction(F.gelu(self.dense(hidden))).squeeze(-1)


@dataclass
class ExitRecord:
    """What one exit head saw, in the coordinates of its level (the re-padded batch at that layer).

    logits [B, Lk]; mask [B, Lk] bool (the real, still active tokens it scored);
    positions [B, Lk] int64 flat positions b*T + t in the input batch (B*T at padding).
    """

    layer: int
    logits: torch.Tensor
    mask: torch.Tensor
    positions: torch.Tensor


@dataclass
class DiscriminatorOutput:
    """hidden [B,T,H]; logits [B,T] (each token's from the head at its exit layer; arbitrary at padding);
    exited [B,T] bool (left before the last layer); active_fractions [L] float32: what each layer ran on,
    as a fraction of T positions under a budget (exact: k/T), of the real tokens otherwise;
    exit_records (one per exit head that ran, for deep supervision)."""

    hidden: torch.Tensor
    logits: torch.Tensor
    exited: torch.Tensor
    active_fractions: torch.Tensor
    exit_records: List[ExitRecord]


class Discriminator(nn.Module):
    """Encoder + RTD head. `forward(input_ids, attention_mask) -> (hidden [B,T,H], logits [B,T])`.

    embeddings: the (shared) Embeddings block; word_delta: GDES's E_delta [V, E] or None.
    """

    def __init__(self, config: ElectraConfig, embeddings: Optional[Embeddings] = None,
                 word_delta: Optional[nn.Parameter] = None):
        super().__init__()
        self.config = config
        self.embeddings = embeddings if embeddings is not None else Embeddings(config)
        self.word_delta = word_delta
        self.encoder = Encoder(config, config.hidden_size, config.num_hidden_layers, config.num_attention_heads,
                               config.intermediate_size)
        self.head = RTDHead(config.hidden_size)
        self.exit_layers = list(exit_layers_of(config))
        self.exit_heads = nn.ModuleDict({str(i): nn.Linear(config.hidden_size, 1) for i in self.exit_layers})
        self.register_buffer("keep_ids", torch.tensor(config.special_token_ids, dtype=torch.int64),
                             persistent=False)

    def exit_head(self, layer: int, hidden: torch.Tensor) -> torch.Tensor:
        """The exit head after `layer`: [..., H] -> logits [...]."""
        return self.exit_heads[str(layer)](hidden).squeeze(-1)

    def forward(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
                token_type_ids: Optional[torch.Tensor] = None, *,
                early_exit: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
        """(hidden [B,T,H], logits [B,T]); with early_exit=True tokens leave at the exit layers."""
        out = self.run(input_ids, attention_mask, token_type_ids, exits=early_exit)
        return out.hidden, out.logits

    def run(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
            token_type_ids: Optional[torch.Tensor] = None, *, exits: bool = False, supervise: bool = False,
            step: Optional[int] = None, scores: Optional[torch.Tensor] = None) -> DiscriminatorOutput:
        """The full forward pass. exits: tokens may exit (needs config.early_exit); supervise: run the exit
        heads and return what they saw (for the auxiliary loss) even where no token may exit; step: the
        training step, for the budget's warm-up ramp (None: past it); scores [B,T]: with
        selection="random", the random priorities (smaller stays; default: torch.rand)."""
        cfg = self.config.early_exit
        b, t = input_ids.shape
        real = (torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None
                else attention_mask.bool())
        x = self.encoder.project(self.embeddings(input_ids, token_type_ids, self.word_delta))
        heads_at = self.exit_layers if cfg is not None and (exits or supervise) else []
        exits = exits and cfg is not None
        budget = exits and cfg.policy == "budget"
        counts = dict(zip(self.exit_layers, self._kept_counts(t, step))) if budget else {}
        if budget and cfg.selection == "random" and scores is None:
            scores = torch.rand(b, t, device=input_ids.device)
        n_real = real.sum().clamp(min=1).to(torch.float32)
        num_layers = len(self.encoder.layers)
        dummy = b * t  # flat position standing for "padding" in the re-padded levels
        positions0 = torch.arange(dummy, device=input_ids.device).view(b, t)

        level = _Level(x, real, positions0, input_ids, scores)
        stack: List[Tuple[torch.Tensor, object]] = []
        exit_logits: Optional[torch.Tensor] = None
        exited = torch.zeros(dummy + 1, dtype=torch.bool, device=input_ids.device)
        records: List[ExitRecord] = []
        fractions = []
        for i, layer in enumerate(self.encoder.layers, start=1):
            if i == num_layers and stack and cfg.restore_last_layer:
                level = _Level(self._restore(level.x, stack), real, positions0, input_ids, scores)
                stack = []
            # budget: the positions this layer computes (static); threshold: the real tokens it ran on
            fractions.append(torch.full((), level.x.shape[1] / t, device=x.device) if budget
                             else level.mask.sum() / n_real)
            level.x = layer(level.x, key_mask(level.mask))
            if i not in heads_at:
                continue
            logits = self.exit_head(i, level.x)
            if supervise:
                records.append(ExitRecord(i, logits, level.mask, level.positions))
            if not exits or (not budget and step is not None and step < cfg.warmup_steps):
                continue
            if budget:
                if counts[i] >= level.x.shape[1]:
                    continue
                still, link, nxt = self._select(level, logits, counts[i])
            else:
                ids_ext = torch.cat([input_ids.reshape(-1), input_ids.new_full((1,), self.config.pad_token_id)])
                still, link, nxt = self._threshold(level, logits, b, dummy, ids_ext)
            leaving = (level.mask & ~still).reshape(-1)
            target = level.positions.reshape(-1).masked_fill(~leaving, dummy)
            if exit_logits is None:
                exit_logits = logits.new_zeros(dummy + 1)
            exit_logits = exit_logits.scatter(0, target, logits.reshape(-1))
            exited = exited.scatter(0, target, leaving)
            stack.append((level.x, link))
            level = nxt

        logits = self.head(level.x)
        x = level.x
        if stack:  # the final level is a subset: put each token's logit at its input position
            target = level.positions.reshape(-1).masked_fill(~level.mask.reshape(-1), dummy)
            logits = logits.new_zeros(dummy + 1).scatter(0, target, logits.reshape(-1))[:dummy].view(b, t)
            x = self._restore(x, stack)
        exited = exited[:dummy].view(b, t)
        if exit_logits is not None:
            logits = torch.where(exited, exit_logits[:dummy].view(b, t), logits)
        return DiscriminatorOutput(hidden=x, logits=logits, exited=exited,
                                   active_fractions=torch.stack(fractions).to(torch.float32),
                                   exit_records=records)

    def _kept_counts(self, seq_len: int, step: Optional[int]) -> List[int]:
        counts = self.config.early_exit.kept_counts(self.config.num_hidden_layers, seq_len, step)
        specials = (self.config.cls_token_id, self.config.sep_token_id)
        if counts and counts[-1] < len(specials):
            raise ValueError(f"early_exit.keep={self.config.early_exit.keep!r} keeps {counts[-1]} of {seq_len} "
                             f"positions, which would drop [CLS] or [SEP]; keep at least {len(specials)} "
                             f"(keep >= {len(specials) / seq_len:.3g} at this sequence length)")
        return counts

    def _select(self, level: "_Level", logits: torch.Tensor, k: int):
        """Budget: each row keeps its k least confident positions (or k lowest random scores)."""
        priority = logits if level.scores is None else level.scores
        sel = EF.select_tokens(level.x, priority, k, active=level.mask, keep_ids=self.keep_ids,
                               input_ids=level.ids)
        b, length = level.mask.shape
        still = torch.zeros_like(level.mask).scatter(1, sel.index, True)
        flat = (sel.index + torch.arange(b, device=sel.index.device)[:, None] * length).reshape(-1)
        pick = lambda v: None if v is None else v.gather(1, sel.index)  # noqa: E731
        return still, flat, _Level(sel.tokens, pick(level.mask), pick(level.positions), pick(level.ids),
                                   pick(level.scores))

    def _threshold(self, level: "_Level", logits: torch.Tensor, b: int, dummy: int, ids_ext: torch.Tensor):
        """Threshold: the confident tokens leave; the rest are packed and re-padded."""
        cfg = self.config.early_exit
        still = EF.exit_mask(logits, level.mask, threshold=cfg.threshold, keep_ids=self.keep_ids,
                             input_ids=level.ids)
        packed = EF.gather_tokens(level.x, still)
        x, mask = EF.pad_packed(packed, b)
        positions = _repad_positions(level.positions, packed, mask, dummy)
        return still, packed, _Level(x, mask, positions, ids_ext[positions], None)

    @staticmethod
    def _restore(x: torch.Tensor, stack: List[tuple]) -> torch.Tensor:
        """Unwind nested exits: each level's tokens go back into the level below."""
        for base, link in reversed(stack):
            if isinstance(link, EF.Packed):
                tokens, index = EF.unpad(x, link), link.index
            else:  # a budget level: [B, k, H] rows at flat positions b*L + t of the level below
                tokens, index = x.reshape(-1, x.shape[-1]), link
            x = EF.scatter_tokens(tokens, index, base)
        return x


@dataclass
class _Level:
    """The tokens the next layers run on: x [B, L, H], mask [B, L] (real and active), positions [B, L] flat
    input positions (B*T at padding), ids [B, L] their input ids, scores [B, L] random priorities or None."""

    x: torch.Tensor
    mask: torch.Tensor
    positions: torch.Tensor
    ids: torch.Tensor
    scores: Optional[torch.Tensor]


def _repad_positions(positions: torch.Tensor, packed, pad_mask: torch.Tensor, dummy: int) -> torch.Tensor:
    """The input positions [B, L'] of a re-padded level, from the level below's [B, Lk] positions."""
    flat = torch.cat([positions.reshape(-1)[packed.index], positions.new_full((1,), dummy)])
    n = packed.index.numel()
    cu = packed.cu_seqlens.to(torch.int64)
    slot = cu[:-1, None] + torch.arange(pad_mask.shape[1], device=positions.device)
    return flat[torch.where(pad_mask, slot, torch.full_like(slot, n))]
