// CPU kernels of cross_gate and self_guided and their backward passes; the math is in ../gates.h.
// One pass over the inputs per call; the loops are branch-free so they vectorise (float and
// double), and every element is independent (no reductions): deterministic.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../checks.h"
#include "../gates.h"
#include "cpu_clones.h"

namespace vgops {
namespace gates_cpu {

// The loops over a contiguous range, written once; `omp simd` over the branch-free gates.h math.
// The float versions are also built for AVX2 + FMA (cpu_clones.h). S: storage, opmath compute.
template <typename S>
__attribute__((always_inline)) inline void cross_gate_range(const S* __restrict__ a, const S* __restrict__ b,
                                                            const S* __restrict__ gs, const S* __restrict__ gc,
                                                            S* __restrict__ o, int64_t n) {
  using T = at::opmath_type<S>;
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) o[i] = static_cast<S>(gates::cross_gate<T>(T(a[i]), T(b[i]), T(gs[i]), T(gc[i])));
}

template <typename S>
__attribute__((always_inline)) inline void cross_gate_backward_range(
    const S* __restrict__ g, const S* __restrict__ a, const S* __restrict__ b, const S* __restrict__ gs,
    const S* __restrict__ gc, S* __restrict__ oa, S* __restrict__ ob, S* __restrict__ ogs, S* __restrict__ ogc,
    int64_t n) {
  using T = at::opmath_type<S>;
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    T da, db, dgs, dgc;
    gates::cross_gate_backward<T>(T(g[i]), T(a[i]), T(b[i]), T(gs[i]), T(gc[i]), &da, &db, &dgs, &dgc);
    oa[i] = static_cast<S>(da);
    ob[i] = static_cast<S>(db);
    ogs[i] = static_cast<S>(dgs);
    ogc[i] = static_cast<S>(dgc);
  }
}

template <typename S>
__attribute__((always_inline)) inline void self_guided_range(const S* __restrict__ a, const S* __restrict__ b,
                                                             const S* __restrict__ c, S* __restrict__ o, int64_t n) {
  using T = at::opmath_type<S>;
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) o[i] = static_cast<S>(gates::self_guided<T>(T(a[i]), T(b[i]), T(c[i])));
}

template <typename S>
__attribute__((always_inline)) inline void self_guided_backward_range(const S* __restrict__ g, const S* __restrict__ a,
                                                                      const S* __restrict__ b, S* __restrict__ oa,
                                                                      S* __restrict__ ob, int64_t n) {
  using T = at::opmath_type<S>;
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    T da, db;
    gates::self_guided_backward<T>(T(g[i]), T(a[i]), T(b[i]), &da, &db);
    oa[i] = static_cast<S>(da);
    ob[i] = static_cast<S>(db);
  }
}

VGOPS_CPU_CLONES void cross_gate_float(const float* a, const float* b, const float* gs, const float* gc, float* o,
                                       int64_t n) {
  cross_gate_range(a, b, gs, gc, o, n);
}
VGOPS_CPU_CLONES void cross_gate_backward_float(const float* g, const float* a, const float* b, const float* gs,
                                                const float* gc, float* oa, float* ob, float* ogs, float* ogc,
                                                int64_t n) {
  cross_gate_backward_range(g, a, b, gs, gc, oa, ob, ogs, ogc, n);
}
VGOPS_CPU_CLONES void self_guided_float(const float* a, const float* b, const float* c, float* o, int64_t n) {
  self_guided_range(a, b, c, o, n);
}
VGOPS_CPU_CLONES void self_guided_backward_float(const float* g, const float* a, const float* b, float* oa, float* ob,
                                                 int64_t n) {
  self_guided_backward_range(g, a, b, oa, ob, n);
}

