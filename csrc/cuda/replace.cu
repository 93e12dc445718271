// CUDA kernels of masking and sampled replacement; CPU twin: csrc/cpu/replace.cpp, math:
// csrc/include/electra_fast/masking.h and sampling.h, random words: electra_fast/ops/replace.py.
//
// mask_tokens: one block per row; the k-th smallest selection key is found by a 63-step binary search on
// the key value (a block-wide count per step), the keys kept in a [B, T] scratch tensor.
// sample_replace: the masked positions are ranked by a device cumsum (no host sync), then one block per
// logits row samples it (sampling.cuh). statistical_fill: one thread per position.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "block_reduce.cuh"
#include "cuda_utils.cuh"
#include "electra_fast/checks.h"
#include "electra_fast/masking.h"
#include "electra_fast/philox.h"
#include "sampling.cuh"

namespace electra_fast {
namespace cuda {
namespace {

constexpr int kThreads = 256;

template <typename id_t>
__global__ void mask_tokens_kernel(const id_t* __restrict__ ids, const bool* __restrict__ real_mask,
                                   const int64_t* __restrict__ specials, int64_t n_spec, id_t* __restrict__ out,
                                   bool* __restrict__ is_masked, int64_t* __restrict__ keys, int64_t len,
                                   double mask_prob, int64_t mask_id, float frac, uint64_t seed, uint64_t offset) {
  const int64_t base = static_cast<int64_t>(blockIdx.x) * len;
  long long n_real = 0, n_cand = 0;
  for (int64_t t = threadIdx.x; t < len; t += kThreads) {
    const int64_t id = static_cast<int64_t>(ids[base + t]);
    const bool real = real_mask == nullptr || real_mask[base + t];
    bool cand = real && id != mask_id;
    for (int64_t s = 0; s < n_spec; ++s) cand = cand && id != specials[s];
    int64_t key = kNotCandidate;
    if (cand) key = selection_key(philox_words(seed, offset, base + t).w[kSelectWord], t);
    keys[base + t] = key;
    n_real += real;
    n_cand += cand;
  }
  n_real = block_all_sum<kThreads>(n_real);
  n_cand = block_all_sum<kThreads>(n_cand);
  const int64_t k = masked_count(n_real, n_cand, mask_prob);
  int64_t hi = kNotCandidate - 1;
  if (k > 0 && k < n_cand) {  // k == n_cand: every candidate is masked, no search needed
    int64_t lo = 0;
    for (int step = 0; step < 63; ++step) {
      const int64_t mid = lo + ((hi - lo) >> 1);
      long long below = 0;
      for (int64_t t = threadIdx.x; t < len; t += kThreads) below += keys[base + t] <= mid;
      if (block_all_sum<kThreads>(below) >= k) {
        hi = mid;
      } else {
        lo = mid + 1;
      }
    }
  }
  for (int64_t t = threadIdx.x; t < len; t += kThreads) {
    const bool masked = k > 0 && keys[base + t] <= hi;
    is_masked[base + t] = masked;
    id_t id = ids[base + t];
    if (masked && word_to_uniform(philox_words(seed, offset, base + t).w[kMaskWord]) < frac) id = static_cast<id_t>(mask_id);
    out[base + t] = id;
  }
}

template <typename scalar_t, typename id_t>
__global__ void sample_replace_kernel(const scalar_t* __restrict__ logits, const id_t* __restrict__ ids,
                                      const int64_t* __restrict__ position, id_t* __restrict__ out,
                                      bool* __restrict__ replaced, int8_t* __restrict__ status, int64_t vocab,
                                      float inv_t, bool greedy, bool disallow, uint64_t seed, uint64_t offset) {
  const int64_t m = blockIdx.x;
  const int64_t p = position[m];
  if (p < 0) return;  // the same for the whole block
  const int64_t orig = static_cast<int64_t>(ids[p]);
  const int64_t skip = disallow && orig >= 0 && orig < vocab ? orig : -1;
  const float u = word_to_uniform(philox_words(seed, offset, m).w[0]);
  const BlockSample s = block_sample_row<kThreads>(logits + m * vocab, vocab, skip, inv_t, greedy, u);
  if (threadIdx.x == 0) {
    status[m] = s.status;
    if (s.status == kRowSampled) {
      out[p] = static_cast<id_t>(s.id);
      replaced[p] = s.id != orig;
    }
  }
}

template <typename id_t>
__global__ void statistical_fill_kernel(const id_t* __restrict__ ids, const bool* __restrict__ mask, SamplerTables tables,
                                        id_t* __restrict__ out, bool* __restrict__ replaced, int64_t n, uint64_t seed,
                                        uint64_t offset) {
  const int64_t p = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (p >= n) return;
  const int64_t orig = static_cast<int64_t>(ids[p]);
  int64_t id = orig;
  if (mask[p]) id = statistical_draw(tables, orig, philox_words(seed, offset, p));
  out[p] = static_cast<id_t>(id);
  replaced[p] = id != orig;
}

std::tuple<at::Tensor, at::Tensor> mask_tokens_cuda(const at::Tensor& input_ids,
                                                    const c10::optional<at::Tensor>& attention_mask,
                                                    const at::Tensor& special_ids, double mask_prob,
                                                    int64_t mask_token_id, double mask_fraction, int64_t seed,
                                                    int64_t offset) {
  check_mask_tokens_args(input_ids, attention_mask, special_ids);
  const c10::cuda::CUDAGuard guard(input_ids.device());
  at::Tensor out = at::empty_like(input_ids);
  at::Tensor is_masked = at::empty_like(input_ids, input_ids.options().dtype(at::kBool));
  at::Tensor keys = at::empty_like(input_ids, input_ids.options().dtype(at::kLong));
  const int64_t rows = input_ids.size(0), len = input_ids.size(1);
  if (rows == 0 || len == 0) return {out, is_masked};
  EF_DISPATCH_IDS(input_ids.scalar_type(), "mask_tokens_cuda", [&] {
    mask_tokens_kernel<scalar_t><<<rows, kThreads, 0, stream()>>>(
        input_ids.data_ptr<scalar_t>(), attention_mask.has_value() ? attention_mask->data_ptr<bool>() : nullptr,
        special_ids.data_ptr<int64_t>(), special_ids.numel(), out.data_ptr<scalar_t>(), is_masked.data_ptr<bool>(),
        keys.data_ptr<int64_t>(), len, mask_prob, mask_token_id, static_cast<float>(mask_fraction),
        static_cast<uint64_t>(seed), static_cast<uint64_t>(offset));
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {out, is_masked};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> sample_replace_cuda(const at::Tensor& logits, const at::Tensor& input_ids,
                                                                   const at::Tensor& is_masked, double temperature,
                                                                   bool disallow_original, int64_t seed, int64_t offset) {
  check_sample_replace_args(logits, input_ids, is_masked, temperature);
  const c10::cuda::CUDAGuard guard(logits.device());
  const int64_t rows = logits.size(0), vocab = logits.size(1), n = input_ids.numel();
  const auto lopts = input_ids.options().dtype(at::kLong);
  // rank of each masked position (device cumsum); positions past `rows` go to a dump slot
  const at::Tensor flat = is_masked.reshape(-1);
  const at::Tensor rank = at::cumsum(flat, 0, at::kLong) - 1;
  const at::Tensor slot = at::where(flat.logical_and(rank < rows), rank, at::full_like(rank, rows));
  at::Tensor position = at::full({rows + 1}, -1, lopts);
  position.scatter_(0, slot, at::arange(n, lopts));
  const at::Tensor count = n ? rank.slice(0, n - 1) + 1 : at::zeros({1}, lopts);
  at::Tensor corrupted = input_ids.clone();
  at::Tensor is_replaced = at::zeros_like(input_ids, input_ids.options().dtype(at::kBool));
  at::Tensor status = at::zeros({rows}, logits.options().dtype(at::kChar));
  const bool greedy = temperature == 0.0;
  const float inv_t = inverse_temperature(temperature);
  if (rows > 0) {
    EF_DISPATCH_IDS(input_ids.scalar_type(), "sample_replace_cuda", [&] {
      using id_t = scalar_t;
      EF_DISPATCH_FLOAT_HALF_BF16(logits.scalar_type(), "sample_replace_cuda", [&] {
        sample_replace_kernel<scalar_t, id_t><<<rows, kThreads, 0, stream()>>>(
            logits.data_ptr<scalar_t>(), input_ids.data_ptr<id_t>(), position.data_ptr<int64_t>(),
            corrupted.data_ptr<id_t>(), is_replaced.data_ptr<bool>(), status.data_ptr<int8_t>(), vocab, inv_t, greedy,
            disallow_original, static_cast<uint64_t>(seed), static_cast<uint64_t>(offset));
      });
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  at::Tensor counts = at::cat({count, status.eq(kRowNonFinite).sum().reshape({1}),
                               status.eq(kRowEmpty).sum().reshape({1})});
  return {corrupted, is_replaced, counts};
}

std::tuple<at::Tensor, at::Tensor> statistical_fill_cuda(const at::Tensor& input_ids, const at::Tensor& is_masked,
                                                         const at::Tensor& row_of_token, const at::Tensor& cdf,
                                                         const at::Tensor& offsets, const at::Tensor& members,
                                                         int64_t seed, int64_t offset) {
  check_statistical_fill_args(input_ids, is_masked, row_of_token, cdf, offsets, members);
  const c10::cuda::CUDAGuard guard(input_ids.device());
  const SamplerTables tables{row_of_token.data_ptr<int64_t>(), row_of_token.numel(), cdf.data_ptr<double>(),
                             cdf.size(0), cdf.size(1), offsets.data_ptr<int64_t>(), members.data_ptr<int64_t>()};
  at::Tensor out = at::empty_like(input_ids);
  at::Tensor is_replaced = at::empty_like(input_ids, input_ids.options().dtype(at::kBool));
  const int64_t n = input_ids.numel();
  if (n == 0) return {out, is_replaced};
  EF_DISPATCH_IDS(input_ids.scalar_type(), "statistical_fill_cuda", [&] {
    statistical_fill_kernel<scalar_t><<<ceil_div(n, kThreads), kThreads, 0, stream()>>>(
        input_ids.data_ptr<scalar_t>(), is_masked.data_ptr<bool>(), tables, out.data_ptr<scalar_t>(),
        is_replaced.data_ptr<bool>(), n, static_cast<uint64_t>(seed), static_cast<uint64_t>(offset));
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {out, is_replaced};
}

}  // namespace
}  // namespace cuda
}  // namespace electra_fast

TORCH_LIBRARY_IMPL(electra_fast_C, CUDA, m) {
  m.impl("mask_tokens", &electra_fast::cuda::mask_tokens_cuda);
  m.impl("sample_replace", &electra_fast::cuda::sample_replace_cuda);
  m.impl("statistical_fill", &electra_fast::cuda::statistical_fill_cuda);
}
