"""How a call reaches a backend: each op declares its backends once, as an `Op`, and `run` picks one.

An op's declaration (next to its custom op in electra_fast/ops/<op>.py; electra_fast/random.py for Philox):
    kernel     the schema of its C++ op, torch.ops.electra_fast_C.<name>, as csrc/cpu/<op>.cpp registers it.
               The cpp and cuda backends are this one call: the tensors' device picks the kernel.
    triton     "<module>.<function>" in electra_fast/triton, imported on first use (importing Triton takes
               seconds, and it may not be installed).
    reference  the plain-PyTorch implementation (electra_fast/reference/<op>.py), with the op's arguments.
    reference_dtypes  dtypes without a kernel: inputs of these run on the reference whatever the backend
               (float64, which is for gradcheck).
    launch     launch(kernel, *args) when the kernels do not take the op's arguments as they are (e.g. a
               threshold precomputed as a float32 bound, or a chunk loop around a row kernel).
    kernel_autograd  the name of a C++ op taking the op's arguments and returning its outputs: the same kernels
               behind a C++ autograd node (csrc/autograd/<op>.cpp), the op's eager path on the cpp and cuda
               backends (`call`, below), or None.
tests/ops/test_dispatch.py checks each declared schema against the registered C++ op, and the custom op's
schema against it where the arguments pass through unchanged.

The eager path (`call`). Calling a `torch.library.custom_op` from Python costs tens of microseconds (schema
binding, the Python autograd wrapper, redispatch), and its backward runs Python: more than a small fused
kernel itself. In plain eager mode on the cpp and cuda backends an op with a `kernel_autograd` calls that
instead: one call into C++, whose node has the custom op's backward written in C++ (tests check both paths
bit for bit). Everything else (the triton and reference backends, torch.compile tracing, fake/meta tensors,
tensor subclasses, dispatch modes such as FlopCounterMode or opcheck's, functorch transforms) goes through
the registered custom op, which is what makes those work.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import torch
from torch.utils._python_dispatch import _get_current_dispatch_mode

from .. import backend


@dataclass(frozen=True)
class Op:
    """One op's backends (the module docstring says what each field means). `name`: the op's custom op
    is electra_fast::<name> (electra_fast.random's ops have none: Python calls them directly)."""

    name: str
    kernel: str
    triton: str
    reference: Callable
    reference_dtypes: Tuple[torch.dtype, ...] = ()
    launch: Optional[Callable] = None
    kernel_autograd: Optional[str] = None

    @property
    def kernel_name(self) -> str:
        return self.kernel.split("(", 1)[0]


def kernel(op: Op, name: str) -> Callable:
    """The kernel of `op` on backend `name` (cpp, cuda or triton), importing its Triton module on first use."""
    if name == "triton":
        module, function = op.triton.rsplit(".", 1)
        return getattr(importlib.import_module(f"electra_fast.triton.{module}"), function)
    return getattr(torch.ops.electra_fast_C, op.kernel_name)


def run(op: Op, device: torch.device | str, dtype: torch.dtype, *args):
    """Runs `op` for inputs on `device`: on the reference when that is the selected backend or when `dtype`
    (of the input that types the op's kernels) is one of op.reference_dtypes, else on the selected
    backend's kernel, through op.launch when declared."""
    name = backend.select(device)  # first, so that a backend that cannot run here raises for every dtype
    if name == "reference" or dtype in op.reference_dtypes:
        return op.reference(*args)
    if op.launch is None:
        return kernel(op, name)(*args)
    return op.launch(kernel(op, name), *args)


_PLAIN = (torch.Tensor, torch.nn.Parameter)  # a Parameter is a plain tensor to C++ (it overrides no torch function)


def plain_eager(tensors) -> bool:
    """True when every tensor is a plain torch.Tensor (or nn.Parameter) on a real device and no tracing, dispatch
    mode or functorch transform is active."""
    if torch.compiler.is_compiling() or _get_current_dispatch_mode() is not None:
        return False
    if torch._C._are_functorch_transforms_active():
        return False
    return all(type(t) in _PLAIN and not t.is_meta for t in tensors)


def call(op: Op, custom_op: Callable, *args):
    """custom_op(*args), or in plain eager mode on the cpp and cuda backends, for an op with a kernel_autograd,
    that C++ op (the module docstring says why). The first tensor argument types the op's kernels."""
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    if op.kernel_autograd is None or not plain_eager(tensors):
        return custom_op(*args)
    if tensors[0].dtype in op.reference_dtypes or backend.select(tensors[0].device) not in ("cpp", "cuda"):
        return custom_op(*args)
    return getattr(torch.ops.electra_fast_C, op.kernel_autograd)(*args)
