"""electra_fast::dropout_add_layer_norm: every backend against the reference (values, the dropout mask, gradients,
odd row lengths, half precision and autocast's mixed dtypes), against torch's dropout + add + LayerNorm, the C++
eager path against the custom op, thread-count independence, opcheck, torch.compile, gradcheck, the refused
double backward, and bad input."""
import pytest
import torch

import electra_fast.functional as F
from electra_fast import backend
from electra_fast.ops import dropout_add_layer_norm as ops
from electra_fast.reference import dropout as reference_dropout
from electra_fast.reference import dropout_add_layer_norm as reference
from tests.helpers import over_pairs, tolerances

SHAPES = [(1, 1), (3, 7), (2, 3, 65), (5, 256), (2, 1030)]
# (x, residual): plain training in each dtype, and autocast's half-precision block output on a float32 stream
DTYPES = [(torch.float32, torch.float32), (torch.bfloat16, torch.bfloat16), (torch.float16, torch.float16),
          (torch.bfloat16, torch.float32), (torch.float16, torch.float32)]
SEED, OFFSET, EPS = 2**40 + 5, 9, 1e-5


def _inputs(shape, x_dtype, r_dtype, device, requires_grad=False):
    n = shape[-1]
    x = torch.randn(shape, device=device).to(x_dtype)
    r = (2.0 * torch.randn(shape, device=device) + 0.5).to(r_dtype)
    w = (1.0 + 0.3 * torch.randn(n, device=device)).to(r_dtype)
    b = (0.1 * torch.randn(n, device=device)).to(r_dtype)
    return [t.requires_grad_(requires_grad) for t in (x, r, w, b)]


def _close(got, expected, dtype, what, scale=1.0):
    rtol, atol = tolerances(dtype)
    torch.testing.assert_close(got.cpu().float(), expected.cpu().float(), rtol=rtol * scale, atol=atol * scale,
                               msg=lambda m: f"{what}: {m}")


@over_pairs()
@pytest.mark.parametrize("dtypes", DTYPES, ids=lambda d: f"{d[0]}-{d[1]}".replace("torch.", ""))
@pytest.mark.parametrize("p", [0.0, 0.1, 1.0])
def test_forward_equals_the_reference(on, dtypes, p):
    device, _ = on
    x_dtype, r_dtype = dtypes
    for shape in SHAPES:
        x, r, w, b = _inputs(shape, x_dtype, r_dtype, device)
        got = ops.dropout_add_layer_norm_op(x, r, w, b, EPS, p, SEED, OFFSET)
        expected = reference.dropout_add_layer_norm(x.cpu(), r.cpu(), w.cpu(), b.cpu(), EPS, p, SEED, OFFSET)
        for g, e, name in zip(got, expected, ("y", "s", "mean", "rstd")):
            assert g.dtype == e.dtype and g.shape == e.shape, (name, g.dtype, e.dtype, g.shape, e.shape)
            # y goes through the statistics: a few more roundings than s
            _close(g, e, r_dtype, f"{name} {shape} p={p}", scale=1.0 if name == "s" else 4.0)


@over_pairs()
def test_the_mask_is_dropouts(on):
    """Exactly the elements electra_fast.dropout drops come out as the residual alone: s = r there, and
    s = x * scale + r elsewhere."""
    device, _ = on
    x, r, w, b = _inputs((6, 129), torch.float32, torch.float32, device)
    _, s, _, _ = ops.dropout_add_layer_norm_op(x, r, w, b, EPS, 0.3, SEED, OFFSET)
    keep = reference_dropout.keep_mask(x.numel(), 0.3, SEED, OFFSET).view(x.shape).to(device)
    assert 0.6 < keep.float().mean().item() < 0.8
    assert torch.equal(s[~keep], r[~keep])
    torch.testing.assert_close(s[keep], x[keep] * reference_dropout.dropout_scale(0.3) + r[keep])


