"""ElectraConfig and EarlyExitConfig: model sizes, the pre-training objective, early exit, presets.

Presets follow the ELECTRA paper and the official code (google-research/electra):
    name   layers hidden FFN   heads embedding generator mask  lr    batch seq
    small  12     256    1024  4     128       1/4       15%   5e-4  128   128
    base   12     768    3072  12    768       1/3       15%   2e-4  256   512
    large  24     1024   4096  16    1024      1/4       25%   2e-4  2048  512
    tiny   4      64     256   2     32        1/2       15%   1e-3  8     128   (tests and the CPU demo)
The generator has the discriminator's depth and a fraction of its hidden and FFN sizes, with
max(1, hidden // 64) heads (the official rule); `generator_hidden_size` etc. set any size directly.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

from .._validation import check_temperature

GENERATORS = ("network", "uniform", "unigram", "cluster")
EMBEDDING_SHARING = ("tied", "gdes", "none")


@dataclass
class EarlyExitConfig:
    """Token-level early exit in the discriminator: after each exit layer some tokens stop being
    processed; they keep their state and their exit head's logit, and are restored before the last layer.

    Two policies decide which tokens go on:
    - budget (the default; `keep` set or neither field set): after the i-th exit layer each row of T
      positions keeps k_i = ceil(keep_i * T) of them, those its exit head is least confident about
      (smallest |logit|), with [CLS]/[SEP] always kept, padding leaving first and ties broken by position
      (electra_fast.functional.select_tokens). Shapes are static: [B, k_i, H], no host synchronisation.
    - threshold (`threshold` set): a token stops once its exit head is confident, max(p, 1 - p) >= threshold
      with p = sigmoid(logit); the rest are packed and re-padded (one host synchronisation per exit layer).

    keep: the kept fraction of positions, one float for every exit layer or a list with one per exit layer
        (nested exits: non-increasing), each in (0, 1]. Budget policy only.
    threshold: in (0.5, 1]; 1.0 means nothing ever exits (the heads still train). Threshold policy only.
    exit_layers: layers (1-based: "after layer l") with an exit head, each in [1, num_hidden_layers - 1];
        None means [num_hidden_layers // 3] (after layer 4 of ELECTRA-Small's 12).
    warmup_steps: budget: the exit fraction 1 - keep_i ramps linearly from 0 at step 0 to its full value at
        warmup_steps, so early training sees every token; threshold: no token exits before warmup_steps.
    selection: which tokens stay under a budget: "adaptive" (the least confident, as above) or "random"
        (a uniformly random choice, random-LTD style; [CLS]/[SEP] still stay): the ablation of adaptivity.
    restore_last_layer: put the exited tokens back before the final layer, so it sees every token (as
        Token Dropping does); False restores them only at the output.
    exit_loss_weight: weight of the exit heads' auxiliary RTD loss (deep supervision at the exit layers),
        relative to the main RTD loss; each exit head's loss is the mean over the tokens it scores.
    An exit head is one linear map H -> 1 (2H FLOPs per token, under 0.1% of a layer's at ELECTRA-Small).
    """

    keep: Optional[Any] = None
    threshold: Optional[float] = None
    exit_layers: Optional[List[int]] = None
    warmup_steps: int = 0
    selection: str = "adaptive"
    restore_last_layer: bool = True
    exit_loss_weight: float = 1.0

    @property
    def policy(self) -> str:
        """"threshold" when a threshold is set, else "budget"."""
        return "threshold" if self.threshold is not None else "budget"

    def layers(self, num_hidden_layers: int) -> List[int]:
        """The exit layers for a discriminator of `num_hidden_layers` layers, ascending."""
        if self.exit_layers is None:
            return [max(1, num_hidden_layers // 3)]
        return sorted(self.exit_layers)

    def keeps(self, num_hidden_layers: int) -> List[float]:
        """The kept fraction after each exit layer (budget policy), in the order of `layers`."""
        layers = self.layers(num_hidden_layers)
        keep = DEFAULT_KEEP if self.keep is None else self.keep
        return [float(keep)] * len(layers) if isinstance(keep, (int, float)) else [float(v) for v in keep]

    def kept_counts(self, num_hidden_layers: int, seq_len: int, step: Optional[int] = None) -> List[int]:
        """Positions each row keeps after each exit layer at `step` (None: past the warm-up), budget policy:
        k_i = ceil((1 - (1 - keep_i) * ramp) * seq_len), ramp = min(1, step / warmup_steps)."""
        ramp = 1.0 if step is None or step >= self.warmup_steps else step / self.warmup_steps
        counts, previous = [], seq_len
        for keep in self.keeps(num_hidden_layers):
            # round() first so that 0.3 * 10 = 3.0000000000000004 keeps 3, not 4
            k = math.ceil(round((1.0 - (1.0 - keep) * ramp) * seq_len, 9))
            previous = min(previous, k)
            counts.append(previous)
        return counts

    def validate(self, num_hidden_layers: int) -> None:
        if self.threshold is not None and self.keep is not None:
            raise ValueError("early_exit sets both keep (budget policy) and threshold (threshold policy); "
                             "set one of them")
        if self.threshold is not None and not (
                isinstance(self.threshold, (int, float)) and not isinstance(self.threshold, bool)
                and 0.5 < self.threshold <= 1.0):
            raise ValueError(f"early_exit.threshold must be in (0.5, 1], got {self.threshold!r}")
        if isinstance(self.warmup_steps, bool) or not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ValueError(f"early_exit.warmup_steps must be an int >= 0, got {self.warmup_steps!r}")
        if self.exit_loss_weight < 0:
            raise ValueError(f"early_exit.exit_loss_weight must be >= 0, got {self.exit_loss_weight}")
        if self.selection not in SELECTIONS:
            raise ValueError(f"early_exit.selection must be one of {SELECTIONS}, got {self.selection!r}")
        if self.selection != "adaptive" and self.policy != "budget":
            raise ValueError(f"early_exit.selection={self.selection!r} needs the budget policy (keep), "
                             f"not a threshold")
        if self.exit_layers is not None and not isinstance(self.exit_layers, (list, tuple)):
            raise ValueError(f"early_exit.exit_layers must be a list of layers, got {self.exit_layers!r}")
        layers = self.layers(num_hidden_layers)
        if not layers:
            raise ValueError("early_exit.exit_layers is empty; give at least one exit layer (or None)")
        if len(set(layers)) != len(layers):
            raise ValueError(f"early_exit.exit_layers has duplicates: {self.exit_layers}")
        for layer in layers:
            if isinstance(layer, bool) or not isinstance(layer, int) or not 1 <= layer < num_hidden_layers:
                raise ValueError(f"early_exit.exit_layers must be integers in [1, {num_hidden_layers - 1}] "
                                 f"(a token exits after layer l) for {num_hidden_layers} layers, got {layer!r}")
        if self.policy == "budget":
            self._validate_keep(len(layers))

    def _validate_keep(self, num_exits: int) -> None:
        keep = DEFAULT_KEEP if self.keep is None else self.keep
        values = [keep] if isinstance(keep, (int, float)) else keep
        if not isinstance(values, (list, tuple)) or not values:
            raise ValueError(f"early_exit.keep must be a float or a list of floats in (0, 1], got {keep!r}")
        if not isinstance(keep, (int, float)) and len(values) != num_exits:
            raise ValueError(f"early_exit.keep has {len(values)} values but there are {num_exits} exit layers; "
                             f"give one value per exit layer, or one float for all")
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 < v <= 1.0:
                raise ValueError(f"early_exit.keep values must be in (0, 1] (the fraction of positions kept), "
                                 f"got {v!r}")
        if any(b > a for a, b in zip(values, values[1:])):
            raise ValueError(f"early_exit.keep must not increase from one exit layer to the next (nested exits "
                             f"keep a subset), got {list(values)}")


DEFAULT_KEEP = 0.5
SELECTIONS = ("adaptive", "random")


_PRESETS: Dict[str, Dict[str, Any]] = {
    "tiny": dict(num_hidden_layers=4, hidden_size=64, intermediate_size=256, num_attention_heads=2,
                 embedding_size=32, generator_size_fraction=0.5, mask_prob=0.15,
                 learning_rate=1e-3, batch_size=8, seq_len=128, warmup_steps=100, train_steps=10_000),
    "small": dict(num_hidden_layers=12, hidden_size=256, intermediate_size=1024, num_attention_heads=4,
                  embedding_size=128, generator_size_fraction=0.25, mask_prob=0.15,
                  learning_rate=5e-4, batch_size=128, seq_len=128, train_steps=1_000_000),
    "base": dict(num_hidden_layers=12, hidden_size=768, intermediate_size=3072, num_attention_heads=12,
                 embedding_size=768, generator_size_fraction=1 / 3, mask_prob=0.15,
                 learning_rate=2e-4, batch_size=256, seq_len=512, train_steps=766_000),
    "large": dict(num_hidden_layers=24, hidden_size=1024, intermediate_size=4096, num_attention_heads=16,
                  embedding_size=1024, generator_size_fraction=0.25, mask_prob=0.25,
                  learning_rate=2e-4, batch_size=2048, seq_len=512, train_steps=400_000),
}


@dataclass
class ElectraConfig:
    """Everything that defines an ELECTRA model and its pre-training objective.

    Token ids default to the BERT uncased vocabulary ([PAD] 0, [CLS] 101, [SEP] 102, [MASK] 103).
    Training defaults (learning_rate, batch_size, seq_len, warmup_steps, train_steps, weight_decay,
    adam_epsilon) are carried for the training loop; the model itself does not read them.
    """

    # discriminator (and the shared embedding block)
    vocab_size: int = 30522
    embedding_size: int = 128
    hidden_size: int = 256
    num_hidden_layers: int = 12
    num_attention_heads: int = 4
    intermediate_size: int = 1024
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    pad_token_id: int = 0
    cls_token_id: int = 101
    sep_token_id: int = 102
    mask_token_id: int = 103
    # generator
    generator: str = "network"
    generator_size_fraction: float = 0.25
    generator_hidden_size: Optional[int] = None
    generator_intermediate_size: Optional[int] = None
    generator_num_attention_heads: Optional[int] = None
    generator_num_hidden_layers: Optional[int] = None
    temperature: float = 1.0
    embedding_sharing: str = "tied"
    # objective
    mask_prob: float = 0.15
    mask_fraction: float = 0.85
    gen_weight: float = 1.0
    disc_weight: float = 50.0
    early_exit: Optional[EarlyExitConfig] = None
    # training defaults
    learning_rate: float = 5e-4
    batch_size: int = 128
    seq_len: int = 128
    warmup_steps: int = 10_000
    train_steps: int = 1_000_000
    weight_decay: float = 0.01
    adam_epsilon: float = 1e-6

    def __post_init__(self):
        if isinstance(self.early_exit, dict):
            self.early_exit = EarlyExitConfig(**self.early_exit)
        self.validate()

    # derived generator sizes -------------------------------------------------------------------
    @property
    def gen_hidden_size(self) -> int:
        if self.generator_hidden_size is not None:
            return self.generator_hidden_size
        return max(1, int(round(self.hidden_size * self.generator_size_fraction)))

    @property
    def gen_intermediate_size(self) -> int:
        if self.generator_intermediate_size is not None:
            return self.generator_intermediate_size
        return max(1, int(round(self.intermediate_size * self.generator_size_fraction)))

    @property
    def gen_num_attention_heads(self) -> int:
        if self.generator_num_attention_heads is not None:
            return self.generator_num_attention_heads
        return max(1, self.gen_hidden_size // 64)

    @property
    def gen_num_hidden_layers(self) -> int:
        if self.generator_num_hidden_layers is not None:
            return self.generator_num_hidden_layers
        return self.num_hidden_layers

    @property
    def special_token_ids(self) -> tuple:
        """Ids never masked and never exiting early: [CLS], [SEP], [MASK] (padding is excluded by the mask)."""
        return (self.cls_token_id, self.sep_token_id, self.mask_token_id)

    # validation --------------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise ValueError naming the field for any inconsistent setting."""
        positive = ("vocab_size", "embedding_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                    "intermediate_size", "max_position_embeddings", "type_vocab_size", "batch_size", "seq_len")
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"num_attention_heads ({self.num_attention_heads}) must divide hidden_size "
                             f"({self.hidden_size})")
        if self.gen_hidden_size % self.gen_num_attention_heads:
            raise ValueError(f"the generator's heads ({self.gen_num_attention_heads}) must divide its hidden "
                             f"size ({self.gen_hidden_size})")
        if self.gen_num_hidden_layers < 1 or self.gen_intermediate_size < 1:
            raise ValueError("the generator needs at least one layer and a positive FFN size")
        if not 0 < self.generator_size_fraction <= 1:
            raise ValueError(f"generator_size_fraction must be in (0, 1], got {self.generator_size_fraction}")
        if self.generator not in GENERATORS:
            raise ValueError(f"generator must be one of {GENERATORS}, got {self.generator!r}")
        if self.embedding_sharing not in EMBEDDING_SHARING:
            raise ValueError(f"embedding_sharing must be one of {EMBEDDING_SHARING}, got {self.embedding_sharing!r}")
        seen = {}
        for name in ("pad_token_id", "cls_token_id", "sep_token_id", "mask_token_id"):
            value = getattr(self, name)
            if not 0 <= value < self.vocab_size:
                raise ValueError(f"{name} must be in [0, vocab_size={self.vocab_size}), got {value}")
            if value in seen:  # masking would write [CLS]/[SEP]/[PAD], or never mask what it should
                raise ValueError(f"{seen[value]} and {name} are both {value}; the special token ids must differ")
            seen[value] = name
        if not 0 < self.mask_prob < 1:
            raise ValueError(f"mask_prob must be in (0, 1), got {self.mask_prob}")
        if not 0 <= self.mask_fraction <= 1:
            raise ValueError(f"mask_fraction must be in [0, 1], got {self.mask_fraction}")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        check_temperature(self.temperature)
        if not (isinstance(self.layer_norm_eps, (int, float)) and 0 < self.layer_norm_eps < float("inf")):
            raise ValueError(f"layer_norm_eps must be a positive finite float, got {self.layer_norm_eps!r}")
        if not all(0 <= w < math.inf for w in (self.gen_weight, self.disc_weight)):
            raise ValueError(f"gen_weight and disc_weight must be finite and >= 0, got {self.gen_weight}, "
                             f"{self.disc_weight}")
        if self.hidden_act != "gelu":
            raise ValueError(f"hidden_act must be 'gelu' (ELECTRA's activation), got {self.hidden_act!r}")
        if self.early_exit is not None:
            if not isinstance(self.early_exit, EarlyExitConfig):
                raise TypeError(f"early_exit must be an EarlyExitConfig or None, got {type(self.early_exit).__name__}")
            self.early_exit.validate(self.num_hidden_layers)

    # presets and serialisation -------------------------------------------------------------------
    @classmethod
    def preset(cls, name: str, **overrides) -> "ElectraConfig":
        """The preset `name` ("tiny", "small", "base", "large") with any field overridden."""
        if name not in _PRESETS:
            raise ValueError(f"unknown preset {name!r}; expected one of {sorted(_PRESETS)}")
        unknown = set(overrides) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown ElectraConfig fields: {sorted(unknown)}")
        return cls(**{**_PRESETS[name], **overrides})

    @staticmethod
    def preset_names() -> List[str]:
        return list(_PRESETS)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "ElectraConfig":
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown ElectraConfig fields: {sorted(unknown)}")
        return cls(**data)

    def to_json(self, indent: Optional[int] = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ElectraConfig":
        return cls.from_dict(json.loads(text))

    def replace(self, **changes) -> "ElectraConfig":
        """A validated copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def exit_layers_of(config: ElectraConfig) -> Sequence[int]:
    """The discriminator's exit layers (empty without early exit)."""
    return [] if config.early_exit is None else config.early_exit.layers(config.num_hidden_layers)


__all__ = ["ElectraConfig", "EarlyExitConfig", "GENERATORS", "EMBEDDING_SHARING", "exit_layers_of"]
