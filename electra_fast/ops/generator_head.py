"""electra_fast::generator_head: the generator's tied-embedding projection, MLM cross-entropy, its
gradient and one sample per row, in chunks of rows so the [M, V] logits never exist at once.

    generator_head(hidden [M,E], weight [V,E], bias [V]?, targets [M], *, temperature, seed, offset,
                   reduction, ignore_index, chunk_size) -> (loss, samples [M] int64)
Math (reference: electra_fast/reference/generator_head.py; per row: csrc/include/electra_fast/cross_entropy.h):
    x = hidden @ weight.T + bias;  l_m = logsumexp(x_m) - x_m[t_m] (0 where t_m == ignore_index)
    loss: l ("none"), sum l ("sum"), sum l / max(#kept rows, 1) ("mean")
    samples[m] = exact draw from softmax(x_m / T): inverse CDF, u = word 0 of Philox counter m in stream
                 (seed, offset) -- the contract of sample_replace (csrc/include/electra_fast/sampling.h).

Fusion (the chunk driver below, shared by the cpp, cuda and triton backends): per chunk of C rows,
    x_c = h_c @ W.T + b                            (one GEMM into a reused [C, V] fp32 buffer)
    row kernel: max, normaliser, loss, sample, and x_c <- s (softmax(x_c) - onehot)  in place
    grad_hidden[c] = x_c @ W;  grad_weight += x_c.T @ h_c;  grad_bias += column sums of x_c
so only the gradients are kept for backward, which multiplies them by the upstream scalar ("mean",
"sum"). For "none" the upstream gradient is per row and cannot be applied to grad_weight afterwards,
so the forward takes no gradient and the backward recomputes the chunks with the per-row scales
(electra_fast::generator_head_backward). Without a gradient the gradient GEMMs are skipped.
Half inputs run the GEMMs and the accumulation in fp32 (weight is upcast once); float64 runs on the
reference (it is for gradcheck). No .item(), no host synchronisation.
Kernels: csrc/cpu/generator_head.cpp, csrc/cuda/generator_head.cu, electra_fast/triton/generator_head.py.
Tests: tests/ops/test_generator_head.py. Benchmark: benchmarks/bench_generator_head.py.
"""
from __future__ import annotations

from typing import Callable, Optional, Tuple

import torch

from .._validation import check_same_device, check_seed, check_temperature, check_tensor
from ..reference import generator_head as reference
from . import _dispatch as dispatch

REDUCTIONS = {"none": 0, "sum": 1, "mean": 2}
_FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
_INDEX_DTYPES = (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8)

# Auto chunking. The [C, V] fp32 buffer of one chunk is the peak memory beyond the gradients, so C is
# chosen to keep it near CHUNK_BYTES. Each chunk re-reads and re-writes grad_weight [V, E] once, which
# costs ~E/C of the chunk's GEMM time: C is raised towards 2E to keep that small, but never past
# MAX_CHUNK_BYTES. Below MIN_CHUNK_ROWS rows the GEMMs lose more than the memory is worth.
CHUNK_BYTES = 64 << 20
MAX_CHUNK_BYTES = 192 << 20
MIN_CHUNK_ROWS = 64


