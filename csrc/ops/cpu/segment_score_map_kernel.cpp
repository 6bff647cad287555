// CPU kernels of the segment_score_map family and their backward passes; the per-element math is
// in ../segment_score_map.h.
//
// Every op works from per-sample prefix sums over clips (O(B * Ns * Nv) memory at most) and
// visits each segment (s, e) once per pass: no [B, Ns, Nv, Nv] tensor ever exists. Inner loops
// run over e (contiguous) and are branch-free so they vectorise; sums over e use a fixed order
// of 16 partial sums, sums over s and tokens run in index order, and prefix sums are accumulated
// in double: results are deterministic whatever the thread count. Forward passes are parallel
// over (sample, row s); backward passes, which accumulate column sums over s, over samples (each
// task builds its sample's prefix sums itself: one parallel region per call). Grain sizes keep
// small problems on the calling thread.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <limits>
#include <vector>

#include "../checks.h"
#include "../segment_score_map.h"

// The token-loss inner loops evaluate one exp per (token, segment); on x86-64 they are compiled
// for AVX-512 / AVX2 / baseline and chosen at load time (no -march flags in the build). No FMA
// contraction happens under -std=c++17 (-ffp-contract=off), so every clone gives the same bits.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define VGOPS_CPU_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define VGOPS_CPU_CLONES
#endif

namespace vgops {
namespace ssm_cpu {

// Sum of x[0..n) in a fixed order with 16 independent partial sums (vectorisable without
// reassociation; the order does not depend on the compiler or on threads).
template <typename T>
inline T ordered_sum(const T* x, int64_t n) {
  T part[16] = {};
  int64_t j = 0;
  for (; j + 16 <= n; j += 16)
    for (int l = 0; l < 16; ++l) part[l] += x[j + l];
  for (; j < n; ++j) part[j % 16] += x[j];
  T total = 0;
  for (int l = 0; l < 16; ++l) total += part[l];
  return total;
}

// acc[t] += fn(c[t] - c0), t < n.
template <int FN, typename T>
__attribute__((always_inline)) inline void accumulate_fn_impl(T* __restrict__ acc, const T* __restrict__ c, T c0,
                                                              int64_t n) {
  for (int64_t t = 0; t < n; ++t) acc[t] += ssm::token_fn<FN, T>(c[t] - c0);
}

// With f = fn(c[t] - c0), d = fn'(c[t] - c0): dw[t] += f; u[t] = w[t] * d; col[t] += u[t].
template <int FN, typename T>
__attribute__((always_inline)) inline void accumulate_fn_grad_impl(T* __restrict__ dw, T* __restrict__ u,
                                                                   T* __restrict__ col, const T* __restrict__ w,
                                                                   const T* __restrict__ c, T c0, int64_t n) {
  for (int64_t t = 0; t < n; ++t) {
    T f, d;
    ssm::token_fn_and_grad<FN, T>(c[t] - c0, &f, &d);
    dw[t] += f;
    const T v = w[t] * d;
    u[t] = v;
    col[t] += v;
  }
}

// Multi-versioned float entry points (the hot loops); double calls the templates directly.
VGOPS_CPU_CLONES void accumulate_sigmoid_f(float* acc, const float* c, float c0, int64_t n) {
  accumulate_fn_impl<ssm::kSigmoid, float>(acc, c, c0, n);
}
VGOPS_CPU_CLONES void accumulate_identity_f(float* acc, const float* c, float c0, int64_t n) {
  accumulate_fn_impl<ssm::kIdentity, float>(acc, c, c0, n);
}
VGOPS_CPU_CLONES void accumulate_sigmoid_grad_f(float* dw, float* u, float* col, const float* w, const float* c,
                                                float c0, int64_t n) {
  accumulate_fn_grad_impl<ssm::kSigmoid, float>(dw, u, col, w, c, c0, n);
}
VGOPS_CPU_CLONES void accumulate_identity_grad_f(float* dw, float* u, float* col, const float* w, const float* c,
                                                 float c0, int64_t n) {
  accumulate_fn_grad_impl<ssm::kIdentity, float>(dw, u, col, w, c, c0, n);
}

template <int FN, typename T>
inline void accumulate_fn(T* acc, const T* c, T c0, int64_t n) {
  if constexpr (std::is_same<T, float>::value) {
    if (FN == ssm::kSigmoid) accumulate_sigmoid_f(acc, c, c0, n);
    else accumulate_identity_f(acc, c, c0, n);
  } else {
    accumulate_fn_impl<FN, T>(acc, c, c0, n);
  }
}

template <int FN, typename T>
inline void accumulate_fn_grad(T* dw, T* u, T* col, const T* w, const T* c, T c0, int64_t n) {
  if constexpr (std::is_same<T, float>::value) {
    if (FN == ssm::kSigmoid) accumulate_sigmoid_grad_f(dw, u, col, w, c, c0, n);
    else accumulate_identity_grad_f(dw, u, col, w, c, c0, n);
  } else {
    accumulate_fn_grad_impl<FN, T>(dw, u, col, w, c, c0, n);
  }
}

template <typename T>
at::ScalarType scalar_type_of() {
  return std::is_same<T, double>::value ? at::kDouble : at::kFloat;
}

// Items per task of at::parallel_for for items of `work` elementary operations each: about
// 32768 operations per task (ATen's GRAIN_SIZE), so small problems run inline on the calling
// thread (a parallel region costs far more than the work on a busy machine).
inline int64_t grain_for(int64_t work) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(work, 1)); }

