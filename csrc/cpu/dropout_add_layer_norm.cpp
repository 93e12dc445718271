// CPU kernels of dropout_add_layer_norm (contract: electra_fast/reference/dropout_add_layer_norm.py): y =
// LayerNorm(dropout(x) + residual) in one pass over each row, and its backward in one pass, with the dropout
// mask drawn from the Philox stream both times (csrc/cpu/dropout_simd.h) instead of stored.
//
// Work is split into tasks of whole rows, float32 tensors read and written in place (half ones through float
// buffers). Each task keeps its own partial sums of the weight and bias gradients, summed in task order
// afterwards: the result does not depend on the thread count.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <tuple>
#include <type_traits>
#include <vector>

#include "electra_fast/checks.h"
#include "electra_fast/cpu_isa.h"
#include "electra_fast/dropout.h"
#include "dropout_simd.h"
#include "row_tasks.h"

namespace electra_fast {
namespace cpu {
namespace {

// Elements per task (whole rows, at least one): a task's float buffers stay in the L2 cache.
constexpr int64_t kTaskElements = 16384;

EF_ALWAYS_INLINE float row_sum(const float* v, int64_t n) {
  vfloat acc{};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) acc += vload(v + j);
  float sum = vsum(acc);
  for (; j < n; ++j) sum += v[j];
  return sum;
}

// y = (s - mean) * rstd * w + b for one row of n, with the row's mean and rstd written out.
EF_ALWAYS_INLINE void layer_norm_row_impl(const float* s, const float* w, const float* b, float* y, int64_t n,
                                          float eps, float* mean_out, float* rstd_out) {
  const float mean = row_sum(s, n) / static_cast<float>(n);
  vfloat acc{};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    const vfloat d = vload(s + j) - mean;
    acc += d * d;
  }
  float var = vsum(acc);
  for (; j < n; ++j) var += (s[j] - mean) * (s[j] - mean);
  const float rstd = 1.f / std::sqrt(var / static_cast<float>(n) + eps);
  for (j = 0; j + kLanes <= n; j += kLanes) vstore(y + j, (vload(s + j) - mean) * rstd * vload(w + j) + vload(b + j));
  for (; j < n; ++j) y[j] = (s[j] - mean) * rstd * w[j] + b[j];
  *mean_out = mean;
  *rstd_out = rstd;
}

// ds = rstd * (g - mean(g) - xhat * mean(g * xhat)) for one row (g = dy * w, xhat = (s - mean) * rstd), and
// dw += dy * xhat, db += dy.
EF_ALWAYS_INLINE void layer_norm_row_backward_impl(const float* dy, const float* s, const float* w, float mean,
                                                   float rstd, float* ds, float* dw, float* db, int64_t n) {
  vfloat g_acc{}, gx_acc{};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    const vfloat g = vload(dy + j) * vload(w + j);
    g_acc += g;
    gx_acc += g * ((vload(s + j) - mean) * rstd);
  }
  float g_sum = vsum(g_acc), gx_sum = vsum(gx_acc);
  for (; j < n; ++j) {
    const float g = dy[j] * w[j];
    g_sum += g;
    gx_sum += g * ((s[j] - mean) * rstd);
  }
  const float g_mean = g_sum / static_cast<float>(n), gx_mean = gx_sum / static_cast<float>(n);
  for (j = 0; j + kLanes <= n; j += kLanes) {
    const vfloat d = vload(dy + j), xhat = (vload(s + j) - mean) * rstd;
    vstore(ds + j, (d * vload(w + j) - g_mean - xhat * gx_mean) * rstd);
    vstore(dw + j, vload(dw + j) + d * xhat);
    vstore(db + j, vload(db + j) + d);
  }
  for (; j < n; ++j) {
    const float d = dy[j], xhat = (s[j] - mean) * rstd;
    ds[j] = (d * w[j] - g_mean - xhat * gx_mean) * rstd;
    dw[j] += d * xhat;
    db[j] += d;
  }
}

EF_CPU_VARIANTS(void, layer_norm_row,
                (const float* s, const float* w, const float* b, float* y, int64_t n, float eps, float* mean,
                 float* rstd),
                (s, w, b, y, n, eps, mean, rstd), layer_norm_row_impl)
EF_CPU_VARIANTS(void, layer_norm_row_backward,
                (const float* dy, const float* s, const float* w, float mean, float rstd, float* ds, float* dw,
                 float* db, int64_t n),
                (dy, s, w, mean, rstd, ds, dw, db, n), layer_norm_row_backward_impl)
EF_CPU_VARIANTS(void, dropout_add_float,
                (const float* x, const float* add, float* y, int64_t n, int64_t first, float p, float scale,
                 uint64_t seed, uint64_t offset),
                (x, add, y, n, first, p, scale, seed, offset), dropout_add_float_impl)

