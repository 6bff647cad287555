// CUDA kernels of GLF's additive attention scores and their backward; math in
// ../additive_attention.h (the functions the CPU kernels run). Scores: one warp per (b, p, s),
// lanes over d, a shuffle reduction. Backward: one warp per (b, p) for d a; one thread per
// (b, s, k) looping over the patches for d b and the partial d w (summed by ATen). No atomics:
// deterministic. 64-bit grid-stride loops; the current stream.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../additive_attention.h"
#include "../checks.h"

namespace vgops {
namespace {

constexpr int kThreads = 256, kWarp = 32;

inline int blocks_for(int64_t threads) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>((threads + kThreads - 1) / kThreads, 65535LL * 16)));
}

template <typename scalar_t>
__global__ void scores_kernel(const scalar_t* __restrict__ a, const scalar_t* __restrict__ b,
                              const scalar_t* __restrict__ w, scalar_t* __restrict__ alpha, int64_t B, int64_t P,
                              int64_t S, int64_t d) {
  using T = at::opmath_type<scalar_t>;
  const int lane = threadIdx.x % kWarp;
  const int64_t warps = (int64_t)gridDim.x * blockDim.x / kWarp;
  // Every lane of a warp runs the same number of iterations, so the shuffles are convergent.
  for (int64_t e = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) / kWarp; e < B * P * S; e += warps) {
    const int64_t r = e / S, s = e % S;  // r = b * P + p
    const scalar_t *ar = a + r * d, *br = b + ((r / P) * S + s) * d;
    T acc = 0;
    for (int64_t k = lane; k < d; k += kWarp) acc += additive::score_term<T>(T(ar[k]), T(br[k]), T(w[k]));
    for (int off = kWarp / 2; off > 0; off /= 2) acc += __shfl_down_sync(0xffffffffu, acc, off);
    if (lane == 0) alpha[e] = static_cast<scalar_t>(acc);
  }
}

template <typename scalar_t>
__global__ void grad_a_kernel(const scalar_t* __restrict__ g, const scalar_t* __restrict__ a,
                              const scalar_t* __restrict__ b, const scalar_t* __restrict__ w,
                              scalar_t* __restrict__ da, int64_t B, int64_t P, int64_t S, int64_t d) {
  using T = at::opmath_type<scalar_t>;
  const int lane = threadIdx.x % kWarp;
  const int64_t warps = (int64_t)gridDim.x * blockDim.x / kWarp;
  for (int64_t r = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) / kWarp; r < B * P; r += warps) {
    const scalar_t* b0 = b + (r / P) * S * d;
    for (int64_t k = lane; k < d; k += kWarp) {
      const T ak = T(a[r * d + k]), wk = T(w[k]);
      T acc = 0;
      for (int64_t s = 0; s < S; ++s) {
        T d_ab, d_w;
        additive::score_term_backward<T>(T(g[r * S + s]), ak, T(b0[s * d + k]), wk, &d_ab, &d_w);
        acc += d_ab;
      }
      da[r * d + k] = static_cast<scalar_t>(acc);
    }
  }
}

template <typename scalar_t, typename T>
__global__ void grad_b_kernel(const scalar_t* __restrict__ g, const scalar_t* __restrict__ a,
                              const scalar_t* __restrict__ b, const scalar_t* __restrict__ w,
                              scalar_t* __restrict__ db, T* __restrict__ dw_part, int64_t B, int64_t P, int64_t S,
                              int64_t d) {
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < B * S * d; e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t k = e % d, bs = e / d, bi = bs / S, s = bs % S;
    const T bk = T(b[e]), wk = T(w[k]);
    T acc_b = 0, acc_w = 0;
    for (int64_t p = 0; p < P; ++p) {
      T d_ab, d_w;
      additive::score_term_backward<T>(T(g[(bi * P + p) * S + s]), T(a[(bi * P + p) * d + k]), bk, wk, &d_ab, &d_w);
      acc_b += d_ab;
      acc_w += d_w;
    }
    db[e] = static_cast<scalar_t>(acc_b);
    dw_part[e] = acc_w;
  }
}

at::Tensor additive_scores_cuda(const at::Tensor& a_in, const at::Tensor& b_in, const at::Tensor& w_in) {
  check_additive_scores_inputs("_additive_scores", a_in, b_in, w_in);
  c10::cuda::CUDAGuard guard(a_in.device());
  const int64_t B = a_in.size(0), P = a_in.size(1), S = b_in.size(1), d = a_in.size(2);
  at::Tensor alpha = at::empty({B, P, S}, a_in.options());
  if (alpha.numel() == 0) return alpha;
  const at::Tensor a = a_in.contiguous(), b = b_in.contiguous(), w = w_in.contiguous();
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.scalar_type(), "additive_scores_cuda", [&] {
    scores_kernel<scalar_t><<<blocks_for(B * P * S * kWarp), kThreads, 0, stream>>>(
        a.const_data_ptr<scalar_t>(), b.const_data_ptr<scalar_t>(), w.const_data_ptr<scalar_t>(),
        alpha.mutable_data_ptr<scalar_t>(), B, P, S, d);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return alpha;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> additive_scores_backward_cuda(const at::Tensor& g_in,
                                                                             const at::Tensor& a_in,
                                                                             const at::Tensor& b_in,
                                                                             const at::Tensor& w_in) {
  check_additive_scores_backward_inputs(g_in, a_in, b_in, w_in);
  const int64_t B = a_in.size(0), P = a_in.size(1), S = b_in.size(1), d = a_in.size(2);
  c10::cuda::CUDAGuard guard(a_in.device());
  at::Tensor d_a = at::zeros({B, P, d}, a_in.options()), d_b = at::zeros({B, S, d}, a_in.options());
  if (B * P * S * d == 0) return {d_a, d_b, at::zeros({d}, a_in.options())};
  const at::Tensor g = g_in.contiguous(), a = a_in.contiguous(), b = b_in.contiguous(), w = w_in.contiguous();
  const auto part_type = a.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor dw_part = at::empty({B, S, d}, a.options().dtype(part_type));
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.scalar_type(), "additive_scores_backward_cuda", [&] {
    using T = at::opmath_type<scalar_t>;
    const scalar_t *gp = g.const_data_ptr<scalar_t>(), *ap = a.const_data_ptr<scalar_t>();
    const scalar_t *bp = b.const_data_ptr<scalar_t>(), *wp = w.const_data_ptr<scalar_t>();
    grad_a_kernel<scalar_t><<<blocks_for(B * P * kWarp), kThreads, 0, stream>>>(
        gp, ap, bp, wp, d_a.mutable_data_ptr<scalar_t>(), B, P, S, d);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    grad_b_kernel<scalar_t, T><<<blocks_for(B * S * d), kThreads, 0, stream>>>(
        gp, ap, bp, wp, d_b.mutable_data_ptr<scalar_t>(), dw_part.mutable_data_ptr<T>(), B, P, S, d);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {d_a, d_b, dw_part.sum({0, 1}).to(a.scalar_type())};
}

}  // namespace

TORCH_LIBRARY_IMPL(vgops, CUDA, m) {
  m.impl("_additive_scores", &additive_scores_cuda);
  m.impl("_additive_scores_backward", &additive_scores_backward_cuda);
}

}  // namespace vgops
