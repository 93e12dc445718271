"""Test set-up. Without a GPU, the Triton kernels run on CPU tensors in Triton's interpreter: TRITON_INTERPRET
must be set before any @triton.jit decoration runs, so it is set here, before anything imports electra_fast's
Triton modules (importing torch imports none). With a GPU it is left unset, so the GPU tier runs the
compiled Triton kernels. The Triton and inductor caches go to a temp dir."""
import os
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
