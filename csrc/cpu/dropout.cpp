// CPU kernel of dropout on the Philox stream (contract: electra_fast/reference/dropout.py): 16 counters
// at a time (csrc/cpu/dropout_simd.h), 64 elements, one word each. The forward and the backward are this
// one kernel (the backward applies the same mask and scale to the upstream gradient).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "electra_fast/checks.h"
#include "electra_fast/cpu_isa.h"
#include "electra_fast/dropout.h"
#include "dropout_simd.h"

namespace electra_fast {
namespace cpu {
namespace {

// Elements per task of the parallel loop and per float buffer of half inputs (a multiple of the block).
constexpr int64_t kChunk = 64 * kElementsPerBlock;

EF_CPU_VARIANTS(void, dropout_float,
                (const float* x, float* y, int64_t n, int64_t first, float p, float scale, uint64_t seed,
                 uint64_t offset),
                (x, y, n, first, p, scale, seed, offset), dropout_float_impl)

}  // namespace

const CpuKernel<DropoutFloat> dropout_float("dropout", &dropout_float_baseline, &dropout_float_avx2,
                                            &dropout_float_avx512);

// x with the stream's mask and scale applied (same shape and dtype); x contiguous.
at::Tensor dropout_cpu(const at::Tensor& x, double p, int64_t seed, int64_t offset) {
  check_dropout_args(x, p);
  at::Tensor y = at::empty_like(x);
  const int64_t n = x.numel();
  const float pf = static_cast<float>(p);
  const float scale = dropout_scale(p);
  const auto s = static_cast<uint64_t>(seed), o = static_cast<uint64_t>(offset);
  EF_DISPATCH_FLOAT_HALF_BF16(x.scalar_type(), "dropout_cpu", [&] {
    const scalar_t* in = x.data_ptr<scalar_t>();
    scalar_t* out = y.data_ptr<scalar_t>();
    at::parallel_for(0, (n + kChunk - 1) / kChunk, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        const int64_t first = c * kChunk, len = std::min(kChunk, n - first);
        if constexpr (std::is_same_v<scalar_t, float>) {
          // (the casts are no-ops; they only let the half instantiations of this lambda compile)
          dropout_float(reinterpret_cast<const float*>(in) + first, reinterpret_cast<float*>(out) + first, len, first,
                        pf, scale, s, o);
        } else {
          // half inputs: scaled in float32 and rounded once
          float buffer[kChunk];
          for (int64_t i = 0; i < len; ++i) buffer[i] = static_cast<float>(in[first + i]);
          dropout_float(buffer, buffer, len, first, pf, scale, s, o);
          for (int64_t i = 0; i < len; ++i) out[first + i] = static_cast<scalar_t>(buffer[i]);
        }
      }
    });
  });
  return y;
}

}  // namespace cpu
}  // namespace electra_fast

TORCH_LIBRARY_FRAGMENT(electra_fast_C, m) { m.def("dropout(Tensor x, float p, int seed, int offset) -> Tensor"); }

TORCH_LIBRARY_IMPL(electra_fast_C, CPU, m) { m.impl("dropout", &electra_fast::cpu::dropout_cpu); }
