"""Shared test utilities."""
import pytest
import torch

from electra_fast import backend


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