@over_pairs()
@pytest.mark.parametrize("dtypes", DTYPES, ids=lambda d: f"{d[0]}-{d[1]}".replace("torch.", ""))
@pytest.mark.parametrize("p", [0.0, 0.25])
def test_gradients_equal_the_reference(on, dtypes, p):
    device, _ = on
    x_dtype, r_dtype = dtypes
    for shape in SHAPES:
        x, r, w, b = _inputs(shape, x_dtype, r_dtype, device, requires_grad=True)
        y = F.dropout_add_layer_norm(x, r, w, b, p, eps=EPS, seed=SEED, offset=OFFSET)
        up = torch.randn(shape, device=device).to(r_dtype)
        got = torch.autograd.grad(y, (x, r, w, b), up)
        _, s, mean, rstd = reference.dropout_add_layer_norm(x.detach().cpu(), r.detach().cpu(), w.detach().cpu(),
                                                            b.detach().cpu(), EPS, p, SEED, OFFSET)
        expected = reference.dropout_add_layer_norm_backward(up.cpu(), s, mean, rstd, w.detach().cpu(), p, SEED,
                                                             OFFSET, x_dtype)
        # ds = rstd * (terms of the size of dy * w): their rounding errors grow by rstd (316 for a row of one,
        # whose terms cancel); dweight and dbias are sums over the rows
        ds_scale = 4.0 * max(1.0, float(rstd.max()))
        for g, e, t, name in zip(got, expected, (x, r, w, b), ("dx", "dresidual", "dweight", "dbias")):
            assert g.dtype == t.dtype and g.shape == t.shape, (name, g.dtype, g.shape)
            _close(g, e, g.dtype, f"{name} {shape} p={p}", scale=ds_scale if name in ("dx", "dresidual") else 40.0)


@pytest.mark.parametrize("p", [0.0, 0.2])
def test_equals_torch_dropout_add_layer_norm(p):
    """With the same mask, the op is torch's layer_norm(dropout(x) + residual): values and all four gradients."""
    x, r, w, b = _inputs((4, 50, 96), torch.float32, torch.float32, "cpu", requires_grad=True)
    up = torch.randn(4, 50, 96)
    y = F.dropout_add_layer_norm(x, r, w, b, p, eps=1e-12, seed=SEED, offset=3)
    got = torch.autograd.grad(y, (x, r, w, b), up)
    x2, r2, w2, b2 = (t.detach().clone().requires_grad_() for t in (x, r, w, b))
    keep = reference_dropout.keep_mask(x.numel(), p, SEED, 3).view(x.shape)
    dropped = torch.where(keep, x2 * reference_dropout.dropout_scale(p), torch.zeros(()))
    y2 = torch.nn.functional.layer_norm(dropped + r2, (96,), w2, b2, eps=1e-12)
    expected = torch.autograd.grad(y2, (x2, r2, w2, b2), up)
    torch.testing.assert_close(y, y2, rtol=1e-5, atol=1e-5)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-4)


def test_eval_and_p_zero_need_no_seed_and_streams_differ():
    x, r, w, b = _inputs((3, 40), torch.float32, torch.float32, "cpu")
    plain = torch.nn.functional.layer_norm(x + r, (40,), w, b, eps=1e-5)
    torch.testing.assert_close(F.dropout_add_layer_norm(x, r, w, b, 0.5, training=False), plain)
    torch.testing.assert_close(F.dropout_add_layer_norm(x, r, w, b, 0.0), plain)
    a = F.dropout_add_layer_norm(x, r, w, b, 0.5, seed=1)
    assert torch.equal(a, F.dropout_add_layer_norm(x, r, w, b, 0.5, seed=1))
    assert not torch.equal(a, F.dropout_add_layer_norm(x, r, w, b, 0.5, seed=2))
    assert not torch.equal(a, F.dropout_add_layer_norm(x, r, w, b, 0.5, seed=1, offset=1))


def _needs_cpp():
    if "cpp" not in backend.available("cpu"):
        pytest.skip("needs the cpp backend")


def test_eager_path_equals_custom_op_bit_for_bit():
    """On cpp the public call is the C++ autograd node (ops/_dispatch.py: call); the custom op gives the same
    values and gradients."""
    _needs_cpp()
    x, r, w, b = _inputs((7, 300), torch.float32, torch.float32, "cpu", requires_grad=True)
    up = torch.randn(7, 300)
    fast = F.dropout_add_layer_norm(x, r, w, b, 0.3, seed=8, offset=2)
    assert "DropoutAddLayerNorm" in fast.grad_fn.name()
    slow, _, _, _ = ops.dropout_add_layer_norm_op(x, r, w, b, 1e-5, 0.3, 8, 2)
    assert "DropoutAddLayerNorm" not in slow.grad_fn.name()
    assert torch.equal(fast, slow)
    for g, h in zip(torch.autograd.grad(fast, (x, r, w, b), up), torch.autograd.grad(slow, (x, r, w, b), up)):
        assert torch.equal(g, h)