const CpuKernel<decltype(&layer_norm_row_baseline)> layer_norm_row(
    "dropout_add_layer_norm", &layer_norm_row_baseline, &layer_norm_row_avx2, &layer_norm_row_avx512);
const CpuKernel<decltype(&layer_norm_row_backward_baseline)> layer_norm_row_backward(
    "dropout_add_layer_norm_backward", &layer_norm_row_backward_baseline, &layer_norm_row_backward_avx2,
    &layer_norm_row_backward_avx512);
const CpuKernel<decltype(&dropout_add_float_baseline)> dropout_add_float(
    "dropout_add_layer_norm_dropout_add", &dropout_add_float_baseline, &dropout_add_float_avx2,
    &dropout_add_float_avx512);

// The Philox stream of a call, as its kernels take it.
struct Stream {
  float p, scale;
  uint64_t seed, offset;

  Stream(double p, int64_t seed, int64_t offset)
      : p(static_cast<float>(p)), scale(dropout_scale(p)), seed(static_cast<uint64_t>(seed)),
        offset(static_cast<uint64_t>(offset)) {}
};

// Tasks of about kTaskElements elements, however many rows that makes.
RowTasks row_tasks(const at::Tensor& t) {
  return RowTasks(t.numel(), t.size(-1), kTaskElements, std::max<int64_t>(1, t.numel()));  // no cap
}

// Elements [first, first + len) of t as float32: t's own memory when it is float32, else converted into `buffer`.
template <typename t_t>
const float* as_float(const t_t* t, int64_t first, int64_t len, std::vector<float>& buffer) {
  if constexpr (std::is_same_v<t_t, float>) {
    return t + first;
  } else {
    buffer.resize(len);
    for (int64_t i = 0; i < len; ++i) buffer[i] = static_cast<float>(t[first + i]);
    return buffer.data();
  }
}

// Where elements [first, first + len) of a float32 result go before they reach t: t itself when it is float32,
// else `buffer` (copied out by store_float).
template <typename t_t>
float* float_out(t_t* t, int64_t first, int64_t len, std::vector<float>& buffer) {
  if constexpr (std::is_same_v<t_t, float>) {
    return t + first;
  } else {
    buffer.resize(len);
    return buffer.data();
  }
}

template <typename t_t>
void store_float(const float* values, t_t* t, int64_t first, int64_t len) {
  if constexpr (!std::is_same_v<t_t, float>) {
    for (int64_t i = 0; i < len; ++i) t[first + i] = static_cast<t_t>(values[i]);
  }
}

template <typename x_t, typename r_t>
void forward(const x_t* x, const r_t* residual, const float* w, const float* b, r_t* y, r_t* s, float* mean,
             float* rstd, const RowTasks& tasks, const Stream& st, float eps) {
  const int64_t n = tasks.n;
  at::parallel_for(0, tasks.tasks, 1, [&](int64_t t0, int64_t t1) {
    std::vector<float> x_buffer, r_buffer, s_buffer, y_buffer;
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t r0 = tasks.begin(t), r1 = tasks.end(t);
      const int64_t first = r0 * n, len = (r1 - r0) * n;
      float* sf = float_out(s, first, len, s_buffer);
      dropout_add_float(as_float(x, first, len, x_buffer), as_float(residual, first, len, r_buffer), sf, len, first,
                        st.p, st.scale, st.seed, st.offset);
      if constexpr (!std::is_same_v<r_t, float>) {
        // the statistics are of s as stored, rounded to its dtype
        store_float(sf, s, first, len);
        for (int64_t i = 0; i < len; ++i) sf[i] = static_cast<float>(s[first + i]);
      }
      float* yf = float_out(y, first, len, y_buffer);
      for (int64_t r = r0; r < r1; ++r) {
        layer_norm_row(sf + (r - r0) * n, w, b, yf + (r - r0) * n, n, eps, mean + r, rstd + r);
      }
      store_float(yf, y, first, len);
    }
  });
}

// partials [tasks, 2, n]: task t's sums of dy * xhat (for dweight) and of dy (for dbias).
template <typename x_t, typename r_t>
void backward(const r_t* grad, const r_t* s, const float* mean, const float* rstd, const float* w, x_t* dx,
              r_t* dresidual, float* partials, const RowTasks& tasks, const Stream& st) {
  const int64_t n = tasks.n;
  at::parallel_for(0, tasks.tasks, 1, [&](int64_t t0, int64_t t1) {
    std::vector<float> dy_buffer, s_buffer, ds_buffer, dx_buffer;
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t r0 = tasks.begin(t), r1 = tasks.end(t);
      const int64_t first = r0 * n, len = (r1 - r0) * n;
      float* dw = partials + t * 2 * n;
      const float* dy = as_float(grad, first, len, dy_buffer);
      const float* sf = as_float(s, first, len, s_buffer);
      float* ds = float_out(dresidual, first, len, ds_buffer);
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t at = (r - r0) * n;
        layer_norm_row_backward(dy + at, sf + at, w, mean[r], rstd[r], ds + at, dw, dw + n, n);
      }
      store_float(ds, dresidual, first, len);
      float* dxf = float_out(dx, first, len, dx_buffer);
      dropout_float(ds, dxf, len, first, st.p, st.scale, st.seed, st.offset);
      store_float(dxf, dx, first, len);
    }
  });
}

}  // namespace

