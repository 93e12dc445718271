// Per-element math of masking and of the statistical generators, shared by the CPU and CUDA kernels
// (csrc/cpu/replace.cpp, csrc/cuda/replace.cu). Twins: electra_fast/reference/replace.py (oracle) and
// electra_fast/triton/replace.py.
//
// Random words: position p = b*T + t of a [B, T] batch uses Philox counter p of stream (seed, offset):
//   word 0  selection key of mask_tokens / statistical_replace (the k smallest keys among a row's
//           candidates are masked: a uniform k-subset; ties broken by position)
//   word 1  mask_tokens: uniform u1, the position becomes [MASK] iff u1 < mask_fraction (fp32 compare)
//   word 2  statistical_replace: uniform that picks the replacement's cluster (inverse CDF, fp64)
//   word 3  statistical_replace: picks the token inside that cluster, floor(w3 * size / 2^32)
#pragma once
#include "electra_fast/macros.h"
#include "electra_fast/philox.h"

namespace electra_fast {

constexpr int kSelectWord = 0;
constexpr int kMaskWord = 1;
constexpr int kClusterWord = 2;
constexpr int kTokenWord = 3;

// Positions must fit in 31 bits so that (key << 31) | t is a unique non-negative int64.
constexpr int64_t kMaxSeqLen = int64_t(1) << 31;
constexpr int64_t kNotCandidate = INT64_MAX;

// a * b rounded to double. A fused multiply-add (nvcc's default; GCC's -ffp-contract=fast on an FMA
// target) could otherwise carry the exact product into the next operation.
EF_HOST_DEVICE EF_INLINE double product_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  volatile double p = a * b;  // a stored value cannot be fused with what reads it
  return p;
#endif
}

// Number of positions to mask in a row: max(1, round_half_even(n_real * mask_prob)), at most the number
// of candidates; 0 when the row has no candidate (as ELECTRA's official masking, without max_predictions).
// x = n_real * mask_prob is rounded before anything else (at 0.15, n_real = 10 gives exactly 1.5, while
// the exact product is just below it), and compared with r + 1/2 rather than subtracted from, as in the
// Triton kernel, which has no explicitly rounded multiply.
EF_HOST_DEVICE EF_INLINE int64_t masked_count(int64_t n_real, int64_t n_candidates, double mask_prob) {
  if (n_candidates <= 0) return 0;
  const double x = product_rn(static_cast<double>(n_real), mask_prob);
  int64_t r = static_cast<int64_t>(x);  // floor: x >= 0
  const double half = static_cast<double>(r) + 0.5;
  if (x > half || (x == half && (r & 1))) ++r;
  if (r < 1) r = 1;
  return r < n_candidates ? r : n_candidates;
}

// The ordering key of a candidate position: unique, uniform in its top 32 bits.
EF_HOST_DEVICE EF_INLINE int64_t selection_key(uint32_t w0, int64_t t) {
  return (static_cast<int64_t>(w0) << 31) | t;
}

// First index j of an ascending fp64 table cdf[0..n) with cdf[j] > target (n - 1 if none). With
// target > 0, entries of zero weight (cdf[j] == cdf[j-1]) are never returned.
EF_HOST_DEVICE EF_INLINE int64_t cdf_search(const double* cdf, int64_t n, double target) {
  int64_t lo = 0, hi = n - 1;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (cdf[mid] > target) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  return lo;
}

// floor(w * n / 2^32): an index in [0, n) from one 32-bit word (bias below n / 2^32).
EF_HOST_DEVICE EF_INLINE int64_t word_to_index(uint32_t w, int64_t n) {
  return static_cast<int64_t>((static_cast<uint64_t>(w) * static_cast<uint64_t>(n)) >> 32);
}

// A statistical generator's tables (built by electra_fast/samplers.py):
//   row_of_token [V]  which cdf row an original token uses (its cluster; R - 1 = "no cluster")
//   cdf [R, K]        fp64 cumulative weights of the K clusters, per row
//   offsets [K + 1], members [N]: the tokens of cluster c are members[offsets[c] .. offsets[c+1])
struct SamplerTables {
  const int64_t* row_of_token;
  int64_t vocab;
  const double* cdf;
  int64_t rows;
  int64_t clusters;
  const int64_t* offsets;
  const int64_t* members;
};

// The replacement of original token `orig` from the words of its position. An id outside [0, V) uses
// the last row (the wrapper reports such ids as an error; this keeps every read in bounds).
EF_HOST_DEVICE EF_INLINE int64_t statistical_draw(const SamplerTables& s, int64_t orig, const Philox4& r) {
  const int64_t row = (orig >= 0 && orig < s.vocab) ? s.row_of_token[orig] : s.rows - 1;
  const double* c = s.cdf + row * s.clusters;
  const double target = static_cast<double>(word_to_uniform(r.w[kClusterWord])) * c[s.clusters - 1];
  const int64_t cluster = cdf_search(c, s.clusters, target);
  const int64_t begin = s.offsets[cluster];
  return s.members[begin + word_to_index(r.w[kTokenWord], s.offsets[cluster + 1] - begin)];
}

}  // namespace electra_fast
