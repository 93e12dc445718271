"""electra_fast::rtd_loss and electra_fast::rtd_counts: the replaced-token-detection loss and metrics.

    rtd_loss(logits [B,T], labels [B,T], attention_mask [B,T]?, weight [B,T]?, reduction) -> loss
The math (reference: electra_fast/reference/rtd_loss.py):
    l_t = max(x_t, 0) - x_t y_t + log1p(exp(-|x_t|)),  dl_t/dx_t = sigmoid(x_t) - y_t
    none: m_t w_t l_t;  sum: sum_t m_t w_t l_t;  mean: sum / max(#real tokens, 1)
An all-pad batch has mean loss 0 and gradient 0 (the mean of nothing is defined as 0).

Fusion: the forward pass computes the loss and, when the logits need a gradient, d loss/d logits for
an upstream gradient of 1 in the same read of the logits; backward is one multiply by the upstream
gradient (a scalar for sum/mean, per token for none), and no work at all for the scalar 1 of
loss.backward() on CPU, where the saved gradient itself becomes logits.grad. Nothing else of the
input's size is kept. A no-grad forward computes no gradient. There is no double backward.
Half inputs accumulate in fp32 (the sum in fp64 on CPU); the loss comes back in the logits' dtype.

Kernels: csrc/cpu/rtd_loss.cpp, csrc/cuda/rtd_loss.cu (math in csrc/include/electra_fast/bce.h),
electra_fast/triton/rtd_loss.py; the eager path of the cpp and cuda backends, with this backward in C++:
csrc/autograd/rtd_loss.cpp. Tests: tests/ops/test_rtd_loss.py.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import torch

from .._validation import check_same_device, check_same_shape, check_tensor
from ..reference import rtd_loss as reference
from . import _dispatch as dispatch

REDUCTIONS = {"none": 0, "sum": 1, "mean": 2}
_LOGIT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
_LABEL_DTYPES = (torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64,
                 torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _reference_loss(logits, labels, mask, weight, reduction, compute_grad):
    return reference.rtd_loss_and_grad(logits, labels, mask, weight, list(REDUCTIONS)[reduction], compute_grad)


def _rtd_loss(logits: torch.Tensor, labels: torch.Tensor, mask: Optional[torch.Tensor],
              weight: Optional[torch.Tensor], reduction: int, compute_grad: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    """(loss, grad), both in the logits' dtype: grad = d loss / d logits for an upstream gradient of 1
    (empty unless compute_grad). labels and mask are uint8 0/1, weight float32, all contiguous and of the
    logits' shape."""
    return dispatch.run(RTD_LOSS, logits.device, logits.dtype, logits, labels, mask, weight, reduction, compute_grad)


def _rtd_loss_fake(logits, labels, mask, weight, reduction, compute_grad):
    loss = torch.empty_like(logits) if reduction == 0 else logits.new_empty(())
    grad = torch.empty_like(logits) if compute_grad else logits.new_empty(0)
    return loss, grad


def _setup_context(ctx, inputs, output):
    ctx.compute_grad = inputs[5]
    ctx.save_for_backward(output[1])
    ctx.mark_non_differentiable(output[1])
    # the saved-gradient output never receives a gradient: without this autograd would allocate an
    # input-sized tensor of zeros for it on every backward
    ctx.set_materialize_grads(False)


def _is_one(grad_loss: torch.Tensor) -> bool:
    """Whether grad_loss is the scalar 1 of a plain loss.backward(). Only asked of a CPU scalar in plain
    eager mode: on a GPU the answer costs a host synchronisation (more than the multiply it saves), and
    while tracing it would bake one upstream value into the graph."""
    return (grad_loss.dim() == 0 and grad_loss.device.type == "cpu" and dispatch.plain_eager((grad_loss,))
            and grad_loss.item() == 1.0)


def _backward(ctx, grad_loss, *_):
    """d loss / d logits = grad_loss * the gradient saved by the forward. For the scalar 1 of a CPU
    loss.backward() the saved tensor itself is returned, and autograd hands it on (into logits.grad)
    without a copy. There is no second derivative: the saved gradient is a constant to autograd, so an
    eager backward with create_graph=True raises rather than return a gradient whose own gradient is
    silently wrong (torch.compile traces every backward in grad mode, so the check is for eager only)."""
    if not ctx.compute_grad:
        raise RuntimeError("electra_fast::rtd_loss was called with compute_grad=False; it has no gradient")
    if torch.is_grad_enabled() and dispatch.plain_eager(()):
        raise RuntimeError("electra_fast rtd_loss supports one backward only (its gradient is computed in the "
                           "forward); for a double backward (create_graph=True) use electra_fast.reference.rtd_loss")
    if grad_loss is None:
        return None, None, None, None, None, None
    (grad,) = ctx.saved_tensors
    grad_logits = grad if _is_one(grad_loss) else grad * grad_loss
    return grad_logits, None, None, None, None, None


RTD_LOSS = dispatch.Op(
    "rtd_loss",
    kernel="rtd_loss_fwd(Tensor logits, Tensor labels, Tensor? mask, Tensor? weight, int reduction, "
           "bool compute_grad) -> (Tensor, Tensor)",
    triton="rtd_loss.rtd_loss_fwd",
    reference=_reference_loss,
    reference_dtypes=(torch.float64,),
    kernel_autograd="rtd_loss_autograd",
)
rtd_loss_op = torch.library.custom_op("electra_fast::rtd_loss", _rtd_loss, mutates_args=())
rtd_loss_op.register_fake(_rtd_loss_fake)
rtd_loss_op.register_autograd(_backward, setup_context=_setup_context)


