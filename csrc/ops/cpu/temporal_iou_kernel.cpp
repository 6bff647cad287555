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

// Sum of x[0..n) in a fixed order with 16 independent partial sums (vectorisable without
// reassociating: the order is written out, so results do not depend on the compiler or threads).
template <typename T>
T ordered_sum(const T* x, int64_t n) {
  T part[16] = {};
  int64_t j = 0;
  for (; j + 16 <= n; j += 16)
    for (int l = 0; l < 16; ++l) part[l] += x[j + l];
  for (; j < n; ++j) part[j % 16] += x[j];
  T total = 0;
  for (int l = 0; l < 16; ++l) total += part[l];
  return total;
}

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
    // Pairwise. grad_a: per a-row, the M partner terms are computed by a vectorised loop into a
    // buffer, then summed in a fixed order. grad_b: per chunk of b-columns, a-rows are visited in
    // order and accumulated column-wise. No two threads write one output, and every sum has the
    // same order whatever the thread count: deterministic.
    at::parallel_for(0, B * N, std::max<int64_t>(1, 2048 / std::max<int64_t>(M, 1)), [&](int64_t lo, int64_t hi) {
      std::vector<T> ds(M), de(M);
      for (int64_t row = lo; row < hi; ++row) {
        const int64_t bi = row / N;
        const T s1 = pa[2 * row], e1 = pa[2 * row + 1];
        const scalar_t* q = pb + 2 * bi * M;
        const scalar_t* gr = pg + row * M;
        for (int64_t j = 0; j < M; ++j) {
          T d2, d3;
          iou1d::segment_iou_backward<T>(s1, e1, T(q[2 * j]), T(q[2 * j + 1]), T(gr[j]), &ds[j], &de[j], &d2, &d3);
        }
        pga[2 * row] = static_cast<scalar_t>(ordered_sum(ds.data(), M));
        pga[2 * row + 1] = static_cast<scalar_t>(ordered_sum(de.data(), M));
      }
    });
    constexpr int64_t kCols = 256;
    const int64_t chunks = (M + kCols - 1) / kCols;
    at::parallel_for(0, B * chunks, 1, [&](int64_t lo, int64_t hi) {
      std::vector<T> acc_s(kCols), acc_e(kCols);
      for (int64_t task = lo; task < hi; ++task) {
        const int64_t bi = task / chunks, j0 = (task % chunks) * kCols, cols = std::min(kCols, M - j0);
        std::fill(acc_s.begin(), acc_s.end(), T(0));
        std::fill(acc_e.begin(), acc_e.end(), T(0));
        const scalar_t* q = pb + 2 * (bi * M + j0);
        for (int64_t n = 0; n < N; ++n) {
          const int64_t row = bi * N + n;
          const T s1 = pa[2 * row], e1 = pa[2 * row + 1];
          const scalar_t* gr = pg + row * M + j0;
          for (int64_t j = 0; j < cols; ++j) {
            T d0, d1, d2, d3;
            iou1d::segment_iou_backward<T>(s1, e1, T(q[2 * j]), T(q[2 * j + 1]), T(gr[j]), &d0, &d1, &d2, &d3);
            acc_s[j] += d2;
            acc_e[j] += d3;
          }
        }
        for (int64_t j = 0; j < cols; ++j) {
          pgb[2 * (bi * M + j0 + j)] = static_cast<scalar_t>(acc_s[j]);
          pgb[2 * (bi * M + j0 + j) + 1] = static_cast<scalar_t>(acc_e[j]);
        }
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
