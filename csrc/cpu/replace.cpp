// CPU kernels of masking and sampled replacement. Contract and layout of the random words:
// electra_fast/ops/replace.py; per-element math: csrc/include/electra_fast/masking.h; the row sampler:
// csrc/include/electra_fast/sampling.h.
//
// sample_replace: one task per logits row (at::parallel_for), the row sampler built per instruction set
// (cpu_isa.h). mask_tokens costs about one Philox call (~10-20 ns) per position, statistical_fill one per
// masked position (~15%) and a test per other, so they go parallel only past kMaskGrain and kFillGrain
// positions (~0.3 ms of work): a parallel region saves little on less, and on a busy machine it can cost
// milliseconds, since it ends only when every worker has been scheduled.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "electra_fast/checks.h"
#include "electra_fast/cpu_isa.h"
#include "electra_fast/masking.h"
#include "electra_fast/philox.h"
#include "electra_fast/sampling.h"

namespace electra_fast {
namespace cpu {
namespace {

constexpr int64_t kMaskGrain = 16384;
constexpr int64_t kFillGrain = 8 * kMaskGrain;

// One row of logits of any kernel dtype through sampling.h's sample_row.
EF_ALWAYS_INLINE RowSample sample_logits_row(const void* row, at::ScalarType dtype, int64_t v, int64_t skip,
                                             float inv_t, bool greedy, float u, double* partial) {
  switch (dtype) {
    case at::kHalf: return sample_row(static_cast<const at::Half*>(row), v, skip, inv_t, greedy, u, partial);
    case at::kBFloat16: return sample_row(static_cast<const at::BFloat16*>(row), v, skip, inv_t, greedy, u, partial);
    default: return sample_row(static_cast<const float*>(row), v, skip, inv_t, greedy, u, partial);
  }
}

EF_CPU_VARIANTS(RowSample, sample_logits_row,
                (const void* row, at::ScalarType dtype, int64_t v, int64_t skip, float inv_t, bool greedy, float u,
                 double* partial),
                (row, dtype, v, skip, inv_t, greedy, u, partial), sample_logits_row)

const CpuKernel<decltype(&sample_logits_row_baseline)> row_sampler("sample_replace", &sample_logits_row_baseline,
                                                                    &sample_logits_row_avx2,
                                                                    &sample_logits_row_avx512);

}  // namespace

// input_ids [B, T] -> (masked_ids [B, T], is_masked [B, T] bool). See masking.h for the random words.
std::tuple<at::Tensor, at::Tensor> mask_tokens_cpu(const at::Tensor& input_ids,
                                                   const c10::optional<at::Tensor>& attention_mask,
                                                   const at::Tensor& special_ids, double mask_prob,
                                                   int64_t mask_token_id, double mask_fraction, int64_t seed,
                                                   int64_t offset) {
  check_mask_tokens_args(input_ids, attention_mask, special_ids);
  const int64_t rows = input_ids.size(0), len = input_ids.size(1);
  const std::vector<int64_t> specials(special_ids.data_ptr<int64_t>(),
                                      special_ids.data_ptr<int64_t>() + special_ids.numel());
  at::Tensor masked_ids = input_ids.clone();
  at::Tensor is_masked = at::zeros_like(input_ids, input_ids.options().dtype(at::kBool));
  const bool* real = attention_mask.has_value() ? attention_mask->data_ptr<bool>() : nullptr;
  bool* out_mask = is_masked.data_ptr<bool>();
  const float frac = static_cast<float>(mask_fraction);
  const uint64_t s = static_cast<uint64_t>(seed), o = static_cast<uint64_t>(offset);

  EF_DISPATCH_IDS(input_ids.scalar_type(), "mask_tokens_cpu", [&] {
    const scalar_t* ids = input_ids.data_ptr<scalar_t>();
    scalar_t* out = masked_ids.data_ptr<scalar_t>();
    const int64_t row_grain = std::max<int64_t>(1, kMaskGrain / std::max<int64_t>(len, 1));
    at::parallel_for(0, rows, row_grain, [&](int64_t r0, int64_t r1) {
      std::vector<int64_t> key(static_cast<size_t>(len)), sorted;
      std::vector<uint32_t> w1(static_cast<size_t>(len));
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t base = r * len;
        int64_t n_real = 0;
        sorted.clear();
        for (int64_t t = 0; t < len; ++t) {
          const bool is_real = real == nullptr || real[base + t];
          const int64_t id = static_cast<int64_t>(ids[base + t]);
          n_real += is_real;
          const bool candidate = is_real && id != mask_token_id &&
                                 std::find(specials.begin(), specials.end(), id) == specials.end();
          key[t] = kNotCandidate;
          if (candidate) {
            const Philox4 w = philox_words(s, o, static_cast<uint64_t>(base + t));
            key[t] = selection_key(w.w[kSelectWord], t);
            w1[t] = w.w[kMaskWord];
            sorted.push_back(key[t]);
          }
        }
        const int64_t k = masked_count(n_real, static_cast<int64_t>(sorted.size()), mask_prob);
        if (k == 0) continue;
        std::nth_element(sorted.begin(), sorted.begin() + (k - 1), sorted.end());
        const int64_t kth = sorted[k - 1];
        for (int64_t t = 0; t < len; ++t) {
          if (key[t] > kth) continue;
          out_mask[base + t] = true;
          if (word_to_uniform(w1[t]) < frac) out[base + t] = static_cast<scalar_t>(mask_token_id);
        }
      }
    });
  });
  return {masked_ids, is_masked};
}

// logits [M, V] for the M masked positions of input_ids in row-major order -> (corrupted_ids,
// is_replaced bool, status int64 [3] = (#masked positions, #rows with NaN/+inf, #rows without a finite
// allowed logit)). Rows that cannot be sampled keep the original token.
std::tuple<at::Tensor, at::Tensor, at::Tensor> sample_replace_cpu(const at::Tensor& logits,
                                                                  const at::Tensor& input_ids,
                                                                  const at::Tensor& is_masked, double temperature,
                                                                  bool disallow_original, int64_t seed,
                                                                  int64_t offset) {
  check_sample_replace_args(logits, input_ids, is_masked, temperature);
  const int64_t rows = logits.size(0), vocab = logits.size(1), n = input_ids.numel();
  const bool* mask = is_masked.data_ptr<bool>();
  std::vector<int64_t> position(static_cast<size_t>(rows), -1);
  int64_t count = 0;
  for (int64_t p = 0; p < n; ++p) {
    if (!mask[p]) continue;
    if (count < rows) position[count] = p;
    ++count;
  }
  at::Tensor corrupted = input_ids.clone();
  at::Tensor is_replaced = at::zeros_like(input_ids, input_ids.options().dtype(at::kBool));
  std::vector<int8_t> status(static_cast<size_t>(rows), kRowSampled);
  const int64_t sampled = std::min(count, rows);
  const bool greedy = temperature == 0.0;
  const float inv_t = inverse_temperature(temperature);
  const at::ScalarType dtype = logits.scalar_type();
  const char* x = static_cast<const char*>(logits.data_ptr());
  const int64_t row_bytes = vocab * static_cast<int64_t>(logits.element_size());
  bool* replaced = is_replaced.data_ptr<bool>();

  EF_DISPATCH_IDS(input_ids.scalar_type(), "sample_replace_cpu", [&] {
    const scalar_t* ids = input_ids.data_ptr<scalar_t>();
    scalar_t* out = corrupted.data_ptr<scalar_t>();
    at::parallel_for(0, sampled, 1, [&](int64_t m0, int64_t m1) {
      std::vector<double> partial(static_cast<size_t>(sample_row_partials(vocab)));
      for (int64_t m = m0; m < m1; ++m) {
        const int64_t p = position[m];
        const int64_t orig = static_cast<int64_t>(ids[p]);
        const int64_t skip = disallow_original && orig >= 0 && orig < vocab ? orig : -1;
        const float u = word_to_uniform(
            philox_words(static_cast<uint64_t>(seed), static_cast<uint64_t>(offset), static_cast<uint64_t>(m)).w[0]);
        const RowSample r = row_sampler(x + m * row_bytes, dtype, vocab, skip, inv_t, greedy, u, partial.data());
        status[m] = r.status;
        if (r.status == kRowSampled) {
          out[p] = static_cast<scalar_t>(r.id);
          replaced[p] = r.id != orig;
        }
      }
    });
  });
  const int64_t non_finite = std::count(status.begin(), status.end(), static_cast<int8_t>(kRowNonFinite));
  const int64_t empty = std::count(status.begin(), status.end(), static_cast<int8_t>(kRowEmpty));
  at::Tensor counts = at::tensor({count, non_finite, empty}, logits.options().dtype(at::kLong));
  return {corrupted, is_replaced, counts};
}

// Replacements from a statistical generator's tables (masking.h, SamplerTables) at the masked positions.
std::tuple<at::Tensor, at::Tensor> statistical_fill_cpu(const at::Tensor& input_ids, const at::Tensor& is_masked,
                                                        const at::Tensor& row_of_token, const at::Tensor& cdf,
                                                        const at::Tensor& offsets, const at::Tensor& members,
                                                        int64_t seed, int64_t offset) {
  check_statistical_fill_args(input_ids, is_masked, row_of_token, cdf, offsets, members);
  const SamplerTables tables{row_of_token.data_ptr<int64_t>(), row_of_token.numel(), cdf.data_ptr<double>(),
                             cdf.size(0), cdf.size(1), offsets.data_ptr<int64_t>(), members.data_ptr<int64_t>()};
  at::Tensor corrupted = input_ids.clone();
  at::Tensor is_replaced = at::zeros_like(input_ids, input_ids.options().dtype(at::kBool));
  const bool* mask = is_masked.data_ptr<bool>();
  bool* replaced = is_replaced.data_ptr<bool>();
  EF_DISPATCH_IDS(input_ids.scalar_type(), "statistical_fill_cpu", [&] {
    const scalar_t* ids = input_ids.data_ptr<scalar_t>();
    scalar_t* out = corrupted.data_ptr<scalar_t>();
    at::parallel_for(0, input_ids.numel(), kFillGrain, [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        if (!mask[p]) continue;
        const int64_t orig = static_cast<int64_t>(ids[p]);
        const Philox4 w = philox_words(static_cast<uint64_t>(seed), static_cast<uint64_t>(offset), static_cast<uint64_t>(p));
        const int64_t id = statistical_draw(tables, orig, w);
        out[p] = static_cast<scalar_t>(id);
        replaced[p] = id != orig;
      }
    });
  });
  return {corrupted, is_replaced};
}

}  // namespace cpu
}  // namespace electra_fast

TORCH_LIBRARY_FRAGMENT(electra_fast_C, m) {
  m.def(
      "mask_tokens(Tensor input_ids, Tensor? attention_mask, Tensor special_ids, float mask_prob, "
      "int mask_token_id, float mask_fraction, int seed, int offset) -> (Tensor, Tensor)");
  m.def(
      "sample_replace(Tensor logits, Tensor input_ids, Tensor is_masked, float temperature, bool disallow_original, "
      "int seed, int offset) -> (Tensor, Tensor, Tensor)");
  m.def(
      "statistical_fill(Tensor input_ids, Tensor is_masked, Tensor row_of_token, Tensor cdf, Tensor offsets, "
      "Tensor members, int seed, int offset) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(electra_fast_C, CPU, m) {
  m.impl("mask_tokens", &electra_fast::cpu::mask_tokens_cpu);
  m.impl("sample_replace", &electra_fast::cpu::sample_replace_cpu);
  m.impl("statistical_fill", &electra_fast::cpu::statistical_fill_cpu);
}
