// Entry points of the CUDA kernels (nms_cuda.cu), on raw device pointers; nms.cpp owns the tensors.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "nms.h"

namespace tal_nms {

// Scratch buffers with one slot per candidate; group g works in slots [group_offsets[g], group_offsets[g+1]).
struct GroupBuffers {
  float* x1;
  float* x2;
  float* area;
  float* score;
  int64_t* row;
  int* scratch_a;
  int* scratch_b;
};

// One thread block per group. `order` lists the input rows group after group (hard NMS: each group sorted by score,
// descending, stable; soft-NMS: input order). Group g writes up to min(size, cap) picks from out_offsets[g] and
// their number to out_count[g].
cudaError_t launch_group_nms(const float* segs, const float* scores, const int64_t* order,
                             const int64_t* group_offsets, const int64_t* out_offsets, int64_t num_groups,
                             const Settings& s, const GroupBuffers& buffers, int64_t* out_row, float* out_score,
                             int64_t* out_count, cudaStream_t stream);

// Segment voting for num_picks kept detections (input rows `rows`, videos `videos`): out_seg [num_picks, 2].
cudaError_t launch_voting(const float* segs, const float* scores, const int64_t* video_offsets, const int64_t* rows,
                          const int64_t* videos, int64_t num_picks, const Settings& s, float* out_seg,
                          cudaStream_t stream);

}  // namespace tal_nms
