"""electra_fast::rtd_loss and ::rtd_counts on every backend: against the reference and against
torch.nn.functional.binary_cross_entropy_with_logits with masking (values and gradients), edge cases,
opcheck, torch.compile, gradcheck, the module wrapper and bad input."""
import pytest
import torch
import torch.nn.functional as TF

from electra_fast import backend, nn
from electra_fast import functional as F
from electra_fast.ops import rtd_loss as ops
from electra_fast.profiling import measure_peak_memory
from electra_fast.reference import rtd_loss as reference
from tests.helpers import over_pairs, tolerances

REDUCTIONS = ("none", "sum", "mean")
HALF = (torch.float16, torch.bfloat16)



def _make(shape, *, device="cpu", dtype=torch.float32, pad="random", weight=False, scale=3.0, seed=0):
    """(logits, labels bool, attention_mask bool or None, weight or None) on `device`."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=g) * scale).to(dtype)
    y = torch.rand(shape, generator=g) < 0.3
    if pad is None:
        m = None
    elif pad == "random":
        m = torch.rand(shape, generator=g) < 0.8
    elif pad == "rows":  # every other row is all padding
        m = torch.rand(shape, generator=g) < 0.8
        m[::2] = False
    elif pad == "all":
        m = torch.zeros(shape, dtype=torch.bool)
    else:
        raise AssertionError(pad)
    w = torch.rand(shape, generator=g) * 2 if weight else None
    move = lambda t: None if t is None else t.to(device)  # noqa: E731
    return move(x), move(y), move(m), move(w)


def _bce_oracle(x, y, m, w, reduction):
    """torch's own BCE-with-logits in fp32, masked: the independent oracle."""
    scale = torch.ones_like(x, dtype=torch.float32)
    if m is not None:
        scale = scale * m.float()
    if w is not None:
        scale = scale * w.float()
    per = TF.binary_cross_entropy_with_logits(x.float(), y.float(), weight=scale, reduction="none")
    if reduction == "none":
        return per
    total = per.sum()
    if reduction == "mean":
        real = m.sum() if m is not None else torch.tensor(x.numel())
        total = total / real.clamp(min=1).to(total.dtype)
    return total


def _value_and_grad(fn, x, y, m, w, reduction, upstream):
    """fn's loss and d(<loss, upstream>)/dx for a leaf copy of x."""
    leaf = x.detach().clone().requires_grad_(True)
    loss = fn(leaf, y, m, weight=w, reduction=reduction)
    loss.backward(upstream.to(loss.dtype))
    return loss.detach(), leaf.grad


def _upstream(reduction, shape, device, seed=1):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(shape if reduction == "none" else (), generator=g)
    return u.to(device)


def _assert_close(got, expected, dtype, what):
    rtol, atol = tolerances(dtype)
    torch.testing.assert_close(got.float().cpu(), expected.float().cpu(), rtol=rtol, atol=atol, msg=lambda m: f"{what}: {m}")


SHAPES = [(1, 1), (3, 7), (5, 1031), (2, 4099)]  # 1x1, odd, > one 1024 block, > one 4096 block


@over_pairs()
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weight", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("pad", [None, "random"])
def test_matches_reference_and_bce_fp32(on, shape, reduction, weight, pad):
    device, name = on
    if name == "triton" and device == "cpu" and shape[1] > 2000 and (weight or pad is None):
        pytest.skip("interpreter: the largest shape once per reduction is enough")
    x, y, m, w = _make(shape, device=device, pad=pad, weight=weight)
    up = _upstream(reduction, shape, device)
    loss, grad = _value_and_grad(F.rtd_loss, x, y, m, w, reduction, up)
    with backend.use("reference"):
        ref_loss, ref_grad = _value_and_grad(reference.rtd_loss, x, y, m, w, reduction, up)
    oracle_loss, oracle_grad = _value_and_grad(_bce_oracle_fn, x, y, m, w, reduction, up)
    assert loss.shape == ref_loss.shape and loss.dtype == torch.float32
    _assert_close(loss, ref_loss, torch.float32, "loss vs reference")
    _assert_close(grad, ref_grad, torch.float32, "grad vs reference")
    _assert_close(loss, oracle_loss, torch.float32, "loss vs F.binary_cross_entropy_with_logits")
    _assert_close(grad, oracle_grad, torch.float32, "grad vs F.binary_cross_entropy_with_logits")
    if m is not None:  # padding contributes nothing, exactly
        assert bool((grad[~m] == 0).all())
        if reduction == "none":
            assert bool((loss[~m] == 0).all())


def _bce_oracle_fn(x, y, m, weight=None, reduction="mean"):
    return _bce_oracle(x, y, m, weight, reduction)