// Entry points: the float overloads (exact matches) take the cloned builds.
template <typename S>
void cross_gate_any(const S* a, const S* b, const S* gs, const S* gc, S* o, int64_t n) {
  cross_gate_range(a, b, gs, gc, o, n);
}
inline void cross_gate_any(const float* a, const float* b, const float* gs, const float* gc, float* o, int64_t n) {
  cross_gate_float(a, b, gs, gc, o, n);
}
template <typename S>
void cross_gate_backward_any(const S* g, const S* a, const S* b, const S* gs, const S* gc, S* oa, S* ob, S* ogs,
                             S* ogc, int64_t n) {
  cross_gate_backward_range(g, a, b, gs, gc, oa, ob, ogs, ogc, n);
}
inline void cross_gate_backward_any(const float* g, const float* a, const float* b, const float* gs, const float* gc,
                                    float* oa, float* ob, float* ogs, float* ogc, int64_t n) {
  cross_gate_backward_float(g, a, b, gs, gc, oa, ob, ogs, ogc, n);
}
template <typename S>
void self_guided_any(const S* a, const S* b, const S* c, S* o, int64_t n) {
  self_guided_range(a, b, c, o, n);
}
inline void self_guided_any(const float* a, const float* b, const float* c, float* o, int64_t n) {
  self_guided_float(a, b, c, o, n);
}
template <typename S>
void self_guided_backward_any(const S* g, const S* a, const S* b, S* oa, S* ob, int64_t n) {
  self_guided_backward_range(g, a, b, oa, ob, n);
}
inline void self_guided_backward_any(const float* g, const float* a, const float* b, float* oa, float* ob, int64_t n) {
  self_guided_backward_float(g, a, b, oa, ob, n);
}

}  // namespace gates_cpu

