// Schema and device-independent driver of GLF's additive patch-word attention (Eq. 2).
// The scores alpha[b, p, s] = wᵀ tanh(a[b, p] + b[b, s]) and their backward are the private ops
// _additive_scores{,_backward} with CPU and CUDA kernels (cpu/additive_attention_kernel.cpp,
// cuda/additive_attention_kernel.cu; math in additive_attention.h) that never materialise the
// [B, P, S, d] sum. The masked softmax and the value products are ATen ops on [B, P, S] tensors.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/library.h>

#include "checks.h"
#include "fixed_matmul.h"

TORCH_LIBRARY_FRAGMENT(vgops, m) {
  // a [B, P, d], b [B, S, d], w [d], values [B, S, Dv], s_mask [B, S] bool (True = valid) or None
  // -> (context [B, P, Dv], weights [B, P, S]); weights is what the backward needs.
  m.def("additive_attention(Tensor a, Tensor b, Tensor w, Tensor values, Tensor? s_mask) -> (Tensor, Tensor)");
  // Gradients with respect to (a, b, w, values); grad_weights is the gradient reaching the weights, if any.
  m.def("_additive_attention_backward(Tensor grad_context, Tensor? grad_weights, Tensor a, Tensor b, Tensor w, "
        "Tensor values, Tensor weights) -> (Tensor, Tensor, Tensor, Tensor)");
  // alpha [B, P, S] = wᵀ tanh(a[:, p] + b[:, s]).
  m.def("_additive_scores(Tensor a, Tensor b, Tensor w) -> Tensor");
  // Gradients of the scores with respect to (a, b, w) given grad_alpha [B, P, S]; tanh is recomputed.
  m.def("_additive_scores_backward(Tensor grad_alpha, Tensor a, Tensor b, Tensor w) -> (Tensor, Tensor, Tensor)");
}

namespace vgops {
namespace {

at::Tensor scores_op(const at::Tensor& a, const at::Tensor& b, const at::Tensor& w) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("vgops::_additive_scores", "")
                       .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&)>();
  return op.call(a, b, w);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> scores_backward_op(const at::Tensor& g, const at::Tensor& a,
                                                                  const at::Tensor& b, const at::Tensor& w) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("vgops::_additive_scores_backward", "")
                       .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&,
                                                                             const at::Tensor&, const at::Tensor&)>();
  return op.call(g, a, b, w);
}

void check_inputs(const char* op, const at::Tensor& a, const at::Tensor& b, const at::Tensor& w,
                  const at::Tensor& values) {
  check_additive_scores_inputs(op, a, b, w);
  TORCH_CHECK_VALUE(values.dim() == 3 && values.size(0) == a.size(0) && values.size(1) == b.size(1), op,
                    ": values must be [B, S, Dv] = [", a.size(0), ", ", b.size(1), ", Dv], got ", values.sizes());
  check_same_device_dtype(a, values, op, "a", "values");
}

std::tuple<at::Tensor, at::Tensor> additive_attention(const at::Tensor& a, const at::Tensor& b, const at::Tensor& w,
                                                      const at::Tensor& values, const std::optional<at::Tensor>& mask) {
  const char* op = "additive_attention";
  check_inputs(op, a, b, w, values);
  c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
  at::Tensor alpha = scores_op(a, b, w);  // [B, P, S]
  at::Tensor weights;
  if (mask.has_value() && mask->defined()) {
    check_shape(op, "s_mask", *mask, {b.size(0), b.size(1)}, a, false);
    TORCH_CHECK_VALUE(mask->scalar_type() == at::kBool, op, ": s_mask must be bool, got ", mask->scalar_type());
    const at::Tensor invalid = mask->logical_not().unsqueeze(1);
    weights = at::softmax(alpha.masked_fill_(invalid, -INFINITY), -1);
    // A sentence with no valid word: softmax of nothing is 0, not NaN.
    weights.masked_fill_(invalid.all(-1, true), 0);
  } else {
    weights = at::softmax(alpha, -1);
  }
  return {matmul_fixed(weights, values), weights};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> additive_attention_backward(
    const at::Tensor& grad_context, const std::optional<at::Tensor>& grad_weights, const at::Tensor& a,
    const at::Tensor& b, const at::Tensor& w, const at::Tensor& values, const at::Tensor& weights) {
  const char* op = "_additive_attention_backward";
  check_inputs(op, a, b, w, values);
  c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
  const int64_t B = a.size(0), P = a.size(1), S = b.size(1);
  check_shape(op, "weights", weights, {B, P, S}, a);
  check_shape(op, "grad_context", grad_context, {B, P, values.size(2)}, a, false);
  const at::Tensor gc = grad_context.to(values.scalar_type());
  at::Tensor d_values = matmul_fixed(weights.transpose(1, 2), gc);
  at::Tensor d_weights = matmul_fixed(gc, values.transpose(1, 2));  // [B, P, S]
  if (grad_weights.has_value() && grad_weights->defined()) d_weights.add_(*grad_weights);
  // Softmax backward; masked words have weight 0 and so get no gradient.
  at::Tensor d_alpha = at::_softmax_backward_data(d_weights, weights, -1, weights.scalar_type());
  auto [d_a, d_b, d_w] = scores_backward_op(d_alpha, a, b, w);
  return {d_a, d_b, d_w, d_values};
}

}  // namespace

TORCH_LIBRARY_IMPL(vgops, CompositeExplicitAutograd, m) {
  m.impl("additive_attention", &additive_attention);
  m.impl("_additive_attention_backward", &additive_attention_backward);
}

}  // namespace vgops
