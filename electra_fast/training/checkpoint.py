"""The checkpoint file of a pre-training run: one safetensors file, written atomically, checked on load.

TrainingCheckpoint is what a run saves and resumes from (model, optimizer, CheckpointMeta);
save_checkpoint / load_checkpoint write and read the file; load_latest picks the newest readable one.

Tensors, keyed by prefix:
    model.<name>                    the module's state dict (a tied weight under each of its names, as copies)
    extra.<module/path>.<key>...    a module's extra state (`<module.path>._extra_state`, a nested dict of
                                    tensors, e.g. ElectraForPretraining's sampler counts)
    optim.state.<param/fqn>.<key>   AdamW state per parameter (exp_avg, exp_avg_sq, step)
JSON metadata under the key "electra_fast": the fields of CheckpointMeta, plus optim_param_groups (the
optimizer's param_groups) and extra_states ({name: present}) that save_checkpoint adds and load_checkpoint
takes back out. Under "electra_fast.sha256": the sha256 of that JSON and of every tensor (name, dtype, shape,
bytes, in name order), which load_checkpoint verifies, so a truncated, garbled or edited file is a
CheckpointError naming it, never a silently different run.

Saving keeps the checkpoint it replaces as checkpoint.previous.safetensors (the new file is written to a temp
file, synced, and renamed over the old one after the old one has moved). A run resumes from the previous one,
with a warning, when the latest cannot be read (load_latest); temp files of a save that was killed are removed
at the next start (remove_orphans).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import re
from typing import Callable

import torch
from torch import nn

CHECKPOINT = "checkpoint.safetensors"
PREVIOUS = "checkpoint.previous.safetensors"
CORRUPT = "checkpoint.corrupt.safetensors"
_META_KEY, _DIGEST_KEY = "electra_fast", "electra_fast.sha256"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read back as it was written (missing, truncated, garbled, edited)."""


@dataclasses.dataclass
class CheckpointMeta:
    """Where a run stands and what it is: the JSON metadata a training checkpoint carries."""
    step: int              # optimizer steps done
    data_position: int     # training sequences consumed by all ranks (where the data resumes)
    scheduler: dict        # the learning-rate scheduler's state_dict()
    config: dict           # ElectraConfig.to_dict() of the model
    train_config: dict     # the TrainConfig of the run, as a dict (the record a resume keeps: training.record)
    warmup: int            # warm-up steps of the schedule (a resumed run keeps them)
    stats: dict            # running totals: tokens, flops (as run), flops_full (no early exit), time (s)
    world: int             # ranks of the run that wrote it
    identity: dict         # what the run read: tokenizer_sha256, train_sha256, train_sequences (training.setup)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, meta: dict) -> "CheckpointMeta":
        fields = {f.name for f in dataclasses.fields(cls)}
        if set(meta) != fields:
            raise CheckpointError(f"checkpoint metadata has fields {sorted(meta)}, expected {sorted(fields)} "
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

        # cpu_offload gathers a GPU model into host memory; a CPU model is there already (and FSDP on CPU
        # crashes with it, torch 2.13)
        on_cpu = all(p.device.type == "cpu" for p in model.parameters())
        model_state, optim_state = get_state_dict(
            model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=not on_cpu))
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
        """The checkpoint at `path`; CheckpointError (naming the file) when it cannot be read as written."""
        model_state, optim_state, meta = load_checkpoint(path)
        try:
            return cls(model_state, optim_state, CheckpointMeta.from_dict(meta))
        except CheckpointError as e:
            raise CheckpointError(f"checkpoint {str(path)!r}: {e}") from None


def load_latest(directory: pathlib.Path, *, main: bool = True, log: Callable[[str], None] = print
                ) -> TrainingCheckpoint:
    """The checkpoint in `directory`, or the previous one (with a warning through `log`) when the latest is
    missing or unreadable; the unreadable latest is then kept as checkpoint.corrupt.safetensors (by the `main`
    process), so that the next save does not push the good previous one out. CheckpointError when neither
    loads."""
    latest, previous = directory / CHECKPOINT, directory / PREVIOUS
    try:
        return TrainingCheckpoint.load(latest)
    except CheckpointError as latest_error:
        if not previous.exists():
            raise
        try:
            checkpoint = TrainingCheckpoint.load(previous)
        except CheckpointError as previous_error:
            raise CheckpointError(f"{latest_error}; and the previous one: {previous_error}") from None
        if main and latest.exists():
            os.replace(latest, directory / CORRUPT)
        log(f"warning: {latest_error}; resuming from the previous checkpoint {str(previous)!r} (step "
            f"{checkpoint.meta.step}); the unreadable file is kept as {CORRUPT}")
        return checkpoint


