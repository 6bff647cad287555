#pragma once
// Per-element math of the key-value attentions behind FSM's gated correlation (dual_correlation,
// text_correlation): out_i = sum_j softmax_j(q_i . k_j * scale) k_j over the valid keys j (the
// keys are also the values; no projections). Shared by the CPU and CUDA kernels.
// A query whose keys are all masked has output 0 and log-sum-exp -inf.
#include <cmath>
#include <limits>

#include "../macros.h"
#include "gates.h"

namespace vgops {
namespace kv_attention {

template <typename T>
VGOPS_HOST_DEVICE VGOPS_FORCE_INLINE T neg_inf() {
  return -std::numeric_limits<T>::infinity();
}

// One step of the online softmax: folds score s into the running max m and sum l; returns the
// factor c by which earlier accumulations must be rescaled and sets *p to the new weight.
template <typename T>
VGOPS_HOST_DEVICE VGOPS_FORCE_INLINE T online_softmax_step(T s, T* m, T* l, T* p) {
  const T m_new = s > *m ? s : *m;
  const T c = gates::exp_(*m - m_new);  // exp(-inf) = 0 on the first step
  *p = gates::exp_(s - m_new);
  *l = *l * c + *p;
  *m = m_new;
  return c;
}

// log-sum-exp of a row from its max m and sum l (-inf when no key was valid: l == 0).
template <typename T>
VGOPS_HOST_DEVICE VGOPS_FORCE_INLINE T row_lse(T m, T l) {
  return l > T(0) ? m + ::log(l) : neg_inf<T>();
}

// Softmax weight recomputed from a score and the row's log-sum-exp (0 for an all-masked row).
template <typename T>
VGOPS_HOST_DEVICE VGOPS_FORCE_INLINE T weight_from_lse(T s, T lse) {
  const bool live = lse > neg_inf<T>();
  const T p = gates::exp_(s - (live ? lse : T(0)));
  return live ? p : T(0);
}

// d score of one (query, key) pair: p * (d p - D_i), where dp = dO_i . k_j and D_i = dO_i . O_i.
template <typename T>
VGOPS_HOST_DEVICE VGOPS_FORCE_INLINE T score_grad(T p, T dp, T d_row) {
  return p * (dp - d_row);
}

}  // namespace kv_attention
}  // namespace vgops
