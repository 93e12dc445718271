"""electra_fast::dropout: every backend draws the reference's mask bit for bit (values and gradients, odd sizes,
half precision), the mask keeps 1 - p of the elements, the backward draws the same mask, opcheck,
torch.compile, gradcheck, and bad input."""
import pytest
import torch
from scipy import stats

import electra_fast.functional as F
from electra_fast import backend
from electra_fast.ops import dropout as ops
from electra_fast.reference import dropout as reference
from tests.helpers import over_pairs

SIZES = [(1,), (3,), (63,), (64,), (65,), (4, 33), (2, 5, 97), (4097,)]


@over_pairs()
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("p", [0.1, 0.5, 1.0])
def test_equals_the_reference_bit_for_bit(on, dtype, p):
    device, _ = on
    for shape in SIZES:
        x = torch.randn(shape, device=device).to(dtype)
        got = F.dropout(x, p, seed=2**40 + 3, offset=7)
        assert got.dtype == dtype and got.shape == x.shape
        assert torch.equal(got.cpu(), reference.dropout(x.cpu(), p, 2**40 + 3, 7)), (shape, dtype, p)


@over_pairs()
def test_gradient_is_the_same_mask_and_scale(on):
    device, _ = on
    x = torch.randn(3, 131, device=device, requires_grad=True)
    up = torch.randn(3, 131, device=device)
    y = F.dropout(x, 0.25, seed=11, offset=1)
    y.backward(up)
    keep = reference.keep_mask(x.numel(), 0.25, 11, 1).view(x.shape).to(device)
    scale = reference.dropout_scale(0.25)
    assert torch.equal(x.grad, torch.where(keep, up * scale, torch.zeros((), device=device)))
    assert torch.equal(y.detach(), torch.where(keep, x.detach() * scale, torch.zeros((), device=device)))


@over_pairs()
def test_keeps_one_minus_p_and_streams_differ(on):
    device, _ = on
    n, p = 200_000, 0.1
    kept = int((F.dropout(torch.ones(n, device=device), p, seed=1) != 0).sum())
    # a binomial count: far outside its 1e-6 quantiles only if the mask is biased
    low, high = stats.binom.ppf([1e-6, 1 - 1e-6], n, 1 - p)
    assert low <= kept <= high
    a = F.dropout(torch.ones(4096, device=device), 0.5, seed=1, offset=0)
    assert not torch.equal(a, F.dropout(torch.ones(4096, device=device), 0.5, seed=2, offset=0))
    assert not torch.equal(a, F.dropout(torch.ones(4096, device=device), 0.5, seed=1, offset=1))
    assert torch.equal(a, F.dropout(torch.ones(4096, device=device), 0.5, seed=1, offset=0))


def test_four_elements_share_a_counter():
    """Element i takes word i mod 4 of counter i // 4: the first 8 elements from the first 2 counters."""
    from electra_fast.random import philox_words

    words = philox_words(2, seed=9, offset=4).reshape(-1)
    u = (words.bitwise_right_shift(9).to(torch.float32) + 0.5) * 2.0**-23
    assert torch.equal(reference.keep_mask(8, 0.5, 9, 4), u >= 0.5)


def test_p_zero_and_eval_return_x_itself():
    x = torch.randn(4, 5)
    assert F.dropout(x, 0.0, seed=1) is x
    assert F.dropout(x, 0.5, seed=1, training=False) is x
    assert torch.equal(F.dropout(x, 1.0, seed=1), torch.zeros_like(x))


@over_pairs()
def test_opcheck(on):
    device, _ = on
    for dtype in (torch.float32, torch.bfloat16):
        x = torch.randn(3, 70, device=device, dtype=dtype, requires_grad=True)
        torch.library.opcheck(ops.dropout_op, (x, 0.2, 5, 0))


@over_pairs()
def test_torch_compile_fullgraph(on):
    device, _ = on
    torch._dynamo.reset()

    @torch.compile(fullgraph=True)
    def f(x):
        return F.dropout(x * 2.0, 0.3, seed=17, offset=3)

    x = torch.randn(5, 33, device=device, requires_grad=True)
    y = f(x)
    y.sum().backward()
    keep = reference.keep_mask(x.numel(), 0.3, 17, 3).view(x.shape).to(device)
    scale = reference.dropout_scale(0.3)
    torch.testing.assert_close(y, torch.where(keep, x.detach() * 2.0 * scale, torch.zeros((), device=device)))
    torch.testing.assert_close(x.grad, torch.where(keep, torch.full_like(x, 2.0 * scale), torch.zeros((), device=device)))