def remove_orphans(directory: pathlib.Path) -> list:
    """Remove the temp files that saves killed mid-write left in `directory` (those of processes that are gone);
    returns their names."""
    removed = []
    for path in directory.glob(f".{CHECKPOINT}.*.tmp"):
        match = re.fullmatch(rf"\.{re.escape(CHECKPOINT)}\.(\d+)\.tmp", path.name)
        if match and not _alive(int(match.group(1))):
            path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def save_checkpoint(path: pathlib.Path, *, model_state: dict, optim_state: dict, meta: dict) -> None:
    """Write everything to `path` atomically (a temp file in the same directory, fsync, rename), with its
    checksum; a file already at `path` becomes the previous checkpoint (checkpoint.previous.safetensors beside
    it for CHECKPOINT, `<stem>.previous<suffix>` for other names).

    A module's extra state (`*._extra_state`, e.g. ElectraForPretraining's sampler counts) is a dict of
    tensors or None; it is stored under `extra.<name>` and its presence recorded in the metadata."""
    from safetensors.torch import save_file

    extras = {k: v for k, v in model_state.items() if k.endswith("_extra_state")}
    tensors = _tensors_for_file("model", {k: v for k, v in model_state.items() if k not in extras})
    for key, value in extras.items():
        if value is not None:
            tensors.update(_tensors_for_file(f"extra.{key.replace('.', '/')}", value))
    tensors.update(_tensors_for_file("optim", {"state": _escape(optim_state["state"])}))
    meta_json = json.dumps(dict(meta, optim_param_groups=optim_state["param_groups"],
                                extra_states={k: v is not None for k, v in extras.items()}))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file(tensors, str(tmp), metadata={_META_KEY: meta_json, _DIGEST_KEY: _digest(meta_json, tensors)})
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        if path.exists():
            os.replace(path, previous_of(path))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def previous_of(path: pathlib.Path) -> pathlib.Path:
    """Where save_checkpoint keeps the file it replaces at `path`."""
    return path.with_name(PREVIOUS if path.name == CHECKPOINT else f"{path.stem}.previous{path.suffix}")


def load_checkpoint(path: pathlib.Path) -> tuple[dict, dict, dict]:
    """(model_state, optim_state, meta) as written by save_checkpoint; CheckpointError naming the file when it
    is missing, not a safetensors file, or does not match its checksum."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    where = f"checkpoint {str(path)!r}"
    if not pathlib.Path(path).is_file():
        raise CheckpointError(f"{where} does not exist")
    try:
        with safe_open(str(path), "pt") as f:
            header = f.metadata() or {}
        tensors = load_file(str(path))
    except Exception as e:  # safetensors raises its own error types, and OSError, for bad files
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"{where} is not a readable safetensors file ({reason}); truncated or "
                              f"overwritten?") from None
    if _META_KEY not in header or _DIGEST_KEY not in header:
        raise CheckpointError(f"{where} has no electra_fast metadata and checksum (written by another program, or "
                              f"an older electra_fast)")
    if _digest(header[_META_KEY], tensors) != header[_DIGEST_KEY]:
        raise CheckpointError(f"{where} does not match its checksum: its bytes changed after it was written")
    meta = json.loads(header[_META_KEY])
    optim = {"state": _unescape(_unflatten("optim", tensors).get("state", {})),
             "param_groups": meta.pop("optim_param_groups")}
    model = _strip_prefix("model", tensors)
    for key, present in meta.pop("extra_states").items():
        model[key] = _unflatten(f"extra.{key.replace('.', '/')}", tensors) if present else None
    return model, optim, meta


def _digest(meta_json: str, tensors: dict) -> str:
    """sha256 of the metadata JSON and of every tensor's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256(meta_json.encode())
    for name in sorted(tensors):
        t = tensors[name]
        h.update(f"\0{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        if t.numel():
            h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


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