@over_pairs()
@pytest.mark.parametrize("dtype", HALF, ids=["fp16", "bf16"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_half_inputs(on, dtype, reduction):
    device, name = on
    shape = (3, 1031)
    x, y, m, w = _make(shape, device=device, dtype=dtype, weight=True)
    up = _upstream(reduction, shape, device).to(dtype)
    loss, grad = _value_and_grad(F.rtd_loss, x, y, m, w, reduction, up)
    assert loss.dtype == dtype and grad.dtype == dtype
    # oracle in fp32 on the same (rounded) half logits and upstream gradient
    oracle_loss, oracle_grad = _value_and_grad(_bce_oracle_fn, x.float(), y, m, w, reduction, up.float())
    _assert_close(loss, oracle_loss, dtype, "loss")
    _assert_close(grad, oracle_grad, dtype, "grad")


@over_pairs()
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_all_pad_rows(on, reduction):
    device, _ = on
    x, y, m, _ = _make((6, 33), device=device, pad="rows")
    up = _upstream(reduction, x.shape, device)
    loss, grad = _value_and_grad(F.rtd_loss, x, y, m, None, reduction, up)
    oracle_loss, oracle_grad = _value_and_grad(_bce_oracle_fn, x, y, m, None, reduction, up)
    _assert_close(loss, oracle_loss, torch.float32, "loss")
    _assert_close(grad, oracle_grad, torch.float32, "grad")
    assert bool((grad[::2] == 0).all())


@over_pairs()
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(4, 9), (0, 5)], ids=["all-pad", "empty"])
def test_all_pad_batch_is_zero(on, reduction, shape):
    # the mean of nothing is defined as 0, with a zero gradient
    device, _ = on
    x, y, m, w = _make(shape, device=device, pad="all", weight=True)
    up = _upstream(reduction, shape, device)
    loss, grad = _value_and_grad(F.rtd_loss, x, y, m, w, reduction, up)
    assert loss.shape == (shape if reduction == "none" else ())
    assert bool((loss == 0).all()) and bool((grad == 0).all())
    assert grad.shape == shape


@over_pairs()
@pytest.mark.parametrize("dtype", (torch.float32,) + HALF, ids=["fp32", "fp16", "bf16"])
def test_extreme_logits_finite(on, dtype):
    device, _ = on
    x = torch.tensor([[1e4, -1e4, 1e4, -1e4, 88.0, -88.0, 30.0, -30.0, 0.0, 1e-8]], dtype=dtype, device=device)
    y = torch.tensor([[1, 0, 0, 1, 0, 1, 1, 0, 1, 0]], dtype=torch.bool, device=device)
    for reduction in REDUCTIONS:
        up = _upstream(reduction, x.shape, device).to(dtype)
        loss, grad = _value_and_grad(F.rtd_loss, x, y, None, None, reduction, up)
        assert bool(loss.isfinite().all()) and bool(grad.isfinite().all())
        oracle_loss, oracle_grad = _value_and_grad(_bce_oracle_fn, x.float(), y, None, None, reduction, up.float())
        _assert_close(loss, oracle_loss, dtype, f"loss ({reduction})")
        _assert_close(grad, oracle_grad, dtype, f"grad ({reduction})")


LABEL_DTYPES = [torch.bool, torch.uint8, torch.int8, torch.int32, torch.int64, torch.float16, torch.bfloat16,
                torch.float32, torch.float64]


@over_pairs()
def test_label_and_mask_encodings(on):
    device, _ = on
    x, y, m, _ = _make((3, 17), device=device)
    expected = F.rtd_loss(x, y, m, reduction="none")
    for label_dtype in LABEL_DTYPES:
        got = F.rtd_loss(x, y.to(label_dtype), m, reduction="none")
        assert torch.equal(got, expected), label_dtype
    for mask_dtype in (torch.uint8, torch.int32, torch.int64, torch.float32):
        got = F.rtd_loss(x, y, m.to(mask_dtype), reduction="none")
        assert torch.equal(got, expected), mask_dtype


@over_pairs()
def test_non_contiguous_inputs(on):
    device, _ = on
    x, y, m, w = _make((19, 6), device=device, weight=True)
    xt, yt, mt, wt = x.t(), y.t(), m.t(), w.t()
    assert not xt.is_contiguous()
    up = _upstream("none", xt.shape, device)
    loss, grad = _value_and_grad(F.rtd_loss, xt, yt, mt, wt, "none", up)
    oracle_loss, oracle_grad = _value_and_grad(_bce_oracle_fn, xt, yt, mt, wt, "none", up)
    _assert_close(loss, oracle_loss, torch.float32, "loss")
    _assert_close(grad, oracle_grad, torch.float32, "grad")


