"""Analytic FLOPs of ELECTRA models: inference per sequence and a full pre-training step, with early exit.

Counting rules (rules="official", those of google-research/electra `flops_computation.py`):
  * a matmul [m, k] x [k, n] costs 2mkn; a bias add or a residual add 1 per element;
  * per element: dropout 4, LayerNorm 5, GELU 8, softmax 5, attention scaling 1 (dropout is counted
    at inference too, as the official code does);
  * embedding lookups are dense one-hot matmuls: 2EV per token for words, 2E(S + 2) for positions
    and token types;
  * the generator's MLM output (dense, GELU, LayerNorm, tied-embedding logits, softmax, target
    pick) is charged on `masked_fraction` of the positions (the official code uses 20/128 = 0.15625,
    OFFICIAL_OUTPUT_FRACTION; this module defaults to the config's mask_prob, what the model does);
  * generator and discriminator are both counted: embeddings + layers + heads.
  One deliberate difference: the official code charges the attention-output LayerNorm as 5 FLOPs per
  token instead of 5H (a typo); here it is 5H, which changes ELECTRA-Small by 0.06%.
rules="matmul" counts only the matmuls that run as GEMMs (linear layers, QK^T, AV, the MLM logits)
and treats lookups as free: what torch.utils.flop_counter.FlopCounterMode counts.

Backward convention: a training step = (1 + backward_factor) x forward. backward_factor=2.0 (the
default: a GEMM's backward is two GEMMs, the now-common convention) or 1.0 (the official code's,
for comparisons with the paper's training FLOPs).

Early exit: `active_fractions[l]` is the fraction of a sequence's tokens that discriminator layer l
runs on; the layer's cost is counted on that many tokens attending to that many keys, and each exit
head (dense H -> 1) on the tokens of its layer. Under the budget policy this is exact (the layer runs on
k of T positions, padding included: `budget_fractions`); under the threshold policy it counts the useful
work (the re-padded batch computes up to its longest row).
Results: inference 3.68e9 (Small) / 2.86e10 (Base) FLOPs per length-128 input, the paper's 3.7e9 / 2.9e10.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

from .models.config import ElectraConfig, exit_layers_of

DROPOUT_FLOPS = 4
LAYER_NORM_FLOPS = 5
ACTIVATION_FLOPS = 8
SOFTMAX_FLOPS = 5
OFFICIAL_OUTPUT_FRACTION = 0.15625
RULES = ("official", "matmul")


def _check_rules(rules: str) -> bool:
    if rules not in RULES:
        raise ValueError(f"rules must be one of {RULES}, got {rules!r}")
    return rules == "official"


def layer_flops(hidden: int, intermediate: int, heads: int, tokens: float, keys: float,
                rules: str = "official") -> float:
    """One post-LN Transformer layer's forward FLOPs for `tokens` tokens, each attending to `keys` keys."""
    full = _check_rules(rules)
    h, i = hidden, intermediate
    per_token = 6 * h * h + 2 * h * keys + 2 * h * keys + 2 * h * h + 4 * h * i  # qkv, QK^T, AV, out, FFN
    if full:
        per_token += (3 * h                                   # qkv bias
                      + (SOFTMAX_FLOPS + DROPOUT_FLOPS + 1) * keys * heads  # softmax, dropout, scale
                      + h + DROPOUT_FLOPS * h + h + LAYER_NORM_FLOPS * h    # attn out: bias, dropout, res, LN
                      + ACTIVATION_FLOPS * i + i                           # GELU, FFN bias
                      + h + DROPOUT_FLOPS * h + h + LAYER_NORM_FLOPS * h)   # FFN out: bias, dropout, res, LN
    return per_token * tokens


def embedding_flops(config: ElectraConfig, hidden: int, seq_len: int, rules: str = "official") -> float:
    """Input embeddings (+ the projection E -> hidden when they differ) for one sequence."""
    full = _check_rules(rules)
    e, v = config.embedding_size, config.vocab_size
    per_token = 0.0
    if full:
        per_token += (2 * e * v + 2 * e * (seq_len + 2) + 2 * e
                      + LAYER_NORM_FLOPS * e + DROPOUT_FLOPS * e)
    if e != hidden:
        per_token += 2 * hidden * e + (hidden if full else 0)
    return per_token * seq_len


def rtd_head_flops(hidden: int, tokens: float, rules: str = "official") -> float:
    """dense(H, H) -> GELU -> dense(H, 1) on `tokens` tokens."""
    full = _check_rules(rules)
    per_token = 2 * hidden * hidden + 2 * hidden
    if full:
        per_token += hidden + ACTIVATION_FLOPS * hidden
    return per_token * tokens


def exit_head_flops(hidden: int, tokens: float, rules: str = "official") -> float:
    """An early-exit head, dense(H, 1), on `tokens` tokens."""
    return (2 * hidden + (1 if _check_rules(rules) else 0)) * tokens


def mlm_head_flops(config: ElectraConfig, tokens: float, rules: str = "official") -> float:
    """The generator's output on `tokens` masked positions: dense(Hg -> E), GELU, LayerNorm, logits over
    the vocabulary, softmax and the target pick."""
    full = _check_rules(rules)
    e, v, hg = config.embedding_size, config.vocab_size, config.gen_hidden_size
    per_token = 2 * hg * e + 2 * e * v
    if full:
        per_token += e + ACTIVATION_FLOPS * e + LAYER_NORM_FLOPS * e + SOFTMAX_FLOPS * v + 2 * v
    return per_token * tokens


