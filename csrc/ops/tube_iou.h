#pragma once
// Per-element math of tube_iou, shared by the CPU and CUDA kernels.
#include "temporal_iou.h"

namespace vgops {
namespace tube {

// IoU of two (x1, y1, x2, y2) boxes as torchvision.ops.box_iou computes it (area products,
// union = area_a + area_b - inter); 0 where the union is not positive.
template <typename T>
VGOPS_HOST_DEVICE inline T box_iou(const T* a, const T* b) {
  const T w = iou1d::max_(iou1d::min_(a[2], b[2]) - iou1d::max_(a[0], b[0]), T(0));
  const T h = iou1d::max_(iou1d::min_(a[3], b[3]) - iou1d::max_(a[1], b[1]), T(0));
  const T inter = w * h;
  const T uni = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
  return uni > T(0) ? inter / uni : T(0);
}

// tIoU and vIoU of one query over T frames (TubeDETR): frames t with lo <= t < hi belong to a
// span; vIoU = (sum of box IoUs over valid frames in both spans) / (valid frames in either span).
// load(t, k) returns coordinate k of the pred (k < 4) or gt (k >= 4) box of frame t.
template <typename T, typename Box, typename Valid>
VGOPS_HOST_DEVICE inline void tube_iou(int64_t frames, T ps, T pe, T gs, T ge, Box boxes, Valid valid, T* tiou,
                                       T* viou) {
  *tiou = iou1d::segment_iou<T>(ps, pe, gs, ge);
  const T inter_lo = iou1d::max_(ps, gs), inter_hi = iou1d::min_(pe, ge);
  const T union_lo = iou1d::min_(ps, gs), union_hi = iou1d::max_(pe, ge);
  T sum = 0;
  int64_t in_union = 0;
  for (int64_t t = 0; t < frames; ++t) {
    if (!valid(t)) continue;
    const T ft = static_cast<T>(t);
    if (union_lo <= ft && ft < union_hi) ++in_union;
    if (inter_lo <= ft && ft < inter_hi) {
      T p[4], g[4];
      boxes(t, p, g);
      sum += box_iou<T>(p, g);
    }
  }
  *viou = sum / static_cast<T>(in_union > 0 ? in_union : 1);
}

}  // namespace tube
}  // namespace vgops