// Clip data of sample b: mf[b, j] = clip_mask (0/1) and cnt[b, k] = valid clips before k.
template <typename T>
inline void clip_prefix_one(const bool* cm, int64_t b, int64_t Nv, T* mf, T* cnt) {
  const bool* m = cm + b * Nv;
  T* c = cnt + b * (Nv + 1);
  int64_t run = 0;
  c[0] = 0;
  for (int64_t j = 0; j < Nv; ++j) {
    mf[b * Nv + j] = m[j] ? T(1) : T(0);
    run += m[j] ? 1 : 0;
    c[j + 1] = static_cast<T>(run);
  }
}

// X[k] = sum over valid j < k of x[j] (accumulated in double, stored in T). x may be strided by
// one (a row of a contiguous tensor) and of any floating type.
template <typename scalar_t, typename T>
inline void masked_prefix(const scalar_t* x, const bool* m, int64_t Nv, T* X) {
  double run = 0;
  X[0] = 0;
  for (int64_t j = 0; j < Nv; ++j) {
    run += m[j] ? static_cast<double>(x[j]) : 0.0;
    X[j + 1] = static_cast<T>(run);
  }
}

// Suffix of a gradient with respect to prefix entries, into per-clip gradients:
// out[j] = m[j] * scale * sum_{k > j} dX[k], k <= Nv.
template <typename T>
inline void prefix_grad_to_clips(const double* dX, const bool* m, int64_t Nv, T scale, T* out) {
  double run = 0;
  for (int64_t j = Nv - 1; j >= 0; --j) {
    run += dX[j + 1];
    out[j] = m[j] ? static_cast<T>(run) * scale : T(0);
  }
}

int64_t count_true(const bool* m, int64_t n) {
  int64_t c = 0;
  for (int64_t i = 0; i < n; ++i) c += m[i] ? 1 : 0;
  return c;
}

// ---------------------------------------------------------------------------------------------
// segment_score_map

// Per sample: A = prefix of the per-clip sums over valid tokens, M = prefix of the per-clip
// minima over valid tokens, ns = number of valid tokens; argmin = first valid token reaching the
// minimum (-1 where there is none).
template <typename scalar_t, typename T>
void score_prefix_one(const scalar_t* p, const bool* tm, const bool* cm, int64_t b, int64_t Ns, int64_t Nv, T* A,
                      T* M, T* ns, int64_t* argmin, T* mf, T* cnt) {
    clip_prefix_one<T>(cm, b, Nv, mf, cnt);
    std::vector<double> colsum(Nv);
    std::vector<T> mn(Nv);
    std::vector<int64_t> am(Nv);
    {
      std::fill(colsum.begin(), colsum.end(), 0.0);
      std::fill(mn.begin(), mn.end(), std::numeric_limits<T>::infinity());
      std::fill(am.begin(), am.end(), int64_t(-1));
      for (int64_t i = 0; i < Ns; ++i) {
        if (!tm[b * Ns + i]) continue;
        const scalar_t* row = p + (b * Ns + i) * Nv;
        for (int64_t j = 0; j < Nv; ++j) {
          const T v = static_cast<T>(row[j]);
          colsum[j] += static_cast<double>(v);
          const bool less = v < mn[j] || am[j] < 0;  // first valid token reaching the minimum
          mn[j] = less ? v : mn[j];
          am[j] = less ? i : am[j];
        }
      }
      ns[b] = static_cast<T>(count_true(tm + b * Ns, Ns));
      const bool* m = cm + b * Nv;
      T* a = A + b * (Nv + 1);
      T* mm = M + b * (Nv + 1);
      double ra = 0, rm = 0;
      a[0] = 0;
      mm[0] = 0;
      for (int64_t j = 0; j < Nv; ++j) {
        ra += m[j] ? colsum[j] : 0.0;
        rm += m[j] ? static_cast<double>(mn[j]) : 0.0;
        a[j + 1] = static_cast<T>(ra);
        mm[j + 1] = static_cast<T>(rm);
      }
      if (argmin != nullptr) std::copy(am.begin(), am.end(), argmin + b * Nv);
    }
}

