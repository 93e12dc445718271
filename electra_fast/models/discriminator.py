"""The ELECTRA discriminator: encoder + RTD head, with adaptive token-level early exit.

Shapes: B rows, T tokens, H hidden, L layers.
    RTDHead:  h [..., H] -> dense(H, H) -> GELU -> dense(H, 1) -> logit [...]   (D(x,t) = sigmoid(logit))

Early exit (config.early_exit, see EarlyExitConfig): after each exit layer l an RTD head scores the
tokens still active; `exit_mask` stops the confident ones (never [CLS]/[SEP]/[MASK]), `gather_tokens`
packs the rest and `pad_packed` re-pads them into [B, L', H] (L' = the most active tokens of a row),
on which the next layers run, so attention is among the active tokens of the same row. Exits nest:
the stack of (base, packed) is unwound by `unpad` + `scatter_tokens` before the final layer
(restore_last_layer) or at the output. A token's logit is that of the head at its exit layer (the final
head for tokens that never exit). One host synchronisation per exit layer (the packed size).
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
    exited [B,T] bool (left before the last layer); active_fractions [L] float32 (fraction of the real
    tokens each layer ran on); exit_records (one per exit head that ran, for deep supervision)."""

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
        shared = config.early_exit is None or config.early_exit.shared_head
        self.exit_heads = None if shared else nn.ModuleDict({str(i): RTDHead(config.hidden_size)
                                                             for i in self.exit_layers})
        self.register_buffer("keep_ids", torch.tensor(config.special_token_ids, dtype=torch.int64),
                             persistent=False)

    def exit_head(self, layer: int) -> RTDHead:
        return self.head if self.exit_heads is None else self.exit_heads[str(layer)]

    def forward(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
                token_type_ids: Optional[torch.Tensor] = None, *,
                early_exit: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
        """(hidden [B,T,H], logits [B,T]); with early_exit=True confident tokens stop at the exit layers."""
        out = self.run(input_ids, attention_mask, token_type_ids, exits=early_exit)
        return out.hidden, out.logits

    def run(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
            token_type_ids: Optional[torch.Tensor] = None, *, exits: bool = False,
            supervise: bool = False) -> DiscriminatorOutput:
        """The full forward pass. exits: tokens may exit (needs config.early_exit); supervise: run every
        exit head and return what it saw (for the auxiliary loss) even where no token may exit."""
        cfg = self.config.early_exit
        b, t = input_ids.shape
        real = (torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None
                else attention_mask.bool())
        x = self.encoder.project(self.embeddings(input_ids, token_type_ids, self.word_delta))
        heads_at = set(self.exit_layers) if cfg is not None and (exits or supervise) else set()
        exits = exits and cfg is not None
        n_real = real.sum().clamp(min=1).to(torch.float32)
        num_layers = len(self.encoder.layers)
        dummy = b * t  # flat position standing for "padding" in the re-padded levels
        positions0 = torch.arange(dummy, device=input_ids.device).view(b, t)
        ids_ext = torch.cat([input_ids.reshape(-1), input_ids.new_full((1,), self.config.pad_token_id)])

        mask, positions, ids = real, positions0, input_ids
        stack: List[tuple] = []
        exit_logits: Optional[torch.Tensor] = None
        exited = torch.zeros(dummy + 1, dtype=torch.bool, device=input_ids.device)
        records: List[ExitRecord] = []
        fractions = []
        for i, layer in enumerate(self.encoder.layers, start=1):
            if i == num_layers and stack and cfg.restore_last_layer:
                x, stack = self._restore(x, stack), []
                mask, positions, ids = real, positions0, input_ids
            fractions.append(mask.sum().to(torch.float32) / n_real)
            x = layer(x, key_mask(mask))
            if i not in heads_at:
                continue
            logits = self.exit_head(i)(x)
            if supervise:
                records.append(ExitRecord(i, logits, mask, positions))
            if not exits or i < cfg.min_layer:
                continue
            still = EF.exit_mask(logits, mask, threshold=cfg.threshold, keep_ids=self.keep_ids, input_ids=ids)
            leaving = (mask & ~still).reshape(-1)
            target = positions.reshape(-1).masked_fill(~leaving, dummy)
            if exit_logits is None:
                exit_logits = logits.new_zeros(dummy + 1)
            exit_logits = exit_logits.scatter(0, target, logits.reshape(-1))
            exited = exited.scatter(0, target, leaving)
            packed = EF.gather_tokens(x, still)
            stack.append((x, packed))
            x, mask = EF.pad_packed(packed, b)
            positions = _repad_positions(positions, packed, mask, dummy)
            ids = ids_ext[positions]

        logits = self.head(x)
        if stack:  # the final level is re-padded: put each token's logit at its input position
            target = positions.reshape(-1).masked_fill(~mask.reshape(-1), dummy)
            logits = logits.new_zeros(dummy + 1).scatter(0, target, logits.reshape(-1))[:dummy].view(b, t)
            x = self._restore(x, stack)
        exited = exited[:dummy].view(b, t)
        if exit_logits is not None:
            logits = torch.where(exited, exit_logits[:dummy].view(b, t), logits)
        return DiscriminatorOutput(hidden=x, logits=logits, exited=exited,
                                   active_fractions=torch.stack(fractions), exit_records=records)

    @staticmethod
    def _restore(x: torch.Tensor, stack: List[tuple]) -> torch.Tensor:
        """Unwind nested exits: each level's active tokens go back into the level below."""
        for base, packed in reversed(stack):
            x = EF.scatter_tokens(EF.unpad(x, packed), packed.index, base)
        return x


def _repad_positions(positions: torch.Tensor, packed, pad_mask: torch.Tensor, dummy: int) -> torch.Tensor:
    """The input positions [B, L'] of a re-padded level, from the level below's [B, Lk] positions."""
    flat = torch.cat([positions.reshape(-1)[packed.index], positions.new_full((1,), dummy)])
    n = packed.index.numel()
    cu = packed.cu_seqlens.to(torch.int64)
    slot = cu[:-1, None] + torch.arange(pad_mask.shape[1], device=positions.device)
    return flat[torch.where(pad_mask, slot, torch.full_like(slot, n))]
