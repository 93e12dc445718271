// CUDA row kernel of the fused generator head; CPU twin: csrc/cpu/generator_head.cpp (which declares
// the schema), math: csrc/include/electra_fast/cross_entropy.h and sampling.h. The GEMMs around it are
// cuBLAS calls made through ATen by the chunk driver in electra_fast/ops/generator_head.py.
//
// One block per row: max, fp64 normaliser(s), the sample, then the gradient written in place.
// The sampling scan: each thread owns a contiguous segment of the row; one block-wide inclusive scan of
// the segment sums (fp64) finds the segment holding u * Z, whose thread scans it sequentially.
#include <ATen/ATen.h>
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#include <torch/library.h>

#include "cuda_utils.cuh"
#include "electra_fast/cross_entropy.h"
#include "electra_fast/sampling.h"

namespace electra_fast {
namespace cuda {
namespace {

constexpr int kThreads = 512;

struct MaxF {
  __device__ float operator()(float a, float b) const { return a > b ? a : b; }
};
struct MinI {
  __device__ int64_t operator()(int64_t a, int64_t b) const { return a < b ? a : b; }
};
struct MaxI {
  __device__ int64_t operator()(int64_t a, int64_t b) const { return a > b ? a : b; }
};

__global__ void __launch_bounds__(kThreads)
    ce_rows_kernel(float* __restrict__ x, const int64_t* __restrict__ targets, const float* __restrict__ grad_scale,
                   int64_t n_scale, float* __restrict__ loss, int64_t* __restrict__ samples, int64_t v,
                   int64_t row_start, float temperature, uint64_t seed, uint64_t offset, int64_t ignore_index,
                   bool write_grad, bool sample) {
  using ReduceF = cub::BlockReduce<float, kThreads>;
  using ReduceD = cub::BlockReduce<double, kThreads>;
  using ReduceI = cub::BlockReduce<int64_t, kThreads>;
  using ScanD = cub::BlockScan<double, kThreads>;
  __shared__ union {
    typename ReduceF::TempStorage f;
    typename ReduceD::TempStorage d;
    typename ReduceI::TempStorage i;
    typename ScanD::TempStorage s;
  } tmp;
  __shared__ double s_incl[kThreads];
  __shared__ float s_mx;
  __shared__ double s_z, s_zt;
  __shared__ int64_t s_owner;

  const int tid = threadIdx.x;
  const int64_t row = blockIdx.x;
  float* xr = x + row * v;
  const int64_t t = targets[row];
  const bool ignored = ce_row_ignored(t, ignore_index);
  const bool valid = ce_target_in_range(t, v);
  CUDA_KERNEL_ASSERT(ignored || valid);
  const float s = ce_row_scale(grad_scale, n_scale, row);

  float m = -INFINITY;
  for (int64_t i = tid; i < v; i += kThreads) m = fmaxf(m, xr[i]);
  m = ReduceF(tmp.f).Reduce(m, MaxF());
  if (tid == 0) s_mx = m;
  __syncthreads();
  const float mx = s_mx;
  const float x_target = (!ignored && valid) ? xr[t] : 0.f;

  const bool argmax = sample && (temperature == 0.f || mx == -INFINITY);
  if (argmax) {
    int64_t first = v;
    for (int64_t i = tid; i < v; i += kThreads) {
      if (xr[i] == mx) {
        first = i;
        break;
      }
    }
    first = ReduceI(tmp.i).Reduce(first, MinI());
    if (tid == 0) samples[row] = mx == -INFINITY ? -1 : first;
    __syncthreads();
  }

  const bool tempered = sample && !argmax && temperature != 1.f;
  const float inv_t = tempered ? 1.f / temperature : 1.f;
  double z = 0.0, z_t = 0.0;
  for (int64_t i = tid; i < v; i += kThreads) {
    z += expf(xr[i] - mx);
    if (tempered) z_t += sampling_weight(xr[i], mx, inv_t);
  }
  z = ReduceD(tmp.d).Sum(z);
  if (tid == 0) s_z = z;
  __syncthreads();
  if (tempered) {
    z_t = ReduceD(tmp.d).Sum(z_t);
    if (tid == 0) s_zt = z_t;
    __syncthreads();
  }
  z = s_z;

  if (sample && !argmax) {
    const double target = static_cast<double>(ce_row_uniform(seed, offset, static_cast<uint64_t>(row_start + row))) *
                          (tempered ? s_zt : z);
    const int64_t seg = (v + kThreads - 1) / kThreads;
    const int64_t lo = tid * seg;
    const int64_t hi = lo + seg < v ? lo + seg : v;
    double seg_sum = 0.0;
    int64_t last_positive = -1;
    for (int64_t i = lo; i < hi; ++i) {
      const float w = sampling_weight(xr[i], mx, inv_t);
      seg_sum += w;
      if (w > 0.f) last_positive = i;
    }
    double incl;
    ScanD(tmp.s).InclusiveSum(seg_sum, incl);
    s_incl[tid] = incl;
    __syncthreads();
    const int64_t owner = ReduceI(tmp.i).Reduce(incl >= target ? tid : kThreads, MinI());
    __syncthreads();
    const int64_t row_last_positive = ReduceI(tmp.i).Reduce(last_positive, MaxI());
    if (tid == 0) {
      s_owner = owner;
      // rounding left every prefix below u * Z: the last positive weight (sampling.h)
      if (owner == kThreads) samples[row] = row_last_positive;
    }
    __syncthreads();
    if (tid == s_owner) {
      double run = tid > 0 ? s_incl[tid - 1] : 0.0;
      int64_t pick = last_positive;
      for (int64_t i = lo; i < hi; ++i) {
        run += sampling_weight(xr[i], mx, inv_t);
        if (run >= target) {
          pick = i;
          break;
        }
      }
      samples[row] = pick;
    }
    __syncthreads();  // the scan above reads the row the gradient overwrites
  }

  if (write_grad) {
    const float p_scale = static_cast<float>(static_cast<double>(s) / z);
    for (int64_t i = tid; i < v; i += kThreads) {
      xr[i] = ignored ? 0.f : ce_grad(expf(xr[i] - mx), p_scale, i == t, s);
    }
  }
  if (tid == 0) loss[row] = ignored ? 0.f : ce_loss(mx, z, x_target);
}

void generator_head_rows_cuda(at::Tensor& logits, const at::Tensor& targets, const at::Tensor& grad_scale,
                              at::Tensor& loss, at::Tensor& samples, c10::optional<at::Tensor> grad_bias,
                              int64_t row_start, double temperature, int64_t seed, int64_t offset,
                              int64_t ignore_index, bool write_grad, bool sample) {
  check_cuda_contiguous(logits, "logits");
  TORCH_CHECK(logits.scalar_type() == at::kFloat && logits.dim() == 2, "logits must be a float32 [rows, V] chunk");
  const int64_t rows = logits.size(0);
  const int64_t v = logits.size(1);
  check_cuda_contiguous(targets, "targets");
  TORCH_CHECK(targets.scalar_type() == at::kLong && targets.numel() == rows, "targets must be int64 [rows]");
  check_cuda_contiguous(grad_scale, "grad_scale");
  TORCH_CHECK(grad_scale.scalar_type() == at::kFloat && (grad_scale.numel() == 1 || grad_scale.numel() == rows),
              "grad_scale must be float32 with 1 or rows elements");
  check_cuda_contiguous(loss, "loss");
  TORCH_CHECK(loss.scalar_type() == at::kFloat && loss.numel() == rows, "loss must be float32 [rows]");
  check_cuda_contiguous(samples, "samples");
  TORCH_CHECK(samples.scalar_type() == at::kLong && samples.numel() == rows, "samples must be int64 [rows]");
  TORCH_CHECK(temperature >= 0.0, "temperature must be >= 0, got ", temperature);
  TORCH_CHECK(!grad_bias.has_value() || write_grad, "grad_bias needs write_grad");
  if (rows == 0) return;
  const c10::cuda::CUDAGuard guard(logits.device());
  ce_rows_kernel<<<rows, kThreads, 0, stream()>>>(
      logits.data_ptr<float>(), targets.data_ptr<int64_t>(), grad_scale.data_ptr<float>(), grad_scale.numel(),
      loss.data_ptr<float>(), samples.data_ptr<int64_t>(), v, row_start, static_cast<float>(temperature),
      static_cast<uint64_t>(seed), static_cast<uint64_t>(offset), ignore_index, write_grad, sample);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  if (grad_bias.has_value()) {
    check_cuda_contiguous(*grad_bias, "grad_bias");
    TORCH_CHECK(grad_bias->scalar_type() == at::kFloat && grad_bias->numel() == v, "grad_bias must be float32 [V]");
    grad_bias->add_(logits.sum(0));
  }
}

}  // namespace
}  // namespace cuda
}  // namespace electra_fast

TORCH_LIBRARY_IMPL(electra_fast_C, CUDA, m) {
  m.impl("generator_head_rows", &electra_fast::cuda::generator_head_rows_cuda);
}
