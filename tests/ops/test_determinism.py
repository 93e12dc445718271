"""Every op under torch.use_deterministic_algorithms(True): it runs (no torch op it uses lacks a deterministic
implementation: those raise in this mode), and returns bit for bit what it returns without the mode, which
also fills fresh torch.empty memory with NaN / the largest integer, so a kernel reading memory it never
wrote shows up here. sample_replace's dump slot (every unmasked position scattered to one slot) is the
case the mode changes the algorithm of on CUDA. The cases are the selftest's (electra_fast/_selftest_cases.py)."""
import contextlib

import pytest
import torch

from electra_fast import _selftest_cases as cases
from tests.helpers import over_pairs

CASES = cases.all_cases()


@contextlib.contextmanager
def deterministic_mode():
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


@over_pairs()
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.op}: {c.label}")
def test_same_results_in_deterministic_mode(on, case):
    device, name = on
    if name == "triton" and device == "cpu" and not case.interpreted:
        pytest.skip("too large for the Triton interpreter")
    free = case.run(torch.device(device))
    with deterministic_mode():
        strict = case.run(torch.device(device))
    assert list(free) == list(strict)
    for key in free:
        a, b = free[key].value.detach(), strict[key].value.detach()
        assert a.dtype == b.dtype and a.shape == b.shape, key
        same = (a == b) | (a.isnan() & b.isnan()) if a.is_floating_point() else a == b
        assert bool(same.all()), f"{key}: {int((~same).sum())} of {same.numel()} values differ"
