"""electra_fast::bias_gelu on every backend: values and gradients (dx, dbias) against the reference at odd
shapes and in half precision, the reference against torch's GELU, the C++ eager path against the custom op bit
for bit, opcheck, torch.compile, gradcheck, large and non-finite inputs, the kernels' erf error bound, no double
backward, and bad input."""
import math

import pytest
import torch
import torch.nn.functional as TF

from electra_fast import backend
from electra_fast.ops import bias_gelu as ops
from electra_fast.reference import bias_gelu as reference
from tests.helpers import over_pairs, tolerances

SHAPES = [(1, 1), (3, 7), (5, 1031), (2, 3, 257), (7, 33), (0, 5), (300, 17)]
ERF_BOUND = 1e-7  # csrc/include/electra_fast/gelu.h
# the backends whose erf is gelu.h's approximation
KERNEL_PAIRS = [pytest.param(("cpu", "cpp"), id="cpu-cpp"),
                pytest.param(("cuda", "cuda"), marks=pytest.mark.gpu, id="cuda-cuda")]


def _inputs(shape, device, dtype, seed=0, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=g) * scale).to(device=device, dtype=dtype)
    bias = torch.randn(shape[-1], generator=g).to(device=device, dtype=dtype)
    up = torch.randn(shape, generator=g).to(device=device, dtype=dtype)
    return x, bias, up


def _value_and_grads(fn, x, bias, up):
    x = x.detach().clone().requires_grad_()
    bias = bias.detach().clone().requires_grad_()
    y = fn(x, bias)
    y.backward(up)
    return y.detach(), x.grad, bias.grad


def _assert_close(got, expected, dtype, what):
    rtol, atol = tolerances(dtype)
    assert got.dtype == expected.dtype and got.shape == expected.shape, what
    torch.testing.assert_close(got.float().cpu(), expected.float().cpu(), rtol=rtol, atol=atol,
                               msg=lambda m: f"{what}: {m}")


