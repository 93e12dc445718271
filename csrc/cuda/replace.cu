// CUDA kernels of masking and sampled replacement; CPU twin: csrc/cpu/replace.cpp, math:
// csrc/include/electra_fast/masking.h and sampling.h, random words: electra_fast/ops/replace.py.
//
// mask_tokens: one block per row; the k-th smallest selection key is found by a 63-step binary search on
// the key value (a block-wide count per step), the keys kept in a [B, T] scratch tensor.
// sample_replace: the masked positions are ranked by a device cumsum (no host sync), then one block per
// logits row: max + NaN/+inf check, fp64 normaliser, and a tiled fp64 prefix scan (cub::BlockScan)
// that stops at the tile holding the sample. statistical_fill: one thread per position.
#include <ATen/ATen.h>
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#include <torch/library.h>

#include "cuda_utils.cuh"
#include "electra_fast/masking.h"
#include "electra_fast/philox.h"
#include "electra_fast/sampling.h"

namespace electra_fast {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kItems = 8;  // logits per thread per tile of the prefix scan
constexpr int kTile = kThreads * kItems;

template <typename T>
__device__ T block_sum(T v, T* shared) {
  using Reduce = cub::BlockReduce<T, kThreads>;
  __shared__ typename Reduce::TempStorage tmp;
  const T total = Reduce(tmp).Sum(v);
  if (threadIdx.x == 0) *shared = total;
  __syncthreads();
  const T out = *shared;
  __syncthreads();
  return out;
}

template <typename T, typename Op>
__device__ T block_reduce(T v, Op op, T* shared) {
  using Reduce = cub::BlockReduce<T, kThreads>;
  __shared__ typename Reduce::TempStorage tmp;
  const T total = Reduce(tmp).Reduce(v, op);
  if (threadIdx.x == 0) *shared = total;
  __syncthreads();
  const T out = *shared;
  __syncthreads();
  return out;
}

struct MaxOp {
  __device__ float operator()(float a, float b) const { return a > b ? a : b; }
  __device__ long long operator()(long long a, long long b) const { return a > b ? a : b; }
};
struct MinOp {
  __device__ long long operator()(long long a, long long b) const { return a < b ? a : b; }
};

template <typename id_t>
__global__ void mask_tokens_kernel(const id_t* __restrict__ ids, const bool* __restrict__ real_mask,
                                   const int64_t* __restrict__ specials, int64_t n_spec, id_t* __restrict__ out,
                                   bool* __restrict__ is_masked, int64_t* __restrict__ keys, int64_t len,
                                   double mask_prob, int64_t mask_id, float frac, uint64_t seed, uint64_t offset) {
  __shared__ long long shared;
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
  n_real = block_sum<long long>(n_real, &shared);
  n_cand = block_sum<long long>(n_cand, &shared);
  const int64_t k = masked_count(n_real, n_cand, mask_prob);
  int64_t hi = kNotCandidate - 1;
  if (k > 0 && k < n_cand) {  // k == n_cand: every candidate is masked, no search needed
    int64_t lo = 0;
    for (int step = 0; step < 63; ++step) {
      const int64_t mid = lo + ((hi - lo) >> 1);
      long long below = 0;
      for (int64_t t = threadIdx.x; t < len; t += kThreads) below += keys[base + t] <= mid;
      if (block_sum<long long>(below, &shared) >= k) {
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
                                      bool* __restrict__ replaced, int8_t* __restrict__ flags, int64_t vocab,
                                      float inv_t, bool greedy, bool disallow, uint64_t seed, uint64_t offset) {
  using Scan = cub::BlockScan<double, kThreads>;
  __shared__ typename Scan::TempStorage scan_tmp;
  __shared__ float shared_f;
  __shared__ long long shared_i;
  __shared__ double shared_d;
  const int64_t m = blockIdx.x;
  const int64_t p = position[m];
  if (p < 0) return;  // the same for the whole block
  const int64_t orig = static_cast<int64_t>(ids[p]);
  const int64_t skip = disallow && orig >= 0 && orig < vocab ? orig : -1;
  const scalar_t* row = logits + m * vocab;

  float mx = -INFINITY;
  long long bad = 0;
  for (int64_t i = threadIdx.x; i < vocab; i += kThreads) {
    const float x = static_cast<float>(row[i]);
    bad |= (x != x) || x == INFINITY;
    if (i != skip && x > mx) mx = x;
  }
  mx = block_reduce<float>(mx, MaxOp(), &shared_f);
  bad = block_reduce<long long>(bad, MaxOp(), &shared_i);
  const int8_t flag = bad ? 1 : (mx == -INFINITY ? 2 : 0);
  const long long none = vocab;
  long long pick = none;
  if (flag == 0 && greedy) {
    for (int64_t i = threadIdx.x; i < vocab && pick == none; i += kThreads) {
      if (i != skip && static_cast<float>(row[i]) == mx) pick = i;
    }
    pick = block_reduce<long long>(pick, MinOp(), &shared_i);
  } else if (flag == 0) {
    double z = 0.0;
    for (int64_t i = threadIdx.x; i < vocab; i += kThreads) {
      if (i != skip) z += sampling_weight(static_cast<float>(row[i]), mx, inv_t);
    }
    z = block_sum<double>(z, &shared_d);
    const double target = static_cast<double>(word_to_uniform(philox_words(seed, offset, m).w[0])) * z;
    double run = 0.0;
    long long last = -1;
    for (int64_t tile = 0; tile < vocab && pick == none; tile += kTile) {
      const int64_t first = tile + static_cast<int64_t>(threadIdx.x) * kItems;
      float w[kItems];
      double mine = 0.0;
#pragma unroll
      for (int k = 0; k < kItems; ++k) {
        const int64_t i = first + k;
        w[k] = (i < vocab && i != skip) ? sampling_weight(static_cast<float>(row[i]), mx, inv_t) : 0.f;
        mine += w[k];
      }
      double before, tile_total;
      Scan(scan_tmp).ExclusiveSum(mine, before, tile_total);
      __syncthreads();
      long long hit = none, lastp = -1;
      double acc = run + before;
#pragma unroll
      for (int k = 0; k < kItems; ++k) {
        acc += w[k];
        if (w[k] > 0.f) lastp = first + k;
        if (hit == none && acc >= target && first + k < vocab) hit = first + k;
      }
      pick = block_reduce<long long>(hit, MinOp(), &shared_i);
      last = max(last, block_reduce<long long>(lastp, MaxOp(), &shared_i));
      run += tile_total;
    }
    if (pick == none) pick = last;  // fp64 rounding: the contract's "last positive weight"
  }
  if (threadIdx.x == 0) {
    flags[m] = flag;
    if (flag == 0) {
      out[p] = static_cast<id_t>(pick);
      replaced[p] = pick != orig;
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

#define EF_CUDA_DISPATCH_IDS(TYPE, NAME, ...) \
  AT_DISPATCH_SWITCH(TYPE, NAME, AT_DISPATCH_CASE(at::kInt, __VA_ARGS__) AT_DISPATCH_CASE(at::kLong, __VA_ARGS__))

void check_ids(const at::Tensor& ids) {
  check_cuda_contiguous(ids, "input_ids");
  TORCH_CHECK(ids.scalar_type() == at::kInt || ids.scalar_type() == at::kLong, "input_ids must be int32 or int64");
}

void check_bool(const at::Tensor& t, int64_t numel, const char* name) {
  check_cuda_contiguous(t, name);
  TORCH_CHECK(t.scalar_type() == at::kBool && t.numel() == numel, name, " must be bool with input_ids' size");
}

std::tuple<at::Tensor, at::Tensor> mask_tokens_cuda(const at::Tensor& input_ids,
                                                    const c10::optional<at::Tensor>& attention_mask,
                                                    const at::Tensor& special_ids, double mask_prob,
                                                    int64_t mask_token_id, double mask_fraction, int64_t seed,
                                                    int64_t offset) {
  check_ids(input_ids);
  TORCH_CHECK(input_ids.dim() == 2, "input_ids must be [B, T]");
  TORCH_CHECK(input_ids.size(1) < kMaxSeqLen, "sequences must be shorter than 2^31 tokens");
  if (attention_mask.has_value()) check_bool(*attention_mask, input_ids.numel(), "attention_mask");
  check_cuda_contiguous(special_ids, "special_token_ids");
  TORCH_CHECK(special_ids.scalar_type() == at::kLong, "special_token_ids must be int64");
  const c10::cuda::CUDAGuard guard(input_ids.device());
  at::Tensor out = at::empty_like(input_ids);
  at::Tensor is_masked = at::empty_like(input_ids, input_ids.options().dtype(at::kBool));
  at::Tensor keys = at::empty_like(input_ids, input_ids.options().dtype(at::kLong));
  const int64_t rows = input_ids.size(0), len = input_ids.size(1);
  if (rows == 0 || len == 0) return {out, is_masked};
  EF_CUDA_DISPATCH_IDS(input_ids.scalar_type(), "mask_tokens_cuda", [&] {
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
  check_cuda_contiguous(logits, "logits");
  TORCH_CHECK(logits.dim() == 2, "logits must be [M, V]");
  check_ids(input_ids);
  check_bool(is_masked, input_ids.numel(), "is_masked");
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
  at::Tensor flags = at::zeros({rows}, logits.options().dtype(at::kChar));
  const bool greedy = temperature == 0.0;
  const float inv_t = greedy ? 0.f : static_cast<float>(1.0 / temperature);
  if (rows > 0) {
    EF_CUDA_DISPATCH_IDS(input_ids.scalar_type(), "sample_replace_cuda", [&] {
      using id_t = scalar_t;
      EF_CUDA_DISPATCH_FLOAT_HALF_BF16(logits.scalar_type(), "sample_replace_cuda", [&] {
        sample_replace_kernel<scalar_t, id_t><<<rows, kThreads, 0, stream()>>>(
            logits.data_ptr<scalar_t>(), input_ids.data_ptr<id_t>(), position.data_ptr<int64_t>(),
            corrupted.data_ptr<id_t>(), is_replaced.data_ptr<bool>(), flags.data_ptr<int8_t>(), vocab, inv_t, greedy,
            disallow_original, static_cast<uint64_t>(seed), static_cast<uint64_t>(offset));
      });
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  at::Tensor status = at::cat({count, flags.eq(1).sum().reshape({1}), flags.eq(2).sum().reshape({1})});
  return {corrupted, is_replaced, status};
}

std::tuple<at::Tensor, at::Tensor> statistical_fill_cuda(const at::Tensor& input_ids, const at::Tensor& is_masked,
                                                         const at::Tensor& row_of_token, const at::Tensor& cdf,
                                                         const at::Tensor& offsets, const at::Tensor& members,
                                                         int64_t seed, int64_t offset) {
  check_ids(input_ids);
  check_bool(is_masked, input_ids.numel(), "is_masked");
  check_cuda_contiguous(row_of_token, "row_of_token");
  check_cuda_contiguous(cdf, "cdf");
  check_cuda_contiguous(offsets, "offsets");
  check_cuda_contiguous(members, "members");
  TORCH_CHECK(cdf.scalar_type() == at::kDouble && cdf.dim() == 2 && cdf.numel() > 0, "cdf must be float64 [R, K]");
  TORCH_CHECK(offsets.numel() == cdf.size(1) + 1, "offsets must have K + 1 entries");
  const c10::cuda::CUDAGuard guard(input_ids.device());
  const SamplerTables tables{row_of_token.data_ptr<int64_t>(), row_of_token.numel(), cdf.data_ptr<double>(),
                             cdf.size(0), cdf.size(1), offsets.data_ptr<int64_t>(), members.data_ptr<int64_t>()};
  at::Tensor out = at::empty_like(input_ids);
  at::Tensor is_replaced = at::empty_like(input_ids, input_ids.options().dtype(at::kBool));
  const int64_t n = input_ids.numel();
  if (n == 0) return {out, is_replaced};
  EF_CUDA_DISPATCH_IDS(input_ids.scalar_type(), "statistical_fill_cuda", [&] {
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