@over_pairs()
def test_no_grad_paths(on):
    device, _ = on
    x, y, m, _ = _make((3, 11), device=device)
    expected = _bce_oracle(x, y, m, None, "mean")
    _assert_close(F.rtd_loss(x, y, m), expected, torch.float32, "no requires_grad")
    with torch.no_grad():
        _assert_close(F.rtd_loss(x.requires_grad_(), y, m), expected, torch.float32, "no_grad")


@over_pairs()
@pytest.mark.parametrize("pad", [None, "random", "all"])
@pytest.mark.parametrize("dtype", (torch.float32, torch.bfloat16), ids=["fp32", "bf16"])
def test_metrics(on, pad, dtype):
    device, _ = on
    x, y, m, _ = _make((5, 1031), device=device, pad=pad, dtype=dtype)
    x[0, :5] = 0.0  # a logit of exactly 0 predicts "original"
    got = F.rtd_metrics(x, y.to(torch.int64), m)
    real = m if m is not None else torch.ones_like(y)
    pred, actual = x > 0, y
    n_real, tp = real.sum().item(), (real & pred & actual).sum().item()
    n_pred, n_actual = (real & pred).sum().item(), (real & actual).sum().item()
    tn = (real & ~pred & ~actual).sum().item()
    expected = {
        "accuracy": (tp + tn) / n_real if n_real else 0.0,
        "precision": tp / n_pred if n_pred else 0.0,
        "recall": tp / n_actual if n_actual else 0.0,
        "replaced_fraction": n_actual / n_real if n_real else 0.0,
    }
    for field, value in expected.items():
        t = getattr(got, field)
        assert t.dtype == torch.float32 and t.shape == () and t.device.type == device
        assert t.item() == pytest.approx(value, rel=1e-6, abs=1e-7), field
    counts = ops.rtd_counts_op(x, y.view(torch.uint8), None if m is None else m.view(torch.uint8))
    assert counts.tolist() == [n_real, tp, n_pred, n_actual]


def _raw_args(device, reduction, compute_grad, with_mask=True, with_weight=True, dtype=torch.float32):
    x, y, m, w = _make((3, 37), device=device, dtype=dtype, weight=with_weight, pad="random" if with_mask else None)
    x.requires_grad_(compute_grad)
    return (x, y.view(torch.uint8), None if m is None else m.view(torch.uint8), w, ops.REDUCTIONS[reduction],
            compute_grad)


@over_pairs()
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_opcheck_rtd_loss(on, reduction):
    device, _ = on
    for compute_grad, with_mask, with_weight in [(True, True, True), (False, True, False), (True, False, False)]:
        torch.library.opcheck(ops.rtd_loss_op, _raw_args(device, reduction, compute_grad, with_mask, with_weight))
    torch.library.opcheck(ops.rtd_loss_op, _raw_args(device, reduction, True, dtype=torch.bfloat16))


@over_pairs()
def test_opcheck_rtd_counts(on):
    device, _ = on
    x, y, m, _ = _raw_args(device, "sum", False)[:4]
    torch.library.opcheck(ops.rtd_counts_op, (x, y, m))
    torch.library.opcheck(ops.rtd_counts_op, (x, y, None))


@over_pairs()
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_torch_compile_fullgraph(on, reduction):
    device, _ = on
    torch._dynamo.reset()

    @torch.compile(fullgraph=True)
    def step(x, y, m, w):
        return F.rtd_loss(x * 1.0, y, m, weight=w, reduction=reduction), F.rtd_metrics(x, y, m).accuracy

    x, y, m, w = _make((4, 37), device=device, weight=True)
    up = _upstream(reduction, x.shape, device)
    leaf = x.clone().requires_grad_(True)
    loss, acc = step(leaf, y.to(torch.int32), m, w)
    loss.backward(up)
    oracle_loss, oracle_grad = _value_and_grad(_bce_oracle_fn, x, y, m, w, reduction, up)
    _assert_close(loss, oracle_loss, torch.float32, "loss")
    _assert_close(leaf.grad, oracle_grad, torch.float32, "grad")
    assert acc.item() == pytest.approx(((x > 0) == y)[m].float().mean().item(), rel=1e-6)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradcheck_float64(reduction):
    x, y, m, w = _make((3, 7), dtype=torch.float64, weight=True)
    w = w.double()
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: reference.rtd_loss(x, y, m, weight=w, reduction=reduction), (x,))
    assert torch.autograd.gradgradcheck(lambda x: reference.rtd_loss(x, y, m, weight=w, reduction=reduction), (x,))
    # the public op takes float64 through the custom op (reference backend) and its registered backward
    assert torch.autograd.gradcheck(lambda x: F.rtd_loss(x, y, m, weight=w, reduction=reduction), (x,))


