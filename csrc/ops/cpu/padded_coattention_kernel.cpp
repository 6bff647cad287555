// CPU kernels of the fused co-attention softmaxes (forward: row and column log-sum-exps and the
// head-averaged maps; backward: the logits' gradient through both softmaxes). The math is in
// ../padded_coattention.h, shared with the CUDA kernels. Every output element is computed by one
// thread in a fixed order: results are identical for any thread count.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../checks.h"
#include "../padded_coattention.h"

namespace vgops {
namespace {

// Grain in logits elements: small problems stay on the calling thread.
int64_t grain(int64_t per_task) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(per_task, 1)); }

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> coattention_softmax_cpu(const at::Tensor& logits_in,
                                                                                   const at::Tensor& vk_in,
                                                                                   const at::Tensor& qk_in) {
  check_coattention_softmax_inputs("_coattention_softmax", logits_in, vk_in, qk_in);
  const int64_t B = logits_in.size(0), H = logits_in.size(1), Tk = logits_in.size(2), Nk = logits_in.size(3);
  const auto opts = logits_in.options();
  const auto lse_opts = opts.dtype(coattention_lse_type(logits_in.scalar_type()));
  at::Tensor a_v = at::empty({B, Tk, Nk}, opts), a_qt = at::empty({B, Tk, Nk}, opts);
  at::Tensor row_lse = at::empty({B, H, Tk}, lse_opts), col_lse = at::empty({B, H, Nk}, lse_opts);
  if (B == 0 || Tk == 0 || Nk == 0) {
    row_lse.zero_(), col_lse.zero_();
    return {a_v, a_qt, row_lse, col_lse};
  }
  const at::Tensor logits = logits_in.contiguous(), vk = vk_in.contiguous(), qk = qk_in.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "coattention_softmax_cpu", [&] {
    using T = at::opmath_type<scalar_t>;
    using L = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    const scalar_t* x = logits.const_data_ptr<scalar_t>();
    const bool *v = vk.const_data_ptr<bool>(), *q = qk.const_data_ptr<bool>();
    L *rl = row_lse.mutable_data_ptr<L>(), *cl = col_lse.mutable_data_ptr<L>();
    scalar_t *av = a_v.mutable_data_ptr<scalar_t>(), *aq = a_qt.mutable_data_ptr<scalar_t>();
    // Columns: one task per (b, h, j), a strided pass down the Tk rows.
    at::parallel_for(0, B * H * Nk, grain(Tk), [&](int64_t lo, int64_t hi) {
      for (int64_t c = lo; c < hi; ++c) {
        const int64_t j = c % Nk, bh = c / Nk, b = bh / H;
        cl[c] = coattention::masked_lse<T>(x + bh * Tk * Nk + j, Tk, Nk, v + b * Tk);
      }
    });
    // Rows: every head's row lse, then the row of both averaged maps.
    at::parallel_for(0, B * Tk, grain(H * Nk), [&](int64_t lo, int64_t hi) {
      for (int64_t r = lo; r < hi; ++r) {
        const int64_t b = r / Tk, i = r % Tk;
        const scalar_t* row0 = x + (b * H * Tk + i) * Nk;
        for (int64_t h = 0; h < H; ++h)
          rl[(b * H + h) * Tk + i] = coattention::masked_lse<T>(row0 + h * Tk * Nk, Nk, 1, q + b * Nk);
        coattention::maps_row<T>(row0, H, Tk * Nk, Nk, v[b * Tk + i], q + b * Nk, rl + b * H * Tk + i, Tk,
                                 cl + b * H * Nk, Nk, av + r * Nk, aq + r * Nk);
      }
    });
  });
  return {a_v, a_qt, row_lse, col_lse};
}

at::Tensor coattention_softmax_backward_cpu(const at::Tensor& logits_in, const at::Tensor& vk_in,
                                            const at::Tensor& qk_in, const at::Tensor& row_lse_in,
                                            const at::Tensor& col_lse_in, const at::Tensor& g_v_in,
                                            const at::Tensor& g_qt_in) {
  const char* op = "_coattention_softmax_backward";
  check_coattention_softmax_inputs(op, logits_in, vk_in, qk_in);
  const int64_t B = logits_in.size(0), H = logits_in.size(1), Tk = logits_in.size(2), Nk = logits_in.size(3);
  const at::Tensor lse_like = at::empty({0}, logits_in.options().dtype(coattention_lse_type(logits_in.scalar_type())));
  check_shape(op, "row_lse", row_lse_in, {B, H, Tk}, lse_like);
  check_shape(op, "col_lse", col_lse_in, {B, H, Nk}, lse_like);
  check_shape(op, "g_v", g_v_in, {B, Tk, Nk}, logits_in);
  check_shape(op, "g_qt", g_qt_in, {B, Tk, Nk}, logits_in);
  at::Tensor dlogits = at::empty({B, H, Tk, Nk}, logits_in.options());
  if (dlogits.numel() == 0) return dlogits;
  const at::Tensor logits = logits_in.contiguous(), vk = vk_in.contiguous(), qk = qk_in.contiguous();
  const at::Tensor row_lse = row_lse_in.contiguous(), col_lse = col_lse_in.contiguous();
  const at::Tensor g_v = g_v_in.contiguous(), g_qt = g_qt_in.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "coattention_softmax_backward_cpu", [&] {
    using T = at::opmath_type<scalar_t>;
    using L = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    const scalar_t *x = logits.const_data_ptr<scalar_t>(), *gv = g_v.const_data_ptr<scalar_t>();
    const scalar_t* gq = g_qt.const_data_ptr<scalar_t>();
    const bool *v = vk.const_data_ptr<bool>(), *q = qk.const_data_ptr<bool>();
    const L *rl = row_lse.const_data_ptr<L>(), *cl = col_lse.const_data_ptr<L>();
    scalar_t* dx = dlogits.mutable_data_ptr<scalar_t>();
    // Column dots of the column softmax, one per (b, h, j), kept in float/double.
    std::vector<L> coldots(B * H * Nk);
    at::parallel_for(0, B * H * Nk, grain(Tk), [&](int64_t lo, int64_t hi) {
      for (int64_t c = lo; c < hi; ++c) {
        const int64_t j = c % Nk, bh = c / Nk, b = bh / H;
        coldots[c] = coattention::coldot<T>(x + bh * Tk * Nk + j, gq + b * Tk * Nk + j, Tk, Nk, T(cl[c]), v + b * Tk);
      }
    });
    at::parallel_for(0, B * H * Tk, grain(Nk), [&](int64_t lo, int64_t hi) {
      for (int64_t r = lo; r < hi; ++r) {
        const int64_t i = r % Tk, bh = r / Tk, b = bh / H;
        coattention::grad_row<T>(x + r * Nk, gv + (b * Tk + i) * Nk, gq + (b * Tk + i) * Nk, Nk, T(rl[r]),
                                 cl + bh * Nk, coldots.data() + bh * Nk, v[b * Tk + i], q + b * Nk, dx + r * Nk);
      }
    });
  });
  return dlogits;
}

}  // namespace

TORCH_LIBRARY_IMPL(vgops, CPU, m) {
  m.impl("_coattention_softmax", &coattention_softmax_cpu);
  m.impl("_coattention_softmax_backward", &coattention_softmax_backward_cpu);
}

}  // namespace vgops
