// The CPU row sampler of sample_replace, included once per instruction set by csrc/cpu/replace.cpp
// inside `#pragma GCC target` regions (no include guard on purpose: each inclusion is a separate
// namespace compiled for its ISA). GCC's target_clones resolvers can run before the CPU model is
// initialised and then always pick the baseline, so replace.cpp picks the variant itself.
//
// Needs: kChunk, RowSample/RowFlag, <vector>, <algorithm>, cpu_simd.h (vector expf), from the includer.
//
// A row is read twice (max, then weights) in chunks of kChunk values; float rows are read in place,
// half/bfloat16 chunks are converted to an L1 buffer. Pass 2 keeps one fp64 partial sum per chunk, so the
// sample is found by a scan of V / kChunk partials plus one chunk recomputed by the same code (identical
// weights), not by a sequential fp64 prefix sum over the whole row.

// max(x) and whether x holds NaN or +inf, in one read.
inline float chunk_max_checked(const float* __restrict x, int64_t n, bool& bad) {
  float m = -INFINITY;
  int flag = 0;
#pragma omp simd reduction(max : m) reduction(| : flag)
  for (int64_t i = 0; i < n; ++i) {
    flag |= (x[i] != x[i]) | (x[i] == INFINITY);
    m = x[i] > m ? x[i] : m;
  }
  bad = flag != 0;
  return m;
}

// w = exp((x - mx) * inv_t) (w[skip] = 0) and their fp64 sum. Both passes run this on the same input, so
// the weights the scan sees are exactly the ones that were summed.
inline double chunk_weights(const float* __restrict x, int64_t n, float mx, float inv_t, int64_t skip,
                            float* __restrict w) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) w[i] = expf((x[i] - mx) * inv_t);
  if (skip >= 0 && skip < n) w[skip] = 0.f;
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(w[i]);
  return s;
}

// Chunk c of a row as float: in place for float rows, converted into buf otherwise.
template <typename scalar_t>
inline const float* load_chunk(const scalar_t* row, int64_t begin, int64_t n, float* __restrict buf) {
  if constexpr (std::is_same_v<scalar_t, float>) {
    return row + begin;
  } else {
    for (int64_t i = 0; i < n; ++i) buf[i] = static_cast<float>(row[begin + i]);
    return buf;
  }
}

// One exact sample of softmax(x / T) over row[0..v) (T == 0: first argmax) with id `skip` excluded
// (-1: none), following csrc/include/electra_fast/sampling.h.
template <typename scalar_t>
RowSample sample_row(const scalar_t* row, int64_t v, int64_t skip, float inv_t, bool greedy, float u,
                     std::vector<double>& partial) {
  alignas(64) float buf[kChunk];
  alignas(64) float w[kChunk];
  const int64_t chunks = (v + kChunk - 1) / kChunk;
  float mx = -INFINITY;
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t begin = c * kChunk, n = std::min(kChunk, v - begin);
    const float* x = load_chunk(row, begin, n, buf);
    bool bad;
    float m = chunk_max_checked(x, n, bad);
    if (bad) return {-1, kRowNonFinite};
    if (skip >= begin && skip < begin + n && x[skip - begin] == m) {
      m = -INFINITY;  // the excluded id was this chunk's max: take the max of the others
      for (int64_t i = 0; i < n; ++i) m = (i != skip - begin && x[i] > m) ? x[i] : m;
    }
    mx = std::max(mx, m);
  }
  if (mx == -INFINITY) return {-1, kRowEmpty};
  if (greedy) {
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t begin = c * kChunk, n = std::min(kChunk, v - begin);
      const float* x = load_chunk(row, begin, n, buf);
      for (int64_t i = 0; i < n; ++i) {
        if (x[i] == mx && begin + i != skip) return {begin + i, kRowOk};
      }
    }
  }
  partial.resize(static_cast<size_t>(chunks));
  double z = 0.0;
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t begin = c * kChunk, n = std::min(kChunk, v - begin);
    partial[c] = chunk_weights(load_chunk(row, begin, n, buf), n, mx, inv_t, skip - begin, w);
    z += partial[c];
  }
  const double target = static_cast<double>(u) * z;
  double run = 0.0;
  int64_t c = 0;
  while (c + 1 < chunks && run + partial[c] < target) run += partial[c++];
  const int64_t begin = c * kChunk, n = std::min(kChunk, v - begin);
  chunk_weights(load_chunk(row, begin, n, buf), n, mx, inv_t, skip - begin, w);
  int64_t last_positive = -1;
  for (int64_t i = 0; i < n; ++i) {
    run += w[i];
    if (w[i] > 0.f) last_positive = i;
    if (run >= target) return {begin + i, kRowOk};
  }
  // fp64 rounding between the chunk's sum and the running sum: the contract's "last positive weight"
  return {begin + last_positive, kRowOk};
}
