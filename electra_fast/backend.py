"""Which backends exist here and which one an op uses.

Backends (public names):
  reference  plain PyTorch (electra_fast/reference/), any device, always available; the test oracle
  cpp        the C++ CPU kernels of electra_fast._C
  cuda       the CUDA kernels of electra_fast._C (needs a CUDA build of torch and a GPU)
  triton     the Triton kernels (on a GPU; on CPU tensors only under TRITON_INTERPRET=1)

Choice, first match wins: the innermost `use(name)` context, then the ELECTRA_FAST_BACKEND
environment variable, then the best for the tensors' device (CUDA: cuda > triton > reference;
CPU: cpp > reference > triton under the interpreter). Asking for a backend that is not available, or
that cannot run on the tensors' device, raises a ValueError naming the ones that can. An op's inputs of
a dtype it has no kernel for (float64 in the float ops, for gradcheck) run on the reference whatever
the choice: electra_fast/ops/_dispatch.py applies `select` and that rule for every op.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib.util
import os
from typing import Iterator, List, Optional

import torch

from . import _extension

BACKENDS = ("reference", "cpp", "cuda", "triton")
ENV_VAR = "ELECTRA_FAST_BACKEND"

_override: contextvars.ContextVar[Optional[str]] = contextvars.ContextVar("electra_fast_backend", default=None)


def triton_interpreted() -> bool:
    """True when Triton kernels run in the CPU interpreter (TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@functools.lru_cache(maxsize=None)
def _triton_importable() -> bool:
    return importlib.util.find_spec("triton") is not None


def _usable(name: str, device_type: Optional[str]) -> bool:
    """Whether backend `name` runs here, on tensors of `device_type` (None: on any device)."""
    if name == "reference":
        return True
    if name == "cpp":
        return device_type in (None, "cpu") and _extension.load()
    if name == "cuda":
        return (
            device_type in (None, "cuda")
            and torch.cuda.is_available()
            and _extension.load()
            and _extension.has_cuda_kernels()
        )
    if name == "triton":
        if not _triton_importable():
            return False
        if device_type == "cpu":
            return triton_interpreted()
        if device_type == "cuda":
            return torch.cuda.is_available()
        return torch.cuda.is_available() or triton_interpreted()
    return False


def _order(device_type: Optional[str]) -> tuple:
    """Every backend, best first for tensors of `device_type` (None: any device)."""
    if device_type == "cuda":
        return ("cuda", "triton", "cpp", "reference")
    if device_type == "cpu":
        # the Triton interpreter is for tests: slower than the reference, so listed (and chosen) last
        return ("cpp", "reference", "triton")
    return ("cpp", "cuda", "triton", "reference")


def available(device: Optional[torch.device | str] = None) -> List[str]:
    """The backends usable here (on `device`'s type when given), best first for that device."""
    device_type = None if device is None else torch.device(device).type
    return [name for name in _order(device_type) if _usable(name, device_type)]


def _check_name(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; expected one of {list(BACKENDS)}")
    return name


def requested() -> Optional[str]:
    """The backend asked for by `use()` or ELECTRA_FAST_BACKEND, or None for automatic choice."""
    name = _override.get()
    if name is None:
        name = os.environ.get(ENV_VAR) or None
    return None if name is None else _check_name(name)


def select(device: torch.device | str) -> str:
    """The backend an op runs on for tensors on `device`."""
    if not isinstance(device, torch.device):
        device = torch.device(device)
    name = requested()
    if name is None:
        if device.type == "meta":
            return "reference"
        # the first usable one, without asking the rest: this runs on every op call
        for candidate in _order(device.type):
            if _usable(candidate, device.type):
                return candidate
    if device.type == "meta" or _usable(name, device.type):
        return name
    hint = ""
    if name == "triton" and device.type == "cpu":
        hint = " (Triton runs on CPU tensors only under TRITON_INTERPRET=1, set before triton is imported)"
    raise ValueError(
        f"backend {name!r} is not available for {device.type} tensors{hint}; "
        f"available here: {available(device)}"
    )


@contextlib.contextmanager
def use(name: str) -> Iterator[str]:
    """Run the ops inside the block on backend `name`:

    >>> with electra_fast.backend.use("reference"):
    ...     loss = electra_fast.functional.rtd_loss(logits, labels)
    """
    _check_name(name)
    if not _usable(name, None):
        raise ValueError(f"backend {name!r} is not available here; available: {available()}")
    token = _override.set(name)
    try:
        yield name
    finally:
        _override.reset(token)
