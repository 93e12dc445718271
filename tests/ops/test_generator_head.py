"""electra_fast.functional.generator_head: every backend against the full-logits reference and
F.cross_entropy (values, gradients for any upstream gradient, samples id for id), chunk boundaries,
ignore_index, half inputs, opcheck, torch.compile, no gradient GEMMs without grad, peak memory, bad input."""
import pytest
import torch
import torch.nn.functional as torchF

import electra_fast.functional as F
from electra_fast import backend, nn
from electra_fast._selftest_cases import consistent_draws
from electra_fast.ops import generator_head as op
from electra_fast.profiling import measure_peak_memory
from electra_fast.random import uniform
from electra_fast.reference import generator_head as ref
from electra_fast.reference.sampling import inverse_cdf_sample
from tests.helpers import device_backends, pair_id, tolerances

PAIRS = device_backends()
SEED, OFFSET = 1234, 7


def make(m, e, v, *, dtype=torch.float32, device="cpu", bias=True, ignore=(), scale=0.5, grad=True):
    g = torch.Generator().manual_seed(m * 1000 + e * 10 + v)
    hidden = (torch.randn(m, e, generator=g) * scale).to(device, dtype).requires_grad_(grad)
    weight = (torch.randn(v, e, generator=g) * scale).to(device, dtype).requires_grad_(grad)
    b = (torch.randn(v, generator=g) * scale).to(device, dtype).requires_grad_(grad) if bias else None
    targets = torch.randint(0, v, (m,), generator=g).to(device)
    for i in ignore:
        if i < m:
            targets[i] = -100
    return hidden, weight, b, targets


def run(pair, hidden, weight, b, targets, upstream=None, **kw):
    """(loss, samples, grads of (loss * upstream).sum() w.r.t. hidden, weight, bias) on `pair`'s backend."""
    kw.setdefault("seed", SEED)
    kw.setdefault("offset", OFFSET)
    with backend.use(pair[1]):
        loss, samples = F.generator_head(hidden, weight, b, targets, **kw)
    return loss, samples, _grads(loss, hidden, weight, b, upstream)


def _grads(loss, hidden, weight, b, upstream):
    inputs = [t for t in (hidden, weight, b) if t is not None]
    if upstream is None:
        upstream = torch.randn(loss.shape, generator=torch.Generator().manual_seed(3)).to(loss.device, loss.dtype)
    grads = torch.autograd.grad(loss, inputs, upstream)
    return list(grads) + ([None] if b is None else [])


def oracle(hidden, weight, b, targets, upstream=None, **kw):
    kw.setdefault("seed", SEED)
    kw.setdefault("offset", OFFSET)
    loss, samples = ref.generator_head(hidden, weight, b, targets, **kw)
    return loss, samples, _grads(loss, hidden, weight, b, upstream)


def assert_close_all(got, want, dtype=torch.float32):
    rtol, atol = tolerances(dtype)
    if dtype == torch.float32:
        rtol, atol = 1e-4, 1e-5
    torch.testing.assert_close(got[0], want[0], rtol=rtol, atol=atol)
    assert torch.equal(got[1], want[1]), (got[1], want[1])
    for name, g, w in zip(("hidden", "weight", "bias"), got[2], want[2]):
        if w is None:
            assert g is None
            continue
        assert g.dtype == w.dtype, name
        torch.testing.assert_close(g, w, rtol=rtol, atol=atol, msg=lambda m: f"grad {name}: {m}")


SHAPES = [  # (M, E, V, chunk_size)
    (1, 8, 37, None),
    (9, 16, 67, 8),  # chunk = M - 1
    (9, 16, 67, 10),  # chunk = M + 1
    (9, 16, 67, 9),  # chunk = M
    (13, 5, 130, 4),  # E and V not multiples of anything, last chunk of 1
]


