// Entry points of the CPU kernels (nms_cpu.cpp) and the CUDA kernels (nms_cuda.cu), on raw pointers.
#pragma once

#include <cstdint>

#include "nms.h"

namespace tal_nms {

// Rows reserved for one video's detections in the output arrays.
int64_t output_capacity(int64_t num_candidates, const Settings& s);

// All videos; video v owns input rows [video_offsets[v], video_offsets[v+1]) and output rows from out_offsets[v]
// (output_capacity of them). Writes out_count[v] detections per video, sorted by score, descending.
void nms_videos_cpu(const float* segs, const float* scores, const int64_t* labels, const int64_t* video_offsets,
                    int64_t num_videos, const Settings& s, const int64_t* out_offsets, int64_t* out_row,
                    float* out_score, float* out_seg, int64_t* out_count, int num_threads);

}  // namespace tal_nms
