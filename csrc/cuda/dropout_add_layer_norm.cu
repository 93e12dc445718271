// CUDA kernels of dropout_add_layer_norm (contract: electra_fast/reference/dropout_add_layer_norm.py); CPU twin:
// csrc/cpu/dropout_add_layer_norm.cpp. A block per row, looping over rows. The forward's threads take the Philox
// counters that cover the row (one counter decides up to four consecutive elements), write s and sum it; two more
// reads of the row's s (L1/L2 hits) give the centred sum of squares and the output. The backward reduces the
// row's two sums, then goes over the counters again to write dresidual and the dropped-out dx; its weight and bias
// gradient partials are per block ([blocks, 2, N] float32, each column owned by one thread, no atomics), summed
// afterwards.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <tuple>

#include "block_reduce.cuh"
#include "cuda_utils.cuh"
#include "electra_fast/checks.h"
#include "electra_fast/dropout.h"
#include "electra_fast/philox.h"

namespace electra_fast {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 1024;

struct Stream {
  float p, scale;
  uint64_t seed, offset;
};

// c(x_i) * m_i of the contract for element i whose counter gave `words` (word i mod 4).
template <typename x_t>
__device__ __forceinline__ float dropped(const x_t* x, int64_t i, const Philox4& words, const Stream& st) {
  const float v = static_cast<float>(x[i]) * st.scale;
  return st.p > 0.f ? (word_to_uniform(words.w[i & 3]) >= st.p ? v : 0.f) : v;
}

__device__ __forceinline__ Philox4 counter_words(int64_t counter, const Stream& st) {
  return st.p > 0.f ? philox_words(st.seed, st.offset, static_cast<uint64_t>(counter)) : Philox4{};
}

template <typename x_t, typename r_t>
__global__ void forward_kernel(const x_t* __restrict__ x, const r_t* __restrict__ residual, const r_t* __restrict__ w,
                               const r_t* __restrict__ b, r_t* __restrict__ y, r_t* __restrict__ s,
                               float* __restrict__ mean_out, float* __restrict__ rstd_out, int64_t rows, int64_t n,
                               float eps, Stream st) {
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t first = row * n, last = first + n;
    float sum = 0.f;
    for (int64_t c = first / 4 + threadIdx.x; 4 * c < last; c += blockDim.x) {
      const Philox4 words = counter_words(c, st);
      for (int64_t i = max(4 * c, first); i < min(4 * c + 4, last); ++i) {
        const r_t v = static_cast<r_t>(dropped(x, i, words, st) + static_cast<float>(residual[i]));
        s[i] = v;
        sum += static_cast<float>(v);
      }
    }
    // (the reduction's barriers also make this block's writes of s visible to all of its threads)
    const float mean = block_all_sum<kThreads>(sum) / static_cast<float>(n);
    float squares = 0.f;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
      const float d = static_cast<float>(s[first + j]) - mean;
      squares += d * d;
    }
    const float rstd = 1.f / sqrtf(block_all_sum<kThreads>(squares) / static_cast<float>(n) + eps);
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
      const float xhat = (static_cast<float>(s[first + j]) - mean) * rstd;
      y[first + j] = static_cast<r_t>(xhat * static_cast<float>(w[j]) + static_cast<float>(b[j]));
    }
    if (threadIdx.x == 0) {
      mean_out[row] = mean;
      rstd_out[row] = rstd;
    }
  }
}

template <typename x_t, typename r_t>
__global__ void backward_kernel(const r_t* __restrict__ grad, const r_t* __restrict__ s,
                                const float* __restrict__ mean, const float* __restrict__ rstd,
                                const r_t* __restrict__ w, x_t* __restrict__ dx, r_t* __restrict__ dresidual,
                                float* __restrict__ partials, int64_t rows, int64_t n, Stream st) {
  float* dw = partials + static_cast<int64_t>(blockIdx.x) * 2 * n;
  float* db = dw + n;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t first = row * n, last = first + n;
    const float m = mean[row], r = rstd[row];
    float g_sum = 0.f, gx_sum = 0.f;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
      const float dy = static_cast<float>(grad[first + j]);
      const float xhat = (static_cast<float>(s[first + j]) - m) * r;
      const float g = dy * static_cast<float>(w[j]);
      g_sum += g;
      gx_sum += g * xhat;
      dw[j] += dy * xhat;
      db[j] += dy;
    }
    const float g_mean = block_all_sum<kThreads>(g_sum) / static_cast<float>(n);
    const float gx_mean = block_all_sum<kThreads>(gx_sum) / static_cast<float>(n);
    for (int64_t c = first / 4 + threadIdx.x; 4 * c < last; c += blockDim.x) {
      const Philox4 words = counter_words(c, st);
      for (int64_t i = max(4 * c, first); i < min(4 * c + 4, last); ++i) {
        const int64_t j = i - first;
        const float xhat = (static_cast<float>(s[i]) - m) * r;
        const float ds =
            (static_cast<float>(grad[i]) * static_cast<float>(w[j]) - g_mean - xhat * gx_mean) * r;
        dresidual[i] = static_cast<r_t>(ds);
        const float kept = ds * st.scale;
        dx[i] = static_cast<x_t>(st.p > 0.f ? (word_to_uniform(words.w[i & 3]) >= st.p ? kept : 0.f) : kept);
      }
    }
  }
}

