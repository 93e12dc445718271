// CPU kernels of the RTD loss: fused forward (+ the gradient, when asked) and metrics.
// Math: csrc/include/electra_fast/bce.h on float vectors, with exp/log1p from fast_math.h; the block
// kernel is built per instruction set (cpu_isa.h). Schema and contract: electra_fast/ops/rtd_loss.py.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "electra_fast/bce.h"
#include "electra_fast/checks.h"
#include "electra_fast/cpu_isa.h"
#include "fast_math.h"

namespace electra_fast {
namespace cpu {
namespace {

// Tokens per block of the loss sum: blocks are summed in parallel, then the block sums are added in
// block order, so the result does not depend on the number of threads.
constexpr int64_t kReduceBlock = 4096;

// Tokens per parallel task: below this one thread does all the work, as for ATen's elementwise ops
// (a fork/join costs more than the kernel at BxT = 128x128, and much more on a busy machine).
constexpr int64_t kParallelGrain = 8 * kReduceBlock;

// Tokens per float partial sum inside a block: short enough that float accumulation loses nothing that
// matters (32 tokens per SIMD lane), long enough to amortise adding the partial into the double total.
constexpr int64_t kPartialChunk = 256;

// kLanes tokens: the scaled losses, and in `grad` the gradients scaled by scale * grad_scale (math of
// bce.h on float vectors).
EF_ALWAYS_INLINE vfloat rtd_lanes(vfloat x, vfloat y, vfloat scale, float grad_scale, vfloat& grad) {
  const vfloat e = exp_nonpos(x < vfloat{} ? x : -x);  // exp(-|x|)
  grad = scale * grad_scale * bce_grad_from_exp(x, y, e);
  return scale * bce_loss_from_log1p(x, y, log1p_unit(e));
}

// One block of at most kReduceBlock tokens; returns the block's loss sum (float per chunk of
// kPartialChunk tokens, double across chunks). The flags are template parameters so that each variant
// is straight-line SIMD code. The last n % kLanes tokens are gathered into vectors whose unused lanes
// have scale 0.
template <bool kMask, bool kWeight, bool kLoss, bool kGrad>
EF_ALWAYS_INLINE double rtd_block_impl(const float* x, const uint8_t* y, const uint8_t* m, const float* w,
                                         int64_t n, float grad_scale, float* loss_out, float* grad_out) {
  double total = 0.0;
  const int64_t full = n - n % kLanes;
  vfloat grad;
  for (int64_t begin = 0; begin < full; begin += kPartialChunk) {
    const int64_t end = std::min(full, begin + kPartialChunk);
    vfloat partial{};
    for (int64_t i = begin; i < end; i += kLanes) {
      vfloat scale = vsplat(1.f);
      if constexpr (kMask) scale = vload_bytes(m + i) != vfloat{} ? scale : vfloat{};
      if constexpr (kWeight) scale *= vload(w + i);
      const vfloat li = rtd_lanes(vload(x + i), vload_bytes(y + i), scale, grad_scale, grad);
      if constexpr (kLoss) vstore(loss_out + i, li);
      if constexpr (kGrad) vstore(grad_out + i, grad);
      partial += li;
    }
    total += vsum(partial);
  }
  if (full < n) {
    vfloat xv{}, yv{}, scale{};
    for (int64_t k = 0; k < n - full; ++k) {
      xv[k] = x[full + k];
      yv[k] = static_cast<float>(y[full + k]);
      scale[k] = (kMask ? static_cast<float>(m[full + k] != 0) : 1.f) * (kWeight ? w[full + k] : 1.f);
    }
    const vfloat li = rtd_lanes(xv, yv, scale, grad_scale, grad);
    for (int64_t k = 0; k < n - full; ++k) {
      if constexpr (kLoss) loss_out[full + k] = li[k];
      if constexpr (kGrad) grad_out[full + k] = grad[k];
    }
    total += vsum(li);
  }
  return total;
}

#define EF_RTD_CASE(M, W, L, G)                                                                   \
  case (M) | (W) << 1 | (L) << 2 | (G) << 3:                                                      \
    return rtd_block_impl<(M) != 0, (W) != 0, (L) != 0, (G) != 0>(x, y, m, w, n, grad_scale, loss_out, grad_out);
#define EF_RTD_CASES_MW(L, G) EF_RTD_CASE(0, 0, L, G) EF_RTD_CASE(1, 0, L, G) EF_RTD_CASE(0, 1, L, G) EF_RTD_CASE(1, 1, L, G)

// The variant for the null/non-null pointers.
EF_ALWAYS_INLINE double rtd_block_variant(const float* x, const uint8_t* y, const uint8_t* m, const float* w,
                                          int64_t n, float grad_scale, float* loss_out, float* grad_out) {
  switch ((m != nullptr) | (w != nullptr) << 1 | (loss_out != nullptr) << 2 | (grad_out != nullptr) << 3) {
    EF_RTD_CASES_MW(0, 0)
    EF_RTD_CASES_MW(1, 0)
    EF_RTD_CASES_MW(0, 1)
    EF_RTD_CASES_MW(1, 1)
  }
  return 0.0;  // unreachable: the switch covers all 16 cases
}

EF_CPU_VARIANTS(double, rtd_block,
                (const float* x, const uint8_t* y, const uint8_t* m, const float* w, int64_t n, float grad_scale,
                 float* loss_out, float* grad_out),
                (x, y, m, w, n, grad_scale, loss_out, grad_out), rtd_block_variant)

const CpuKernel<decltype(&rtd_block_baseline)> rtd_block("rtd_loss_fwd", &rtd_block_baseline, &rtd_block_avx2,
                                                         &rtd_block_avx512);
#undef EF_RTD_CASES_MW
#undef EF_RTD_CASE

// The real tokens (mask byte != 0) among n. A plain loop that each per-ISA build vectorises; the count
// per block is 32-bit so that a vector holds as many lanes as it can.
EF_ALWAYS_INLINE int64_t count_real_impl(const uint8_t* m, int64_t n) {
  int64_t total = 0;
  for (int64_t begin = 0; begin < n; begin += kReduceBlock) {
    const int64_t end = std::min(n, begin + kReduceBlock);
    int32_t block = 0;
    for (int64_t i = begin; i < end; ++i) block += m[i] != 0;
    total += block;
  }
  return total;
}

EF_CPU_VARIANTS(int64_t, count_real_range, (const uint8_t* m, int64_t n), (m, n), count_real_impl)

const CpuKernel<decltype(&count_real_range_baseline)> count_real_range("rtd_count_real", &count_real_range_baseline,
                                                                       &count_real_range_avx2,
                                                                       &count_real_range_avx512);

int64_t count_real(const at::Tensor& mask, int64_t n) {
  if (!mask.defined()) return n;
  const uint8_t* m = mask.data_ptr<uint8_t>();
  return at::parallel_reduce(
      0, n, 4 * kParallelGrain, int64_t(0),
      [&](int64_t b, int64_t e, int64_t acc) { return acc + count_real_range(m + b, e - b); },
      std::plus<int64_t>());
}

// Sums block_fn(begin, end) over fixed blocks of kReduceBlock tokens in block order, so the result does
// not depend on the thread count; threads get runs of blocks only past kParallelGrain tokens.
template <typename BlockFn>
double blockwise_sum(int64_t n, const BlockFn& block_fn) {
  const int64_t num_blocks = (n + kReduceBlock - 1) / kReduceBlock;
  std::vector<double> partial(static_cast<size_t>(num_blocks), 0.0);
  at::parallel_for(0, num_blocks, kParallelGrain / kReduceBlock, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t begin = b * kReduceBlock;
      partial[static_cast<size_t>(b)] = block_fn(begin, std::min(n, begin + kReduceBlock));
    }
  });
  double total = 0.0;
  for (double p : partial) total += p;
  return total;
}

}  // namespace

