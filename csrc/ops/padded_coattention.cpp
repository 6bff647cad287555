// Schema and device-independent driver of IA-Net's padded multi-head co-attention (Eq. 1-6).
// The driver runs the GEMMs through ATen (any device): one logits GEMM per head serves both
// attention directions. The row and column softmaxes with the head average (forward) and their
// gradient (backward) are the private ops _coattention_softmax{,_backward}, with CPU and CUDA
// kernels (cpu/padded_coattention_kernel.cpp, cuda/padded_coattention_kernel.cu; the math is in
// padded_coattention.h). Logits exist for one batch chunk at a time (kChunkElements), so the
// per-head [B, H, T+K, N+K] tensor is never materialised whole.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/library.h>

#include "checks.h"
#include "fixed_matmul.h"

TORCH_LIBRARY_FRAGMENT(vgops, m) {
  // v_heads [B, H, Tk, d], q_heads [B, H, Nk, d], v_full [B, Tk, D], q_full [B, Nk, D],
  // v_mask [B, T], q_mask [B, N] (T <= Tk, N <= Nk; rows past them are pads, always valid keys).
  // -> (M_V [B, T, D], M_Q [B, N, D], A_V [B, Tk, Nk], A_Qt [B, Tk, Nk] (A_Q transposed),
  //     row_lse [B, H, Tk], col_lse [B, H, Nk]); the last four are what the backward needs.
  m.def("padded_coattention(Tensor v_heads, Tensor q_heads, Tensor v_full, Tensor q_full, Tensor v_mask, "
        "Tensor q_mask, float scale) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  // Gradients with respect to (v_heads, q_heads, v_full, q_full); grad_av / grad_aqt are the
  // gradients reaching the returned maps, if any.
  m.def("_padded_coattention_backward(Tensor grad_mv, Tensor grad_mq, Tensor? grad_av, Tensor? grad_aqt, "
        "Tensor v_heads, Tensor q_heads, Tensor v_full, Tensor q_full, Tensor v_mask, Tensor q_mask, Tensor a_v, "
        "Tensor a_qt, Tensor row_lse, Tensor col_lse, float scale) -> (Tensor, Tensor, Tensor, Tensor)");
  // Fused softmaxes of scale * logits: logits [B, H, Tk, Nk] (unscaled), v_keys [B, Tk], q_keys
  // [B, Nk] -> (A_V, A_Qt [B, Tk, Nk] head-averaged, row_lse [B, H, Tk], col_lse [B, H, Nk]).
  m.def("_coattention_softmax(Tensor logits, Tensor v_keys, Tensor q_keys, float scale) -> "
        "(Tensor, Tensor, Tensor, Tensor)");
  // grad_scale times the gradient of the scaled logits through both softmaxes, given g_v = dA_V
  // and g_qt = dA_Qt ([B, Tk, Nk]); the driver passes grad_scale = scale / H.
  m.def("_coattention_softmax_backward(Tensor logits, Tensor v_keys, Tensor q_keys, Tensor row_lse, "
        "Tensor col_lse, Tensor g_v, Tensor g_qt, float scale, float grad_scale) -> Tensor");
}

namespace vgops {
namespace {

// Logits elements per batch chunk (64 MiB in float32).
constexpr int64_t kChunkElements = int64_t(1) << 24;

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> softmax_op(const at::Tensor& logits, const at::Tensor& vk,
                                                                      const at::Tensor& qk, double scale) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("vgops::_coattention_softmax", "")
                       .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>(
                           const at::Tensor&, const at::Tensor&, const at::Tensor&, double)>();
  return op.call(logits, vk, qk, scale);
}

at::Tensor softmax_backward_op(const at::Tensor& logits, const at::Tensor& vk, const at::Tensor& qk,
                               const at::Tensor& row_lse, const at::Tensor& col_lse, const at::Tensor& g_v,
                               const at::Tensor& g_qt, double scale, double grad_scale) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("vgops::_coattention_softmax_backward", "")
                       .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                         const at::Tensor&, const at::Tensor&, const at::Tensor&, double, double)>();
  return op.call(logits, vk, qk, row_lse, col_lse, g_v, g_qt, scale, grad_scale);
}

// Masks extended with the always-valid pad rows: [B, T] -> [B, Tk].
at::Tensor keys(const at::Tensor& mask, int64_t rows) {
  const int64_t pads = rows - mask.size(1);
  return at::cat({mask, at::ones({mask.size(0), pads}, mask.options())}, 1);
}

// The per-chunk results joined along the batch (no copy for one chunk).
at::Tensor join(const std::vector<at::Tensor>& parts) { return parts.size() == 1 ? parts[0] : at::cat(parts); }

