// The scale rule of dropout on the Philox stream, shared by the CPU and CUDA kernels (contract and oracle:
// electra_fast/reference/dropout.py, whose dropout_scale is the Python twin the Triton launcher uses).
#pragma once

namespace electra_fast {

// The factor of a kept element: float32(1 / (1 - p)), or 0 for p = 1 (every element dropped, never inf * 0).
inline float dropout_scale(double p) { return p == 1.0 ? 0.f : static_cast<float>(1.0 / (1.0 - p)); }

}  // namespace electra_fast
