// CPU kernels of bias_gelu (contract: electra_fast/ops/bias_gelu.py; math: csrc/include/electra_fast/gelu.h on
// float vectors, with exp from fast_math.h). The forward reads x and bias and writes y in one pass; the backward
// reads grad, x and bias and writes dx in one pass, adding dx into float32 column sums of its task's rows, which
// are then summed over the tasks for dbias. The row loops are built per instruction set (cpu_isa.h).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <type_traits>
#include <vector>

#include "electra_fast/checks.h"
#include "electra_fast/cpu_isa.h"
#include "electra_fast/gelu.h"
#include "fast_math.h"
#include "row_tasks.h"

namespace electra_fast {
namespace cpu {
namespace {

// Elements per parallel task at least: below this one thread does all the work (a fork/join costs more).
constexpr int64_t kParallelGrain = 32768;
// At most this many tasks, so that the backward's per-task dbias partial sums stay small next to dx.
constexpr int64_t kMaxTasks = 64;

struct ExpNonpos {
  EF_ALWAYS_INLINE vfloat operator()(vfloat t) const { return exp_nonpos(t); }
};

// The first n elements of p in a vector whose other lanes are 0.
EF_ALWAYS_INLINE vfloat vload_partial(const float* p, int64_t n) {
  vfloat v{};
  for (int64_t k = 0; k < n; ++k) v[k] = p[k];
  return v;
}

EF_ALWAYS_INLINE void vstore_partial(float* p, vfloat v, int64_t n) {
  for (int64_t k = 0; k < n; ++k) p[k] = v[k];
}

// y = gelu(x + b) for `rows` contiguous rows of n.
EF_ALWAYS_INLINE void bias_gelu_rows_impl(const float* x, const float* b, float* y, int64_t rows, int64_t n) {
  const int64_t full = n - n % kLanes;
  for (int64_t r = 0; r < rows; ++r, x += n, y += n) {
    for (int64_t j = 0; j < full; j += kLanes) vstore(y + j, gelu(vload(x + j) + vload(b + j), ExpNonpos{}));
    if (full < n) {
      const vfloat z = vload_partial(x + full, n - full) + vload_partial(b + full, n - full);
      vstore_partial(y + full, gelu(z, ExpNonpos{}), n - full);
    }
  }
}

// dx = g * gelu'(x + b) for `rows` contiguous rows of n, and dbias[j] += the column sums of dx.
EF_ALWAYS_INLINE void bias_gelu_backward_rows_impl(const float* g, const float* x, const float* b, float* dx,
                                                   float* dbias, int64_t rows, int64_t n) {
  const int64_t full = n - n % kLanes;
  for (int64_t r = 0; r < rows; ++r, g += n, x += n, dx += n) {
    for (int64_t j = 0; j < full; j += kLanes) {
      const vfloat d = vload(g + j) * gelu_grad(vload(x + j) + vload(b + j), ExpNonpos{});
      vstore(dx + j, d);
      vstore(dbias + j, vload(dbias + j) + d);
    }
    if (full < n) {
      const int64_t m = n - full;
      const vfloat z = vload_partial(x + full, m) + vload_partial(b + full, m);
      const vfloat d = vload_partial(g + full, m) * gelu_grad(z, ExpNonpos{});
      vstore_partial(dx + full, d, m);
      vstore_partial(dbias + full, vload_partial(dbias + full, m) + d, m);
    }
  }
}

EF_CPU_VARIANTS(void, bias_gelu_rows, (const float* x, const float* b, float* y, int64_t rows, int64_t n),
                (x, b, y, rows, n), bias_gelu_rows_impl)
EF_CPU_VARIANTS(void, bias_gelu_backward_rows,
                (const float* g, const float* x, const float* b, float* dx, float* dbias, int64_t rows, int64_t n),
                (g, x, b, dx, dbias, rows, n), bias_gelu_backward_rows_impl)

const CpuKernel<decltype(&bias_gelu_rows_baseline)> bias_gelu_rows("bias_gelu", &bias_gelu_rows_baseline,
                                                                   &bias_gelu_rows_avx2, &bias_gelu_rows_avx512);
const CpuKernel<decltype(&bias_gelu_backward_rows_baseline)> bias_gelu_backward_rows(
    "bias_gelu_backward", &bias_gelu_backward_rows_baseline, &bias_gelu_backward_rows_avx2,
    &bias_gelu_backward_rows_avx512);

// A row of n elements as floats: converted into `buffer` for half types, the row itself for float.
template <typename scalar_t>
const float* float_row(const scalar_t* p, int64_t n, float* buffer) {
  if constexpr (std::is_same_v<scalar_t, float>) {
    return p;
  } else {
    for (int64_t j = 0; j < n; ++j) buffer[j] = static_cast<float>(p[j]);
    return buffer;
  }
}

// y = gelu(x + b) for rows r0 .. r1 - 1; half inputs are computed in float32 a row at a time and rounded once.
template <typename scalar_t>
void bias_gelu_task(const scalar_t* x, const float* b, scalar_t* y, int64_t r0, int64_t r1, int64_t n) {
  if constexpr (std::is_same_v<scalar_t, float>) {
    bias_gelu_rows(x + r0 * n, b, y + r0 * n, r1 - r0, n);
  } else {
    std::vector<float> buffer(n);
    for (int64_t r = r0; r < r1; ++r) {
      bias_gelu_rows(float_row(x + r * n, n, buffer.data()), b, buffer.data(), 1, n);
      for (int64_t j = 0; j < n; ++j) y[r * n + j] = static_cast<scalar_t>(buffer[j]);
    }
  }
}

// dx for rows r0 .. r1 - 1 and their column sums of dx added into dbias (float32); half inputs are computed in
// float32 a row at a time: dx is rounded once, dbias sums the float32 dx.
template <typename scalar_t>
void bias_gelu_backward_task(const scalar_t* g, const scalar_t* x, const float* b, scalar_t* dx, float* dbias,
                             int64_t r0, int64_t r1, int64_t n) {
  if constexpr (std::is_same_v<scalar_t, float>) {
    bias_gelu_backward_rows(g + r0 * n, x + r0 * n, b, dx + r0 * n, dbias, r1 - r0, n);
  } else {
    std::vector<float> buffers(3 * n);
    float* g_row = buffers.data();
    float* x_row = g_row + n;
    float* dx_row = x_row + n;
    for (int64_t r = r0; r < r1; ++r) {
      bias_gelu_backward_rows(float_row(g + r * n, n, g_row), float_row(x + r * n, n, x_row), b, dx_row, dbias, 1, n);
      for (int64_t j = 0; j < n; ++j) dx[r * n + j] = static_cast<scalar_t>(dx_row[j]);
    }
  }
}

at::Tensor bias_gelu_cpu(const at::Tensor& x, const at::Tensor& bias) {
  check_bias_gelu_args(x, bias, nullptr);
  at::Tensor y = at::empty_like(x);
  const RowTasks tasks(x.numel(), x.size(-1), kParallelGrain, kMaxTasks);
  const at::Tensor b = bias.to(at::kFloat);
  EF_DISPATCH_FLOAT_HALF_BF16(x.scalar_type(), "bias_gelu_cpu", [&] {
    const scalar_t* in = x.data_ptr<scalar_t>();
    scalar_t* out = y.data_ptr<scalar_t>();
    at::parallel_for(0, tasks.tasks, 1, [&](int64_t t0, int64_t t1) {
      bias_gelu_task(in, b.data_ptr<float>(), out, tasks.begin(t0), tasks.end(t1 - 1), tasks.n);
    });
  });
  return y;
}

std::tuple<at::Tensor, at::Tensor> bias_gelu_backward_cpu(const at::Tensor& grad, const at::Tensor& x,
                                                          const at::Tensor& bias) {
  check_bias_gelu_args(x, bias, &grad);
  at::Tensor dx = at::empty_like(x);
  const RowTasks tasks(x.numel(), x.size(-1), kParallelGrain, kMaxTasks);
  const at::Tensor b = bias.to(at::kFloat);
  at::Tensor partials = at::zeros({tasks.tasks, tasks.n}, x.options().dtype(at::kFloat));
  EF_DISPATCH_FLOAT_HALF_BF16(x.scalar_type(), "bias_gelu_backward_cpu", [&] {
    const scalar_t* g = grad.data_ptr<scalar_t>();
    const scalar_t* in = x.data_ptr<scalar_t>();
    scalar_t* out = dx.data_ptr<scalar_t>();
    float* sums = partials.data_ptr<float>();
    at::parallel_for(0, tasks.tasks, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        bias_gelu_backward_task(g, in, b.data_ptr<float>(), out, sums + t * tasks.n, tasks.begin(t), tasks.end(t),
                                tasks.n);
      }
    });
  });
  return {dx, partials.sum(0).to(bias.scalar_type())};
}

}  // namespace
}  // namespace cpu
}  // namespace electra_fast

TORCH_LIBRARY_FRAGMENT(electra_fast_C, m) {
  m.def("bias_gelu(Tensor x, Tensor bias) -> Tensor");
  m.def("bias_gelu_backward(Tensor grad, Tensor x, Tensor bias) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(electra_fast_C, CPU, m) {
  m.impl("bias_gelu", &electra_fast::cpu::bias_gelu_cpu);
  m.impl("bias_gelu_backward", &electra_fast::cpu::bias_gelu_backward_cpu);
}
