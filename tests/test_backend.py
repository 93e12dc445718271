"""electra_fast.backend: what is available, what is chosen, and the two overrides."""
import os
import subprocess
import sys

import pytest
import torch

from electra_fast import _extension, backend
from electra_fast.ops import rtd_loss as rtd_ops


@pytest.fixture(autouse=True)
def _no_env_override(monkeypatch):
    monkeypatch.delenv(backend.ENV_VAR, raising=False)


def test_available_here():
    names = backend.available()
    assert names[-1] == "reference"
    assert set(names) <= set(backend.BACKENDS)
    assert "cpp" in names  # the extension is built in this checkout
    assert ("triton" in names) == (backend.triton_interpreted() or torch.cuda.is_available())
    assert ("cuda" in names) == (torch.cuda.is_available() and _extension.has_cuda_kernels())


def test_available_per_device():
    cpu = backend.available("cpu")
    # best first: the C++ kernels, then the reference; the Triton interpreter only last
    assert cpu[0] == "cpp" and "reference" in cpu
    assert cpu[-1] == ("triton" if backend.triton_interpreted() else "reference")
    assert "cuda" not in cpu
    assert ("triton" in cpu) == backend.triton_interpreted()
    assert backend.available(torch.device("cpu")) == cpu
    if not torch.cuda.is_available():
        assert backend.available("cuda") == ["reference"]


def test_select_per_device():
    assert backend.select("cpu") == "cpp"
    assert backend.select(torch.device("cpu")) == "cpp"
    assert backend.select("meta") == "reference"
    if not torch.cuda.is_available():
        assert backend.select("cuda") == "reference"


@pytest.mark.gpu
def test_select_cuda():
    assert backend.select("cuda") == backend.available("cuda")[0]
    assert backend.available("cuda")[0] in ("cuda", "triton")
    assert "cpp" not in backend.available("cuda")


def test_env_override(monkeypatch):
    monkeypatch.setenv(backend.ENV_VAR, "reference")
    assert backend.requested() == "reference"
    assert backend.select("cpu") == "reference"
    monkeypatch.setenv(backend.ENV_VAR, "")  # empty means automatic
    assert backend.select("cpu") == "cpp"


def test_env_override_unknown(monkeypatch):
    monkeypatch.setenv(backend.ENV_VAR, "fortran")
    with pytest.raises(ValueError, match=r"unknown backend 'fortran'.*reference.*cpp.*cuda.*triton"):
        backend.select("cpu")


def test_env_override_not_usable_on_device(monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("cuda is usable here")
    monkeypatch.setenv(backend.ENV_VAR, "cuda")
    with pytest.raises(ValueError, match=r"'cuda' is not available for cpu tensors.*available here: \['cpp'"):
        backend.select("cpu")


def test_use_nests_and_restores():
    assert backend.requested() is None
    with backend.use("reference") as name:
        assert name == "reference"
        assert backend.select("cpu") == "reference"
        with backend.use("cpp"):
            assert backend.select("cpu") == "cpp"
        assert backend.select("cpu") == "reference"
    assert backend.requested() is None
    assert backend.select("cpu") == "cpp"


def test_use_restores_on_exception():
    with pytest.raises(KeyError):
        with backend.use("reference"):
            with backend.use("cpp"):
                raise KeyError("boom")
    assert backend.requested() is None
    with backend.use("reference"):
        with pytest.raises(KeyError):
            with backend.use("cpp"):
                raise KeyError("boom")
        assert backend.requested() == "reference"


def test_use_beats_env(monkeypatch):
    monkeypatch.setenv(backend.ENV_VAR, "reference")
    with backend.use("cpp"):
        assert backend.select("cpu") == "cpp"
    assert backend.select("cpu") == "reference"


def test_use_unknown_names_choices():
    with pytest.raises(ValueError, match=r"unknown backend 'nope'; expected one of \['reference', 'cpp', 'cuda', 'triton'\]"):
        with backend.use("nope"):
            pass


def test_use_unavailable_names_available():
    if torch.cuda.is_available():
        pytest.skip("cuda is usable here")
    with pytest.raises(ValueError, match=r"'cuda' is not available here; available: \[.*'reference'\]"):
        with backend.use("cuda"):
            pass
    assert backend.requested() is None


def test_use_backend_on_wrong_device():
    # cpp is usable here but not for CUDA tensors: the error names what can run on that device
    with backend.use("cpp"):
        with pytest.raises(ValueError, match=r"'cpp' is not available for cuda tensors; available here: \["):
            backend.select("cuda")


def test_triton_on_cpu_needs_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert not backend.triton_interpreted()
    assert "triton" not in backend.available("cpu")
    if not torch.cuda.is_available():
        assert "triton" not in backend.available()
        with pytest.raises(ValueError, match=r"'triton' is not available here; available: "):
            with backend.use("triton"):
                pass
    monkeypatch.setenv(backend.ENV_VAR, "triton")
    with pytest.raises(ValueError, match=r"TRITON_INTERPRET=1.*available here: \['cpp', 'reference'\]"):
        backend.select("cpu")


def test_without_extension(monkeypatch):
    # a pure-Python install (ELECTRA_FAST_SKIP_BUILD=1) on a machine without the Triton interpreter
    monkeypatch.setattr(_extension, "load", lambda: False)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert "cpp" not in backend.available()
    assert "cuda" not in backend.available()
    assert backend.select("cpu") == "reference"
    with pytest.raises(ValueError, match="'cpp' is not available here"):
        with backend.use("cpp"):
            pass


def test_without_extension_automatic_choice_skips_interpreter(monkeypatch):
    monkeypatch.setattr(_extension, "load", lambda: False)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert backend.select("cpu") == "reference"


@pytest.mark.parametrize("name", backend.available("cpu"))
def test_ops_run_on_the_selected_backend(monkeypatch, name):
    # spy on each backend's entry point of the RTD loss: the selected one, and only it, runs
    calls = []
    from electra_fast.reference import rtd_loss as reference

    real_ref = reference.rtd_loss_and_grad
    monkeypatch.setattr(reference, "rtd_loss_and_grad", lambda *a: calls.append("reference") or real_ref(*a))
    # the cpp kernel, called from Python (the custom op) or from the C++ autograd op of the eager path
    for kernel in ("rtd_loss_fwd", "rtd_loss_autograd"):
        real_cpp = getattr(torch.ops.electra_fast_C, kernel)
        monkeypatch.setattr(torch.ops.electra_fast_C, kernel, lambda *a, real=real_cpp: calls.append("cpp") or real(*a))
    if name == "triton":
        from electra_fast.triton import rtd_loss as triton_rtd

        real_tri = triton_rtd.rtd_loss_fwd
        monkeypatch.setattr(triton_rtd, "rtd_loss_fwd", lambda *a: calls.append("triton") or real_tri(*a))
    logits = torch.randn(2, 3)
    labels = torch.rand(2, 3) > 0.5
    with backend.use(name):
        rtd_ops.rtd_loss(logits, labels)
    assert calls == [name]


def test_env_module_prints_backends():
    env = dict(os.environ, TRITON_INTERPRET="1")
    env.pop(backend.ENV_VAR, None)
    out = subprocess.run([sys.executable, "-m", "electra_fast.env"], capture_output=True, text=True, env=env,
                         timeout=120, check=True).stdout
    for key in ("electra_fast", "torch", "triton", "backends available", "backend for cpu tensors"):
        assert key in out
    line = next(ln for ln in out.splitlines() if ln.startswith("backends available"))
    assert "cpp" in line and "reference" in line and "triton" in line