// Returns (loss, grad): loss has the logits' dtype, and their shape for reduction none, else is a scalar;
// grad (empty unless compute_grad) is d(loss)/d(logits) for an upstream gradient of 1.
std::tuple<at::Tensor, at::Tensor> rtd_loss_fwd(const at::Tensor& logits, const at::Tensor& labels,
                                                const c10::optional<at::Tensor>& mask,
                                                const c10::optional<at::Tensor>& weight,
                                                int64_t reduction, bool compute_grad) {
  check_rtd_args(logits, labels, mask, weight);
  check_reduction(reduction);
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
    total = blockwise_sum(n, [&](int64_t begin, int64_t end) {
      const int64_t len = end - begin;
      if constexpr (std::is_same_v<scalar_t, float>) {
        // (the casts are no-ops; they only let the half instantiations of this lambda compile)
        return rtd_block(reinterpret_cast<const float*>(x) + begin, y + begin, m ? m + begin : nullptr,
                         w ? w + begin : nullptr, len, grad_scale, lo ? reinterpret_cast<float*>(lo) + begin : nullptr,
                         go ? reinterpret_cast<float*>(go) + begin : nullptr);
      } else {
        // half inputs: widen a block to float, run the float kernel, narrow the outputs
        float xb[kReduceBlock], lb[kReduceBlock], gb[kReduceBlock];
        for (int64_t i = 0; i < len; ++i) xb[i] = static_cast<float>(x[begin + i]);
        const double s = rtd_block(xb, y + begin, m ? m + begin : nullptr, w ? w + begin : nullptr, len,
                                   grad_scale, lo ? lb : nullptr, go ? gb : nullptr);
        for (int64_t i = 0; lo && i < len; ++i) lo[begin + i] = static_cast<scalar_t>(lb[i]);
        for (int64_t i = 0; go && i < len; ++i) go[begin + i] = static_cast<scalar_t>(gb[i]);
        return s;
      }
    });
  });

  at::Tensor loss = reduction == kReductionNone
                        ? loss_none
                        : at::scalar_tensor(total / static_cast<double>(denom), logits.options());
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