@pytest.mark.parametrize("pair", PAIRS, ids=pair_id)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_matches_reference(pair, shape, reduction):
    m, e, v, chunk = shape
    hidden, weight, b, targets = make(m, e, v, device=pair[0], ignore=(2,))
    got = run(pair, hidden, weight, b, targets, reduction=reduction, chunk_size=chunk)
    want = oracle(hidden, weight, b, targets, reduction=reduction)
    assert_close_all(got, want)


@pytest.mark.parametrize("pair", PAIRS, ids=pair_id)
def test_matches_torch_cross_entropy(pair):
    hidden, weight, b, targets = make(11, 12, 97, device=pair[0], ignore=(0, 5))
    loss, _, grads = run(pair, hidden, weight, b, targets, upstream=torch.tensor(1.0), chunk_size=4)
    want = torchF.cross_entropy(torchF.linear(hidden, weight, b), targets, ignore_index=-100)
    want_grads = torch.autograd.grad(want, (hidden, weight, b))
    torch.testing.assert_close(loss, want, rtol=1e-5, atol=1e-6)
    for g, w in zip(grads, want_grads):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("pair", PAIRS, ids=pair_id)
def test_reduction_none_scales_each_row(pair):
    """The per-row upstream gradient must reach grad_weight and grad_bias row by row (Liger's bug)."""
    hidden, weight, b, targets = make(8, 8, 50, device=pair[0])
    upstream = torch.zeros(8, device=pair[0])
    upstream[3] = 2.0
    loss, _, grads = run(pair, hidden, weight, b, targets, upstream=upstream, reduction="none", chunk_size=3)
    row = torchF.cross_entropy(torchF.linear(hidden[3:4], weight, b), targets[3:4]) * 2.0
    want = torch.autograd.grad(row, (hidden, weight, b))
    for g, w in zip(grads, want):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("pair", PAIRS, ids=pair_id)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_half_inputs(pair, dtype):
    hidden, weight, b, targets = make(10, 16, 91, dtype=dtype, device=pair[0], ignore=(4,))
    got = run(pair, hidden, weight, b, targets, chunk_size=4)
    want = oracle(hidden, weight, b, targets)
    assert got[0].dtype == dtype
    assert_close_all(got, want, dtype)


@pytest.mark.parametrize("pair", PAIRS, ids=pair_id)
@pytest.mark.parametrize("temperature", [1.0, 0.6, 2.5, 0.0])
def test_samples_are_the_inverse_cdf_contract(pair, temperature):
    hidden, weight, b, targets = make(12, 8, 203, device=pair[0], scale=1.0)
    with torch.no_grad(), backend.use(pair[1]):
        _, samples = F.generator_head(hidden, weight, b, targets, temperature=temperature, seed=SEED,
                                      offset=OFFSET, chunk_size=5)
    x = torchF.linear(hidden, weight, b).detach()
    u = uniform(12, seed=SEED, offset=OFFSET, device=pair[0])
    assert torch.equal(samples, inverse_cdf_sample(x, u, temperature))
    if temperature == 0.0:
        assert torch.equal(samples, x.argmax(-1))


def _one_hot_head(m, v, e, seed):
    """hidden [m, e], weight [v, e] with weight[i, i % e] = 1 and bias [v], for which every way of computing
    hidden @ weight.T + bias gives the same fp32 logits bit for bit: one product by 1 and one rounded addition
    (logits std 3, as a trained generator's), so samples can be compared id for id."""
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(m, e, generator=g) * 2.0
    weight = torch.zeros(v, e)
    weight[torch.arange(v), torch.arange(v) % e] = 1.0
    bias = torch.randn(v, generator=g) * 5.0 ** 0.5
    logits = hidden[:, torch.arange(v) % e] + bias
    return hidden, weight, bias, logits


# temperatures where float(1.0 / T) and 1.f / float(T) are different floats
HEAD_VS_REPLACE_TEMPERATURES = [0.55, 0.85, 1.05, 1.1]


