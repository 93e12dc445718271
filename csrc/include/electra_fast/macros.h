// Portability macros shared by the CPU (.cpp) and CUDA (.cu) translation units.
#pragma once

#if defined(__CUDACC__) || defined(__HIPCC__)
#define EF_HOST_DEVICE __host__ __device__
#define EF_INLINE __forceinline__
#define EF_ALWAYS_INLINE __forceinline__
#else
#define EF_HOST_DEVICE
#define EF_INLINE inline
// Inlined into every caller: a CPU function built for one instruction set (cpu_isa.h) compiles only what
// is inlined into it for that set; a called function keeps the baseline build.
#define EF_ALWAYS_INLINE __attribute__((always_inline)) inline
#endif

#include <cstdint>
#include <cmath>
