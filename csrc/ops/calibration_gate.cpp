// Schema and device-independent driver of IA-Net's calibration gate (Eq. 7-12):
//   [r, z_pre] = [x, m] W^T + b,  z = sigmoid(z_pre),  out = z * x + (1 - z) * tanh(r).
// The driver runs the GEMMs through ATen (any device) and the elementwise epilogues through the
// private ops _calibration_gate_epilogue{,_backward}, which have CPU and CUDA kernels
// (cpu/calibration_gate_kernel.cpp, cuda/calibration_gate_kernel.cu; the math is in gates.h).
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/library.h>

#include "checks.h"

TORCH_LIBRARY_FRAGMENT(vgops, m) {
  // x, m: [N, D]; weight: [2D, 2D]; bias: [2D]. Returns (out [N, D], pre [N, 2D] = [r, z_pre]);
  // pre is what the backward needs (the public vgops.calibration_gate returns out only).
  m.def("calibration_gate(Tensor x, Tensor m, Tensor weight, Tensor bias) -> (Tensor, Tensor)");
  // Gradients with respect to (x, m, weight, bias); grad_pre is the gradient reaching pre, if any.
  m.def("_calibration_gate_backward(Tensor grad, Tensor? grad_pre, Tensor x, Tensor m, Tensor weight, "
        "Tensor pre) -> (Tensor, Tensor, Tensor, Tensor)");
  // Fused epilogue: x [N, D], pre [N, 2D] -> z * x + (1 - z) * tanh(r).
  m.def("_calibration_gate_epilogue(Tensor x, Tensor pre) -> Tensor");
  // Fused backward epilogue: -> (d x (direct term z * grad), d pre = [d r, d z_pre]).
  m.def("_calibration_gate_epilogue_backward(Tensor grad, Tensor x, Tensor pre) -> (Tensor, Tensor)");
}

namespace vgops {
namespace {

at::Tensor epilogue(const at::Tensor& x, const at::Tensor& pre) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("vgops::_calibration_gate_epilogue", "")
                       .typed<at::Tensor(const at::Tensor&, const at::Tensor&)>();
  return op.call(x, pre);
}

std::tuple<at::Tensor, at::Tensor> epilogue_backward(const at::Tensor& grad, const at::Tensor& x,
                                                     const at::Tensor& pre) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("vgops::_calibration_gate_epilogue_backward", "")
                       .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&,
                                                                 const at::Tensor&)>();
  return op.call(grad, x, pre);
}

std::tuple<at::Tensor, at::Tensor> calibration_gate(const at::Tensor& x, const at::Tensor& m, const at::Tensor& weight,
                                                    const at::Tensor& bias) {
  check_calibration_gate_inputs(x, m, weight, bias);
  // The op runs in its inputs' dtype: the GEMMs below must not be re-cast by an active autocast.
  c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
  const int64_t D = x.size(1);
  // pre = x W[:, :D]^T + m W[:, D:]^T + b: two GEMMs on strided views of W, no concatenation.
  at::Tensor pre = at::addmm(bias, x, weight.slice(1, 0, D).t());
  pre.addmm_(m, weight.slice(1, D, 2 * D).t());
  return {epilogue(x, pre), pre};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> calibration_gate_backward(
    const at::Tensor& grad, const std::optional<at::Tensor>& grad_pre, const at::Tensor& x, const at::Tensor& m,
    const at::Tensor& weight, const at::Tensor& pre) {
  check_calibration_gate_inputs(x, m, weight, weight.select(1, 0));
  c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
  const int64_t D = x.size(1);
  TORCH_CHECK_VALUE(grad.sizes() == x.sizes() && pre.dim() == 2 && pre.size(0) == x.size(0) && pre.size(1) == 2 * D,
                    "_calibration_gate_backward: grad must be [N, D] and pre [N, 2D] for x ", x.sizes(),
                    ", got ", grad.sizes(), " and ", pre.sizes());
  auto [dx, dpre] = epilogue_backward(grad.to(x.scalar_type()), x, pre);
  if (grad_pre.has_value() && grad_pre->defined()) dpre.add_(*grad_pre);
  // d x = z * grad + d pre W[:, :D];  d m = d pre W[:, D:];  d W = d pre^T [x, m];  d b = sum d pre.
  dx.addmm_(dpre, weight.slice(1, 0, D));
  at::Tensor dm = at::mm(dpre, weight.slice(1, D, 2 * D));
  at::Tensor dw = at::empty({2 * D, 2 * D}, weight.options());
  at::Tensor dpre_t = dpre.t();
  at::Tensor dw_x = dw.slice(1, 0, D), dw_m = dw.slice(1, D, 2 * D);
  at::mm_out(dw_x, dpre_t, x);
  at::mm_out(dw_m, dpre_t, m);
  at::Tensor db = dpre.sum(0);
  return {dx, dm, dw, db};
}

}  // namespace

TORCH_LIBRARY_IMPL(vgops, CompositeExplicitAutograd, m) {
  m.impl("calibration_gate", &calibration_gate);
  m.impl("_calibration_gate_backward", &calibration_gate_backward);
}

}  // namespace vgops
