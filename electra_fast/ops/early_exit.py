"""Token-level early exit: the exit decision, compaction of the active tokens, and restore; or a fixed
budget of tokens per row.

    exit_mask(exit_logits [B,T], active [B,T], threshold, keep_ids, input_ids) -> still_active [B,T] bool
    gather_tokens(hidden [B,T,H], active [B,T]) -> Packed(tokens [N,H], index [N], cu_seqlens [B+1], max_seqlen)
    pad_packed(packed, B) -> (padded [B,L,H], pad_mask [B,L]);   unpad(padded, packed) -> [N,H]
    scatter_tokens(tokens [N,H], index [N], base [B,T,H]) -> [B,T,H]
    select_tokens(hidden [B,T,H], exit_logits [B,T], k, active, keep_ids, input_ids)
        -> Selected(tokens [B,k,H], index [B,k])
The math (reference: electra_fast/reference/early_exit.py): a token stays iff it was active and
max(p, 1-p) < threshold (p = sigmoid(logit)) or its id is in keep_ids; the test is exact, as
|logit| < logit(threshold). index holds the flat positions b*T + t of the active tokens, row by row.
select_tokens keeps each row's k tokens of smallest key (kept ids, then the least confident, ties to the
lower position; inactive tokens last), an exact order on unique integer keys (select_tokens' docstring).

Autograd: gather and scatter are each other's backward. d gather / d hidden = scatter into zeros;
d scatter / d tokens = gather of the gradient; d scatter / d base = the gradient with the rows at index
zeroed. The backward passes call the same custom ops, so double backward works too.

d select_tokens / d hidden = scatter of the gradient into zeros at the kept positions (no gradient to
the logits: the selection is a decision).

Host synchronisation: exactly one per gather_tokens (the compaction reads N and max_seqlen, which size
its outputs, in one device-to-host copy). exit_mask, the gathers/scatters, pad_packed, unpad and
select_tokens (static shapes) never synchronise. Under torch.compile the compaction's fake gives N and
max_seqlen as unbacked symbolic sizes, so fullgraph=True traces through a data-dependent number of tokens.

Raw ops (contiguous tensors; index int64 flat rows): electra_fast::compact, ::gather_rows,
::scatter_rows, ::exit_mask, ::select_tokens (its index: positions t within the row). Kernels:
csrc/cpu/early_exit.cpp, csrc/cuda/early_exit.cu (logic in csrc/include/electra_fast/compaction.h),
electra_fast/triton/early_exit.py.
Tests: tests/ops/test_early_exit.py. Benchmark: benchmarks/bench_early_exit.py.
"""
from __future__ import annotations

import numbers
from typing import NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch._subclasses.fake_tensor import is_fake

from .._validation import check_same_device, check_tensor
from ..reference import early_exit as reference
from . import _dispatch as dispatch

_LOGIT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
_ID_DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)
# gather/scatter copy bits, so any dtype of these element sizes works (Triton views them as integers)
_ROW_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.bool) + _ID_DTYPES
_MAX_SELECT_LEN = 2**30  # select_tokens' keys hold a position in 30 bits


class Selected(NamedTuple):
    """Each row's kept tokens: tokens [B, k, H]; index [B, k] int64 positions t in the row, ascending."""

    tokens: torch.Tensor
    index: torch.Tensor


class Packed(NamedTuple):
    """The active tokens of a batch, packed row by row (flash-attention's varlen layout).

    tokens: [N, H] the active hidden states; index: [N] int64 flat positions b*T + t in the [B, T]
    batch; cu_seqlens: [B+1] int32 cumulative active counts per row; max_seqlen: the largest count."""

    tokens: torch.Tensor
    index: torch.Tensor
    cu_seqlens: torch.Tensor
    max_seqlen: int


def _float32_bound(threshold: float) -> float:
    """The smallest float32 >= logit(threshold): for float32 |x|, |x| < logit(t) <=> |x| < this."""
    exact = reference.threshold_logit(threshold)
    bound = np.float32(exact)
    if float(bound) < exact:
        bound = np.nextafter(bound, np.float32(np.inf))
    return float(bound)


# ------------------------------------------------------------------------------------------ raw ops
def _launch_exit_mask(kernel, logits, active, input_ids, keep_ids, threshold):
    # the kernels take active as bytes and compare |x| against the float32 bound of logit(threshold)
    return kernel(logits, active.view(torch.uint8), input_ids, keep_ids, _float32_bound(threshold))


