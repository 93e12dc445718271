"""The public functional API of electra_fast: torch-style names and argument order.

Every function here is a fused op (electra_fast/ops/) that runs on the best backend for its tensors'
device (electra_fast.backend), differentiable where it says so, and traceable by torch.compile.
"""
from .ops.bias_gelu import bias_gelu
from .ops.dropout import dropout
from .ops.dropout_add_layer_norm import dropout_add_layer_norm
from .ops.early_exit import (Packed, Selected, exit_mask, gather_tokens, pad_packed, scatter_tokens, select_tokens,
                              unpad)
from .ops.generator_head import generator_head
from .ops.replace import mask_tokens, sample_replace, statistical_replace
from .ops.rtd_loss import RTDMetrics, rtd_loss, rtd_metrics

__all__ = [
    "bias_gelu",
    "dropout",
    "dropout_add_layer_norm",
    "Packed",
    "exit_mask",
    "gather_tokens",
    "pad_packed",
    "scatter_tokens",
    "unpad",
    "Selected",
    "select_tokens",
    "RTDMetrics",
    "generator_head",
    "rtd_loss",
    "rtd_metrics",
    "mask_tokens",
    "sample_replace",
    "statistical_replace",
]
