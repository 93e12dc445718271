// Small helpers shared by the CPU kernels: argument checks and the fixed-block deterministic reduction.
#pragma once
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <vector>

namespace electra_fast {
namespace cpu {

// Elements per block of a deterministic reduction: blocks are summed in parallel, then the block
// sums are added in block order, so the result does not depend on the number of threads.
constexpr int64_t kReduceBlock = 4096;

inline void check_cpu_contiguous(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be a CPU tensor, got ", t.device());
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
}

inline void check_same_numel(const at::Tensor& t, int64_t n, const char* name) {
  TORCH_CHECK(t.numel() == n, name, " must have ", n, " elements, got ", t.numel());
}

// The floating dtypes the kernels take (float64 stays on the reference backend).
inline bool is_kernel_float(at::ScalarType t) {
  return t == at::kFloat || t == at::kHalf || t == at::kBFloat16;
}

#define EF_DISPATCH_FLOAT_HALF_BF16(TYPE, NAME, ...)                  \
  AT_DISPATCH_SWITCH(TYPE, NAME, AT_DISPATCH_CASE(at::kFloat, __VA_ARGS__) \
                                     AT_DISPATCH_CASE(at::kHalf, __VA_ARGS__) \
                                     AT_DISPATCH_CASE(at::kBFloat16, __VA_ARGS__))

// Sums block_fn(begin, end) -> double over [0, n) in fixed blocks, deterministically.
template <typename BlockFn>
double deterministic_sum(int64_t n, const BlockFn& block_fn) {
  const int64_t num_blocks = (n + kReduceBlock - 1) / kReduceBlock;
  std::vector<double> partial(static_cast<size_t>(num_blocks), 0.0);
  at::parallel_for(0, num_blocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t begin = b * kReduceBlock;
      const int64_t end = std::min(n, begin + kReduceBlock);
      partial[static_cast<size_t>(b)] = block_fn(begin, end);
    }
  });
  double total = 0.0;
  for (double p : partial) total += p;
  return total;
}

}  // namespace cpu
}  // namespace electra_fast