@pytest.mark.parametrize("name", ["cpp", "reference", "triton"])
@pytest.mark.parametrize("temperature", HEAD_VS_REPLACE_TEMPERATURES)
def test_samples_match_sample_replace(name, temperature):
    """The fused head and sample_replace on the same logits return the same ids, at a BERT vocabulary and
    at temperatures where folding 1/T differently moves samples (an ulp in 1/T moves a few rows in 10^4)."""
    if name not in backend.available("cpu"):
        pytest.skip(f"{name} is not available here")
    v, e = 30522, 64
    # the reference head and sample_replace share one function: a batch shows the plumbing; the interpreter is slow
    batches, rows = {"cpp": (8, 1024), "reference": (1, 256), "triton": (1, 64)}[name]
    for batch in range(batches):
        hidden, weight, bias, logits = _one_hot_head(rows, v, e, seed=batch)
        assert torch.equal(torch.addmm(bias, hidden, weight.t()), logits)
        targets = torch.randint(0, v, (rows,), generator=torch.Generator().manual_seed(batch))
        seed = SEED + batch
        with torch.no_grad(), backend.use(name):
            _, samples = F.generator_head(hidden, weight, bias, targets, temperature=temperature, seed=seed,
                                          offset=OFFSET)
            input_ids = targets[None, :]
            corrupted, _ = F.sample_replace(logits, input_ids, torch.ones_like(input_ids, dtype=torch.bool),
                                            temperature=temperature, seed=seed, offset=OFFSET)
        differ = (corrupted[0] != samples).nonzero().flatten().tolist()
        assert not differ, f"batch {batch}: rows {differ[:10]} ({len(differ)} of {rows}) differ"


@pytest.mark.parametrize("pair", PAIRS, ids=pair_id)
@pytest.mark.parametrize("disallowed", [float("-inf"), -1e4], ids=["-inf", "underflow"])
def test_disallowed_tokens_are_never_sampled(pair, disallowed):
    """-inf logits, and finite ones whose weight underflows to 0, are never drawn: a sample needs w > 0."""
    hidden, weight, b, targets = make(6, 8, 64, device=pair[0])
    b = b.detach().clone()
    b[::2] = disallowed
    b.requires_grad_()
    targets = targets | 1  # odd, allowed ids
    got = run(pair, hidden, weight, b, targets, chunk_size=4)
    want = oracle(hidden, weight, b, targets)
    assert_close_all(got, want)
    assert bool((got[1] % 2 == 1).all())


@pytest.mark.parametrize("pair", PAIRS, ids=pair_id)
def test_empty_and_all_ignored(pair):
    hidden, weight, b, targets = make(0, 8, 33, device=pair[0])
    loss, samples, grads = run(pair, hidden, weight, b, targets, upstream=torch.tensor(1.0))
    assert loss.item() == 0.0 and samples.shape == (0,)
    assert all(bool((g == 0).all()) for g in grads)
    hidden, weight, b, targets = make(5, 8, 33, device=pair[0], ignore=range(5))
    loss, samples, grads = run(pair, hidden, weight, b, targets, upstream=torch.tensor(1.0))
    assert loss.item() == 0.0 and samples.shape == (5,)
    assert all(bool((g == 0).all()) for g in grads)


def test_chunk_size_does_not_change_the_result():
    hidden, weight, b, targets = make(23, 12, 301, ignore=(7,))
    base = run(("cpu", "cpp"), hidden, weight, b, targets, chunk_size=None)
    for chunk in (1, 5, 22, 23, 64):
        assert_close_all(run(("cpu", "cpp"), hidden, weight, b, targets, chunk_size=chunk), base)


def test_deterministic():
    hidden, weight, b, targets = make(40, 16, 517)
    first = run(("cpu", "cpp"), hidden, weight, b, targets, chunk_size=16)
    second = run(("cpu", "cpp"), hidden, weight, b, targets, chunk_size=16)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    for g1, g2 in zip(first[2], second[2]):
        assert torch.equal(g1, g2)


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_gradcheck_float64(reduction):
    hidden, weight, b, targets = make(5, 4, 11, dtype=torch.float64, ignore=(1,))

    def fn(h, w, bias):
        return F.generator_head(h, w, bias, targets, seed=1, reduction=reduction, chunk_size=2)[0]

    assert torch.autograd.gradcheck(fn, (hidden, weight, b))


