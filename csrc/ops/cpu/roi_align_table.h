#pragma once
// CPU helper of roi_align_1d and roi_align_clips: the weights of one RoI axis as a small dense
// table, built once per RoI from the shared math (../roi_align_1d.h) and reused for every channel.
//
// Row p of the table is bin p's weight of every index: out[p] = sum_idx w[p][idx] * x[idx] / count.
// Only the indices some sample reads are stored: the union [u0, u0 + span) over the bins, and per
// bin the band [lo[p], hi[p]) of the indices it reads (empty: lo == hi). The weights are the
// bin_weight values the deterministic CUDA backward gathers, so these kernels check that math too.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "../roi_align_1d.h"

namespace vgops {
namespace roi {

template <typename T>
struct AxisTable {
  int64_t u0 = 0, span = 0;
  std::vector<int64_t> lo, hi;
  std::vector<T> w;  // [pooled][span]

  const T* row(int64_t p) const { return w.data() + p * span; }

  void build(const Axis<T>& a, int64_t pooled, int64_t size) {
    lo.assign(pooled, 0);
    hi.assign(pooled, 0);
    int64_t umin = std::numeric_limits<int64_t>::max(), umax = 0;
    for (int64_t p = 0; p < pooled; ++p) {
      int64_t l = std::numeric_limits<int64_t>::max(), h = -1;
      for_each_tap(a, p, size, [&](int64_t idx, T) {
        l = std::min(l, idx);
        h = std::max(h, idx);
      });
      if (h < 0) continue;
      lo[p] = l;
      hi[p] = h + 1;
      umin = std::min(umin, l);
      umax = std::max(umax, h + 1);
    }
    if (umax <= 0) {
      u0 = span = 0;
      w.clear();
      return;
    }
    u0 = umin;
    span = umax - umin;
    w.assign(static_cast<size_t>(pooled * span), T(0));
    for (int64_t idx = u0; idx < umax; ++idx) {
      int64_t p0, p1;
      bins_touching(a, pooled, size, idx, p0, p1);
      for (int64_t p = p0; p < p1; ++p) {
        if (idx >= lo[p] && idx < hi[p]) w[p * span + (idx - u0)] = bin_weight(a, p, size, idx);
      }
    }
  }
};

}  // namespace roi
}  // namespace vgops
