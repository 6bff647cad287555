#pragma once
// Per-element math of temporal IoU, shared by the CPU and CUDA kernels (and by temporal_nms).
// Segments are (start, end); IoU = inter / (len_a + len_b - inter), 0 when the union is <= 0.
// T is the compute type: float for half/bfloat16/float inputs, double for double.
#include "../macros.h"

namespace vgops {
namespace iou1d {

template <typename T>
VGOPS_HOST_DEVICE inline T max_(T a, T b) { return a > b ? a : b; }
template <typename T>
VGOPS_HOST_DEVICE inline T min_(T a, T b) { return a < b ? a : b; }

template <typename T>
VGOPS_HOST_DEVICE inline T segment_iou(T s1, T e1, T s2, T e2) {
  // Same operation order as torchvision's 2D NMS (w = max(0, min(x2) - max(x1)); union =
  // area_i + area_j - inter), so 1D segments embedded as unit-height boxes give equal results.
  T inter = max_(min_(e1, e2) - max_(s1, s2), T(0));
  T uni = (e1 - s1) + (e2 - s2) - inter;
  // The division is unconditional (by 1 where the union is not positive) so CPU loops vectorise:
  // compilers do not if-convert a conditional floating-point division.
  const bool positive = uni > T(0);
  const T q = inter / (positive ? uni : T(1));
  return positive ? q : T(0);
}

// Gradient of segment_iou with respect to (s1, e1, s2, e2), scaled by g. Where IoU has no
// derivative, the minimum-norm subgradient, PyTorch's documented convention: tied endpoints
// split the gradient of min/max evenly (as torch.minimum/maximum do); segments that only touch
// (overlap exactly 0) get no gradient through the overlap (as clamp(min=0) in torch >= 2.14 and
// so torchvision's box_iou; torch <= 2.13 passed it); no gradient where the union is <= 0.
// Branch-free (selects only) so CPU loops over it vectorise.
template <typename T>
VGOPS_HOST_DEVICE inline void segment_iou_backward(T s1, T e1, T s2, T e2, T g, T* gs1, T* ge1,
                                                   T* gs2, T* ge2) {
  const T w = min_(e1, e2) - max_(s1, s2);
  const T inter = max_(w, T(0));
  const T uni = (e1 - s1) + (e2 - s2) - inter;
  const bool positive = uni > T(0);
  const T u = positive ? uni : T(1);
  const T g_u2 = g / (u * u);
  const T d_len = positive ? -g_u2 * inter : T(0);  // d(inter/uni)/d len_a (= d len_b)
  // d(inter/uni)/d inter (uni depends on inter too), only where the segments overlap.
  const T d_inter = (positive && w > T(0)) ? g_u2 * (u + inter) : T(0);
  const T he1 = e1 < e2 ? T(1) : (e1 == e2 ? T(0.5) : T(0));  // share of d min(e1, e2) to e1
  const T hs1 = s1 > s2 ? T(1) : (s1 == s2 ? T(0.5) : T(0));  // share of d max(s1, s2) to s1
  *gs1 = -d_len - d_inter * hs1;
  *ge1 = d_len + d_inter * he1;
  *gs2 = -d_len - d_inter * (T(1) - hs1);
  *ge2 = d_len + d_inter * (T(1) - he1);
}

}  // namespace iou1d
}  // namespace vgops
