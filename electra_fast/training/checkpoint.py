"""The checkpoint file of a pre-training run: one safetensors file, written atomically.

TrainingCheckpoint is what a run saves and resumes from (model, optimizer, CheckpointMeta);
save_checkpoint / load_checkpoint write and read the file.

Tensors, keyed by prefix:
    model.<name>                    the module's state dict (a tied weight under each of its names, as copies)
    extra.<module/path>.<key>...    a module's extra state (`<module.path>._extra_state`, a nested dict of
                                    tensors, e.g. ElectraForPretraining's sampler counts)
    optim.state.<param/fqn>.<key>   AdamW state per parameter (exp_avg, exp_avg_sq, step)
JSON metadata under the key "electra_fast": the fields of CheckpointMeta, plus optim_param_groups (the
optimizer's param_groups) and extra_states ({name: present}) that save_checkpoint adds and load_checkpoint
takes back out.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib

import torch
from torch import nn

CHECKPOINT = "checkpoint.safetensors"


@dataclasses.dataclass
class CheckpointMeta:
    """Where a run stands and what it is: the JSON metadata a training checkpoint carries."""
    step: int              # optimizer steps done
    data_position: int     # training sequences consumed by all ranks (where the data resumes)
    scheduler: dict        # the learning-rate scheduler's state_dict()
    config: dict           # ElectraConfig.to_dict() of the model
    train_config: dict     # the TrainConfig of the run, as a dict
    warmup: int            # warm-up steps of the schedule (a resumed run keeps them)
    stats: dict            # running totals: tokens, flops (as run), flops_full (no early exit), time (s)
    world: int             # ranks of the run that wrote it

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, meta: dict) -> "CheckpointMeta":
        fields = {f.name for f in dataclasses.fields(cls)}
        if set(meta) != fields:
            raise ValueError(f"checkpoint metadata has fields {sorted(meta)}, expected {sorted(fields)} "
                             f"(written by another version of electra_fast?)")
        return cls(**meta)


@dataclasses.dataclass
class TrainingCheckpoint:
    """The state of a training run: the module's and the optimizer's full (unsharded) state dicts in
    torch.distributed.checkpoint's layout (optimizer state keyed by parameter name), and its metadata."""
    model_state: dict
    optim_state: dict
    meta: CheckpointMeta

    @classmethod
    def capture(cls, model: nn.Module, optimizer: torch.optim.Optimizer, meta: CheckpointMeta
                ) -> "TrainingCheckpoint":
        """The state of `model` (an FSDP module is gathered: every rank must call this) and `optimizer`,
        on CPU."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

        model_state, optim_state = get_state_dict(
            model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return cls(model_state, optim_state, meta)

    def restore(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Load the saved state into `model` and `optimizer` (built as the saving run built them)."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

        set_state_dict(model, optimizer, model_state_dict=self.model_state, optim_state_dict=self.optim_state,
                       options=StateDictOptions(full_state_dict=True))

    def save(self, path: pathlib.Path) -> None:
        save_checkpoint(path, model_state=self.model_state, optim_state=self.optim_state, meta=self.meta.to_dict())

    @classmethod
    def load(cls, path: pathlib.Path) -> "TrainingCheckpoint":
        model_state, optim_state, meta = load_checkpoint(path)
        return cls(model_state, optim_state, CheckpointMeta.from_dict(meta))


def save_checkpoint(path: pathlib.Path, *, model_state: dict, optim_state: dict, meta: dict) -> None:
    """Write everything to `path` atomically: a temp file in the same directory, fsync, rename.

    A module's extra state (`*._extra_state`, e.g. ElectraForPretraining's sampler counts) is a dict of
    tensors or None; it is stored under `extra.<name>` and its presence recorded in the metadata."""
    from safetensors.torch import save_file

    extras = {k: v for k, v in model_state.items() if k.endswith("_extra_state")}
    tensors = _tensors_for_file("model", {k: v for k, v in model_state.items() if k not in extras})
    for key, value in extras.items():
        if value is not None:
            tensors.update(_tensors_for_file(f"extra.{key.replace('.', '/')}", value))
    tensors.update(_tensors_for_file("optim", {"state": _escape(optim_state["state"])}))
    meta = dict(meta, optim_param_groups=optim_state["param_groups"],
                extra_states={k: v is not None for k, v in extras.items()})
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file(tensors, str(tmp), metadata={"electra_fast": json.dumps(meta)})
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: pathlib.Path) -> tuple[dict, dict, dict]:
    """(model_state, optim_state, meta) as written by save_checkpoint."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), "pt") as f:
        meta = json.loads(f.metadata()["electra_fast"])
    tensors = load_file(str(path))
    optim = {"state": _unescape(_unflatten("optim", tensors).get("state", {})),
             "param_groups": meta.pop("optim_param_groups")}
    model = _strip_prefix("model", tensors)
    for key, present in meta.pop("extra_states").items():
        model[key] = _unflatten(f"extra.{key.replace('.', '/')}", tensors) if present else None
    return model, optim, meta


def _tensors_for_file(prefix: str, state: dict) -> dict:
    """Flatten a nested dict of tensors to `prefix.a.b` keys, cloning tensors that share storage (tied
    weights), since safetensors stores each buffer once."""
    out, seen = {}, set()

    def visit(key, value):
        if isinstance(value, dict):
            for k, v in value.items():
                visit(f"{key}.{k}", v)
        elif isinstance(value, torch.Tensor):
            t = value.detach().cpu()
            ptr = (t.untyped_storage().data_ptr(), t.storage_offset()) if t.numel() else None
            t = t.clone() if ptr in seen else t
            seen.add(ptr)
            out[key] = t.contiguous()
        else:
            raise TypeError(f"checkpoint: {key} is a {type(value).__name__}, not a tensor")

    visit(prefix, state)
    return out


def _unflatten(prefix: str, tensors: dict) -> dict:
    """The nested dict under `prefix.` (every dot a level): the inverse of _tensors_for_file."""
    out: dict = {}
    for key, value in tensors.items():
        if not key.startswith(prefix + "."):
            continue
        parts = key[len(prefix) + 1:].split(".")
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def _strip_prefix(prefix: str, tensors: dict) -> dict:
    """A module state dict keeps its dotted names: strip the prefix only."""
    return {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def _escape(optim_state: dict) -> dict:
    """Optimizer state is keyed by parameter name ({fqn: {key: tensor}}, torch.distributed.checkpoint's
    layout); its dots become slashes so that the flattened file key splits back unambiguously."""
    return {fqn.replace(".", "/"): s for fqn, s in optim_state.items()}


def _unescape(optim_state: dict) -> dict:
    return {fqn.replace("/", "."): s for fqn, s in optim_state.items()}
