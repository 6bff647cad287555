#pragma once
// Per-row and per-column math of IA-Net's padded co-attention (Eq. 1-6), shared by the CPU and
// CUDA kernels. logits L[h] is one head's unscaled [Tk, Nk] = Ṽʰ Q̃ʰᵀ (row-major), multiplied by
// `scale` as it is read (no separate pass); vk [Tk] / qk [Nk] say which clips / words (pads
// included, always true) are valid keys.
//   A_V[i, j]  = mean_h softmax over valid j of L[h][i, :]  -> row log-sum-exps row_lse[h][i]
//   A_Qt[i, j] = mean_h softmax over valid i of L[h][:, j]  -> column log-sum-exps col_lse[h][j]
// (A_Qt is A_Q transposed, kept in the logits' layout.) S is the storage type, T the compute type.
#include <cmath>
#include <cstdint>

#include "../macros.h"
#include "gates.h"

namespace vgops {
namespace coattention {

VGOPS_HOST_DEVICE inline float log_(float x) { return ::logf(x); }
VGOPS_HOST_DEVICE inline double log_(double x) { return ::log(x); }

template <typename T>
VGOPS_HOST_DEVICE inline T prob(T x, T lse, bool valid) {
  return valid ? gates::exp_(x - lse) : T(0);
}

// A softmax's log-sum-exp from its running max m and sum s of exp(x - m); 0 when no entry was
// valid (m = -inf), as masked_lse.
template <typename T>
VGOPS_HOST_DEVICE inline T lse_from(T m, T s) {
  return m > T(-INFINITY) ? m + log_(s) : T(0);
}

// The gradient of a softmax's input from its output p, the output's gradient g and
// dot = sum over the softmax's entries of p * g.
template <typename T>
VGOPS_HOST_DEVICE inline T softmax_grad(T p, T g, T dot) {
  return p * (g - dot);
}

// log-sum-exp of x[0], x[stride], ... x[(n-1) stride] over the entries whose valid[.] is true;
// 0 when none is (every probability is then masked to 0, so the value is never used).
template <typename T, typename S>
VGOPS_HOST_DEVICE inline T masked_lse(const S* x, int64_t n, int64_t stride, const bool* valid, T scale) {
  T m = -INFINITY;
  for (int64_t i = 0; i < n; ++i)
    if (valid[i]) m = T(x[i * stride]) * scale > m ? T(x[i * stride]) * scale : m;
  if (!(m > T(-INFINITY))) return T(0);
  T s = 0;
  for (int64_t i = 0; i < n; ++i)
    if (valid[i]) s += gates::exp_(T(x[i * stride]) * scale - m);
  return lse_from(m, s);
}

// Row i of both head-averaged maps, given every head's row and column log-sum-exps:
//   av[j] = mean_h prob(L[h][i, j], row_lse[h][i], qk[j]),  aqt[j] = mean_h prob(L[h][i, j], col_lse[h][j], vk[i]).
// head_stride: elements between heads in logits; lse_rows / lse_cols: between heads in row_lse / col_lse.
template <typename T, typename S, typename L>
VGOPS_HOST_DEVICE inline void maps_row(const S* logits, int64_t H, int64_t head_stride, int64_t Nk, bool vk_i,
                                       const bool* qk, const L* row_lse, int64_t lse_rows, const L* col_lse,
                                       int64_t lse_cols, T scale, S* av, S* aqt) {
  const T inv_h = T(1) / T(H);
  for (int64_t j = 0; j < Nk; ++j) {
    T acc_v = 0, acc_q = 0;
    for (int64_t h = 0; h < H; ++h) {
      const T x = T(logits[h * head_stride + j]) * scale;
      acc_v += prob(x, T(row_lse[h * lse_rows]), qk[j]);
      acc_q += prob(x, T(col_lse[h * lse_cols + j]), vk_i);
    }
    av[j] = S(acc_v * inv_h);
    aqt[j] = S(acc_q * inv_h);
  }
}

// Backward, column part: coldot[j] = sum over valid i of Q[i, j] gq[i, j] for one head, where
// Q[i, j] = prob(L[i, j] * scale, col_lse[j], vk[i]) and gq = dA_Qt.
template <typename T, typename S, typename G>
VGOPS_HOST_DEVICE inline T coldot(const S* logits_col, const G* gq_col, int64_t Tk, int64_t Nk, T col_lse,
                                  const bool* vk, T scale) {
  T acc = 0;
  for (int64_t i = 0; i < Tk; ++i) acc += prob(T(logits_col[i * Nk]) * scale, col_lse, vk[i]) * T(gq_col[i * Nk]);
  return acc;
}

// Backward, one row of one head: the gradient of the scaled logits through both softmaxes,
//   dL[j] = P[j] (gv[j] - sum_j' P[j'] gv[j']) + Q[j] (gq[j] - coldot[j]),
// with P the row softmax, Q the column softmax (already reduced into coldot), gv = dA_V, gq = dA_Qt;
// written times out_scale (scale / H: the heads' mean and the chain rule through the scaling).
template <typename T, typename S, typename G, typename L>
VGOPS_HOST_DEVICE inline void grad_row(const S* logits_row, const G* gv, const G* gq, int64_t Nk, T row_lse,
                                       const L* col_lse, const L* coldots, bool vk_i, const bool* qk, T scale,
                                       T out_scale, S* dlogits) {
  T rowdot = 0;
  for (int64_t j = 0; j < Nk; ++j) rowdot += prob(T(logits_row[j]) * scale, row_lse, qk[j]) * T(gv[j]);
  for (int64_t j = 0; j < Nk; ++j) {
    const T x = T(logits_row[j]) * scale;
    const T p = prob(x, row_lse, qk[j]), q = prob(x, T(col_lse[j]), vk_i);
    dlogits[j] = S(out_scale * (softmax_grad(p, T(gv[j]), rowdot) + softmax_grad(q, T(gq[j]), T(coldots[j]))));
  }
}

}  // namespace coattention
}  // namespace vgops
