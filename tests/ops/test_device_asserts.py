"""Out-of-range input on a GPU: which cases raise a ValueError on the host (the CUDA context stays usable) and
which trip a device-side assert (after which every CUDA call of the process fails), as the README's table
"Out-of-range input on a GPU" says. Each case runs in its own Python process, so that an assert cannot take
the test process's CUDA context with it."""
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.gpu

# Runs the case's `call()`, synchronises, and reports what happened, then whether CUDA still works.
HARNESS = """
import torch
import electra_fast.functional as F
from electra_fast import backend, samplers

{case}

try:
    call()
    torch.cuda.synchronize()
    print("OUTCOME ok")
except ValueError as exc:
    print("OUTCOME ValueError", exc)
except RuntimeError as exc:
    print("OUTCOME device assert" if "device-side assert" in str(exc) else f"OUTCOME RuntimeError {{exc}}")
try:
    assert torch.ones(4, device="cuda").sum().item() == 4.0
    print("CONTEXT usable")
except RuntimeError:
    print("CONTEXT unusable")
"""

GENERATOR_HEAD_TARGET_V = """
def call():
    hidden, weight = torch.randn(4, 8, device="cuda"), torch.randn(50, 8, device="cuda")
    F.generator_head(hidden, weight, None, torch.tensor([0, 1, 50, 2], device="cuda"), seed=0)
"""
SCATTER_INDEX_OUT_OF_RANGE = """
def call():
    base, tokens = torch.randn(2, 4, 8, device="cuda"), torch.randn(3, 8, device="cuda")
    F.scatter_tokens(tokens, torch.tensor([0, 5, 8], device="cuda"), base)
"""
SAMPLE_REPLACE_ID_V = """
def sample(validate):
    ids = torch.tensor([[3, 50, 7, 1]], device="cuda")
    masked = torch.tensor([[True, True, False, True]], device="cuda")
    return F.sample_replace(torch.randn(3, 50, device="cuda"), ids, masked, seed=0, disallow_original=True,
                            validate=validate)[0]
def call():
    sample(validate=True)
"""
SAMPLE_REPLACE_UNVALIDATED = SAMPLE_REPLACE_ID_V + """
def call():
    out = sample(validate=False)
    assert bool(((out >= 0) & (out < 50)).all()), out
"""
STATISTICAL_REPLACE_ID_V = """
def call():
    sampler = samplers.UniformSampler(50).to("cuda")
    F.statistical_replace(torch.tensor([[3, 50, 7, 1]], device="cuda"), None, sampler, seed=0)
"""
RTD_LABEL_2 = """
def call():
    F.rtd_loss(torch.randn(2, 3, device="cuda"), torch.tensor([[0, 1, 2], [1, 0, 0]], device="cuda"))
"""


def run_case(case: str, name: str, **env) -> str:
    """The case's stdout, run on backend `name` in a fresh process (compiled Triton: no interpreter)."""
    environ = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    environ.update(ELECTRA_FAST_BACKEND=name, **env)
    proc = subprocess.run([sys.executable, "-c", HARNESS.format(case=textwrap.dedent(case))], capture_output=True,
                          text=True, env=environ, timeout=300)
    assert "OUTCOME" in proc.stdout, proc.stdout + proc.stderr[-3000:]
    return proc.stdout


def _needs(name):
    from electra_fast import backend

    if name not in backend.available("cuda"):
        pytest.skip(f"{name} is not available on CUDA here")


@pytest.mark.parametrize("case", [GENERATOR_HEAD_TARGET_V, SCATTER_INDEX_OUT_OF_RANGE],
                         ids=["generator_head target = V", "scatter_tokens index = B*T"])
def test_cuda_kernels_assert_and_the_context_is_lost(case):
    _needs("cuda")
    out = run_case(case, "cuda")
    assert "OUTCOME device assert" in out and "CONTEXT unusable" in out, out


@pytest.mark.parametrize("case", [GENERATOR_HEAD_TARGET_V, SCATTER_INDEX_OUT_OF_RANGE],
                         ids=["generator_head target = V", "scatter_tokens index = B*T"])
def test_triton_kernels_assert_in_debug_mode(case):
    """Triton's device asserts are compiled in only with TRITON_DEBUG=1 (the README says what happens without)."""
    _needs("triton")
    out = run_case(case, "triton", TRITON_DEBUG="1")
    assert "OUTCOME device assert" in out, out


@pytest.mark.parametrize("name", ["cuda", "triton", "reference"])
@pytest.mark.parametrize("case, message", [
    (SAMPLE_REPLACE_ID_V, "input_ids must lie in [0, V)"),
    (STATISTICAL_REPLACE_ID_V, "input_ids must lie in [0, sampler.vocab_size)"),
    (RTD_LABEL_2, "labels must hold only 0 and 1"),
], ids=["sample_replace id = V", "statistical_replace id = V", "rtd_loss label 2"])
def test_host_checks_raise_and_the_context_survives(name, case, message):
    _needs(name)
    out = run_case(case, name)
    assert f"OUTCOME ValueError {message}" in out and "CONTEXT usable" in out, out


@pytest.mark.parametrize("name", ["cuda", "triton"])
def test_sample_replace_without_validation_stays_in_bounds(name):
    """validate=False skips the host check: the kernels still read and write only inside the tensors."""
    _needs(name)
    out = run_case(SAMPLE_REPLACE_UNVALIDATED, name)
    assert "OUTCOME ok" in out and "CONTEXT usable" in out, out
