"""The ELECTRA generator: a small masked language model whose samples corrupt the input.

Shapes: B rows, T tokens, Hg generator hidden, E embedding size, V vocabulary, M masked positions.
    encoder:     masked ids [B,T] -> [B,T,Hg] (over the shared Embeddings, own projection E -> Hg)
    gather:      the M masked positions, row-major (gather_tokens)                   [M,Hg]
    prediction:  LayerNorm(GELU(dense(Hg -> E)))                                       [M,E]
    head:        generator_head: logits = h E_word^T + b (tied input/output embedding), cross-entropy
                 against the original ids (mean over M) and one exact sample per row from
                 softmax(logits / temperature), chunked so the [M,V] logits never exist.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .. import functional as EF
from .config import ElectraConfig
from .encoder import Embeddings, Encoder


class GeneratorPrediction(nn.Module):
    """dense(Hg -> E) -> GELU -> LayerNorm(E), the MLM transform before the tied output embedding."""

    def __init__(self, config: ElectraConfig):
        super().__init__()
        self.dense = nn.Linear(config.gen_hidden_size, config.embedding_size)
        self.LayerNorm = nn.LayerNorm(config.embedding_size, eps=config.layer_norm_eps)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(F.gelu(self.dense(hidden)))


@dataclass
class GeneratorOutput:
    """loss: MLM cross-entropy (mean over masked positions, 0 when none); samples [M] int64; targets
    [M] the original ids; index [M] int64 flat positions b*T + t of the masked tokens."""

    loss: torch.Tensor
    samples: torch.Tensor
    targets: torch.Tensor
    index: torch.Tensor


class Generator(nn.Module):
    """Encoder of the generator's size + MLM prediction + fused tied-embedding head."""

    def __init__(self, config: ElectraConfig, embeddings: Embeddings):
        super().__init__()
        self.config = config
        self.embeddings = embeddings
        self.encoder = Encoder(config, config.gen_hidden_size, config.gen_num_hidden_layers,
                               config.gen_num_attention_heads, config.gen_intermediate_size)
        self.prediction = GeneratorPrediction(config)
        self.output_bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, masked_ids: torch.Tensor, attention_mask: torch.Tensor, original_ids: torch.Tensor,
                is_masked: torch.Tensor, token_type_ids: Optional[torch.Tensor] = None, *,
                temperature: float = 1.0, seed: int, offset: int = 0) -> GeneratorOutput:
        hidden = self.encoder(self.embeddings(masked_ids, token_type_ids), attention_mask)
        packed = EF.gather_tokens(hidden, is_masked)
        targets = original_ids.reshape(-1)[packed.index]
        loss, samples = EF.generator_head(self.prediction(packed.tokens), self.embeddings.word_embeddings.weight,
                                          self.output_bias, targets, temperature=temperature, seed=seed,
                                          offset=offset)
        return GeneratorOutput(loss=loss, samples=samples, targets=targets, index=packed.index)

    def mlm_logits(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
                   token_type_ids: Optional[torch.Tensor] = None,
                   positions: Optional[torch.Tensor] = None) -> torch.Tensor:
        """MLM logits (evaluation and interop; training never builds them): [B,T,V] at every position, or
        [N,V] at the N positions where the bool mask `positions` [B,T] is True (in row-major order)."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids, dtype=torch.bool)
        hidden = self.encoder(self.embeddings(input_ids, token_type_ids), attention_mask)
        if positions is not None:
            hidden = hidden[positions]
        return F.linear(self.prediction(hidden), self.embeddings.word_embeddings.weight, self.output_bias)
