// Per-element math of the replaced-token-detection loss, shared by the CPU and CUDA kernels.
// Twins: electra_fast/reference/rtd_loss.py (oracle) and electra_fast/triton/rtd_loss.py.
//
//   loss(x, y) = max(x, 0) - x*y + log1p(exp(-|x|))     (= BCE(sigmoid(x), y), stable for any |x|)
//   dloss/dx   = sigmoid(x) - y
// Both come from one e = exp(-|x|): sigmoid(x) = 1/(1+e) for x >= 0 and e/(1+e) otherwise.
// Value selects only, so the same code runs on float vectors in the CPU kernel.
#pragma once
#include "electra_fast/macros.h"

namespace electra_fast {

// Reductions of the RTD loss, in the order of the `reduction` integer the raw kernels take.
enum Reduction : int64_t { kReductionNone = 0, kReductionSum = 1, kReductionMean = 2 };

// The loss given log1p(e). Templates over the value type: float on the GPU, a GCC vector of floats in
// the CPU kernel (its own SIMD exp/log1p supply e and log1p(e)); written with value selects only (T{} is
// 0), which both kinds of T support. Always inlined: the CPU kernel's per-ISA builds (cpu_isa.h) must
// compile them for their own instruction set.
template <typename T>
EF_HOST_DEVICE EF_ALWAYS_INLINE T bce_loss_from_log1p(T x, T y, T log1p_e) {
  const T relu = x > T{} ? x : T{};
  return relu - x * y + log1p_e;
}

EF_HOST_DEVICE EF_INLINE float bce_loss_from_exp(float x, float y, float e) {
  return bce_loss_from_log1p(x, y, log1pf(e));
}

template <typename T>
EF_HOST_DEVICE EF_ALWAYS_INLINE T bce_grad_from_exp(T x, T y, T e) {
  const T inv = 1.f / (1.f + e);
  const T e_inv = e * inv;
  const T sig = x >= T{} ? inv : e_inv;
  return sig - y;
}

// Confusion counts of one token for the RTD metrics: prediction "replaced" iff logit > 0.
struct RtdCounts {
  int64_t real, true_pos, pred_pos, actual_pos;
};

}  // namespace electra_fast
