"""The op declarations (electra_fast/ops/_dispatch.py): each matches its C++ registration and its custom op,
and the rules run() and call() apply to every op (float64 on the reference, the lazy Triton import, the
eager path) hold."""
import os
import subprocess
import sys

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import electra_fast.random
from electra_fast import _extension, backend
from electra_fast.ops import _dispatch as dispatch
from tests.helpers import declared_ops

CUSTOM_OPS = declared_ops()  # each is run by a custom op electra_fast::<name>
DECLARED = CUSTOM_OPS + declared_ops([electra_fast.random])
PASS_THROUGH = [op for op in CUSTOM_OPS if op.launch is None]
ids = [op.name for op in DECLARED]


def test_every_op_module_declares_its_ops():
    assert {op.name for op in CUSTOM_OPS} >= {"rtd_loss", "rtd_counts", "mask_tokens", "sample_replace",
                                                "statistical_fill", "exit_mask", "compact", "gather_rows",
                                                "scatter_rows", "generator_head"}
    assert len(ids) == len(set(ids)), "two declarations share a name"


@pytest.mark.parametrize("op", DECLARED, ids=ids)
def test_declared_kernel_schema_is_the_registered_one(op):
    if not _extension.load():
        pytest.skip("electra_fast._C is not built")
    assert hasattr(torch.ops.electra_fast_C, op.kernel_name), \
        f"{op.name} declares kernel {op.kernel_name!r}, which csrc/ does not register"
    registered = str(getattr(torch.ops.electra_fast_C, op.kernel_name).default._schema)
    assert registered == f"electra_fast_C::{op.kernel}"


@pytest.mark.parametrize("op", CUSTOM_OPS, ids=[op.name for op in CUSTOM_OPS])
def test_declaration_names_a_custom_op(op):
    assert hasattr(torch.ops.electra_fast, op.name), f"no custom op electra_fast::{op.name}"


def _arguments_and_returns(schema: str) -> str:
    # torch.library infers SymInt for Python ints; the C++ schemas say int
    return schema[schema.index("("):].replace("SymInt", "int")


@pytest.mark.parametrize("op", PASS_THROUGH, ids=[op.name for op in PASS_THROUGH])
def test_custom_op_schema_is_its_kernels(op):
    # these ops hand their own arguments to the kernel, so both schemas must agree name for name
    custom = str(getattr(torch.ops.electra_fast, op.name).default._schema)
    assert _arguments_and_returns(custom) == _arguments_and_returns(op.kernel)


@pytest.mark.parametrize("op", DECLARED, ids=ids)
def test_declared_triton_function_exists(op):
    pytest.importorskip("triton")
    module, function = op.triton.rsplit(".", 1)
    fn = dispatch.kernel(op, "triton")
    assert callable(fn)
    assert fn.__module__ == f"electra_fast.triton.{module}" and fn.__name__ == function


def test_triton_is_imported_only_when_a_triton_kernel_is_asked_for():
    pytest.importorskip("triton")
    script = """
import sys
import torch
import electra_fast.functional as F
import electra_fast.random
from electra_fast.ops import _dispatch as dispatch
from electra_fast.ops.rtd_loss import RTD_LOSS

def triton_modules():
    return sorted(m for m in sys.modules if m == "triton" or m.startswith(("triton.", "electra_fast.triton")))

F.rtd_loss(torch.randn(2, 3), torch.rand(2, 3) > 0.5)
electra_fast.random.uniform(4, seed=0)
assert triton_modules() == [], triton_modules()
dispatch.kernel(RTD_LOSS, "triton")
assert "electra_fast.triton.rtd_loss" in sys.modules and "triton" in sys.modules, triton_modules()
"""
    env = dict(os.environ)
    env.pop(backend.ENV_VAR, None)
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=300)