def test_cpu_result_does_not_depend_on_the_thread_count():
    _needs_cpp()
    x, r, w, b = _inputs((300, 130), torch.float32, torch.float32, "cpu", requires_grad=True)
    up = torch.randn(300, 130)
    threads = torch.get_num_threads()
    results = []
    try:
        for count in (1, 2, 3):
            torch.set_num_threads(count)
            with backend.use("cpp"):
                y = F.dropout_add_layer_norm(x, r, w, b, 0.1, seed=4)
                results.append((y, *torch.autograd.grad(y, (x, r, w, b), up)))
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        assert all(torch.equal(a, c) for a, c in zip(results[0], other))


@over_pairs()
def test_opcheck(on):
    device, _ = on
    for dtypes in ((torch.float32, torch.float32), (torch.bfloat16, torch.float32)):
        x, r, w, b = _inputs((3, 70), *dtypes, device, requires_grad=True)
        torch.library.opcheck(ops.dropout_add_layer_norm_op, (x, r, w, b, 1e-5, 0.2, 5, 0))


@over_pairs()
def test_torch_compile_fullgraph(on):
    device, _ = on
    torch._dynamo.reset()

    def f(x, r, w, b):
        return F.dropout_add_layer_norm(x * 2.0, r, w, b, 0.3, seed=17, offset=3)

    x, r, w, b = _inputs((5, 33), torch.float32, torch.float32, device, requires_grad=True)
    up = torch.randn(5, 33, device=device)
    compiled = torch.compile(f, fullgraph=True)(x, r, w, b)
    eager = f(x, r, w, b)
    torch.testing.assert_close(compiled, eager)
    for g, e in zip(torch.autograd.grad(compiled, (x, r, w, b), up), torch.autograd.grad(eager, (x, r, w, b), up)):
        torch.testing.assert_close(g, e)


def test_gradcheck_float64():
    x, r, w, b = _inputs((3, 9), torch.float64, torch.float64, "cpu", requires_grad=True)
    assert torch.autograd.gradcheck(lambda *t: F.dropout_add_layer_norm(*t, 0.4, seed=3), (x, r, w, b))


@pytest.mark.parametrize("name", ["cpp", "reference"])
def test_double_backward_raises(name):
    if name not in backend.available("cpu"):
        pytest.skip(f"needs the {name} backend")
    x, r, w, b = _inputs((3, 16), torch.float32, torch.float32, "cpu", requires_grad=True)
    with backend.use(name):
        y = F.dropout_add_layer_norm(x, r, w, b, 0.1, seed=3)
        with pytest.raises(RuntimeError, match="supports one backward only"):
            torch.autograd.grad(y.sum(), x, create_graph=True)


def test_bad_input():
    x, r, w, b = _inputs((4, 5), torch.float32, torch.float32, "cpu")
    cases = [
        (lambda: F.dropout_add_layer_norm(x.long(), r, w, b, seed=0), TypeError, "x must have dtype"),
        (lambda: F.dropout_add_layer_norm(x, "r", w, b, seed=0), TypeError, "residual must be a torch.Tensor"),
        (lambda: F.dropout_add_layer_norm(x, r[:3], w, b, seed=0), ValueError, "residual must have the shape of x"),
        (lambda: F.dropout_add_layer_norm(x, r, w[:4], b, seed=0), ValueError, r"weight must have shape \[5\]"),
        (lambda: F.dropout_add_layer_norm(x, r, w, b[None], seed=0), ValueError, "bias must be 1-D"),
        (lambda: F.dropout_add_layer_norm(x, r, w.half(), b, seed=0), TypeError, "weight must have dtype in"),
        (lambda: F.dropout_add_layer_norm(x.double(), r, w, b, seed=0), TypeError,
         "x and residual must both be float64 or neither"),
        (lambda: F.dropout_add_layer_norm(x[:, :0], r[:, :0], w[:0], b[:0], seed=0), ValueError,
         "x must have a non-empty last dimension"),
        (lambda: F.dropout_add_layer_norm(x[0, 0], r[0, 0], w[:1], b[:1], seed=0), ValueError,
         "x must have a non-empty last dimension"),
        (lambda: F.dropout_add_layer_norm(x, r, w, b, 1.5, seed=0), ValueError, r"p must be a float in \[0, 1\]"),
        (lambda: F.dropout_add_layer_norm(x, r, w, b, 0.1, eps=-1.0, seed=0), ValueError, "eps must be a float >= 0"),
        (lambda: F.dropout_add_layer_norm(x, r, w, b, 0.1), ValueError, "seed is required when training with p > 0"),
        (lambda: F.dropout_add_layer_norm(x, r, w, b, 0.1, seed=-1), ValueError, r"seed must be in \[0, 2\^63\)"),
    ]
    for fn, exc, message in cases:
        with pytest.raises(exc, match=message):
            fn()