RTD_COUNTS = dispatch.Op(
    "rtd_counts",
    kernel="rtd_metrics(Tensor logits, Tensor labels, Tensor? mask) -> Tensor",
    triton="rtd_loss.rtd_counts",
    reference=reference.rtd_counts,
    reference_dtypes=(torch.float64,),
)


@torch.library.custom_op("electra_fast::rtd_counts", mutates_args=())
def rtd_counts_op(logits: torch.Tensor, labels: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """[4] int64 over real tokens: (real, true positives, predicted positives, actual positives)."""
    return dispatch.run(RTD_COUNTS, logits.device, logits.dtype, logits, labels, mask)


@rtd_counts_op.register_fake
def _(logits, labels, mask):
    return logits.new_empty(4, dtype=torch.int64)


def _as_binary_uint8(t: torch.Tensor, name: str, check_values: bool) -> torch.Tensor:
    """0/1 uint8, contiguous. bool is reinterpreted for free; other dtypes are checked to be 0/1
    (a host synchronisation on GPU: pass bool to avoid it) and converted."""
    if t.dtype == torch.bool:
        return t.contiguous().view(torch.uint8)
    if check_values and not torch.compiler.is_compiling():
        bad = (t != 0) & (t != 1)
        if bool(bad.any()):
            raise ValueError(f"{name} must hold only 0 and 1, found {t[bad].flatten()[0].item()!r}")
    return t.ne(0).contiguous().view(torch.uint8)


def _prepare(logits, labels, attention_mask, weight=None):
    check_tensor(logits, "logits", dtypes=_LOGIT_DTYPES)
    check_tensor(labels, "labels", dtypes=_LABEL_DTYPES)
    check_same_shape(labels, "labels", logits, "logits")
    check_same_device(labels, "labels", logits, "logits")
    if logits.numel() and logits.dim() == 0:
        raise ValueError("logits must have at least one dimension ([B, T])")
    y = _as_binary_uint8(labels, "labels", check_values=True)
    m = None
    if attention_mask is not None:
        check_tensor(attention_mask, "attention_mask", dtypes=_LABEL_DTYPES)
        check_same_shape(attention_mask, "attention_mask", logits, "logits")
        check_same_device(attention_mask, "attention_mask", logits, "logits")
        m = _as_binary_uint8(attention_mask, "attention_mask", check_values=True)
    w = None
    if weight is not None:
        check_tensor(weight, "weight", dtypes=_LOGIT_DTYPES)
        check_same_shape(weight, "weight", logits, "logits")
        check_same_device(weight, "weight", logits, "logits")
        if weight.requires_grad:
            raise ValueError("weight must not require grad (the RTD loss has no gradient w.r.t. weight); "
                             "pass weight.detach()")
        w = weight.to(torch.float64 if logits.dtype == torch.float64 else torch.float32).contiguous()
    return logits.contiguous(), y, m, w


def rtd_loss(logits: torch.Tensor, labels: torch.Tensor, attention_mask: Optional[torch.Tensor] = None, *,
             weight: Optional[torch.Tensor] = None, reduction: str = "mean") -> torch.Tensor:
    """Per-token replaced-token-detection loss (sigmoid BCE with logits), fused forward and backward.

    Args:
        logits: [B, T] float32/float16/bfloat16 (float64 runs on the reference), discriminator logits.
        labels: [B, T] bool, or 0/1 integers/floats; 1 = the token was replaced.
        attention_mask: [B, T], 1 = real token, 0 = padding (excluded from the loss and the mean).
        weight: optional [B, T] per-token weight (no gradient flows into it).
        reduction: "mean" (over real tokens, as ELECTRA), "sum" or "none".
    Returns:
        the loss in the logits' dtype: a scalar, or [B, T] for "none" (0 at padding).
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {list(REDUCTIONS)}, got {reduction!r}")
    x, y, m, w = _prepare(logits, labels, attention_mask, weight)
    compute_grad = torch.is_grad_enabled() and logits.requires_grad
    loss, _ = dispatch.call(RTD_LOSS, rtd_loss_op, x, y, m, w, REDUCTIONS[reduction], compute_grad)
    return loss


class RTDMetrics(NamedTuple):
    """Replaced-token-detection metrics over real tokens (0-dim float32 tensors; no host sync)."""

    accuracy: torch.Tensor
    precision: torch.Tensor
    recall: torch.Tensor
    replaced_fraction: torch.Tensor


def rtd_metrics(logits: torch.Tensor, labels: torch.Tensor,
                attention_mask: Optional[torch.Tensor] = None) -> RTDMetrics:
    """Accuracy, precision and recall of "replaced" (prediction: logit > 0) and the fraction of real
    tokens that were replaced, from one fused pass. Empty denominators give 0."""
    x, y, m, _ = _prepare(logits.detach(), labels, attention_mask)
    real, tp, pred, actual = rtd_counts_op(x, y, m).to(torch.float32).unbind(0)
    true_neg = real - pred - actual + tp
    return RTDMetrics(
        accuracy=(tp + true_neg) / real.clamp(min=1),
        precision=tp / pred.clamp(min=1),
        recall=tp / actual.clamp(min=1),
        replaced_fraction=actual / real.clamp(min=1),
    )
