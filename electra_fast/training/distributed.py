"""The ranks of a run under torchrun, and the wrappers (DDP or FSDP) around its model and its compiled layers."""
from __future__ import annotations

import contextlib
import dataclasses
import os
from typing import Callable, Optional

import torch
from torch import nn


@dataclasses.dataclass
class Dist:
    """This process's place in the run: `rank` of `world` processes, on GPU `local_rank` of its node."""
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def main_only(self, log: Callable[[str], None]) -> Callable[[str], None]:
        """`log` on rank 0; a no-op on the others, so that a message is printed once per run."""
        return log if self.main else (lambda *_: None)


def init_distributed(device: Optional[str]) -> Dist:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK: then join the process group (nccl on GPU, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist()
    dist = Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not torch.distributed.is_initialized():
        use_cuda = torch.cuda.is_available() and (device is None or device.startswith("cuda"))
        if use_cuda:
            torch.cuda.set_device(dist.local_rank)
        torch.distributed.init_process_group("nccl" if use_cuda else "gloo")
    return dist


def resolve_device(name: Optional[str], local_rank: int = 0) -> torch.device:
    """The device a rank trains on: `name` (cpu, cuda, cuda:1, ...), or None for cuda:<local_rank> when CUDA
    is available and cpu otherwise. ValueError for a name torch does not know or a device it cannot use here."""
    if name is None:
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError, TypeError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"--device {name!r} is not a device name torch knows ({reason}); use cpu, cuda or "
                         f"cuda:N") from None
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: CUDA is not available here (torch {torch.__version__}"
                             f"{'' if torch.version.cuda else ', a CPU-only build'}); use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: there are {torch.cuda.device_count()} CUDA device(s) here")
        return device
    backend = getattr(torch, device.type, None)
    if backend is None or not getattr(backend, "is_available", lambda: False)():
        raise ValueError(f"--device {name}: torch has no usable {device.type!r} device here; use cpu or cuda")
    return device


def compile_layers(model: nn.Module) -> int:
    """Compiles every encoder layer of `model` in place with torch.compile and dynamic shapes, so that one graph
    per layer shape (generator, discriminator) serves every batch size and sequence length: no recompiling per
    batch, and the early-exit loop around the layers stays eager. Returns how many layers it compiled."""
    from ..models.encoder import EncoderLayer

    layers = [m for m in model.modules() if isinstance(m, EncoderLayer)]
    for layer in layers:
        layer.compile(dynamic=True)
    return len(layers)


def wrap(model: nn.Module, dist: Dist, device: torch.device, *, fsdp: bool, compile: bool) -> nn.Module:
    """`model` with its layers compiled if asked (compile_layers), under DDP (or FSDP) when there are several
    ranks."""
    if compile:
        compile_layers(model)
    if dist.world > 1:
        if fsdp:
            from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

            # device_id names the device even on CPU (gloo): without one FSDP looks for an accelerator
            model = FSDP(model, device_id=device, use_orig_params=True)
        else:
            model = nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None)
    return model


def unwrap(model: nn.Module) -> nn.Module:
    """The module under DDP. An FSDP module is returned as it is: its state dict gathers the shards, and it
    forwards attribute access to the module it wraps."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def clip_grad_norm(model: nn.Module, max_norm: float) -> torch.Tensor:
    """Scale the gradients of `model` (as it runs) so that their global norm is at most `max_norm`; returns the
    norm before. Under FSDP each rank holds a shard of every gradient, so the norm is FSDP's own over all
    shards: a norm over the local shard would differ from rank to rank, and so would the scaling."""
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    if isinstance(model, FSDP):
        return model.clip_grad_norm_(max_norm)
    return nn.utils.clip_grad_norm_(model.parameters(), max_norm)


def full_parameters(model: nn.Module):
    """A context in which the parameters of `model` (as it runs) are whole on every rank: under FSDP they are
    gathered for its duration (every rank must enter it), so that code calling submodules outside the model's
    forward (the yardstick, the Hugging Face export) reads the weights and not this rank's shard."""
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    if isinstance(model, FSDP):
        return FSDP.summon_full_params(model, writeback=False)
    return contextlib.nullcontext()