def test_raw_kernel_rejects_bad_arguments_clearly():
    """The C++ op checks what the Python layer would have (callers of torch.ops.electra_fast_C reach it directly)."""
    _needs_cpp()
    kernel = torch.ops.electra_fast_C.dropout_add_layer_norm
    x, r, w, b = _inputs((4, 6), torch.float32, torch.float32, "cpu")
    with pytest.raises(RuntimeError, match="residual must have x's shape"):
        kernel(x, r[:2], w, b, 1e-5, 0.1, 0, 0)
    with pytest.raises(RuntimeError, match="weight must be Float"):
        kernel(x, r, w.double(), b, 1e-5, 0.1, 0, 0)
    with pytest.raises(RuntimeError, match="p must be in"):
        kernel(x, r, w, b, 1e-5, 2.0, 0, 0)
    with pytest.raises(RuntimeError, match="mean must have 4 elements"):
        torch.ops.electra_fast_C.dropout_add_layer_norm_backward(x, r, torch.zeros(3), torch.zeros(4), w, 0.1, 0, 0,
                                                                 torch.float32)


# ------------------------------------------------------- the module (electra_fast.nn.DropoutAddLayerNorm)
def test_module_is_a_layer_norm_with_dropout_on_its_input():
    from electra_fast.nn import DropoutAddLayerNorm

    norm = DropoutAddLayerNorm(64, 0.5, eps=1e-6)
    assert isinstance(norm, torch.nn.LayerNorm) and set(norm.state_dict()) == {"weight", "bias"}
    torch.nn.init.normal_(norm.weight)
    x, r = torch.randn(3, 64), torch.randn(3, 64)
    torch.manual_seed(3)
    a, b = norm(x, r), norm(x, r)
    assert not torch.equal(a, b)  # a new stream per call, drawn from torch's generator
    torch.manual_seed(3)
    assert torch.equal(norm(x, r), a) and torch.equal(norm(x, r), b)
    norm.eval()
    torch.testing.assert_close(norm(x, r), torch.nn.functional.layer_norm(x + r, (64,), norm.weight, norm.bias, 1e-6))
    with pytest.raises(ValueError, match=r"dropout probability must be in \[0, 1\], got 1.5"):
        DropoutAddLayerNorm(8, 1.5)
    with pytest.raises(TypeError, match="normalized_shape must be an int"):
        DropoutAddLayerNorm((8,), 0.1)


def test_module_draws_its_seed_from_torch_and_backward_uses_the_forwards_mask():
    from electra_fast.nn import DropoutAddLayerNorm

    norm = DropoutAddLayerNorm(100, 0.3)
    x = torch.randn(3, 100, requires_grad=True)
    r = torch.randn(3, 100)
    torch.manual_seed(5)
    seed = int(torch.randint(0, 2**63 - 1, (), dtype=torch.int64))
    torch.manual_seed(5)
    y = norm(x, r)
    torch.testing.assert_close(y, F.dropout_add_layer_norm(x, r, norm.weight, norm.bias, 0.3, seed=seed))
    y.backward(torch.randn_like(y))
    keep = reference_dropout.keep_mask(x.numel(), 0.3, seed, 0).view(x.shape)
    assert torch.equal(x.grad != 0, keep)


def test_module_under_torch_compile_is_torchs_ops():
    from electra_fast.nn import DropoutAddLayerNorm

    torch._dynamo.reset()
    norm = DropoutAddLayerNorm(64, 0.0).eval()
    x, r = torch.randn(4, 64), torch.randn(4, 64)
    torch.testing.assert_close(torch.compile(norm, fullgraph=True)(x, r), norm(x, r))
