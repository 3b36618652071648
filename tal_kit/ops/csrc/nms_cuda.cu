// CUDA kernels: one launch runs every (video, class) group, one thread block per group.
//
// Soft-NMS keeps the selection sort of SPEC §E.4 (its tie rule depends on the exact order of the working array), so
// the steps stay sequential and each step is parallel across the block:
//   arg-max (block reduction; ties -> lowest position) -> swap into place -> decay every later candidate -> if some
//   fell below min_score, compact the array exactly as the C++ loop does (each hole, front to back, receives the
//   last surviving candidate of the array), with block-wide prefix counts.
// When a step drops nothing, the decay pass has already found the next arg-max, so a step is one pass over the group.
// Hard NMS runs on the group pre-sorted by score (stable): each pick suppresses later candidates in one parallel pass,
// which also finds the next survivor. (A pairwise IoU bitmask would need n^2/8 bytes per group: 500 kB for 2,000
// candidates, times thousands of groups; picks stop at max_seg_num, so the greedy pass does less work.)
// Segment voting runs one warp per kept detection over its video's candidates.
//
// No torch headers: nms.cpp allocates the buffers and passes raw pointers and the stream.
#include <cuda_runtime.h>

#include <climits>
#include <cmath>
#include <cstdint>

#include "nms.h"
#include "nms_cuda.h"

namespace tal_nms {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr unsigned kFullMask = 0xffffffffu;

struct Best {
  float score;
  int pos;
};

__device__ __forceinline__ Best better(Best a, Best b) {
  return (b.score > a.score || (b.score == a.score && b.pos < a.pos)) ? b : a;
}

__device__ __forceinline__ Best warp_best(Best v) {
  for (int offset = 16; offset > 0; offset >>= 1) {
    Best other{__shfl_down_sync(kFullMask, v.score, offset), __shfl_down_sync(kFullMask, v.pos, offset)};
    v = better(v, other);
  }
  return v;
}

// Best (score, position) over the block; every thread gets the result.
__device__ Best block_best(Best v, Best* shared) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_best(v);
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < kWarps ? shared[lane] : Best{-INFINITY, INT_MAX};
    v = warp_best(v);
    if (lane == 0) shared[kWarps] = v;
  }
  __syncthreads();
  Best result = shared[kWarps];
  __syncthreads();
  return result;
}

__device__ int block_sum(int v, int* shared) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(kFullMask, v, offset);
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < kWarps ? shared[lane] : 0;
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(kFullMask, v, offset);
    if (lane == 0) shared[kWarps] = v;
  }
  __syncthreads();
  int result = shared[kWarps];
  __syncthreads();
  return result;
}

__device__ int block_min(int v, int* shared) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int offset = 16; offset > 0; offset >>= 1) v = min(v, __shfl_down_sync(kFullMask, v, offset));
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < kWarps ? shared[lane] : INT_MAX;
    for (int offset = 16; offset > 0; offset >>= 1) v = min(v, __shfl_down_sync(kFullMask, v, offset));
    if (lane == 0) shared[kWarps] = v;
  }
  __syncthreads();
  int result = shared[kWarps];
  __syncthreads();
  return result;
}

// The working array of one group (a slice of the global scratch buffers).
struct GroupArrays {
  float* x1;
  float* x2;
  float* area;
  float* score;
  int64_t* row;

  __device__ void move(int to, int from) {
    x1[to] = x1[from], x2[to] = x2[from], area[to] = area[from], score[to] = score[from], row[to] = row[from];
  }
};

__device__ GroupArrays load_group(const GroupBuffers& buf, const float* segs, const float* scores,
                                  const int64_t* order, int64_t begin, int n) {
  GroupArrays g{buf.x1 + begin, buf.x2 + begin, buf.area + begin, buf.score + begin, buf.row + begin};
  for (int k = threadIdx.x; k < n; k += blockDim.x) {
    const int64_t r = order[begin + k];
    g.x1[k] = segs[2 * r];
    g.x2[k] = segs[2 * r + 1];
    g.area[k] = (g.x2[k] - g.x1[k]) + kIouEps;
    g.score[k] = scores[r];
    g.row[k] = r;
  }
  __syncthreads();
  return g;
}

