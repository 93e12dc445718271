"""The inputs `electra-fast selftest` runs every op on, and what each must return.

A Case builds its inputs on CPU from a fixed seed, moves them to the device it is given, calls one public
op (electra_fast.functional) on whatever backend is selected, and returns its outputs by name as `Out`s:
values, gradients (for a fixed upstream gradient) and ids. The selftest runs each case on the reference
backend on CPU (the oracle) and on every backend under test, and compares the two output by output.

The shapes are the edges where kernels go wrong: sizes that are not a multiple of a block or tile, rows
longer than one tile (the CUDA scans cover 2048-4096 elements a tile, the Triton ones 1024), a BERT
vocabulary (V = 30522), zero-size inputs, int32 ids, and float16/bfloat16. Cases marked
`interpreted=False` are too slow for the Triton CPU interpreter (TRITON_INTERPRET=1), which runs only
the others.

Sampled ids are compared by the sampling contract rather than id for id: exp differs by an ulp or two
between libm, Sleef, CUDA and Triton, which may move a draw whose u * Z lies that close to a boundary
of the cumulative sum (see consistent_draws). Every other id, mask and index must match bit for bit.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence

import torch

from . import functional as F
from . import samplers
from .reference import early_exit as reference_early_exit
from .reference import random as reference_random

SEED, OFFSET = 20240611, 3
BERT_VOCAB = 30522
CLS, SEP, MASK = 1, 2, 3


class Out(NamedTuple):
    """One output of a case. rtol = atol = 0: it must equal the oracle's bit for bit; else within
    |got - want| <= atol + rtol |want|. valid (bool, value's shape): positions where a value that differs
    from the oracle's is still correct (sampled ids that are consistent draws)."""

    value: torch.Tensor
    rtol: float = 0.0
    atol: float = 0.0
    valid: Optional[torch.Tensor] = None


@dataclass(frozen=True)
class Case:
    """One call of an op: `run(device)` -> its outputs by name, on the selected backend."""

    op: str
    label: str
    run: Callable[[torch.device], Dict[str, Out]]
    interpreted: bool = True


def tolerance(dtype: torch.dtype, loose: bool = False) -> tuple:
    """(rtol, atol) against the fp32-accumulating reference; `loose` for GEMM outputs (summation order)."""
    if dtype == torch.float16:
        return 2e-3, 2e-3
    if dtype == torch.bfloat16:
        return 1.6e-2, 1e-2
    return (1e-4, 1e-5) if loose else (1e-5, 1e-6)


def _generator(*key: int) -> torch.Generator:
    return torch.Generator().manual_seed(hash(key) & 0x7FFFFFFF)  # a tuple of ints hashes alike in every process


def _grads(output: torch.Tensor, inputs: Sequence[torch.Tensor], g: torch.Generator) -> List[torch.Tensor]:
    """Gradients of (output * upstream).sum() for a fixed random upstream (zeros for unused inputs)."""
    upstream = torch.randn(output.shape, generator=g).to(output.device, output.dtype)
    grads = torch.autograd.grad(output, inputs, upstream, allow_unused=True)
    return [torch.zeros_like(x) if gr is None else gr for x, gr in zip(inputs, grads)]


def consistent_draws(ids: torch.Tensor, logits: torch.Tensor, u: torch.Tensor, temperature: float,
                     skip: Optional[torch.Tensor] = None) -> torch.Tensor:
    """[M] bool: ids[m] is an inverse-CDF draw of row m of logits [M, V] (sampling.h's contract) up to how
    far exp may differ between implementations. With a = (x - max) * float32(1/T), w = exp(a) and S the
    fp64 prefix sums of w, id k is consistent when w_k > 0 and S_{k-1} - e <= u * S_{V-1} <= S_k + e,
    e = 2 sum_i w_i (2^-22 + 2^-23 |a_i|): twice two ulps of exp, plus the ulp of a that an exp2-based
    GPU exp loses. `skip` [M]: the id excluded from each row. T = 0: the first maximum."""
    x = logits.detach().float().cpu()
    ids = ids.detach().cpu().to(torch.int64)
    rows, vocab = x.shape
    if rows == 0:
        return torch.ones(0, dtype=torch.bool)
    if skip is not None:
        x = x.clone()
        x[torch.arange(rows), skip.cpu()] = float("-inf")
    if temperature == 0:
        return ids == x.argmax(1)
    a = (x - x.max(1, keepdim=True).values) * torch.tensor(1.0 / temperature, dtype=torch.float32)
    w = torch.exp(a).double()
    slack = torch.where(w > 0, w * (2.0**-22 + 2.0**-23 * a.double().abs()), torch.zeros_like(w))
    e = 2 * slack.sum(1)
    cdf = w.cumsum(1)
    target = u.double().cpu() * cdf[:, -1]
    inside = (ids >= 0) & (ids < vocab)
    k = ids.clamp(0, vocab - 1)[:, None]
    upper, wk = cdf.gather(1, k).squeeze(1), w.gather(1, k).squeeze(1)
    return inside & (wk > 0) & (upper - wk - e <= target) & (target <= upper + e)


# ------------------------------------------------------------------------------------------ rtd_loss
def _rtd_inputs(b, t, dtype, device, seed):
    g = _generator(seed, b, t)
    logits = (torch.randn(b, t, generator=g) * 3).to(device, dtype).requires_grad_()
    labels = (torch.rand(b, t, generator=g) < 0.15).to(device)
    lengths = torch.randint(0, t + 1, (b,), generator=g)
    mask = (torch.arange(t)[None, :] < lengths[:, None]).to(device)
    return g, logits, labels, mask


def _rtd_loss_case(b, t, dtype, reduction, *, weight=False):
    def run(device):
        g, logits, labels, mask = _rtd_inputs(b, t, dtype, device, 1)
        w = torch.rand(b, t, generator=g).to(device, dtype) if weight else None
        loss = F.rtd_loss(logits, labels, mask, weight=w, reduction=reduction)
        (grad,) = _grads(loss, [logits], g)
        tol = tolerance(dtype)
        return {"loss": Out(loss, *tol), "grad": Out(grad, *tol)}

    extra = ", weight" if weight else ""
    return Case("rtd_loss", f"{_dt(dtype)} [{b}, {t}] {reduction}{extra}", run)


def _rtd_metrics_case(b, t, dtype):
    def run(device):
        _, logits, labels, mask = _rtd_inputs(b, t, dtype, device, 2)
        metrics = F.rtd_metrics(logits, labels, mask)
        return {name: Out(value) for name, value in metrics._asdict().items()}

    return Case("rtd_metrics", f"{_dt(dtype)} [{b}, {t}]", run)


def rtd_cases() -> List[Case]:
    f32, f16, bf16 = torch.float32, torch.float16, torch.bfloat16
    return [
        _rtd_loss_case(3, 1037, f32, "mean"),  # not a multiple of a 1024-token tile
        _rtd_loss_case(8, 700, f32, "sum", weight=True),  # several tiles
        _rtd_loss_case(4, 33, f32, "none"),
        _rtd_loss_case(5, 130, bf16, "mean"),
        _rtd_loss_case(5, 130, f16, "none", weight=True),
        _rtd_loss_case(0, 16, f32, "mean"),
        _rtd_loss_case(2, 0, f32, "sum"),
        _rtd_metrics_case(3, 1037, f32),
        _rtd_metrics_case(5, 130, bf16),
        _rtd_metrics_case(0, 16, f32),
    ]


# --------------------------------------------------------------------------------------- mask_tokens
def _mask_case(lengths, t, id_dtype=torch.int64, mask_prob=0.15, interpreted=True):
    b = len(lengths)

    def run(device):
        g = _generator(3, b, t)
        ids = torch.randint(4, 1000, (b, t), generator=g)
        if t:
            ids[:, 0] = CLS
            ids[torch.arange(b), (torch.tensor(lengths, dtype=torch.int64) - 1).clamp(min=0)] = SEP
        mask = torch.arange(t)[None, :] < torch.tensor(lengths, dtype=torch.int64).reshape(b, 1)
        masked, is_masked = F.mask_tokens(ids.to(device, id_dtype), mask.to(device), mask_prob=mask_prob,
                                          mask_token_id=MASK, special_token_ids=(CLS, SEP), seed=SEED,
                                          offset=OFFSET)
        return {"masked_ids": Out(masked), "is_masked": Out(is_masked)}

    shown = lengths if b <= 4 else f"{b} rows"
    return Case("mask_tokens", f"{_dt(id_dtype)} [{b}, {t}] lengths {shown} p={mask_prob}", run, interpreted)


def mask_cases() -> List[Case]:
    return [
        # real-token counts where n * 0.15 rounds half to even (1.5, 7.5, 13.5, 19.5)
        _mask_case([10, 50, 90, 130], 130),
        _mask_case([37, 1, 0, 20, 37], 37, torch.int32),
        _mask_case([1500, 1203], 1500, mask_prob=0.5),
        _mask_case([5000, 4999, 2600], 5000, torch.int32, interpreted=False),  # rows of many blocks
        _mask_case([12, 12], 12, mask_prob=1.0),  # every candidate masked
        _mask_case([], 8),
        _mask_case([0, 0, 0], 0),
    ]


# ------------------------------------------------------------------------------------ sample_replace
def _sample_replace_case(b, t, vocab, dtype, temperature, *, disallow=False, id_dtype=torch.int64,
                         forbidden=False, interpreted=True, fraction=0.3):
    """forbidden: a third of the logits are -inf, and every row's original token among the rest."""

    def run(device):
        g = _generator(4, b, t, vocab)
        ids = torch.randint(0, vocab, (b, t), generator=g)
        is_masked = torch.rand(b, t, generator=g) < fraction
        rows = int(is_masked.sum())
        logits = torch.randn(rows, vocab, generator=g) * 3
        if forbidden:
            logits[torch.rand(rows, vocab, generator=g) < 1 / 3] = float("-inf")
            logits[torch.arange(rows), ids[is_masked]] = 0.0
        logits = logits.to(dtype)
        corrupted, replaced = F.sample_replace(logits.to(device), ids.to(device, id_dtype), is_masked.to(device),
                                               temperature=temperature, seed=SEED, offset=OFFSET,
                                               disallow_original=disallow)
        u = reference_random.uniform(rows, seed=SEED, offset=OFFSET)
        skip = ids[is_masked] if disallow else None
        valid = torch.zeros(b, t, dtype=torch.bool)
        valid[is_masked] = consistent_draws(corrupted.cpu()[is_masked], logits, u, temperature, skip)
        wrong_flag = replaced.cpu() ^ (corrupted.cpu() != ids.to(id_dtype))
        return {"ids": Out(corrupted, valid=valid.to(device)), "is_replaced wrong": Out(wrong_flag)}

    flags = "".join([", disallow" if disallow else "", ", -inf" if forbidden else ""])
    return Case("sample_replace", f"{_dt(dtype)} V={vocab} [{b}, {t}] T={temperature}{flags}", run, interpreted)


def sample_cases() -> List[Case]:
    f32, f16, bf16 = torch.float32, torch.float16, torch.bfloat16
    return [
        _sample_replace_case(2, 40, BERT_VOCAB, f32, 1.0),  # rows of many scan tiles
        _sample_replace_case(4, 40, BERT_VOCAB, f32, 0.85, disallow=True, forbidden=True, interpreted=False),
        _sample_replace_case(8, 100, BERT_VOCAB, bf16, 1.0, id_dtype=torch.int32, interpreted=False),
        _sample_replace_case(3, 37, 1000, f32, 0.85, disallow=True),
        _sample_replace_case(3, 37, 1000, f16, 2.0, forbidden=True),
        _sample_replace_case(3, 37, 1000, bf16, 0.0, id_dtype=torch.int32),
        _sample_replace_case(3, 37, 5, f32, 1.0, disallow=True),
        _sample_replace_case(2, 9, 1000, f32, 1.0, fraction=0.0),  # nothing masked: logits [0, V]
    ]


# ------------------------------------------------------------------------------- statistical_replace
def _statistical_case(kind, b, t, vocab, interpreted=True):
    def run(device):
        g = _generator(5, b, t, vocab)
        ids = torch.randint(4, vocab, (b, t), generator=g)
        lengths = torch.randint(0, t + 1, (b,), generator=g)
        mask = torch.arange(t)[None, :] < lengths[:, None]
        specials = (0, CLS, SEP, MASK)
        if kind == "uniform":
            sampler = samplers.UniformSampler(vocab, exclude_ids=specials)
        elif kind == "unigram":
            counts = torch.randint(0, 50, (vocab,), generator=g).double() ** 2
            sampler = samplers.UnigramSampler(counts, exclude_ids=specials)
        else:
            sampler = samplers.ClusterSampler.from_frequencies(torch.rand(vocab, generator=g), num_clusters=20,
                                                               exclude_ids=specials)
        sampler.to(device)
        corrupted, replaced, masked = F.statistical_replace(ids.to(device), mask.to(device), sampler,
                                                            special_token_ids=(CLS, SEP), seed=SEED, offset=OFFSET)
        return {"ids": Out(corrupted), "is_replaced": Out(replaced), "is_masked": Out(masked)}

    return Case("statistical_replace", f"{kind} V={vocab} [{b}, {t}]", run, interpreted)


def statistical_cases() -> List[Case]:
    return [
        _statistical_case("uniform", 6, 77, 1000),
        _statistical_case("unigram", 6, 77, BERT_VOCAB),
        _statistical_case("cluster", 6, 77, 500),
        _statistical_case("uniform", 0, 8, 100),
    ]


# ------------------------------------------------------------------------------------ generator_head
def _head_case(m, e, vocab, dtype, reduction, *, chunk=None, temperature=1.0, one_hot=False, ignore=(),
               interpreted=True):
    """one_hot: weight[i, i % e] = 1, so every backend computes the same fp32 logits bit for bit and the
    samples can be checked against the contract; otherwise the logits differ in summation order and only
    the loss and the gradients are compared."""

    def run(device):
        g = _generator(6, m, e, vocab)
        hidden = torch.randn(m, e, generator=g) * (2.0 if one_hot else 0.5)
        if one_hot:
            weight = torch.zeros(vocab, e)
            weight[torch.arange(vocab), torch.arange(vocab) % e] = 1.0
        else:
            weight = torch.randn(vocab, e, generator=g) * 0.5
        bias = torch.randn(vocab, generator=g) * (5.0**0.5 if one_hot else 0.5)
        targets = torch.randint(0, vocab, (m,), generator=g)
        for i in ignore:
            targets[i] = -100
        leaves = [x.to(device, dtype).requires_grad_() for x in (hidden, weight, bias)]
        loss, samples = F.generator_head(*leaves, targets.to(device), temperature=temperature, seed=SEED,
                                         offset=OFFSET, reduction=reduction, chunk_size=chunk)
        grads = _grads(loss, leaves, g)
        tol = tolerance(dtype, loose=True)
        out = {"loss": Out(loss, *tol)}
        out.update({f"grad {name}": Out(gr, *tol) for name, gr in zip(("hidden", "weight", "bias"), grads)})
        if one_hot:
            logits = leaves[0].detach().float().cpu()[:, torch.arange(vocab) % e] + leaves[2].detach().float().cpu()
            u = reference_random.uniform(m, seed=SEED, offset=OFFSET)
            out["samples"] = Out(samples, valid=consistent_draws(samples, logits, u, temperature).to(device))
        return out

    flags = "".join([", one-hot" if one_hot else "", f", chunk {chunk}" if chunk else "",
                     f", {len(ignore)} ignored" if ignore else ""])
    return Case("generator_head", f"{_dt(dtype)} [{m}, {e}] V={vocab} {reduction} T={temperature}{flags}", run,
                interpreted)


def head_cases() -> List[Case]:
    f32, f16, bf16 = torch.float32, torch.float16, torch.bfloat16
    return [
        _head_case(37, 24, 1000, f32, "mean", chunk=16, ignore=(2, 30)),  # a last chunk of 5 rows
        _head_case(13, 8, 130, f32, "none", chunk=4),  # the recomputing backward
        _head_case(64, 64, BERT_VOCAB, f32, "sum", temperature=0.85, one_hot=True),
        _head_case(48, 64, BERT_VOCAB, f32, "mean", temperature=0.0, one_hot=True, interpreted=False),
        _head_case(10, 16, 91, bf16, "mean", chunk=4, ignore=(4,)),
        _head_case(10, 16, 91, f16, "sum", temperature=1.5, one_hot=True),
        _head_case(0, 8, 33, f32, "mean"),
        _head_case(5, 8, 33, f32, "mean", ignore=range(5)),
    ]


# -------------------------------------------------------------------------------------- early exit
def _exit_mask_case(b, t, dtype, threshold):
    def run(device):
        g = _generator(7, b, t)
        logits = torch.randn(b, t, generator=g) * 3
        if logits.numel() >= 3:  # the float32 values around logit(threshold), where the decision flips
            bound = torch.tensor(reference_early_exit.threshold_logit(threshold), dtype=torch.float64).float()
            logits.view(-1)[:3] = torch.stack([torch.nextafter(bound, torch.tensor(0.0)), bound,
                                               torch.nextafter(bound, torch.tensor(float("inf")))])
        active = torch.rand(b, t, generator=g) < 0.8
        ids = torch.randint(0, 50, (b, t), generator=g)
        still = F.exit_mask(logits.to(device, dtype), active.to(device), threshold=threshold,
                            keep_ids=torch.tensor([CLS, SEP], device=device), input_ids=ids.to(device))
        return {"still_active": Out(still)}

    return Case("exit_mask", f"{_dt(dtype)} [{b}, {t}] threshold {threshold}", run)


def exit_cases() -> List[Case]:
    f32, f16, bf16 = torch.float32, torch.float16, torch.bfloat16
    return [_exit_mask_case(3, 1037, f32, 0.9), _exit_mask_case(4, 33, bf16, 0.75),
            _exit_mask_case(4, 33, f16, 1.0), _exit_mask_case(0, 5, f32, 0.9)]


def _active(b, t, g, pattern):
    if pattern == "all":
        return torch.ones(b, t, dtype=torch.bool)
    if pattern == "none":
        return torch.zeros(b, t, dtype=torch.bool)
    return torch.rand(b, t, generator=g) < 0.6


def _gather_scatter_case(b, t, h, dtype, pattern="random", interpreted=True):
    """gather_tokens -> pad_packed -> unpad -> scatter_tokens, and the gradients back through all of them:
    every output is a copy of input rows, so everything must match bit for bit."""

    def run(device):
        g = _generator(8, b, t, h)
        hidden = torch.randn(b, t, h, generator=g).to(device, dtype).requires_grad_()
        base = torch.randn(b, t, h, generator=g).to(device, dtype).requires_grad_()
        packed = F.gather_tokens(hidden, _active(b, t, g, pattern).to(device))
        padded, pad_mask = F.pad_packed(packed, b)
        out = F.scatter_tokens(F.unpad(padded, packed), packed.index, base)
        grad_hidden, grad_base = _grads(out, [hidden, base], g)
        return {"tokens": Out(packed.tokens), "index": Out(packed.index), "cu_seqlens": Out(packed.cu_seqlens),
                "max_seqlen": Out(torch.tensor(packed.max_seqlen)), "padded": Out(padded),
                "pad_mask": Out(pad_mask), "scattered": Out(out), "grad hidden": Out(grad_hidden),
                "grad base": Out(grad_base)}

    return Case("gather/scatter_tokens", f"{_dt(dtype)} [{b}, {t}, {h}] {pattern} active", run, interpreted)


def _compact_case(b, t, pattern, interpreted=True):
    def run(device):
        from .ops.early_exit import compact_op  # the raw compaction under gather_tokens

        index, cu_seqlens, max_seqlen = compact_op(_active(b, t, _generator(9, b, t), pattern).to(device))
        return {"index": Out(index), "cu_seqlens": Out(cu_seqlens), "max_seqlen": Out(torch.tensor(max_seqlen))}

    return Case("compact", f"[{b}, {t}] {pattern} active", run, interpreted)


def _select_case(b, t, h, k, dtype):
    def run(device):
        g = _generator(10, b, t, h)
        hidden = torch.randn(b, t, h, generator=g).to(device, dtype).requires_grad_()
        logits = torch.randn(b, t, generator=g).to(device, dtype)
        active = torch.rand(b, t, generator=g) < 0.7
        ids = torch.randint(4, 100, (b, t), generator=g)
        ids[:, 0] = CLS
        sel = F.select_tokens(hidden, logits, k, active=active.to(device),
                              keep_ids=torch.tensor([CLS, SEP], device=device), input_ids=ids.to(device))
        (grad,) = _grads(sel.tokens, [hidden], g)
        return {"tokens": Out(sel.tokens), "index": Out(sel.index), "grad hidden": Out(grad)}

    return Case("select_tokens", f"{_dt(dtype)} [{b}, {t}, {h}] k={k}", run)


def early_exit_cases() -> List[Case]:
    f32, bf16 = torch.float32, torch.bfloat16
    cases = [
        _gather_scatter_case(3, 37, 24, f32),
        _gather_scatter_case(2, 5000, 8, f32, interpreted=False),  # rows longer than one scan tile
        _gather_scatter_case(2, 1500, 8, bf16),
        _gather_scatter_case(4, 17, 130, bf16, "all"),
        _gather_scatter_case(3, 9, 5, f32, "none"),
        _gather_scatter_case(0, 4, 8, f32),
        _compact_case(5, 37, "random"),
        _compact_case(2, 9000, "random", interpreted=False),
        _compact_case(3, 2100, "all"),
        _compact_case(3, 9, "none"),
        _compact_case(0, 4, "random"),
        _compact_case(3, 0, "random"),
    ]
    if hasattr(F, "select_tokens"):
        cases += [_select_case(3, 40, 16, 10, f32), _select_case(2, 1100, 8, 300, bf16)]
    return cases


# ------------------------------------------------------------------------------------------- dropout
def _dropout_case(shape, dtype, p):
    def run(device):
        g = _generator(9, *shape)
        x = torch.randn(shape, generator=g).to(device, dtype).requires_grad_()
        y = F.dropout(x, p, seed=SEED, offset=OFFSET)
        (grad,) = _grads(y, [x], g)
        return {"y": Out(y), "grad": Out(grad)}  # the same mask and scale on every backend, bit for bit

    return Case("dropout", f"{_dt(dtype)} {list(shape)} p={p}", run)


def dropout_cases() -> List[Case]:
    return [_dropout_case((3, 1037), torch.float32, 0.1), _dropout_case((2, 5, 67), torch.bfloat16, 0.5),
            _dropout_case((65,), torch.float16, 1.0)]


# ---------------------------------------------------------------------------- dropout_add_layer_norm
def _dropout_add_layer_norm_case(shape, x_dtype, r_dtype, p):
    def run(device):
        g = _generator(10, *shape)
        n = shape[-1]
        x = torch.randn(shape, generator=g).to(device, x_dtype).requires_grad_()
        r = torch.randn(shape, generator=g).to(device, r_dtype).requires_grad_()
        w = (1.0 + 0.3 * torch.randn(n, generator=g)).to(device, r_dtype).requires_grad_()
        b = (0.1 * torch.randn(n, generator=g)).to(device, r_dtype).requires_grad_()
        y = F.dropout_add_layer_norm(x, r, w, b, p, eps=1e-12, seed=SEED, offset=OFFSET)
        dx, dr, dw, db = _grads(y, [x, r, w, b], g)
        # the statistics and the weight/bias sums are reductions, in each backend's order
        loose = tolerance(r_dtype, loose=True)
        return {"y": Out(y, *loose), "dx": Out(dx, *tolerance(x_dtype, loose=True)), "dresidual": Out(dr, *loose),
                "dweight": Out(dw, *loose), "dbias": Out(db, *loose)}

    return Case("dropout_add_layer_norm", f"{_dt(x_dtype)}+{_dt(r_dtype)} {list(shape)} p={p}", run)


def dropout_add_layer_norm_cases() -> List[Case]:
    return [_dropout_add_layer_norm_case((3, 1037), torch.float32, torch.float32, 0.1),
            _dropout_add_layer_norm_case((2, 5, 67), torch.bfloat16, torch.float32, 0.5),
            _dropout_add_layer_norm_case((4, 256), torch.float16, torch.float16, 0.0)]


# ------------------------------------------------------------------------------------------ bias_gelu
def _bias_gelu_case(shape, dtype):
    def run(device):
        g = _generator(11, *shape)
        x = (2.0 * torch.randn(shape, generator=g)).to(device, dtype).requires_grad_()
        bias = torch.randn(shape[-1], generator=g).to(device, dtype).requires_grad_()
        y = F.bias_gelu(x, bias)
        dx, dbias = _grads(y, [x, bias], g)
        return {"y": Out(y, *tolerance(dtype)), "dx": Out(dx, *tolerance(dtype)),
                "dbias": Out(dbias, *tolerance(dtype, loose=True))}  # a sum over the rows

    return Case("bias_gelu", f"{_dt(dtype)} {list(shape)}", run)


def bias_gelu_cases() -> List[Case]:
    return [_bias_gelu_case((3, 1037), torch.float32), _bias_gelu_case((2, 5, 67), torch.bfloat16),
            _bias_gelu_case((4, 256), torch.float16)]


def _dt(dtype: torch.dtype) -> str:
    return {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16", torch.int32: "int32",
            torch.int64: "int64"}[dtype]


def all_cases() -> List[Case]:
    """Every case, grouped by op in the order the selftest reports them."""
    return (rtd_cases() + mask_cases() + sample_cases() + statistical_cases() + head_cases() + exit_cases()
            + early_exit_cases() + dropout_cases() + dropout_add_layer_norm_cases() + bias_gelu_cases())
