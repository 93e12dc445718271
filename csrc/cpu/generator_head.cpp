// CPU row kernel of the fused generator head: for each row of a chunk of fp32 logits, the loss, the
// sample, and (in place) the softmax gradient. The GEMMs around it are ATen calls made by the chunk
// driver in electra_fast/ops/generator_head.py. Math: csrc/include/electra_fast/cross_entropy.h and
// sampling.h; CUDA twin: csrc/cuda/generator_head.cu.
//
// A row (V fp32 values, ~120 KB at V = 30522) stays in L2 across the passes: max, exp (in place, fp64
// normaliser), the sampling scan, the gradient scale and the grad_bias partial sum.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstring>
#include <vector>

#include "cpu_utils.h"
#include "electra_fast/cpu_simd.h"
#include "electra_fast/cross_entropy.h"
#include "electra_fast/sampling.h"

namespace electra_fast {
namespace cpu {
namespace {

// The row passes are bound by expf: an AVX-512 clone (16 lanes of libmvec's expf) next to cpu_simd.h's
// AVX2 and baseline ones, picked at load time.
#if defined(__GLIBC__) && defined(__x86_64__) && !defined(__clang__)
#define EF_ROW_CLONES __attribute__((target_clones("arch=skylake-avx512", "arch=haswell", "default")))
#else
#define EF_ROW_CLONES EF_CPU_CLONES
#endif

// Rows per grad_bias partial sum: a fixed partition (independent of the thread count) keeps
// grad_bias deterministic, and the partials cost 1/kBiasGroup of the chunk to reduce.
constexpr int64_t kBiasGroup = 16;
// Elements per block of the sampling scan: blocks are summed vectorised, the hit block sequentially.
constexpr int64_t kScanBlock = 64;

EF_ROW_CLONES
float row_max(const float* __restrict x, int64_t v) {
  float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
  for (int64_t i = 0; i < v; ++i) mx = x[i] > mx ? x[i] : mx;
  return mx;
}

int64_t first_index_of(const float* x, int64_t v, float value) {
  for (int64_t i = 0; i < v; ++i) {
    if (x[i] == value) return i;
  }
  return -1;
}

// x <- exp(x - mx) in place; returns the sum in fp64.
EF_ROW_CLONES
double exp_shift_inplace(float* __restrict x, int64_t v, float mx) {
  double z = 0.0;
#pragma omp simd reduction(+ : z)
  for (int64_t i = 0; i < v; ++i) {
    const float e = expf(x[i] - mx);
    x[i] = e;
    z += e;
  }
  return z;
}

// w <- exp((x - mx) / T) (the sampling weights, x untouched); returns their sum in fp64.
EF_ROW_CLONES
double tempered_weights(const float* __restrict x, float* __restrict w, int64_t v, float mx, float inv_t) {
  double z = 0.0;
#pragma omp simd reduction(+ : z)
  for (int64_t i = 0; i < v; ++i) {
    const float e = expf((x[i] - mx) * inv_t);
    w[i] = e;
    z += e;
  }
  return z;
}

EF_ROW_CLONES
void scale_inplace(float* __restrict x, int64_t v, float c) {
#pragma omp simd
  for (int64_t i = 0; i < v; ++i) x[i] *= c;
}

EF_ROW_CLONES
void add_into(float* __restrict acc, const float* __restrict x, int64_t v) {
#pragma omp simd
  for (int64_t i = 0; i < v; ++i) acc[i] += x[i];
}

EF_ROW_CLONES
double block_sum(const float* __restrict w) {
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (int64_t k = 0; k < kScanBlock; ++k) s += w[k];
  return s;
}

// min { j : sum_{i<=j} w_i >= target } (sampling.h), skipping whole blocks by their vectorised sums.
// If rounding leaves no such j, the last j with w_j > 0.
int64_t inverse_cdf_scan(const float* w, int64_t v, double target) {
  double run = 0.0;
  int64_t i = 0;
  for (; i + kScanBlock <= v; i += kScanBlock) {
    const double s = block_sum(w + i);
    if (run + s >= target) break;
    run += s;
  }
  for (; i < v; ++i) {
    run += w[i];
    if (run >= target) return i;
  }
  for (int64_t j = v - 1; j >= 0; --j) {
    if (w[j] > 0.f) return j;
  }
  return -1;
}

struct RowArgs {
  int64_t v;
  int64_t row_start;
  float temperature;
  uint64_t seed;
  uint64_t offset;
  int64_t ignore_index;
  bool write_grad;
  bool sample;
};

// One row: returns the loss, writes the sample, turns x into the scaled softmax gradient.
float process_row(float* x, int64_t target, float s, int64_t global_row, const RowArgs& a, float* scratch,
                  int64_t* sample_out) {
  const int64_t v = a.v;
  const bool ignored = ce_row_ignored(target, a.ignore_index);
  TORCH_CHECK(ignored || ce_target_in_range(target, v), "targets[", global_row, "] = ", target,
              " is out of range for a vocabulary of ", v, " (and is not ignore_index = ", a.ignore_index, ")");
  const float mx = row_max(x, v);
  const float x_target = ignored ? 0.f : x[target];
  if (a.sample && (a.temperature == 0.f || mx == -INFINITY)) {
    *sample_out = mx == -INFINITY ? -1 : first_index_of(x, v, mx);
  }
  const bool tempered = a.sample && a.temperature != 1.f && a.temperature != 0.f && mx != -INFINITY;
  double z_t = 0.0;
  if (tempered) z_t = tempered_weights(x, scratch, v, mx, 1.f / a.temperature);
  const double z = exp_shift_inplace(x, v, mx);
  if (a.sample && a.temperature != 0.f && mx != -INFINITY) {
    const float u = ce_row_uniform(a.seed, a.offset, static_cast<uint64_t>(global_row));
    *sample_out = tempered ? inverse_cdf_scan(scratch, v, static_cast<double>(u) * z_t)
                           : inverse_cdf_scan(x, v, static_cast<double>(u) * z);
  }
  if (a.write_grad) {
    if (ignored || s == 0.f) {
      std::memset(x, 0, sizeof(float) * static_cast<size_t>(v));
    } else {
      scale_inplace(x, v, static_cast<float>(static_cast<double>(s) / z));
      x[target] -= s;
    }
  }
  return ignored ? 0.f : ce_loss(mx, z, x_target);
}

void check_rows_args(const at::Tensor& logits, const at::Tensor& targets, const at::Tensor& grad_scale,
                     const at::Tensor& loss, const at::Tensor& samples, const c10::optional<at::Tensor>& grad_bias) {
  check_cpu_contiguous(logits, "logits");
  TORCH_CHECK(logits.scalar_type() == at::kFloat && logits.dim() == 2, "logits must be a float32 [rows, V] chunk");
  const int64_t rows = logits.size(0);
  check_cpu_contiguous(targets, "targets");
  TORCH_CHECK(targets.scalar_type() == at::kLong, "targets must be int64");
  check_same_numel(targets, rows, "targets");
  check_cpu_contiguous(grad_scale, "grad_scale");
  TORCH_CHECK(grad_scale.scalar_type() == at::kFloat && (grad_scale.numel() == 1 || grad_scale.numel() == rows),
              "grad_scale must be float32 with 1 or rows elements");
  check_cpu_contiguous(loss, "loss");
  TORCH_CHECK(loss.scalar_type() == at::kFloat, "loss must be float32");
  check_same_numel(loss, rows, "loss");
  check_cpu_contiguous(samples, "samples");
  TORCH_CHECK(samples.scalar_type() == at::kLong, "samples must be int64");
  check_same_numel(samples, rows, "samples");
  if (grad_bias.has_value()) {
    check_cpu_contiguous(*grad_bias, "grad_bias");
    TORCH_CHECK(grad_bias->scalar_type() == at::kFloat, "grad_bias must be float32");
    check_same_numel(*grad_bias, logits.size(1), "grad_bias");
  }
}

}  // namespace

// In place on a chunk of logits [rows, V] (float32): loss[r] (float32), samples[r] (int64, when
// `sample`), and when `write_grad` the rows become d loss / d logits scaled by grad_scale (one value or
// one per row); grad_bias, when given, is accumulated with the column sums of that gradient.
// row_start is the chunk's first row in the whole batch: the Philox counter of its samples.
void generator_head_rows_cpu(at::Tensor& logits, const at::Tensor& targets, const at::Tensor& grad_scale,
                             at::Tensor& loss, at::Tensor& samples, c10::optional<at::Tensor> grad_bias,
                             int64_t row_start, double temperature, int64_t seed, int64_t offset,
                             int64_t ignore_index, bool write_grad, bool sample) {
  check_rows_args(logits, targets, grad_scale, loss, samples, grad_bias);
  TORCH_CHECK(temperature >= 0.0, "temperature must be >= 0, got ", temperature);
  TORCH_CHECK(!grad_bias.has_value() || write_grad, "grad_bias needs write_grad");
  const int64_t rows = logits.size(0);
  const int64_t v = logits.size(1);
  if (rows == 0) return;
  const RowArgs args{v, row_start, static_cast<float>(temperature), static_cast<uint64_t>(seed),
                     static_cast<uint64_t>(offset), ignore_index, write_grad, sample};
  float* x = logits.data_ptr<float>();
  const int64_t* t = targets.data_ptr<int64_t>();
  const float* gs = grad_scale.data_ptr<float>();
  const int64_t n_scale = grad_scale.numel();
  float* lo = loss.data_ptr<float>();
  int64_t* so = samples.data_ptr<int64_t>();
  const bool bias = grad_bias.has_value();
  const int64_t groups = (rows + kBiasGroup - 1) / kBiasGroup;
  at::Tensor partial = bias ? at::zeros({groups, v}, logits.options()) : at::Tensor();
  float* part = bias ? partial.data_ptr<float>() : nullptr;
  const bool tempered = sample && temperature != 1.0 && temperature != 0.0;

  at::parallel_for(0, groups, 1, [&](int64_t g0, int64_t g1) {
    std::vector<float> scratch(tempered ? static_cast<size_t>(v) : 0);
    for (int64_t g = g0; g < g1; ++g) {
      const int64_t r_end = std::min(rows, (g + 1) * kBiasGroup);
      for (int64_t r = g * kBiasGroup; r < r_end; ++r) {
        float* row = x + r * v;
        lo[r] = process_row(row, t[r], ce_row_scale(gs, n_scale, r), row_start + r, args, scratch.data(), so + r);
        if (bias) add_into(part + g * v, row, v);
      }
    }
  });
  if (bias) {
    // groups in order, per column: deterministic
    float* gb = grad_bias->data_ptr<float>();
    at::parallel_for(0, v, 4096, [&](int64_t c0, int64_t c1) {
      for (int64_t g = 0; g < groups; ++g) add_into(gb + c0, part + g * v + c0, c1 - c0);
    });
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
