// CUDA kernels of token-level early exit; CPU twin: csrc/cpu/early_exit.cpp, logic:
// csrc/include/electra_fast/compaction.h. Compaction is one block per row: a block-wide reduction
// counts the row's active tokens, then (after the one host sync that sizes the outputs) a block-wide
// exclusive scan gives each active token its packed slot. Row copies move whole rows in the widest
// aligned unit (up to 16 bytes), one warp per row.
// Budgeted selection is one block per row too: the row's keys in shared memory, a token is kept iff
// fewer than k keys are below its own (keys are unique), and a block scan of the kept flags in
// position order gives its slot; the rows are then copied by the same gather, along flat positions.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAFunctions.h>
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#include <torch/library.h>

#include <limits>

#include "cuda_utils.cuh"
#include "electra_fast/checks.h"
#include "electra_fast/compaction.h"

namespace electra_fast {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kItems = 16;  // tokens per thread per scan tile: one tile covers T <= 4096
constexpr int kTile = kThreads * kItems;
constexpr int kRowsPerBlock = 8;  // warps per block of the row copies

template <typename scalar_t>
__global__ void exit_mask_kernel(const scalar_t* __restrict__ x, const uint8_t* __restrict__ active,
                                 const int64_t* __restrict__ ids, const int64_t* __restrict__ keep, int64_t num_keep,
                                 float bound, bool* __restrict__ out, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const bool kept = ids != nullptr && id_is_kept(ids[i], keep, num_keep);
  out[i] = stays_active(active[i] != 0, static_cast<float>(x[i]), bound, kept);
}

__global__ void row_count_kernel(const uint8_t* __restrict__ active, int64_t row_len, int32_t* __restrict__ counts) {
  using BlockReduce = cub::BlockReduce<int, kThreads>;
  __shared__ typename BlockReduce::TempStorage tmp;
  const uint8_t* m = active + static_cast<int64_t>(blockIdx.x) * row_len;
  int count = 0;
  for (int64_t t = threadIdx.x; t < row_len; t += kThreads) count += m[t];
  const int total = BlockReduce(tmp).Sum(count);
  if (threadIdx.x == 0) counts[blockIdx.x] = total;
}

// Tokens are read in a blocked arrangement (thread j holds tokens j*kItems .. j*kItems+kItems-1 of
// the tile), so the exclusive scan over threads keeps the row order.
__global__ void row_index_kernel(const uint8_t* __restrict__ active, int64_t row_len,
                                 const int64_t* __restrict__ cu, int64_t* __restrict__ index) {
  using BlockScan = cub::BlockScan<int, kThreads>;
  __shared__ typename BlockScan::TempStorage tmp;
  const int64_t row = blockIdx.x;
  const uint8_t* m = active + row * row_len;
  int64_t slot = cu[row];
  for (int64_t start = 0; start < row_len; start += kTile) {
    int flags[kItems];
    const int64_t first = start + static_cast<int64_t>(threadIdx.x) * kItems;
#pragma unroll
    for (int k = 0; k < kItems; ++k) flags[k] = first + k < row_len ? m[first + k] : 0;
    int before[kItems];
    int tile_total;
    BlockScan(tmp).ExclusiveSum(flags, before, tile_total);
#pragma unroll
    for (int k = 0; k < kItems; ++k) {
      if (flags[k]) index[slot + before[k]] = flat_position(row, row_len, first + k);
    }
    slot += tile_total;
    __syncthreads();  // tmp is reused by the next tile's scan
  }
}

// GATHER: dst[i] = src[index[i]]; else dst[index[i]] = src[i] (zeros when src is null). One warp per
// row i < n, rows of `units` elements of type unit_t.
template <typename unit_t, bool GATHER>
__global__ void copy_rows_kernel(const unit_t* __restrict__ src, unit_t* __restrict__ dst,
                                 const int64_t* __restrict__ index, int64_t n, int64_t units, int64_t num_rows) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.y;
  if (i >= n) return;
  const int64_t row = index[i];
  CUDA_KERNEL_ASSERT(row >= 0 && row < num_rows);
  const int64_t src_row = GATHER ? row : i;
  const int64_t dst_row = GATHER ? i : row;
  unit_t* d = dst + dst_row * units;
  if (src == nullptr) {
    for (int64_t c = threadIdx.x; c < units; c += 32) d[c] = unit_t{};
  } else {
    const unit_t* s = src + src_row * units;
    for (int64_t c = threadIdx.x; c < units; c += 32) d[c] = s[c];
  }
}