at::Tensor segment_score_map_cpu(const at::Tensor& p_in, const at::Tensor& tm_in, const at::Tensor& cm_in) {
  const char* op = "segment_score_map";
  check_segment_score_map_inputs(op, p_in, nullptr, &tm_in, cm_in);
  const int64_t B = p_in.size(0), Ns = p_in.size(1), Nv = p_in.size(2);
  at::Tensor out = at::empty({B, Nv, Nv}, p_in.options());
  if (out.numel() == 0) return out;
  at::Tensor p = p_in.contiguous(), tm = tm_in.contiguous(), cm = cm_in.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.scalar_type(), "segment_score_map_cpu", [&] {
    using T = at::opmath_type<scalar_t>;
    const auto topt = p.options().dtype(scalar_type_of<T>());
    at::Tensor A = at::empty({B, Nv + 1}, topt), M = at::empty({B, Nv + 1}, topt);
    at::Tensor cnt = at::empty({B, Nv + 1}, topt), mf = at::empty({B, Nv}, topt), ns = at::empty({B}, topt);
    T *pA = A.mutable_data_ptr<T>(), *pM = M.mutable_data_ptr<T>(), *pc = cnt.mutable_data_ptr<T>();
    T *pmf = mf.mutable_data_ptr<T>(), *pns = ns.mutable_data_ptr<T>();
    const bool* cmp = cm.const_data_ptr<bool>();
    at::parallel_for(0, B, grain_for(Ns * Nv), [&](int64_t lo, int64_t hi) {
      for (int64_t b = lo; b < hi; ++b)
        score_prefix_one<scalar_t, T>(p.const_data_ptr<scalar_t>(), tm.const_data_ptr<bool>(), cmp, b, Ns, Nv, pA,
                                      pM, pns, nullptr, pmf, pc);
    });
    scalar_t* po = out.mutable_data_ptr<scalar_t>();
    const scalar_t ninf = -std::numeric_limits<scalar_t>::infinity();
    at::parallel_for(0, B * Nv, grain_for(4 * Nv), [&](int64_t lo, int64_t hi) {
      for (int64_t row = lo; row < hi; ++row) {
        const int64_t b = row / Nv, s = row % Nv;
        scalar_t* o = po + row * Nv;
        const T* a = pA + b * (Nv + 1);
        const T* mm = pM + b * (Nv + 1);
        const T* c = pc + b * (Nv + 1);
        const T* m = pmf + b * Nv;
        for (int64_t e = 0; e < s; ++e) o[e] = ninf;
        if (m[s] == T(0)) {
          for (int64_t e = s; e < Nv; ++e) o[e] = ninf;
          continue;
        }
        const T as = a[s], ms = mm[s], cs = c[s], mt = mm[Nv], ct = c[Nv], inv_ns = T(1) / pns[b];
        for (int64_t e = s; e < Nv; ++e) {
          const T v = ssm::score<T>(as, a[e + 1], ms, mm[e + 1], mt, cs, c[e + 1], ct, inv_ns);
          o[e] = m[e] != T(0) ? static_cast<scalar_t>(v) : ninf;
        }
      }
    });
  });
  return out;
}

