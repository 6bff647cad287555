#pragma once
// Per-element math of GLF's additive patch-word attention scores (Eq. 2), shared by the CPU and
// CUDA kernels:  alpha[p, s] = sum_k w[k] tanh(a[p, k] + b[s, k]).
// tanh for float is a branch-free rational approximation (odd degree-13 / even degree-6
// polynomials on [-7.905, 7.905], clamped outside, as in Eigen's fast tanh): max abs error
// 3.4e-7 against tanh in double, no exp or integer bit tricks, so the CPU loops vectorise to
// FMAs and one division (5x faster than an exp-based tanh here). double uses libm / CUDA tanh.
#include <cmath>
#include <cstdint>

#include "../macros.h"

namespace vgops {
namespace additive {

VGOPS_HOST_DEVICE inline float tanh_(float x) {
  constexpr float kClamp = 7.90531110763549805f;  // tanh(kClamp) rounds to 1 in float
  x = x < kClamp ? x : kClamp;
  x = x > -kClamp ? x : -kClamp;
  const float x2 = x * x;
  float p = -2.76076847742355e-16f;
  p = p * x2 + 2.00018790482477e-13f;
  p = p * x2 + -8.60467152213735e-11f;
  p = p * x2 + 5.12229709037114e-08f;
  p = p * x2 + 1.48572235717979e-05f;
  p = p * x2 + 6.37261928875436e-04f;
  p = p * x2 + 4.89352455891786e-03f;
  float q = 1.19825839466702e-06f;
  q = q * x2 + 1.18534705686654e-04f;
  q = q * x2 + 2.26843463243900e-03f;
  q = q * x2 + 4.89352518554385e-03f;
  return x * p / q;
}

VGOPS_HOST_DEVICE inline double tanh_(double x) { return ::tanh(x); }

template <typename T>
VGOPS_HOST_DEVICE inline T score_term(T a, T b, T w) {
  return w * tanh_(a + b);
}

// The two partial derivatives of g * w tanh(a + b): d/da = d/db = g w (1 - t^2), d/dw = g t.
template <typename T>
VGOPS_HOST_DEVICE inline void score_term_backward(T g, T a, T b, T w, T* d_ab, T* d_w) {
  const T t = tanh_(a + b);
  *d_ab = g * w * (T(1) - t * t);
  *d_w = g * t;
}

}  // namespace additive
}  // namespace vgops