def _gemm_calls(fn):
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    names = [e.name for e in prof.events()]
    return sum(n in ("aten::mm", "aten::addmm", "aten::addmm_") for n in names)


def test_no_gradient_gemms_without_grad():
    hidden, weight, b, targets = make(12, 8, 40)
    with backend.use("cpp"):
        def call():
            return F.generator_head(hidden, weight, b, targets, seed=1, chunk_size=4)

        with_grad = _gemm_calls(call)
        with torch.no_grad():
            without = _gemm_calls(call)
    assert without == 3  # one logits GEMM per chunk
    assert with_grad == 9  # + grad_hidden and grad_weight per chunk


def test_peak_memory_is_a_chunk_not_the_logits():
    m, e, v, chunk = 1024, 32, 8192, 64
    hidden, weight, b, targets = make(m, e, v)
    full_logits = m * v * 4  # 32 MiB

    def fused():
        with backend.use("cpp"):
            loss, samples = F.generator_head(hidden, weight, b, targets, seed=1, chunk_size=chunk)
        return loss

    def materialised():
        with backend.use("reference"):
            loss, samples = F.generator_head(hidden, weight, b, targets, seed=1)
        return loss

    _, ours = measure_peak_memory(fused)
    _, theirs = measure_peak_memory(materialised)
    bound = full_logits // 4
    assert ours < bound, f"fused head peaked at {ours} bytes, bound {bound}"
    assert theirs > bound, f"the full-logits reference peaked at only {theirs} bytes (the bound is too loose)"


