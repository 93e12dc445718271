// CUDA kernels of the shared Philox stream (csrc/include/electra_fast/philox.h); CPU twin: csrc/cpu/random.cpp.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "cuda_utils.cuh"
#include "electra_fast/checks.h"
#include "electra_fast/philox.h"

namespace electra_fast {
namespace cuda {
namespace {

constexpr int kThreads = 256;

__global__ void philox_words_kernel(uint32_t* out, int64_t n, uint64_t seed, uint64_t offset, uint64_t start) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const Philox4 r = philox_words(seed, offset, start + static_cast<uint64_t>(i));
  for (int k = 0; k < 4; ++k) out[4 * i + k] = r.w[k];
}

__global__ void philox_uniform_kernel(float* out, int64_t n, uint64_t seed, uint64_t offset, uint64_t start) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  out[i] = word_to_uniform(philox_words(seed, offset, start + static_cast<uint64_t>(i)).w[0]);
}

void philox_words_cuda(at::Tensor& out, int64_t seed, int64_t offset, int64_t start) {
  check_philox_words_out(out);
  const int64_t n = out.size(0);
  if (n == 0) return;
  const c10::cuda::CUDAGuard guard(out.device());
  philox_words_kernel<<<ceil_div(n, kThreads), kThreads, 0, stream()>>>(
      reinterpret_cast<uint32_t*>(out.data_ptr<int32_t>()), n, seed, offset, start);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void philox_uniform_cuda(at::Tensor& out, int64_t seed, int64_t offset, int64_t start) {
  check_philox_uniform_out(out);
  const int64_t n = out.numel();
  if (n == 0) return;
  const c10::cuda::CUDAGuard guard(out.device());
  philox_uniform_kernel<<<ceil_div(n, kThreads), kThreads, 0, stream()>>>(out.data_ptr<float>(), n, seed, offset,
                                                                            start);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace
}  // namespace cuda
}  // namespace electra_fast

TORCH_LIBRARY_IMPL(electra_fast_C, CUDA, m) {
  m.impl("philox_words", &electra_fast::cuda::philox_words_cuda);
  m.impl("philox_uniform", &electra_fast::cuda::philox_uniform_cuda);
}
