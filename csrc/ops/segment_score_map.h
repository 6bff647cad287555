#pragma once
// Per-element math of the segment-score-map family (FSAN Eq. 7-12), shared by the CPU and CUDA
// kernels: the per-token function fn and its derivative, and the inside / outside means of a
// segment [s, e] read off prefix sums.
//
// Prefix arrays of one sample have Nv + 1 entries: X[k] = sum of m[j] * x[j] over j < k and
// cnt[k] = number of valid clips j < k (m is the clip mask, 0 or 1). For a segment [s, e]:
//   n_in  = cnt[e + 1] - cnt[s]            valid clips inside  (>= 1 when s and e are valid)
//   n_out = cnt[Nv] - n_in                 valid clips outside (may be 0)
//   mean_in  = (X[e + 1] - X[s]) / n_in
//   mean_out = (X[Nv] - X[e + 1] + X[s]) / n_out, and 0 when n_out == 0 (the segment covers every
//              valid clip; FSAN's outside term vanishes).
// Divisions are unconditional (by 1 where the count is 0) so CPU loops over them vectorise.
// T is the compute type: float for half/bfloat16/float inputs, double for double.
#include <cmath>
#include <cstdint>
#include <cstring>

#include "../macros.h"

namespace vgops {
namespace ssm {

// fn of segment_weighted_token_loss, chosen at compile time so inner loops have no branch.
enum Fn : int { kIdentity = 0, kSigmoid = 1 };

// exp(x). float: a branch-free Cephes-style polynomial (range reduction by ln 2, degree-6
// polynomial, 2^n built from its bits; max relative error ~2 ulp on [-87.3, 88.3], inputs
// clamped to that range) so CPU loops vectorise without -ffast-math, and the GPU evaluates the
// same formula. double: the libm/CUDA exp (the float64 path is for accuracy, not speed).
template <typename T>
VGOPS_HOST_DEVICE inline T exp_(T x) {
  return ::exp(x);
}

template <>
VGOPS_HOST_DEVICE inline float exp_<float>(float x) {
  x = x < 88.3762626647949f ? x : 88.3762626647949f;
  x = x > -87.3365478515625f ? x : -87.3365478515625f;
  // n = round(x / ln 2) by the 1.5 * 2^23 trick (exact for |x / ln 2| < 2^22, no rounding mode
  // intrinsics needed; GCC keeps the two additions because -ffast-math is not used).
  const float big = 12582912.0f;
  const float n = (x * 1.44269504088896341f + big) - big;
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;  // 2^n, n in [-126, 127]
#if defined(__CUDA_ARCH__)
  const float scale = __int_as_float(bits);
#else
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
#endif
  return p * scale;
}

// fn(x) and fn'(x).
template <int FN, typename T>
VGOPS_HOST_DEVICE inline T token_fn(T x) {
  if (FN == kSigmoid) return T(1) / (T(1) + exp_<T>(-x));
  return x;
}

// fn and fn' together (one exp for the sigmoid).
template <int FN, typename T>
VGOPS_HOST_DEVICE inline void token_fn_and_grad(T x, T* f, T* df) {
  if (FN == kSigmoid) {
    const T y = T(1) / (T(1) + exp_<T>(-x));
    *f = y;
    *df = y * (T(1) - y);
  } else {
    *f = x;
    *df = T(1);
  }
}

// Mean of x over the valid clips inside [s, e], from prefix sums: xs = X[s], xe1 = X[e + 1],
// cs = cnt[s], ce1 = cnt[e + 1]. 0 when no valid clip is inside.
template <typename T>
VGOPS_HOST_DEVICE inline T mean_in(T xs, T xe1, T cs, T ce1) {
  const T n = ce1 - cs;
  const bool pos = n > T(0);
  const T q = (xe1 - xs) / (pos ? n : T(1));
  return pos ? q : T(0);
}

// Mean of x over the valid clips outside [s, e]; xt = X[Nv], ct = cnt[Nv]. 0 when none is outside.
template <typename T>
VGOPS_HOST_DEVICE inline T mean_out(T xs, T xe1, T xt, T cs, T ce1, T ct) {
  const T n = ct - (ce1 - cs);
  const bool pos = n > T(0);
  const T q = (xt - (xe1 - xs)) / (pos ? n : T(1));
  return pos ? q : T(0);
}

// d mean_in / d (X[e + 1]) (= - d / d X[s]) scaled by g: g / n_in (0 when n_in == 0).
template <typename T>
VGOPS_HOST_DEVICE inline T mean_in_coef(T g, T cs, T ce1) {
  const T n = ce1 - cs;
  const bool pos = n > T(0);
  const T q = g / (pos ? n : T(1));
  return pos ? q : T(0);
}

// d mean_out / d (X[Nv]) (= - d / d X[e + 1] = d / d X[s]) scaled by g: g / n_out (0 when
// n_out == 0).
template <typename T>
VGOPS_HOST_DEVICE inline T mean_out_coef(T g, T cs, T ce1, T ct) {
  const T n = ct - (ce1 - cs);
  const bool pos = n > T(0);
  const T q = g / (pos ? n : T(1));
  return pos ? q : T(0);
}

// FSAN Eq. 8 for one valid segment: A = prefix of the per-clip token sums (sum over valid tokens
// of P[i, j]), M = prefix of the per-clip token minima, ns = number of valid tokens:
//   SC = (A[e+1] - A[s]) / (ns * n_in) - mean over valid outside clips of the minima.
template <typename T>
VGOPS_HOST_DEVICE inline T score(T as, T ae1, T ms, T me1, T mt, T cs, T ce1, T ct, T inv_ns) {
  return mean_in<T>(as, ae1, cs, ce1) * inv_ns - mean_out<T>(ms, me1, mt, cs, ce1, ct);
}

}  // namespace ssm
}  // namespace vgops
