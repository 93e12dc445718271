// Argument checks of the raw ops electra_fast_C::*, shared by their CPU and CUDA launchers, which run them
// before allocating or writing anything; and the dtype dispatch both use. Host code only.
//
// Every tensor argument must be contiguous and on the device of the op's first tensor, the one the
// launcher runs on (and, on CUDA, guards): a tensor on another device would be read through a pointer
// the kernel cannot use.
#pragma once
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>

#include "electra_fast/bce.h"
#include "electra_fast/compaction.h"
#include "electra_fast/masking.h"

namespace electra_fast {

// The floating dtypes the kernels take (float64 stays on the reference backend).
#define EF_DISPATCH_FLOAT_HALF_BF16(TYPE, NAME, ...)                  \
  AT_DISPATCH_SWITCH(TYPE, NAME, AT_DISPATCH_CASE(at::kFloat, __VA_ARGS__) \
                                     AT_DISPATCH_CASE(at::kHalf, __VA_ARGS__) \
                                     AT_DISPATCH_CASE(at::kBFloat16, __VA_ARGS__))

// The id dtypes the kernels take.
#define EF_DISPATCH_IDS(TYPE, NAME, ...) \
  AT_DISPATCH_SWITCH(TYPE, NAME, AT_DISPATCH_CASE(at::kInt, __VA_ARGS__) AT_DISPATCH_CASE(at::kLong, __VA_ARGS__))

inline bool is_kernel_float(at::ScalarType t) { return t == at::kFloat || t == at::kHalf || t == at::kBFloat16; }

inline void check_tensor(const at::Tensor& t, const char* name, const at::Device& device) {
  TORCH_CHECK(t.device() == device, name, " must be on ", device, " with the op's other tensors, got ", t.device());
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
}

inline void check_dtype(const at::Tensor& t, at::ScalarType dtype, const char* name) {
  TORCH_CHECK(t.scalar_type() == dtype, name, " must be ", dtype, ", got ", t.scalar_type());
}

inline void check_numel(const at::Tensor& t, int64_t n, const char* name) {
  TORCH_CHECK(t.numel() == n, name, " must have ", n, " elements, got ", t.numel());
}

// A tensor of `numel` elements of `dtype` on `device`.
inline void check_tensor(const at::Tensor& t, const char* name, const at::Device& device, at::ScalarType dtype,
                         int64_t numel) {
  check_tensor(t, name, device);
  check_dtype(t, dtype, name);
  check_numel(t, numel, name);
}

inline void check_kernel_float(const at::Tensor& t, const char* name) {
  TORCH_CHECK(is_kernel_float(t.scalar_type()), name, " must be float32, float16 or bfloat16, got ", t.scalar_type());
}

inline void check_ids(const at::Tensor& ids, const char* name, const at::Device& device) {
  check_tensor(ids, name, device);
  TORCH_CHECK(ids.scalar_type() == at::kLong || ids.scalar_type() == at::kInt, name, " must be int32 or int64, got ",
              ids.scalar_type());
}

// --- rtd_loss_fwd, rtd_metrics ----------------------------------------------------------------------

inline void check_rtd_args(const at::Tensor& logits, const at::Tensor& labels, const c10::optional<at::Tensor>& mask,
                           const c10::optional<at::Tensor>& weight) {
  const at::Device device = logits.device();
  check_tensor(logits, "logits", device);
  check_kernel_float(logits, "logits");
  check_tensor(labels, "labels", device, at::kByte, logits.numel());
  if (mask.has_value()) check_tensor(*mask, "attention_mask", device, at::kByte, logits.numel());
  if (weight.has_value()) check_tensor(*weight, "weight", device, at::kFloat, logits.numel());
}

inline void check_reduction(int64_t reduction) {
  TORCH_CHECK(reduction >= kReductionNone && reduction <= kReductionMean,
              "reduction must be 0 (none), 1 (sum) or 2 (mean), got ", reduction);
}

// --- mask_tokens, sample_replace, statistical_fill --------------------------------------------------

inline void check_mask_tokens_args(const at::Tensor& input_ids, const c10::optional<at::Tensor>& attention_mask,
                                   const at::Tensor& special_ids) {
  const at::Device device = input_ids.device();
  check_ids(input_ids, "input_ids", device);
  TORCH_CHECK(input_ids.dim() == 2, "input_ids must be [B, T], got shape ", input_ids.sizes());
  TORCH_CHECK(input_ids.size(1) < kMaxSeqLen, "sequences must be shorter than 2^31 tokens");
  if (attention_mask.has_value()) {
    check_tensor(*attention_mask, "attention_mask", device, at::kBool, input_ids.numel());
  }
  check_tensor(special_ids, "special_token_ids", device);
  check_dtype(special_ids, at::kLong, "special_token_ids");
}

inline void check_sample_replace_args(const at::Tensor& logits, const at::Tensor& input_ids,
                                      const at::Tensor& is_masked, double temperature) {
  const at::Device device = logits.device();
  check_tensor(logits, "logits", device);
  TORCH_CHECK(logits.dim() == 2, "logits must be [M, V], got shape ", logits.sizes());
  check_kernel_float(logits, "logits");
  check_ids(input_ids, "input_ids", device);
  check_tensor(is_masked, "is_masked", device, at::kBool, input_ids.numel());
  TORCH_CHECK(temperature >= 0.0, "temperature must be >= 0, got ", temperature);
}

inline void check_statistical_fill_args(const at::Tensor& input_ids, const at::Tensor& is_masked,
                                        const at::Tensor& row_of_token, const at::Tensor& cdf,
                                        const at::Tensor& offsets, const at::Tensor& members) {
  const at::Device device = input_ids.device();
  check_ids(input_ids, "input_ids", device);
  check_tensor(is_masked, "is_masked", device, at::kBool, input_ids.numel());
  for (const auto& [t, name] : {std::pair{&row_of_token, "row_of_token"}, {&offsets, "offsets"}, {&members, "members"}}) {
    check_tensor(*t, name, device);
    check_dtype(*t, at::kLong, name);
  }
  check_tensor(cdf, "cdf", device);
  TORCH_CHECK(cdf.scalar_type() == at::kDouble && cdf.dim() == 2 && cdf.size(0) >= 1 && cdf.size(1) >= 1,
              "cdf must be a non-empty float64 [R, K] tensor");
  TORCH_CHECK(offsets.numel() == cdf.size(1) + 1, "offsets must have K + 1 entries");
}

// --- generator_head_rows ----------------------------------------------------------------------------

inline void check_generator_head_rows_args(const at::Tensor& logits, const at::Tensor& targets,
                                           const at::Tensor& grad_scale, const at::Tensor& loss,
                                           const at::Tensor& samples, const c10::optional<at::Tensor>& grad_bias,
                                           double temperature, bool write_grad) {
  const at::Device device = logits.device();
  check_tensor(logits, "logits", device);
  TORCH_CHECK(logits.scalar_type() == at::kFloat && logits.dim() == 2, "logits must be a float32 [rows, V] chunk");
  const int64_t rows = logits.size(0);
  check_tensor(targets, "targets", device, at::kLong, rows);
  check_tensor(grad_scale, "grad_scale", device);
  TORCH_CHECK(grad_scale.scalar_type() == at::kFloat && (grad_scale.numel() == 1 || grad_scale.numel() == rows),
              "grad_scale must be float32 with 1 or rows elements");
  check_tensor(loss, "loss", device, at::kFloat, rows);
  check_tensor(samples, "samples", device, at::kLong, rows);
  if (grad_bias.has_value()) check_tensor(*grad_bias, "grad_bias", device, at::kFloat, logits.size(1));
  TORCH_CHECK(temperature >= 0.0, "temperature must be >= 0, got ", temperature);
  TORCH_CHECK(!grad_bias.has_value() || write_grad, "grad_bias needs write_grad");
}

// --- exit_mask, compact, gather_rows, scatter_rows --------------------------------------------------

inline void check_exit_mask_args(const at::Tensor& logits, const at::Tensor& active,
                                 const c10::optional<at::Tensor>& input_ids, const c10::optional<at::Tensor>& keep_ids) {
  const at::Device device = logits.device();
  check_tensor(logits, "exit_logits", device);
  check_kernel_float(logits, "exit_logits");
  check_tensor(active, "active", device, at::kByte, logits.numel());
  TORCH_CHECK(input_ids.has_value() == keep_ids.has_value(), "input_ids and keep_ids go together");
  if (keep_ids.has_value()) {
    check_tensor(*input_ids, "input_ids", device, at::kLong, logits.numel());
    check_tensor(*keep_ids, "keep_ids", device);
    check_dtype(*keep_ids, at::kLong, "keep_ids");
  }
}

inline void check_compact_args(const at::Tensor& active) {
  check_tensor(active, "active", active.device());
  TORCH_CHECK(active.scalar_type() == at::kByte && active.dim() == 2, "active must be a 2-D uint8 mask [B, T]");
}

inline void check_rows(const at::Tensor& t, const char* name, const at::Device& device) {
  check_tensor(t, name, device);
  TORCH_CHECK(t.dim() == 2, name, " must be 2-D [rows, H], got shape ", t.sizes());
}

inline void check_index(const at::Tensor& index, const at::Device& device) {
  check_tensor(index, "index", device);
  TORCH_CHECK(index.scalar_type() == at::kLong && index.dim() == 1, "index must be a 1-D int64 tensor, got ",
              index.scalar_type(), " of shape ", index.sizes());
}

inline void check_gather_rows_args(const at::Tensor& src, const at::Tensor& index) {
  check_rows(src, "src", src.device());
  check_index(index, src.device());
}

// scatter_rows' output before the copies: base cloned, or zeros [num_rows, H] when there is no base.
inline at::Tensor scatter_rows_output(const c10::optional<at::Tensor>& tokens, const at::Tensor& index,
                                      const c10::optional<at::Tensor>& base, int64_t num_rows) {
  TORCH_CHECK(tokens.has_value() || base.has_value(), "scatter_rows needs tokens or base");
  const at::Tensor& like = tokens.has_value() ? *tokens : *base;
  const at::Device device = like.device();
  check_rows(like, tokens.has_value() ? "tokens" : "base", device);
  check_index(index, device);
  const int64_t h = like.size(1), n = index.size(0);
  if (tokens.has_value()) {
    TORCH_CHECK(tokens->size(0) == n, "tokens must have one row per index entry (", n, "), got ", tokens->size(0));
  }
  if (!base.has_value()) return at::zeros({num_rows, h}, like.options());
  check_rows(*base, "base", device);
  TORCH_CHECK(base->size(0) == num_rows && base->size(1) == h && base->scalar_type() == like.scalar_type(),
              "base must be [", num_rows, ", ", h, "] of dtype ", like.scalar_type());
  return base->clone();
}

// --- select_tokens --------------------------------------------------------------------------------

inline void check_select_tokens_args(const at::Tensor& hidden, const at::Tensor& logits, const at::Tensor& rank,
                                     int64_t k) {
  const at::Device device = hidden.device();
  check_tensor(hidden, "hidden", device);
  TORCH_CHECK(hidden.dim() == 3, "hidden must be 3-D [B, T, H], got shape ", hidden.sizes());
  const int64_t rows = hidden.size(0), row_len = hidden.size(1);
  TORCH_CHECK(row_len < kMaxSelectLen, "select_tokens: rows must be shorter than 2^30 tokens, got T = ", row_len);
  check_tensor(logits, "logits", device);
  TORCH_CHECK(is_kernel_float(logits.scalar_type()) || logits.scalar_type() == at::kDouble,
              "logits must be float32, float16, bfloat16 or float64, got ", logits.scalar_type());
  TORCH_CHECK(logits.dim() == 2 && logits.size(0) == rows && logits.size(1) == row_len, "logits must be [B, T] = [",
              rows, ", ", row_len, "], got shape ", logits.sizes());
  check_tensor(rank, "rank", device);
  check_dtype(rank, at::kByte, "rank");
  TORCH_CHECK(rank.sizes() == logits.sizes(), "rank must be [B, T] = [", rows, ", ", row_len, "], got shape ",
              rank.sizes());
  TORCH_CHECK(k >= 0 && k <= row_len, "k must be in [0, T] = [0, ", row_len, "], got ", k);
}

// --- philox_words, philox_uniform -------------------------------------------------------------------

inline void check_philox_words_out(const at::Tensor& out) {
  check_tensor(out, "out", out.device());
  TORCH_CHECK(out.scalar_type() == at::kInt && out.dim() == 2 && out.size(1) == 4, "out must be int32 [n, 4]");
}

inline void check_philox_uniform_out(const at::Tensor& out) {
  check_tensor(out, "out", out.device());
  check_dtype(out, at::kFloat, "out");
}

// --- dropout ----------------------------------------------------------------------------------------

inline void check_dropout_args(const at::Tensor& x, double p) {
  check_tensor(x, "x", x.device());
  TORCH_CHECK(is_kernel_float(x.scalar_type()), "x must be float32, float16 or bfloat16, got ", x.scalar_type());
  TORCH_CHECK(p >= 0.0 && p <= 1.0, "p must be in [0, 1], got ", p);
}

// --- bias_gelu, bias_gelu_backward --------------------------------------------------------------------

// x [..., N] of a kernel float dtype, bias [N] of x's dtype, and (backward) grad of x's shape and dtype.
inline void check_bias_gelu_args(const at::Tensor& x, const at::Tensor& bias, const at::Tensor* grad) {
  const at::Device device = x.device();
  check_tensor(x, "x", device);
  check_kernel_float(x, "x");
  TORCH_CHECK(x.dim() >= 1, "x must have at least one dimension [..., N], got a 0-d tensor");
  TORCH_CHECK(bias.dim() == 1, "bias must be 1-D [N], got shape ", bias.sizes());
  check_tensor(bias, "bias", device, x.scalar_type(), x.size(-1));
  if (grad != nullptr) {
    check_tensor(*grad, "grad", device, x.scalar_type(), x.numel());
    TORCH_CHECK(grad->sizes() == x.sizes(), "grad must have x's shape ", x.sizes(), ", got ", grad->sizes());
  }
}

// --- dropout_add_layer_norm ---------------------------------------------------------------------------

// x [..., N] and residual of x's shape (any kernel float dtypes); weight and bias [N] of residual's dtype.
inline void check_dropout_add_layer_norm_args(const at::Tensor& x, const at::Tensor& residual, const at::Tensor& weight,
                                              const at::Tensor& bias, double eps, double p) {
  const at::Device device = x.device();
  check_tensor(x, "x", device);
  check_kernel_float(x, "x");
  TORCH_CHECK(x.dim() >= 1 && x.size(-1) > 0, "x must have a non-empty last (normalized) dimension, got shape ",
              x.sizes());
  check_tensor(residual, "residual", device);
  check_kernel_float(residual, "residual");
  TORCH_CHECK(residual.sizes() == x.sizes(), "residual must have x's shape ", x.sizes(), ", got ", residual.sizes());
  check_tensor(weight, "weight", device, residual.scalar_type(), x.size(-1));
  check_tensor(bias, "bias", device, residual.scalar_type(), x.size(-1));
  TORCH_CHECK(eps >= 0.0, "eps must be >= 0, got ", eps);
  TORCH_CHECK(p >= 0.0 && p <= 1.0, "p must be in [0, 1], got ", p);
}

// grad and s [..., N] of one dtype, mean and rstd float32 [s.numel() / N], weight [N] of s's dtype.
inline void check_dropout_add_layer_norm_backward_args(const at::Tensor& grad, const at::Tensor& s,
                                                       const at::Tensor& mean, const at::Tensor& rstd,
                                                       const at::Tensor& weight, double p, at::ScalarType x_dtype) {
  const at::Device device = s.device();
  check_tensor(s, "s", device);
  check_kernel_float(s, "s");
  TORCH_CHECK(s.dim() >= 1 && s.size(-1) > 0, "s must have a non-empty last (normalized) dimension, got shape ",
              s.sizes());
  check_tensor(grad, "grad", device, s.scalar_type(), s.numel());
  const int64_t rows = s.numel() / s.size(-1);
  check_tensor(mean, "mean", device, at::kFloat, rows);
  check_tensor(rstd, "rstd", device, at::kFloat, rows);
  check_tensor(weight, "weight", device, s.scalar_type(), s.size(-1));
  TORCH_CHECK(is_kernel_float(x_dtype), "x_dtype must be float32, float16 or bfloat16, got ", x_dtype);
  TORCH_CHECK(p >= 0.0 && p <= 1.0, "p must be in [0, 1], got ", p);
}

}  // namespace electra_fast
