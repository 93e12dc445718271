"""Test set-up. Without a GPU, the Triton kernels run on CPU tensors in Triton's interpreter: TRITON_INTERPRET
must be set before any @triton.jit decoration runs, so it is set here, before anything imports electra_fast's
Triton modules (importing torch imports none). With a GPU it is left unset, so the GPU tier runs the
compiled Triton kernels. The Triton and inductor caches go to a temp dir.

The interpreter is made to do two things as the compiled kernels do: pass a Python float to a kernel as float32
(it would keep the double), so that a kernel that needs a double argument fails here as it would on a GPU; and
round float32 to bfloat16 to nearest even (it would truncate)."""
import os
import sys
import tempfile

import torch

GPU = torch.cuda.is_available()
_CACHE = tempfile.mkdtemp(prefix="electra_fast_test_cache_")
if not GPU:
    os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("TRITON_CACHE_DIR", os.path.join(_CACHE, "triton"))
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", os.path.join(_CACHE, "inductor"))

import pytest  # noqa: E402

import electra_fast  # noqa: E402
from electra_fast import backend  # noqa: E402


def _interpreter_as_compiled():
    import numpy as np
    import triton.language as tl
    from triton.runtime import interpreter

    to_kernel_arg, convert_float = interpreter._implicit_cvt, interpreter._convert_float

    def as_the_jit_passes(arg):
        if isinstance(arg, float):
            return tl.tensor(interpreter.TensorHandle(np.array([arg], dtype=np.float32), tl.float32), tl.float32)
        return to_kernel_arg(arg)

    def round_to_nearest_even(data, src, dst, rounding_mode):
        if src == tl.float32 and dst == tl.bfloat16 and rounding_mode != interpreter._ir.ROUNDING_MODE.RTZ:
            floats = torch.from_numpy(np.ascontiguousarray(data).view(np.float32))
            return floats.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
        return convert_float(data, src, dst, rounding_mode)

    interpreter._implicit_cvt = as_the_jit_passes
    interpreter._convert_float = round_to_nearest_even


if os.environ.get("TRITON_INTERPRET") == "1" and "triton" in backend.available("cpu"):
    _interpreter_as_compiled()


def pytest_addoption(parser):
    parser.addoption("--failures-at-once", action="store_true",
                     help="print each failure's report when it happens, so that a later crash of the process "
                          "cannot lose it (tools/gpu_check.py)")


def pytest_configure(config):
    config.stash[_FAILURES_AT_ONCE] = config.getoption("--failures-at-once")


_FAILURES_AT_ONCE = pytest.StashKey[bool]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and item.config.stash[_FAILURES_AT_ONCE]:
        sys.stdout.write(f"\n--- FAILED {report.nodeid} ({report.when})\n{report.longreprtext}\n")
        sys.stdout.flush()


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords and not GPU:
            item.add_marker(skip_gpu)


def cpu_backends():
    """The backends that run on CPU tensors here (reference, cpp, triton under the interpreter)."""
    return backend.available("cpu")


def gpu_backends():
    return backend.available("cuda") if GPU else []


@pytest.fixture(autouse=True)
def _seed_torch():
    torch.manual_seed(0)


@pytest.fixture
def on(request):
    """Run the test body on the (device, backend) pair it is parametrised with (tests.helpers.over_pairs)."""
    device, name = request.param
    if name not in backend.available(device):
        pytest.skip(f"{name} is not available for {device} tensors here")
    with backend.use(name):
        yield device, name