at::Tensor segment_score_map_backward_cpu(const at::Tensor& grad_in, const at::Tensor& p_in, const at::Tensor& tm_in,
                                          const at::Tensor& cm_in) {
  const char* op = "segment_score_map";
  check_segment_score_map_inputs(op, p_in, nullptr, &tm_in, cm_in);
  const int64_t B = p_in.size(0), Ns = p_in.size(1), Nv = p_in.size(2);
  TORCH_CHECK_VALUE(grad_in.dim() == 3 && grad_in.size(0) == B && grad_in.size(1) == Nv && grad_in.size(2) == Nv,
                    op, ": grad must be [B, Nv, Nv], got ", grad_in.sizes());
  at::Tensor gp = at::zeros_like(p_in, at::MemoryFormat::Contiguous);
  if (gp.numel() == 0) return gp;
  at::Tensor p = p_in.contiguous(), tm = tm_in.contiguous(), cm = cm_in.contiguous();
  at::Tensor grad = grad_in.contiguous().to(p.scalar_type());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.scalar_type(), "segment_score_map_backward_cpu", [&] {
    using T = at::opmath_type<scalar_t>;
    const auto topt = p.options().dtype(scalar_type_of<T>());
    at::Tensor A = at::empty({B, Nv + 1}, topt), M = at::empty({B, Nv + 1}, topt);
    at::Tensor cnt = at::empty({B, Nv + 1}, topt), mf = at::empty({B, Nv}, topt), ns = at::empty({B}, topt);
    at::Tensor am = at::empty({B, Nv}, p.options().dtype(at::kLong));
    T *pA = A.mutable_data_ptr<T>(), *pM = M.mutable_data_ptr<T>(), *pc = cnt.mutable_data_ptr<T>();
    T *pmf = mf.mutable_data_ptr<T>(), *pns = ns.mutable_data_ptr<T>();
    int64_t* pam = am.mutable_data_ptr<int64_t>();
    const bool* cmp = cm.const_data_ptr<bool>();
    const bool* tmp = tm.const_data_ptr<bool>();
    const scalar_t* pg = grad.const_data_ptr<scalar_t>();
    scalar_t* pgp = gp.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, B, grain_for(Ns * Nv + 8 * Nv * Nv), [&](int64_t lo, int64_t hi) {
      std::vector<T> bin(Nv), bout(Nv), col_in(Nv), col_out(Nv), din(Nv), dout(Nv);
      std::vector<double> dA(Nv + 1), dM(Nv + 1);
      for (int64_t b = lo; b < hi; ++b) {
        score_prefix_one<scalar_t, T>(p.const_data_ptr<scalar_t>(), tmp, cmp, b, Ns, Nv, pA, pM, pns, pam, pmf, pc);
        const T* c = pc + b * (Nv + 1);
        const T* m = pmf + b * Nv;
        const T ct = c[Nv], inv_ns = T(1) / pns[b];
        std::fill(col_in.begin(), col_in.end(), T(0));
        std::fill(col_out.begin(), col_out.end(), T(0));
        std::fill(dA.begin(), dA.end(), 0.0);
        std::fill(dM.begin(), dM.end(), 0.0);
        double tot_out = 0;
        for (int64_t s = 0; s < Nv; ++s) {
          if (m[s] == T(0)) continue;
          const scalar_t* g = pg + (b * Nv + s) * Nv;
          const T cs = c[s];
          const int64_t n = Nv - s;
          T* ci = col_in.data() + s;
          T* co = col_out.data() + s;
          const T* me = m + s;
          const T* ce1 = c + s + 1;
          for (int64_t t = 0; t < n; ++t) {
            const T gv = me[t] != T(0) ? static_cast<T>(g[s + t]) : T(0);
            const T vin = ssm::mean_in_coef<T>(gv, cs, ce1[t]) * inv_ns;  // d SC / d A[e + 1]
            const T vout = ssm::mean_out_coef<T>(gv, cs, ce1[t], ct);      // -d SC / d M[Nv]
            bin[t] = vin;
            bout[t] = vout;
            ci[t] += vin;
            co[t] += vout;
          }
          const T rin = ordered_sum(bin.data(), n), rout = ordered_sum(bout.data(), n);
          dA[s] -= rin;   // inside sum = A[e + 1] - A[s]
          dM[s] -= rout;  // SC = ... - (M[Nv] - M[e + 1] + M[s]) / n_out
          tot_out += rout;
        }
        for (int64_t e = 0; e < Nv; ++e) {
          dA[e + 1] += col_in[e];
          dM[e + 1] += col_out[e];
        }
        dM[Nv] -= tot_out;
        const bool* mb = cmp + b * Nv;
        prefix_grad_to_clips<T>(dA.data(), mb, Nv, T(1), din.data());
        prefix_grad_to_clips<T>(dM.data(), mb, Nv, T(1), dout.data());
        const int64_t* amb = pam + b * Nv;
        for (int64_t i = 0; i < Ns; ++i) {
          scalar_t* o = pgp + (b * Ns + i) * Nv;
          const bool valid = tmp[b * Ns + i];
          for (int64_t j = 0; j < Nv; ++j)
            o[j] = static_cast<scalar_t>((valid ? din[j] : T(0)) + (amb[j] == i ? dout[j] : T(0)));
        }
      }
    });
  });
  return gp;
}

// ---------------------------------------------------------------------------------------------
// segment_weighted_token_loss

// C[b, i, k] = prefix over valid clips of P[b, i, :]; mf, cnt as in clip_prefix; ns[b].
template <typename scalar_t, typename T>
void token_prefix_one(const scalar_t* p, const bool* tm, const bool* cm, int64_t b, int64_t Ns, int64_t Nv, T* C,
                      T* mf, T* cnt, T* ns) {
  clip_prefix_one<T>(cm, b, Nv, mf, cnt);
  for (int64_t r = b * Ns; r < (b + 1) * Ns; ++r)
    masked_prefix<scalar_t, T>(p + r * Nv, cm + b * Nv, Nv, C + r * (Nv + 1));
  ns[b] = static_cast<T>(count_true(tm + b * Ns, Ns));
}

template <typename scalar_t, typename T>
void token_prefix(const scalar_t* p, const bool* tm, const bool* cm, int64_t B, int64_t Ns, int64_t Nv, T* C,
                  T* mf, T* cnt, T* ns) {
  at::parallel_for(0, B, grain_for(Ns * Nv), [&](int64_t lo, int64_t hi) {
    for (int64_t b = lo; b < hi; ++b) token_prefix_one<scalar_t, T>(p, tm, cm, b, Ns, Nv, C, mf, cnt, ns);
  });
}

