"""The run record: what a checkpoint says its run is, and the config a resumed run takes from it.

A checkpoint's metadata holds the run's TrainConfig (train_config), its model config and its identity (the
tokenizer's and the training data's digests, electra_fast.training.setup). On resume that record is the truth:
    RECORD fields (everything that decides what is trained) come from the checkpoint; one the caller set to
        another value is a ValueError naming the flag, the checkpoint's value and the new value;
    CHANGEABLE fields (how the run is watched, saved and placed) come from the caller;
    steps may only grow: a run is extended by asking for more steps than the checkpoint has done.
"Set by the caller": the fields in TrainConfig.given (the command line's flags), or when that is None every field
that differs from its default. The global batch (ranks x accumulation x rows) must stay the same, so the ranks
and the accumulation may change together only.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict

from .config import TrainConfig

RECORD = ("preset", "corpus", "tokenizer", "vocab_size", "batch_size", "seq_len", "lr", "warmup_steps",
          "weight_decay", "grad_clip", "accumulation", "generator", "early_exit_threshold", "early_exit_keep",
          "early_exit_layers", "early_exit_warmup_steps", "seed", "eval_sequences", "heldout_fraction", "streaming",
          "model_overrides")
CHANGEABLE = ("steps", "output", "resume", "eval_every", "save_every", "log_every", "cache_dir", "compile", "fsdp",
              "device", "progress", "export_hf", "given")
# Compared by content in setup (the data's and the tokenizer's digests), not by the path given.
BY_CONTENT = ("corpus", "tokenizer")


def flag(field: str) -> str:
    """The command-line flag of a TrainConfig field."""
    special = {"progress": "--no-progress", "export_hf": "--no-export", "model_overrides": "model_overrides"}
    return special.get(field, "--" + field.replace("_", "-"))


def set_by_caller(cfg: TrainConfig) -> set:
    """The fields the caller set: cfg.given, or those that differ from TrainConfig's defaults."""
    if cfg.given is not None:
        return set(cfg.given)
    default = TrainConfig()
    return {f.name for f in dataclasses.fields(TrainConfig) if getattr(cfg, f.name) != getattr(default, f.name)}


def _effective(model_config: Dict[str, Any], warmup: int) -> Dict[str, Any]:
    """The values the checkpoint's run used for the fields it left to the preset (None)."""
    return {"batch_size": model_config["batch_size"], "seq_len": model_config["seq_len"],
            "lr": model_config["learning_rate"], "warmup_steps": warmup}


def resumed_config(cfg: TrainConfig, meta, world: int) -> TrainConfig:
    """The config a run resumed from a checkpoint with CheckpointMeta `meta` uses, on `world` ranks.

    Raises ValueError when a field set by the caller contradicts the record, when steps does not go past the
    checkpoint's step, or when the global batch would change."""
    saved = meta.train_config
    given = set_by_caller(cfg)
    effective = _effective(meta.config, meta.warmup)
    changes = {}
    for field in RECORD:
        if field not in saved:
            raise ValueError(f"the checkpoint's run record has no {field!r} (written by another version of "
                             f"electra_fast?)")
        recorded = saved[field]
        if field in given and field not in BY_CONTENT and field != "accumulation":
            new = getattr(cfg, field)
            before = effective[field] if recorded is None and field in effective else recorded
            if _normalised(new) != _normalised(before):
                raise ValueError(f"{flag(field)} {_shown(new)} contradicts the checkpoint, whose run has "
                                 f"{_shown(before)}; a resumed run keeps its record (drop the flag, or start a new "
                                 f"run in another --output)")
        if field not in BY_CONTENT or field not in given:
            changes[field] = recorded
    if "accumulation" in given:
        changes["accumulation"] = cfg.accumulation
    before_batch, after_batch = meta.world * saved["accumulation"], world * changes["accumulation"]
    if before_batch != after_batch:
        raise ValueError(f"the global batch would change: the checkpoint's run had {meta.world} rank(s) x "
                         f"--accumulation {saved['accumulation']}, this one {world} x {changes['accumulation']}; "
                         f"keep ranks x accumulation at {before_batch}")
    steps = cfg.steps if "steps" in given else saved["steps"]
    if steps <= meta.step:
        asked = f"--steps {steps}" if "steps" in given else f"its --steps {steps}"
        raise ValueError(f"the checkpoint is at step {meta.step} and {asked} is not past it: nothing to train; "
                         f"pass --steps above {meta.step} to extend the run")
    changes["steps"] = steps
    return dataclasses.replace(cfg, **changes)


def _normalised(value):
    """Lists and tuples compare equal; a one-element list equals its element (--early-exit-keep 0.5)."""
    if isinstance(value, (list, tuple)):
        value = [_normalised(v) for v in value]
        return value[0] if len(value) == 1 else value
    return value


def _shown(value) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value))
    return repr(value) if isinstance(value, str) or value is None else str(value)


def check_identity(recorded: dict, current: dict, given: set) -> None:
    """Raise ValueError when a resumed run reads another tokenizer or other training data than the checkpoint's
    run did (`recorded`, `current`: training.setup.run_identity); `given`: the fields the caller set."""
    if current["tokenizer_sha256"] != recorded["tokenizer_sha256"]:
        source = "--tokenizer" if "tokenizer" in given else "<output>/tokenizer.json"
        raise ValueError(f"{source} is not the tokenizer the checkpoint's run used (sha256 "
                         f"{current['tokenizer_sha256'][:12]}..., the run's {recorded['tokenizer_sha256'][:12]}...)")
    if current["train_sha256"] != recorded["train_sha256"]:
        source = ("--corpus gives other training data than" if "corpus" in given
                  else "the corpus files have changed since")
        raise ValueError(f"{source} the checkpoint's run ({current['train_sequences']} train sequences, sha256 "
                         f"{current['train_sha256'][:12]}...; the run's: {recorded['train_sequences']}, "
                         f"{recorded['train_sha256'][:12]}...); resuming would not continue the same data order")