// (y, s, mean, rstd): y and s of x's shape and residual's dtype, mean and rstd float32 [x.numel() / N].
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> dropout_add_layer_norm_cpu(
    const at::Tensor& x, const at::Tensor& residual, const at::Tensor& weight, const at::Tensor& bias, double eps,
    double p, int64_t seed, int64_t offset) {
  check_dropout_add_layer_norm_args(x, residual, weight, bias, eps, p);
  const RowTasks tasks = row_tasks(x);
  const Stream st(p, seed, offset);
  at::Tensor y = at::empty_like(residual), s = at::empty_like(residual);
  at::Tensor mean = at::empty({tasks.rows}, x.options().dtype(at::kFloat)), rstd = at::empty_like(mean);
  const at::Tensor w = weight.to(at::kFloat), b = bias.to(at::kFloat);
  EF_DISPATCH_FLOAT_HALF_BF16(x.scalar_type(), "dropout_add_layer_norm_cpu", [&] {
    using x_t = scalar_t;
    EF_DISPATCH_FLOAT_HALF_BF16(residual.scalar_type(), "dropout_add_layer_norm_cpu", [&] {
      forward(x.data_ptr<x_t>(), residual.data_ptr<scalar_t>(), w.data_ptr<float>(), b.data_ptr<float>(),
              y.data_ptr<scalar_t>(), s.data_ptr<scalar_t>(), mean.data_ptr<float>(), rstd.data_ptr<float>(), tasks,
              st, static_cast<float>(eps));
    });
  });
  return {y, s, mean, rstd};
}

// (dx in x_dtype, dresidual in s's dtype, dweight and dbias in weight's dtype) for the upstream gradient of y.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> dropout_add_layer_norm_backward_cpu(
    const at::Tensor& grad, const at::Tensor& s, const at::Tensor& mean, const at::Tensor& rstd,
    const at::Tensor& weight, double p, int64_t seed, int64_t offset, at::ScalarType x_dtype) {
  check_dropout_add_layer_norm_backward_args(grad, s, mean, rstd, weight, p, x_dtype);
  const RowTasks tasks = row_tasks(s);
  at::Tensor dx = at::empty(s.sizes(), s.options().dtype(x_dtype)), dresidual = at::empty_like(s);
  at::Tensor partials = at::zeros({tasks.tasks, 2, tasks.n}, s.options().dtype(at::kFloat));
  const at::Tensor w = weight.to(at::kFloat);
  EF_DISPATCH_FLOAT_HALF_BF16(x_dtype, "dropout_add_layer_norm_backward_cpu", [&] {
    using x_t = scalar_t;
    EF_DISPATCH_FLOAT_HALF_BF16(s.scalar_type(), "dropout_add_layer_norm_backward_cpu", [&] {
      backward(grad.data_ptr<scalar_t>(), s.data_ptr<scalar_t>(), mean.data_ptr<float>(), rstd.data_ptr<float>(),
               w.data_ptr<float>(), dx.data_ptr<x_t>(), dresidual.data_ptr<scalar_t>(), partials.data_ptr<float>(),
               tasks, Stream(p, seed, offset));
    });
  });
  return {dx, dresidual, partials.select(1, 0).sum(0).to(weight.scalar_type()),
          partials.select(1, 1).sum(0).to(weight.scalar_type())};
}

}  // namespace cpu
}  // namespace electra_fast

TORCH_LIBRARY_FRAGMENT(electra_fast_C, m) {
  m.def("dropout_add_layer_norm(Tensor x, Tensor residual, Tensor weight, Tensor bias, float eps, float p, int seed, "
        "int offset) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def("dropout_add_layer_norm_backward(Tensor grad, Tensor s, Tensor mean, Tensor rstd, Tensor weight, float p, "
        "int seed, int offset, ScalarType x_dtype) -> (Tensor, Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(electra_fast_C, CPU, m) {
  m.impl("dropout_add_layer_norm", &electra_fast::cpu::dropout_add_layer_norm_cpu);
  m.impl("dropout_add_layer_norm_backward", &electra_fast::cpu::dropout_add_layer_norm_backward_cpu);
}
