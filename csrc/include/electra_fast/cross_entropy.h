// Per-row math of the fused generator head (softmax cross-entropy, its gradient and one sample per
// row), shared by csrc/cpu/generator_head.cpp and csrc/cuda/generator_head.cu. Twins:
// electra_fast/reference/generator_head.py (oracle) and electra_fast/triton/generator_head.py.
//
// One row of logits x[0..V), target t, gradient scale s (1/#rows for "mean", 1 for "sum", the
// upstream gradient of the row when "none" is differentiated by recomputation):
//   mx   = max_i x_i,   e_i = exp(x_i - mx),   Z = sum_i e_i   (fp64 sum)
//   loss = log Z + mx - x_t                         0 when t == ignore_index
//   dx_i = s * (e_i / Z - [i == t])                  0 when t == ignore_index
// The sample is sampling.h's, drawn by the same routine as sample_replace's (one uniform per row: word 0
// of Philox counter `row` in stream (seed, offset)), whose row max the loss reuses.
#pragma once
#include "electra_fast/macros.h"
#include "electra_fast/philox.h"

namespace electra_fast {

EF_HOST_DEVICE EF_INLINE bool ce_row_ignored(int64_t target, int64_t ignore_index) { return target == ignore_index; }

EF_HOST_DEVICE EF_INLINE bool ce_target_in_range(int64_t target, int64_t v) { return target >= 0 && target < v; }

// The row's gradient scale: one value for the whole chunk (n_scale == 1) or one per row.
EF_HOST_DEVICE EF_INLINE float ce_row_scale(const float* grad_scale, int64_t n_scale, int64_t row) {
  return grad_scale[n_scale == 1 ? 0 : row];
}

EF_HOST_DEVICE EF_INLINE float ce_loss(float mx, double z, float x_target) {
  return static_cast<float>(log(z) + static_cast<double>(mx) - static_cast<double>(x_target));
}

// dx_i from e_i and p_scale = s / Z.
EF_HOST_DEVICE EF_INLINE float ce_grad(float e, float p_scale, bool is_target, float s) {
  return e * p_scale - (is_target ? s : 0.f);
}

// The row's uniform for sampling: word 0 of counter `row` (the row's index in the whole [M] batch).
EF_HOST_DEVICE EF_INLINE float ce_row_uniform(uint64_t seed, uint64_t offset, uint64_t row) {
  return word_to_uniform(philox_words(seed, offset, row).w[0]);
}

}  // namespace electra_fast
