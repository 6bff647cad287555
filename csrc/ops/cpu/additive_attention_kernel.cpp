// CPU kernels of GLF's additive attention scores and their backward; math in
// ../additive_attention.h. The loops over d are `omp simd` loops over a branch-free tanh; for
// float they are also compiled for x86-64-v3 (AVX2 + FMA) and picked at load time by the CPU
// (GCC target_clones), as ATen does for its own kernels. The backward splits each sample's P
// patches into a fixed number of chunks (set by P alone, not by the thread count) whose partial
// d b / d w sums are added in chunk order: results are identical for any thread count.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "../additive_attention.h"
#include "../checks.h"
#include "cpu_clones.h"


namespace vgops {
namespace additive_cpu {

// alpha for one (patch, word): sum_k w[k] tanh(a[k] + b[k]).
template <typename T, typename S>
__attribute__((always_inline)) inline T score_row(const S* __restrict__ a, const S* __restrict__ b,
                                                  const T* __restrict__ w, int64_t d) {
  T acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t k = 0; k < d; ++k) acc += additive::score_term<T>(T(a[k]), T(b[k]), w[k]);
  return acc;
}

// Adds one (patch, word)'s gradient terms: ga += g w (1 - t^2), gb += the same, gw += g t.
template <typename T, typename S>
__attribute__((always_inline)) inline void grad_row(T g, const S* __restrict__ a, const S* __restrict__ b,
                                                    const T* __restrict__ w, int64_t d, T* __restrict__ ga,
                                                    T* __restrict__ gb, T* __restrict__ gw) {
#pragma omp simd
  for (int64_t k = 0; k < d; ++k) {
    T d_ab, d_w;
    additive::score_term_backward<T>(g, T(a[k]), T(b[k]), w[k], &d_ab, &d_w);
    ga[k] += d_ab;
    gb[k] += d_ab;
    gw[k] += d_w;
  }
}

VGOPS_CPU_CLONES float score_row_float(const float* a, const float* b, const float* w, int64_t d) {
  return score_row<float, float>(a, b, w, d);
}

VGOPS_CPU_CLONES void grad_row_float(float g, const float* a, const float* b, const float* w, int64_t d, float* ga,
                                     float* gb, float* gw) {
  grad_row<float, float>(g, a, b, w, d, ga, gb, gw);
}

template <typename T, typename S>
T score(const S* a, const S* b, const T* w, int64_t d) {
  if constexpr (std::is_same_v<S, float>) return score_row_float(a, b, w, d);
  else return score_row<T, S>(a, b, w, d);
}

template <typename T, typename S>
void grad(T g, const S* a, const S* b, const T* w, int64_t d, T* ga, T* gb, T* gw) {
  if constexpr (std::is_same_v<S, float>) grad_row_float(g, a, b, w, d, ga, gb, gw);
  else grad_row<T, S>(g, a, b, w, d, ga, gb, gw);
}

}  // namespace additive_cpu

