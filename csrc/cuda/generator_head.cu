// CUDA row kernel of the fused generator head; CPU twin: csrc/cpu/generator_head.cpp (which declares
// the schema), math: csrc/include/electra_fast/cross_entropy.h, the sample: sampling.cuh (shared with
// sample_replace). The GEMMs around it are cuBLAS calls made through ATen by the chunk driver in
// electra_fast/ops/generator_head.py.
//
// One block per row: the sample (which gives the max) or the max alone, the fp64 normaliser, then the
// gradient written in place.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "block_reduce.cuh"
#include "cuda_utils.cuh"
#include "electra_fast/checks.h"
#include "electra_fast/cross_entropy.h"
#include "sampling.cuh"

namespace electra_fast {
namespace cuda {
namespace {

constexpr int kThreads = 512;

__global__ void __launch_bounds__(kThreads)
    ce_rows_kernel(float* __restrict__ x, const int64_t* __restrict__ targets, const float* __restrict__ grad_scale,
                   int64_t n_scale, float* __restrict__ loss, int64_t* __restrict__ samples, int64_t v,
                   int64_t row_start, float inv_t, bool greedy, uint64_t seed, uint64_t offset, int64_t ignore_index,
                   bool write_grad, bool sample) {
  const int64_t row = blockIdx.x;
  float* xr = x + row * v;
  const int64_t t = targets[row];
  const bool ignored = ce_row_ignored(t, ignore_index);
  const bool valid = ce_target_in_range(t, v);
  CUDA_KERNEL_ASSERT(ignored || valid);

  float mx;
  if (sample) {
    const float u = ce_row_uniform(seed, offset, static_cast<uint64_t>(row_start + row));
    const BlockSample s = block_sample_row<kThreads>(xr, v, -1, inv_t, greedy, u);
    if (threadIdx.x == 0) samples[row] = s.status == kRowSampled ? s.id : -1;
    mx = s.max;
  } else {
    float m = -INFINITY;
    for (int64_t i = threadIdx.x; i < v; i += kThreads) m = fmaxf(m, xr[i]);
    mx = block_all_reduce<kThreads>(m, MaxOp());
  }
  const float x_target = (!ignored && valid) ? xr[t] : 0.f;

  double z = 0.0;
  for (int64_t i = threadIdx.x; i < v; i += kThreads) z += expf(xr[i] - mx);
  z = block_all_sum<kThreads>(z);  // its closing barrier also orders every read of the row before the writes

  if (write_grad) {
    const float s = ce_row_scale(grad_scale, n_scale, row);
    const float p_scale = static_cast<float>(static_cast<double>(s) / z);
    for (int64_t i = threadIdx.x; i < v; i += kThreads) {
      xr[i] = ignored ? 0.f : ce_grad(expf(xr[i] - mx), p_scale, i == t, s);
    }
  }
  if (threadIdx.x == 0) loss[row] = ignored ? 0.f : ce_loss(mx, z, x_target);
}

void generator_head_rows_cuda(at::Tensor& logits, const at::Tensor& targets, const at::Tensor& grad_scale,
                              at::Tensor& loss, at::Tensor& samples, c10::optional<at::Tensor> grad_bias,
                              int64_t row_start, double temperature, int64_t seed, int64_t offset,
                              int64_t ignore_index, bool write_grad, bool sample) {
  check_generator_head_rows_args(logits, targets, grad_scale, loss, samples, grad_bias, temperature, write_grad);
  const int64_t rows = logits.size(0);
  const int64_t v = logits.size(1);
  if (rows == 0) return;
  const c10::cuda::CUDAGuard guard(logits.device());
  ce_rows_kernel<<<rows, kThreads, 0, stream()>>>(
      logits.data_ptr<float>(), targets.data_ptr<int64_t>(), grad_scale.data_ptr<float>(), grad_scale.numel(),
      loss.data_ptr<float>(), samples.data_ptr<int64_t>(), v, row_start, inverse_temperature(temperature),
      temperature == 0.0, static_cast<uint64_t>(seed), static_cast<uint64_t>(offset), ignore_index, write_grad,
      sample);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  if (grad_bias.has_value()) grad_bias->add_(logits.sum(0));
}

}  // namespace
}  // namespace cuda
}  // namespace electra_fast

TORCH_LIBRARY_IMPL(electra_fast_C, CUDA, m) {
  m.impl("generator_head_rows", &electra_fast::cuda::generator_head_rows_cuda);
}
