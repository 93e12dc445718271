// One block samples one row of logits: the contract of csrc/include/electra_fast/sampling.h on CUDA,
// shared by sample_replace (replace.cu) and the fused generator head (generator_head.cu).
//
// Block reductions give the max (with the NaN/+inf check) and the fp64 normaliser; a tiled fp64 prefix
// scan (cub::BlockScan over kThreads * kSampleItems logits per tile) then stops at the tile holding t = u * Z.
// The scan adds in another order than a thread's own running sum, so a thread can see the boundary
// crossed at a zero weight (an excluded id, a -inf logit) right after it: a hit needs w > 0. A hit within
// kNearTie * Z of t, or no hit, is a near tie: the row is scanned again with the fp64 weights.
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

// The inverse-CDF scan of the weights weight(i) (0 for excluded ids) of i in [0, v), called by all kThreads
// threads. Returns the first i with w_i > 0 and S_i >= u * Z, or -1 when that is a near tie (within
// near_tie * Z of S_{i-1} or S_i) or no i is found; with near_tie < 0 there are no near ties and a row
// without a hit gives its last positive weight.
template <int kThreads, typename Weight>
__device__ long long block_inverse_cdf(int64_t v, float u, double near_tie, Weight weight) {
  using Scan = cub::BlockScan<double, kThreads>;
  __shared__ typename Scan::TempStorage scan_tmp;
  constexpr int64_t kTile = static_cast<int64_t>(kThreads) * kSampleItems;

  double z = 0.0;
  for (int64_t i = threadIdx.x; i < v; i += kThreads) z += weight(i);
  z = block_all_sum<kThreads>(z);
  const double target = static_cast<double>(u) * z;
  const double margin = near_tie * z;
  // a hit as 2 * id + (near tie), so that the block minimum is the first hit with its flag
  const long long none = 2 * static_cast<long long>(v) + 2;
  long long pick = none, last = -1;
  double run = 0.0;
  for (int64_t tile = 0; tile < v && pick == none; tile += kTile) {
    const int64_t first = tile + static_cast<int64_t>(threadIdx.x) * kSampleItems;
    double w[kSampleItems];
    double mine = 0.0;
#pragma unroll
    for (int k = 0; k < kSampleItems; ++k) {
      w[k] = first + k < v ? weight(first + k) : 0.0;
      mine += w[k];
    }
    double before, tile_total;
    Scan(scan_tmp).ExclusiveSum(mine, before, tile_total);
    __syncthreads();  // scan_tmp is reused by the next tile
    long long hit = none, last_positive = -1;
    double acc = run + before;
#pragma unroll
    for (int k = 0; k < kSampleItems; ++k) {
      const double below = acc;
      acc += w[k];
      if (w[k] > 0.0) {
        last_positive = first + k;
        if (hit == none && acc >= target) {
          const bool near = margin >= 0.0 && (acc - target < margin || target - below < margin);
          hit = 2 * static_cast<long long>(first + k) + (near ? 1 : 0);
        }
      }
    }
    pick = block_all_reduce<kThreads>(hit, MinOp());
    last = max(last, block_all_reduce<kThreads>(last_positive, MaxOp()));
    run += tile_total;
  }
  if (pick == none) return near_tie < 0.0 ? last : -1;
  return (pick & 1) ? -1 : pick / 2;
}

// The contract on row[0..v) with id `skip` excluded (-1: none); called by all kThreads threads.
template <int kThreads, typename scalar_t>
__device__ BlockSample block_sample_row(const scalar_t* __restrict__ row, int64_t v, int64_t skip, float inv_t,
                                        bool greedy, float u) {
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

  if (greedy) {
    long long pick = v;
    for (int64_t i = threadIdx.x; i < v && pick == v; i += kThreads) {
      if (i != skip && static_cast<float>(row[i]) == mx) pick = i;
    }
    return {block_all_reduce<kThreads>(pick, MinOp()), kRowSampled, mx};
  }

  long long pick = block_inverse_cdf<kThreads>(v, u, kNearTie, [=](int64_t i) -> double {
    return i == skip ? 0.0 : static_cast<double>(sampling_weight(static_cast<float>(row[i]), mx, inv_t));
  });
  if (pick < 0) {  // a near tie: decided by the fp64 weights
    pick = block_inverse_cdf<kThreads>(v, u, -1.0, [=](int64_t i) -> double {
      return i == skip ? 0.0 : sampling_weight_fp64(static_cast<float>(row[i]), mx, inv_t);
    });
  }
  return {pick, kRowSampled, mx};
}

}  // namespace cuda
}  // namespace electra_fast