@over_pairs()
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_matches_the_reference(on, dtype):
    device, name = on
    for shape in SHAPES:
        x, bias, up = _inputs(shape, device, dtype)
        y, dx, dbias = _value_and_grads(ops.bias_gelu, x, bias, up)
        ref_y = reference.bias_gelu(x, bias)
        ref_dx, ref_dbias = reference.bias_gelu_backward(up, x, bias)
        _assert_close(y, ref_y, dtype, f"y {shape}")
        _assert_close(dx, ref_dx, dtype, f"dx {shape}")
        # dbias sums up to 300 rows of dx: its tolerance grows with the rows summed
        rows = max(x.numel() // shape[-1], 1)
        rtol, atol = tolerances(dtype)
        torch.testing.assert_close(dbias.float().cpu(), ref_dbias.float().cpu(), rtol=rtol,
                                   atol=atol * math.sqrt(rows), msg=lambda m: f"dbias {shape}: {m}")
        assert dbias.dtype == dtype and dbias.shape == (shape[-1],)


def test_reference_is_torchs_gelu():
    x, bias, up = _inputs((6, 45), "cpu", torch.float64)
    y, dx, dbias = _value_and_grads(lambda x, b: TF.gelu(x + b), x, bias, up)
    ref_dx, ref_dbias = reference.bias_gelu_backward(up, x, bias)
    torch.testing.assert_close(reference.bias_gelu(x, bias), y, rtol=1e-14, atol=1e-15)
    torch.testing.assert_close(ref_dx, dx, rtol=1e-14, atol=1e-15)
    torch.testing.assert_close(ref_dbias, dbias, rtol=1e-14, atol=1e-14)


@over_pairs()
def test_non_contiguous_x(on):
    device, _ = on
    x, bias, up = _inputs((33, 6), device, torch.float32)
    xt, up_t = x.t(), up.t().contiguous()
    bias = torch.randn(33, device=device)
    y, dx, dbias = _value_and_grads(ops.bias_gelu, xt, bias, up_t)
    _assert_close(y, reference.bias_gelu(xt.contiguous(), bias), torch.float32, "y")
    ref_dx, ref_dbias = reference.bias_gelu_backward(up_t, xt.contiguous(), bias)
    _assert_close(dx, ref_dx, torch.float32, "dx")
    _assert_close(dbias, ref_dbias, torch.float32, "dbias")


@over_pairs()
def test_large_and_non_finite_inputs(on):
    """Far tails are gelu(z) = z or 0 and gelu'(z) = 1 or 0; +inf -> +inf, -inf -> NaN, NaN -> NaN, and the
    gradient is NaN at +-inf and NaN: what exact arithmetic (and F.gelu in float64) gives."""
    device, _ = on
    z = torch.tensor([10.0, -10.0, 40.0, -40.0, 6.0, -6.0, 13.5, -13.5, math.inf, -math.inf, math.nan, 0.0, -0.0])
    x, bias = z.to(device), torch.zeros_like(z, device=device)
    y, dx, dbias = _value_and_grads(ops.bias_gelu, x, bias, torch.ones_like(x))
    z64 = z.double().requires_grad_()
    torch_y = TF.gelu(z64)
    torch_y.backward(torch.ones_like(z64))
    for got, expected, what in ((y, torch_y.detach(), "y"), (dx, z64.grad, "dx")):
        torch.testing.assert_close(got.cpu().double(), expected, rtol=1e-6, atol=1e-6, equal_nan=True,
                                   msg=lambda m: f"{what}: {m}")
        assert torch.equal(got.cpu().isnan(), expected.isnan()) and torch.equal(got.cpu().isinf(), expected.isinf())
    assert torch.equal(dbias.cpu().isnan(), z64.grad.isnan())


@pytest.mark.parametrize("on", KERNEL_PAIRS, indirect=True)
def test_erf_error_bound_on_a_dense_grid(on):
    """The forward's implied erf, 2 y / z - 1, is within gelu.h's bound of the exact erf at every point of a
    dense grid over where erf is not yet +-1 in float32, up to the float32 roundings of Phi = 1 - erfc / 2 (z >= 0)
    and of y = z Phi."""
    device, _ = on
    z = torch.linspace(-6.0, 6.0, 2_000_001)
    z = z[z != 0]
    y = ops.bias_gelu(z.to(device).unsqueeze(1), torch.zeros(1, device=device)).squeeze(1).cpu().double()
    cdf = y / z.double()
    implied_erf = 2.0 * cdf - 1.0
    exact = torch.special.erf(z.double() * math.sqrt(0.5))
    rounding = 2.0**-23 * cdf + torch.where(z >= 0, 2.0**-24, 0.0)
    excess = (implied_erf - exact).abs() - rounding
    assert excess.max().item() <= ERF_BOUND, f"erf error above the bound at z = {z[excess.argmax()].item()}"


def test_eager_path_equals_custom_op_bit_for_bit():
    """On cpp the public call is the C++ autograd node (ops/_dispatch.py: call); the custom op gives the same
    values and gradients, bit for bit."""
    if "cpp" not in backend.available("cpu"):
        pytest.skip("needs the cpp backend")
    for dtype in (torch.float32, torch.bfloat16):
        x, bias, up = _inputs((9, 515), "cpu", dtype)
        with backend.use("cpp"):
            a, ab = x.clone().requires_grad_(), bias.clone().requires_grad_()
            fast = ops.bias_gelu(a, ab)
            assert "BiasGelu" in fast.grad_fn.name()
            fast.backward(up)
            b, bb = x.clone().requires_grad_(), bias.clone().requires_grad_()
            slow = ops.bias_gelu_op(b, bb)
            assert "BiasGelu" not in slow.grad_fn.name()
            slow.backward(up)
        assert torch.equal(fast, slow) and torch.equal(a.grad, b.grad) and torch.equal(ab.grad, bb.grad)


def test_dbias_does_not_depend_on_the_thread_count():
    """The CPU kernel splits the rows into tasks by the shape alone (here 5 tasks), never by the thread count."""
    if "cpp" not in backend.available("cpu"):
        pytest.skip("needs the cpp backend")
    x, bias, up = _inputs((512, 257), "cpu", torch.float32)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = torch.ops.electra_fast_C.bias_gelu_backward(up, x, bias)
        torch.set_num_threads(max(threads, 2))
        many = torch.ops.electra_fast_C.bias_gelu_backward(up, x, bias)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one[0], many[0]) and torch.equal(one[1], many[1])


@over_pairs()
def test_opcheck(on):
    device, _ = on
    for dtype in (torch.float32, torch.bfloat16):
        x, bias, up = _inputs((3, 70), device, dtype)
        torch.library.opcheck(ops.bias_gelu_op, (x.requires_grad_(), bias.requires_grad_()))
        torch.library.opcheck(ops.bias_gelu_backward_op, (up, x.detach(), bias.detach()))


@over_pairs()
def test_torch_compile_fullgraph(on):
    """The FFN's use, bias_gelu(F.linear(a, W), b), compiled whole: the same values and gradients as eager."""
    device, _ = on
    torch._dynamo.reset()

    def ffn(a, w, b):
        return ops.bias_gelu(TF.linear(a, w), b) * 2.0

    g = torch.Generator().manual_seed(3)
    a = torch.randn(4, 5, 16, generator=g).to(device)
    w = torch.randn(40, 16, generator=g).to(device)
    b = torch.randn(40, generator=g).to(device)
    results = []
    for fn in (ffn, torch.compile(ffn, fullgraph=True)):
        leaves = [t.clone().requires_grad_() for t in (a, w, b)]
        y = fn(*leaves)
        y.sum().backward()
        results.append((y.detach(), *[t.grad for t in leaves]))
    for eager, compiled, what in zip(*results, ("y", "da", "dw", "db")):
        torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-5, msg=lambda m: f"{what}: {m}")


def test_gradcheck_float64():
    x, bias, _ = _inputs((3, 9), "cpu", torch.float64)
    assert torch.autograd.gradcheck(ops.bias_gelu, (x.requires_grad_(), bias.requires_grad_()))


