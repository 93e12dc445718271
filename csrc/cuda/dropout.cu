// CUDA kernel of dropout on the Philox stream (contract: electra_fast/reference/dropout.py); CPU twin:
// csrc/cpu/dropout.cpp. One thread per counter: its four words decide four consecutive elements.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "cuda_utils.cuh"
#include "electra_fast/checks.h"
#include "electra_fast/dropout.h"
#include "electra_fast/philox.h"

namespace electra_fast {
namespace cuda {
namespace {

constexpr int kThreads = 256;

template <typename scalar_t>
__global__ void dropout_kernel(const scalar_t* __restrict__ x, scalar_t* __restrict__ y, int64_t n, float p,
                               float scale, uint64_t seed, uint64_t offset) {
  const int64_t counter = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t first = 4 * counter;
  if (first >= n) return;
  const Philox4 r = philox_words(seed, offset, static_cast<uint64_t>(counter));
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    const int64_t i = first + k;
    if (i < n) {
      const float kept = static_cast<float>(x[i]) * scale;
      y[i] = static_cast<scalar_t>(word_to_uniform(r.w[k]) >= p ? kept : 0.f);
    }
  }
}

at::Tensor dropout_cuda(const at::Tensor& x, double p, int64_t seed, int64_t offset) {
  check_dropout_args(x, p);
  at::Tensor y = at::empty_like(x);
  const int64_t n = x.numel();
  if (n == 0) return y;
  const c10::cuda::CUDAGuard guard(x.device());
  const float scale = dropout_scale(p);
  EF_DISPATCH_FLOAT_HALF_BF16(x.scalar_type(), "dropout_cuda", [&] {
    dropout_kernel<scalar_t><<<ceil_div(ceil_div(n, 4), kThreads), kThreads, 0, stream()>>>(
        x.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), n, static_cast<float>(p), scale, static_cast<uint64_t>(seed),
        static_cast<uint64_t>(offset));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return y;
}

}  // namespace
}  // namespace cuda
}  // namespace electra_fast

TORCH_LIBRARY_IMPL(electra_fast_C, CUDA, m) { m.impl("dropout", &electra_fast::cuda::dropout_cuda); }
