#pragma once
// Per-element math of temporal NMS, shared by the CPU and CUDA kernels.
#include "temporal_iou.h"

namespace vgops {
namespace nms1d {

// torchvision's strict rule: a kept segment suppresses another whose IoU with it is > threshold.
template <typename T>
VGOPS_HOST_DEVICE inline bool suppresses(T s1, T e1, T s2, T e2, T iou_threshold) {
  return iou1d::segment_iou<T>(s1, e1, s2, e2) > iou_threshold;
}

// Rank order of NMS: higher score first, ties by lower index (a strict weak order, so a stable
// sort and an unstable one agree).
template <typename T>
VGOPS_HOST_DEVICE inline bool ranks_before(T score_i, long long i, T score_j, long long j) {
  return score_i > score_j || (score_i == score_j && i < j);
}

}  // namespace nms1d
}  // namespace vgops
