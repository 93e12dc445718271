"""Shared test utilities."""
import importlib
import pkgutil

import pytest
import torch

import electra_fast.ops
from electra_fast import backend
from electra_fast.ops import _dispatch as dispatch


def device_backends():
    """(device, backend) pairs to test: every backend on CPU here, every backend on CUDA when present."""
    pairs = [("cpu", name) for name in backend.available("cpu")]
    if torch.cuda.is_available():
        pairs += [("cuda", name) for name in backend.available("cuda")]
    return pairs


def pair_id(pair):
    return f"{pair[0]}-{pair[1]}"


def tolerances(dtype):
    """(rtol, atol) for comparing a kernel in `dtype` with an fp32 reference."""
    if dtype == torch.float16:
        return 2e-3, 2e-3
    if dtype == torch.bfloat16:
        return 1.6e-2, 1e-2
    return 1e-5, 1e-6


# Every (device, backend) pair an op test runs on: the CPU backends here, and the CUDA ones as the GPU tier.
CPU_PAIRS = [p for p in device_backends() if p[0] == "cpu"]
GPU_PAIRS = [pytest.param(("cuda", name), marks=pytest.mark.gpu, id=f"cuda-{name}")
             for name in ("cuda", "triton", "reference")]
PAIRS = [pytest.param(p, id=pair_id(p)) for p in CPU_PAIRS] + GPU_PAIRS


def over_pairs(argname="on"):
    """Parametrise a test over PAIRS through the `on` fixture (tests/conftest.py)."""
    return pytest.mark.parametrize(argname, PAIRS, indirect=True)


def declared_ops(modules=None):
    """The dispatch.Op declarations of `modules` (default: every electra_fast/ops/<op>.py, whose ops each run
    through a custom op electra_fast::<name>)."""
    if modules is None:
        names = [m.name for m in pkgutil.iter_modules(electra_fast.ops.__path__) if not m.name.startswith("_")]
        modules = [importlib.import_module(f"electra_fast.ops.{name}") for name in names]
    return [op for module in modules for op in vars(module).values() if isinstance(op, dispatch.Op)]
