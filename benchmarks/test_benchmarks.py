"""The op benchmarks through pytest-benchmark: `pytest benchmarks/ --benchmark-only`.

Each op at its headline benchmark shape, ours (the public functional API, best backend here) against the
eager baseline the op replaces, in one pytest-benchmark group per op so the comparison table puts them
side by side. The full figures (torch.compile, floors, peak memory, fp32/bf16) come from the bench_<op>.py
scripts and run_all.py.
"""
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("pytest_benchmark")
EF = pytest.importorskip("electra_fast.functional")

IMPLS = ("ours", "eager")


def run(benchmark, fn, rounds=5):
    benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=1)


def dense_gumbel(logits):
    u = torch.rand_like(logits, dtype=torch.float32)
    return (logits.float() - torch.log(-torch.log(u + 1e-9) + 1e-9)).argmax(-1)


@pytest.mark.parametrize("impl", IMPLS)
def test_rtd_loss_fwd_bwd_128x512(benchmark, impl):
    benchmark.group = "rtd_loss 128x512 fwd+bwd"
    x = torch.randn(128, 512, requires_grad=True)
    y = torch.rand(128, 512) < 0.15
    m = torch.rand(128, 512) < 0.9

    def ours():
        EF.rtd_loss(x, y, m).backward()

    def eager():
        per = F.binary_cross_entropy_with_logits(x, y.float(), reduction="none") * m
        (per.sum() / m.sum().clamp(min=1)).backward()

    run(benchmark, ours if impl == "ours" else eager, rounds=20)


@pytest.mark.parametrize("impl", IMPLS)
def test_sample_replace_small(benchmark, impl):
    benchmark.group = "sample_replace M=2458 V=30522"
    v, b, t, m = 30522, 128, 128, 2458
    input_ids = torch.randint(5, v, (b, t))
    is_masked = torch.zeros(b * t, dtype=torch.bool)
    is_masked[torch.randperm(b * t)[:m]] = True
    is_masked = is_masked.view(b, t)
    logits = torch.randn(m, v)

    def ours():
        EF.sample_replace(logits, input_ids, is_masked, seed=0)

    def eager():
        corrupted = input_ids.masked_scatter(is_masked, dense_gumbel(logits))
        return corrupted, corrupted != input_ids

    run(benchmark, ours if impl == "ours" else eager, rounds=3)


@pytest.mark.parametrize("impl", IMPLS)
def test_generator_head_small(benchmark, impl):
    benchmark.group = "generator_head M=2458 E=128 V=30522 fwd+bwd+sample"
    m, e, v = 2458, 128, 30522
    hidden = torch.randn(m, e, requires_grad=True)
    weight = (torch.randn(v, e) * 0.02).requires_grad_()
    bias = torch.zeros(v, requires_grad=True)
    targets = torch.randint(0, v, (m,))

    def ours():
        loss, _ = EF.generator_head(hidden, weight, bias, targets, seed=0)
        loss.backward()

    def eager():
        logits = F.linear(hidden, weight, bias)
        F.cross_entropy(logits, targets).backward()
        with torch.no_grad():
            dense_gumbel(logits.detach())

    run(benchmark, ours if impl == "ours" else eager, rounds=3)


@pytest.mark.parametrize("impl", IMPLS)
def test_early_exit_gather_scatter_128x128x256(benchmark, impl):
    benchmark.group = "early_exit gather+scatter 128x128x256 50% active"
    hidden = torch.randn(128, 128, 256)
    active = torch.rand(128, 128) < 0.5

    def ours():
        packed = EF.gather_tokens(hidden, active)
        return EF.scatter_tokens(packed.tokens, packed.index, hidden)

    def eager():
        tokens = hidden[active]
        out = hidden.clone()
        out[active] = tokens
        return out

    run(benchmark, ours if impl == "ours" else eager, rounds=20)


@pytest.mark.parametrize("impl", IMPLS)
def test_dropout_fwd_bwd_8x4x128x128(benchmark, impl):
    benchmark.group = "dropout 8x4x128x128 fwd+bwd"
    x = torch.randn(8, 4, 128, 128, requires_grad=True)
    up = torch.ones_like(x)
    seeds = iter(range(1, 1 << 40))

    def ours():
        EF.dropout(x, 0.1, seed=next(seeds)).backward(up)

    def eager():
        F.dropout(x, 0.1, training=True).backward(up)

    run(benchmark, ours if impl == "ours" else eager)