def _reference_exit_mask(logits, active, input_ids, keep_ids, threshold):
    return reference.exit_mask(logits, active, threshold, keep_ids, input_ids)


EXIT_MASK = dispatch.Op(
    "exit_mask",
    kernel="exit_mask(Tensor logits, Tensor active, Tensor? input_ids, Tensor? keep_ids, float bound) -> Tensor",
    triton="early_exit.exit_mask",
    reference=_reference_exit_mask,
    reference_dtypes=(torch.float64,),  # compared exactly, in float64, on the reference
    launch=_launch_exit_mask,
)


@torch.library.custom_op("electra_fast::exit_mask", mutates_args=())
def exit_mask_op(logits: torch.Tensor, active: torch.Tensor, input_ids: Optional[torch.Tensor],
                 keep_ids: Optional[torch.Tensor], threshold: float) -> torch.Tensor:
    """active (bool) & (|logits| < logit(threshold) | input_ids in keep_ids); ids int64, all contiguous."""
    return dispatch.run(EXIT_MASK, logits.device, logits.dtype, logits, active, input_ids, keep_ids, threshold)


@exit_mask_op.register_fake
def _(logits, active, input_ids, keep_ids, threshold):
    return torch.empty_like(active)


COMPACT = dispatch.Op(
    "compact",
    kernel="compact(Tensor active) -> (Tensor, Tensor, int)",
    triton="early_exit.compact",
    reference=reference.compact,
    launch=lambda kernel, active: kernel(active.view(torch.uint8)),
)


@torch.library.custom_op("electra_fast::compact", mutates_args=())
def compact_op(active: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, int]:
    """(index [N] int64, cu_seqlens [B+1] int32, max_seqlen) of a contiguous [B,T] bool mask.
    The one host synchronisation of a compaction: N and max_seqlen size the outputs."""
    return dispatch.run(COMPACT, active.device, active.dtype, active)


@compact_op.register_fake
def _(active):
    ctx = torch.library.get_ctx()
    num_tokens = ctx.new_dynamic_size()
    max_seqlen = ctx.new_dynamic_size()
    torch._check(num_tokens <= active.numel())
    torch._check(max_seqlen <= active.shape[1])
    return (active.new_empty(num_tokens, dtype=torch.int64),
            active.new_empty(active.shape[0] + 1, dtype=torch.int32), max_seqlen)


GATHER_ROWS = dispatch.Op(
    "gather_rows",
    kernel="gather_rows(Tensor src, Tensor index) -> Tensor",
    triton="early_exit.gather_rows",
    reference=reference.gather_rows,
)