namespace {

template <typename T, typename S>
std::vector<T> to_compute(const S* w, int64_t d) {
  std::vector<T> out(d);
  for (int64_t k = 0; k < d; ++k) out[k] = T(w[k]);
  return out;
}

at::Tensor additive_scores_cpu(const at::Tensor& a_in, const at::Tensor& b_in, const at::Tensor& w_in) {
  check_additive_scores_inputs("_additive_scores", a_in, b_in, w_in);
  const int64_t B = a_in.size(0), P = a_in.size(1), S = b_in.size(1), d = a_in.size(2);
  at::Tensor alpha = at::empty({B, P, S}, a_in.options());
  if (alpha.numel() == 0) return alpha;
  const at::Tensor a = a_in.contiguous(), b = b_in.contiguous(), w = w_in.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.scalar_type(), "additive_scores_cpu", [&] {
    using T = at::opmath_type<scalar_t>;
    const scalar_t *ap = a.const_data_ptr<scalar_t>(), *bp = b.const_data_ptr<scalar_t>();
    const std::vector<T> wt = to_compute<T>(w.const_data_ptr<scalar_t>(), d);
    scalar_t* out = alpha.mutable_data_ptr<scalar_t>();
    const int64_t grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(S * d, 1));
    at::parallel_for(0, B * P, grain, [&](int64_t lo, int64_t hi) {
      for (int64_t r = lo; r < hi; ++r) {
        const scalar_t* b0 = bp + (r / P) * S * d;
        for (int64_t s = 0; s < S; ++s)
          out[r * S + s] = static_cast<scalar_t>(additive_cpu::score<T>(ap + r * d, b0 + s * d, wt.data(), d));
      }
    });
  });
  return alpha;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> additive_scores_backward_cpu(const at::Tensor& g_in,
                                                                            const at::Tensor& a_in,
                                                                            const at::Tensor& b_in,
                                                                            const at::Tensor& w_in) {
  check_additive_scores_backward_inputs(g_in, a_in, b_in, w_in);
  const int64_t B = a_in.size(0), P = a_in.size(1), S = b_in.size(1), d = a_in.size(2);
  at::Tensor d_a = at::zeros({B, P, d}, a_in.options()), d_b = at::zeros({B, S, d}, a_in.options());
  at::Tensor d_w = at::zeros({d}, a_in.options());
  if (B * P * S * d == 0) return {d_a, d_b, d_w};
  const at::Tensor g = g_in.contiguous(), a = a_in.contiguous(), b = b_in.contiguous(), w = w_in.contiguous();
  // Chunks of patches per sample: enough tasks for the threads, few enough partial sums.
  const int64_t chunks = std::min<int64_t>((P + 63) / 64, 8), len = (P + chunks - 1) / chunks;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.scalar_type(), "additive_scores_backward_cpu", [&] {
    using T = at::opmath_type<scalar_t>;
    const scalar_t *gp = g.const_data_ptr<scalar_t>(), *ap = a.const_data_ptr<scalar_t>();
    const scalar_t* bp = b.const_data_ptr<scalar_t>();
    const std::vector<T> wt = to_compute<T>(w.const_data_ptr<scalar_t>(), d);
    scalar_t* dap = d_a.mutable_data_ptr<scalar_t>();
    // d b partials per (sample, chunk) in the compute type; d w partials in double (a sum of
    // up to B * P * S terms).
    std::vector<T> part_b(B * chunks * S * d, T(0));
    std::vector<double> part_w(B * chunks * d, 0.0);
    at::parallel_for(0, B * chunks, 1, [&](int64_t lo, int64_t hi) {
      std::vector<T> ga(d), gw(d);
      for (int64_t task = lo; task < hi; ++task) {
        const int64_t bi = task / chunks, c = task % chunks;
        T* pb = part_b.data() + task * S * d;
        double* pw = part_w.data() + task * d;
        const scalar_t* b0 = bp + bi * S * d;
        for (int64_t p = bi * P + c * len, end = bi * P + std::min(P, (c + 1) * len); p < end; ++p) {
          std::fill(ga.begin(), ga.end(), T(0));
          std::fill(gw.begin(), gw.end(), T(0));
          for (int64_t s = 0; s < S; ++s)
            additive_cpu::grad<T>(T(gp[p * S + s]), ap + p * d, b0 + s * d, wt.data(), d, ga.data(), pb + s * d,
                                  gw.data());
          for (int64_t k = 0; k < d; ++k) {
            dap[p * d + k] = static_cast<scalar_t>(ga[k]);
            pw[k] += double(gw[k]);
          }
        }
      }
    });
    // Sum the partials in chunk order.
    scalar_t *dbp = d_b.mutable_data_ptr<scalar_t>(), *dwp = d_w.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, B * S * d, 16384, [&](int64_t lo, int64_t hi) {
      for (int64_t e = lo; e < hi; ++e) {
        const int64_t bi = e / (S * d), sk = e % (S * d);
        T acc = 0;
        for (int64_t c = 0; c < chunks; ++c) acc += part_b[(bi * chunks + c) * S * d + sk];
        dbp[e] = static_cast<scalar_t>(acc);
      }
    });
    for (int64_t k = 0; k < d; ++k) {
      double acc = 0;
      for (int64_t t = 0; t < B * chunks; ++t) acc += part_w[t * d + k];
      dwp[k] = static_cast<scalar_t>(acc);
    }
  });
  return {d_a, d_b, d_w};
}

}  // namespace

TORCH_LIBRARY_IMPL(vgops, CPU, m) {
  m.impl("_additive_scores", &additive_scores_cpu);
  m.impl("_additive_scores_backward", &additive_scores_backward_cpu);
}

}  // namespace vgops