def test_gradcheck_float64():
    x = torch.randn(3, 9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: F.dropout(x, 0.4, seed=3), (x,))
    assert torch.autograd.gradgradcheck(lambda x: F.dropout(x, 0.4, seed=3), (x,))


def test_bad_input():
    x = torch.randn(4, 5)
    cases = [
        (lambda: F.dropout(x.long(), 0.1, seed=0), TypeError, "x must have dtype"),
        (lambda: F.dropout("x", 0.1, seed=0), TypeError, "x must be a torch.Tensor"),
        (lambda: F.dropout(x, 1.5, seed=0), ValueError, r"p must be a float in \[0, 1\], got 1.5"),
        (lambda: F.dropout(x, -0.1, seed=0), ValueError, "p must be a float in"),
        (lambda: F.dropout(x, float("nan"), seed=0), ValueError, "p must be a float in"),
        (lambda: F.dropout(x, True, seed=0), ValueError, "p must be a float in"),
        (lambda: F.dropout(x, 0.1, seed=-1), ValueError, r"seed must be in \[0, 2\^63\)"),
        (lambda: F.dropout(x, 0.1, seed=1.0), TypeError, "seed must be a Python int"),
        (lambda: F.dropout(x, 0.1, seed=0, offset=2**63), ValueError, "offset must be in"),
    ]
    for fn, exc, message in cases:
        with pytest.raises(exc, match=message):
            fn()


# ------------------------------------------------------------------ the module (electra_fast.nn.Dropout)
def test_module_draws_a_new_stream_per_call_from_torchs_generator():
    from electra_fast.nn import Dropout

    drop = Dropout(0.5)
    x = torch.ones(4, 256)
    torch.manual_seed(3)
    a, b = drop(x), drop(x)
    assert not torch.equal(a, b)  # a new seed per call
    torch.manual_seed(3)
    assert torch.equal(drop(x), a) and torch.equal(drop(x), b)  # torch's seed reproduces them
    assert set(a.unique().tolist()) <= {0.0, 2.0}
    drop.eval()
    assert drop(x) is x
    assert Dropout(0.0)(x) is x
    with pytest.raises(ValueError, match=r"dropout probability must be in \[0, 1\], got 1.5"):
        Dropout(1.5)


def test_module_gradient_uses_the_forwards_mask():
    from electra_fast.nn import Dropout

    x = torch.randn(3, 100, requires_grad=True)
    y = Dropout(0.3)(x)
    y.backward(torch.ones_like(y))
    assert torch.equal(x.grad != 0, y != 0)
    torch.testing.assert_close(x.grad[y != 0], torch.full_like(x.grad[y != 0], 1 / 0.7))


def test_module_under_torch_compile_is_torchs_dropout():
    from electra_fast.nn import Dropout

    torch._dynamo.reset()
    drop = Dropout(0.25)
    y = torch.compile(drop, fullgraph=True)(torch.ones(64, 64))
    kept = y != 0
    assert 0.6 < kept.float().mean().item() < 0.9
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / 0.75))


def test_eager_path_equals_custom_op_bit_for_bit_and_has_a_second_backward():
    """On cpp the public call is the C++ autograd node (ops/_dispatch.py: call); the custom op gives the same
    values and gradients, and the node's backward is dropout again, so a second backward is the mask once more."""
    if "cpp" not in backend.available("cpu"):
        pytest.skip("needs the cpp backend")
    x = torch.randn(4, 300)
    up = torch.randn(4, 300)
    a = x.clone().requires_grad_()
    fast = F.dropout(a, 0.3, seed=8, offset=2)
    assert "Dropout" in fast.grad_fn.name()
    (ga,) = torch.autograd.grad(fast, a, up, create_graph=True)
    b = x.clone().requires_grad_()
    slow = ops.dropout_op(b, 0.3, 8, 2)
    (gb,) = torch.autograd.grad(slow, b, up, create_graph=True)
    assert torch.equal(fast, slow) and torch.equal(ga, gb)
    up.requires_grad_()
    (gga,) = torch.autograd.grad(F.dropout(a, 0.3, seed=8, offset=2), a, up, create_graph=True)
    (second,) = torch.autograd.grad(gga.sum(), up)
    assert torch.equal(second, F.dropout(torch.ones_like(x), 0.3, seed=8, offset=2))