@torch.library.custom_op("electra_fast::gather_rows", mutates_args=())
def gather_rows_op(src: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """[N,H] = src[index] for contiguous src [M,H] and int64 index [N] in [0, M)."""
    return dispatch.run(GATHER_ROWS, src.device, src.dtype, src, index)


@gather_rows_op.register_fake
def _(src, index):
    return src.new_empty((index.shape[0], src.shape[1]))


SCATTER_ROWS = dispatch.Op(
    "scatter_rows",
    kernel="scatter_rows(Tensor? tokens, Tensor index, Tensor? base, int num_rows) -> Tensor",
    triton="early_exit.scatter_rows",
    reference=reference.scatter_rows,
)


@torch.library.custom_op("electra_fast::scatter_rows", mutates_args=())
def scatter_rows_op(tokens: Optional[torch.Tensor], index: torch.Tensor, base: Optional[torch.Tensor],
                    num_rows: int) -> torch.Tensor:
    """[num_rows,H]: base (zeros if None) with rows index[i] := tokens[i] (zero rows if tokens is None).
    index entries must be distinct (as a compaction's are)."""
    return dispatch.run(SCATTER_ROWS, index.device, index.dtype, tokens, index, base, num_rows)


@scatter_rows_op.register_fake
def _(tokens, index, base, num_rows):
    like = tokens if tokens is not None else base
    return like.new_empty((num_rows, like.shape[1]))


SELECT_TOKENS = dispatch.Op(
    "select_tokens",
    kernel="select_tokens(Tensor hidden, Tensor logits, Tensor rank, int k) -> (Tensor, Tensor)",
    triton="early_exit.select_tokens",
    reference=reference.select_tokens,
)


@torch.library.custom_op("electra_fast::select_tokens", mutates_args=())
def select_tokens_op(hidden: torch.Tensor, logits: torch.Tensor, rank: torch.Tensor,
                     k: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """(tokens [B,k,H], index [B,k] int64): each row's k tokens of smallest key, in position order, for
    contiguous hidden [B,T,H], logits [B,T] float and rank [B,T] uint8 (the key's c: 0 keep, 1, 2 drop)."""
    return dispatch.run(SELECT_TOKENS, hidden.device, hidden.dtype, hidden, logits, rank, k)


@select_tokens_op.register_fake
def _(hidden, logits, rank, k):
    b, _, h = hidden.shape
    return hidden.new_empty((b, k, h)), hidden.new_empty((b, k), dtype=torch.int64)


def _gather_setup(ctx, inputs, output):
    src, index = inputs
    ctx.num_rows = src.shape[0]
    ctx.save_for_backward(index)


def _gather_backward(ctx, grad):
    (index,) = ctx.saved_tensors
    return scatter_rows_op(grad.contiguous(), index, None, ctx.num_rows), None


def _scatter_setup(ctx, inputs, output):
    _, index, _, num_rows = inputs
    ctx.num_rows = num_rows
    ctx.save_for_backward(index)


def _scatter_backward(ctx, grad):
    (index,) = ctx.saved_tensors
    grad = grad.contiguous()
    grad_tokens = gather_rows_op(grad, index) if ctx.needs_input_grad[0] else None
    grad_base = scatter_rows_op(None, index, grad, ctx.num_rows) if ctx.needs_input_grad[2] else None
    return grad_tokens, None, grad_base, None


def _select_setup(ctx, inputs, output):
    ctx.shape = inputs[0].shape
    ctx.save_for_backward(output[1])


def _select_backward(ctx, grad_tokens, _grad_index):
    (index,) = ctx.saved_tensors
    b, t, h = ctx.shape
    k = index.shape[1]
    flat = (index + torch.arange(b, device=index.device)[:, None] * t).view(b * k)
    grad = scatter_rows_op(grad_tokens.contiguous().view(b * k, h), flat, None, b * t)
    return grad.view(b, t, h), None, None, None


gather_rows_op.register_autograd(_gather_backward, setup_context=_gather_setup)
scatter_rows_op.register_autograd(_scatter_backward, setup_context=_scatter_setup)
select_tokens_op.register_autograd(_select_backward, setup_context=_select_setup)


# -------------------------------------------------------------------------------------- validation
def _check_mask(active, name: str, shape, ref_name: str, ref: torch.Tensor) -> None:
    check_tensor(active, name, dtypes=(torch.bool,))
    if tuple(active.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)} (that of {ref_name}), got {tuple(active.shape)}")
    check_same_device(active, name, ref, ref_name)


def _check_index(index, name: str, num_tokens, num_rows, ref: torch.Tensor) -> None:
    check_tensor(index, name, dtypes=(torch.int64,), dim=1)
    check_same_device(index, name, ref, "tokens")
    if index.shape[0] != num_tokens:
        raise ValueError(f"{name} must have one entry per token ({num_tokens}), got {index.shape[0]}")
    # free on CPU; on a GPU it would cost a host sync, so there the kernels assert instead. Traced
    # (fake) indices have no values to check.
    if torch.compiler.is_compiling() or is_fake(index) or index.device.type != "cpu":
        return
    if index.numel():
        low, high = int(index.min()), int(index.max())
        if low < 0 or high >= num_rows:
            bad = low if low < 0 else high
            raise ValueError(f"{name} out of range: {bad} is not a row of the {num_rows} rows of the batch")
        if torch.unique(index).numel() != index.numel():
            raise ValueError(f"{name} has duplicate entries: each row of the batch can be restored once (the "
                             f"index gather_tokens returns has none)")


def _check_packed(packed) -> None:
    if not isinstance(packed, Packed):
        raise TypeError(f"packed must be the Packed returned by gather_tokens, got {type(packed).__name__}")


def _check_cu_seqlens(packed) -> None:
    """packed.cu_seqlens must be as gather_tokens returns it: from 0, non-decreasing, ending at the packed
    token count, no row longer than max_seqlen. Free on CPU; on a GPU it would cost a host sync, so there (and
    when traced) it is the caller's contract."""
    cu = packed.cu_seqlens
    check_tensor(cu, "packed.cu_seqlens", dtypes=(torch.int32, torch.int64), dim=1)
    if torch.compiler.is_compiling() or is_fake(cu) or cu.device.type != "cpu" or cu.numel() == 0:
        return
    counts, n = cu.diff(), packed.tokens.shape[0]
    if int(cu[0]) != 0 or int(cu[-1]) != n or bool((counts < 0).any()):
        raise ValueError(f"packed.cu_seqlens must rise from 0 to the {n} packed tokens (one count per row, as "
                         f"gather_tokens returns it), got {cu[:8].tolist()}{' ...' if cu.numel() > 8 else ''}")
    if counts.numel() and int(counts.max()) > packed.max_seqlen:
        raise ValueError(f"packed.max_seqlen {packed.max_seqlen} is below the longest row of packed.cu_seqlens "
                         f"({int(counts.max())} tokens)")


def _keep_tensor(keep_ids, device) -> torch.Tensor:
    if isinstance(keep_ids, torch.Tensor):
        check_tensor(keep_ids, "keep_ids", dtypes=_ID_DTYPES)
        if keep_ids.dim() > 1:
            raise ValueError(f"keep_ids must be 1-D, got shape {tuple(keep_ids.shape)}")
        if keep_ids.device != device:
            raise ValueError(f"keep_ids is on {keep_ids.device} but input_ids is on {device}; put them on one device")
        return keep_ids.reshape(-1).to(torch.int64).contiguous()
    if not all(isinstance(k, numbers.Integral) and not isinstance(k, bool) for k in keep_ids):
        raise TypeError(f"keep_ids must be a tensor or a sequence of ints, got {keep_ids!r}")
    return torch.tensor(list(keep_ids), dtype=torch.int64, device=device)


def _ids_and_keep(keep_ids, input_ids, exit_logits) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    """(input_ids, keep_ids) as contiguous int64 tensors, or (None, None) when neither is given."""
    if (keep_ids is None) != (input_ids is None):
        raise ValueError("keep_ids and input_ids go together: pass both (ids that never exit) or neither")
    if keep_ids is None:
        return None, None
    check_tensor(input_ids, "input_ids", dtypes=_ID_DTYPES)
    if input_ids.shape != exit_logits.shape:
        raise ValueError(f"input_ids must have the shape of exit_logits {tuple(exit_logits.shape)}, "
                         f"got {tuple(input_ids.shape)}")
    check_same_device(input_ids, "input_ids", exit_logits, "exit_logits")
    return input_ids.to(torch.int64).contiguous(), _keep_tensor(keep_ids, input_ids.device)


# ------------------------------------------------------------------------------------- public API
def exit_mask(exit_logits: torch.Tensor, active: torch.Tensor, *, threshold: float,
              keep_ids: Optional[Union[torch.Tensor, Sequence[int]]] = None,
              input_ids: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Which tokens continue after an exit layer.

    Args:
        exit_logits: [B, T] float, the exit head's logit per token (p = sigmoid(logit)).
        active: [B, T] bool, the tokens that reached this layer.
        threshold: in (0, 1]; a token exits once its confidence max(p, 1-p) >= threshold
            (exactly at the threshold it exits; threshold <= 0.5 lets every token exit).
        keep_ids: token ids that never exit (e.g. [CLS], [SEP]); needs input_ids [B, T].
    Returns:
        still_active [B, T] bool = active & (confidence < threshold | input_ids in keep_ids).
    No gradient (a decision); no host synchronisation.
    """
    check_tensor(exit_logits, "exit_logits", dtypes=_LOGIT_DTYPES)
    _check_mask(active, "active", exit_logits.shape, "exit_logits", exit_logits)
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
        raise TypeError(f"threshold must be a float, got {type(threshold).__name__}")
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    ids, keep = _ids_and_keep(keep_ids, input_ids, exit_logits)
    return exit_mask_op(exit_logits.detach().contiguous(), active.contiguous(), ids, keep, float(threshold))


def gather_tokens(hidden: torch.Tensor, active: torch.Tensor) -> Packed:
    """Pack the active tokens of each row, in order: tokens[i] = hidden[b, t] for the i-th active (b, t).

    Args:
        hidden: [B, T, H] (any float dtype; differentiable).
        active: [B, T] bool.
    Returns:
        Packed(tokens [N, H], index [N] int64 = b*T + t, cu_seqlens [B+1] int32, max_seqlen int).
    One host synchronisation (for N and max_seqlen); under torch.compile both are unbacked sizes.
    """
    check_tensor(hidden, "hidden", dtypes=_ROW_DTYPES, dim=3)
    _check_mask(active, "active", hidden.shape[:2], "hidden[:, :, 0]", hidden)
    b, t, h = hidden.shape
    index, cu_seqlens, max_seqlen = compact_op(active.contiguous())
    tokens = gather_rows_op(hidden.contiguous().view(b * t, h), index)
    return Packed(tokens, index, cu_seqlens, max_seqlen)


def select_tokens(hidden: torch.Tensor, exit_logits: torch.Tensor, k: int, *, active: Optional[torch.Tensor] = None,
                  keep_ids: Optional[Union[torch.Tensor, Sequence[int]]] = None,
                  input_ids: Optional[torch.Tensor] = None) -> Selected:
    """Early exit on a budget: each row keeps exactly k tokens, the least confident ones.

    Args:
        hidden: [B, T, H] (any dtype; differentiable).
        exit_logits: [B, T] float, the exit head's logit per token (confidence grows with |logit|).
        k: the tokens each row keeps, an int in [0, T].
        active: [B, T] bool, the tokens that reached this layer (None: all); inactive tokens (padding)
            are dropped before any active one.
        keep_ids: token ids kept before any other (e.g. [CLS], [SEP]) when active; needs input_ids [B, T].
    Returns:
        Selected(tokens [B, k, H], index [B, k] int64): index[b] holds the kept positions t of row b in
        ascending order, tokens[b, j] = hidden[b, index[b, j]].
    Row b keeps the k positions of smallest
        key(t) = (c(t) << 61) | (conf(t) << 30) | t      (a non-negative int64)
        c(t) = 0 for an active token whose id is in keep_ids, 1 for any other active token, 2 if inactive
        conf(t) = the IEEE bits of |float32(exit_logits[b, t])| (31 bits) when c(t) == 1, else 0.
    Non-negative floats order as their bits, so among ordinary tokens a lower |logit| is kept first and
    equal ones go to the lower position; every NaN counts as above +inf (dropped first). float16,
    bfloat16 and float64 logits are rounded to float32 (to nearest) first. Keys are unique, so the
    selection is exact and the same on every backend. T must be below 2^30.
    Gradient: to hidden only (the gradient of tokens scattered into zeros at the kept positions). No
    host synchronisation: the output shapes are static, so torch.compile(fullgraph=True) traces it.
    """
    check_tensor(hidden, "hidden", dtypes=_ROW_DTYPES, dim=3)
    check_tensor(exit_logits, "exit_logits", dtypes=_LOGIT_DTYPES)
    b, t, _ = hidden.shape
    if tuple(exit_logits.shape) != (b, t):
        raise ValueError(f"exit_logits must have shape {(b, t)} (that of hidden[:, :, 0]), "
                         f"got {tuple(exit_logits.shape)}")
    check_same_device(exit_logits, "exit_logits", hidden, "hidden")
    if isinstance(k, bool) or not isinstance(k, (int, torch.SymInt)):
        raise TypeError(f"k must be an int, got {type(k).__name__}")
    if not 0 <= k <= t:
        raise ValueError(f"k must be in [0, T] = [0, {t}], got {k}")
    if t >= _MAX_SELECT_LEN:
        raise ValueError(f"select_tokens needs rows shorter than 2^30 tokens (positions fill 30 bits of the key), "
                         f"got T = {t}")
    if active is not None:
        _check_mask(active, "active", (b, t), "exit_logits", exit_logits)
    ids, keep = _ids_and_keep(keep_ids, input_ids, exit_logits)
    # the key's c, one byte per token: 0 kept id, 1 ordinary, 2 inactive
    if ids is None:
        rank = torch.ones((b, t), dtype=torch.uint8, device=hidden.device)
    else:
        # a broadcast compare: torch.isin sorts long inputs, which on a GPU synchronises the host
        rank = (ids[..., None] != keep).all(-1).to(torch.uint8)
    if active is not None:
        rank = rank.masked_fill(~active, 2)
    return Selected(*select_tokens_op(hidden.contiguous(), exit_logits.detach().contiguous(), rank, k))


def scatter_tokens(tokens: torch.Tensor, index: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """Restore: base [B, T, H] with the rows at the flat positions index [N] replaced by tokens [N, H].

    Differentiable in tokens (gradient: the rows of the output's gradient at index) and base (the
    output's gradient with those rows zeroed). index entries must be distinct (gather_tokens' are), so that
    each token lands in one row and its gradient comes from that row alone: duplicate and out-of-range entries
    raise on CPU; on a GPU, where finding them would cost a host sync, out-of-range entries trip a device
    assert in the kernels and duplicates are not detected (which of them lands is then undefined)."""
    check_tensor(base, "base", dtypes=_ROW_DTYPES, dim=3)
    check_tensor(tokens, "tokens", dtypes=_ROW_DTYPES, dim=2)
    b, t, h = base.shape
    if tokens.shape[1] != h:
        raise ValueError(f"tokens must have base's hidden size {h}, got shape {tuple(tokens.shape)}")
    if tokens.dtype != base.dtype:
        raise TypeError(f"tokens ({tokens.dtype}) and base ({base.dtype}) must have one dtype")
    check_same_device(base, "base", tokens, "tokens")
    _check_index(index, "index", tokens.shape[0], b * t, tokens)
    out = scatter_rows_op(tokens.contiguous(), index.contiguous(), base.contiguous().view(b * t, h), b * t)
    return out.view(b, t, h)


def _padded_index(packed: Packed, batch_size: int) -> torch.Tensor:
    """[N] int64: the slot b*L + j of packed token cu_seqlens[b] + j in the flattened [B, L] layout."""
    cu = packed.cu_seqlens.to(torch.int64)
    num_tokens = packed.tokens.shape[0]
    rows = torch.repeat_interleave(torch.arange(batch_size, device=cu.device), cu.diff(), output_size=num_tokens)
    return rows * packed.max_seqlen + torch.arange(num_tokens, device=cu.device) - cu[rows]


def _check_batch_size(packed: Packed, batch_size) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, torch.SymInt)):
        raise TypeError(f"batch_size must be an int, got {type(batch_size).__name__}")
    if packed.cu_seqlens.shape[0] != batch_size + 1:
        raise ValueError(f"batch_size {batch_size} does not match packed.cu_seqlens of shape "
                         f"{tuple(packed.cu_seqlens.shape)} (B + 1 entries)")


def pad_packed(packed: Packed, batch_size: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Re-pad packed tokens for attention without varlen kernels.

    Returns (padded [B, L, H], pad_mask [B, L] bool) with L = packed.max_seqlen: row b holds its
    active tokens in order, then zeros; pad_mask is True at real tokens. Differentiable in the
    tokens; no host synchronisation. unpad() is its inverse. A packed whose cu_seqlens do not fit its
    tokens (not as gather_tokens made it) raises on CPU."""
    _check_packed(packed)
    _check_batch_size(packed, batch_size)
    _check_cu_seqlens(packed)
    tokens = packed.tokens
    length = packed.max_seqlen
    counts = packed.cu_seqlens.diff()
    pad_mask = torch.arange(length, device=tokens.device) < counts[:, None]
    slots = _padded_index(packed, batch_size)
    padded = scatter_rows_op(tokens.contiguous(), slots, None, batch_size * length)
    return padded.view(batch_size, length, tokens.shape[1]), pad_mask


def unpad(padded: torch.Tensor, packed: Packed) -> torch.Tensor:
    """[N, H]: the real tokens of padded [B, L, H] (e.g. a layer's output on pad_packed's view), in
    packed order. Differentiable; no host synchronisation."""
    _check_packed(packed)
    check_tensor(padded, "padded", dtypes=_ROW_DTYPES, dim=3)
    batch_size, length, h = padded.shape
    expected = (packed.cu_seqlens.shape[0] - 1, packed.max_seqlen)
    if (batch_size, length) != expected:
        raise ValueError(f"padded must be [B, max_seqlen, H] = [{expected[0]}, {expected[1]}, H] for this packed, "
                         f"got {tuple(padded.shape)}")
    check_same_device(padded, "padded", packed.tokens, "packed.tokens")
    _check_cu_seqlens(packed)
    return gather_rows_op(padded.contiguous().view(batch_size * length, h), _padded_index(packed, batch_size))