template <int FN, typename scalar_t, typename T>
void token_loss_forward(const scalar_t* pw, const bool* tm, const T* C, const T* mf, const T* ns, int64_t B,
                        int64_t Ns, int64_t Nv, scalar_t* out) {
  std::vector<double> rows(B * Nv, 0.0);
  at::parallel_for(0, B * Nv, grain_for(16 * Ns * Nv), [&](int64_t lo, int64_t hi) {
    std::vector<T> acc(Nv);
    for (int64_t row = lo; row < hi; ++row) {
      const int64_t b = row / Nv, s = row % Nv;
      const T* m = mf + b * Nv;
      if (m[s] == T(0)) continue;
      const int64_t n = Nv - s;
      std::fill(acc.begin(), acc.begin() + n, T(0));
      for (int64_t i = 0; i < Ns; ++i) {
        if (!tm[b * Ns + i]) continue;
        const T* c = C + (b * Ns + i) * (Nv + 1);
        accumulate_fn<FN, T>(acc.data(), c + s + 1, c[s], n);
      }
      const scalar_t* w = pw + row * Nv + s;
      const T* me = m + s;
      for (int64_t t = 0; t < n; ++t) acc[t] = me[t] != T(0) ? static_cast<T>(w[t]) * acc[t] : T(0);
      rows[row] = static_cast<double>(ordered_sum(acc.data(), n));
    }
  });
  for (int64_t b = 0; b < B; ++b) {
    double total = 0;
    for (int64_t s = 0; s < Nv; ++s) total += rows[b * Nv + s];
    out[b] = static_cast<scalar_t>(static_cast<T>(total) / ns[b]);
  }
}

template <int FN, typename scalar_t, typename T>
void token_loss_backward(const scalar_t* pg, const scalar_t* pp, const scalar_t* pw, const bool* tm, const bool* cm,
                         T* C, T* mf, T* cnt, T* ns, int64_t B, int64_t Ns, int64_t Nv, scalar_t* gp, scalar_t* gw) {
  at::parallel_for(0, B, grain_for(16 * Ns * Nv * Nv), [&](int64_t lo, int64_t hi) {
    std::vector<T> wv(Nv), dw(Nv), u(Nv), col(Ns * Nv), gclip(Nv);
    std::vector<double> dC(Ns * (Nv + 1));
    for (int64_t b = lo; b < hi; ++b) {
      token_prefix_one<scalar_t, T>(pp, tm, cm, b, Ns, Nv, C, mf, cnt, ns);
      const T g = static_cast<T>(pg[b]) / ns[b];
      const T* m = mf + b * Nv;
      std::fill(col.begin(), col.end(), T(0));
      std::fill(dC.begin(), dC.end(), 0.0);
      for (int64_t s = 0; s < Nv; ++s) {
        if (m[s] == T(0)) continue;
        const int64_t n = Nv - s;
        const scalar_t* w = pw + (b * Nv + s) * Nv + s;
        const T* me = m + s;
        for (int64_t t = 0; t < n; ++t) {
          wv[t] = me[t] != T(0) ? static_cast<T>(w[t]) : T(0);
          dw[t] = T(0);
        }
        for (int64_t i = 0; i < Ns; ++i) {
          if (!tm[b * Ns + i]) continue;
          const T* c = C + (b * Ns + i) * (Nv + 1);
          accumulate_fn_grad<FN, T>(dw.data(), u.data(), col.data() + i * Nv + s, wv.data(), c + s + 1, c[s], n);
          dC[i * (Nv + 1) + s] -= static_cast<double>(ordered_sum(u.data(), n));
        }
        scalar_t* o = gw + (b * Nv + s) * Nv + s;
        for (int64_t t = 0; t < n; ++t) o[t] = me[t] != T(0) ? static_cast<scalar_t>(g * dw[t]) : scalar_t(0);
      }
      for (int64_t i = 0; i < Ns; ++i) {
        if (!tm[b * Ns + i]) continue;
        double* d = dC.data() + i * (Nv + 1);
        const T* ci = col.data() + i * Nv;
        for (int64_t e = 0; e < Nv; ++e) d[e + 1] += ci[e];
        prefix_grad_to_clips<T>(d, cm + b * Nv, Nv, g, gclip.data());
        scalar_t* o = gp + (b * Ns + i) * Nv;
        for (int64_t j = 0; j < Nv; ++j) o[j] = static_cast<scalar_t>(gclip[j]);
      }
    }
  });
}

