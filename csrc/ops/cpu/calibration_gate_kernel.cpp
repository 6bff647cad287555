// CPU kernels of the calibration gate's fused epilogues (after the GEMM, before the gradient
// GEMMs); the math is in ../gates.h. Rows in parallel, the inner loop over the D features is
// branch-free so it vectorises (float: AVX-512 / AVX2 clones); no reductions: deterministic.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../checks.h"
#include "../gates.h"
#include "cpu_clones.h"

namespace vgops {
namespace {

// One row of D features, written once; the float versions are also built for AVX-512 and AVX2
// (cpu_clones.h), picked at load time. S: storage type, opmath compute.
template <typename S>
__attribute__((always_inline)) inline void blend_row(const S* __restrict__ xr, const S* __restrict__ r,
                                                     const S* __restrict__ zp, S* __restrict__ o, int64_t D) {
  using T = at::opmath_type<S>;
#pragma omp simd
  for (int64_t j = 0; j < D; ++j) o[j] = static_cast<S>(gates::calibration_blend<T>(T(xr[j]), T(r[j]), T(zp[j])));
}

template <typename S>
__attribute__((always_inline)) inline void blend_backward_row(const S* __restrict__ g, const S* __restrict__ xr,
                                                              const S* __restrict__ r, const S* __restrict__ zp,
                                                              S* __restrict__ ox, S* __restrict__ orr,
                                                              S* __restrict__ oz, int64_t D) {
  using T = at::opmath_type<S>;
#pragma omp simd
  for (int64_t j = 0; j < D; ++j) {
    T a, b, c;
    gates::calibration_blend_backward<T>(T(g[j]), T(xr[j]), T(r[j]), T(zp[j]), &a, &b, &c);
    ox[j] = static_cast<S>(a);
    orr[j] = static_cast<S>(b);
    oz[j] = static_cast<S>(c);
  }
}

VGOPS_CPU_CLONES void blend_row_float(const float* xr, const float* r, const float* zp, float* o, int64_t D) {
  blend_row(xr, r, zp, o, D);
}
VGOPS_CPU_CLONES void blend_backward_row_float(const float* g, const float* xr, const float* r, const float* zp,
                                               float* ox, float* orr, float* oz, int64_t D) {
  blend_backward_row(g, xr, r, zp, ox, orr, oz, D);
}

// Entry points: the float overloads (exact matches) take the cloned builds.
template <typename S>
void blend_row_any(const S* xr, const S* r, const S* zp, S* o, int64_t D) {
  blend_row(xr, r, zp, o, D);
}
inline void blend_row_any(const float* xr, const float* r, const float* zp, float* o, int64_t D) {
  blend_row_float(xr, r, zp, o, D);
}
template <typename S>
void blend_backward_row_any(const S* g, const S* xr, const S* r, const S* zp, S* ox, S* orr, S* oz, int64_t D) {
  blend_backward_row(g, xr, r, zp, ox, orr, oz, D);
}
inline void blend_backward_row_any(const float* g, const float* xr, const float* r, const float* zp, float* ox,
                                   float* orr, float* oz, int64_t D) {
  blend_backward_row_float(g, xr, r, zp, ox, orr, oz, D);
}

inline int64_t row_grain(int64_t D) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(D, 1)); }

at::Tensor calibration_gate_epilogue_cpu(const at::Tensor& x_in, const at::Tensor& pre_in) {
  check_calibration_epilogue_inputs("_calibration_gate_epilogue", x_in, pre_in);
  const int64_t N = x_in.size(0), D = x_in.size(1);
  at::Tensor out = at::empty({N, D}, x_in.options());
  if (out.numel() == 0) return out;
  at::Tensor x = x_in.contiguous(), pre = pre_in.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "calibration_gate_epilogue_cpu", [&] {
    const scalar_t *px = x.const_data_ptr<scalar_t>(), *pp = pre.const_data_ptr<scalar_t>();
    scalar_t* po = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, N, row_grain(D), [&](int64_t lo, int64_t hi) {
      for (int64_t n = lo; n < hi; ++n) {
        const scalar_t *xr = px + n * D, *r = pp + n * 2 * D;
        blend_row_any(xr, r, r + D, po + n * D, D);
      }
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> calibration_gate_epilogue_backward_cpu(const at::Tensor& grad_in, const at::Tensor& x_in,
                                                                          const at::Tensor& pre_in) {
  check_calibration_epilogue_inputs("_calibration_gate_epilogue_backward", x_in, pre_in, &grad_in);
  const int64_t N = x_in.size(0), D = x_in.size(1);
  at::Tensor dx = at::empty({N, D}, x_in.options()), dpre = at::empty({N, 2 * D}, x_in.options());
  if (dx.numel() == 0) return {dx, dpre};
  at::Tensor grad = grad_in.contiguous(), x = x_in.contiguous(), pre = pre_in.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "calibration_gate_epilogue_backward_cpu", [&] {
    const scalar_t *pg = grad.const_data_ptr<scalar_t>(), *px = x.const_data_ptr<scalar_t>();
    const scalar_t* pp = pre.const_data_ptr<scalar_t>();
    scalar_t *pdx = dx.mutable_data_ptr<scalar_t>(), *pdp = dpre.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, N, row_grain(D), [&](int64_t lo, int64_t hi) {
      for (int64_t n = lo; n < hi; ++n) {
        const scalar_t* r = pp + n * 2 * D;
        scalar_t* orr = pdp + n * 2 * D;
        blend_backward_row_any(pg + n * D, px + n * D, r, r + D, pdx + n * D, orr, orr + D, D);
      }
    });
  });
  return {dx, dpre};
}

}  // namespace

TORCH_LIBRARY_IMPL(vgops, CPU, m) {
  m.impl("_calibration_gate_epilogue", &calibration_gate_epilogue_cpu);
  m.impl("_calibration_gate_epilogue_backward", &calibration_gate_epilogue_backward_cpu);
}

}  // namespace vgops
