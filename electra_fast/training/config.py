"""TrainConfig: every option of a pre-training run (the flags of `electra-fast pretrain`), with its checks."""
from __future__ import annotations

import dataclasses
from typing import Optional


@dataclasses.dataclass
class TrainConfig:
    """Everything `electra-fast pretrain` takes; None means the preset's value."""
    preset: str = "tiny"
    corpus: Optional[list] = None            # None: the bundled corpus
    tokenizer: Optional[str] = None          # a tokenizer.json / vocab.txt; None: train one on the corpus
    vocab_size: int = 8192                   # of the tokenizer trained on the corpus
    steps: int = 300
    batch_size: Optional[int] = None         # rows per rank per micro-step
    seq_len: Optional[int] = None
    lr: Optional[float] = None
    warmup_steps: Optional[int] = None       # None: min(preset's, steps // 10)
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    accumulation: int = 1
    generator: str = "network"
    early_exit_threshold: Optional[float] = None  # threshold policy
    early_exit_keep: Optional[list] = None   # budget policy: kept fraction, one value or one per exit layer
    early_exit_layers: Optional[list] = None  # None: num_hidden_layers // 3
    early_exit_warmup_steps: int = 0
    seed: int = 0
    output: str = "electra-pretrain"
    resume: bool = False
    eval_every: int = 0                      # 0: only at the end
    eval_sequences: int = 64
    save_every: int = 0                      # 0: only at the end (and on Ctrl-C)
    log_every: int = 10
    heldout_fraction: float = 0.02
    streaming: bool = False
    cache_dir: Optional[str] = None
    compile: bool = False
    fsdp: bool = False
    device: Optional[str] = None             # None: cuda:<local rank> if available, else cpu
    progress: bool = True
    export_hf: bool = True
    model_overrides: dict = dataclasses.field(default_factory=dict)  # extra ElectraConfig fields
    # The fields the caller set (the command line: the flags given); None: those that differ from their defaults.
    # On --resume the checkpoint's record fills in the others and a set one must agree (training.record).
    given: Optional[tuple] = None

    @property
    def early_exit(self) -> bool:
        """Whether any early-exit option is set (then the run uses early exit)."""
        return (self.early_exit_threshold is not None or self.early_exit_keep is not None
                or self.early_exit_layers is not None or self.early_exit_warmup_steps > 0)

    def validate(self) -> None:
        positive = ("steps", "vocab_size", "accumulation", "eval_sequences", "log_every")
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("batch_size", "seq_len", "warmup_steps"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < (0 if name == "warmup_steps" else 1)):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.seed < 2**62:
            raise ValueError(f"seed must be in [0, 2^62), got {self.seed}")
        if self.eval_every < 0 or self.save_every < 0:
            raise ValueError("eval_every and save_every must be >= 0")
        if self.grad_clip < 0:
            raise ValueError(f"grad_clip must be >= 0 (0 turns clipping off), got {self.grad_clip}")