def test_module_wrapper():
    x, y, m, w = _make((3, 11), weight=True)
    module = nn.RTDLoss(reduction="sum")
    assert "reduction='sum'" in repr(module)
    assert torch.equal(module(x, y, m, w), F.rtd_loss(x, y, m, weight=w, reduction="sum"))
    assert torch.equal(nn.RTDLoss()(x, y, m), F.rtd_loss(x, y, m))
    leaf = x.clone().requires_grad_(True)
    nn.RTDLoss(reduction="none")(leaf, y, m).sum().backward()
    _, oracle_grad = _value_and_grad(_bce_oracle_fn, x, y, m, None, "sum", torch.tensor(1.0))
    _assert_close(leaf.grad, oracle_grad, torch.float32, "module grad")
    with pytest.raises(ValueError, match="reduction"):
        nn.RTDLoss(reduction="avg")(x, y)


def test_cpp_memory_is_one_gradient():
    # forward + backward keep no input-sized tensor beyond the saved gradient and x.grad
    if "cpp" not in backend.available("cpu"):
        pytest.skip("no cpp backend")
    x, y, m, _ = _make((128, 512))
    x.requires_grad_(True)

    def step():
        F.rtd_loss(x, y, m).backward()

    with backend.use("cpp"):
        step()
        x.grad = None
        _, peak = measure_peak_memory(step)
    assert peak <= 2 * x.numel() * 4 + 65536


# ------------------------------------------------------------------------------------------ bad input
def test_bad_input():
    x, y, m, w = _make((2, 3), weight=True)
    cases = [
        (lambda: F.rtd_loss(x, y[:, :2]), ValueError, "labels must have the shape of logits"),
        (lambda: F.rtd_loss(x, y, m[:1]), ValueError, "attention_mask must have the shape"),
        (lambda: F.rtd_loss(x, y, m, weight=w.t()), ValueError, "weight must have the shape"),
        (lambda: F.rtd_loss(x.long(), y), TypeError, "logits must have dtype"),
        (lambda: F.rtd_loss(x.to(torch.complex64), y), TypeError, "logits must have dtype"),
        (lambda: F.rtd_loss(x, y.to(torch.complex64)), TypeError, "labels must have dtype"),
        (lambda: F.rtd_loss(x, y, m.to(torch.complex64)), TypeError, "attention_mask must have dtype"),
        (lambda: F.rtd_loss(x, y, weight=w.long()), TypeError, "weight must have dtype"),
        (lambda: F.rtd_loss(x.tolist(), y), TypeError, "logits must be a torch.Tensor"),
        (lambda: F.rtd_loss(x, y.tolist()), TypeError, "labels must be a torch.Tensor"),
        (lambda: F.rtd_loss(x, y, m.numpy()), TypeError, "attention_mask must be a torch.Tensor"),
        (lambda: F.rtd_loss(x, y.long() * 2), ValueError, "labels must hold only 0 and 1, found 2"),
        (lambda: F.rtd_loss(x, y.float() - 0.5), ValueError, "labels must hold only 0 and 1"),
        (lambda: F.rtd_loss(x, y, m.long() - 1), ValueError, "attention_mask must hold only 0 and 1, found -1"),
        (lambda: F.rtd_loss(x, y.to("meta")), ValueError, "labels is on meta but logits is on cpu"),
        (lambda: F.rtd_loss(x, y, m.to("meta")), ValueError, "attention_mask is on meta but logits is on cpu"),
        (lambda: F.rtd_loss(x, y, weight=w.to("meta")), ValueError, "weight is on meta"),
        (lambda: F.rtd_loss(x, y, weight=w.clone().requires_grad_()), ValueError, "weight must not require grad"),
        (lambda: F.rtd_loss(x, y, reduction="avg"), ValueError, "reduction must be one of"),
        (lambda: F.rtd_loss(x[0, 0], y[0, 0]), ValueError, "logits must have at least one dimension"),
        (lambda: F.rtd_metrics(x, y[:1]), ValueError, "labels must have the shape"),
        (lambda: F.rtd_metrics(x, y.long() + 1), ValueError, "labels must hold only 0 and 1"),
        (lambda: F.rtd_metrics(x, y, m.to("meta")), ValueError, "attention_mask is on meta"),
    ]
    for fn, exc, message in cases:
        with pytest.raises(exc, match=message):
            fn()


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_eager_fast_path_equals_custom_op_bit_for_bit(reduction):
    # plain eager calls skip the dispatcher (ops/_dispatch.py: call); both paths must run the same kernels
    from electra_fast.ops import rtd_loss as op_module

    logits = torch.randn(5, 37, dtype=torch.float32)
    labels = torch.rand(5, 37) > 0.7
    mask = torch.rand(5, 37) > 0.2
    upstream = torch.randn(5, 37) if reduction == "none" else torch.tensor(1.7)
    x1 = logits.clone().requires_grad_(True)
    loss_fast = F.rtd_loss(x1, labels, mask, reduction=reduction)
    loss_fast.backward(upstream)
    x2 = logits.clone().requires_grad_(True)
    x, y, m, w = op_module._prepare(x2, labels, mask)
    loss_op, _ = op_module.rtd_loss_op(x, y, m, w, op_module.REDUCTIONS[reduction], True)
    loss_op.backward(upstream)
    assert torch.equal(loss_fast, loss_op)
    assert torch.equal(x1.grad, x2.grad)
    assert loss_fast.grad_fn is not None and "RtdLoss" in loss_fast.grad_fn.name()


