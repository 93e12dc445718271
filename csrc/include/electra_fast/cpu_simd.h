// CPU-only: vectorised libm on glibc/x86-64.
//
// glibc's libmvec has SIMD variants of expf/log1pf/logf (_ZGV*), but math.h only announces them under
// -ffast-math, which would also break inf/NaN handling. Re-declaring the functions with the `simd`
// attribute lets `#pragma omp simd` loops call them without fast-math; EF_CPU_CLONES builds an AVX2
// clone of a kernel next to the baseline one, picked at load time, so one wheel runs everywhere.
#pragma once

#if defined(__GLIBC__) && defined(__x86_64__) && !defined(__CUDACC__) && !defined(__clang__)
extern "C" {
__attribute__((simd("notinbranch"))) float expf(float) noexcept;
__attribute__((simd("notinbranch"))) float logf(float) noexcept;
__attribute__((simd("notinbranch"))) float log1pf(float) noexcept;
}
#define EF_CPU_CLONES __attribute__((target_clones("arch=haswell", "default")))
#else
#define EF_CPU_CLONES
#endif
