// CPU kernels of token-level early exit: exit decision, per-row compaction, row gather and scatter, and
// budgeted selection (select + gather in one call). Logic: csrc/include/electra_fast/compaction.h.
// Schema and contract: electra_fast/ops/early_exit.py. Row copies move bytes (memcpy of whole rows), so
// they take any dtype.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#include "electra_fast/checks.h"
#include "electra_fast/compaction.h"

namespace electra_fast {
namespace cpu {
namespace {

// Rows per parallel task: about 64 KiB of copying, so small rows do not drown in scheduling.
int64_t row_grain(int64_t row_bytes) { return std::max<int64_t>(1, 65536 / std::max<int64_t>(row_bytes, 1)); }

// Tokens per parallel task of the exit decision.
constexpr int64_t kTokenGrain = 4096;

// Mask rows per parallel task of the compaction: ~256K tokens. A byte scan of that size takes ~0.1 ms,
// so a typical batch (B*T ~ 16K-64K) compacts on one thread instead of paying for two parallel regions.
int64_t mask_grain(int64_t row_len) { return std::max<int64_t>(1, (int64_t(1) << 18) / std::max<int64_t>(row_len, 1)); }

inline void check_row_in_range(int64_t row, int64_t num_rows) {
  TORCH_CHECK(row >= 0 && row < num_rows, "index out of range: row ", row, " of ", num_rows);
}

}  // namespace

at::Tensor exit_mask(const at::Tensor& logits, const at::Tensor& active, const c10::optional<at::Tensor>& input_ids,
                     const c10::optional<at::Tensor>& keep_ids, double bound) {
  check_exit_mask_args(logits, active, input_ids, keep_ids);
  const int64_t* ids = keep_ids.has_value() ? input_ids->data_ptr<int64_t>() : nullptr;
  const int64_t* keep = keep_ids.has_value() ? keep_ids->data_ptr<int64_t>() : nullptr;
  const int64_t num_keep = keep_ids.has_value() ? keep_ids->numel() : 0;
  at::Tensor out = at::empty(logits.sizes(), logits.options().dtype(at::kBool));
  const int64_t n = logits.numel();
  const float fbound = static_cast<float>(bound);  // exact: the host passes a float32 value
  const uint8_t* a = active.data_ptr<uint8_t>();
  bool* o = out.data_ptr<bool>();
  EF_DISPATCH_FLOAT_HALF_BF16(logits.scalar_type(), "exit_mask_cpu", [&] {
    const scalar_t* x = logits.data_ptr<scalar_t>();
    at::parallel_for(0, n, kTokenGrain, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const bool kept = ids != nullptr && id_is_kept(ids[i], keep, num_keep);
        o[i] = stays_active(a[i] != 0, static_cast<float>(x[i]), fbound, kept);
      }
    });
  });
  return out;
}

// (index [N] int64, cu_seqlens [B+1] int32, max_seqlen) of active [B,T] (uint8 0/1).
std::tuple<at::Tensor, at::Tensor, int64_t> compact(const at::Tensor& active) {
  check_compact_args(active);
  const int64_t rows = active.size(0), row_len = active.size(1);
  const uint8_t* a = active.data_ptr<uint8_t>();
  std::vector<int64_t> cu(static_cast<size_t>(rows) + 1, 0);
  at::parallel_for(0, rows, mask_grain(row_len),
                   [&](int64_t b0, int64_t b1) {
                     for (int64_t b = b0; b < b1; ++b) {
                       const uint8_t* m = a + b * row_len;
                       int64_t count = 0;
                       for (int64_t t = 0; t < row_len; ++t) count += m[t];
                       cu[static_cast<size_t>(b) + 1] = count;
                     }
                   });
  int64_t max_seqlen = 0;
  for (int64_t b = 0; b < rows; ++b) {
    max_seqlen = std::max(max_seqlen, cu[b + 1]);
    cu[b + 1] += cu[b];
  }
  const int64_t total = cu[rows];
  TORCH_CHECK(total <= std::numeric_limits<int32_t>::max(), "gather_tokens: ", total,
              " active tokens do not fit the int32 cu_seqlens");
  at::Tensor index = at::empty({total}, active.options().dtype(at::kLong));
  at::Tensor cu_seqlens = at::empty({rows + 1}, active.options().dtype(at::kInt));
  int64_t* idx = index.data_ptr<int64_t>();
  int32_t* cs = cu_seqlens.data_ptr<int32_t>();
  for (int64_t b = 0; b <= rows; ++b) cs[b] = static_cast<int32_t>(cu[b]);
  at::parallel_for(0, rows, mask_grain(row_len),
                   [&](int64_t b0, int64_t b1) {
                     for (int64_t b = b0; b < b1; ++b) {
                       const uint8_t* m = a + b * row_len;
                       int64_t slot = cu[b];
                       for (int64_t t = 0; t < row_len; ++t) {
                         if (m[t]) idx[slot++] = flat_position(b, row_len, t);
                       }
                     }
                   });
  return {index, cu_seqlens, max_seqlen};
}

