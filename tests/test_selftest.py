"""electra-fast selftest: it passes here with one line per op x backend, a broken kernel (a wrong value, a
wrong id, a crash) fails its line and the exit status, and the sampling check accepts exactly the draws the
contract allows."""
import io
import os
import subprocess
import sys

import pytest
import torch

from electra_fast import _selftest_cases as cases
from electra_fast import cli, selftest
from electra_fast.ops import _dispatch as dispatch
from tests.helpers import declared_ops


@pytest.fixture(scope="module")
def full_run():
    out = io.StringIO()
    status = selftest.run(out=out)
    return status, out.getvalue()


def _lines(text):
    return [line for line in text.splitlines() if line.startswith(("PASS", "FAIL"))]


def test_every_op_passes_on_every_backend_here(full_run):
    status, text = full_run
    assert status == 0, text
    ops = list(dict.fromkeys(case.op for case in cases.all_cases()))
    pairs = selftest.targets()
    assert ("cpu", "cpp") in pairs and ("cpu", "reference") not in pairs
    lines = _lines(text)
    assert len(lines) == len(ops) * len(pairs), text
    for op in ops:
        for device, name in pairs:
            assert any(line.split()[1:4] == [op, device, name] for line in lines), (op, device, name)
    assert all(line.startswith("PASS") for line in lines), text
    assert f"{len(lines)} of {len(lines)} op x backend lines passed" in text


def _break(monkeypatch, op_name, backend_name, wrong):
    """Make backend_name's kernel of op `op_name` return wrong(real outputs, *args), also on the op's C++ eager
    path (its kernel_autograd) for the cpp and cuda backends."""
    original = dispatch.kernel

    def kernel(op, name):
        real = original(op, name)
        if op.name != op_name or name != backend_name:
            return real
        return lambda *args: wrong(real(*args), *args)

    monkeypatch.setattr(dispatch, "kernel", kernel)
    declared = [op for op in declared_ops() if op.name == op_name]
    if backend_name in ("cpp", "cuda") and declared and declared[0].kernel_autograd:
        real = getattr(torch.ops.electra_fast_C, declared[0].kernel_autograd)
        monkeypatch.setattr(torch.ops.electra_fast_C, declared[0].kernel_autograd,
                            lambda *args: wrong(real(*args), *args))


def test_a_wrong_value_fails(monkeypatch):
    _break(monkeypatch, "dropout", "cpp", lambda out, *args: out * 1.001)
    out = io.StringIO()
    assert selftest.run(ops=["dropout", "compact"], backends=["cpp"], out=out) == 1
    compact, dropout = _lines(out.getvalue())
    assert dropout.startswith("FAIL  dropout") and "y:" in dropout
    assert compact.startswith("PASS  compact")  # the other lines still run


def test_a_wrong_id_fails(monkeypatch):
    def shift_one_sample(out, logits, input_ids, is_masked, *rest):
        corrupted = out[0].clone()
        first = int(is_masked.reshape(-1).nonzero()[0]) if bool(is_masked.any()) else None
        if first is not None:
            flat = corrupted.view(-1)
            flat[first] = (flat[first] + 1) % logits.shape[1]
        return (corrupted,) + tuple(out[1:])

    _break(monkeypatch, "sample_replace", "cpp", shift_one_sample)
    out = io.StringIO()
    assert selftest.run(ops=["sample_replace"], backends=["cpp"], out=out) == 1
    assert "FAIL  sample_replace" in out.getvalue() and "ids: 1 of" in out.getvalue()


def test_a_crashing_kernel_fails(monkeypatch):
    def crash(out, *args):
        raise RuntimeError("kernel exploded")

    _break(monkeypatch, "compact", "cpp", crash)
    out = io.StringIO()
    assert selftest.run(ops=["compact"], backends=["cpp"], out=out) == 1
    assert "RuntimeError: kernel exploded" in out.getvalue()


def test_cli_subcommand(capsys):
    assert cli.main(["selftest", "--ops", "compact,exit_mask", "--backends", "cpp"]) == 0
    lines = _lines(capsys.readouterr().out)
    assert [line.split()[:4] for line in lines] == [["PASS", "exit_mask", "cpu", "cpp"],
                                                     ["PASS", "compact", "cpu", "cpp"]]
    assert cli.main(["selftest", "--ops", "no_such_op"]) == 2
    assert "unknown ops" in capsys.readouterr().err


def test_python_dash_m_sets_the_triton_interpreter_itself():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, "-m", "electra_fast.selftest", "--ops", "exit_mask"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    backends = [line.split()[3] for line in _lines(proc.stdout)]
    assert "cpp" in backends
    if not torch.cuda.is_available():
        assert "triton" in backends


def test_consistent_draws_accept_exactly_the_contract():
    """Four equal weights and u = 1/2: u * Z = 2 lies on the boundary between ids 1 and 2, so both are
    consistent draws (an ulp of exp decides), ids 0 and 3 are not; a -inf logit never is."""
    logits = torch.zeros(4, 4)
    logits[3, 2] = float("-inf")
    u = torch.full((4,), 0.5)
    ok = cases.consistent_draws(torch.tensor([1, 2, 0, 2]), logits, u, 1.0)
    assert ok.tolist() == [True, True, False, False]
    assert cases.consistent_draws(torch.tensor([3, 3, 3, 3]), logits, u, 1.0).tolist() == [False] * 4
    # u = 0.3: u * Z = 1.2 lies inside id 1 (0.9 inside id 0 for the row with a -inf)
    u = torch.full((4,), 0.3)
    assert cases.consistent_draws(torch.tensor([1, 1, 1, 0]), logits, u, 1.0).tolist() == [True] * 4
    # an excluded id has weight 0: never drawn; the draw moves past it
    skip = torch.tensor([0, 1, 3, 0])
    assert cases.consistent_draws(skip, logits, u, 1.0, skip=skip).tolist() == [False] * 4
    assert cases.consistent_draws(torch.tensor([1, 0, 0, 1]), logits, u, 1.0, skip=skip).tolist() == [True] * 4
    # greedy: the first maximum
    x = torch.tensor([[0.0, 3.0, 3.0, 1.0]])
    assert cases.consistent_draws(torch.tensor([1]), x, u[:1], 0.0).tolist() == [True]
    assert cases.consistent_draws(torch.tensor([2]), x, u[:1], 0.0).tolist() == [False]
