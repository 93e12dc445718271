// Per-element logic of token-level early exit, shared by the CPU and CUDA kernels.
// Twins: electra_fast/reference/early_exit.py (oracle, the math) and electra_fast/triton/early_exit.py.
//
// Exit decision: a token stays active iff it was active and (conf < threshold or its id is kept),
// conf = max(p, 1-p) = sigmoid(|x|). Since sigmoid is increasing, conf < threshold <=> |x| < logit(t).
// The host passes `bound` = the smallest float32 >= logit(t) (computed in float64), and for any float32
// f: f < logit(t) <=> f < bound, so every backend takes the same decision bit for bit, threshold
// ties included. NaN logits compare false, so they exit.
//
// Compaction: the active tokens of row b, in order, go to packed slots cu_seqlens[b] + (number of
// active tokens before them in the row) -- an exclusive prefix sum per row. index holds their flat
// positions b*T + t; every offset is int64 (B*T*H may pass 2^31).
//
// Budgeted selection (select_tokens): row b keeps exactly the k tokens of smallest
//   key(t) = (c << 61) | (conf << 30) | t,   c = 0 kept id, 1 ordinary, 2 inactive (ranks above 2 count as 2),
//   conf = the bits of |float32(logit)| when c == 1, else 0.
// Non-negative floats order as their bits do, so keys order by (c, |logit|, t): kept ids first, then the
// least confident tokens, ties to the lower position; inactive tokens go first. conf is taken from the
// bits rather than fabsf, so flush-to-zero modes cannot touch it, and every NaN counts as 0x7FFFFFFF
// (above +inf), so NaN payloads, which conversions from half or double need not keep, cannot either.
// Keys are unique (t is in them), so every backend keeps the same set.
#pragma once
#include <cstring>

#include "electra_fast/macros.h"

namespace electra_fast {

EF_HOST_DEVICE EF_INLINE bool id_is_kept(int64_t id, const int64_t* keep_ids, int64_t num_keep) {
  bool kept = false;
  for (int64_t k = 0; k < num_keep; ++k) kept |= keep_ids[k] == id;
  return kept;
}

EF_HOST_DEVICE EF_INLINE bool stays_active(bool active, float logit, float bound, bool kept) {
  return active && (fabsf(logit) < bound || kept);
}

EF_HOST_DEVICE EF_INLINE int64_t flat_position(int64_t row, int64_t row_len, int64_t t) { return row * row_len + t; }

// Bytes of one hidden row, and the widest power-of-two unit (<= 16 bytes) that divides it and the
// base addresses, so row copies run in the largest aligned unit the layout allows (H odd included).
EF_HOST_DEVICE EF_INLINE int copy_unit_bytes(int64_t row_bytes, uintptr_t addr_a, uintptr_t addr_b) {
  int unit = 16;
  while (unit > 1 && ((row_bytes % unit) != 0 || (addr_a % unit) != 0 || (addr_b % unit) != 0)) unit /= 2;
  return unit;
}

// Positions fit in the key's low 30 bits.
constexpr int64_t kMaxSelectLen = int64_t(1) << 30;

EF_HOST_DEVICE EF_INLINE uint32_t float_bits(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(x);
#else
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof(bits));
  return bits;
#endif
}

EF_HOST_DEVICE EF_INLINE uint64_t keep_key(uint8_t rank, float logit, int64_t t) {
  const uint64_t c = rank < 2 ? rank : 2;
  uint64_t conf = 0;
  if (c == 1) {
    const uint32_t magnitude = float_bits(logit) & 0x7FFFFFFFu;
    conf = magnitude > 0x7F800000u ? 0x7FFFFFFFu : magnitude;
  }
  return (c << 61) | (conf << 30) | static_cast<uint64_t>(t);
}

}  // namespace electra_fast