// out[i] = src[index[i]]: [N, H] from [M, H].
at::Tensor gather_rows(const at::Tensor& src, const at::Tensor& index) {
  check_gather_rows_args(src, index);
  const int64_t n = index.size(0), num_rows = src.size(0);
  const int64_t row_bytes = src.size(1) * static_cast<int64_t>(src.element_size());
  at::Tensor out = at::empty({n, src.size(1)}, src.options());
  const int64_t* idx = index.data_ptr<int64_t>();
  const char* s = static_cast<const char*>(src.data_ptr());
  char* o = static_cast<char*>(out.data_ptr());
  at::parallel_for(0, n, row_grain(row_bytes), [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t row = idx[i];
      check_row_in_range(row, num_rows);
      std::memcpy(o + i * row_bytes, s + row * row_bytes, static_cast<size_t>(row_bytes));
    }
  });
  return out;
}

// base (zeros when absent) [num_rows, H] with rows index[i] := tokens[i] (zero rows when tokens is absent).
at::Tensor scatter_rows(const c10::optional<at::Tensor>& tokens, const at::Tensor& index,
                        const c10::optional<at::Tensor>& base, int64_t num_rows) {
  at::Tensor out = scatter_rows_output(tokens, index, base, num_rows);
  const int64_t n = index.size(0);
  const int64_t row_bytes = out.size(1) * static_cast<int64_t>(out.element_size());
  const int64_t* idx = index.data_ptr<int64_t>();
  const char* t = tokens.has_value() ? static_cast<const char*>(tokens->data_ptr()) : nullptr;
  char* o = static_cast<char*>(out.data_ptr());
  at::parallel_for(0, n, row_grain(row_bytes), [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t row = idx[i];
      check_row_in_range(row, num_rows);
      if (t) {
        std::memcpy(o + row * row_bytes, t + i * row_bytes, static_cast<size_t>(row_bytes));
      } else {
        std::memset(o + row * row_bytes, 0, static_cast<size_t>(row_bytes));
      }
    }
  });
  return out;
}

// (tokens [B, k, H], index [B, k]): the k tokens of smallest keep_key of each row, in position order.
std::tuple<at::Tensor, at::Tensor> select_tokens(const at::Tensor& hidden, const at::Tensor& logits,
                                                 const at::Tensor& rank, int64_t k) {
  check_select_tokens_args(hidden, logits, rank, k);
  const int64_t rows = hidden.size(0), row_len = hidden.size(1);
  const int64_t row_bytes = hidden.size(2) * static_cast<int64_t>(hidden.element_size());
  at::Tensor tokens = at::empty({rows, k, hidden.size(2)}, hidden.options());
  at::Tensor index = at::empty({rows, k}, hidden.options().dtype(at::kLong));
  if (rows == 0 || k == 0) return {tokens, index};
  const uint8_t* r = rank.data_ptr<uint8_t>();
  const char* s = static_cast<const char*>(hidden.data_ptr());
  char* o = static_cast<char*>(tokens.data_ptr());
  int64_t* idx = index.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "select_tokens_cpu", [&] {
    const scalar_t* x = logits.data_ptr<scalar_t>();
    const int64_t grain = row_grain(k * row_bytes + row_len * static_cast<int64_t>(sizeof(uint64_t)));
    at::parallel_for(0, rows, grain, [&](int64_t b0, int64_t b1) {
      std::vector<uint64_t> keys(static_cast<size_t>(row_len));
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t base = b * row_len;
        auto key = [&](int64_t t) { return keep_key(r[base + t], static_cast<float>(x[base + t]), t); };
        // keys are unique, so the kept tokens are exactly those below the (k+1)-th smallest key; a scan
        // in position order then yields them already sorted
        uint64_t bound = std::numeric_limits<uint64_t>::max();
        if (k < row_len) {
          for (int64_t t = 0; t < row_len; ++t) keys[t] = key(t);
          std::nth_element(keys.begin(), keys.begin() + k, keys.end());
          bound = keys[k];
        }
        int64_t* kept = idx + b * k;
        int64_t j = 0;
        for (int64_t t = 0; t < row_len; ++t) {
          if (key(t) < bound) kept[j++] = t;
        }
        for (j = 0; j < k; ++j) {
          std::memcpy(o + (b * k + j) * row_bytes, s + (base + kept[j]) * row_bytes, static_cast<size_t>(row_bytes));
        }
      }
    });
  });
  return {tokens, index};
}

}  // namespace cpu
}  // namespace electra_fast

TORCH_LIBRARY_FRAGMENT(electra_fast_C, m) {
  m.def("exit_mask(Tensor logits, Tensor active, Tensor? input_ids, Tensor? keep_ids, float bound) -> Tensor");
  m.def("compact(Tensor active) -> (Tensor, Tensor, int)");
  m.def("gather_rows(Tensor src, Tensor index) -> Tensor");
  m.def("scatter_rows(Tensor? tokens, Tensor index, Tensor? base, int num_rows) -> Tensor");
  m.def("select_tokens(Tensor hidden, Tensor logits, Tensor rank, int k) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(electra_fast_C, CPU, m) {
  m.impl("exit_mask", &electra_fast::cpu::exit_mask);
  m.impl("compact", &electra_fast::cpu::compact);
  m.impl("gather_rows", &electra_fast::cpu::gather_rows);
  m.impl("scatter_rows", &electra_fast::cpu::scatter_rows);
  m.impl("select_tokens", &electra_fast::cpu::select_tokens);
}
