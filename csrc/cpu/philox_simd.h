// Philox4x32-10 on 16 counters at once (kLanes), for the CPU kernels: philox_rounds of philox.h on GCC vectors of
// uint32 lanes, the 32x32->64 multiply widened to uint64 lanes. Bit for bit the scalar stream (tests compare
// with electra_fast/reference/random.py). Always inlined, so each per-ISA build (cpu_isa.h) compiles it for
// its own instruction set.
#pragma once
#include <cstdint>

#include "electra_fast/macros.h"
#include "electra_fast/philox.h"
#include "fast_math.h"

namespace electra_fast {
namespace cpu {

// counters of kLanes (fast_math.h) lanes: one float vector's worth
static_assert(kLanes == 16, "philox_lanes_by_element's shuffles are written for 16 lanes");
typedef uint32_t vu32 __attribute__((vector_size(4 * kLanes)));
typedef uint64_t vu64 __attribute__((vector_size(8 * kLanes)));

struct VecMulHiLo32 {
  EF_ALWAYS_INLINE void operator()(uint32_t a, vu32 b, vu32& hi, vu32& lo) const {
    const vu64 p = __builtin_convertvector(b, vu64) * static_cast<uint64_t>(a);
    hi = __builtin_convertvector(p >> 32, vu32);
    lo = b * a;
  }
};

// The words of counters first .. first+15 of stream (seed, offset): w[k][lane] is word k of counter
// first + lane.
struct PhiloxLanes {
  vu32 w[4];
};

EF_ALWAYS_INLINE PhiloxLanes philox_lanes(uint64_t seed, uint64_t offset, uint64_t first) {
  vu32 lane;
  for (int i = 0; i < kLanes; ++i) lane[i] = static_cast<uint32_t>(i);
  const vu64 index = __builtin_convertvector(lane, vu64) + first;
  vu32 c0 = __builtin_convertvector(index, vu32);
  vu32 c1 = __builtin_convertvector(index >> 32, vu32);
  vu32 c2 = vu32{} + static_cast<uint32_t>(offset);
  vu32 c3 = vu32{} + static_cast<uint32_t>(offset >> 32);
  philox_rounds(c0, c1, c2, c3, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32), VecMulHiLo32{});
  return {{c0, c1, c2, c3}};
}

// word_to_uniform of philox.h on each lane: ((w >> 9) + 0.5) * 2^-23, exact in float32 (w >> 9 < 2^23, so
// the signed conversion is exact too).
EF_ALWAYS_INLINE vfloat word_to_uniform(vu32 w) {
  return (__builtin_convertvector((vint)(w >> 9), vfloat) + 0.5f) * 1.1920928955078125e-07f;  // 2^-23
}

// The 64 words of those counters in element order (element 4 * lane + k takes word k of its counter),
// as four vectors of 16: out[j][i] is element 16 j + i.
EF_ALWAYS_INLINE void philox_lanes_by_element(const PhiloxLanes& r, vu32 out[4]) {
  const vu32 a = __builtin_shufflevector(r.w[0], r.w[1], 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const vu32 b = __builtin_shufflevector(r.w[0], r.w[1], 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const vu32 c = __builtin_shufflevector(r.w[2], r.w[3], 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const vu32 d = __builtin_shufflevector(r.w[2], r.w[3], 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  out[0] = __builtin_shufflevector(a, c, 0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23);
  out[1] = __builtin_shufflevector(a, c, 8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31);
  out[2] = __builtin_shufflevector(b, d, 0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23);
  out[3] = __builtin_shufflevector(b, d, 8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31);
}

}  // namespace cpu
}  // namespace electra_fast
