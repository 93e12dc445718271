// Per-element math of the replaced-token-detection loss, shared by the CPU and CUDA kernels.
// Twins: electra_fast/reference/rtd_loss.py (oracle) and electra_fast/triton/rtd_loss.py.
//
//   loss(x, y) = max(x, 0) - x*y + log1p(exp(-|x|))     (= BCE(sigmoid(x), y), stable for any |x|)
//   dloss/dx   = sigmoid(x) - y
// Both come from one e = exp(-|x|): sigmoid(x) = 1/(1+e) for x >= 0 and e/(1+e) otherwise.
// Branch-free selects so the CPU loops vectorise.
#pragma once
#include "electra_fast/macros.h"

namespace electra_fast {

// Reductions of the RTD loss, in the order of the `reduction` integer the raw kernels take.
enum Reduction : int64_t { kReductionNone = 0, kReductionSum = 1, kReductionMean = 2 };

EF_HOST_DEVICE EF_INLINE float bce_loss_from_exp(float x, float y, float e) {
  const float relu = x > 0.f ? x : 0.f;
  return relu - x * y + log1pf(e);
}

EF_HOST_DEVICE EF_INLINE float bce_grad_from_exp(float x, float y, float e) {
  const float inv = 1.f / (1.f + e);
  const float sig = x >= 0.f ? inv : e * inv;
  return sig - y;
}

EF_HOST_DEVICE EF_INLINE float bce_with_logits(float x, float y) {
  return bce_loss_from_exp(x, y, expf(-fabsf(x)));
}

EF_HOST_DEVICE EF_INLINE float bce_with_logits_grad(float x, float y) {
  return bce_grad_from_exp(x, y, expf(-fabsf(x)));
}

// Confusion counts of one token for the RTD metrics: prediction "replaced" iff logit > 0.
struct RtdCounts {
  int64_t real, true_pos, pred_pos, actual_pos;
};

}  // namespace electra_fast