at::Tensor segment_weighted_token_loss_cpu(const at::Tensor& p_in, const at::Tensor& w_in, const at::Tensor& tm_in,
                                           const at::Tensor& cm_in, c10::string_view fn) {
  const char* op = "segment_weighted_token_loss";
  check_segment_score_map_inputs(op, p_in, &w_in, &tm_in, cm_in);
  const int fn_id = check_token_fn(op, fn);
  const int64_t B = p_in.size(0), Ns = p_in.size(1), Nv = p_in.size(2);
  at::Tensor out = at::zeros({B}, p_in.options());
  if (B == 0 || Nv == 0) return out;  // no segment: every sum is empty (Ns == 0 is 0 / 0 below)
  at::Tensor p = p_in.contiguous(), w = w_in.contiguous(), tm = tm_in.contiguous(), cm = cm_in.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.scalar_type(), "segment_weighted_token_loss_cpu", [&] {
    using T = at::opmath_type<scalar_t>;
    const auto topt = p.options().dtype(scalar_type_of<T>());
    at::Tensor C = at::empty({B, Ns, Nv + 1}, topt), cnt = at::empty({B, Nv + 1}, topt);
    at::Tensor mf = at::empty({B, Nv}, topt), ns = at::empty({B}, topt);
    const bool* tmp = tm.const_data_ptr<bool>();
    token_prefix<scalar_t, T>(p.const_data_ptr<scalar_t>(), tmp, cm.const_data_ptr<bool>(), B, Ns, Nv,
                              C.mutable_data_ptr<T>(), mf.mutable_data_ptr<T>(), cnt.mutable_data_ptr<T>(),
                              ns.mutable_data_ptr<T>());
    auto run = [&](auto fn_tag) {
      token_loss_forward<decltype(fn_tag)::value, scalar_t, T>(w.const_data_ptr<scalar_t>(), tmp, C.const_data_ptr<T>(),
                                                               mf.const_data_ptr<T>(), ns.const_data_ptr<T>(), B, Ns,
                                                               Nv, out.mutable_data_ptr<scalar_t>());
    };
    if (fn_id == ssm::kSigmoid) run(std::integral_constant<int, ssm::kSigmoid>{});
    else run(std::integral_constant<int, ssm::kIdentity>{});
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> segment_weighted_token_loss_backward_cpu(const at::Tensor& grad_in,
                                                                            const at::Tensor& p_in,
                                                                            const at::Tensor& w_in,
                                                                            const at::Tensor& tm_in,
                                                                            const at::Tensor& cm_in,
                                                                            c10::string_view fn) {
  const char* op = "segment_weighted_token_loss";
  check_segment_score_map_inputs(op, p_in, &w_in, &tm_in, cm_in);
  const int fn_id = check_token_fn(op, fn);
  const int64_t B = p_in.size(0), Ns = p_in.size(1), Nv = p_in.size(2);
  TORCH_CHECK_VALUE(grad_in.dim() == 1 && grad_in.size(0) == B, op, ": grad must be [B], got ", grad_in.sizes());
  at::Tensor gp = at::zeros_like(p_in, at::MemoryFormat::Contiguous);
  at::Tensor gw = at::zeros_like(w_in, at::MemoryFormat::Contiguous);
  if (B == 0 || Nv == 0) return {gp, gw};
  at::Tensor p = p_in.contiguous(), w = w_in.contiguous(), tm = tm_in.contiguous(), cm = cm_in.contiguous();
  at::Tensor grad = grad_in.contiguous().to(p.scalar_type());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.scalar_type(), "segment_weighted_token_loss_backward_cpu", [&] {
    using T = at::opmath_type<scalar_t>;
    const auto topt = p.options().dtype(scalar_type_of<T>());
    at::Tensor C = at::empty({B, Ns, Nv + 1}, topt), cnt = at::empty({B, Nv + 1}, topt);
    at::Tensor mf = at::empty({B, Nv}, topt), ns = at::empty({B}, topt);
    const bool* tmp = tm.const_data_ptr<bool>();
    const bool* cmp = cm.const_data_ptr<bool>();
    auto run = [&](auto fn_tag) {
      token_loss_backward<decltype(fn_tag)::value, scalar_t, T>(
          grad.const_data_ptr<scalar_t>(), p.const_data_ptr<scalar_t>(), w.const_data_ptr<scalar_t>(), tmp, cmp,
          C.mutable_data_ptr<T>(), mf.mutable_data_ptr<T>(), cnt.mutable_data_ptr<T>(), ns.mutable_data_ptr<T>(), B,
          Ns, Nv, gp.mutable_data_ptr<scalar_t>(), gw.mutable_data_ptr<scalar_t>());
    };
    if (fn_id == ssm::kSigmoid) run(std::integral_constant<int, ssm::kSigmoid>{});
    else run(std::integral_constant<int, ssm::kIdentity>{});
  });
  return {gp, gw};
}

// ---------------------------------------------------------------------------------------------
// segment_weighted_outside_mean / segment_weighted_inside_mean

template <typename scalar_t, typename T>
inline void mean_prefix_one(const scalar_t* x, const bool* cm, int64_t b, int64_t Nv, T* X, T* mf, T* cnt) {
  clip_prefix_one<T>(cm, b, Nv, mf, cnt);
  masked_prefix<scalar_t, T>(x + b * Nv, cm + b * Nv, Nv, X + b * (Nv + 1));
}

template <typename scalar_t, typename T>
void mean_prefix(const scalar_t* x, const bool* cm, int64_t B, int64_t Nv, T* X, T* mf, T* cnt) {
  at::parallel_for(0, B, grain_for(4 * Nv), [&](int64_t lo, int64_t hi) {
    for (int64_t b = lo; b < hi; ++b) mean_prefix_one<scalar_t, T>(x, cm, b, Nv, X, mf, cnt);
  });
}

template <bool OUTSIDE>
at::Tensor weighted_mean_cpu(const at::Tensor& x_in, const at::Tensor& w_in, const at::Tensor& cm_in) {
  const char* op = OUTSIDE ? "segment_weighted_outside_mean" : "segment_weighted_inside_mean";
  check_segment_score_map_inputs(op, x_in, &w_in, nullptr, cm_in);
  const int64_t B = x_in.size(0), Nv = x_in.size(1);
  at::Tensor out = at::zeros({B}, x_in.options());
  if (B == 0 || Nv == 0) return out;
  at::Tensor x = x_in.contiguous(), w = w_in.contiguous(), cm = cm_in.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "segment_weighted_mean_cpu", [&] {
    using T = at::opmath_type<scalar_t>;
    const auto topt = x.options().dtype(scalar_type_of<T>());
    at::Tensor X = at::empty({B, Nv + 1}, topt), cnt = at::empty({B, Nv + 1}, topt), mf = at::empty({B, Nv}, topt);
    T *pX = X.mutable_data_ptr<T>(), *pc = cnt.mutable_data_ptr<T>(), *pmf = mf.mutable_data_ptr<T>();
    mean_prefix<scalar_t, T>(x.const_data_ptr<scalar_t>(), cm.const_data_ptr<bool>(), B, Nv, pX, pmf, pc);
    const scalar_t* pw = w.const_data_ptr<scalar_t>();
    std::vector<double> rows(B * Nv, 0.0);
    at::parallel_for(0, B * Nv, grain_for(4 * Nv), [&](int64_t lo, int64_t hi) {
      std::vector<T> buf(Nv);
      for (int64_t row = lo; row < hi; ++row) {
        const int64_t b = row / Nv, s = row % Nv;
        const T* m = pmf + b * Nv;
        if (m[s] == T(0)) continue;
        const T* xp = pX + b * (Nv + 1);
        const T* c = pc + b * (Nv + 1);
        const T xs = xp[s], cs = c[s], xt = xp[Nv], ct = c[Nv];
        const int64_t n = Nv - s;
        const scalar_t* wr = pw + row * Nv + s;
        const T* me = m + s;
        const T* xe1 = xp + s + 1;
        const T* ce1 = c + s + 1;
        for (int64_t t = 0; t < n; ++t) {
          const T mean = OUTSIDE ? ssm::mean_out<T>(xs, xe1[t], xt, cs, ce1[t], ct) : ssm::mean_in<T>(xs, xe1[t], cs, ce1[t]);
          buf[t] = me[t] != T(0) ? static_cast<T>(wr[t]) * mean : T(0);
        }
        rows[row] = static_cast<double>(ordered_sum(buf.data(), n));
      }
    });
    scalar_t* po = out.mutable_data_ptr<scalar_t>();
    for (int64_t b = 0; b < B; ++b) {
      double total = 0;
      for (int64_t s = 0; s < Nv; ++s) total += rows[b * Nv + s];
      po[b] = static_cast<scalar_t>(total);
    }
  });
  return out;
}