@over_pairs()
@pytest.mark.parametrize("path", ["public", "custom op"])
def test_double_backward_raises(on, path):
    """A backward with create_graph=True works; differentiating its result raises, on every path."""
    device, _ = on
    x, bias, up = _inputs((3, 7), device, torch.float32)
    x.requires_grad_()
    bias.requires_grad_()
    y = ops.bias_gelu(x, bias) if path == "public" else ops.bias_gelu_op(x, bias)
    dx, dbias = torch.autograd.grad(y, (x, bias), up, create_graph=True)
    ref_dx, ref_dbias = reference.bias_gelu_backward(up, x.detach(), bias.detach())
    _assert_close(dx.detach(), ref_dx, torch.float32, "dx")
    with pytest.raises(RuntimeError, match="bias_gelu supports one backward only"):
        torch.autograd.grad(dx.sum() + dbias.sum(), x)


def test_bad_input():
    x, bias = torch.randn(4, 5), torch.randn(5)
    cases = [
        (lambda: ops.bias_gelu(x, torch.randn(4)), ValueError, r"bias must be 1-D of size x.shape\[-1\] = 5, got shape \(4,\)"),
        (lambda: ops.bias_gelu(x, torch.randn(1, 5)), ValueError, r"bias must be 1-D of size .* got shape \(1, 5\)"),
        (lambda: ops.bias_gelu(x, bias.half()), TypeError, "bias must have x's dtype float32, got float16"),
        (lambda: ops.bias_gelu(x, bias.to("meta")), ValueError, "bias is on meta but x is on cpu"),
        (lambda: ops.bias_gelu(x.long(), bias.long()), TypeError, "x must have dtype in"),
        (lambda: ops.bias_gelu(x, bias.int()), TypeError, "bias must have dtype in"),
        (lambda: ops.bias_gelu(torch.tensor(1.0), torch.randn(1)), ValueError, "x must have at least one dimension"),
        (lambda: ops.bias_gelu(x.tolist(), bias), TypeError, "x must be a torch.Tensor"),
        (lambda: ops.bias_gelu(x, 0.5), TypeError, "bias must be a torch.Tensor"),
    ]
    for fn, exc, message in cases:
        with pytest.raises(exc, match=message):
            fn()


def test_raw_kernels_check_their_arguments():
    """The C++ ops check before they read: a clear error, never a read out of bounds."""
    if "cpp" not in backend.available("cpu"):
        pytest.skip("needs the cpp backend")
    raw = torch.ops.electra_fast_C
    x, bias = torch.randn(4, 6), torch.randn(6)
    cases = [
        (lambda: raw.bias_gelu(x.t(), torch.randn(4)), "x must be contiguous"),
        (lambda: raw.bias_gelu(x, torch.randn(5)), "bias must have 6 elements"),
        (lambda: raw.bias_gelu(x, torch.randn(2, 3)), "bias must be 1-D"),
        (lambda: raw.bias_gelu(x, bias.double()), "bias must be Float"),
        (lambda: raw.bias_gelu(x.double(), bias.double()), "x must be float32, float16 or bfloat16"),
        (lambda: raw.bias_gelu(torch.tensor(1.0), bias[:1]), "x must have at least one dimension"),
        (lambda: raw.bias_gelu_backward(torch.randn(4, 5), x, bias), "grad must have 24 elements"),
        (lambda: raw.bias_gelu_backward(torch.randn(6, 4), x, bias), "grad must have x's shape"),
        (lambda: raw.bias_gelu_backward(x.half(), x, bias), "grad must be Float"),
    ]
    for fn, message in cases:
        with pytest.raises(RuntimeError, match=message):
            fn()


# -------------------------------------------------------------- the module (electra_fast.nn.LinearGELU)
def test_linear_gelu_module_is_a_linear_followed_by_gelu():
    from electra_fast.nn import LinearGELU

    layer = LinearGELU(24, 40)
    assert isinstance(layer, torch.nn.Linear) and set(layer.state_dict()) == {"weight", "bias"}
    torch.nn.init.normal_(layer.bias)
    x = torch.randn(3, 5, 24, requires_grad=True)
    y = layer(x)
    assert "BiasGelu" in y.grad_fn.name() or "bias_gelu" in y.grad_fn.name()
    x2 = x.detach().clone().requires_grad_()
    plain = torch.nn.functional.gelu(torch.nn.functional.linear(x2, layer.weight, layer.bias))
    torch.testing.assert_close(y, plain, rtol=1e-5, atol=1e-6)
    up = torch.randn_like(y)
    got = torch.autograd.grad(y, (x, layer.weight, layer.bias), up)
    expected = torch.autograd.grad(plain, (x2, layer.weight, layer.bias), up)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-5)
    no_bias = LinearGELU(24, 40, bias=False)
    torch.testing.assert_close(no_bias(x), torch.nn.functional.gelu(x @ no_bias.weight.T))
