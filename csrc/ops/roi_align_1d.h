#pragma once
// Per-element math of RoIAlign along one axis, shared by the CPU and CUDA kernels of roi_align_1d
// and (one axis at a time) of roi_align_clips: 2D bilinear RoIAlign is the product of two of these
// axes, see roi_align_clips.h.
//
// The geometry is torchvision's roi_align, per axis:
//   start = lo * scale - offset, end = hi * scale - offset (offset = 0.5 if aligned else 0),
//   length = end - start (at least 1 when not aligned), bin = length / pooled,
//   grid = sampling_ratio if > 0 else ceil(length / pooled) samples per bin,
//   sample i of bin p at start + p * bin + (i + 0.5) * bin / grid,
//   linear interpolation with the edge rule: a coordinate outside [-1, size] contributes nothing,
//   one in [-1, 0] reads index 0, one in [size - 1, size] reads index size - 1.
// A bin is the average of its grid samples (of grid_h * grid_w samples in 2D, at least 1).
//
// Safety for any input: NaN or infinite RoIs contribute nothing (never an out-of-range index),
// the adaptive grid is capped at kMaxGrid samples, and the loops only visit samples that can land
// on the map (samples off the map still count in the average, as in torchvision), so a huge RoI
// costs O(size) work per bin, not O(grid).
//
// T is the compute type: float for half/bfloat16/float inputs, double for double.
#include <cstdint>
#ifndef __CUDA_ARCH__
#include <cmath>
#endif

#include "../macros.h"

