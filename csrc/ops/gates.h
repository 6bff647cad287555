#pragma once
// Per-element math of the gating epilogues, shared by the CPU and CUDA kernels:
//   cross_gate       FSM Eq. 2   out = sigmoid(g_c) * x_s + sigmoid(g_s) * x_c
//   self_guided      FSM Eq. 3   out = sigmoid(h_gate) * h_value + residual
//   calibration_gate IA-Net Eq. 7-12 (epilogue after the GEMM)
//                                out = z * x + (1 - z) * tanh(r),  z = sigmoid(z_pre)
// T is the compute type: float for half/bfloat16/float inputs, double for double.
//
// exp for float is a branch-free Cephes-style polynomial (max rel. error 8e-8 on the clamped
// range, measured against exp in double) instead of std::exp, so CPU loops over it vectorise (libm's expf does not) and the GPU
// runs exactly the same arithmetic. Inputs are clamped to [-87.3, 88.3]: exp underflows to
// ~1.2e-38 instead of a denormal and never overflows to inf. double uses the libm/CUDA exp.
#include <cmath>
#include <cstdint>
#include <cstring>

#include "../macros.h"

namespace vgops {
namespace gates {

VGOPS_HOST_DEVICE VGOPS_FORCE_INLINE float int_bits_to_float(int32_t i) {
#if defined(__CUDA_ARCH__)
  return __int_as_float(i);
#else
  float f;
  std::memcpy(&f, &i, sizeof f);
  return f;
#endif
}

VGOPS_HOST_DEVICE VGOPS_FORCE_INLINE float exp_(float x) {
  x = x < 88.3f ? x : 88.3f;
  x = x > -87.3f ? x : -87.3f;
  // n = round(x / ln 2) by the 1.5 * 2^23 shifter: adding it rounds to an integer in the FPU's
  // round-to-nearest mode, subtracting it gives that integer back. Branch-free, so loops over
  // exp_ vectorise (a floor written with a compare became a branch per element: 6x slower).
  constexpr float kShifter = 12582912.0f;
  const float n = (x * 1.44269504088896341f + kShifter) - kShifter;
  const float r = x - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float er = p * r * r + r + 1.0f;
  // 2^n from the exponent bits; n lies in [-126, 127] after the clamp.
  return er * int_bits_to_float((static_cast<int32_t>(n) + 127) << 23);
}

VGOPS_HOST_DEVICE VGOPS_FORCE_INLINE double exp_(double x) { return ::exp(x); }

template <typename T>
VGOPS_HOST_DEVICE VGOPS_FORCE_INLINE T sigmoid(T x) {
  return T(1) / (T(1) + exp_(-x));
}

// tanh(x) = 1 - 2 / (exp(2x) + 1): exact limits +-1, absolute error ~1e-7 in float.
VGOPS_HOST_DEVICE VGOPS_FORCE_INLINE float tanh_(float x) { return 1.0f - 2.0f / (exp_(2.0f * x) + 1.0f); }
VGOPS_HOST_DEVICE VGOPS_FORCE_INLINE double tanh_(double x) { return ::tanh(x); }

// ---- cross_gate (FSM Eq. 2) ----------------------------------------------------------------

template <typename T>
VGOPS_HOST_DEVICE VGOPS_FORCE_INLINE T cross_gate(T x_s, T x_c, T g_s, T g_c) {
  return sigmoid(g_c) * x_s + sigmoid(g_s) * x_c;
}

// Gradients of cross_gate scaled by the upstream gradient g.
template <typename T>
VGOPS_HOST_DEVICE VGOPS_FORCE_INLINE void cross_gate_backward(T g, T x_s, T x_c, T g_s, T g_c, T* d_x_s, T* d_x_c,
                                                  T* d_g_s, T* d_g_c) {
  const T s_s = sigmoid(g_s), s_c = sigmoid(g_c);
  *d_x_s = g * s_c;
  *d_x_c = g * s_s;
  *d_g_s = g * x_c * s_s * (T(1) - s_s);
  *d_g_c = g * x_s * s_c * (T(1) - s_c);
}

// ---- self_guided (FSM Eq. 3) ---------------------------------------------------------------

template <typename T>
VGOPS_HOST_DEVICE VGOPS_FORCE_INLINE T self_guided(T h_gate, T h_value, T residual) {
  return sigmoid(h_gate) * h_value + residual;
}

// Gradients with respect to h_gate and h_value (that of residual is g itself).
template <typename T>
VGOPS_HOST_DEVICE VGOPS_FORCE_INLINE void self_guided_backward(T g, T h_gate, T h_value, T* d_gate, T* d_value) {
  const T s = sigmoid(h_gate);
  *d_gate = g * h_value * s * (T(1) - s);
  *d_value = g * s;
}

// ---- calibration_gate epilogue (IA-Net Eq. 7-12) ---------------------------------------------

template <typename T>
VGOPS_HOST_DEVICE VGOPS_FORCE_INLINE T calibration_blend(T x, T r, T z_pre) {
  const T t = tanh_(r), z = sigmoid(z_pre);
  return t + z * (x - t);  // = z * x + (1 - z) * tanh(r)
}

// Gradients of calibration_blend with respect to x, r and z_pre, scaled by g.
template <typename T>
VGOPS_HOST_DEVICE VGOPS_FORCE_INLINE void calibration_blend_backward(T g, T x, T r, T z_pre, T* d_x, T* d_r, T* d_z_pre) {
  const T t = tanh_(r), z = sigmoid(z_pre);
  *d_x = g * z;
  *d_r = g * (T(1) - z) * (T(1) - t * t);
  *d_z_pre = g * (x - t) * z * (T(1) - z);
}

}  // namespace gates
}  // namespace vgops
