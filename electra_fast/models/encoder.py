"""The BERT-style post-LayerNorm Transformer encoder of ELECTRA (generator and discriminator alike).

Shapes: B rows, T tokens, E embedding size, H hidden size, I FFN size, n heads of H/n.
    Embeddings:  ids [B,T] -> LayerNorm(word[ids] + position[t] + type[type_ids]) -> dropout   [B,T,E]
    projection:  Linear(E, H) when E != H (each of generator and discriminator owns one)
    EncoderLayer (post-LN, as BERT/ELECTRA):
        a = LayerNorm(x + dropout(W_o SDPA(W_q x, W_k x, W_v x; key mask)))
        y = LayerNorm(a + dropout(W_2 GELU(W_1 a)))
Dropout is electra_fast.nn.Dropout (masks drawn from the Philox stream, not stored for backward); each
LayerNorm(residual + dropout(.)) is one electra_fast.nn.DropoutAddLayerNorm. The FFN is torch's Linear and GELU:
electra_fast.nn.LinearGELU (the bias added with the activation) measured no faster inside this model on CPU.
Attention is `scaled_dot_product_attention` (in training on CPU, the same math with that dropout on the
probabilities: EncoderLayer.attention) with a [B,1,1,T] boolean key mask: padded keys are
ignored, padded queries still produce (unused) outputs. A row without any valid key attends to all
of its keys instead of producing NaN (the rows of a re-padded early-exit batch can be empty).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..nn import Dropout, DropoutAddLayerNorm
from ..ops._dispatch import plain_eager
from .config import ElectraConfig


def init_weights(module: nn.Module, std: float) -> None:
    """BERT initialisation: normal(0, std) weights, zero biases, unit LayerNorm."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class Embeddings(nn.Module):
    """Word + position + token-type embeddings, LayerNorm, dropout: [B,T] ids -> [B,T,E].

    `word_delta` (GDES) adds a second table to the word embedding: the discriminator of DeBERTaV3's
    gradient-disentangled sharing looks up sg(E_G)[ids] + E_delta[ids].
    """

    def __init__(self, config: ElectraConfig):
        super().__init__()
        e = config.embedding_size
        self.word_embeddings = nn.Embedding(config.vocab_size, e)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, e)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, e)
        self.LayerNorm = nn.LayerNorm(e, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, token_type_ids: Optional[torch.Tensor] = None,
                word_delta: Optional[torch.Tensor] = None) -> torch.Tensor:
        t = input_ids.shape[1]
        if t > self.position_embeddings.num_embeddings:
            raise ValueError(f"sequence length {t} exceeds max_position_embeddings "
                             f"{self.position_embeddings.num_embeddings}")
        if word_delta is None:
            x = self.word_embeddings(input_ids)
        else:
            x = F.embedding(input_ids, self.word_embeddings.weight.detach()) + F.embedding(input_ids, word_delta)
        # the order of the sums is transformers' (word + type + position), so outputs match it closely
        if token_type_ids is None:
            x = x + self.token_type_embeddings.weight[0]
        else:
            x = x + self.token_type_embeddings(token_type_ids)
        x = x + self.position_embeddings.weight[:t]
        return self.dropout(self.LayerNorm(x))


def key_mask(mask: torch.Tensor) -> torch.Tensor:
    """[B,L] bool (True = a token to attend to) -> [B,1,1,L] SDPA mask; empty rows attend to everything."""
    mask = mask.bool()
    mask = mask | ~mask.any(dim=1, keepdim=True)
    return mask[:, None, None, :]


class EncoderLayer(nn.Module):
    """One post-LN Transformer block: [B,L,H] with an SDPA key mask [B,1,1,L] -> [B,L,H]."""

    def __init__(self, hidden_size: int, num_heads: int, intermediate_size: int, config: ElectraConfig):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)  # one GEMM for q, k and v
        self.attn_out = nn.Linear(hidden_size, hidden_size)
        self.attn_norm = DropoutAddLayerNorm(hidden_size, config.hidden_dropout_prob, eps=config.layer_norm_eps)
        self.ffn_in = nn.Linear(hidden_size, intermediate_size)
        self.ffn_out = nn.Linear(intermediate_size, hidden_size)
        self.ffn_norm = DropoutAddLayerNorm(hidden_size, config.hidden_dropout_prob, eps=config.layer_norm_eps)
        self.attention_dropout = Dropout(config.attention_probs_dropout_prob)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        h = x.shape[-1]
        # unflatten/flatten of the last dims only: no guard on the (possibly data-dependent) length
        q, k, v = self.qkv(x).unflatten(-1, (3, self.num_heads, h // self.num_heads)).permute(2, 0, 3, 1, 4)
        a = self.attention(q, k, v, attn_mask).transpose(1, 2).flatten(2)
        x = self.attn_norm(self.attn_out(a), x)
        return self.ffn_norm(self.ffn_out(F.gelu(self.ffn_in(x))), x)

    def attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        """softmax(q k^T / sqrt(d) over the keys attn_mask allows, dropped out) v: [B,n,L,d] -> [B,n,L,d].

        SDPA, except in training on CPU in plain eager mode: there no fused CPU kernel draws the dropout, so
        SDPA runs this same math with torch's Bernoulli dropout, and the Philox dropout is cheaper."""
        p = self.attention_dropout.p if self.training else 0.0
        if p == 0.0 or q.device.type != "cpu" or not plain_eager((q,)):
            return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=p)
        # scaled and masked in place, with no copy forward or backward: matmul keeps q and k, not its output
        scores = q @ k.transpose(-2, -1)
        masked = torch.zeros(attn_mask.shape, dtype=scores.dtype).masked_fill_(~attn_mask, float("-inf"))
        scores.mul_(q.shape[-1] ** -0.5).add_(masked)
        return self.attention_dropout(scores.softmax(-1)) @ v


class Encoder(nn.Module):
    """Embedding projection (when E != H) and a stack of layers: [B,T,E] -> [B,T,H].

    Both the generator and the discriminator are one of these over the shared Embeddings; the
    discriminator drives `layers` itself when tokens exit early.
    """

    def __init__(self, config: ElectraConfig, hidden_size: int, num_layers: int, num_heads: int,
                 intermediate_size: int):
        super().__init__()
        self.embeddings_project = (nn.Linear(config.embedding_size, hidden_size)
                                   if config.embedding_size != hidden_size else None)
        self.layers = nn.ModuleList(
            EncoderLayer(hidden_size, num_heads, intermediate_size, config) for _ in range(num_layers))

    def project(self, embedded: torch.Tensor) -> torch.Tensor:
        return embedded if self.embeddings_project is None else self.embeddings_project(embedded)

    def forward(self, embedded: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        x = self.project(embedded)
        mask = key_mask(attention_mask)
        for layer in self.layers:
            x = layer(x, mask)
        return x
