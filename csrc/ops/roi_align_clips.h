#pragma once
// Per-element math of roi_align_clips (2D RoIAlign of one box on one frame), shared by the CPU and
// CUDA kernels. Bilinear interpolation is separable: a sample at (y, x) reads
// wy_lo * (wx_lo * f[y_lo, x_lo] + ...) and is dropped when y or x is off the map, so a box is two
// independent axes (roi_align_1d.h): out[ph, pw] = sum_{h, w} Wy[ph, h] * Wx[pw, w] * f[h, w] / count
// with Wy[ph, h] = bin_weight(y axis, ph, H, h) and count = max(grid_h * grid_w, 1). The CUDA
// forward and atomic backward walk the samples (pool_bin / scatter_bin); the CPU kernels and the
// deterministic CUDA backward use the per-axis weights.
#include "roi_align_1d.h"

namespace vgops {
namespace roi {

template <typename T>
struct Box {
  Axis<T> y, x;
  T count;  // samples per bin, at least 1
};

// Box (x1, y1, x2, y2) in input-image pixels, on a feature map scaled by `scale`.
template <typename T>
VGOPS_HOST_DEVICE inline Box<T> make_box(const T* xyxy, T scale, bool aligned, int64_t pooled_h, int64_t pooled_w,
                                         int64_t sampling_ratio) {
  Box<T> b;
  b.y = make_axis(xyxy[1], xyxy[3], scale, aligned, pooled_h, sampling_ratio);
  b.x = make_axis(xyxy[0], xyxy[2], scale, aligned, pooled_w, sampling_ratio);
  const int64_t n = b.y.grid * b.x.grid;  // each <= 2^30: no overflow
  b.count = static_cast<T>(n > 1 ? n : 1);
  return b;
}

// Bin (ph, pw) of one box on one channel plane f[H, W] (row-major): the average of its bilinear
// samples, accumulated in T.
template <typename T, typename scalar_t>
VGOPS_HOST_DEVICE inline T pool_bin(const scalar_t* f, int64_t H, int64_t W, const Box<T>& b, int64_t ph, int64_t pw) {
  T acc = T(0);
  for_each_tap(b.y, ph, H, [&](int64_t h, T wy) {
    const scalar_t* row = f + h * W;
    for_each_tap(b.x, pw, W, [&](int64_t w, T wx) { acc += wy * wx * static_cast<T>(row[w]); });
  });
  return acc / b.count;
}

// The transpose of pool_bin: calls add(h * W + w, value) for every tap of bin (ph, pw) with the
// share of g (the bin's output gradient) that the tap receives.
template <typename T, typename Add>
VGOPS_HOST_DEVICE inline void scatter_bin(int64_t H, int64_t W, const Box<T>& b, int64_t ph, int64_t pw, T g, Add&& add) {
  const T gc = g / b.count;
  for_each_tap(b.y, ph, H, [&](int64_t h, T wy) {
    const T gy = wy * gc;
    for_each_tap(b.x, pw, W, [&](int64_t w, T wx) { add(h * W + w, gy * wx); });
  });
}

// Gradient that pixel (h, w) receives from one box: sum over the bins that read it of
// Wy[ph, h] * Wx[pw, w] * g[ph, pw] / count, with g the box's output gradient plane [ph, pw]
// (row stride pooled_w). A gather: no atomics, a fixed order.
template <typename T, typename scalar_t>
VGOPS_HOST_DEVICE inline T gather_pixel(const scalar_t* g, int64_t pooled_h, int64_t pooled_w, int64_t H, int64_t W,
                                        const Box<T>& b, int64_t h, int64_t w) {
  int64_t ph0, ph1, pw0, pw1;
  bins_touching(b.y, pooled_h, H, h, ph0, ph1);
  if (ph0 >= ph1) return T(0);
  bins_touching(b.x, pooled_w, W, w, pw0, pw1);
  T acc = T(0);
  for (int64_t ph = ph0; ph < ph1; ++ph) {
    const T wy = bin_weight(b.y, ph, H, h);
    if (wy == T(0)) continue;
    T row = T(0);
    for (int64_t pw = pw0; pw < pw1; ++pw) {
      const T wx = bin_weight(b.x, pw, W, w);
      if (wx != T(0)) row += wx * static_cast<T>(g[ph * pooled_w + pw]);
    }
    acc += wy * row;
  }
  return acc / b.count;
}

}  // namespace roi
}  // namespace vgops
