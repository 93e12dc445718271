// CPU kernels of the RTD loss: fused forward (+ the gradient, when asked) and metrics.
// Math: csrc/include/electra_fast/bce.h. Schema and contract: electra_fast/ops/rtd_loss.py.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "cpu_utils.h"
#include "electra_fast/bce.h"
#include "electra_fast/cpu_simd.h"

namespace electra_fast {
namespace cpu {
namespace {

// One block of at most kReduceBlock tokens: per-token loss and gradient (both scaled by mask*weight,
// the gradient also by grad_scale), returns the block's loss sum. Separate float buffers keep the
// exp/log1p loops in SIMD form.
EF_CPU_CLONES
double rtd_block(const float* __restrict x, const uint8_t* __restrict y, const uint8_t* __restrict m,
                 const float* __restrict w, int64_t n, float grad_scale, float* __restrict loss_out,
                 float* __restrict grad_out) {
  double total = 0.0;
#pragma omp simd reduction(+ : total)
  for (int64_t i = 0; i < n; ++i) {
    const float xi = x[i];
    const float yi = static_cast<float>(y[i]);
    const float scale = (m ? static_cast<float>(m[i] != 0) : 1.f) * (w ? w[i] : 1.f);
    const float e = expf(-fabsf(xi));
    const float li = scale * bce_loss_from_exp(xi, yi, e);
    if (loss_out) loss_out[i] = li;
    if (grad_out) grad_out[i] = scale * grad_scale * bce_grad_from_exp(xi, yi, e);
    total += li;
  }
  return total;
}

int64_t count_real(const at::Tensor& mask, int64_t n) {
  if (!mask.defined()) return n;
  const uint8_t* m = mask.data_ptr<uint8_t>();
  return at::parallel_reduce(
      0, n, kReduceBlock, int64_t(0),
      [&](int64_t b, int64_t e, int64_t acc) {
        for (int64_t i = b; i < e; ++i) acc += m[i] != 0;
        return acc;
      },
      std::plus<int64_t>());
}

void check_rtd_args(const at::Tensor& logits, const at::Tensor& labels,
                    const c10::optional<at::Tensor>& mask, const c10::optional<at::Tensor>& weight) {
  check_cpu_contiguous(logits, "logits");
  TORCH_CHECK(is_kernel_float(logits.scalar_type()), "logits must be float32, float16 or bfloat16, got ",
              logits.scalar_type());
  check_cpu_contiguous(labels, "labels");
  TORCH_CHECK(labels.scalar_type() == at::kByte, "labels must be uint8 (0/1), got ", labels.scalar_type());
  check_same_numel(labels, logits.numel(), "labels");
  if (mask.has_value()) {
    check_cpu_contiguous(*mask, "attention_mask");
    TORCH_CHECK(mask->scalar_type() == at::kByte, "attention_mask must be uint8, got ", mask->scalar_type());
    check_same_numel(*mask, logits.numel(), "attention_mask");
  }
  if (weight.has_value()) {
    check_cpu_contiguous(*weight, "weight");
    TORCH_CHECK(weight->scalar_type() == at::kFloat, "weight must be float32, got ", weight->scalar_type());
    check_same_numel(*weight, logits.numel(), "weight");
  }
}

}  // namespace

// Returns (loss, grad): loss has the logits' shape and dtype for reduction none, else is a float32
// scalar; grad (empty unless compute_grad) is d(loss)/d(logits) for an upstream gradient of 1.
std::tuple<at::Tensor, at::Tensor> rtd_loss_fwd(const at::Tensor& logits, const at::Tensor& labels,
                                                const c10::optional<at::Tensor>& mask,
                                                const c10::optional<at::Tensor>& weight,
                                                int64_t reduction, bool compute_grad) {
  check_rtd_args(logits, labels, mask, weight);
  TORCH_CHECK(reduction >= kReductionNone && reduction <= kReductionMean, "invalid reduction ", reduction);
  const int64_t n = logits.numel();
  const at::Tensor mask_t = mask.has_value() ? *mask : at::Tensor();
  const float denom =
      reduction == kReductionMean ? static_cast<float>(std::max<int64_t>(count_real(mask_t, n), 1)) : 1.f;
  const float grad_scale = 1.f / denom;

  at::Tensor loss_none = reduction == kReductionNone ? at::empty_like(logits) : at::Tensor();
  at::Tensor grad = compute_grad ? at::empty_like(logits) : at::Tensor();
  double total = 0.0;

  EF_DISPATCH_FLOAT_HALF_BF16(logits.scalar_type(), "rtd_loss_fwd_cpu", [&] {
    const scalar_t* x = logits.data_ptr<scalar_t>();
    const uint8_t* y = labels.data_ptr<uint8_t>();
    const uint8_t* m = mask.has_value() ? mask->data_ptr<uint8_t>() : nullptr;
    const float* w = weight.has_value() ? weight->data_ptr<float>() : nullptr;
    scalar_t* lo = loss_none.defined() ? loss_none.data_ptr<scalar_t>() : nullptr;
    scalar_t* go = grad.defined() ? grad.data_ptr<scalar_t>() : nullptr;
    total = deterministic_sum(n, [&](int64_t begin, int64_t end) {
      const int64_t len = end - begin;
      float xb[kReduceBlock], lb[kReduceBlock], gb[kReduceBlock];
      const float* xf;
      if constexpr (std::is_same_v<scalar_t, float>) {
        xf = reinterpret_cast<const float*>(x + begin);
      } else {
        for (int64_t i = 0; i < len; ++i) xb[i] = static_cast<float>(x[begin + i]);
        xf = xb;
      }
      float* lf = nullptr;
      float* gf = nullptr;
      if constexpr (std::is_same_v<scalar_t, float>) {
        lf = lo ? reinterpret_cast<float*>(lo + begin) : nullptr;
        gf = go ? reinterpret_cast<float*>(go + begin) : nullptr;
      } else {
        lf = lo ? lb : nullptr;
        gf = go ? gb : nullptr;
      }
      const double s = rtd_block(xf, y + begin, m ? m + begin : nullptr, w ? w + begin : nullptr, len,
                                 grad_scale, lf, gf);
      if constexpr (!std::is_same_v<scalar_t, float>) {
        for (int64_t i = 0; lo && i < len; ++i) lo[begin + i] = static_cast<scalar_t>(lb[i]);
        for (int64_t i = 0; go && i < len; ++i) go[begin + i] = static_cast<scalar_t>(gb[i]);
      }
      return s;
    });
  });

  at::Tensor loss = reduction == kReductionNone
                        ? loss_none
                        : at::scalar_tensor(total / static_cast<double>(denom), logits.options().dtype(at::kFloat));
  return {loss, compute_grad ? grad : at::empty({0}, logits.options())};
}

// Counts over real tokens: [real, true_pos, pred_pos, actual_pos], prediction = logit > 0.
at::Tensor rtd_metrics(const at::Tensor& logits, const at::Tensor& labels, const c10::optional<at::Tensor>& mask) {
  check_rtd_args(logits, labels, mask, c10::nullopt);
  const int64_t n = logits.numel();
  RtdCounts c{0, 0, 0, 0};
  EF_DISPATCH_FLOAT_HALF_BF16(logits.scalar_type(), "rtd_metrics_cpu", [&] {
    const scalar_t* x = logits.data_ptr<scalar_t>();
    const uint8_t* y = labels.data_ptr<uint8_t>();
    const uint8_t* m = mask.has_value() ? mask->data_ptr<uint8_t>() : nullptr;
    c = at::parallel_reduce(
        0, n, kReduceBlock, RtdCounts{0, 0, 0, 0},
        [&](int64_t b, int64_t e, RtdCounts acc) {
          for (int64_t i = b; i < e; ++i) {
            const int64_t real = m ? (m[i] != 0) : 1;
            const int64_t pred = static_cast<float>(x[i]) > 0.f;
            const int64_t actual = y[i] != 0;
            acc.real += real;
            acc.true_pos += real & pred & actual;
            acc.pred_pos += real & pred;
            acc.actual_pos += real & actual;
          }
          return acc;
        },
        [](RtdCounts a, RtdCounts b) {
          return RtdCounts{a.real + b.real, a.true_pos + b.true_pos, a.pred_pos + b.pred_pos,
                           a.actual_pos + b.actual_pos};
        });
  });
  return at::tensor({c.real, c.true_pos, c.pred_pos, c.actual_pos}, logits.options().dtype(at::kLong));
}

}  // namespace cpu
}  // namespace electra_fast

TORCH_LIBRARY_FRAGMENT(electra_fast_C, m) {
  m.def(
      "rtd_loss_fwd(Tensor logits, Tensor labels, Tensor? mask, Tensor? weight, int reduction, "
      "bool compute_grad) -> (Tensor, Tensor)");
  m.def("rtd_metrics(Tensor logits, Tensor labels, Tensor? mask) -> Tensor");
}

TORCH_LIBRARY_IMPL(electra_fast_C, CPU, m) {
  m.impl("rtd_loss_fwd", &electra_fast::cpu::rtd_loss_fwd);
  m.impl("rtd_metrics", &electra_fast::cpu::rtd_metrics);
}