def test_peak_memory_is_one_balanced_chunk_and_the_gradients():
    """1000 rows at chunk_size 512 run as two chunks of 500: the peak is one 500-row fp32 buffer, the
    kernel's grad_bias partials (one row per 16) and the fp32 gradients, with no other temporary."""
    m, e, v, chunk = 1000, 32, 8192, 512
    hidden, weight, b, targets = make(m, e, v)
    rows = op.balanced_rows(m, chunk)
    assert rows == 500

    def step():
        for t in (hidden, weight, b):
            t.grad = None
        with backend.use("cpp"):
            loss, _ = F.generator_head(hidden, weight, b, targets, seed=1, chunk_size=chunk)
        loss.backward()

    step()
    _, peak = measure_peak_memory(step)
    buffer = rows * v * 4
    partials = -(-rows // 16) * v * 4
    gradients = (v * e + m * e + v) * 4
    bound = buffer + partials + gradients + (64 << 10)
    assert peak <= bound, f"peaked at {peak} bytes, bound {bound} (a {chunk}-row buffer is {chunk * v * 4})"


def test_opcheck():
    hidden, weight, b, targets = make(6, 4, 19, ignore=(1,))
    for name in backend.available("cpu"):
        with backend.use(name):
            for reduction in (0, 2):
                args = (hidden, weight, b, targets, 0.7, 3, 1, reduction, -100, 4, True, True, True)
                torch.library.opcheck(op.generator_head_op, args)
            torch.library.opcheck(op.generator_head_op, (hidden, weight.detach(), None, targets, 1.0, 3, 1, 1, -100, 0,
                                                         True, False, False))
            upstream = torch.randn(6)
            torch.library.opcheck(op.generator_head_backward_op,
                                  (upstream, hidden.detach(), weight.detach(), b.detach(), targets, -100, 4,
                                   True, True, True))


def test_torch_compile_fullgraph():
    """Both the forward-gradient path ("mean") and the recomputing backward ("none") in one graph."""
    hidden, weight, b, targets = make(9, 8, 45, ignore=(3,))

    def step(h, w, bias, t):
        mean, samples = F.generator_head(h, w, bias, t, seed=5, offset=1, chunk_size=4)
        rows, _ = F.generator_head(h, w, bias, t, seed=5, offset=1, reduction="none", chunk_size=4)
        return mean + (rows * torch.arange(9.0)).sum(), samples

    torch._dynamo.reset()
    compiled = torch.compile(step, fullgraph=True)
    loss, samples = compiled(hidden, weight, b, targets)
    grads = torch.autograd.grad(loss, (hidden, weight, b))
    want_loss, want_samples = step(hidden, weight, b, targets)
    want_grads = torch.autograd.grad(want_loss, (hidden, weight, b))
    torch.testing.assert_close(loss, want_loss)
    assert torch.equal(samples, want_samples)
    for g, w in zip(grads, want_grads):
        torch.testing.assert_close(g, w)


def test_module():
    hidden, weight, _, targets = make(7, 8, 29, bias=False)
    head = nn.GeneratorHead(29, chunk_size=3)
    loss, samples = head(hidden, weight, targets, seed=2)
    want_loss, want_samples = F.generator_head(hidden, weight, head.bias, targets, seed=2)
    torch.testing.assert_close(loss, want_loss)
    assert torch.equal(samples, want_samples)
    loss.backward()
    assert head.bias.grad is not None and weight.grad is not None
    assert nn.GeneratorHead(29, bias=False).bias is None


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(targets=torch.tensor([0, 5, 29])), ValueError, "targets must be in"),
    (dict(targets=torch.tensor([0, -1, 2])), ValueError, "targets must be in"),
    (dict(targets=torch.tensor([0, 1])), ValueError, "one id per row"),
    (dict(targets=torch.tensor([0.0, 1.0, 2.0])), TypeError, "targets must have dtype"),
    (dict(weight=torch.randn(29, 5)), ValueError, "embedding size"),
    (dict(weight=torch.randn(29, 8, dtype=torch.float64)), TypeError, "weight must have hidden's dtype"),
    (dict(weight=torch.randn(0, 8)), ValueError, "at least one row"),
    (dict(hidden=torch.randn(3, 8, 1)), ValueError, "hidden must be 2-D"),
    (dict(bias=torch.randn(28)), ValueError, "bias must have V"),
    (dict(temperature=-1.0), ValueError, "temperature"),
    (dict(temperature=float("nan")), ValueError, "temperature"),
    (dict(reduction="avg"), ValueError, "reduction"),
    (dict(chunk_size=0), ValueError, "chunk_size"),
    (dict(seed=-1), ValueError, "seed"),
    (dict(seed=1.5), TypeError, "seed"),
    (dict(ignore_index=1.0), TypeError, "ignore_index"),
])
def test_bad_input(kwargs, error, match):
    args = dict(hidden=torch.randn(3, 8), weight=torch.randn(29, 8), bias=torch.randn(29),
                targets=torch.tensor([0, 1, 2]), seed=1)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        F.generator_head(args.pop("hidden"), args.pop("weight"), args.pop("bias"), args.pop("targets"), **args)


def test_kernel_rejects_out_of_range_targets():
    """The C++ row kernel checks targets too (the public check is skipped under torch.compile)."""
    hidden, weight, b, targets = make(3, 4, 10, grad=False)
    targets[1] = 10
    with pytest.raises(RuntimeError, match="out of range"):
        op.generator_head_op(hidden, weight, b, targets, 1.0, 1, 0, 2, -100, 0, False, False, False)


def _raw_rows_args(device, rows=20, v=50):
    """Arguments of electra_fast_C::generator_head_rows for one chunk (write_grad, sample, grad_bias)."""
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(rows, v, generator=g).to(device)
    targets = torch.randint(0, v, (rows,), generator=g).to(device)
    scale = torch.ones(1, device=device)
    loss = torch.empty(rows, device=device)
    samples = torch.empty(rows, dtype=torch.int64, device=device)
    grad_bias = torch.zeros(v, device=device)
    return [logits, targets, scale, loss, samples, grad_bias, 0, 1.0, 1, 0, -100, True, True]


