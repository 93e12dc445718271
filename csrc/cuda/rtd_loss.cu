// CUDA kernels of the RTD loss; CPU twin: csrc/cpu/rtd_loss.cpp, math: csrc/include/electra_fast/bce.h.
// Per-block partial sums (fixed block size, so deterministic) are added by at::sum afterwards; the mean's
// denominator is a device scalar read by the kernel, so nothing synchronises the host.
#include <ATen/ATen.h>
#include <cub/block/block_reduce.cuh>
#include <torch/library.h>

#include "cuda_utils.cuh"
#include "electra_fast/bce.h"
#include "electra_fast/checks.h"

namespace electra_fast {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kItems = 4;  // tokens per thread
constexpr int kTile = kThreads * kItems;

template <typename scalar_t>
__global__ void rtd_loss_fwd_kernel(const scalar_t* __restrict__ x, const uint8_t* __restrict__ y,
                                    const uint8_t* __restrict__ m, const float* __restrict__ w,
                                    const float* __restrict__ inv_denom, scalar_t* __restrict__ loss_out,
                                    scalar_t* __restrict__ grad_out, float* __restrict__ partial, int64_t n) {
  using BlockReduce = cub::BlockReduce<float, kThreads>;
  __shared__ typename BlockReduce::TempStorage tmp;
  const int64_t base = static_cast<int64_t>(blockIdx.x) * kTile;
  const float grad_scale = grad_out ? *inv_denom : 0.f;
  float total = 0.f;
#pragma unroll
  for (int k = 0; k < kItems; ++k) {
    const int64_t i = base + k * kThreads + threadIdx.x;
    if (i < n) {
      const float xi = static_cast<float>(x[i]);
      const float yi = static_cast<float>(y[i]);
      const float scale = (m ? static_cast<float>(m[i] != 0) : 1.f) * (w ? w[i] : 1.f);
      const float e = expf(-fabsf(xi));
      const float li = scale * bce_loss_from_exp(xi, yi, e);
      if (loss_out) loss_out[i] = static_cast<scalar_t>(li);
      if (grad_out) grad_out[i] = static_cast<scalar_t>(scale * grad_scale * bce_grad_from_exp(xi, yi, e));
      total += li;
    }
  }
  const float block_total = BlockReduce(tmp).Sum(total);
  if (threadIdx.x == 0) partial[blockIdx.x] = block_total;
}

template <typename scalar_t>
__global__ void rtd_counts_kernel(const scalar_t* __restrict__ x, const uint8_t* __restrict__ y,
                                  const uint8_t* __restrict__ m, int64_t* __restrict__ partial, int64_t n) {
  using BlockReduce = cub::BlockReduce<int, kThreads>;
  __shared__ typename BlockReduce::TempStorage tmp;
  const int64_t base = static_cast<int64_t>(blockIdx.x) * kTile;
  int c[4] = {0, 0, 0, 0};
#pragma unroll
  for (int k = 0; k < kItems; ++k) {
    const int64_t i = base + k * kThreads + threadIdx.x;
    if (i < n) {
      const int real = m ? (m[i] != 0) : 1;
      const int pred = static_cast<float>(x[i]) > 0.f;
      const int actual = y[i] != 0;
      c[0] += real;
      c[1] += real & pred & actual;
      c[2] += real & pred;
      c[3] += real & actual;
    }
  }
  for (int k = 0; k < 4; ++k) {
    const int s = BlockReduce(tmp).Sum(c[k]);
    if (threadIdx.x == 0) partial[4 * blockIdx.x + k] = s;
    __syncthreads();
  }
}

std::tuple<at::Tensor, at::Tensor> rtd_loss_fwd_cuda(const at::Tensor& logits, const at::Tensor& labels,
                                                     const c10::optional<at::Tensor>& mask,
                                                     const c10::optional<at::Tensor>& weight, int64_t reduction,
                                                     bool compute_grad) {
  check_rtd_args(logits, labels, mask, weight);
  check_reduction(reduction);
  const c10::cuda::CUDAGuard guard(logits.device());
  const int64_t n = logits.numel();
  const auto fopts = logits.options().dtype(at::kFloat);
  at::Tensor denom = reduction == kReductionMean
                         ? (mask.has_value() ? mask->ne(0).sum().clamp_min(1).to(at::kFloat)
                                             : at::full({}, static_cast<float>(std::max<int64_t>(n, 1)), fopts))
                         : at::ones({}, fopts);
  at::Tensor inv_denom = denom.reciprocal();
  at::Tensor loss_none = reduction == kReductionNone ? at::empty_like(logits) : at::Tensor();
  at::Tensor grad = compute_grad ? at::empty_like(logits) : at::empty({0}, logits.options());
  const int64_t blocks = std::max<int64_t>(ceil_div(n, kTile), 1);
  at::Tensor partial = at::zeros({blocks}, fopts);
  if (n > 0) {
    EF_DISPATCH_FLOAT_HALF_BF16(logits.scalar_type(), "rtd_loss_fwd_cuda", [&] {
      rtd_loss_fwd_kernel<scalar_t><<<blocks, kThreads, 0, stream()>>>(
          logits.data_ptr<scalar_t>(), labels.data_ptr<uint8_t>(),
          mask.has_value() ? mask->data_ptr<uint8_t>() : nullptr,
          weight.has_value() ? weight->data_ptr<float>() : nullptr, inv_denom.data_ptr<float>(),
          loss_none.defined() ? loss_none.data_ptr<scalar_t>() : nullptr,
          compute_grad ? grad.data_ptr<scalar_t>() : nullptr, partial.data_ptr<float>(), n);
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  at::Tensor loss =
      reduction == kReductionNone ? loss_none : (partial.sum() * inv_denom).to(logits.scalar_type());
  return {loss, grad};
}

at::Tensor rtd_metrics_cuda(const at::Tensor& logits, const at::Tensor& labels, const c10::optional<at::Tensor>& mask) {
  check_rtd_args(logits, labels, mask, c10::nullopt);
  const c10::cuda::CUDAGuard guard(logits.device());
  const int64_t n = logits.numel();
  const int64_t blocks = std::max<int64_t>(ceil_div(n, kTile), 1);
  at::Tensor partial = at::zeros({blocks, 4}, logits.options().dtype(at::kLong));
  if (n > 0) {
    EF_DISPATCH_FLOAT_HALF_BF16(logits.scalar_type(), "rtd_metrics_cuda", [&] {
      rtd_counts_kernel<scalar_t><<<blocks, kThreads, 0, stream()>>>(
          logits.data_ptr<scalar_t>(), labels.data_ptr<uint8_t>(),
          mask.has_value() ? mask->data_ptr<uint8_t>() : nullptr, partial.data_ptr<int64_t>(), n);
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return partial.sum(0);
}

}  // namespace
}  // namespace cuda
}  // namespace electra_fast

TORCH_LIBRARY_IMPL(electra_fast_C, CUDA, m) {
  m.impl("rtd_loss_fwd", &electra_fast::cuda::rtd_loss_fwd_cuda);
  m.impl("rtd_metrics", &electra_fast::cuda::rtd_metrics_cuda);
}