def _probe(calls, **fields):
    """A declaration whose reference and kernel launch only record the call (real kernel names, so that
    dispatch.kernel resolves them on every backend)."""
    fields = {"reference": lambda *args: calls.append(("reference", args)),
              "launch": lambda kernel, *args: calls.append((kernel, args)), **fields}
    return dispatch.Op("probe", kernel="rtd_metrics(Tensor logits, Tensor labels, Tensor? mask) -> Tensor",
                       triton="rtd_loss.rtd_counts", **fields)


@pytest.mark.parametrize("name", backend.available("cpu"))
def test_reference_dtypes_run_on_the_reference_on_every_backend(name):
    calls = []
    probe = _probe(calls, reference_dtypes=(torch.float64,))
    with backend.use(name):
        dispatch.run(probe, "cpu", torch.float64, 1, 2)
        dispatch.run(probe, "cpu", torch.float32, 3)
    expected_kernel = "reference" if name == "reference" else dispatch.kernel(probe, name)
    assert calls == [("reference", (1, 2)), (expected_kernel, (3,))]


def test_run_passes_the_arguments_unchanged_without_launch():
    if "cpp" not in backend.available("cpu"):
        pytest.skip("needs the cpp backend")
    calls = []
    probe = _probe(calls, launch=None)
    logits = torch.tensor([[1.0, -1.0]])
    labels = torch.tensor([[1, 1]], dtype=torch.uint8)
    with backend.use("cpp"):
        counts = dispatch.run(probe, "cpu", torch.float32, logits, labels, None)
    assert calls == [] and counts.tolist() == [2, 1, 1, 2]


class _Subclass(torch.Tensor):
    pass


class _Passthrough(TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


def test_call_takes_the_cpp_autograd_kernel_only_in_plain_eager_on_cpp():
    if "cpp" not in backend.available("cpu"):
        pytest.skip("needs the cpp backend")
    from dataclasses import replace

    from electra_fast.ops.rtd_loss import RTD_LOSS, _prepare, rtd_loss_op

    calls = []

    def custom(*args):
        calls.append("custom op")
        return rtd_loss_op(*args)

    x, y = torch.randn(3, 5), torch.rand(3, 5) > 0.5

    def args(logits):
        return (*_prepare(logits, y, None), 2, logits.requires_grad)

    with backend.use("cpp"):
        loss, grad = dispatch.call(RTD_LOSS, custom, *args(x.clone().requires_grad_()))
        assert calls == [] and "RtdLoss" in loss.grad_fn.name() and grad.shape == x.shape
        with torch.no_grad():
            assert dispatch.call(RTD_LOSS, custom, *args(x))[0].grad_fn is None
        # a Parameter is a plain tensor to C++: model weights take the C++ path too
        assert "RtdLoss" in dispatch.call(RTD_LOSS, custom, *args(torch.nn.Parameter(x)))[0].grad_fn.name()
        assert calls == []
        dispatch.call(RTD_LOSS, custom, *args(x.double()))  # a reference dtype
        dispatch.call(RTD_LOSS, custom, *args(x.as_subclass(_Subclass)))  # a subclass
        with _Passthrough():
            dispatch.call(RTD_LOSS, custom, *args(x))
        dispatch.call(replace(RTD_LOSS, kernel_autograd=None), custom, *args(x))
    with backend.use("reference"):
        dispatch.call(RTD_LOSS, custom, *args(x))
    assert calls == ["custom op"] * 5


AUTOGRAD_KERNELS = [op for op in DECLARED if op.kernel_autograd is not None]


@pytest.mark.parametrize("op", AUTOGRAD_KERNELS, ids=[op.name for op in AUTOGRAD_KERNELS])
def test_autograd_kernel_takes_and_returns_what_the_kernel_does(op):
    if not _extension.load():
        pytest.skip("electra_fast._C is not built")
    registered = str(getattr(torch.ops.electra_fast_C, op.kernel_autograd).default._schema)
    assert _arguments_and_returns(registered) == _arguments_and_returns(op.kernel)
