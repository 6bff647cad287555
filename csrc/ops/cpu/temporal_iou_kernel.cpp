// CPU kernels of temporal_iou and its backward; the math is in ../temporal_iou.h.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../checks.h"
#include "../temporal_iou.h"

namespace vgops {
namespace {

at::Tensor temporal_iou_cpu(const at::Tensor& a_in, const at::Tensor& b_in, bool aligned) {
  check_temporal_iou_inputs(a_in, b_in, aligned);
  const int64_t B = a_in.size(0), N = a_in.size(1), M = b_in.size(1);
  at::Tensor out = aligned ? at::empty({B, N}, a_in.options()) : at::empty({B, N, M}, a_in.options());
  if (out.numel() == 0) return out;
  at::Tensor a = a_in.contiguous(), b = b_in.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.scalar_type(), "temporal_iou_cpu", [&] {
    using T = at::opmath_type<scalar_t>;
    const scalar_t* pa = a.const_data_ptr<scalar_t>();
    const scalar_t* pb = b.const_data_ptr<scalar_t>();
    scalar_t* po = out.mutable_data_ptr<scalar_t>();
    if (aligned) {
      at::parallel_for(0, B * N, 2048, [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i)
          po[i] = static_cast<scalar_t>(iou1d::segment_iou<T>(pa[2 * i], pa[2 * i + 1], pb[2 * i], pb[2 * i + 1]));
      });
      return;
    }
    at::parallel_for(0, B * N, std::max<int64_t>(1, 4096 / std::max<int64_t>(M, 1)), [&](int64_t lo, int64_t hi) {
      for (int64_t row = lo; row < hi; ++row) {
        const int64_t bi = row / N;
        const T s1 = pa[2 * row], e1 = pa[2 * row + 1];
        const scalar_t* bb = pb + 2 * bi * M;
        scalar_t* o = po + row * M;
        for (int64_t j = 0; j < M; ++j)
          o[j] = static_cast<scalar_t>(iou1d::segment_iou<T>(s1, e1, bb[2 * j], bb[2 * j + 1]));
      }
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> temporal_iou_backward_cpu(const at::Tensor& grad_in, const at::Tensor& a_in,
                                                             const at::Tensor& b_in, bool aligned) {
  check_temporal_iou_inputs(a_in, b_in, aligned);
  const int64_t B = a_in.size(0), N = a_in.size(1), M = b_in.size(1);
  at::Tensor ga = at::zeros_like(a_in, at::MemoryFormat::Contiguous);
  at::Tensor gb = at::zeros_like(b_in, at::MemoryFormat::Contiguous);
  if (ga.numel() == 0 || gb.numel() == 0) return {ga, gb};
  at::Tensor a = a_in.contiguous(), b = b_in.contiguous(), grad = grad_in.contiguous().to(a.scalar_type());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.scalar_type(), "temporal_iou_backward_cpu", [&] {
    using T = at::opmath_type<scalar_t>;
    const scalar_t* pa = a.const_data_ptr<scalar_t>();
    const scalar_t* pb = b.const_data_ptr<scalar_t>();
    const scalar_t* pg = grad.const_data_ptr<scalar_t>();
    scalar_t* pga = ga.mutable_data_ptr<scalar_t>();
    scalar_t* pgb = gb.mutable_data_ptr<scalar_t>();
    if (aligned) {
      at::parallel_for(0, B * N, 2048, [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i) {
          T g[4];
          iou1d::segment_iou_backward<T>(pa[2 * i], pa[2 * i + 1], pb[2 * i], pb[2 * i + 1], T(pg[i]), &g[0], &g[1], &g[2], &g[3]);
          pga[2 * i] = g[0]; pga[2 * i + 1] = g[1]; pgb[2 * i] = g[2]; pgb[2 * i + 1] = g[3];
        }
      });
      return;
    }
    // Pairwise: each a-row sums over its M partners and each b-row over its N partners, in two
    // passes, so no two threads write the same output (deterministic, no atomics).
    at::parallel_for(0, B * N, 1, [&](int64_t lo, int64_t hi) {
      for (int64_t row = lo; row < hi; ++row) {
        const int64_t bi = row / N;
        T acc_s = 0, acc_e = 0, d[4];
        for (int64_t j = 0; j < M; ++j) {
          const scalar_t* q = pb + 2 * (bi * M + j);
          iou1d::segment_iou_backward<T>(pa[2 * row], pa[2 * row + 1], q[0], q[1], T(pg[row * M + j]), &d[0], &d[1], &d[2], &d[3]);
          acc_s += d[0]; acc_e += d[1];
        }
        pga[2 * row] = acc_s; pga[2 * row + 1] = acc_e;
      }
    });
    at::parallel_for(0, B * M, 1, [&](int64_t lo, int64_t hi) {
      for (int64_t col = lo; col < hi; ++col) {
        const int64_t bi = col / M, j = col % M;
        T acc_s = 0, acc_e = 0, d[4];
        for (int64_t n = 0; n < N; ++n) {
          const scalar_t* p = pa + 2 * (bi * N + n);
          iou1d::segment_iou_backward<T>(p[0], p[1], pb[2 * col], pb[2 * col + 1], T(pg[(bi * N + n) * M + j]), &d[0], &d[1], &d[2], &d[3]);
          acc_s += d[2]; acc_e += d[3];
        }
        pgb[2 * col] = acc_s; pgb[2 * col + 1] = acc_e;
      }
    });
  });
  return {ga, gb};
}

}  // namespace

TORCH_LIBRARY_IMPL(vgops, CPU, m) {
  m.impl("temporal_iou", &temporal_iou_cpu);
  m.impl("_temporal_iou_backward", &temporal_iou_backward_cpu);
}

}  // namespace vgops
