// Portability macros shared by the CPU (.cpp) and CUDA (.cu) translation units.
#pragma once

#if defined(__CUDACC__) || defined(__HIPCC__)
#define EF_HOST_DEVICE __host__ __device__
#define EF_INLINE __forceinline__
#else
#define EF_HOST_DEVICE
#define EF_INLINE inline
#endif

#include <cstdint>
#include <cmath>
