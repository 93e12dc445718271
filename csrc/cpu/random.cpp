// CPU kernels of the shared Philox stream (csrc/include/electra_fast/philox.h).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "electra_fast/checks.h"
#include "electra_fast/philox.h"

namespace electra_fast {
namespace cpu {

// out [n, 4] int32: the four words of counters start .. start+n-1 of stream (seed, offset).
void philox_words_cpu(at::Tensor& out, int64_t seed, int64_t offset, int64_t start) {
  check_philox_words_out(out);
  uint32_t* o = reinterpret_cast<uint32_t*>(out.data_ptr<int32_t>());
  at::parallel_for(0, out.size(0), 2048, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const Philox4 r = philox_words(static_cast<uint64_t>(seed), static_cast<uint64_t>(offset),
                                     static_cast<uint64_t>(start) + static_cast<uint64_t>(i));
      for (int k = 0; k < 4; ++k) o[4 * i + k] = r.w[k];
    }
  });
}

// out [n] float32: uniforms in (0, 1) from word 0 of counters start .. start+n-1.
void philox_uniform_cpu(at::Tensor& out, int64_t seed, int64_t offset, int64_t start) {
  check_philox_uniform_out(out);
  float* o = out.data_ptr<float>();
  at::parallel_for(0, out.numel(), 2048, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      o[i] = word_to_uniform(philox_words(static_cast<uint64_t>(seed), static_cast<uint64_t>(offset),
                                          static_cast<uint64_t>(start) + static_cast<uint64_t>(i))
                                 .w[0]);
    }
  });
}

}  // namespace cpu
}  // namespace electra_fast

TORCH_LIBRARY_FRAGMENT(electra_fast_C, m) {
  m.def("philox_words(Tensor(a!) out, int seed, int offset, int start) -> ()");
  m.def("philox_uniform(Tensor(a!) out, int seed, int offset, int start) -> ()");
}

TORCH_LIBRARY_IMPL(electra_fast_C, CPU, m) {
  m.impl("philox_words", &electra_fast::cpu::philox_words_cpu);
  m.impl("philox_uniform", &electra_fast::cpu::philox_uniform_cpu);
}
