// Block-wide reductions whose result every thread of the block gets (cub hands it to thread 0 only).
// Each instantiation has its own shared storage; the closing barrier lets the next call reuse it.
#pragma once
#include <cub/block/block_reduce.cuh>

namespace electra_fast {
namespace cuda {

struct MaxOp {
  template <typename T>
  __device__ T operator()(T a, T b) const { return a > b ? a : b; }
};

struct MinOp {
  template <typename T>
  __device__ T operator()(T a, T b) const { return a < b ? a : b; }
};

template <int kThreads, typename T, typename Op>
__device__ T block_all_reduce(T v, Op op) {
  using Reduce = cub::BlockReduce<T, kThreads>;
  __shared__ typename Reduce::TempStorage tmp;
  __shared__ T result;
  const T r = Reduce(tmp).Reduce(v, op);
  if (threadIdx.x == 0) result = r;
  __syncthreads();
  const T out = result;
  __syncthreads();
  return out;
}

template <int kThreads, typename T>
__device__ T block_all_sum(T v) {
  using Reduce = cub::BlockReduce<T, kThreads>;
  __shared__ typename Reduce::TempStorage tmp;
  __shared__ T result;
  const T r = Reduce(tmp).Sum(v);
  if (threadIdx.x == 0) result = r;
  __syncthreads();
  const T out = result;
  __syncthreads();
  return out;
}

}  // namespace cuda
}  // namespace electra_fast