# ------------------------------------------------------------------ the gradient saved by the forward
@over_pairs()
def test_gradient_is_computed_only_when_needed(on, monkeypatch):
    # the forward computes d loss / d logits only for logits that need a gradient, in grad mode
    from electra_fast.ops import _dispatch as dispatch

    asked, saved = [], []
    real_call = dispatch.call

    def spy(op, *args):
        out = real_call(op, *args)
        if op is ops.RTD_LOSS:
            asked.append(args[-1])
            saved.append(out[1].shape)  # the gradient both paths save for backward
        return out

    monkeypatch.setattr(dispatch, "call", spy)
    device, _ = on
    x, y, m, _ = _make((3, 11), device=device)
    F.rtd_loss(x, y, m)
    with torch.no_grad():
        F.rtd_loss(x.clone().requires_grad_(), y, m)
    with torch.inference_mode():
        F.rtd_loss(x.clone().requires_grad_(), y, m)
    assert asked == [False, False, False]
    assert saved == [torch.Size([0])] * 3
    leaf = x.clone().requires_grad_()
    F.rtd_loss(leaf, y, m)
    assert asked[-1] is True and saved[-1] == x.shape


@over_pairs()
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_saved_gradient_matches_reference_for_any_upstream(on, reduction):
    # backward scales the saved gradient; retained graphs give every upstream value its own gradient
    device, _ = on
    x, y, m, w = _make((4, 37), device=device, weight=True)
    leaf = x.clone().requires_grad_()
    loss = F.rtd_loss(leaf, y, m, weight=w, reduction=reduction)
    ups = [torch.ones_like(loss), _upstream(reduction, x.shape, device), torch.full_like(loss, -2.5)]
    for up in ups:
        leaf.grad = None
        loss.backward(up, retain_graph=True)
        with backend.use("reference"):
            _, ref_grad = _value_and_grad(reference.rtd_loss, x, y, m, w, reduction, up)
        _assert_close(leaf.grad, ref_grad, torch.float32, f"grad for upstream {up.flatten()[0].item()}")


def test_unit_upstream_gradient_is_handed_on_without_a_copy():
    # loss.backward() on CPU: the gradient saved by the forward becomes logits.grad itself (F.rtd_loss makes
    # this call, and drops the gradient output)
    from electra_fast.ops import _dispatch as dispatch

    x, y, m, _ = _make((8, 33))
    leaf = x.clone().requires_grad_()
    loss, saved = dispatch.call(ops.RTD_LOSS, ops.rtd_loss_op, *ops._prepare(leaf, y, m), ops.REDUCTIONS["mean"], True)
    ptr = saved.data_ptr()
    del saved
    loss.backward()
    assert leaf.grad.data_ptr() == ptr
    _, oracle_grad = _value_and_grad(_bce_oracle_fn, x, y, m, None, "mean", torch.tensor(1.0))
    _assert_close(leaf.grad, oracle_grad, torch.float32, "grad")


@pytest.mark.parametrize("path", ["public", "custom op"])
def test_double_backward_raises(path):
    x, y, m, _ = _make((3, 7))
    leaf = x.clone().requires_grad_()
    if path == "public":
        loss = F.rtd_loss(leaf, y, m)
    else:
        loss, _ = ops.rtd_loss_op(*ops._prepare(leaf, y, m), ops.REDUCTIONS["mean"], True)
    with pytest.raises(RuntimeError, match="one backward only"):
        torch.autograd.grad(loss, leaf, create_graph=True)
