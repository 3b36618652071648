// 1-D NMS shared by the CPU (nms_cpu.cpp) and CUDA (nms_cuda.cu) kernels: settings, codes and the scalar math.
// Semantics: SPEC §E, written out in tal_kit/ops/reference.py (the pure-torch reference these kernels must match).
// This header includes no torch headers, so the kernel files compile quickly.
#pragma once

#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define TAL_HD __host__ __device__ __forceinline__
#else
#define TAL_HD inline
#endif

namespace tal_nms {

// Codes shared with tal_kit/ops/nms.py.
enum Method : int { kSoft = 0, kHard = 1, kNone = 2 };
enum SoftKind : int { kGaussian = 0, kLinear = 1 };
enum VotingWeight : int { kScore = 0, kScoreIou = 1 };

constexpr float kIouEps = 1e-6f;  // added to every length in the NMS IoU (not in voting)

struct Settings {
  int method;
  int soft_kind;
  float iou_threshold;  // float, as the fork's C++ parameters: thresholds compare in float32
  float sigma;
  float min_score;
  int64_t cap;          // max_seg_num; <= 0: no cap
  bool multiclass;
  float voting_thresh;  // > 0: segment voting (class-agnostic mode only; the caller passes 0 otherwise)
  int voting_weight;
};

// IoU with epsilon lengths: area_i = x2_i - x1_i + 1e-6, as computed once per candidate.
TAL_HD float nms_iou(float ix1, float ix2, float iarea, float x1, float x2, float area) {
  float left = ix1 > x1 ? ix1 : x1;
  float right = ix2 < x2 ? ix2 : x2;
  float inter = right - left;
  inter = inter > 0.f ? inter : 0.f;
  return inter / (iarea + area - inter);
}

// Soft-NMS multiplier. Gaussian: exp(-IoU^2 / sigma) with the exponent in float32 and exp in float64, rounded to
// float32 (libm, SLEEF and CUDA float exp differ by an ulp; double exp rounded to float agrees everywhere).
TAL_HD float decay_weight(float iou, const Settings& s) {
  if (iou == 0.f) return 1.f;  // both kinds give exactly 1 without overlap; skips most exp calls
  if (s.soft_kind == kGaussian) {
    float exponent = -(iou * iou) / s.sigma;
    return static_cast<float>(exp(static_cast<double>(exponent)));
  }
  return iou >= s.iou_threshold ? 1.f - iou : 1.f;
}

// Voting IoU: no epsilon; 0/0 (two zero-length segments) counts as 1 when they coincide, else 0.
TAL_HD float voting_iou(float s1, float e1, float s2, float e2) {
  float left = s1 > s2 ? s1 : s2;
  float right = e1 < e2 ? e1 : e2;
  float inter = right - left;
  inter = inter > 0.f ? inter : 0.f;
  float uni = (e1 - s1) + (e2 - s2) - inter;
  if (uni > 0.f) return inter / uni;
  return (s1 == s2 && e1 == e2) ? 1.f : 0.f;
}

}  // namespace tal_nms
