// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011), the one
// counter-based RNG of electra_fast. Bit-identical twins: electra_fast/reference/random.py (torch
// integer math) and electra_fast/triton/random.py (Triton).
//
// Counter layout (documented contract, see electra_fast/random.py):
//   key     = (lo32(seed), hi32(seed))
//   counter = (lo32(index), hi32(index), lo32(offset), hi32(offset))
// where `index` is the element's position in the stream and `offset` selects the stream.
// One counter yields four 32-bit words; an op that needs several random numbers for one element
// takes words 0..3 of that element's counter (each op documents which word means what).
// A word w becomes a float32 uniform as ((w >> 9) + 0.5) * 2^-23 = (2k+1) * 2^-24: exact in fp32,
// strictly inside (0, 1), so log(u) and log(-log(u)) are always finite.
#pragma once
#include "electra_fast/macros.h"

namespace electra_fast {

struct Philox4 {
  uint32_t w[4];
};

constexpr uint32_t kPhiloxM0 = 0xD2511F53u;
constexpr uint32_t kPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u;
constexpr uint32_t kPhiloxW1 = 0xBB67AE85u;

// (hi, lo) 32-bit halves of a * b.
struct MulHiLo32 {
  EF_HOST_DEVICE EF_INLINE void operator()(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) const {
    const uint64_t p = static_cast<uint64_t>(a) * static_cast<uint64_t>(b);
    hi = static_cast<uint32_t>(p >> 32);
    lo = static_cast<uint32_t>(p);
  }
};

// The ten rounds, in place, on counter words of type T: uint32_t, or in the CPU kernels a SIMD vector of
// uint32 lanes (csrc/cpu/philox_simd.h) with its own mulhilo; T's lanes wrap as uint32_t does.
template <typename T, typename MulHiLo>
EF_HOST_DEVICE EF_ALWAYS_INLINE void philox_rounds(T& c0, T& c1, T& c2, T& c3, uint32_t k0, uint32_t k1,
                                                   MulHiLo mulhilo) {
#pragma unroll
  for (int round = 0; round < 10; ++round) {
    T hi0, lo0, hi1, lo1;
    mulhilo(kPhiloxM0, c0, hi0, lo0);
    mulhilo(kPhiloxM1, c2, hi1, lo1);
    const T n0 = hi1 ^ c1 ^ k0;
    const T n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
}

EF_HOST_DEVICE EF_INLINE Philox4 philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3,
                                                uint32_t k0, uint32_t k1) {
  philox_rounds(c0, c1, c2, c3, k0, k1, MulHiLo32{});
  Philox4 out;
  out.w[0] = c0;
  out.w[1] = c1;
  out.w[2] = c2;
  out.w[3] = c3;
  return out;
}

// The four words of element `index` in stream (seed, offset).
EF_HOST_DEVICE EF_INLINE Philox4 philox_words(uint64_t seed, uint64_t offset, uint64_t index) {
  return philox4x32_10(static_cast<uint32_t>(index), static_cast<uint32_t>(index >> 32),
                       static_cast<uint32_t>(offset), static_cast<uint32_t>(offset >> 32),
                       static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

// A 32-bit word to a float32 uniform in (0, 1), exactly (2k+1) * 2^-24 with k = w >> 9.
EF_HOST_DEVICE EF_INLINE float word_to_uniform(uint32_t w) {
  return (static_cast<float>(w >> 9) + 0.5f) * 1.1920928955078125e-07f;  // 2^-23
}

}  // namespace electra_fast
