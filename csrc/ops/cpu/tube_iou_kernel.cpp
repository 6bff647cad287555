// CPU kernel of tube_iou; the math is in ../tube_iou.h.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../checks.h"
#include "../tube_iou.h"

namespace vgops {
namespace {

std::tuple<at::Tensor, at::Tensor> tube_iou_cpu(const at::Tensor& pb_in, const at::Tensor& ps_in, const at::Tensor& gb_in,
                                                const at::Tensor& gs_in, const at::Tensor& mask_in) {
  check_tube_iou_inputs(pb_in, ps_in, gb_in, gs_in, mask_in);
  const int64_t B = pb_in.size(0), T = pb_in.size(1);
  at::Tensor tiou = at::empty({B}, pb_in.options()), viou = at::empty({B}, pb_in.options());
  if (B == 0) return {tiou, viou};
  at::Tensor pb = pb_in.contiguous(), ps = ps_in.contiguous(), gb = gb_in.contiguous(), gs = gs_in.contiguous();
  at::Tensor mask = mask_in.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, pb.scalar_type(), "tube_iou_cpu", [&] {
    using U = at::opmath_type<scalar_t>;
    const scalar_t *p = pb.const_data_ptr<scalar_t>(), *g = gb.const_data_ptr<scalar_t>();
    const scalar_t *pspan = ps.const_data_ptr<scalar_t>(), *gspan = gs.const_data_ptr<scalar_t>();
    const bool* m = mask.const_data_ptr<bool>();
    scalar_t *ot = tiou.mutable_data_ptr<scalar_t>(), *ov = viou.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, B, 64, [&](int64_t lo, int64_t hi) {
      for (int64_t b = lo; b < hi; ++b) {
        U ti, vi;
        tube::tube_iou<U>(p + b * T * 4, g + b * T * 4, m + b * T, T, U(pspan[2 * b]), U(pspan[2 * b + 1]),
                          U(gspan[2 * b]), U(gspan[2 * b + 1]), &ti, &vi);
        ot[b] = static_cast<scalar_t>(ti);
        ov[b] = static_cast<scalar_t>(vi);
      }
    });
  });
  return {tiou, viou};
}

}  // namespace

TORCH_LIBRARY_IMPL(vgops, CPU, m) { m.impl("tube_iou", &tube_iou_cpu); }

}  // namespace vgops
