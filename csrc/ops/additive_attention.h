#pragma once
// Per-element math of GLF's additive patch-word attention scores (Eq. 2), shared by the CPU and
// CUDA kernels:  alpha[p, s] = sum_k w[k] tanh(a[p, k] + b[s, k]).
// tanh is gates::tanh_ (a branch-free exp for float, so CPU loops vectorise; libm for double).
#include <cstdint>

#include "../macros.h"
#include "gates.h"

namespace vgops {
namespace additive {

template <typename T>
VGOPS_HOST_DEVICE inline T score_term(T a, T b, T w) {
  return w * gates::tanh_(a + b);
}

// The two partial derivatives of g * w tanh(a + b): d/da = d/db = g w (1 - t^2), d/dw = g t.
template <typename T>
VGOPS_HOST_DEVICE inline void score_term_backward(T g, T a, T b, T w, T* d_ab, T* d_w) {
  const T t = gates::tanh_(a + b);
  *d_ab = g * w * (T(1) - t * t);
  *d_w = g * t;
}

}  // namespace additive
}  // namespace vgops
