// CPU row kernel of the fused generator head: for each row of a chunk of fp32 logits, the loss, the
// sample, and (in place) the softmax gradient. The GEMMs around it are ATen calls made by the chunk
// driver in electra_fast/ops/generator_head.py. Math: csrc/include/electra_fast/cross_entropy.h and
// sampling.h (whose sample_row, shared with sample_replace, draws the sample); CUDA twin:
// csrc/cuda/generator_head.cu.
//
// A row (V fp32 values, ~120 KB at V = 30522) stays in L2 across the passes: the sample (max, weights,
// scan), exp in place with the fp64 normaliser, the gradient scale and the grad_bias partial sum. The
// row loops are built per instruction set (cpu_isa.h).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstring>
#include <vector>

#include "electra_fast/checks.h"
#include "electra_fast/cpu_isa.h"
#include "electra_fast/cross_entropy.h"
#include "electra_fast/sampling.h"

namespace electra_fast {
namespace cpu {
namespace {

// Rows per grad_bias partial sum: a fixed partition (independent of the thread count) keeps
// grad_bias deterministic, and the partials cost 1/kBiasGroup of the chunk to reduce.
constexpr int64_t kBiasGroup = 16;

EF_ALWAYS_INLINE float row_max(const float* __restrict x, int64_t v) {
  float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
  for (int64_t i = 0; i < v; ++i) mx = x[i] > mx ? x[i] : mx;
  return mx;
}

// x <- exp(x - mx) in place; returns the sum in fp64.
EF_ALWAYS_INLINE double exp_shift_inplace(float* __restrict x, int64_t v, float mx) {
  double z = 0.0;
#pragma omp simd reduction(+ : z)
  for (int64_t i = 0; i < v; ++i) {
    const float e = expf(x[i] - mx);
    x[i] = e;
    z += e;
  }
  return z;
}

EF_ALWAYS_INLINE void scale_inplace(float* __restrict x, int64_t v, float c) {
#pragma omp simd
  for (int64_t i = 0; i < v; ++i) x[i] *= c;
}

EF_ALWAYS_INLINE void add_into(float* __restrict acc, const float* __restrict x, int64_t v) {
#pragma omp simd
  for (int64_t i = 0; i < v; ++i) acc[i] += x[i];
}

// One chunk of rows and what to do with it.
struct HeadChunk {
  float* x;                  // [rows, v] logits, in place
  const int64_t* targets;    // [rows]
  const float* grad_scale;   // [n_scale]
  int64_t n_scale;
  float* loss;               // [rows]
  int64_t* samples;          // [rows]
  float* bias_partial;       // [groups, v] or null
  int64_t rows;
  int64_t v;
  int64_t row_start;
  float inv_t;
  bool greedy;
  uint64_t seed;
  uint64_t offset;
  int64_t ignore_index;
  bool write_grad;
  bool sample;
};

// One row: returns the loss, writes the sample, turns x into the scaled softmax gradient.
EF_ALWAYS_INLINE float process_row(const HeadChunk& a, int64_t r, double* partial) {
  float* x = a.x + r * a.v;
  const int64_t v = a.v, target = a.targets[r];
  const bool ignored = ce_row_ignored(target, a.ignore_index);
  float mx;
  if (a.sample) {
    const float u = ce_row_uniform(a.seed, a.offset, static_cast<uint64_t>(a.row_start + r));
    const RowSample s = sample_row(x, v, -1, a.inv_t, a.greedy, u, partial);
    a.samples[r] = s.status == kRowSampled ? s.id : -1;
    mx = s.max;
  } else {
    mx = row_max(x, v);
  }
  const float x_target = ignored ? 0.f : x[target];
  const double z = exp_shift_inplace(x, v, mx);
  if (a.write_grad) {
    const float s = ce_row_scale(a.grad_scale, a.n_scale, r);
    if (ignored || s == 0.f) {
      std::memset(x, 0, sizeof(float) * static_cast<size_t>(v));
    } else {
      scale_inplace(x, v, static_cast<float>(static_cast<double>(s) / z));
      x[target] -= s;
    }
  }
  return ignored ? 0.f : ce_loss(mx, z, x_target);
}

// The rows of bias groups g0 .. g1 (kBiasGroup rows each); partial holds sample_row_partials(v) values.
EF_ALWAYS_INLINE void head_groups(const HeadChunk& a, int64_t g0, int64_t g1, double* partial) {
  for (int64_t g = g0; g < g1; ++g) {
    const int64_t r_end = std::min(a.rows, (g + 1) * kBiasGroup);
    for (int64_t r = g * kBiasGroup; r < r_end; ++r) {
      a.loss[r] = process_row(a, r, partial);
      if (a.bias_partial != nullptr) add_into(a.bias_partial + g * a.v, a.x + r * a.v, a.v);
    }
  }
}

EF_CPU_VARIANTS(void, head_groups, (const HeadChunk& a, int64_t g0, int64_t g1, double* partial),
                (a, g0, g1, partial), head_groups)

const CpuKernel<decltype(&head_groups_baseline)> head_kernel("generator_head_rows", &head_groups_baseline,
                                                             &head_groups_avx2, &head_groups_avx512);

// grad_bias += the bias partials' columns c0 .. c1, groups in order (deterministic).
EF_ALWAYS_INLINE void reduce_bias(float* grad_bias, const float* partial, int64_t groups, int64_t v, int64_t c0,
                                  int64_t c1) {
  for (int64_t g = 0; g < groups; ++g) add_into(grad_bias + c0, partial + g * v + c0, c1 - c0);
}

EF_CPU_VARIANTS(void, reduce_bias,
                (float* grad_bias, const float* partial, int64_t groups, int64_t v, int64_t c0, int64_t c1),
                (grad_bias, partial, groups, v, c0, c1), reduce_bias)

const CpuKernel<decltype(&reduce_bias_baseline)> bias_kernel("generator_head_rows", &reduce_bias_baseline,
                                                             &reduce_bias_avx2, &reduce_bias_avx512);

void check_targets_in_range(const at::Tensor& targets, int64_t v, int64_t ignore_index) {
  const int64_t* t = targets.data_ptr<int64_t>();
  for (int64_t r = 0; r < targets.numel(); ++r) {
    TORCH_CHECK(ce_row_ignored(t[r], ignore_index) || ce_target_in_range(t[r], v), "targets[", r, "] = ", t[r],
                " is out of range for a vocabulary of ", v, " (and is not ignore_index = ", ignore_index, ")");
  }
}

}  // namespace

// In place on a chunk of logits [rows, V] (float32): loss[r] (float32), samples[r] (int64, when
// `sample`; -1 for a row holding NaN/+inf or no finite logit), and when `write_grad` the rows become
// d loss / d logits scaled by grad_scale (one value or one per row); grad_bias, when given, is accumulated
// with the column sums of that gradient. row_start is the chunk's first row in the whole batch: the
// Philox counter of its samples.
void generator_head_rows_cpu(at::Tensor& logits, const at::Tensor& targets, const at::Tensor& grad_scale,
                             at::Tensor& loss, at::Tensor& samples, c10::optional<at::Tensor> grad_bias,
                             int64_t row_start, double temperature, int64_t seed, int64_t offset,
                             int64_t ignore_index, bool write_grad, bool sample) {
  check_generator_head_rows_args(logits, targets, grad_scale, loss, samples, grad_bias, temperature, write_grad);
  const int64_t rows = logits.size(0);
  const int64_t v = logits.size(1);
  check_targets_in_range(targets, v, ignore_index);
  if (rows == 0) return;
  const bool bias = grad_bias.has_value();
  const int64_t groups = (rows + kBiasGroup - 1) / kBiasGroup;
  at::Tensor partial = bias ? at::zeros({groups, v}, logits.options()) : at::Tensor();
  const HeadChunk chunk{logits.data_ptr<float>(),
                        targets.data_ptr<int64_t>(),
                        grad_scale.data_ptr<float>(),
                        grad_scale.numel(),
                        loss.data_ptr<float>(),
                        samples.data_ptr<int64_t>(),
                        bias ? partial.data_ptr<float>() : nullptr,
                        rows,
                        v,
                        row_start,
                        inverse_temperature(temperature),
                        temperature == 0.0,
                        static_cast<uint64_t>(seed),
                        static_cast<uint64_t>(offset),
                        ignore_index,
                        write_grad,
                        sample};
  at::parallel_for(0, groups, 1, [&](int64_t g0, int64_t g1) {
    std::vector<double> sample_partial(static_cast<size_t>(sample_row_partials(v)));
    head_kernel(chunk, g0, g1, sample_partial.data());
  });
  if (bias) {
    float* gb = grad_bias->data_ptr<float>();
    const float* part = partial.data_ptr<float>();
    at::parallel_for(0, v, 4096, [&](int64_t c0, int64_t c1) { bias_kernel(gb, part, groups, v, c0, c1); });
  }
}

}  // namespace cpu
}  // namespace electra_fast

TORCH_LIBRARY_FRAGMENT(electra_fast_C, m) {
  m.def(
      "generator_head_rows(Tensor(a!) logits, Tensor targets, Tensor grad_scale, Tensor(b!) loss, "
      "Tensor(c!) samples, Tensor(d!)? grad_bias, int row_start, float temperature, int seed, int offset, "
      "int ignore_index, bool write_grad, bool sample) -> ()");
}

TORCH_LIBRARY_IMPL(electra_fast_C, CPU, m) {
  m.impl("generator_head_rows", &electra_fast::cpu::generator_head_rows_cpu);
}
