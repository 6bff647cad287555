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

namespace vgops {
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
    using T = at::opmath_type<scalar_t>;
    const scalar_t *a = x_s.const_data_ptr<scalar_t>(), *b = x_c.const_data_ptr<scalar_t>();
    const scalar_t *gs = g_s.const_data_ptr<scalar_t>(), *gc = g_c.const_data_ptr<scalar_t>();
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, n, kGrain, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i)
        o[i] = static_cast<scalar_t>(gates::cross_gate<T>(T(a[i]), T(b[i]), T(gs[i]), T(gc[i])));
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
    using T = at::opmath_type<scalar_t>;
    const scalar_t *g = grad.const_data_ptr<scalar_t>(), *a = x_s.const_data_ptr<scalar_t>();
    const scalar_t *b = x_c.const_data_ptr<scalar_t>(), *gs = g_s.const_data_ptr<scalar_t>();
    const scalar_t* gc = g_c.const_data_ptr<scalar_t>();
    scalar_t *oa = d_xs.mutable_data_ptr<scalar_t>(), *ob = d_xc.mutable_data_ptr<scalar_t>();
    scalar_t *ogs = d_gs.mutable_data_ptr<scalar_t>(), *ogc = d_gc.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, n, kGrain, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) {
        T da, db, dgs, dgc;
        gates::cross_gate_backward<T>(T(g[i]), T(a[i]), T(b[i]), T(gs[i]), T(gc[i]), &da, &db, &dgs, &dgc);
        oa[i] = static_cast<scalar_t>(da);
        ob[i] = static_cast<scalar_t>(db);
        ogs[i] = static_cast<scalar_t>(dgs);
        ogc[i] = static_cast<scalar_t>(dgc);
      }
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
    using T = at::opmath_type<scalar_t>;
    const scalar_t *a = hg.const_data_ptr<scalar_t>(), *b = hv.const_data_ptr<scalar_t>();
    const scalar_t* c = res.const_data_ptr<scalar_t>();
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, n, kGrain, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i)
        o[i] = static_cast<scalar_t>(gates::self_guided<T>(T(a[i]), T(b[i]), T(c[i])));
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
    using T = at::opmath_type<scalar_t>;
    const scalar_t *g = grad.const_data_ptr<scalar_t>(), *a = hg.const_data_ptr<scalar_t>();
    const scalar_t* b = hv.const_data_ptr<scalar_t>();
    scalar_t *oa = d_gate.mutable_data_ptr<scalar_t>(), *ob = d_value.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, n, kGrain, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) {
        T da, db;
        gates::self_guided_backward<T>(T(g[i]), T(a[i]), T(b[i]), &da, &db);
        oa[i] = static_cast<scalar_t>(da);
        ob[i] = static_cast<scalar_t>(db);
      }
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