using SelectScan = cub::BlockScan<int, kThreads>;

// Dynamic shared memory of a select_tokens block: the row's keys, then its kept flags.
size_t select_smem_bytes(int64_t row_len) { return static_cast<size_t>(row_len) * (sizeof(uint64_t) + 1); }

// index[row, slot] = t and flat[row * k + slot] = row * T + t for each kept token t of the row.
template <typename scalar_t>
__global__ void select_index_kernel(const scalar_t* __restrict__ x, const uint8_t* __restrict__ rank, int64_t row_len,
                                    int64_t k, int64_t* __restrict__ index, int64_t* __restrict__ flat) {
  __shared__ typename SelectScan::TempStorage tmp;
  extern __shared__ __align__(16) unsigned char smem[];
  uint64_t* keys = reinterpret_cast<uint64_t*>(smem);
  uint8_t* kept = smem + row_len * static_cast<int64_t>(sizeof(uint64_t));
  const int64_t row = blockIdx.x, base = row * row_len;
  for (int64_t t = threadIdx.x; t < row_len; t += kThreads) {
    keys[t] = keep_key(rank[base + t], static_cast<float>(x[base + t]), t);
  }
  __syncthreads();
  // every thread of a warp reads the same keys[j]: a shared-memory broadcast
  for (int64_t t = threadIdx.x; t < row_len; t += kThreads) {
    const uint64_t key = keys[t];
    int below = 0;
    for (int64_t j = 0; j < row_len; ++j) below += keys[j] < key;
    kept[t] = below < k;
  }
  __syncthreads();
  int64_t slot = 0;
  for (int64_t start = 0; start < row_len; start += kTile) {
    int flags[kItems];
    const int64_t first = start + static_cast<int64_t>(threadIdx.x) * kItems;
#pragma unroll
    for (int i = 0; i < kItems; ++i) flags[i] = first + i < row_len ? kept[first + i] : 0;
    int before[kItems];
    int tile_total;
    SelectScan(tmp).ExclusiveSum(flags, before, tile_total);
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      if (flags[i]) {
        const int64_t out = row * k + slot + before[i];
        index[out] = first + i;
        flat[out] = base + first + i;
      }
    }
    slot += tile_total;
    __syncthreads();  // tmp is reused by the next tile's scan
  }
}

// Lets `kernel` take `bytes` of dynamic shared memory (past the 48 KiB default where the GPU allows),
// or refuses rows too long for it.
void reserve_select_smem(const void* kernel, size_t bytes, int64_t row_len) {
  cudaFuncAttributes attr;
  C10_CUDA_CHECK(cudaFuncGetAttributes(&attr, kernel));
  int optin = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, c10::cuda::current_device()));
  const size_t limit = static_cast<size_t>(optin) - attr.sharedSizeBytes;
  TORCH_CHECK(bytes <= limit, "select_tokens: the CUDA kernel holds a row's keys in shared memory, and T = ", row_len,
              " needs ", bytes, " bytes of the ", limit, " a block can have on this GPU (T <= ",
              limit / (sizeof(uint64_t) + 1), "); use shorter rows or the triton backend");
  if (bytes > 48 * 1024) {
    C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
  }
}