__global__ void soft_nms_kernel(const float* segs, const float* scores, const int64_t* order,
                                const int64_t* group_offsets, const int64_t* out_offsets, Settings s,
                                GroupBuffers buf, int64_t* out_row, float* out_score, int64_t* out_count) {
  __shared__ Best best_shared[kWarps + 1];
  __shared__ int int_shared[kWarps + 1];
  __shared__ int warp_kept[kWarps];
  __shared__ int num_holes;

  const int64_t group = blockIdx.x;
  const int64_t begin = group_offsets[group];
  const int n = static_cast<int>(group_offsets[group + 1] - begin);
  const int cap = s.cap > 0 && s.cap < n ? static_cast<int>(s.cap) : n;
  const int64_t out_begin = out_offsets[group];
  GroupArrays g = load_group(buf, segs, scores, order, begin, n);
  int* holes = buf.scratch_a + begin;
  int* movers = buf.scratch_b + begin;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;

  int m = n;  // live candidates: positions [0, m)
  int picked = 0;
  bool best_known = false;
  Best best{-INFINITY, INT_MAX};
  for (int i = 0; i < m && picked < cap; ++i) {
    if (!best_known) {
      Best mine{-INFINITY, INT_MAX};
      for (int p = i + threadIdx.x; p < m; p += blockDim.x) mine = better(mine, Best{g.score[p], p});
      best = block_best(mine, best_shared);
    }
    if (threadIdx.x == 0) {
      const int b = best.pos;
      if (b != i) {
        float t;
        t = g.x1[i], g.x1[i] = g.x1[b], g.x1[b] = t;
        t = g.x2[i], g.x2[i] = g.x2[b], g.x2[b] = t;
        t = g.area[i], g.area[i] = g.area[b], g.area[b] = t;
        t = g.score[i], g.score[i] = g.score[b], g.score[b] = t;
        int64_t r = g.row[i];
        g.row[i] = g.row[b], g.row[b] = r;
      }
      out_row[out_begin + picked] = g.row[i];
      out_score[out_begin + picked] = g.score[i];
    }
    __syncthreads();
    if (++picked == cap) break;

    // Decay every later candidate; count survivors and find the best survivor (the next pick if nothing drops).
    const float ix1 = g.x1[i], ix2 = g.x2[i], iarea = g.area[i];
    int kept = 0;
    Best mine{-INFINITY, INT_MAX};
    for (int p = i + 1 + threadIdx.x; p < m; p += blockDim.x) {
      const float sc = g.score[p] * decay_weight(nms_iou(ix1, ix2, iarea, g.x1[p], g.x2[p], g.area[p]), s);
      g.score[p] = sc;
      if (!(sc < s.min_score)) {
        ++kept;
        mine = better(mine, Best{sc, p});
      }
    }
    const int total_kept = block_sum(kept, int_shared);
    best = block_best(mine, best_shared);
    if (total_kept == m - i - 1) {
      best_known = true;
      continue;
    }

    // Compaction: positions [i+1, front_end) end up holding the survivors. Hole number r (front to back) receives
    // survivor number r counted from the back of the array, as the C++ swap-with-last loop leaves them.
    const int front_end = i + 1 + total_kept;
    if (threadIdx.x == 0) num_holes = 0;
    __syncthreads();
    int kept_before_tile = 0;
    for (int tile = i + 1; tile < m; tile += blockDim.x) {
      const int p = tile + threadIdx.x;
      const bool keep = p < m && !(g.score[p] < s.min_score);
      const unsigned ballot = __ballot_sync(kFullMask, keep);
      if (lane == 0) warp_kept[warp] = __popc(ballot);
      __syncthreads();
      int before = kept_before_tile + __popc(ballot & ((1u << lane) - 1u));
      int tile_kept = 0;
      for (int w = 0; w < kWarps; ++w) {
        if (w < warp) before += warp_kept[w];
        tile_kept += warp_kept[w];
      }
      if (p < m) {
        if (p < front_end && !keep) {
          holes[(p - (i + 1)) - before] = p;
          atomicAdd(&num_holes, 1);
        } else if (p >= front_end && keep) {
          movers[total_kept - 1 - before] = p;
        }
      }
      kept_before_tile += tile_kept;
      __syncthreads();
    }
    const int count = num_holes;
    for (int r = threadIdx.x; r < count; r += blockDim.x) g.move(holes[r], movers[r]);
    __syncthreads();
    m = front_end;
    best_known = false;
  }
  if (threadIdx.x == 0) out_count[group] = picked;
}

