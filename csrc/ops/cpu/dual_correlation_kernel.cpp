// CPU kernels of kv_attention (FSM gated correlation) and its backward; shared math in
// ../dual_correlation.h. Flash-style in memory: per (group, tile of kTile query rows) the scores
// live in a [kTile, Nk] buffer of the thread (GEMMs through ATen/BLAS on views, softmax by
// branch-free loops), never a [G, Nq, Nk] tensor; the backward recomputes the weights from the
// saved per-row log-sum-exp. The backward runs one thread per group and visits its query tiles
// in order, so d k sums in a fixed order: deterministic.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/library.h>

#include "../checks.h"
#include "../dual_correlation.h"

namespace vgops {
namespace {

constexpr int64_t kTile = 128;

// The GEMMs run on at::parallel_for's worker threads, which do not inherit the caller's dispatch
// state: keep them below autograd (the op's backward is its own op) and out of autocast (the op
// runs in its inputs' dtype).
struct PlainGemmGuard {
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  c10::impl::ExcludeDispatchKeyGuard no_autocast{c10::autocast_dispatch_keyset};
};

at::Tensor mask_or_ones(const std::optional<at::Tensor>& mask, const at::Tensor& k) {
  if (mask.has_value() && mask->defined()) return mask->contiguous();
  return at::ones({k.size(0), k.size(1)}, k.options().dtype(at::kBool));
}

// Turns the raw scores s[0..n) of one query row into softmax weights over the valid keys (in
// place) and returns the row's log-sum-exp (-inf and all-zero weights when no key is valid).
template <typename T>
T softmax_row(T* s, const bool* valid, int64_t n, T scale) {
  const T ninf = kv_attention::neg_inf<T>();
  T mx = ninf;
  for (int64_t j = 0; j < n; ++j) {
    const T v = valid[j] ? s[j] * scale : ninf;
    s[j] = v;
    mx = v > mx ? v : mx;
  }
  const T base = mx > ninf ? mx : T(0);
  T sum = 0;
  for (int64_t j = 0; j < n; ++j) {
    const T p = gates::exp_(s[j] - base);
    s[j] = valid[j] ? p : T(0);
    sum += s[j];
  }
  const T inv = sum > T(0) ? T(1) / sum : T(0);
  for (int64_t j = 0; j < n; ++j) s[j] *= inv;
  return kv_attention::row_lse(mx, sum);
}

std::tuple<at::Tensor, at::Tensor> kv_attention_cpu(const at::Tensor& q_in, const at::Tensor& k_in,
                                                    const std::optional<at::Tensor>& mask_in, double scale_d) {
  check_kv_attention_inputs(q_in, k_in, mask_in);
  const int64_t G = q_in.size(0), Nq = q_in.size(1), Nk = k_in.size(1), d = q_in.size(2);
  at::Tensor out = at::zeros({G, Nq, d}, q_in.options());
  at::Tensor lse = at::empty({G, Nq}, q_in.options());
  if (G * Nq == 0) return {out, lse};
  at::Tensor q = q_in.contiguous(), k = k_in.contiguous(), mask = mask_or_ones(mask_in, k);
  const int64_t tiles = (Nq + kTile - 1) / kTile;
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "kv_attention_cpu", [&] {
    using T = scalar_t;
    const T scale = static_cast<T>(scale_d);
    const bool* pm = mask.const_data_ptr<bool>();
    T* plse = lse.mutable_data_ptr<T>();
    at::parallel_for(0, G * tiles, 1, [&](int64_t lo, int64_t hi) {
      PlainGemmGuard guard;
      at::Tensor S = at::empty({kTile, Nk}, q.options());
      for (int64_t task = lo; task < hi; ++task) {
        const int64_t g = task / tiles, i0 = (task % tiles) * kTile, bq = std::min(kTile, Nq - i0);
        at::Tensor Kg = k.select(0, g), St = S.narrow(0, 0, bq), Ot = out.select(0, g).narrow(0, i0, bq);
        at::mm_out(St, q.select(0, g).narrow(0, i0, bq), Kg.t());
        T* ps = St.data_ptr<T>();
        for (int64_t r = 0; r < bq; ++r) plse[g * Nq + i0 + r] = softmax_row<T>(ps + r * Nk, pm + g * Nk, Nk, scale);
        at::mm_out(Ot, St, Kg);
      }
    });
  });
  return {out, lse};
}

std::tuple<at::Tensor, at::Tensor> kv_attention_backward_cpu(const at::Tensor& grad_in, const at::Tensor& q_in,
                                                             const at::Tensor& k_in,
                                                             const std::optional<at::Tensor>& mask_in,
                                                             const at::Tensor& out_in, const at::Tensor& lse_in,
                                                             double scale_d) {
  check_kv_attention_inputs(q_in, k_in, mask_in);
  const int64_t G = q_in.size(0), Nq = q_in.size(1), Nk = k_in.size(1), d = q_in.size(2);
  TORCH_CHECK_VALUE(grad_in.sizes() == q_in.sizes() && out_in.sizes() == q_in.sizes() && lse_in.dim() == 2 &&
                        lse_in.size(0) == G && lse_in.size(1) == Nq,
                    "_kv_attention_backward: grad_out and out must be [G, Nq, d] and lse [G, Nq], got ",
                    grad_in.sizes(), ", ", out_in.sizes(), " and ", lse_in.sizes());
  at::Tensor dq = at::zeros({G, Nq, d}, q_in.options()), dk = at::zeros({G, Nk, d}, k_in.options());
  if (G * Nq == 0 || Nk == 0) return {dq, dk};
  auto dt = q_in.scalar_type();
  at::Tensor q = q_in.contiguous(), k = k_in.contiguous(), mask = mask_or_ones(mask_in, k);
  at::Tensor grad = grad_in.contiguous().to(dt), out = out_in.contiguous().to(dt), lse = lse_in.contiguous().to(dt);
  const int64_t tiles = (Nq + kTile - 1) / kTile;
  AT_DISPATCH_FLOATING_TYPES(dt, "kv_attention_backward_cpu", [&] {
    using T = scalar_t;
    const T scale = static_cast<T>(scale_d);
    const bool* pm = mask.const_data_ptr<bool>();
    const T *plse = lse.const_data_ptr<T>(), *pg = grad.const_data_ptr<T>(), *po = out.const_data_ptr<T>();
    at::parallel_for(0, G, 1, [&](int64_t lo, int64_t hi) {
      PlainGemmGuard guard;
      at::Tensor P = at::empty({kTile, Nk}, q.options()), dS = at::empty({kTile, Nk}, q.options());
      for (int64_t g = lo; g < hi; ++g) {
        at::Tensor Kg = k.select(0, g), dKg = dk.select(0, g);
        const bool* valid = pm + g * Nk;
        for (int64_t t = 0; t < tiles; ++t) {
          const int64_t i0 = t * kTile, bq = std::min(kTile, Nq - i0);
          at::Tensor Qt = q.select(0, g).narrow(0, i0, bq), dOt = grad.select(0, g).narrow(0, i0, bq);
          at::Tensor Pt = P.narrow(0, 0, bq), dSt = dS.narrow(0, 0, bq);
          at::mm_out(Pt, Qt, Kg.t());   // scores
          at::mm_out(dSt, dOt, Kg.t());  // d P = dO V^T with V = K
          T *pp = Pt.data_ptr<T>(), *pds = dSt.data_ptr<T>();
          for (int64_t r = 0; r < bq; ++r) {
            const int64_t row = g * Nq + i0 + r;
            const T* go = pg + row * d;
            const T* oo = po + row * d;
            T d_row = 0;  // D_i = dO_i . O_i
            for (int64_t c = 0; c < d; ++c) d_row += go[c] * oo[c];
            const T l = plse[row];
            T *s = pp + r * Nk, *ds = pds + r * Nk;
            for (int64_t j = 0; j < Nk; ++j) {
              const T p = valid[j] ? kv_attention::weight_from_lse<T>(s[j] * scale, l) : T(0);
              s[j] = p;
              ds[j] = kv_attention::score_grad<T>(p, ds[j], d_row) * scale;
            }
          }
          at::Tensor dQt = dq.select(0, g).narrow(0, i0, bq);
          at::mm_out(dQt, dSt, Kg);                                // d Q = scale dS K
          dKg.addmm_(dSt.t(), Qt);                                 // d K (keys)   += scale dS^T Q
          dKg.addmm_(Pt.t(), dOt);                                 // d K (values) += P^T dO
        }
      }
    });
  });
  return {dq, dk};
}

}  // namespace

TORCH_LIBRARY_IMPL(vgops, CPU, m) {
  m.impl("kv_attention", &kv_attention_cpu);
  m.impl("_kv_attention_backward", &kv_attention_backward_cpu);
}

}  // namespace vgops