template <typename unit_t>
void launch_copy_rows(const void* src, void* dst, const at::Tensor& index, int64_t n, int64_t row_bytes,
                      int64_t num_rows, bool gather) {
  const int64_t units = row_bytes / static_cast<int64_t>(sizeof(unit_t));
  const dim3 block(32, kRowsPerBlock);
  const int64_t blocks = ceil_div(n, kRowsPerBlock);
  const auto* s = static_cast<const unit_t*>(src);
  auto* d = static_cast<unit_t*>(dst);
  const int64_t* idx = index.data_ptr<int64_t>();
  if (gather) {
    copy_rows_kernel<unit_t, true><<<static_cast<unsigned>(blocks), block, 0, stream()>>>(s, d, idx, n, units, num_rows);
  } else {
    copy_rows_kernel<unit_t, false><<<static_cast<unsigned>(blocks), block, 0, stream()>>>(s, d, idx, n, units, num_rows);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// Copies n rows of row_bytes between src (may be null: zeros) and dst along index, in the widest unit.
void copy_rows(const void* src, void* dst, const at::Tensor& index, int64_t n, int64_t row_bytes, int64_t num_rows,
               bool gather) {
  if (n == 0 || row_bytes == 0) return;
  const int unit = copy_unit_bytes(row_bytes, reinterpret_cast<uintptr_t>(src), reinterpret_cast<uintptr_t>(dst));
  switch (unit) {
    case 16: launch_copy_rows<uint4>(src, dst, index, n, row_bytes, num_rows, gather); break;
    case 8: launch_copy_rows<uint2>(src, dst, index, n, row_bytes, num_rows, gather); break;
    case 4: launch_copy_rows<uint32_t>(src, dst, index, n, row_bytes, num_rows, gather); break;
    case 2: launch_copy_rows<uint16_t>(src, dst, index, n, row_bytes, num_rows, gather); break;
    default: launch_copy_rows<uint8_t>(src, dst, index, n, row_bytes, num_rows, gather); break;
  }
}

at::Tensor exit_mask_cuda(const at::Tensor& logits, const at::Tensor& active, const c10::optional<at::Tensor>& input_ids,
                          const c10::optional<at::Tensor>& keep_ids, double bound) {
  check_exit_mask_args(logits, active, input_ids, keep_ids);
  const c10::cuda::CUDAGuard guard(logits.device());
  at::Tensor out = at::empty(logits.sizes(), logits.options().dtype(at::kBool));
  const int64_t n = logits.numel();
  if (n == 0) return out;
  EF_DISPATCH_FLOAT_HALF_BF16(logits.scalar_type(), "exit_mask_cuda", [&] {
    exit_mask_kernel<scalar_t><<<static_cast<unsigned>(ceil_div(n, kThreads)), kThreads, 0, stream()>>>(
        logits.data_ptr<scalar_t>(), active.data_ptr<uint8_t>(),
        keep_ids.has_value() ? input_ids->data_ptr<int64_t>() : nullptr,
        keep_ids.has_value() ? keep_ids->data_ptr<int64_t>() : nullptr,
        keep_ids.has_value() ? keep_ids->numel() : 0, static_cast<float>(bound), out.data_ptr<bool>(), n);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

std::tuple<at::Tensor, at::Tensor, int64_t> compact_cuda(const at::Tensor& active) {
  check_compact_args(active);
  const c10::cuda::CUDAGuard guard(active.device());
  const int64_t rows = active.size(0), row_len = active.size(1);
  const auto lopts = active.options().dtype(at::kLong);
  at::Tensor cu = at::zeros({rows + 1}, lopts);
  if (rows == 0 || row_len == 0) return {at::empty({0}, lopts), cu.to(at::kInt), 0};
  at::Tensor counts = at::empty({rows}, active.options().dtype(at::kInt));
  row_count_kernel<<<static_cast<unsigned>(rows), kThreads, 0, stream()>>>(active.data_ptr<uint8_t>(), row_len, counts.data_ptr<int32_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  at::Tensor cu_tail = cu.narrow(0, 1, rows);
  at::cumsum_out(cu_tail, counts, 0, at::kLong);
  // The one host synchronisation: N and max_seqlen size the outputs.
  const at::Tensor stats = at::stack({cu[rows], counts.max().to(at::kLong)}).cpu();
  const int64_t total = stats[0].item<int64_t>(), max_seqlen = stats[1].item<int64_t>();
  TORCH_CHECK(total <= std::numeric_limits<int32_t>::max(), "gather_tokens: ", total,
              " active tokens do not fit the int32 cu_seqlens");
  at::Tensor index = at::empty({total}, lopts);
  if (total > 0) {
    row_index_kernel<<<static_cast<unsigned>(rows), kThreads, 0, stream()>>>(active.data_ptr<uint8_t>(), row_len, cu.data_ptr<int64_t>(),
                                                      index.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return {index, cu.to(at::kInt), max_seqlen};
}

at::Tensor gather_rows_cuda(const at::Tensor& src, const at::Tensor& index) {
  check_gather_rows_args(src, index);
  const c10::cuda::CUDAGuard guard(src.device());
  const int64_t n = index.size(0);
  at::Tensor out = at::empty({n, src.size(1)}, src.options());
  copy_rows(src.data_ptr(), out.data_ptr(), index, n, src.size(1) * static_cast<int64_t>(src.element_size()),
            src.size(0), /*gather=*/true);
  return out;
}

at::Tensor scatter_rows_cuda(const c10::optional<at::Tensor>& tokens, const at::Tensor& index,
                             const c10::optional<at::Tensor>& base, int64_t num_rows) {
  at::Tensor out = scatter_rows_output(tokens, index, base, num_rows);
  const c10::cuda::CUDAGuard guard(out.device());
  copy_rows(tokens.has_value() ? tokens->data_ptr() : nullptr, out.data_ptr(), index, index.size(0),
            out.size(1) * static_cast<int64_t>(out.element_size()), num_rows, /*gather=*/false);
  return out;
}

std::tuple<at::Tensor, at::Tensor> select_tokens_cuda(const at::Tensor& hidden, const at::Tensor& logits,
                                                      const at::Tensor& rank, int64_t k) {
  check_select_tokens_args(hidden, logits, rank, k);
  const c10::cuda::CUDAGuard guard(hidden.device());
  const int64_t rows = hidden.size(0), row_len = hidden.size(1), h = hidden.size(2);
  const auto lopts = hidden.options().dtype(at::kLong);
  if (rows == 0 || k == 0) return {at::empty({rows, k, h}, hidden.options()), at::empty({rows, k}, lopts)};
  const size_t smem = select_smem_bytes(row_len);
  at::Tensor tokens, index;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "select_tokens_cuda", [&] {
    reserve_select_smem(reinterpret_cast<const void*>(&select_index_kernel<scalar_t>), smem, row_len);
    tokens = at::empty({rows, k, h}, hidden.options());
    index = at::empty({rows, k}, lopts);
    at::Tensor flat = at::empty({rows * k}, lopts);
    select_index_kernel<scalar_t><<<static_cast<unsigned>(rows), kThreads, smem, stream()>>>(
        logits.data_ptr<scalar_t>(), rank.data_ptr<uint8_t>(), row_len, k, index.data_ptr<int64_t>(),
        flat.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    copy_rows(hidden.data_ptr(), tokens.data_ptr(), flat, rows * k, h * static_cast<int64_t>(hidden.element_size()),
              rows * row_len, /*gather=*/true);
  });
  return {tokens, index};
}

}  // namespace
}  // namespace cuda
}  // namespace electra_fast

TORCH_LIBRARY_IMPL(electra_fast_C, CUDA, m) {
  m.impl("exit_mask", &electra_fast::cuda::exit_mask_cuda);
  m.impl("compact", &electra_fast::cuda::compact_cuda);
  m.impl("gather_rows", &electra_fast::cuda::gather_rows_cuda);
  m.impl("scatter_rows", &electra_fast::cuda::scatter_rows_cuda);
  m.impl("select_tokens", &electra_fast::cuda::select_tokens_cuda);
}
