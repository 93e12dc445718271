// Exact sampling of one row of logits by inverse CDF on the normaliser: the contract shared by
// sample_replace (electra_fast/ops/replace.py) and the fused generator head
// (electra_fast/ops/generator_head.py), so both return the same id for the same logits and uniform.
// Implementations: cpu::sample_row below, csrc/cuda/sampling.cuh (one block per row) and
// electra_fast/triton/sampling.py; oracle: electra_fast/reference/sampling.py.
//
// Given logits x[0..V), temperature T >= 0, an excluded id `skip` (or none) and one uniform u in (0, 1)
// (word 0 of Philox counter `row` in stream (seed, offset), see philox.h):
//   inv_t = float(1.0 / T)                 (rounded once from double, on the host: inverse_temperature)
//   mx  = max_{i != skip} x_i
//   w_i = exp((x_i - mx) * inv_t)          (fp32; 0 for x_i = -inf and for i = skip)
//   S_j = sum_{i<=j} w_i, Z = S_{V-1}      (sums accumulated in fp64), t = u * Z
//   id  = min { j : w_j > 0 and S_j >= t }
// Near ties: when t lies within kNearTie * Z of S_{id-1} or S_id, or rounding leaves no such j (possible
// when sums are taken in another order, e.g. by GPU block scans), the row is decided again by the same rule
// from fp64 weights
//   w64_i = exp(double(x_i - mx) * double(inv_t))   (x_i - mx in fp32; the product is exact in fp64)
// and, if that leaves no j either, id = the last j with w64_j > 0. T == 0 means argmax (the first maximum).
// A row holding NaN or +inf, or no finite logit besides `skip`, has no sample (RowStatus).
// The logits are read twice (max, then weights), a near tie twice more; nothing of size V is written.
// Why fp64 sums: with fp32 running sums the rounding error of S_j (~sqrt(j) * 6e-8 * Z) is a sizeable
// fraction of a typical gap w_j ~ Z / V, so backends summing in different orders would disagree on
// ~10% of rows at V = 30522. In fp64 the order no longer matters; what remains is exp itself: libm, the
// vector expf here, Sleef (the reference on CPU), CUDA and Triton differ by 1-2 ulp per weight, which moves
// S and t by a few 1e-9 of Z in practice (their errors have both signs; ~3e-5 of rows disagreed at
// V = 30522 without the fp64 step). kNearTie = 2^-22 covers weights that differ between two backends by up to
// 2^-23 of themselves (an ulp) even with every difference of one sign: S - t moves by at most
// 2^-23 * (S + t) <= 2^-22 * Z. The fp64 weights agree to ~1e-16, so two backends can
// still differ only when t is within ~1e-13 * Z of a boundary (~1e-9 of rows). The fp64 step runs on at
// most about 2 * kNearTie * V of rows (1.5% at V = 30522 for flat logits, fewer for peaked ones), at the
// cost of one more read of the row with vectorised fp64 exp.
#pragma once
#include "electra_fast/macros.h"

#if !defined(__CUDACC__) && !defined(__HIPCC__)
#include <algorithm>
#include <type_traits>

#include "electra_fast/cpu_isa.h"  // vector expf
#endif

namespace electra_fast {

// Outcome of one row; sample_replace reports how many rows ended each way but sampled.
enum RowStatus : int8_t { kRowSampled = 0, kRowNonFinite = 1, kRowEmpty = 2 };

// inv_t of the contract (host side; T == 0, argmax, gives 0).
inline float inverse_temperature(double temperature) {
  return temperature > 0.0 ? static_cast<float>(1.0 / temperature) : 0.f;
}

// Relative to Z, how close to a boundary of the fp32 weights' CDF t must be for the row to be decided
// from fp64 weights (electra_fast/reference/sampling.py: NEAR_TIE).
constexpr double kNearTie = 0x1p-22;

// The weight of one logit given the row max.
EF_HOST_DEVICE EF_ALWAYS_INLINE float sampling_weight(float x, float mx, float inv_t) {
  return expf((x - mx) * inv_t);
}

// Its fp64 twin for near ties: the same fp32 difference, an exact fp64 product, fp64 exp.
EF_HOST_DEVICE EF_ALWAYS_INLINE double sampling_weight_fp64(float x, float mx, float inv_t) {
  const float d = x - mx;
  return exp(static_cast<double>(d) * static_cast<double>(inv_t));
}

#if !defined(__CUDACC__) && !defined(__HIPCC__)
namespace cpu {

// The row is read in chunks of kSampleChunk values; float rows are read in place, half/bfloat16 chunks
// are converted to an L1 buffer. The weight pass keeps one fp64 partial sum per chunk, so the sample is
// found by a scan of V / kSampleChunk partials plus one chunk recomputed by the same code (identical
// weights), not by a sequential fp64 prefix sum over the whole row.
constexpr int64_t kSampleChunk = 512;

// fp64 partial sums a row of v logits needs (the `partial` argument of sample_row).
inline int64_t sample_row_partials(int64_t v) { return (v + kSampleChunk - 1) / kSampleChunk; }

struct RowSample {
  int64_t id;        // the sample (-1 unless status == kRowSampled)
  RowStatus status;
  float max;         // max_{i != skip} x_i, NaN ignored (the generator head's loss reuses it)
};

// max(x) (NaN ignored) and whether x holds NaN or +inf, in one read.
EF_ALWAYS_INLINE float chunk_max_checked(const float* __restrict x, int64_t n, bool& bad) {
  float m = -INFINITY;
  int flag = 0;
#pragma omp simd reduction(max : m) reduction(| : flag)
  for (int64_t i = 0; i < n; ++i) {
    flag |= (x[i] != x[i]) | (x[i] == INFINITY);
    m = x[i] > m ? x[i] : m;
  }
  bad = flag != 0;
  return m;
}

// Values begin .. begin+n of a row as float: in place for float rows, converted into buf otherwise.
template <typename scalar_t>
EF_ALWAYS_INLINE const float* load_chunk(const scalar_t* row, int64_t begin, int64_t n, float* __restrict buf) {
  if constexpr (std::is_same_v<scalar_t, float>) {
    return row + begin;
  } else {
    for (int64_t i = 0; i < n; ++i) buf[i] = static_cast<float>(row[begin + i]);
    return buf;
  }
}

// w = the weights of x (w[skip] = 0) and their fp64 sum: the fp32 weights for weight_t = float, the fp64 ones
// for double. Both passes of a scan run this on the same input, so the weights it sees are exactly the ones
// that were summed.
template <typename weight_t>
EF_ALWAYS_INLINE double chunk_weights(const float* __restrict x, int64_t n, float mx, float inv_t, int64_t skip,
                                      weight_t* __restrict w) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    if constexpr (std::is_same_v<weight_t, float>) {
      w[i] = sampling_weight(x[i], mx, inv_t);
    } else {
      w[i] = sampling_weight_fp64(x[i], mx, inv_t);
    }
  }
  if (skip >= 0 && skip < n) w[skip] = 0;
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(w[i]);
  return s;
}

