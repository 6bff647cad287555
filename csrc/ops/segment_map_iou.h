#pragma once
// Per-element math of segment_map_iou, shared by the CPU and CUDA kernels.
#include "temporal_iou.h"

namespace vgops {
namespace map1d {

// Cell (s, e) of an n-clip grid over [0, duration) is [s * step, (e + 1) * step) with
// step = duration / n (2D-TAN's convention); cells with s > e are not moments (IoU 0).
template <typename T>
VGOPS_HOST_DEVICE inline T grid_step(T duration, int64_t n) { return duration / static_cast<T>(n); }

// Clip boundary k * step (k = s for a start, e + 1 for an end); k < 2^31 as n is.
template <typename T>
VGOPS_HOST_DEVICE inline T boundary(int64_t k, T step) { return static_cast<T>(static_cast<int32_t>(k)) * step; }

template <typename T>
VGOPS_HOST_DEVICE inline T cell_iou(int64_t s, int64_t e, T step, T gs, T ge) {
  return s > e ? T(0) : iou1d::segment_iou<T>(boundary<T>(s, step), boundary<T>(e + 1, step), gs, ge);
}

}  // namespace map1d
}  // namespace vgops
