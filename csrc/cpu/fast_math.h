// Explicit-SIMD float exp and log1p on the ranges the RTD loss needs, on GCC vector types of 16 floats
// (one AVX-512 register; two AVX or four SSE registers in the other builds, see cpu_isa.h: the loss is
// throughput-bound, and a wider vector is the only way to more flops per instruction on AVX-512, while
// on AVX2 the pair of independent halves hides the latency of the polynomial chains). Cephes-style
// polynomials; measured against double-precision exp/log1p over 1e8 points: exp_nonpos <= 1.5 ulp,
// log1p_unit <= 2.1 ulp. Why not scalar loops left to the auto-vectoriser: glibc before 2.38 has no SIMD
// log1pf, and GCC (with the default -ftrapping-math) keeps a branch, hence a scalar loop, wherever jump
// threading puts floating-point arithmetic under a condition; explicit vectors do not depend on either.
#pragma once
#include <cstdint>
#include <cstring>

#include "electra_fast/macros.h"

namespace electra_fast {
namespace cpu {

constexpr int kLanes = 16;
typedef float vfloat __attribute__((vector_size(4 * kLanes)));
typedef int32_t vint __attribute__((vector_size(4 * kLanes)));

EF_ALWAYS_INLINE vfloat vsplat(float v) { return vfloat{} + v; }

EF_ALWAYS_INLINE vfloat vload(const float* p) {
  vfloat v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

EF_ALWAYS_INLINE void vstore(float* p, vfloat v) { std::memcpy(p, &v, sizeof v); }

// kLanes bytes widened to floats (0..255 -> 0.0..255.0). A loop, which the vectoriser turns into one
// zero-extension and one conversion: GCC builds __builtin_convertvector from a byte vector lane by lane.
EF_ALWAYS_INLINE vfloat vload_bytes(const uint8_t* p) {
  vfloat v;
  for (int k = 0; k < kLanes; ++k) v[k] = static_cast<float>(p[k]);
  return v;
}

EF_ALWAYS_INLINE float vsum(vfloat v) {
  float s = 0.f;
  for (int k = 0; k < kLanes; ++k) s += v[k];
  return s;
}

// exp(t) for t <= 0. Below -87 (where exp(t) < 1.7e-38 leaves the normal range) it returns exp(-87):
// callers only add it to 1 or to an O(1) term, where the difference is far below one ulp.
EF_ALWAYS_INLINE vfloat exp_nonpos(vfloat t) {
  t = t < vsplat(-87.f) ? vsplat(-87.f) : t;
  // t = n ln2 + r, |r| <= ln2 / 2; n rounded to nearest by the 1.5 * 2^23 trick (exact for |n| < 2^22)
  const vfloat n = (t * 1.44269504088896341f + 12582912.f) - 12582912.f;
  const vfloat r = (t - n * 0.693359375f) - n * -2.12194440e-4f;  // ln2 split in two for an exact n ln2
  vfloat p = vsplat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const vfloat er = p * r * r + r + 1.f;
  const vint two_n = (__builtin_convertvector(n, vint) + 127) << 23;  // 2^n as float bits, n in [-126, 0]
  return er * __builtin_bit_cast(vfloat, two_n);
}

// log1p(e) for e in [0, 1]. log(1 + f) = f - f^2/2 + f^3 P(f) holds for f in [sqrt(1/2) - 1, sqrt(2) - 1];
// e above sqrt(2) - 1 is brought there by log(1 + e) = ln2 + log(1 + (e - 1) / 2) (e - 1 is exact in
// float for e in [1/2, 1], and off by at most 2^-25 for e in (0.414, 1/2)).
EF_ALWAYS_INLINE vfloat log1p_unit(vfloat e) {
  const vint big = e > vsplat(0.41421356237f);
  const vfloat f = big ? (e - 1.f) * 0.5f : e;
  const vfloat z = f * f;
  vfloat p = vsplat(7.0376836292e-2f);
  p = p * f - 1.1514610310e-1f;
  p = p * f + 1.1676998740e-1f;
  p = p * f - 1.2420140846e-1f;
  p = p * f + 1.4249322787e-1f;
  p = p * f - 1.6668057665e-1f;
  p = p * f + 2.0000714765e-1f;
  p = p * f - 2.4999993993e-1f;
  p = p * f + 3.3333331174e-1f;
  const vfloat r = f + (f * z * p - 0.5f * z);
  return big ? (r + -2.12194440e-4f) + 0.693359375f : r;
}

}  // namespace cpu
}  // namespace electra_fast
