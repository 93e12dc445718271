// One block samples one row of logits: the contract of csrc/include/electra_fast/sampling.h on CUDA,
// shared by sample_replace (replace.cu) and the fused generator head (generator_head.cu).
//
// Block reductions give the max (with the NaN/+inf check) and the fp64 normaliser; a tiled fp64 prefix
// scan (cub::BlockScan over kThreads * kSampleItems logits per tile) then stops at the tile holding u * Z.
// The scan adds in another order than a thread's own running sum, so a thread can see the boundary
// crossed at a zero weight (an excluded id, a -inf logit) right after it: a hit needs w > 0, and when
// no tile hits, the sample is the row's last positive weight.
#pragma once
#include <cub/block/block_scan.cuh>

#include "block_reduce.cuh"
#include "electra_fast/sampling.h"

namespace electra_fast {
namespace cuda {

constexpr int kSampleItems = 8;  // logits per thread per tile of the prefix scan

// The same in every thread of the block.
struct BlockSample {
  int64_t id;        // the sample (-1 unless status == kRowSampled)
  RowStatus status;
  float max;         // max_{i != skip} x_i, NaN ignored
};

// The contract on row[0..v) with id `skip` excluded (-1: none); called by all kThreads threads.
template <int kThreads, typename scalar_t>
__device__ BlockSample block_sample_row(const scalar_t* __restrict__ row, int64_t v, int64_t skip, float inv_t,
                                        bool greedy, float u) {
  using Scan = cub::BlockScan<double, kThreads>;
  __shared__ typename Scan::TempStorage scan_tmp;
  constexpr int64_t kTile = static_cast<int64_t>(kThreads) * kSampleItems;

  float mx = -INFINITY;
  int bad = 0;
  for (int64_t i = threadIdx.x; i < v; i += kThreads) {
    const float x = static_cast<float>(row[i]);
    bad |= (x != x) || x == INFINITY;
    if (i != skip && x > mx) mx = x;
  }
  mx = block_all_reduce<kThreads>(mx, MaxOp());
  bad = block_all_reduce<kThreads>(bad, MaxOp());
  if (bad) return {-1, kRowNonFinite, mx};
  if (mx == -INFINITY) return {-1, kRowEmpty, mx};

  const long long none = v;
  long long pick = none;
  if (greedy) {
    for (int64_t i = threadIdx.x; i < v && pick == none; i += kThreads) {
      if (i != skip && static_cast<float>(row[i]) == mx) pick = i;
    }
    return {block_all_reduce<kThreads>(pick, MinOp()), kRowSampled, mx};
  }

  double z = 0.0;
  for (int64_t i = threadIdx.x; i < v; i += kThreads) {
    if (i != skip) z += sampling_weight(static_cast<float>(row[i]), mx, inv_t);
  }
  const double target = static_cast<double>(u) * block_all_sum<kThreads>(z);
  double run = 0.0;
  long long last = -1;
  for (int64_t tile = 0; tile < v && pick == none; tile += kTile) {
    const int64_t first = tile + static_cast<int64_t>(threadIdx.x) * kSampleItems;
    float w[kSampleItems];
    double mine = 0.0;
#pragma unroll
    for (int k = 0; k < kSampleItems; ++k) {
      const int64_t i = first + k;
      w[k] = (i < v && i != skip) ? sampling_weight(static_cast<float>(row[i]), mx, inv_t) : 0.f;
      mine += w[k];
    }
    double before, tile_total;
    Scan(scan_tmp).ExclusiveSum(mine, before, tile_total);
    __syncthreads();  // scan_tmp is reused by the next tile
    long long hit = none, last_positive = -1;
    double acc = run + before;
#pragma unroll
    for (int k = 0; k < kSampleItems; ++k) {
      acc += w[k];
      if (w[k] > 0.f) {
        last_positive = first + k;
        if (hit == none && acc >= target) hit = first + k;
      }
    }
    pick = block_all_reduce<kThreads>(hit, MinOp());
    last = max(last, block_all_reduce<kThreads>(last_positive, MaxOp()));
    run += tile_total;
  }
  return {pick == none ? last : pick, kRowSampled, mx};
}

}  // namespace cuda
}  // namespace electra_fast
