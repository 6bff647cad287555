// CPU kernel of segment_map_iou; the math is in ../segment_map_iou.h.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../checks.h"
#include "../segment_map_iou.h"

namespace vgops {
namespace {

at::Tensor segment_map_iou_cpu(const at::Tensor& gt_in, int64_t n, const at::Tensor& duration_in) {
  check_segment_map_iou_inputs(gt_in, n, duration_in);
  const int64_t B = gt_in.size(0);
  at::Tensor out = at::empty({B, n, n}, gt_in.options());
  if (out.numel() == 0) return out;
  at::Tensor gt = gt_in.contiguous(), duration = duration_in.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, gt.scalar_type(), "segment_map_iou_cpu", [&] {
    using T = at::opmath_type<scalar_t>;
    const scalar_t* pg = gt.const_data_ptr<scalar_t>();
    const scalar_t* pd = duration.const_data_ptr<scalar_t>();
    scalar_t* po = out.mutable_data_ptr<scalar_t>();
    // One task per (b, s) row of the map; the e loop is contiguous and vectorises.
    at::parallel_for(0, B * n, std::max<int64_t>(1, 4096 / std::max<int64_t>(n, 1)), [&](int64_t lo, int64_t hi) {
      for (int64_t row = lo; row < hi; ++row) {
        const int64_t b = row / n, s = row % n;
        const T gs = pg[2 * b], ge = pg[2 * b + 1], step = map1d::grid_step<T>(T(pd[b]), n);
        const T cs = map1d::boundary<T>(s, step);
        scalar_t* o = po + row * n;
        // e < s: not moments; e >= s: a branch-free loop the compiler vectorises (= cell_iou).
        for (int64_t e = 0; e < s; ++e) o[e] = scalar_t(0);
        for (int64_t e = s; e < n; ++e)
          o[e] = static_cast<scalar_t>(iou1d::segment_iou<T>(cs, map1d::boundary<T>(e + 1, step), gs, ge));
      }
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(vgops, CPU, m) { m.impl("segment_map_iou", &segment_map_iou_cpu); }

}  // namespace vgops
