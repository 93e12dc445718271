// CPU kernels of token-level early exit: exit decision, per-row compaction, row gather and scatter.
// Logic: csrc/include/electra_fast/compaction.h. Schema and contract: electra_fast/ops/early_exit.py.
// Gather and scatter move bytes (memcpy of whole rows), so they take any dtype.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstring>
#include <limits>

#include "cpu_utils.h"
#include "electra_fast/compaction.h"

namespace electra_fast {
namespace cpu {
namespace {

// Rows per parallel task: about 64 KiB of copying, so small rows do not drown in scheduling.
int64_t row_grain(int64_t row_bytes) { return std::max<int64_t>(1, 65536 / std::max<int64_t>(row_bytes, 1)); }

// Mask rows per parallel task of the compaction: ~256K tokens. A byte scan of that size takes ~0.1 ms,
// so a typical batch (B*T ~ 16K-64K) compacts on one thread instead of paying for two parallel regions.
int64_t mask_grain(int64_t row_len) { return std::max<int64_t>(1, (int64_t(1) << 18) / std::max<int64_t>(row_len, 1)); }

void check_index(const at::Tensor& index, const char* name) {
  check_cpu_contiguous(index, name);
  TORCH_CHECK(index.scalar_type() == at::kLong && index.dim() == 1, name, " must be a 1-D int64 tensor, got ",
              index.scalar_type(), " of shape ", index.sizes());
}

void check_rows(const at::Tensor& t, const char* name) {
  check_cpu_contiguous(t, name);
  TORCH_CHECK(t.dim() == 2, name, " must be 2-D [rows, H], got shape ", t.sizes());
}

inline void check_row_in_range(int64_t row, int64_t num_rows) {
  TORCH_CHECK(row >= 0 && row < num_rows, "index out of range: row ", row, " of ", num_rows);
}

}  // namespace

at::Tensor exit_mask(const at::Tensor& logits, const at::Tensor& active, const c10::optional<at::Tensor>& input_ids,
                     const c10::optional<at::Tensor>& keep_ids, double bound) {
  check_cpu_contiguous(logits, "exit_logits");
  TORCH_CHECK(is_kernel_float(logits.scalar_type()), "exit_logits must be float32, float16 or bfloat16, got ",
              logits.scalar_type());
  check_cpu_contiguous(active, "active");
  TORCH_CHECK(active.scalar_type() == at::kByte, "active must be uint8 (a bool mask viewed as uint8)");
  check_same_numel(active, logits.numel(), "active");
  TORCH_CHECK(input_ids.has_value() == keep_ids.has_value(), "input_ids and keep_ids go together");
  const int64_t* ids = nullptr;
  const int64_t* keep = nullptr;
  int64_t num_keep = 0;
  if (keep_ids.has_value()) {
    check_cpu_contiguous(*input_ids, "input_ids");
    check_cpu_contiguous(*keep_ids, "keep_ids");
    TORCH_CHECK(input_ids->scalar_type() == at::kLong && keep_ids->scalar_type() == at::kLong,
                "input_ids and keep_ids must be int64");
    check_same_numel(*input_ids, logits.numel(), "input_ids");
    ids = input_ids->data_ptr<int64_t>();
    keep = keep_ids->data_ptr<int64_t>();
    num_keep = keep_ids->numel();
  }
  at::Tensor out = at::empty(logits.sizes(), logits.options().dtype(at::kBool));
  const int64_t n = logits.numel();
  const float fbound = static_cast<float>(bound);  // exact: the host passes a float32 value
  const uint8_t* a = active.data_ptr<uint8_t>();
  bool* o = out.data_ptr<bool>();
  EF_DISPATCH_FLOAT_HALF_BF16(logits.scalar_type(), "exit_mask_cpu", [&] {
    const scalar_t* x = logits.data_ptr<scalar_t>();
    at::parallel_for(0, n, kReduceBlock, [&](int64_t begin, int64_t end) {
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
  check_cpu_contiguous(active, "active");
  TORCH_CHECK(active.scalar_type() == at::kByte && active.dim() == 2, "active must be a 2-D uint8 mask [B, T]");
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
  check_rows(src, "src");
  check_index(index, "index");
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
  TORCH_CHECK(tokens.has_value() || base.has_value(), "scatter_rows needs tokens or base");
  check_index(index, "index");
  const at::Tensor& like = tokens.has_value() ? *tokens : *base;
  check_rows(like, tokens.has_value() ? "tokens" : "base");
  const int64_t h = like.size(1), n = index.size(0);
  if (tokens.has_value()) {
    TORCH_CHECK(tokens->size(0) == n, "tokens must have one row per index entry (", n, "), got ", tokens->size(0));
  }
  at::Tensor out;
  if (base.has_value()) {
    check_rows(*base, "base");
    TORCH_CHECK(base->size(0) == num_rows && base->size(1) == h && base->scalar_type() == like.scalar_type(),
                "base must be [", num_rows, ", ", h, "] of dtype ", like.scalar_type());
    out = base->clone();
  } else {
    out = at::zeros({num_rows, h}, like.options());
  }
  const int64_t row_bytes = h * static_cast<int64_t>(like.element_size());
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

}  // namespace cpu
}  // namespace electra_fast

TORCH_LIBRARY_FRAGMENT(electra_fast_C, m) {
  m.def("exit_mask(Tensor logits, Tensor active, Tensor? input_ids, Tensor? keep_ids, float bound) -> Tensor");
  m.def("compact(Tensor active) -> (Tensor, Tensor, int)");
  m.def("gather_rows(Tensor src, Tensor index) -> Tensor");
  m.def("scatter_rows(Tensor? tokens, Tensor index, Tensor? base, int num_rows) -> Tensor");
}

TORCH_LIBRARY_IMPL(electra_fast_C, CPU, m) {
  m.impl("exit_mask", &electra_fast::cpu::exit_mask);
  m.impl("compact", &electra_fast::cpu::compact);
  m.impl("gather_rows", &electra_fast::cpu::gather_rows);
  m.impl("scatter_rows", &electra_fast::cpu::scatter_rows);
}