// The inverse-CDF scan of row[0..v) (id `skip` excluded, row max mx) over the weights of weight_t (see
// chunk_weights): one fp64 partial sum per chunk, a scan of the partials, then the one chunk holding t = u * Z
// recomputed by the same code. Returns the first j with w_j > 0 and S_j >= t, or -1 when that is within
// near_tie * Z of S_{j-1} or S_j or no j is found (fp64 rounding between the chunks' sums and the running sum);
// with near_tie < 0 there are no near ties and a row without a hit gives its last positive weight (the max
// itself has weight 1, so there is one). partial holds sample_row_partials(v) values.
template <typename weight_t, typename scalar_t>
EF_ALWAYS_INLINE int64_t inverse_cdf(const scalar_t* row, int64_t v, int64_t skip, float mx, float inv_t, float u,
                                     double near_tie, double* partial) {
  alignas(64) float buf[kSampleChunk];
  alignas(64) weight_t w[kSampleChunk];
  const int64_t chunks = sample_row_partials(v);
  double z = 0.0;
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t begin = c * kSampleChunk, n = std::min(kSampleChunk, v - begin);
    partial[c] = chunk_weights(load_chunk(row, begin, n, buf), n, mx, inv_t, skip - begin, w);
    z += partial[c];
  }
  const double target = static_cast<double>(u) * z;
  const double margin = near_tie * z;
  double run = 0.0;
  int64_t c = 0;
  while (c + 1 < chunks && run + partial[c] < target) run += partial[c++];
  const int64_t begin = c * kSampleChunk, n = std::min(kSampleChunk, v - begin);
  chunk_weights(load_chunk(row, begin, n, buf), n, mx, inv_t, skip - begin, w);
  for (int64_t i = 0; i < n; ++i) {
    const double before = run;
    run += w[i];
    if (w[i] > 0 && run >= target) {
      const bool near = margin >= 0.0 && (run - target < margin || target - before < margin);
      return near ? -1 : begin + i;
    }
  }
  if (near_tie >= 0.0) return -1;
  for (c = chunks - 1; c >= 0; --c) {
    const int64_t first = c * kSampleChunk, len = std::min(kSampleChunk, v - first);
    chunk_weights(load_chunk(row, first, len, buf), len, mx, inv_t, skip - first, w);
    for (int64_t i = len - 1; i >= 0; --i) {
      if (w[i] > 0) return first + i;
    }
  }
  return -1;  // unreachable: mx is finite, its weight is 1
}

// The contract on row[0..v) with id `skip` excluded (-1: none); partial holds sample_row_partials(v) values.
template <typename scalar_t>
EF_ALWAYS_INLINE RowSample sample_row(const scalar_t* row, int64_t v, int64_t skip, float inv_t, bool greedy,
                                      float u, double* partial) {
  alignas(64) float buf[kSampleChunk];
  const int64_t chunks = sample_row_partials(v);
  float mx = -INFINITY;
  bool bad = false;
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t begin = c * kSampleChunk, n = std::min(kSampleChunk, v - begin);
    const float* x = load_chunk(row, begin, n, buf);
    bool chunk_bad;
    float m = chunk_max_checked(x, n, chunk_bad);
    bad |= chunk_bad;
    if (skip >= begin && skip < begin + n && x[skip - begin] == m) {
      m = -INFINITY;  // the excluded id was this chunk's max: take the max of the others
      for (int64_t i = 0; i < n; ++i) m = (i != skip - begin && x[i] > m) ? x[i] : m;
    }
    mx = std::max(mx, m);
  }
  if (bad) return {-1, kRowNonFinite, mx};
  if (mx == -INFINITY) return {-1, kRowEmpty, mx};
  if (greedy) {
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t begin = c * kSampleChunk, n = std::min(kSampleChunk, v - begin);
      const float* x = load_chunk(row, begin, n, buf);
      for (int64_t i = 0; i < n; ++i) {
        if (x[i] == mx && begin + i != skip) return {begin + i, kRowSampled, mx};
      }
    }
  }
  int64_t id = inverse_cdf<float>(row, v, skip, mx, inv_t, u, kNearTie, partial);
  if (id < 0) id = inverse_cdf<double>(row, v, skip, mx, inv_t, u, -1.0, partial);  // a near tie: fp64 decides
  return {id, kRowSampled, mx};
}

}  // namespace cpu
#endif

}  // namespace electra_fast
