// CPU kernels of GLF's additive attention scores and their backward; math in
// ../additive_attention.h. The inner loops over d are `omp simd` loops over a branch-free tanh,
// so they vectorise. The backward splits each sample's P patches into a fixed number of chunks
// (set by P alone, not by the thread count) whose partial d b / d w sums are added in chunk
// order: results are identical for any thread count.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "../additive_attention.h"
#include "../checks.h"

namespace vgops {
namespace {

at::Tensor additive_scores_cpu(const at::Tensor& a_in, const at::Tensor& b_in, const at::Tensor& w_in) {
  check_additive_scores_inputs("_additive_scores", a_in, b_in, w_in);
  const int64_t B = a_in.size(0), P = a_in.size(1), S = b_in.size(1), d = a_in.size(2);
  at::Tensor alpha = at::empty({B, P, S}, a_in.options());
  if (alpha.numel() == 0) return alpha;
  const at::Tensor a = a_in.contiguous(), b = b_in.contiguous(), w = w_in.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.scalar_type(), "additive_scores_cpu", [&] {
    using T = at::opmath_type<scalar_t>;
    const scalar_t *ap = a.const_data_ptr<scalar_t>(), *bp = b.const_data_ptr<scalar_t>();
    const scalar_t* wp = w.const_data_ptr<scalar_t>();
    scalar_t* out = alpha.mutable_data_ptr<scalar_t>();
    const int64_t grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(S * d, 1));
    at::parallel_for(0, B * P, grain, [&](int64_t lo, int64_t hi) {
      for (int64_t r = lo; r < hi; ++r) {
        const scalar_t* ar = ap + r * d;
        const scalar_t* b0 = bp + (r / P) * S * d;
        for (int64_t s = 0; s < S; ++s) {
          const scalar_t* br = b0 + s * d;
          T acc = 0;
          _Pragma("omp simd reduction(+ : acc)")
          for (int64_t k = 0; k < d; ++k) acc += additive::score_term<T>(T(ar[k]), T(br[k]), T(wp[k]));
          out[r * S + s] = static_cast<scalar_t>(acc);
        }
      }
    });
  });
  return alpha;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> additive_scores_backward_cpu(const at::Tensor& g_in,
                                                                            const at::Tensor& a_in,
                                                                            const at::Tensor& b_in,
                                                                            const at::Tensor& w_in) {
  const char* op = "_additive_scores_backward";
  check_additive_scores_inputs(op, a_in, b_in, w_in);
  const int64_t B = a_in.size(0), P = a_in.size(1), S = b_in.size(1), d = a_in.size(2);
  check_shape(op, "grad_alpha", g_in, {B, P, S}, a_in);
  at::Tensor d_a = at::empty({B, P, d}, a_in.options()), d_b = at::zeros({B, S, d}, a_in.options());
  at::Tensor d_w = at::zeros({d}, a_in.options());
  if (B * P * S * d == 0) {
    d_a.zero_();
    return {d_a, d_b, d_w};
  }
  const at::Tensor g = g_in.contiguous(), a = a_in.contiguous(), b = b_in.contiguous(), w = w_in.contiguous();
  // Chunks of patches per sample: enough tasks for the threads, few enough partial sums.
  const int64_t chunks = std::min<int64_t>((P + 63) / 64, 8), len = (P + chunks - 1) / chunks;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.scalar_type(), "additive_scores_backward_cpu", [&] {
    using T = at::opmath_type<scalar_t>;
    const scalar_t *gp = g.const_data_ptr<scalar_t>(), *ap = a.const_data_ptr<scalar_t>();
    const scalar_t *bp = b.const_data_ptr<scalar_t>(), *wp = w.const_data_ptr<scalar_t>();
    scalar_t* dap = d_a.mutable_data_ptr<scalar_t>();
    std::vector<T> part_b(B * chunks * S * d, T(0)), part_w(B * chunks * d, T(0));
    at::parallel_for(0, B * chunks, 1, [&](int64_t lo, int64_t hi) {
      std::vector<T> wt(d), ga(d);
      for (int64_t k = 0; k < d; ++k) wt[k] = T(wp[k]);
      for (int64_t task = lo; task < hi; ++task) {
        const int64_t bi = task / chunks, c = task % chunks;
        T *pb = part_b.data() + task * S * d, *pw = part_w.data() + task * d;
        const scalar_t* b0 = bp + bi * S * d;
        for (int64_t p = bi * P + c * len, end = bi * P + std::min(P, (c + 1) * len); p < end; ++p) {
          const scalar_t* ar = ap + p * d;
          T* gar = ga.data();
          std::fill(ga.begin(), ga.end(), T(0));
          for (int64_t s = 0; s < S; ++s) {
            const T gs = T(gp[p * S + s]);
            const scalar_t* br = b0 + s * d;
            T* pbs = pb + s * d;
            const T* wk = wt.data();
            _Pragma("omp simd")
            for (int64_t k = 0; k < d; ++k) {
              T d_ab, d_wk;
              additive::score_term_backward<T>(gs, T(ar[k]), T(br[k]), wk[k], &d_ab, &d_wk);
              gar[k] += d_ab;
              pbs[k] += d_ab;
              pw[k] += d_wk;
            }
          }
          for (int64_t k = 0; k < d; ++k) dap[p * d + k] = static_cast<scalar_t>(gar[k]);
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
      T acc = 0;
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
