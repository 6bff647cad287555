// CPU kernels of the fused co-attention softmaxes (forward: row and column log-sum-exps and the
// head-averaged maps; backward: the logits' gradient through both softmaxes). The per-element
// math (exp, log-sum-exp, softmax gradient) is in ../padded_coattention.h, shared with the CUDA
// kernels; here it runs tile by tile: one task per sample, each head's [Tk, Nk] logits tile read
// row-major so the loops over the Nk words vectorise (column statistics are kept as Nk-long
// running vectors), 2 exps per logit in each direction's pass, the float loops also built for
// AVX2 + FMA (cpu_clones.h). Every output element is computed by one task in a fixed order:
// results are identical for any thread count.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "../checks.h"
#include "../padded_coattention.h"
#include "cpu_clones.h"

namespace vgops {
namespace coattention_cpu {

using coattention::lse_from;
using coattention::softmax_grad;
using gates::exp_;

constexpr float kNegInf = -INFINITY;

// Scratch of one task: an Nk row, the column statistics and one [Tk, Nk] tile of column exps.
template <typename T>
struct Scratch {
  std::vector<T> row, colmax, colsum, tile, tile2, dots;
  Scratch(int64_t Tk, int64_t Nk) : row(Nk), colmax(Nk), colsum(Nk), tile(Tk * Nk), tile2(Tk * Nk), dots(Tk) {}
};

// One sample, all heads: x [H, Tk, Nk]; writes rl [H, Tk] (row lse), cl [H, Nk] (column lse),
// av / aqt [Tk, Nk] (head means of the row / column softmaxes, accumulated in acc_v / acc_q).
template <typename T, typename S, typename L>
__attribute__((always_inline)) inline void forward_sample(const S* __restrict__ x, const bool* __restrict__ vk,
                                                          const bool* __restrict__ qk, int64_t H, int64_t Tk,
                                                          int64_t Nk, L* __restrict__ rl, L* __restrict__ cl,
                                                          T* __restrict__ acc_v, T* __restrict__ acc_q, T sc,
                                                          Scratch<T>& scr) {
  T *row = scr.row.data(), *cmax = scr.colmax.data(), *csum = scr.colsum.data(), *e2 = scr.tile.data();
  const T inv_h = T(1) / T(H);
  std::fill(acc_v, acc_v + Tk * Nk, T(0));
  std::fill(acc_q, acc_q + Tk * Nk, T(0));
  for (int64_t h = 0; h < H; ++h) {
    const S* xh = x + h * Tk * Nk;
    std::fill(cmax, cmax + Nk, T(kNegInf));
    std::fill(csum, csum + Nk, T(0));
    for (int64_t i = 0; i < Tk; ++i) {
      if (!vk[i]) continue;
      const S* xi = xh + i * Nk;
#pragma omp simd
      for (int64_t j = 0; j < Nk; ++j) cmax[j] = (T(xi[j]) * sc) > cmax[j] ? (T(xi[j]) * sc) : cmax[j];
    }
    for (int64_t i = 0; i < Tk; ++i) {
      const S* xi = xh + i * Nk;
      T m = T(kNegInf);
#pragma omp simd reduction(max : m)
      for (int64_t j = 0; j < Nk; ++j) m = (qk[j] && (T(xi[j]) * sc) > m) ? (T(xi[j]) * sc) : m;
      T s = 0;
#pragma omp simd reduction(+ : s)
      for (int64_t j = 0; j < Nk; ++j) {
        row[j] = qk[j] ? exp_((T(xi[j]) * sc) - m) : T(0);
        s += row[j];
      }
      rl[h * Tk + i] = L(lse_from(m, s));
      const T scale_v = m > T(kNegInf) ? inv_h / s : T(0);
      T* av = acc_v + i * Nk;
#pragma omp simd
      for (int64_t j = 0; j < Nk; ++j) av[j] += row[j] * scale_v;
      T* ei = e2 + i * Nk;
      if (vk[i]) {
#pragma omp simd
        for (int64_t j = 0; j < Nk; ++j) {
          ei[j] = exp_((T(xi[j]) * sc) - cmax[j]);
          csum[j] += ei[j];
        }
      } else {
        std::fill(ei, ei + Nk, T(0));
      }
    }
    for (int64_t j = 0; j < Nk; ++j) {
      cl[h * Nk + j] = L(lse_from(cmax[j], csum[j]));
      row[j] = cmax[j] > T(kNegInf) ? inv_h / csum[j] : T(0);  // column scales
    }
    for (int64_t i = 0; i < Tk; ++i) {
      T *aq = acc_q + i * Nk, *ei = e2 + i * Nk;
#pragma omp simd
      for (int64_t j = 0; j < Nk; ++j) aq[j] += ei[j] * row[j];
    }
  }
}

// One sample, all heads: dx [H, Tk, Nk] from gv, gq [Tk, Nk] (dA_V / H, dA_Qt / H) and the lses.
template <typename T, typename S, typename L>
__attribute__((always_inline)) inline void backward_sample(const S* __restrict__ x, const bool* __restrict__ vk,
                                                           const bool* __restrict__ qk, const L* __restrict__ rl,
                                                           const L* __restrict__ cl, const S* __restrict__ gv,
                                                           const S* __restrict__ gq, int64_t H, int64_t Tk,
                                                           int64_t Nk, T sc, T out_scale, S* __restrict__ dx,
                                                           Scratch<T>& scr) {
  T *coldot = scr.colsum.data(), *clh = scr.colmax.data(), *p = scr.tile.data(), *q = scr.tile2.data();
  T* rowdot = scr.dots.data();
  for (int64_t h = 0; h < H; ++h) {
    const S* xh = x + h * Tk * Nk;
    std::fill(coldot, coldot + Nk, T(0));
    for (int64_t j = 0; j < Nk; ++j) clh[j] = T(cl[h * Nk + j]);
    for (int64_t i = 0; i < Tk; ++i) {
      const S *xi = xh + i * Nk, *gvi = gv + i * Nk, *gqi = gq + i * Nk;
      T *pi = p + i * Nk, *qi = q + i * Nk;
      const T r = T(rl[h * Tk + i]);
      T dot = 0;
#pragma omp simd reduction(+ : dot)
      for (int64_t j = 0; j < Nk; ++j) {
        pi[j] = qk[j] ? exp_((T(xi[j]) * sc) - r) : T(0);
        dot += pi[j] * T(gvi[j]);
      }
      rowdot[i] = dot;
      if (vk[i]) {
#pragma omp simd
        for (int64_t j = 0; j < Nk; ++j) {
          qi[j] = exp_((T(xi[j]) * sc) - clh[j]);
          coldot[j] += qi[j] * T(gqi[j]);
        }
      } else {
        std::fill(qi, qi + Nk, T(0));
      }
    }
    S* dxh = dx + h * Tk * Nk;
    for (int64_t i = 0; i < Tk; ++i) {
      const S *gvi = gv + i * Nk, *gqi = gq + i * Nk;
      const T *pi = p + i * Nk, *qi = q + i * Nk;
      S* di = dxh + i * Nk;
      const T rd = rowdot[i];
#pragma omp simd
      for (int64_t j = 0; j < Nk; ++j)
        di[j] = S(out_scale * (softmax_grad(pi[j], T(gvi[j]), rd) + softmax_grad(qi[j], T(gqi[j]), coldot[j])));
    }
  }
}

VGOPS_CPU_CLONES void forward_sample_float(const float* x, const bool* vk, const bool* qk, int64_t H, int64_t Tk,
                                           int64_t Nk, float* rl, float* cl, float* acc_v, float* acc_q, float sc,
                                           Scratch<float>& scr) {
  forward_sample<float, float, float>(x, vk, qk, H, Tk, Nk, rl, cl, acc_v, acc_q, sc, scr);
}

VGOPS_CPU_CLONES void backward_sample_float(const float* x, const bool* vk, const bool* qk, const float* rl,
                                            const float* cl, const float* gv, const float* gq, int64_t H,
                                            int64_t Tk, int64_t Nk, float sc, float out_scale, float* dx,
                                            Scratch<float>& scr) {
  backward_sample<float, float, float>(x, vk, qk, rl, cl, gv, gq, H, Tk, Nk, sc, out_scale, dx, scr);
}

// Per-sample entry points: the float overloads run the cloned (AVX2 / baseline) builds.
template <typename T, typename S, typename L>
void forward_any(const S* x, const bool* vk, const bool* qk, int64_t H, int64_t Tk, int64_t Nk, L* rl, L* cl,
                 T* acc_v, T* acc_q, T sc, Scratch<T>& scr) {
  forward_sample<T, S, L>(x, vk, qk, H, Tk, Nk, rl, cl, acc_v, acc_q, sc, scr);
}
inline void forward_any(const float* x, const bool* vk, const bool* qk, int64_t H, int64_t Tk, int64_t Nk, float* rl,
                        float* cl, float* acc_v, float* acc_q, float sc, Scratch<float>& scr) {
  forward_sample_float(x, vk, qk, H, Tk, Nk, rl, cl, acc_v, acc_q, sc, scr);
}

template <typename T, typename S, typename L>
void backward_any(const S* x, const bool* vk, const bool* qk, const L* rl, const L* cl, const S* gv, const S* gq,
                  int64_t H, int64_t Tk, int64_t Nk, T sc, T out_scale, S* dx, Scratch<T>& scr) {
  backward_sample<T, S, L>(x, vk, qk, rl, cl, gv, gq, H, Tk, Nk, sc, out_scale, dx, scr);
}
inline void backward_any(const float* x, const bool* vk, const bool* qk, const float* rl, const float* cl,
                         const float* gv, const float* gq, int64_t H, int64_t Tk, int64_t Nk, float sc,
                         float out_scale, float* dx, Scratch<float>& scr) {
  backward_sample_float(x, vk, qk, rl, cl, gv, gq, H, Tk, Nk, sc, out_scale, dx, scr);
}

// One sample's forward; half/bfloat16 maps are accumulated in float scratch, then rounded once.
template <typename scalar_t, typename T, typename L>
void forward_one(const scalar_t* x, const bool* vk, const bool* qk, int64_t H, int64_t Tk, int64_t Nk, L* rl, L* cl,
                 scalar_t* av, scalar_t* aq, T sc, Scratch<T>& scr, std::vector<T>& acc) {
  if constexpr (std::is_same_v<T, scalar_t>) {
    forward_any(x, vk, qk, H, Tk, Nk, rl, cl, av, aq, sc, scr);
  } else {
    acc.resize(2 * Tk * Nk);
    forward_any(x, vk, qk, H, Tk, Nk, rl, cl, acc.data(), acc.data() + Tk * Nk, sc, scr);
    for (int64_t e = 0; e < Tk * Nk; ++e) {
      av[e] = static_cast<scalar_t>(acc[e]);
      aq[e] = static_cast<scalar_t>(acc[Tk * Nk + e]);
    }
  }
}

}  // namespace coattention_cpu

namespace {

using coattention_cpu::Scratch;

int64_t grain(int64_t per_task) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(per_task, 1)); }

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> coattention_softmax_cpu(const at::Tensor& logits_in,
                                                                                   const at::Tensor& vk_in,
                                                                                   const at::Tensor& qk_in, double scale) {
  check_coattention_softmax_inputs("_coattention_softmax", logits_in, vk_in, qk_in);
  const int64_t B = logits_in.size(0), H = logits_in.size(1), Tk = logits_in.size(2), Nk = logits_in.size(3);
  at::Tensor a_v, a_qt, row_lse, col_lse;
  std::tie(a_v, a_qt, row_lse, col_lse) = coattention_softmax_outputs(logits_in);
  if (B == 0 || Tk == 0 || Nk == 0) return {a_v, a_qt, row_lse, col_lse};
  const at::Tensor logits = logits_in.contiguous(), vk = vk_in.contiguous(), qk = qk_in.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "coattention_softmax_cpu", [&] {
    using T = at::opmath_type<scalar_t>;
    using L = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    const scalar_t* x = logits.const_data_ptr<scalar_t>();
    const bool *v = vk.const_data_ptr<bool>(), *q = qk.const_data_ptr<bool>();
    L *rl = row_lse.mutable_data_ptr<L>(), *cl = col_lse.mutable_data_ptr<L>();
    scalar_t *av = a_v.mutable_data_ptr<scalar_t>(), *aq = a_qt.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, B, grain(H * Tk * Nk), [&](int64_t lo, int64_t hi) {
      Scratch<T> scr(Tk, Nk);
      std::vector<T> acc;
      for (int64_t b = lo; b < hi; ++b)
        coattention_cpu::forward_one(x + b * H * Tk * Nk, v + b * Tk, q + b * Nk, H, Tk, Nk, rl + b * H * Tk,
                                     cl + b * H * Nk, av + b * Tk * Nk, aq + b * Tk * Nk, T(scale), scr, acc);
    });
  });
  return {a_v, a_qt, row_lse, col_lse};
}

at::Tensor coattention_softmax_backward_cpu(const at::Tensor& logits_in, const at::Tensor& vk_in,
                                            const at::Tensor& qk_in, const at::Tensor& row_lse_in,
                                            const at::Tensor& col_lse_in, const at::Tensor& g_v_in,
                                            const at::Tensor& g_qt_in, double scale, double grad_scale) {
  check_coattention_softmax_backward_inputs(logits_in, vk_in, qk_in, row_lse_in, col_lse_in, g_v_in, g_qt_in);
  const int64_t B = logits_in.size(0), H = logits_in.size(1), Tk = logits_in.size(2), Nk = logits_in.size(3);
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
    at::parallel_for(0, B, grain(H * Tk * Nk), [&](int64_t lo, int64_t hi) {
      Scratch<T> scr(Tk, Nk);
      for (int64_t b = lo; b < hi; ++b) {
        const int64_t o = b * Tk * Nk;
        coattention_cpu::backward_any(x + b * H * Tk * Nk, v + b * Tk, q + b * Nk, rl + b * H * Tk, cl + b * H * Nk,
                                      gv + o, gq + o, H, Tk, Nk, T(scale), T(grad_scale), dx + b * H * Tk * Nk, scr);
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
