// CUDA kernels of bias_gelu (contract: electra_fast/ops/bias_gelu.py; math: csrc/include/electra_fast/gelu.h);
// CPU twin: csrc/cpu/bias_gelu.cpp. The forward is one thread per element. The backward runs blocks of
// kColumns x kRowThreads threads over tiles of kColumns columns x rows_per_block rows: each thread writes dx for
// its column of every kRowThreads-th row of the tile and sums it in float32, the block adds its threads' sums per
// column into partials[row block, column], and at::sum adds the row blocks for dbias (a fixed tiling: deterministic,
// no atomics).
#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>

#include "cuda_utils.cuh"
#include "electra_fast/checks.h"
#include "electra_fast/gelu.h"

namespace electra_fast {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kColumns = 32;
constexpr int kRowThreads = kThreads / kColumns;
constexpr int64_t kMinRowsPerBlock = 64;
constexpr int64_t kMaxRowBlocks = 65535;  // gridDim.y

struct ExpF {
  EF_HOST_DEVICE EF_INLINE float operator()(float t) const { return expf(t); }
};

template <typename scalar_t>
__global__ void bias_gelu_kernel(const scalar_t* __restrict__ x, const scalar_t* __restrict__ bias,
                                 scalar_t* __restrict__ y, int64_t numel, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= numel) return;
  const float z = static_cast<float>(x[i]) + static_cast<float>(bias[i % n]);
  y[i] = static_cast<scalar_t>(gelu(z, ExpF{}));
}

template <typename scalar_t>
__global__ void bias_gelu_backward_kernel(const scalar_t* __restrict__ grad, const scalar_t* __restrict__ x,
                                          const scalar_t* __restrict__ bias, scalar_t* __restrict__ dx,
                                          float* __restrict__ partials, int64_t m, int64_t n,
                                          int64_t rows_per_block) {
  __shared__ float sums[kRowThreads][kColumns];
  const int64_t col = static_cast<int64_t>(blockIdx.x) * kColumns + threadIdx.x;
  const int64_t row_begin = static_cast<int64_t>(blockIdx.y) * rows_per_block;
  const int64_t row_end = row_begin + rows_per_block < m ? row_begin + rows_per_block : m;
  float sum = 0.f;
  if (col < n) {
    const float b = static_cast<float>(bias[col]);
    for (int64_t r = row_begin + threadIdx.y; r < row_end; r += kRowThreads) {
      const int64_t i = r * n + col;
      const float d = static_cast<float>(grad[i]) * gelu_grad(static_cast<float>(x[i]) + b, ExpF{});
      dx[i] = static_cast<scalar_t>(d);
      sum += d;
    }
  }
  sums[threadIdx.y][threadIdx.x] = sum;
  __syncthreads();
  if (threadIdx.y == 0 && col < n) {
#pragma unroll
    for (int k = 1; k < kRowThreads; ++k) sum += sums[k][threadIdx.x];
    partials[static_cast<int64_t>(blockIdx.y) * n + col] = sum;
  }
}

at::Tensor bias_gelu_cuda(const at::Tensor& x, const at::Tensor& bias) {
  check_bias_gelu_args(x, bias, nullptr);
  at::Tensor y = at::empty_like(x);
  const int64_t numel = x.numel();
  if (numel == 0) return y;
  const c10::cuda::CUDAGuard guard(x.device());
  EF_DISPATCH_FLOAT_HALF_BF16(x.scalar_type(), "bias_gelu_cuda", [&] {
    bias_gelu_kernel<scalar_t><<<ceil_div(numel, kThreads), kThreads, 0, stream()>>>(
        x.data_ptr<scalar_t>(), bias.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), numel, x.size(-1));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return y;
}

std::tuple<at::Tensor, at::Tensor> bias_gelu_backward_cuda(const at::Tensor& grad, const at::Tensor& x,
                                                           const at::Tensor& bias) {
  check_bias_gelu_args(x, bias, &grad);
  at::Tensor dx = at::empty_like(x);
  const int64_t n = x.size(-1);
  const int64_t m = n == 0 ? 0 : x.numel() / n;
  const int64_t rows_per_block = std::max(kMinRowsPerBlock, ceil_div(m, kMaxRowBlocks));
  const int64_t row_blocks = ceil_div(m, rows_per_block);
  at::Tensor partials = at::empty({row_blocks, n}, x.options().dtype(at::kFloat));
  if (m > 0 && n > 0) {
    const c10::cuda::CUDAGuard guard(x.device());
    const dim3 grid(static_cast<unsigned>(ceil_div(n, kColumns)), static_cast<unsigned>(row_blocks));
    const dim3 block(kColumns, kRowThreads);
    EF_DISPATCH_FLOAT_HALF_BF16(x.scalar_type(), "bias_gelu_backward_cuda", [&] {
      bias_gelu_backward_kernel<scalar_t><<<grid, block, 0, stream()>>>(
          grad.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), bias.data_ptr<scalar_t>(), dx.data_ptr<scalar_t>(),
          partials.data_ptr<float>(), m, n, rows_per_block);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  return {dx, partials.sum(0).to(bias.scalar_type())};
}

}  // namespace
}  // namespace cuda
}  // namespace electra_fast

TORCH_LIBRARY_IMPL(electra_fast_C, CUDA, m) {
  m.impl("bias_gelu", &electra_fast::cuda::bias_gelu_cuda);
  m.impl("bias_gelu_backward", &electra_fast::cuda::bias_gelu_backward_cuda);
}