Stream make_stream(double p, int64_t seed, int64_t offset) {
  return {static_cast<float>(p), dropout_scale(p), static_cast<uint64_t>(seed), static_cast<uint64_t>(offset)};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> dropout_add_layer_norm_cuda(
    const at::Tensor& x, const at::Tensor& residual, const at::Tensor& weight, const at::Tensor& bias, double eps,
    double p, int64_t seed, int64_t offset) {
  check_dropout_add_layer_norm_args(x, residual, weight, bias, eps, p);
  const int64_t n = x.size(-1), rows = x.numel() / n;
  at::Tensor y = at::empty_like(residual), s = at::empty_like(residual);
  at::Tensor mean = at::empty({rows}, x.options().dtype(at::kFloat)), rstd = at::empty_like(mean);
  if (rows == 0) return {y, s, mean, rstd};
  const c10::cuda::CUDAGuard guard(x.device());
  const Stream st = make_stream(p, seed, offset);
  const auto blocks = static_cast<unsigned>(std::min(rows, kMaxBlocks));
  EF_DISPATCH_FLOAT_HALF_BF16(x.scalar_type(), "dropout_add_layer_norm_cuda", [&] {
    using x_t = scalar_t;
    EF_DISPATCH_FLOAT_HALF_BF16(residual.scalar_type(), "dropout_add_layer_norm_cuda", [&] {
      forward_kernel<x_t, scalar_t><<<blocks, kThreads, 0, stream()>>>(
          x.data_ptr<x_t>(), residual.data_ptr<scalar_t>(), weight.data_ptr<scalar_t>(), bias.data_ptr<scalar_t>(),
          y.data_ptr<scalar_t>(), s.data_ptr<scalar_t>(), mean.data_ptr<float>(), rstd.data_ptr<float>(), rows, n,
          static_cast<float>(eps), st);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return {y, s, mean, rstd};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> dropout_add_layer_norm_backward_cuda(
    const at::Tensor& grad, const at::Tensor& s, const at::Tensor& mean, const at::Tensor& rstd,
    const at::Tensor& weight, double p, int64_t seed, int64_t offset, at::ScalarType x_dtype) {
  check_dropout_add_layer_norm_backward_args(grad, s, mean, rstd, weight, p, x_dtype);
  const int64_t n = s.size(-1), rows = s.numel() / n;
  at::Tensor dx = at::empty(s.sizes(), s.options().dtype(x_dtype)), dresidual = at::empty_like(s);
  const int64_t blocks = std::max<int64_t>(1, std::min(rows, kMaxBlocks));
  at::Tensor partials = at::zeros({blocks, 2, n}, s.options().dtype(at::kFloat));
  if (rows > 0) {
    const c10::cuda::CUDAGuard guard(s.device());
    const Stream st = make_stream(p, seed, offset);
    EF_DISPATCH_FLOAT_HALF_BF16(x_dtype, "dropout_add_layer_norm_backward_cuda", [&] {
      using x_t = scalar_t;
      EF_DISPATCH_FLOAT_HALF_BF16(s.scalar_type(), "dropout_add_layer_norm_backward_cuda", [&] {
        backward_kernel<x_t, scalar_t><<<static_cast<unsigned>(blocks), kThreads, 0, stream()>>>(
            grad.data_ptr<scalar_t>(), s.data_ptr<scalar_t>(), mean.data_ptr<float>(), rstd.data_ptr<float>(),
            weight.data_ptr<scalar_t>(), dx.data_ptr<x_t>(), dresidual.data_ptr<scalar_t>(),
            partials.data_ptr<float>(), rows, n, st);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
    });
  }
  return {dx, dresidual, partials.select(1, 0).sum(0).to(weight.scalar_type()),
          partials.select(1, 1).sum(0).to(weight.scalar_type())};
}

}  // namespace
}  // namespace cuda
}  // namespace electra_fast

TORCH_LIBRARY_IMPL(electra_fast_C, CUDA, m) {
  m.impl("dropout_add_layer_norm", &electra_fast::cuda::dropout_add_layer_norm_cuda);
  m.impl("dropout_add_layer_norm_backward", &electra_fast::cuda::dropout_add_layer_norm_backward_cuda);
}