namespace vgops {
namespace roi {

// Largest number of samples per bin along one axis. Adaptive grids above it come only from RoIs
// more than 2^30 bins long (torchvision's int overflows there); a larger sampling_ratio is capped.
constexpr int64_t kMaxGrid = int64_t(1) << 30;

template <typename T>
VGOPS_HOST_DEVICE inline bool is_finite(T x) {
#ifdef __CUDA_ARCH__
  return isfinite(x);
#else
  return std::isfinite(x);
#endif
}

template <typename T>
VGOPS_HOST_DEVICE inline T floor_(T x) {
#ifdef __CUDA_ARCH__
  return floor(x);
#else
  return std::floor(x);
#endif
}

template <typename T>
VGOPS_HOST_DEVICE inline T ceil_(T x) {
#ifdef __CUDA_ARCH__
  return ceil(x);
#else
  return std::ceil(x);
#endif
}

// x (already integral-valued, or NaN) as an index clamped to [0, n]; NaN gives 0.
template <typename T>
VGOPS_HOST_DEVICE inline int64_t clamp_index(T x, int64_t n) {
  if (!(x > T(0))) return 0;
  if (x >= static_cast<T>(n)) return n;
  return static_cast<int64_t>(x);
}

// One axis of one RoI.
template <typename T>
struct Axis {
  T start;       // first coordinate of the RoI on the feature axis
  T bin;         // bin length; <= 0 for empty or reversed aligned RoIs
  int64_t grid;  // samples per bin, in [0, kMaxGrid]
};

template <typename T>
VGOPS_HOST_DEVICE inline Axis<T> make_axis(T lo, T hi, T scale, bool aligned, int64_t pooled,
                                           int64_t sampling_ratio) {
  const T offset = aligned ? T(0.5) : T(0);
  Axis<T> a;
  a.start = lo * scale - offset;
  const T end = hi * scale - offset;
  T length = end - a.start;
  if (!aligned && length < T(1)) length = T(1);  // torchvision: malformed RoIs become 1 long
  a.bin = length / static_cast<T>(pooled);
  if (sampling_ratio > 0) {
    a.grid = sampling_ratio < kMaxGrid ? sampling_ratio : kMaxGrid;
  } else {
    const T g = ceil_(length / static_cast<T>(pooled));
    a.grid = g >= T(1) ? (g < static_cast<T>(kMaxGrid) ? static_cast<int64_t>(g) : kMaxGrid) : 0;
  }
  return a;
}

// Coordinate of sample i of bin p (the same expression, in the same order, as torchvision).
template <typename T>
VGOPS_HOST_DEVICE inline T sample_coord(const Axis<T>& a, int64_t p, int64_t i) {
  return a.start + static_cast<T>(p) * a.bin + (static_cast<T>(i) + T(0.5)) * a.bin / static_cast<T>(a.grid);
}

// Linear interpolation at coordinate c on an axis of `size` entries (torchvision's edge rule):
// false when c contributes nothing (outside [-1, size], NaN, or size <= 0); otherwise the two
// indices read and their weights (lo == hi == size - 1 at the far edge, with whi == 0).
template <typename T>
VGOPS_HOST_DEVICE inline bool interp_axis(T c, int64_t size, int64_t& lo, int64_t& hi, T& wlo, T& whi) {
  if (size <= 0 || !(c >= T(-1) && c <= static_cast<T>(size))) return false;
  if (c <= T(0)) c = T(0);
  lo = static_cast<int64_t>(c);
  if (lo >= size - 1) {
    lo = hi = size - 1;
    c = static_cast<T>(lo);
  } else {
    hi = lo + 1;
  }
  whi = c - static_cast<T>(lo);
  wlo = T(1) - whi;
  return true;
}

// The samples [i0, i1) of bin p whose coordinates lie in [lo, hi]. Exact (it tests the
// coordinates sample_coord computes) when coordinates increase with i, i.e. bin > 0: an estimate
// by inversion, then a few steps to the exact ends. When bin <= 0 (empty or reversed RoIs with a
// fixed sampling_ratio) it returns every sample and callers test each one. Non-finite RoIs give
// an empty range (none of their samples can land on the map).
template <typename T>
VGOPS_HOST_DEVICE inline void samples_within(const Axis<T>& a, int64_t p, T lo, T hi, int64_t& i0, int64_t& i1) {
  i0 = i1 = 0;
  if (a.grid <= 0 || !is_finite(a.start) || !is_finite(a.bin)) return;
  if (!(a.bin > T(0))) {
    i1 = a.grid;
    return;
  }
  const T base = a.start + static_cast<T>(p) * a.bin;
  const T step = a.bin / static_cast<T>(a.grid);
  i0 = clamp_index(ceil_((lo - base) / step - T(0.5)), a.grid);
  while (i0 > 0 && sample_coord(a, p, i0 - 1) >= lo) --i0;
  while (i0 < a.grid && !(sample_coord(a, p, i0) >= lo)) ++i0;
  i1 = clamp_index(floor_((hi - base) / step - T(0.5)) + T(1), a.grid);
  if (i1 < i0) i1 = i0;
  while (i1 < a.grid && sample_coord(a, p, i1) <= hi) ++i1;
  while (i1 > i0 && !(sample_coord(a, p, i1 - 1) <= hi)) --i1;
}

// The samples of bin p that land on an axis of `size` entries (the others contribute nothing).
template <typename T>
VGOPS_HOST_DEVICE inline void sample_range(const Axis<T>& a, int64_t p, int64_t size, int64_t& i0, int64_t& i1) {
  samples_within(a, p, T(-1), static_cast<T>(size), i0, i1);
}

// Calls emit(index, weight) for both interpolation taps of every sample of bin p that lands on
// the axis, in sample order (weights may be 0). The forward direction: out[p] = sum w * x[index].
template <typename T, typename Emit>
VGOPS_HOST_DEVICE inline void for_each_tap(const Axis<T>& a, int64_t p, int64_t size, Emit&& emit) {
  int64_t i0, i1;
  sample_range(a, p, size, i0, i1);
  for (int64_t i = i0; i < i1; ++i) {
    int64_t lo, hi;
    T wlo, whi;
    if (!interp_axis(sample_coord(a, p, i), size, lo, hi, wlo, whi)) continue;
    emit(lo, wlo);
    emit(hi, whi);
  }
}

// The coordinates whose interpolation can read index idx: (idx - 1, idx + 1), widened to the
// edge windows [-1, 1) for idx 0 and (size - 2, size] for idx size - 1.
template <typename T>
VGOPS_HOST_DEVICE inline void index_window(int64_t idx, int64_t size, T& lo, T& hi) {
  lo = idx == 0 ? T(-1) : static_cast<T>(idx - 1);
  hi = idx == size - 1 ? static_cast<T>(size) : static_cast<T>(idx + 1);
}

// Weight of index idx in bin p: the sum over the bin's samples of the interpolation weight they
// give idx (the transpose direction: grad_x[idx] = sum over bins p of weight * grad_out[p]).
template <typename T>
VGOPS_HOST_DEVICE inline T bin_weight(const Axis<T>& a, int64_t p, int64_t size, int64_t idx) {
  T lo_c, hi_c;
  index_window(idx, size, lo_c, hi_c);
  int64_t i0, i1;
  samples_within(a, p, lo_c, hi_c, i0, i1);
  T w = T(0);
  for (int64_t i = i0; i < i1; ++i) {
    int64_t lo, hi;
    T wlo, whi;
    if (!interp_axis(sample_coord(a, p, i), size, lo, hi, wlo, whi)) continue;
    if (lo == idx) w += wlo;
    if (hi == idx) w += whi;
  }
  return w;
}

// The bins [p0, p1) that may give index idx a weight (a superset; bin_weight is 0 for the others).
// Estimated by inversion, then extended bin by bin while a neighbour's samples reach the window.
template <typename T>
VGOPS_HOST_DEVICE inline void bins_touching(const Axis<T>& a, int64_t pooled, int64_t size, int64_t idx,
                                            int64_t& p0, int64_t& p1) {
  p0 = p1 = 0;
  if (a.grid <= 0 || !is_finite(a.start) || !is_finite(a.bin)) return;
  if (!(a.bin > T(0))) {
    p1 = pooled;
    return;
  }
  T lo, hi;
  index_window(idx, size, lo, hi);
  p0 = clamp_index(floor_((lo - a.start) / a.bin) - T(1), pooled);
  p1 = clamp_index(floor_((hi - a.start) / a.bin) + T(2), pooled);
  while (p0 > 0 && sample_coord(a, p0 - 1, a.grid - 1) >= lo) --p0;
  while (p1 < pooled && sample_coord(a, p1, int64_t(0)) <= hi) ++p1;
  if (p1 < p0) p1 = p0;
}

// Samples per bin of a 1D RoI, at least 1 (the divisor of the average).
template <typename T>
VGOPS_HOST_DEVICE inline T axis_count(const Axis<T>& a) {
  return static_cast<T>(a.grid > 1 ? a.grid : 1);
}

// Bin p of a 1D RoI on a row f[size]: the average of its linearly interpolated samples.
template <typename T, typename scalar_t>
VGOPS_HOST_DEVICE inline T pool_bin_1d(const scalar_t* f, int64_t size, const Axis<T>& a, int64_t p) {
  T acc = T(0);
  for_each_tap(a, p, size, [&](int64_t idx, T w) { acc += w * static_cast<T>(f[idx]); });
  return acc / axis_count(a);
}

// Gradient that index idx of a row receives from one RoI with output gradient g[pooled]: a gather
// over the bins that read it (no atomics, a fixed order).
template <typename T, typename scalar_t>
VGOPS_HOST_DEVICE inline T gather_index_1d(const scalar_t* g, int64_t pooled, int64_t size, const Axis<T>& a,
                                           int64_t idx) {
  int64_t p0, p1;
  bins_touching(a, pooled, size, idx, p0, p1);
  T acc = T(0);
  for (int64_t p = p0; p < p1; ++p) {
    const T w = bin_weight(a, p, size, idx);
    if (w != T(0)) acc += w * static_cast<T>(g[p]);
  }
  return acc / axis_count(a);
}

// A segment row (batch index, start, end) of roi_align_1d: the batch index it names when that is
// a valid one (a value in [0, batch) -- NaN and out-of-range values give -1; fractions truncate
// toward zero, as in torchvision; the public function rejects them before this point).
template <typename T>
VGOPS_HOST_DEVICE inline int64_t segment_batch(T value, int64_t batch) {
  if (!(value >= T(0) && value < static_cast<T>(batch))) return -1;
  return static_cast<int64_t>(value);
}

}  // namespace roi
}  // namespace vgops
