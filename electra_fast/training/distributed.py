"""The ranks of a run under torchrun, and the wrappers (DDP or FSDP, torch.compile) around its model."""
from __future__ import annotations

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


def wrap(model: nn.Module, dist: Dist, device: torch.device, *, fsdp: bool, compile: bool) -> nn.Module:
    """`model` under DDP (or FSDP) when there are several ranks, then under torch.compile if asked."""
    if dist.world > 1:
        if fsdp:
            from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

            model = FSDP(model, device_id=device if device.type == "cuda" else None, use_orig_params=True)
        else:
            model = nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None)
    if compile:
        model = torch.compile(model)
    return model


def unwrap(model: nn.Module) -> nn.Module:
    """The module under torch.compile and DDP. An FSDP module is returned as it is: its state dict gathers
    the shards, and it forwards attribute access to the module it wraps."""
    model = getattr(model, "_orig_mod", model)
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