def test_cpu_row_kernel_checks_targets_before_writing():
    """An out-of-range target in the chunk's last row fails the call with the logits still untouched."""
    args = _raw_rows_args("cpu")
    args[1][-1] = 50
    before = args[0].clone()
    with pytest.raises(RuntimeError, match=r"targets\[19\] = 50 is out of range"):
        torch.ops.electra_fast_C.generator_head_rows(*args)
    assert torch.equal(args[0], before)


@pytest.mark.gpu
def test_cuda_row_kernel_checks_every_argument_before_writing():
    """A grad_bias on another device or of the wrong size fails the call before the in-place kernel runs."""
    if "cuda" not in backend.available("cuda"):
        pytest.skip("the CUDA kernels are not built")
    for index, bad, match in [(5, torch.zeros(50), "grad_bias must be on cuda"),
                              (5, torch.zeros(49, device="cuda"), "grad_bias must have 50 elements"),
                              (1, torch.zeros(20, dtype=torch.int64), "targets must be on cuda")]:
        args = _raw_rows_args("cuda")
        args[index] = bad
        before = args[0].clone()
        with pytest.raises(RuntimeError, match=match):
            torch.ops.electra_fast_C.generator_head_rows(*args)
        assert torch.equal(args[0], before)


def test_auto_chunk_size():
    assert op.auto_chunk_size(30522, 128) % 64 == 0
    assert op.auto_chunk_size(30522, 768) >= 2 * 768
    assert op.auto_chunk_size(10, 4) >= op.MIN_CHUNK_ROWS
    for v in (1000, 30522, 50265, 128000, 250002):
        for e in (64, 128, 256, 768, 1024, 4096):
            rows = op.auto_chunk_size(v, e)
            assert rows % 64 == 0 and rows >= op.MIN_CHUNK_ROWS
            if rows > op.MIN_CHUNK_ROWS:  # the logits buffer is bounded
                assert rows * v * 4 <= op.MAX_CHUNK_BYTES, (v, e, rows)
            # as large as the bound allows up to the larger of CHUNK_BYTES and 2E rows
            want = min(max(op.CHUNK_BYTES // (4 * v), 2 * e), op.MAX_CHUNK_BYTES // (4 * v))
            assert rows > want - 64 or rows == op.MIN_CHUNK_ROWS, (v, e, rows)


@pytest.mark.parametrize("m, chunk, rows", [(2458, 512, 492), (614, 512, 307), (1024, 512, 512), (12, 4, 4),
                                            (13, 4, 4), (3, 8, 3), (0, 8, 1)])
def test_balanced_rows(m, chunk, rows):
    assert op.balanced_rows(m, chunk) == rows
    if m:
        chunks = -(-m // rows)
        assert rows <= chunk and chunks == -(-m // chunk)  # as few chunks as chunk_size allows
        assert m - (chunks - 1) * rows >= rows - chunks  # the last one is not ragged


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["cuda", "triton"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_gpu_matches_reference(name, reduction):
    if name not in backend.available("cuda"):
        pytest.skip(f"{name} is not available on CUDA here")
    hidden, weight, b, targets = make(300, 64, 30522, device="cuda", ignore=(5, 77))
    got = run(("cuda", name), hidden, weight, b, targets, reduction=reduction, chunk_size=128)
    want = oracle(hidden, weight, b, targets, reduction=reduction)
    # exp differs by an ulp between CUDA and the reference: allow a rare boundary sample to move
    assert (got[1] != want[1]).float().mean().item() < 0.01
    torch.testing.assert_close(got[0], want[0], rtol=1e-4, atol=1e-5)
    for g, w in zip(got[2], want[2]):
        torch.testing.assert_close(g, w, rtol=1e-3, atol=1e-5)


def _reference_samples_in_chunks(logits, u, temperature, rows=2048):
    """inverse_cdf_sample on the logits' device, a chunk of rows at a time (its fp64 sums of [20000, 30522]
    logits at once would need ~15 GB)."""
    return torch.cat([inverse_cdf_sample(logits[i:i + rows], u[i:i + rows], temperature)
                      for i in range(0, logits.shape[0], rows)])


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["cuda", "triton"])
def test_gpu_samples_equal_reference_and_sample_replace_at_scale(name):
    """M = 20,000 rows of a BERT vocabulary at T = 0.85, where 1.f / float(T) and float(1.0 / T) are different
    floats (a fold of 1/T of its own moves about one row in 10^4): the fused head's ids equal sample_replace's
    on the same logits, id for id, and the reference's computed on the same GPU (the same expf). Triton's
    exp may differ from torch's by an ulp, so there a differing row must still be a consistent draw."""
    if name not in backend.available("cuda"):
        pytest.skip(f"{name} is not available on CUDA here")
    m, v, e, temperature = 20000, 30522, 64, 0.85
    hidden, weight, bias, logits = (t.cuda() for t in _one_hot_head(m, v, e, seed=0))
    assert torch.equal(torch.addmm(bias, hidden, weight.t()), logits)  # cuBLAS gives these logits exactly
    targets = torch.randint(0, v, (m,), generator=torch.Generator().manual_seed(2)).cuda()
    with torch.no_grad(), backend.use(name):
        _, samples = F.generator_head(hidden, weight, bias, targets, temperature=temperature, seed=SEED,
                                      offset=OFFSET)
        every_row = torch.ones(1, m, dtype=torch.bool, device="cuda")
        corrupted, _ = F.sample_replace(logits, targets[None, :], every_row, temperature=temperature, seed=SEED,
                                        offset=OFFSET)
    u = uniform(m, seed=SEED, offset=OFFSET, device="cuda")
    reference = _reference_samples_in_chunks(logits, u, temperature)
    differ = (corrupted[0] != samples).nonzero().flatten().tolist()
    assert not differ, f"head vs sample_replace: rows {differ[:10]} ({len(differ)} of {m}) differ"
    off = (samples != reference).nonzero().flatten()
    if name == "cuda":
        assert off.numel() == 0, f"head vs reference: rows {off[:10].tolist()} ({off.numel()} of {m}) differ"
    else:
        consistent = consistent_draws(samples[off], logits[off], u[off], temperature)
        assert bool(consistent.all()), f"head vs reference: rows {off[~consistent][:10].tolist()} are not draws"


TINY_TEMPERATURES = [1e-3, 1e-6, 1e-20, 1e-30, 1e-37, 3e-39, 1e-40, 1e-45, 5e-324]


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["cuda", "triton"])
def test_gpu_no_id_outside_the_vocabulary_at_any_accepted_temperature(name):
    """Tiny temperatures overflow 1/T in float32 (below about 3e-39): at a temperature the ops accept, the
    fused head and sample_replace give ids in [0, V) on the GPU; one they cannot sample at is rejected by the
    temperature check (a ValueError that says so)."""
    if name not in backend.available("cuda"):
        pytest.skip(f"{name} is not available on CUDA here")
    v = 1000
    hidden, weight, bias, targets = make(64, 16, v, device="cuda", scale=1.0, grad=False)
    logits = torchF.linear(hidden, weight, bias)
    input_ids, is_masked = targets[None, :], torch.ones(1, 64, dtype=torch.bool, device="cuda")
    for temperature in TINY_TEMPERATURES:
        calls = {"generator_head": lambda: F.generator_head(hidden, weight, bias, targets, temperature=temperature,
                                                            seed=SEED)[1],
                 "sample_replace": lambda: F.sample_replace(logits, input_ids, is_masked, temperature=temperature,
                                                            seed=SEED)[0]}
        for op_name, call in calls.items():
            with backend.use(name):
                try:
                    ids = call()
                except ValueError as exc:
                    assert "temperature" in str(exc), (op_name, temperature, exc)
                    continue
            assert bool(((ids >= 0) & (ids < v)).all()), (op_name, temperature, ids.min().item())
