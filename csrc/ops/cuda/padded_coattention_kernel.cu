// CUDA kernels of the fused co-attention softmaxes; the math is in ../padded_coattention.h (the
// functions the CPU kernels run). One thread per column (b, h, j) for the column log-sum-exps
// and dots (adjacent threads read adjacent columns: coalesced), one per row for the rest; 64-bit
// grid-stride loops; the current stream. No atomics: deterministic. The GEMMs around them run
// through ATen (../padded_coattention.cpp).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../checks.h"
#include "../padded_coattention.h"

namespace vgops {
namespace {

constexpr int kThreads = 256;

inline int blocks_for(int64_t n) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>((n + kThreads - 1) / kThreads, 65535LL * 16)));
}

#define VGOPS_GRID_STRIDE(i, n) \
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

template <typename scalar_t, typename L>
__global__ void col_lse_kernel(const scalar_t* __restrict__ x, const bool* __restrict__ vk, L* __restrict__ cl,
                               int64_t B, int64_t H, int64_t Tk, int64_t Nk, at::opmath_type<scalar_t> scale) {
  using T = at::opmath_type<scalar_t>;
  VGOPS_GRID_STRIDE(c, B * H * Nk) {
    const int64_t j = c % Nk, bh = c / Nk, b = bh / H;
    cl[c] = coattention::masked_lse<T>(x + bh * Tk * Nk + j, Tk, Nk, vk + b * Tk, scale);
  }
}

template <typename scalar_t, typename L>
__global__ void row_lse_kernel(const scalar_t* __restrict__ x, const bool* __restrict__ qk, L* __restrict__ rl,
                               int64_t B, int64_t H, int64_t Tk, int64_t Nk, at::opmath_type<scalar_t> scale) {
  using T = at::opmath_type<scalar_t>;
  VGOPS_GRID_STRIDE(r, B * H * Tk) {
    const int64_t b = r / (H * Tk);
    rl[r] = coattention::masked_lse<T>(x + r * Nk, Nk, 1, qk + b * Nk, scale);
  }
}

template <typename scalar_t, typename L>
__global__ void maps_kernel(const scalar_t* __restrict__ x, const bool* __restrict__ vk, const bool* __restrict__ qk,
                            const L* __restrict__ rl, const L* __restrict__ cl, scalar_t* __restrict__ av,
                            scalar_t* __restrict__ aq, int64_t B, int64_t H, int64_t Tk, int64_t Nk,
                            at::opmath_type<scalar_t> scale) {
  using T = at::opmath_type<scalar_t>;
  VGOPS_GRID_STRIDE(r, B * Tk) {
    const int64_t b = r / Tk, i = r % Tk;
    coattention::maps_row<T>(x + (b * H * Tk + i) * Nk, H, Tk * Nk, Nk, vk[r], qk + b * Nk, rl + b * H * Tk + i, Tk,
                             cl + b * H * Nk, Nk, scale, av + r * Nk, aq + r * Nk);
  }
}

template <typename scalar_t, typename L>
__global__ void coldot_kernel(const scalar_t* __restrict__ x, const scalar_t* __restrict__ gq,
                              const bool* __restrict__ vk, const L* __restrict__ cl, L* __restrict__ dots, int64_t B,
                              int64_t H, int64_t Tk, int64_t Nk, at::opmath_type<scalar_t> scale) {
  using T = at::opmath_type<scalar_t>;
  VGOPS_GRID_STRIDE(c, B * H * Nk) {
    const int64_t j = c % Nk, bh = c / Nk, b = bh / H;
    dots[c] = coattention::coldot<T>(x + bh * Tk * Nk + j, gq + b * Tk * Nk + j, Tk, Nk, T(cl[c]), vk + b * Tk, scale);
  }
}