__global__ void hard_nms_kernel(const float* segs, const float* scores, const int64_t* order,
                                const int64_t* group_offsets, const int64_t* out_offsets, Settings s,
                                GroupBuffers buf, int64_t* out_row, float* out_score, int64_t* out_count) {
  __shared__ int int_shared[kWarps + 1];
  const int64_t group = blockIdx.x;
  const int64_t begin = group_offsets[group];
  const int n = static_cast<int>(group_offsets[group + 1] - begin);
  const int cap = s.cap > 0 && s.cap < n ? static_cast<int>(s.cap) : n;
  const int64_t out_begin = out_offsets[group];
  GroupArrays g = load_group(buf, segs, scores, order, begin, n);  // `order` sorts each group by score
  int* alive = buf.scratch_a + begin;

  int first = INT_MAX;
  for (int p = threadIdx.x; p < n; p += blockDim.x) {
    alive[p] = !(s.min_score > 0.f) || g.score[p] > s.min_score;
    if (alive[p]) first = min(first, p);
  }
  int current = block_min(first, int_shared);
  int picked = 0;
  while (current < n && picked < cap) {
    if (threadIdx.x == 0) {
      out_row[out_begin + picked] = g.row[current];
      out_score[out_begin + picked] = g.score[current];
    }
    if (++picked == cap) break;
    const float ix1 = g.x1[current], ix2 = g.x2[current], iarea = g.area[current];
    int next = INT_MAX;
    for (int p = current + 1 + threadIdx.x; p < n; p += blockDim.x) {
      if (!alive[p]) continue;
      if (nms_iou(ix1, ix2, iarea, g.x1[p], g.x2[p], g.area[p]) >= s.iou_threshold) {
        alive[p] = 0;
      } else {
        next = min(next, p);
      }
    }
    current = block_min(next, int_shared);
  }
  if (threadIdx.x == 0) out_count[group] = picked;
}

__global__ void voting_kernel(const float* segs, const float* scores, const int64_t* video_offsets,
                              const int64_t* rows, const int64_t* videos, int64_t num_picks, Settings s,
                              float* out_seg) {
  const int64_t pick = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x & 31;
  if (pick >= num_picks) return;  // whole warps exit together
  const int64_t row = rows[pick], video = videos[pick];
  const float start = segs[2 * row], stop = segs[2 * row + 1];
  double sum_w = 0.0, sum_start = 0.0, sum_end = 0.0;
  for (int64_t j = video_offsets[video] + lane; j < video_offsets[video + 1]; j += 32) {
    const float sj = segs[2 * j], ej = segs[2 * j + 1];
    const float iou = voting_iou(start, stop, sj, ej);
    if (iou >= s.voting_thresh) {
      double w = static_cast<double>(scores[j]);
      if (s.voting_weight == kScoreIou) w *= static_cast<double>(iou);
      sum_w += w;
      sum_start += w * static_cast<double>(sj);
      sum_end += w * static_cast<double>(ej);
    }
  }
  for (int offset = 16; offset > 0; offset >>= 1) {
    sum_w += __shfl_down_sync(kFullMask, sum_w, offset);
    sum_start += __shfl_down_sync(kFullMask, sum_start, offset);
    sum_end += __shfl_down_sync(kFullMask, sum_end, offset);
  }
  if (lane == 0) {
    out_seg[2 * pick] = sum_w > 0.0 ? static_cast<float>(sum_start / sum_w) : start;
    out_seg[2 * pick + 1] = sum_w > 0.0 ? static_cast<float>(sum_end / sum_w) : stop;
  }
}

}  // namespace

cudaError_t launch_group_nms(const float* segs, const float* scores, const int64_t* order,
                             const int64_t* group_offsets, const int64_t* out_offsets, int64_t num_groups,
                             const Settings& s, const GroupBuffers& buffers, int64_t* out_row, float* out_score,
                             int64_t* out_count, cudaStream_t stream) {
  if (num_groups <= 0) return cudaSuccess;
  if (s.method == kSoft) {
    soft_nms_kernel<<<static_cast<unsigned>(num_groups), kThreads, 0, stream>>>(
        segs, scores, order, group_offsets, out_offsets, s, buffers, out_row, out_score, out_count);
  } else {
    hard_nms_kernel<<<static_cast<unsigned>(num_groups), kThreads, 0, stream>>>(
        segs, scores, order, group_offsets, out_offsets, s, buffers, out_row, out_score, out_count);
  }
  return cudaGetLastError();
}

cudaError_t launch_voting(const float* segs, const float* scores, const int64_t* video_offsets, const int64_t* rows,
                          const int64_t* videos, int64_t num_picks, const Settings& s, float* out_seg,
                          cudaStream_t stream) {
  if (num_picks <= 0) return cudaSuccess;
  const int64_t warps_per_block = kThreads / 32;
  const int64_t blocks = (num_picks + warps_per_block - 1) / warps_per_block;
  voting_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(segs, scores, video_offsets, rows, videos,
                                                                           num_picks, s, out_seg);
  return cudaGetLastError();
}

}  // namespace tal_nms