namespace {

constexpr int64_t kGrain = 16384;

at::Tensor cross_gate_cpu(const at::Tensor& x_s_in, const at::Tensor& x_c_in, const at::Tensor& g_s_in,
                          const at::Tensor& g_c_in) {
  check_same_elementwise("cross_gate", {{"x_s", &x_s_in}, {"x_c", &x_c_in}, {"g_s", &g_s_in}, {"g_c", &g_c_in}});
  at::Tensor out = at::empty(x_s_in.sizes(), x_s_in.options().memory_format(at::MemoryFormat::Contiguous));
  const int64_t n = out.numel();
  if (n == 0) return out;
  at::Tensor x_s = x_s_in.contiguous(), x_c = x_c_in.contiguous(), g_s = g_s_in.contiguous(), g_c = g_c_in.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "cross_gate_cpu", [&] {
    const scalar_t *a = x_s.const_data_ptr<scalar_t>(), *b = x_c.const_data_ptr<scalar_t>();
    const scalar_t *gs = g_s.const_data_ptr<scalar_t>(), *gc = g_c.const_data_ptr<scalar_t>();
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, n, kGrain, [&](int64_t lo, int64_t hi) {
      gates_cpu::cross_gate_any(a + lo, b + lo, gs + lo, gc + lo, o + lo, hi - lo);
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> cross_gate_backward_cpu(
    const at::Tensor& grad_in, const at::Tensor& x_s_in, const at::Tensor& x_c_in, const at::Tensor& g_s_in,
    const at::Tensor& g_c_in) {
  check_same_elementwise("_cross_gate_backward",
                         {{"x_s", &x_s_in}, {"grad", &grad_in}, {"x_c", &x_c_in}, {"g_s", &g_s_in}, {"g_c", &g_c_in}});
  auto opts = x_s_in.options().memory_format(at::MemoryFormat::Contiguous);
  at::Tensor d_xs = at::empty(x_s_in.sizes(), opts), d_xc = at::empty(x_s_in.sizes(), opts);
  at::Tensor d_gs = at::empty(x_s_in.sizes(), opts), d_gc = at::empty(x_s_in.sizes(), opts);
  const int64_t n = d_xs.numel();
  if (n == 0) return {d_xs, d_xc, d_gs, d_gc};
  at::Tensor grad = grad_in.contiguous(), x_s = x_s_in.contiguous(), x_c = x_c_in.contiguous();
  at::Tensor g_s = g_s_in.contiguous(), g_c = g_c_in.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, d_xs.scalar_type(), "cross_gate_backward_cpu", [&] {
    const scalar_t *g = grad.const_data_ptr<scalar_t>(), *a = x_s.const_data_ptr<scalar_t>();
    const scalar_t *b = x_c.const_data_ptr<scalar_t>(), *gs = g_s.const_data_ptr<scalar_t>();
    const scalar_t* gc = g_c.const_data_ptr<scalar_t>();
    scalar_t *oa = d_xs.mutable_data_ptr<scalar_t>(), *ob = d_xc.mutable_data_ptr<scalar_t>();
    scalar_t *ogs = d_gs.mutable_data_ptr<scalar_t>(), *ogc = d_gc.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, n, kGrain, [&](int64_t lo, int64_t hi) {
      gates_cpu::cross_gate_backward_any(g + lo, a + lo, b + lo, gs + lo, gc + lo, oa + lo, ob + lo, ogs + lo, ogc + lo,
                                         hi - lo);
    });
  });
  return {d_xs, d_xc, d_gs, d_gc};
}

at::Tensor self_guided_cpu(const at::Tensor& h_gate_in, const at::Tensor& h_value_in, const at::Tensor& residual_in) {
  check_same_elementwise("self_guided", {{"h_gate", &h_gate_in}, {"h_value", &h_value_in}, {"residual", &residual_in}});
  at::Tensor out = at::empty(h_gate_in.sizes(), h_gate_in.options().memory_format(at::MemoryFormat::Contiguous));
  const int64_t n = out.numel();
  if (n == 0) return out;
  at::Tensor hg = h_gate_in.contiguous(), hv = h_value_in.contiguous(), res = residual_in.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "self_guided_cpu", [&] {
    const scalar_t *a = hg.const_data_ptr<scalar_t>(), *b = hv.const_data_ptr<scalar_t>();
    const scalar_t* c = res.const_data_ptr<scalar_t>();
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, n, kGrain, [&](int64_t lo, int64_t hi) {
      gates_cpu::self_guided_any(a + lo, b + lo, c + lo, o + lo, hi - lo);
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> self_guided_backward_cpu(const at::Tensor& grad_in, const at::Tensor& h_gate_in,
                                                            const at::Tensor& h_value_in) {
  check_same_elementwise("_self_guided_backward", {{"h_gate", &h_gate_in}, {"grad", &grad_in}, {"h_value", &h_value_in}});
  auto opts = h_gate_in.options().memory_format(at::MemoryFormat::Contiguous);
  at::Tensor d_gate = at::empty(h_gate_in.sizes(), opts), d_value = at::empty(h_gate_in.sizes(), opts);
  const int64_t n = d_gate.numel();
  if (n == 0) return {d_gate, d_value};
  at::Tensor grad = grad_in.contiguous(), hg = h_gate_in.contiguous(), hv = h_value_in.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, d_gate.scalar_type(), "self_guided_backward_cpu", [&] {
    const scalar_t *g = grad.const_data_ptr<scalar_t>(), *a = hg.const_data_ptr<scalar_t>();
    const scalar_t* b = hv.const_data_ptr<scalar_t>();
    scalar_t *oa = d_gate.mutable_data_ptr<scalar_t>(), *ob = d_value.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, n, kGrain, [&](int64_t lo, int64_t hi) {
      gates_cpu::self_guided_backward_any(g + lo, a + lo, b + lo, oa + lo, ob + lo, hi - lo);
    });
  });
  return {d_gate, d_value};
}

}  // namespace

TORCH_LIBRARY_IMPL(vgops, CPU, m) {
  m.impl("cross_gate", &cross_gate_cpu);
  m.impl("_cross_gate_backward", &cross_gate_backward_cpu);
  m.impl("self_guided", &self_guided_cpu);
  m.impl("_self_guided_backward", &self_guided_backward_cpu);
}

}  // namespace vgops