int64_t chunk_size(int64_t B, int64_t per_item) {
  return std::max<int64_t>(1, std::min<int64_t>(B, kChunkElements / std::max<int64_t>(per_item, 1)));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> padded_coattention(
    const at::Tensor& v_heads, const at::Tensor& q_heads, const at::Tensor& v_full, const at::Tensor& q_full,
    const at::Tensor& v_mask, const at::Tensor& q_mask, double scale) {
  check_padded_coattention_inputs(v_heads, q_heads, v_full, q_full, v_mask, q_mask);
  c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
  const int64_t B = v_heads.size(0), H = v_heads.size(1), Tk = v_heads.size(2), Nk = q_heads.size(2);
  const int64_t T = v_mask.size(1), N = q_mask.size(1);
  const at::Tensor vk = keys(v_mask, Tk), qk = keys(q_mask, Nk);
  const int64_t chunk = chunk_size(B, H * Tk * Nk);
  std::vector<at::Tensor> av, aqt, rl, cl;
  int64_t b0 = 0;
  do {  // at least once: B = 0 gives correctly shaped empty outputs
    const int64_t c = std::min(chunk, B - b0);
    at::Tensor logits = matmul_fixed(v_heads.narrow(0, b0, c), q_heads.narrow(0, b0, c).transpose(-1, -2));
    auto [a, q, r, s] = softmax_op(logits, vk.narrow(0, b0, c), qk.narrow(0, b0, c), scale);
    av.push_back(a), aqt.push_back(q), rl.push_back(r), cl.push_back(s);
    b0 += chunk;
  } while (b0 < B);
  at::Tensor a_v = join(av), a_qt = join(aqt), row_lse = join(rl), col_lse = join(cl);
  at::Tensor m_v = matmul_fixed(a_v.narrow(1, 0, T), q_full);                   // (A_V Q̃)[:T]
  at::Tensor m_q = matmul_fixed(a_qt.narrow(2, 0, N).transpose(1, 2), v_full);  // (A_Q Ṽ)[:N]
  return {m_v, m_q, a_v, a_qt, row_lse, col_lse};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> padded_coattention_backward(
    const at::Tensor& grad_mv, const at::Tensor& grad_mq, const std::optional<at::Tensor>& grad_av,
    const std::optional<at::Tensor>& grad_aqt, const at::Tensor& v_heads, const at::Tensor& q_heads,
    const at::Tensor& v_full, const at::Tensor& q_full, const at::Tensor& v_mask, const at::Tensor& q_mask,
    const at::Tensor& a_v, const at::Tensor& a_qt, const at::Tensor& row_lse, const at::Tensor& col_lse,
    double scale) {
  const char* op = "_padded_coattention_backward";
  check_padded_coattention_inputs(v_heads, q_heads, v_full, q_full, v_mask, q_mask);
  c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
  const int64_t B = v_heads.size(0), H = v_heads.size(1), Tk = v_heads.size(2), Nk = q_heads.size(2);
  const int64_t T = v_mask.size(1), N = q_mask.size(1), D = v_full.size(2);
  check_shape(op, "grad_mv", grad_mv, {B, T, D}, v_full, false);
  check_shape(op, "grad_mq", grad_mq, {B, N, D}, v_full, false);
  check_shape(op, "a_v", a_v, {B, Tk, Nk}, v_heads);
  check_shape(op, "a_qt", a_qt, {B, Tk, Nk}, v_heads);
  const at::Tensor gmv = grad_mv.to(v_full.scalar_type()), gmq = grad_mq.to(v_full.scalar_type());
  // Gradients of the head-averaged maps (the kernel applies the heads' 1/H); the pad rows of
  // A_V and pad columns of A_Qt feed no output.
  at::Tensor g_v = at::empty({B, Tk, Nk}, a_v.options()), g_qt = at::empty({B, Tk, Nk}, a_v.options());
  g_v.narrow(1, T, Tk - T).zero_();
  g_qt.narrow(2, N, Nk - N).zero_();
  g_v.narrow(1, 0, T).copy_(matmul_fixed(gmv, q_full.transpose(1, 2)));   // dA_V[:T] = dM_V Q̃ᵀ
  g_qt.narrow(2, 0, N).copy_(matmul_fixed(v_full, gmq.transpose(1, 2)));  // dA_Q[:N]ᵀ = Ṽ dM_Qᵀ
  if (grad_av.has_value() && grad_av->defined()) g_v.add_(*grad_av);
  if (grad_aqt.has_value() && grad_aqt->defined()) g_qt.add_(*grad_aqt);
  at::Tensor dq_full = matmul_fixed(a_v.narrow(1, 0, T).transpose(1, 2), gmv);  // A_V[:T]ᵀ dM_V
  at::Tensor dv_full = matmul_fixed(a_qt.narrow(2, 0, N), gmq);                 // A_Q[:N]ᵀ dM_Q
  const at::Tensor vk = keys(v_mask, Tk), qk = keys(q_mask, Nk);
  std::vector<at::Tensor> dv, dq;
  const int64_t chunk = chunk_size(B, H * Tk * Nk);
  int64_t b0 = 0;
  do {  // at least once: B = 0 gives correctly shaped empty gradients
    const int64_t c = std::min(chunk, B - b0);
    const at::Tensor vh = v_heads.narrow(0, b0, c), qh = q_heads.narrow(0, b0, c);
    at::Tensor logits = matmul_fixed(vh, qh.transpose(-1, -2));
    at::Tensor dlogits = softmax_backward_op(logits, vk.narrow(0, b0, c), qk.narrow(0, b0, c),
                                             row_lse.narrow(0, b0, c), col_lse.narrow(0, b0, c),
                                             g_v.narrow(0, b0, c), g_qt.narrow(0, b0, c), scale, scale / H);
    dv.push_back(matmul_fixed(dlogits, qh));                   // d Ṽʰ = dL Q̃ʰ
    dq.push_back(matmul_fixed(dlogits.transpose(-1, -2), vh));  // d Q̃ʰ = dLᵀ Ṽʰ
    b0 += chunk;
  } while (b0 < B);
  at::Tensor dv_heads = join(dv), dq_heads = join(dq);
  return {dv_heads, dq_heads, dv_full, dq_full};
}

}  // namespace

TORCH_LIBRARY_IMPL(vgops, CompositeExplicitAutograd, m) {
  m.impl("padded_coattention", &padded_coattention);
  m.impl("_padded_coattention_backward", &padded_coattention_backward);
}

}  // namespace vgops
