// Per-element math of the exact (erf) GELU and its derivative, shared by the CPU and CUDA kernels of
// bias_gelu. Oracle: electra_fast/reference/bias_gelu.py.
//
//   gelu(z)  = z Phi(z),  Phi(z) = (1 + erf(z / sqrt 2)) / 2 = erfc(|z| / sqrt 2) / 2 for z < 0, 1 - that for z >= 0
//   gelu'(z) = Phi(z) + z phi(z),  phi(z) = exp(-z^2 / 2) / sqrt(2 pi)
//
// erfc(t) for t >= 0 is exp(t P(t)), P a degree-8 polynomial fitted (weighted minimax) to log(erfc(t)) / t on
// [0, 3.9]; erfc(t) is taken as 0 from 3.9 on, where erf(t) rounds to 1 in float32. With a float32 exp of <= 1.5
// ulp, erf(x) = +-(1 - erfc(|x|)) is within 1e-7 of the exact erf for every float32 x (8.3e-8 in a float32 model
// of this code on 6M points of [-4.2, 4.2]); tests/ops/test_bias_gelu.py checks the bound on the kernels' forward
// over a dense grid (where torch's float32 CPU gelu measures 6.5e-7). Phi(z) is then within 5e-8 of the exact one
// and, unlike (1 + erf) / 2, keeps its relative accuracy for negative z down to -5.5 (below, Phi < 2e-8 is 0).
// Non-finite z: gelu(+inf) = +inf, gelu(-inf) = NaN, gelu'(+-inf) = NaN, NaN stays NaN (as in exact arithmetic).
//
// Templates over the value type: float on the GPU, a GCC vector of floats in the CPU kernel, written with value
// selects only (T{} is 0), which both kinds of T support. `exp` is the caller's exp of a non-positive float (or
// vector): fast_math.h's exp_nonpos on the CPU, expf on the GPU. Always inlined: the CPU kernel's per-ISA builds
// (cpu_isa.h) must compile them for their own instruction set.
#pragma once
#include "electra_fast/macros.h"

namespace electra_fast {

// The erfc(t) of the header comment, t >= 0 (or NaN, which propagates).
template <typename T, typename Exp>
EF_HOST_DEVICE EF_ALWAYS_INLINE T erfc_nonneg(T t, Exp exp) {
  T p = T{} + 8.043813068070449e-06f;
  p = p * t - 1.0602656402625144e-04f;
  p = p * t + 5.879503441974521e-04f;
  p = p * t - 1.576759503223002e-03f;
  p = p * t + 5.878075899090618e-05f;
  p = p * t + 1.9217142835259438e-02f;
  p = p * t - 1.0279920697212219e-01f;
  p = p * t - 6.366161108016968e-01f;
  p = p * t - 1.1283793449401855f;
  const T e = exp(p * t);
  return t >= 3.9f ? T{} : e;
}

template <typename T, typename Exp>
EF_HOST_DEVICE EF_ALWAYS_INLINE T normal_cdf(T z, Exp exp) {
  const T half_erfc = 0.5f * erfc_nonneg((z < T{} ? -z : z) * 0.70710678118654752f, exp);
  return z >= T{} ? 1.f - half_erfc : half_erfc;
}

// phi(z); exp(-z^2 / 2) below exp(-87) is flushed to 0 (where exp_nonpos saturates), so that z phi(z) -> 0 as
// |z| grows and is NaN at |z| = inf, as in exact arithmetic.
template <typename T, typename Exp>
EF_HOST_DEVICE EF_ALWAYS_INLINE T normal_pdf(T z, Exp exp) {
  const T half_square = 0.5f * z * z;
  const T e = exp(-half_square);
  return half_square > 87.f ? T{} : 0.39894228040143268f * e;
}

template <typename T, typename Exp>
EF_HOST_DEVICE EF_ALWAYS_INLINE T gelu(T z, Exp exp) {
  return z * normal_cdf(z, exp);
}

template <typename T, typename Exp>
EF_HOST_DEVICE EF_ALWAYS_INLINE T gelu_grad(T z, Exp exp) {
  return normal_cdf(z, exp) + z * normal_pdf(z, exp);
}

}  // namespace electra_fast