def _fractions(config: ElectraConfig, active_fractions: Optional[Sequence[float]]) -> Tuple[float, ...]:
    n = config.num_hidden_layers
    if active_fractions is None:
        return (1.0,) * n
    fractions = tuple(float(f) for f in active_fractions)
    if len(fractions) != n:
        raise ValueError(f"active_fractions must have one entry per discriminator layer ({n}), got {len(fractions)}")
    if any(not 0.0 <= f <= 1.0 for f in fractions):
        raise ValueError(f"active_fractions must lie in [0, 1], got {fractions}")
    return fractions


def budget_fractions(config: ElectraConfig, seq_len: int, step: Optional[int] = None) -> Tuple[float, ...]:
    """Per discriminator layer, the fraction of the T = seq_len positions it computes under the budget
    policy at training step `step` (None: past the warm-up); exact, as the shapes are static: 1 up to the
    first exit layer, k_i / T after exit layer i, and 1 for the last layer when exits are restored before it.
    The model reports the same figures as `output.active_fractions`."""
    ee = config.early_exit
    n = config.num_hidden_layers
    if ee is None:
        return (1.0,) * n
    if ee.policy != "budget":
        raise ValueError("budget_fractions needs the budget policy; a threshold's fractions depend on the data "
                         "(the model reports them as output.active_fractions)")
    fractions, current = [], 1.0
    exits = dict(zip(ee.layers(n), ee.kept_counts(n, seq_len, step)))
    for layer in range(1, n + 1):
        if layer == n and ee.restore_last_layer:
            current = 1.0
        fractions.append(current)
        if layer in exits:
            current = min(current, exits[layer] / seq_len)
    return tuple(fractions)


def _discriminator_parts(config: ElectraConfig, seq_len: int, fractions: Tuple[float, ...], rules: str):
    """(embeddings + per-layer FLOPs, heads FLOPs) of one discriminator forward over one sequence."""
    layers = tuple(layer_flops(config.hidden_size, config.intermediate_size, config.num_attention_heads,
                               f * seq_len, f * seq_len, rules) for f in fractions)
    heads = sum(exit_head_flops(config.hidden_size, fractions[layer - 1] * seq_len, rules)
                for layer in exit_layers_of(config))
    restored = config.early_exit is None or config.early_exit.restore_last_layer
    heads += rtd_head_flops(config.hidden_size, (1.0 if restored else fractions[-1]) * seq_len, rules)
    return embedding_flops(config, config.hidden_size, seq_len, rules), layers, heads


def inference_flops(config: ElectraConfig, seq_len: int, active_fractions: Optional[Sequence[float]] = None,
                    *, rules: str = "official") -> float:
    """Forward FLOPs of the discriminator (embeddings, layers, RTD head(s)) on one sequence of seq_len."""
    embed, layers, heads = _discriminator_parts(config, seq_len, _fractions(config, active_fractions), rules)
    return embed + sum(layers) + heads


@dataclass(frozen=True)
class StepFlops:
    """FLOPs of one pre-training step (forward + backward) over a batch, split by part.

    generator: its embeddings and layers; discriminator: its embeddings and layers; heads: the MLM
    output, the RTD head and the exit heads; discriminator_layers: each discriminator layer's share.
    """

    generator: float
    discriminator: float
    heads: float
    total: float
    discriminator_layers: Tuple[float, ...]
    backward_factor: float
    rules: str


def train_step_flops(config: ElectraConfig, batch_size: int, seq_len: int,
                     active_fractions: Optional[Sequence[float]] = None, *,
                     masked_fraction: Optional[float] = None, backward_factor: float = 2.0,
                     rules: str = "official") -> StepFlops:
    """FLOPs of one pre-training step on batch_size sequences of seq_len tokens (see the module docstring).

    active_fractions: per discriminator layer, the fraction of tokens it ran on (the model reports it as
    `output.active_fractions`); masked_fraction: the fraction of positions the generator predicts
    (default config.mask_prob). A statistical generator costs nothing.
    """
    if backward_factor < 0:
        raise ValueError(f"backward_factor must be >= 0, got {backward_factor}")
    fractions = _fractions(config, active_fractions)
    scale = batch_size * (1.0 + backward_factor)
    embed, layers, heads = _discriminator_parts(config, seq_len, fractions, rules)
    generator = 0.0
    if config.generator == "network":
        frac = config.mask_prob if masked_fraction is None else masked_fraction
        gen_layers = config.gen_num_hidden_layers * layer_flops(
            config.gen_hidden_size, config.gen_intermediate_size, config.gen_num_attention_heads,
            seq_len, seq_len, rules)
        generator = embedding_flops(config, config.gen_hidden_size, seq_len, rules) + gen_layers
        heads += mlm_head_flops(config, frac * seq_len, rules)
    discriminator = embed + sum(layers)
    return StepFlops(
        generator=generator * scale, discriminator=discriminator * scale, heads=heads * scale,
        total=(generator + discriminator + heads) * scale,
        discriminator_layers=tuple(f * scale for f in layers), backward_factor=backward_factor, rules=rules)


__all__ = ["StepFlops", "inference_flops", "train_step_flops", "budget_fractions", "layer_flops",
           "embedding_flops", "rtd_head_flops", "exit_head_flops", "mlm_head_flops", "OFFICIAL_OUTPUT_FRACTION",
           "RULES"]
