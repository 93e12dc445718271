"""electra_fast._validation.check_temperature: accepts exactly the temperatures whose float32 inverse is finite, and
is plain Python arithmetic that torch.compile traces without a graph break."""
import numpy as np
import pytest
import torch

from electra_fast._validation import check_temperature


@pytest.mark.parametrize("temperature", [0.0, 1.0, 0.85, 1e-30, 2.95e-39, 2.9388e-39, 1e300])
def test_accepts_what_float32_can_invert(temperature):
    assert check_temperature(temperature) == temperature
    if temperature:
        assert np.isfinite(np.float32(1.0 / temperature))


@pytest.mark.parametrize("temperature", [2.9387e-39, 2.9e-39, 1e-39, 1e-45, 5e-324, -1.0, float("nan"), float("inf")])
def test_refuses_what_float32_cannot_invert(temperature):
    with pytest.raises(ValueError, match="temperature must be 0 .argmax. or a positive finite float"):
        check_temperature(temperature)


def test_the_boundary_is_float32_rounding():
    """Around the smallest temperature whose inverse rounds to inf in float32, the check and numpy agree."""
    for inverse in np.linspace(3.40282346e38, 3.40282358e38, 200):
        accepted = True
        try:
            check_temperature(1.0 / inverse)
        except ValueError:
            accepted = False
        with np.errstate(over="ignore"):
            assert accepted == bool(np.isfinite(np.float32(1.0 / (1.0 / inverse)))), inverse


def test_traced_by_torch_compile_without_a_graph_break():
    scaled = torch.compile(lambda x, t: x * check_temperature(t), fullgraph=True)
    assert torch.equal(scaled(torch.ones(2), 0.5), torch.full((2,), 0.5))
