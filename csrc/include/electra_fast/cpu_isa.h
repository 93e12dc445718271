// Per-instruction-set builds of the CPU hot loops and the one place that picks among them.
//
// A hot loop is written once, as an EF_ALWAYS_INLINE function, and EF_CPU_VARIANTS builds it three
// times: for the x86-64 baseline (SSE2), with EF_TARGET_AVX2 and with EF_TARGET_AVX512. Everything such
// a build calls must be EF_ALWAYS_INLINE too (or a vector libm function): a function that is called, not
// inlined, keeps its baseline build, and so does a lambda, which does not inherit the target of the
// function around it; so loops live in the built function and at::parallel_for calls it, not the reverse.
// CpuKernel picks one build per kernel when the library loads, with __builtin_cpu_supports, and records
// the choice for electra_fast_C::cpu_isa (csrc/ops.cpp). GCC's ifunc-based multiversioning is not used:
// its resolver runs while the dlopen'd extension is relocated, and in this extension it picked the
// baseline on an AVX-512 CPU.
//
// Vector libm: glibc's libmvec has SIMD variants of expf and exp (_ZGV*), but math.h only announces them under
// -ffast-math, which would also break inf/NaN handling. Re-declaring them with the `simd` attribute lets
// `#pragma omp simd` loops call it without fast-math; the variant (SSE, AVX2, AVX-512) follows the target
// of the function the loop is compiled in.
#pragma once
#include <map>
#include <string>
#include <utility>

#include "electra_fast/macros.h"

#if defined(__GLIBC__) && defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__CUDACC__)
#define EF_CPU_X86_VARIANTS 1
extern "C" {
__attribute__((simd("notinbranch"))) float expf(float) noexcept;
__attribute__((simd("notinbranch"))) double exp(double) noexcept;
}
#define EF_TARGET_AVX2 __attribute__((target("avx2,fma")))
#define EF_TARGET_AVX512 __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma")))
#else
#define EF_TARGET_AVX2
#define EF_TARGET_AVX512
#endif

// NAME_baseline, NAME_avx2 and NAME_avx512: `RET NAME PARAMS` returning BODY ARGS, built for each
// instruction set (BODY must be EF_ALWAYS_INLINE).
#define EF_CPU_VARIANTS(RET, NAME, PARAMS, ARGS, BODY) \
  RET NAME##_baseline PARAMS { return BODY ARGS; }      \
  EF_TARGET_AVX2 RET NAME##_avx2 PARAMS { return BODY ARGS; } \
  EF_TARGET_AVX512 RET NAME##_avx512 PARAMS { return BODY ARGS; }

namespace electra_fast {
namespace cpu {

enum class CpuIsa : int { kBaseline = 0, kAvx2 = 1, kAvx512 = 2 };

inline const char* cpu_isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kAvx512: return "avx512";
    case CpuIsa::kAvx2: return "avx2";
    default: return "baseline";
  }
}

// The best build this CPU runs (AVX-512 needs F, DQ, BW and VL; AVX2 needs FMA too), asked once.
inline CpuIsa host_cpu_isa() {
  static const CpuIsa isa = [] {
#ifdef EF_CPU_X86_VARIANTS
    __builtin_cpu_init();  // the CPU model may not be known yet while the library loads
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")) {
      return CpuIsa::kAvx512;
    }
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return CpuIsa::kAvx2;
#endif
    return CpuIsa::kBaseline;
  }();
  return isa;
}

// Kernel name -> the build it runs, filled as the kernels' CpuKernel objects are made.
inline std::map<std::string, std::string>& cpu_kernel_isas() {
  static std::map<std::string, std::string> isas;
  return isas;
}

// The build of one kernel this CPU runs: a function pointer, chosen once.
template <typename Fn>
class CpuKernel {
 public:
  CpuKernel(const char* kernel, Fn baseline, Fn avx2, Fn avx512) {
    const CpuIsa isa = host_cpu_isa();
    fn_ = isa == CpuIsa::kAvx512 ? avx512 : isa == CpuIsa::kAvx2 ? avx2 : baseline;
    cpu_kernel_isas()[kernel] = cpu_isa_name(isa);
  }
  template <typename... Args>
  auto operator()(Args&&... args) const {
    return fn_(std::forward<Args>(args)...);
  }

 private:
  Fn fn_;
};

}  // namespace cpu
}  // namespace electra_fast
