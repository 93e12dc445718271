// The SIMD loop of dropout on the Philox stream (contract: electra_fast/reference/dropout.py), shared by the
// kernels that apply a dropout mask on CPU (csrc/cpu/dropout.cpp, csrc/cpu/dropout_add_layer_norm.cpp). Always
// inlined, so each per-ISA build (cpu_isa.h) compiles it for its own instruction set.
#pragma once
#include <cstdint>

#include "electra_fast/cpu_isa.h"
#include "electra_fast/macros.h"
#include "philox_simd.h"

namespace electra_fast {
namespace cpu {

constexpr int64_t kElementsPerBlock = 4 * kLanes;  // the elements of kLanes counters

// y[i] = (keep(first + i) ? x[i] * scale : 0) + (kAdd ? add[i] : 0) for i < n, where `first` is the flat index
// of x[0] in the stream. The elements before the first block boundary take their words from the scalar stream;
// the rest go kElementsPerBlock at a time, each block starting at word 0 of a counter.
template <bool kAdd>
EF_ALWAYS_INLINE void dropout_lanes(const float* x, const float* add, float* y, int64_t n, int64_t first, float p,
                                    float scale, uint64_t seed, uint64_t offset) {
  if (p <= 0.f) {  // every element kept (uniforms are positive): no words needed
    for (int64_t e = 0; e < n; ++e) y[e] = kAdd ? x[e] * scale + add[e] : x[e] * scale;
    return;
  }
  int64_t i = 0;
  while (i < n && (first + i) % kElementsPerBlock != 0) {
    const Philox4 r = philox_words(seed, offset, static_cast<uint64_t>((first + i) / 4));
    for (int k = static_cast<int>((first + i) % 4); k < 4 && i < n; ++k, ++i) {
      const float kept = electra_fast::word_to_uniform(r.w[k]) >= p ? x[i] * scale : 0.f;
      y[i] = kAdd ? kept + add[i] : kept;
    }
  }
  const vfloat threshold = vsplat(p);
  for (int64_t begin = i; begin < n; begin += kElementsPerBlock) {
    vu32 words[4];
    philox_lanes_by_element(philox_lanes(seed, offset, static_cast<uint64_t>((first + begin) / 4)), words);
    for (int j = 0; j < 4; ++j) {
      const int64_t at = begin + j * kLanes;
      if (at >= n) break;
      const auto keep = word_to_uniform(words[j]) >= threshold;
      if (at + kLanes <= n) {
        const vfloat kept = keep ? vload(x + at) * scale : vfloat{};
        vstore(y + at, kAdd ? kept + vload(add + at) : kept);
      } else {
        for (int64_t e = at; e < n; ++e) {
          const float kept = keep[e - at] ? x[e] * scale : 0.f;
          y[e] = kAdd ? kept + add[e] : kept;
        }
      }
    }
  }
}

// y = dropout(x) on elements first .. first + n - 1 of the stream.
EF_ALWAYS_INLINE void dropout_float_impl(const float* x, float* y, int64_t n, int64_t first, float p, float scale,
                                         uint64_t seed, uint64_t offset) {
  dropout_lanes<false>(x, nullptr, y, n, first, p, scale, seed, offset);
}

// y = dropout(x) + add on elements first .. first + n - 1 of the stream.
EF_ALWAYS_INLINE void dropout_add_float_impl(const float* x, const float* add, float* y, int64_t n, int64_t first,
                                             float p, float scale, uint64_t seed, uint64_t offset) {
  dropout_lanes<true>(x, add, y, n, first, p, scale, seed, offset);
}

// dropout_float_impl built per instruction set, the build this CPU runs (defined in dropout.cpp, registered as the
// "dropout" kernel): for the kernels that call it between other work rather than inline it into their own loops.
using DropoutFloat = void (*)(const float* x, float* y, int64_t n, int64_t first, float p, float scale, uint64_t seed,
                              uint64_t offset);
extern const CpuKernel<DropoutFloat> dropout_float;

}  // namespace cpu
}  // namespace electra_fast
