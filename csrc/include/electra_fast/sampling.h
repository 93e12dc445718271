// Exact sampling of one row of logits by inverse CDF on the normaliser: the contract shared by
// sample_replace (electra_fast/ops/replace.py) and the fused generator head
// (electra_fast/ops/generator_head.py), so both return the same id for the same logits and uniform.
//
// Given logits x[0..V), temperature T > 0 and one uniform u in (0, 1) (word 0 of Philox counter
// `row` in stream (seed, offset), see philox.h):
//   mx  = max_i x_i
//   w_i = exp((x_i - mx) / T)              (0 for x_i = -inf)
//   Z   = sum_i w_i                       (w_i in fp32, sums accumulated in fp64)
//   id  = min { j : sum_{i<=j} w_i >= u * Z }
// If rounding leaves no such j (only possible when sums are taken in another order, e.g. by GPU block
// reductions), id = the last j with w_j > 0. T == 0 means argmax (the first maximum).
// The logits are read twice (max+normaliser, then the scan); nothing of size V is written.
// Why fp64 sums: with fp32 running sums the rounding error of S_j (~sqrt(j) * 6e-8 * Z) is a sizeable
// fraction of a typical gap w_j ~ Z / V, so backends summing in different orders would disagree on
// ~10% of rows at V = 30522. In fp64 the order no longer matters; what remains is exp itself (1-2 ulp
// between libm, CUDA and Triton), which moves a decision only when u*Z is within ~1e-7 * sqrt(V) gaps
// of a boundary: ~1e-5 per row. Cross-backend tests check identity at sizes where that is negligible.
#pragma once
#include "electra_fast/macros.h"

namespace electra_fast {

// Online (max, normaliser) of x/T, for kernels that see a row in pieces (the normaliser in fp64 when
// it feeds the sampling decision: use the double overload) over a stream of values: merge with another state, add one value.
struct SoftmaxState {
  float max;   // running max of x (not divided by T)
  float norm;  // sum of exp((x - max) / T)
};

EF_HOST_DEVICE EF_INLINE SoftmaxState softmax_state_init() { return SoftmaxState{-INFINITY, 0.f}; }

EF_HOST_DEVICE EF_INLINE SoftmaxState softmax_state_add(SoftmaxState s, float x, float inv_t) {
  if (x > s.max) {
    s.norm = s.norm * expf((s.max - x) * inv_t) + 1.f;  // exp(-inf) = 0 on the first finite value
    s.max = x;
  } else if (x > -INFINITY) {
    s.norm += expf((x - s.max) * inv_t);
  }
  return s;
}

EF_HOST_DEVICE EF_INLINE SoftmaxState softmax_state_merge(SoftmaxState a, SoftmaxState b, float inv_t) {
  if (b.max == -INFINITY) return a;
  if (a.max == -INFINITY) return b;
  const float m = a.max > b.max ? a.max : b.max;
  return SoftmaxState{m, a.norm * expf((a.max - m) * inv_t) + b.norm * expf((b.max - m) * inv_t)};
}

// The weight of one logit given the row max: exp((x - mx) / T).
EF_HOST_DEVICE EF_INLINE float sampling_weight(float x, float mx, float inv_t) { return expf((x - mx) * inv_t); }

// Sequential inverse-CDF scan over a whole row held in memory (CPU; CUDA threads scanning one row).
// Returns the sampled index, or -1 when the row has no finite logit.
template <typename Load>
EF_HOST_DEVICE EF_INLINE int64_t inverse_cdf_sample_row(const Load& load, int64_t v, float temperature, float u) {
  float mx = -INFINITY;
  int64_t argmax = -1;
  for (int64_t i = 0; i < v; ++i) {
    const float x = static_cast<float>(load(i));
    if (x > mx) {
      mx = x;
      argmax = i;
    }
  }
  if (argmax < 0 || temperature == 0.f) return argmax;
  const float inv_t = 1.f / temperature;
  double z = 0.0;
  for (int64_t i = 0; i < v; ++i) z += sampling_weight(static_cast<float>(load(i)), mx, inv_t);
  const double target = static_cast<double>(u) * z;
  double run = 0.0;
  int64_t last_positive = argmax;
  for (int64_t i = 0; i < v; ++i) {
    const float w = sampling_weight(static_cast<float>(load(i)), mx, inv_t);
    run += w;
    if (w > 0.f) last_positive = i;
    if (run >= target) return i;
  }
  return last_positive;
}

}  // namespace electra_fast