def auto_chunk_size(vocab_size: int, embedding_size: int) -> int:
    """Rows per chunk when chunk_size is None:
        C = min(max(CHUNK_BYTES / 4V, 2E), MAX_CHUNK_BYTES / 4V), rounded down to a multiple of 64,
    and at least MIN_CHUNK_ROWS (the only case where the buffer C * V * 4 exceeds MAX_CHUNK_BYTES)."""
    row_bytes = 4 * max(vocab_size, 1)
    rows = min(max(CHUNK_BYTES // row_bytes, 2 * embedding_size), MAX_CHUNK_BYTES // row_bytes)
    return max(rows // 64 * 64, MIN_CHUNK_ROWS)


def balanced_rows(m: int, chunk_size: int) -> int:
    """Rows of each chunk (the last may have fewer): the fewest chunks of at most chunk_size rows, split
    evenly, so that no ragged last chunk runs the GEMMs at a poor shape and the buffer is no larger than
    the chunks need."""
    if m <= 0:
        return 1
    chunks = -(-m // chunk_size)
    return -(-m // chunks)


def _chunked(rows_kernel: Callable, hidden, weight, bias, targets, grad_scale, temperature, seed, offset,
             ignore_index, chunk_size, grads, sample):
    """The chunk driver: (loss per row [M] fp32, samples [M], grad_hidden, grad_weight, grad_bias) in fp32,
    None for gradients not asked; gradients for the row scales grad_scale ([1] or [M] fp32).
    Chunks of balanced_rows(M, chunk_size) rows; chunk_size 0 = auto_chunk_size(V, E)."""
    m, e = hidden.shape
    v = weight.shape[0]
    if chunk_size <= 0:
        chunk_size = auto_chunk_size(v, e)
    f32 = torch.float32
    w = weight.to(f32)
    b = None if bias is None else bias.to(f32)
    loss = hidden.new_empty(m, dtype=f32)
    ids = hidden.new_empty(m, dtype=torch.int64)
    gh = hidden.new_empty(m, e, dtype=f32) if grads[0] else None
    gw = hidden.new_zeros(v, e, dtype=f32) if grads[1] else None
    gb = hidden.new_zeros(v, dtype=f32) if grads[2] else None
    write_grad = any(grads)
    per_row_scale = grad_scale.numel() != 1
    rows = balanced_rows(m, chunk_size)
    buf = hidden.new_empty(rows, v, dtype=f32)
    for start in range(0, m, rows):
        end = min(start + rows, m)
        x = buf[: end - start]
        h = hidden[start:end].to(f32)
        if b is None:
            torch.mm(h, w.t(), out=x)
        else:
            torch.addmm(b, h, w.t(), out=x)
        scale = grad_scale[start:end] if per_row_scale else grad_scale
        rows_kernel(x, targets[start:end], scale, loss[start:end], ids[start:end], gb, start, temperature, seed,
                    offset, ignore_index, write_grad, sample)
        if gh is not None:
            torch.mm(x, w, out=gh[start:end])
        if gw is not None:
            gw.addmm_(x.t(), h)
    return loss, ids, gh, gw, gb


def _reference_rows(hidden, weight, bias, targets, grad_scale, temperature, seed, offset, ignore_index, chunk_size,
                    grads, sample):
    return reference.rows_and_grads(hidden, weight, bias, targets, grad_scale, temperature, seed, offset,
                                    ignore_index, grads, sample)


GENERATOR_HEAD = dispatch.Op(
    "generator_head",
    kernel="generator_head_rows(Tensor(a!) logits, Tensor targets, Tensor grad_scale, Tensor(b!) loss, "
           "Tensor(c!) samples, Tensor(d!)? grad_bias, int row_start, float temperature, int seed, int offset, "
           "int ignore_index, bool write_grad, bool sample) -> ()",
    triton="generator_head.generator_head_rows",
    reference=_reference_rows,
    reference_dtypes=(torch.float64,),
    launch=_chunked,
)


def _grad_out(g: Optional[torch.Tensor], like: Optional[torch.Tensor], hidden: torch.Tensor) -> torch.Tensor:
    """The gradient in its input's dtype, or an empty tensor when not computed."""
    if g is None or like is None:
        return hidden.new_empty(0)
    return g.to(like.dtype)


@torch.library.custom_op("electra_fast::generator_head", mutates_args=())
def generator_head_op(hidden: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                      targets: torch.Tensor, temperature: float, seed: int, offset: int, reduction: int,
                      ignore_index: int, chunk_size: int, grad_hidden: bool, grad_weight: bool,
                      grad_bias: bool) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, samples, grad_hidden, grad_weight, grad_bias): the gradients of the loss for an upstream
    gradient of 1, each empty unless asked (never asked for reduction "none"); chunk_size 0 = auto.
    targets int64 contiguous; hidden, weight, bias contiguous, of one float dtype."""
    kept = reference.kept_rows(targets, ignore_index)
    if reduction == 2:
        grad_scale = kept.reciprocal().to(torch.float32).reshape(1)
    else:
        grad_scale = torch.ones(1, dtype=torch.float32, device=hidden.device)
    grads = (grad_hidden, grad_weight, grad_bias and bias is not None) if reduction != 0 else (False,) * 3
    rows, ids, gh, gw, gb = dispatch.run(GENERATOR_HEAD, hidden.device, hidden.dtype, hidden, weight, bias, targets,
                                         grad_scale, temperature, seed, offset, ignore_index, chunk_size, grads, True)
    if reduction == 0:
        loss = rows
    else:
        loss = rows.sum(dtype=torch.float64)
        if reduction == 2:
            loss = loss / kept
    return (loss.to(hidden.dtype), ids, _grad_out(gh, hidden, hidden), _grad_out(gw, weight, hidden),
            _grad_out(gb, bias, hidden))


@generator_head_op.register_fake
def _(hidden, weight, bias, targets, temperature, seed, offset, reduction, ignore_index, chunk_size, grad_hidden,
      grad_weight, grad_bias):
    m = hidden.shape[0]
    loss = hidden.new_empty(m) if reduction == 0 else hidden.new_empty(())
    grads_on = reduction != 0
    gh = torch.empty_like(hidden) if grads_on and grad_hidden else hidden.new_empty(0)
    gw = torch.empty_like(weight) if grads_on and grad_weight else hidden.new_empty(0)
    gb = torch.empty_like(bias) if grads_on and grad_bias and bias is not None else hidden.new_empty(0)
    return loss, hidden.new_empty(m, dtype=torch.int64), gh, gw, gb


@torch.library.custom_op("electra_fast::generator_head_backward", mutates_args=())
def generator_head_backward_op(grad_loss: torch.Tensor, hidden: torch.Tensor, weight: torch.Tensor,
                               bias: Optional[torch.Tensor], targets: torch.Tensor, ignore_index: int,
                               chunk_size: int, grad_hidden: bool, grad_weight: bool,
                               grad_bias: bool) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of sum_m grad_loss[m] * l_m (reduction "none"), recomputing the logits chunk by chunk;
    each empty unless asked."""
    grad_scale = grad_loss.to(torch.float32).contiguous()
    grads = (grad_hidden, grad_weight, grad_bias and bias is not None)
    _, _, gh, gw, gb = dispatch.run(GENERATOR_HEAD, hidden.device, hidden.dtype, hidden, weight, bias, targets,
                                    grad_scale, 1.0, 0, 0, ignore_index, chunk_size, grads, False)
    return _grad_out(gh, hidden, hidden), _grad_out(gw, weight, hidden), _grad_out(gb, bias, hidden)


@generator_head_backward_op.register_fake
def _(grad_loss, hidden, weight, bias, targets, ignore_index, chunk_size, grad_hidden, grad_weight, grad_bias):
    gh = torch.empty_like(hidden) if grad_hidden else hidden.new_empty(0)
    gw = torch.empty_like(weight) if grad_weight else hidden.new_empty(0)
    gb = torch.empty_like(bias) if grad_bias and bias is not None else hidden.new_empty(0)
    return gh, gw, gb


def _setup_context(ctx, inputs, output):
    hidden, weight, bias, targets = inputs[:4]
    ctx.reduction, ctx.ignore_index, ctx.chunk_size = inputs[7], inputs[8], inputs[9]
    ctx.asked = tuple(inputs[10:13])
    ctx.has_bias = bias is not None
    if ctx.reduction == 0:
        ctx.save_for_backward(hidden, weight, bias, targets)
    else:
        ctx.save_for_backward(*output[2:])
    ctx.mark_non_differentiable(*output[1:])


def _backward(ctx, grad_loss, *_):
    need = (ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2])
    missing = [n for n, want, asked in zip(("hidden", "weight", "bias"), need, ctx.asked) if want and not asked]
    if missing:
        raise RuntimeError(f"electra_fast::generator_head was called without asking for the gradient of "
                           f"{', '.join(missing)}; call it through electra_fast.functional.generator_head")
    if ctx.reduction == 0:
        hidden, weight, bias, targets = ctx.saved_tensors
        gh, gw, gb = generator_head_backward_op(grad_loss.contiguous(), hidden, weight, bias, targets,
                                                ctx.ignore_index, ctx.chunk_size, *need)
    else:
        gh, gw, gb = (grad_loss * g if want else None for g, want in zip(ctx.saved_tensors, need))
    return (gh if need[0] else None, gw if need[1] else None, gb if need[2] else None) + (None,) * 10


generator_head_op.register_autograd(_backward, setup_context=_setup_context)


def _check_targets(targets: torch.Tensor, vocab_size: int, ignore_index: int) -> None:
    """Range check on CPU (free there); on GPUs the kernels assert instead of synchronising the host."""
    if targets.device.type != "cpu" or torch.compiler.is_compiling() or targets.numel() == 0:
        return
    bad = targets.ne(ignore_index) & ((targets < 0) | (targets >= vocab_size))
    if bool(bad.any()):
        raise ValueError(f"targets must be in [0, {vocab_size}) or ignore_index ({ignore_index}), "
                         f"found {targets[bad][0].item()}")


def _validate(hidden, weight, bias, targets, temperature, seed, offset, reduction, ignore_index, chunk_size):
    check_tensor(hidden, "hidden", dtypes=_FLOAT_DTYPES, dim=2)
    check_tensor(weight, "weight", dtypes=_FLOAT_DTYPES, dim=2)
    check_tensor(targets, "targets", dtypes=_INDEX_DTYPES, dim=1)
    if weight.dtype != hidden.dtype:
        raise TypeError(f"weight must have hidden's dtype {hidden.dtype}, got {weight.dtype}")
    if weight.shape[1] != hidden.shape[1]:
        raise ValueError(f"weight [V, E] must have hidden's embedding size E = {hidden.shape[1]}, "
                         f"got weight of shape {tuple(weight.shape)}")
    if weight.shape[0] == 0:
        raise ValueError("weight must have at least one row (an empty vocabulary has no softmax)")
    if targets.shape[0] != hidden.shape[0]:
        raise ValueError(f"targets must have one id per row of hidden ({hidden.shape[0]}), got {targets.shape[0]}")
    check_same_device(weight, "weight", hidden, "hidden")
    check_same_device(targets, "targets", hidden, "hidden")
    if bias is not None:
        check_tensor(bias, "bias", dtypes=_FLOAT_DTYPES, dim=1)
        if bias.dtype != hidden.dtype:
            raise TypeError(f"bias must have hidden's dtype {hidden.dtype}, got {bias.dtype}")
        if bias.shape[0] != weight.shape[0]:
            raise ValueError(f"bias must have V = {weight.shape[0]} elements, got {bias.shape[0]}")
        check_same_device(bias, "bias", hidden, "hidden")
    check_temperature(temperature)
    check_seed(seed, offset)
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {list(REDUCTIONS)}, got {reduction!r}")
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        raise TypeError(f"ignore_index must be an int, got {type(ignore_index).__name__}")
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size must be None or an int >= 1, got {chunk_size!r}")


def generator_head(hidden: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], targets: torch.Tensor, *,
                   temperature: float = 1.0, seed: int, offset: int = 0, reduction: str = "mean",
                   ignore_index: int = -100, chunk_size: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Fused generator head: MLM cross-entropy of softmax(hidden @ weight.T + bias) and one sample per row.

    Args:
        hidden: [M, E] float32/float16/bfloat16 (float64 runs on the reference), the generator's output at
            the masked positions.
        weight: [V, E], the tied word embedding (hidden's dtype). bias: [V] or None.
        targets: [M] integer original ids in [0, V), or ignore_index (the row then adds nothing). Others raise
            a ValueError on CPU; on a GPU they are not checked on the host (that would cost a sync): the CUDA
            kernel trips a device-side assert, after which every CUDA call of the process fails (restart it);
            the Triton kernel asserts only under TRITON_DEBUG=1, and otherwise gives that row a wrong loss and
            gradient (computed without a target logit).
        temperature: samples come from softmax(logits / temperature); 0 = argmax. The loss is at T = 1.
            Checked as sample_replace checks it (electra_fast._validation.check_temperature).
        seed, offset: the Philox stream of the samples (row m uses counter m), as sample_replace.
        A row whose logits hold NaN or +inf (non-finite hidden, weight or bias, or an overflow) has nothing to
        sample: on CPU that is a ValueError; on a GPU, where finding it would cost a host sync, that row's
        sample is its target (clamped into [0, V)) and its loss is NaN. No id outside [0, V) is ever returned.
        reduction: "mean" (over kept rows; 0 if none), "sum" or "none".
        chunk_size: at most this many rows per chunk (None: auto_chunk_size(V, E)), split evenly
            (balanced_rows); peak memory ~ rows * V * 4 bytes plus the fp32 gradients.
    Returns:
        (loss in hidden's dtype: scalar, or [M] for "none"; samples [M] int64, no gradient).
    Differentiable w.r.t. hidden, weight and bias.
    """
    _validate(hidden, weight, bias, targets, temperature, seed, offset, reduction, ignore_index, chunk_size)
    _check_targets(targets, weight.shape[0], ignore_index)
    grad_on = torch.is_grad_enabled()
    targets = targets.to(torch.int64).contiguous()
    loss, samples, _, _, _ = generator_head_op(
        hidden.contiguous(), weight.contiguous(), None if bias is None else bias.contiguous(),
        targets, float(temperature), seed, offset, REDUCTIONS[reduction], ignore_index,
        chunk_size or 0, grad_on and hidden.requires_grad, grad_on and weight.requires_grad,
        grad_on and bias is not None and bias.requires_grad)
    return loss, _sampled_ids(samples, targets, weight.shape[0])


def _sampled_ids(samples: torch.Tensor, targets: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """The kernels mark a row without a sample (NaN/+inf logits) with -1: a ValueError on CPU (free to read
    there); on other devices (no host sync) the row takes its target, clamped into [0, V)."""
    if samples.device.type == "cpu" and not torch.compiler.is_compiling():
        bad = samples < 0
        if bool(bad.any()):
            raise ValueError(f"the logits hidden @ weight.T + bias are NaN or +inf in {int(bad.sum())} of "
                             f"{samples.numel()} rows (first: row {int(bad.nonzero()[0])}), so nothing can be "
                             f"sampled there: hidden, weight or bias holds NaN/inf, or the logits overflow")
        return samples
    return torch.where(samples >= 0, samples, targets.clamp(0, vocab_size - 1))
