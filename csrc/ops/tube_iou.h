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

// tIoU and vIoU of one query (TubeDETR): frames t with lo <= t < hi belong to a span; vIoU =
// (sum of box IoUs over valid frames in both spans) / (valid frames in either span). pred, gt:
// the query's [frames, 4] boxes; valid: its [frames] mask.
template <typename T, typename scalar_t>
VGOPS_HOST_DEVICE inline void tube_iou(const scalar_t* pred, const scalar_t* gt, const bool* valid, int64_t frames,
                                       T ps, T pe, T gs, T ge, T* tiou, T* viou) {
  *tiou = iou1d::segment_iou<T>(ps, pe, gs, ge);
  const T inter_lo = iou1d::max_(ps, gs), inter_hi = iou1d::min_(pe, ge);
  const T union_lo = iou1d::min_(ps, gs), union_hi = iou1d::max_(pe, ge);
  T sum = 0;
  int64_t in_union = 0;
  for (int64_t t = 0; t < frames; ++t) {
    if (!valid[t]) continue;
    const T ft = static_cast<T>(t);
    if (union_lo <= ft && ft < union_hi) ++in_union;
    if (inter_lo <= ft && ft < inter_hi) {
      const T p[4] = {T(pred[4 * t]), T(pred[4 * t + 1]), T(pred[4 * t + 2]), T(pred[4 * t + 3])};
      const T g[4] = {T(gt[4 * t]), T(gt[4 * t + 1]), T(gt[4 * t + 2]), T(gt[4 * t + 3])};
      sum += box_iou<T>(p, g);
    }
  }
  *viou = sum / static_cast<T>(in_union > 0 ? in_union : 1);
}

}  // namespace tube
}  // namespace vgops