template <bool OUTSIDE>
std::tuple<at::Tensor, at::Tensor> weighted_mean_backward_cpu(const at::Tensor& grad_in, const at::Tensor& x_in,
                                                              const at::Tensor& w_in, const at::Tensor& cm_in) {
  const char* op = OUTSIDE ? "segment_weighted_outside_mean" : "segment_weighted_inside_mean";
  check_segment_score_map_inputs(op, x_in, &w_in, nullptr, cm_in);
  const int64_t B = x_in.size(0), Nv = x_in.size(1);
  TORCH_CHECK_VALUE(grad_in.dim() == 1 && grad_in.size(0) == B, op, ": grad must be [B], got ", grad_in.sizes());
  at::Tensor gx = at::zeros_like(x_in, at::MemoryFormat::Contiguous);
  at::Tensor gw = at::zeros_like(w_in, at::MemoryFormat::Contiguous);
  if (B == 0 || Nv == 0) return {gx, gw};
  at::Tensor x = x_in.contiguous(), w = w_in.contiguous(), cm = cm_in.contiguous();
  at::Tensor grad = grad_in.contiguous().to(x.scalar_type());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "segment_weighted_mean_backward_cpu", [&] {
    using T = at::opmath_type<scalar_t>;
    const auto topt = x.options().dtype(scalar_type_of<T>());
    at::Tensor X = at::empty({B, Nv + 1}, topt), cnt = at::empty({B, Nv + 1}, topt), mf = at::empty({B, Nv}, topt);
    T *pX = X.mutable_data_ptr<T>(), *pc = cnt.mutable_data_ptr<T>(), *pmf = mf.mutable_data_ptr<T>();
    const bool* cmp = cm.const_data_ptr<bool>();
    const scalar_t* pw = w.const_data_ptr<scalar_t>();
    const scalar_t* pg = grad.const_data_ptr<scalar_t>();
    scalar_t* pgx = gx.mutable_data_ptr<scalar_t>();
    scalar_t* pgw = gw.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, B, grain_for(8 * Nv * Nv), [&](int64_t lo, int64_t hi) {
      std::vector<T> buf(Nv), col(Nv), gclip(Nv);
      std::vector<double> dX(Nv + 1);
      for (int64_t b = lo; b < hi; ++b) {
        mean_prefix_one<scalar_t, T>(x.const_data_ptr<scalar_t>(), cmp, b, Nv, pX, pmf, pc);
        const T g = static_cast<T>(pg[b]);
        const T* m = pmf + b * Nv;
        const T* xp = pX + b * (Nv + 1);
        const T* c = pc + b * (Nv + 1);
        const T xt = xp[Nv], ct = c[Nv];
        std::fill(col.begin(), col.end(), T(0));
        std::fill(dX.begin(), dX.end(), 0.0);
        double total = 0;
        for (int64_t s = 0; s < Nv; ++s) {
          if (m[s] == T(0)) continue;
          const T xs = xp[s], cs = c[s];
          const int64_t n = Nv - s;
          const scalar_t* wr = pw + (b * Nv + s) * Nv + s;
          scalar_t* gwr = pgw + (b * Nv + s) * Nv + s;
          const T* me = m + s;
          const T* xe1 = xp + s + 1;
          const T* ce1 = c + s + 1;
          T* cl = col.data() + s;
          for (int64_t t = 0; t < n; ++t) {
            const bool valid = me[t] != T(0);
            const T wt = valid ? static_cast<T>(wr[t]) : T(0);
            const T mean = OUTSIDE ? ssm::mean_out<T>(xs, xe1[t], xt, cs, ce1[t], ct) : ssm::mean_in<T>(xs, xe1[t], cs, ce1[t]);
            gwr[t] = valid ? static_cast<scalar_t>(g * mean) : scalar_t(0);
            const T k = OUTSIDE ? ssm::mean_out_coef<T>(wt, cs, ce1[t], ct) : ssm::mean_in_coef<T>(wt, cs, ce1[t]);
            buf[t] = k;
            cl[t] += k;
          }
          const double r = static_cast<double>(ordered_sum(buf.data(), n));
          // inside: X[e + 1] - X[s]; outside: X[Nv] - X[e + 1] + X[s].
          dX[s] += OUTSIDE ? r : -r;
          total += r;
        }
        for (int64_t e = 0; e < Nv; ++e) dX[e + 1] += OUTSIDE ? -static_cast<double>(col[e]) : static_cast<double>(col[e]);
        if (OUTSIDE) dX[Nv] += total;
        prefix_grad_to_clips<T>(dX.data(), cmp + b * Nv, Nv, g, gclip.data());
        scalar_t* o = pgx + b * Nv;
        for (int64_t j = 0; j < Nv; ++j) o[j] = static_cast<scalar_t>(gclip[j]);
      }
    });
  });
  return {gx, gw};
}

}  // namespace ssm_cpu

TORCH_LIBRARY_IMPL(vgops, CPU, m) {
  m.impl("segment_score_map", &ssm_cpu::segment_score_map_cpu);
  m.impl("_segment_score_map_backward", &ssm_cpu::segment_score_map_backward_cpu);
  m.impl("segment_weighted_token_loss", &ssm_cpu::segment_weighted_token_loss_cpu);
  m.impl("_segment_weighted_token_loss_backward", &ssm_cpu::segment_weighted_token_loss_backward_cpu);
  m.impl("segment_weighted_outside_mean", &ssm_cpu::weighted_mean_cpu<true>);
  m.impl("_segment_weighted_outside_mean_backward", &ssm_cpu::weighted_mean_backward_cpu<true>);
  m.impl("segment_weighted_inside_mean", &ssm_cpu::weighted_mean_cpu<false>);
  m.impl("_segment_weighted_inside_mean_backward", &ssm_cpu::weighted_mean_backward_cpu<false>);
}

}  // namespace vgops