template <typename scalar_t, typename L>
__global__ void grad_row_kernel(const scalar_t* __restrict__ x, const scalar_t* __restrict__ gv,
                                const scalar_t* __restrict__ gq, const bool* __restrict__ vk,
                                const bool* __restrict__ qk, const L* __restrict__ rl, const L* __restrict__ cl,
                                const L* __restrict__ dots, scalar_t* __restrict__ dx, int64_t B, int64_t H,
                                int64_t Tk, int64_t Nk, at::opmath_type<scalar_t> scale,
                                at::opmath_type<scalar_t> out_scale) {
  using T = at::opmath_type<scalar_t>;
  VGOPS_GRID_STRIDE(r, B * H * Tk) {
    const int64_t i = r % Tk, bh = r / Tk, b = bh / H;
    coattention::grad_row<T>(x + r * Nk, gv + (b * Tk + i) * Nk, gq + (b * Tk + i) * Nk, Nk, T(rl[r]), cl + bh * Nk,
                             dots + bh * Nk, vk[b * Tk + i], qk + b * Nk, scale, out_scale, dx + r * Nk);
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> coattention_softmax_cuda(const at::Tensor& logits_in,
                                                                                    const at::Tensor& vk_in,
                                                                                    const at::Tensor& qk_in, double scale_d) {
  check_coattention_softmax_inputs("_coattention_softmax", logits_in, vk_in, qk_in);
  c10::cuda::CUDAGuard guard(logits_in.device());
  const int64_t B = logits_in.size(0), H = logits_in.size(1), Tk = logits_in.size(2), Nk = logits_in.size(3);
  at::Tensor a_v, a_qt, row_lse, col_lse;
  std::tie(a_v, a_qt, row_lse, col_lse) = coattention_softmax_outputs(logits_in);
  if (B == 0 || Tk == 0 || Nk == 0) return {a_v, a_qt, row_lse, col_lse};
  const at::Tensor logits = logits_in.contiguous(), vk = vk_in.contiguous(), qk = qk_in.contiguous();
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "coattention_softmax_cuda", [&] {
    using L = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    const scalar_t* x = logits.const_data_ptr<scalar_t>();
    const bool *v = vk.const_data_ptr<bool>(), *q = qk.const_data_ptr<bool>();
    L *rl = row_lse.mutable_data_ptr<L>(), *cl = col_lse.mutable_data_ptr<L>();
    using T = at::opmath_type<scalar_t>;
    const T scale = T(scale_d);
    col_lse_kernel<scalar_t, L><<<blocks_for(B * H * Nk), kThreads, 0, stream>>>(x, v, cl, B, H, Tk, Nk, scale);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    row_lse_kernel<scalar_t, L><<<blocks_for(B * H * Tk), kThreads, 0, stream>>>(x, q, rl, B, H, Tk, Nk, scale);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    maps_kernel<scalar_t, L><<<blocks_for(B * Tk), kThreads, 0, stream>>>(
        x, v, q, rl, cl, a_v.mutable_data_ptr<scalar_t>(), a_qt.mutable_data_ptr<scalar_t>(), B, H, Tk, Nk, scale);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {a_v, a_qt, row_lse, col_lse};
}

at::Tensor coattention_softmax_backward_cuda(const at::Tensor& logits_in, const at::Tensor& vk_in,
                                             const at::Tensor& qk_in, const at::Tensor& row_lse_in,
                                             const at::Tensor& col_lse_in, const at::Tensor& g_v_in,
                                             const at::Tensor& g_qt_in, double scale_d, double grad_scale_d) {
  check_coattention_softmax_backward_inputs(logits_in, vk_in, qk_in, row_lse_in, col_lse_in, g_v_in, g_qt_in);
  const int64_t B = logits_in.size(0), H = logits_in.size(1), Tk = logits_in.size(2), Nk = logits_in.size(3);
  c10::cuda::CUDAGuard guard(logits_in.device());
  at::Tensor dlogits = at::empty({B, H, Tk, Nk}, logits_in.options());
  if (dlogits.numel() == 0) return dlogits;
  const at::Tensor logits = logits_in.contiguous(), vk = vk_in.contiguous(), qk = qk_in.contiguous();
  const at::Tensor row_lse = row_lse_in.contiguous(), col_lse = col_lse_in.contiguous();
  const at::Tensor g_v = g_v_in.contiguous(), g_qt = g_qt_in.contiguous();
  at::Tensor dots = at::empty({B, H, Nk}, row_lse.options());
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "coattention_softmax_backward_cuda", [&] {
    using L = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    const scalar_t *x = logits.const_data_ptr<scalar_t>(), *gv = g_v.const_data_ptr<scalar_t>();
    const scalar_t* gq = g_qt.const_data_ptr<scalar_t>();
    const bool *v = vk.const_data_ptr<bool>(), *q = qk.const_data_ptr<bool>();
    const L *rl = row_lse.const_data_ptr<L>(), *cl = col_lse.const_data_ptr<L>();
    L* dp = dots.mutable_data_ptr<L>();
    using T = at::opmath_type<scalar_t>;
    const T scale = T(scale_d), out_scale = T(grad_scale_d);
    coldot_kernel<scalar_t, L><<<blocks_for(B * H * Nk), kThreads, 0, stream>>>(x, gq, v, cl, dp, B, H, Tk, Nk, scale);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    grad_row_kernel<scalar_t, L><<<blocks_for(B * H * Tk), kThreads, 0, stream>>>(
        x, gv, gq, v, q, rl, cl, dp, dlogits.mutable_data_ptr<scalar_t>(), B, H, Tk, Nk, scale, out_scale);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return dlogits;
}

}  // namespace

TORCH_LIBRARY_IMPL(vgops, CUDA, m) {
  m.impl("_coattention_softmax", &coattention_softmax_cuda);
  m.impl("_coattention_softmax_backward", &coattention_softmax_backward_cuda);
}

}  // namespace vgops
