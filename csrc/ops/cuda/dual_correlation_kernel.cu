// CUDA kernels of kv_attention (FSM gated correlation) and its backward; shared math in
// ../dual_correlation.h. A first version: one warp per query row with an online softmax over
// the keys (no [G, Nq, Nk] tensor, no shared memory); each lane holds VPL = ceil(d / 32)
// features of the row in registers (d <= 1024). Backward without atomics (deterministic): one
// warp per query row for d q (and D_i = dO_i . O_i), then one warp per key row for d k, looping
// over the queries of its group.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../checks.h"
#include "../dual_correlation.h"

namespace vgops {
namespace {

constexpr int kWarpsPerBlock = 8;
constexpr int kMaxD = 1024;

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

inline int blocks_for_rows(int64_t rows) {
  return static_cast<int>(std::min<int64_t>((rows + kWarpsPerBlock - 1) / kWarpsPerBlock, 65535LL * 16));
}

#define VGOPS_WARP_ROWS(row, rows)                                                              \
  const int lane = threadIdx.x & 31;                                                            \
  const int64_t warp0 = blockIdx.x * (int64_t)kWarpsPerBlock + (threadIdx.x >> 5);            \
  const int64_t warp_stride = (int64_t)gridDim.x * kWarpsPerBlock;                              \
  for (int64_t row = warp0; row < (rows); row += warp_stride)

template <typename T, int VPL>
__device__ __forceinline__ void load_row(const T* __restrict__ p, int64_t d, int lane, T (&v)[VPL]) {
#pragma unroll
  for (int t = 0; t < VPL; ++t) {
    const int64_t c = lane + 32 * t;
    v[t] = c < d ? p[c] : T(0);
  }
}

template <typename T, int VPL>
__device__ __forceinline__ T dot_row(const T (&a)[VPL], const T* __restrict__ p, int64_t d, int lane) {
  T s = 0;
#pragma unroll
  for (int t = 0; t < VPL; ++t) {
    const int64_t c = lane + 32 * t;
    s += c < d ? a[t] * p[c] : T(0);
  }
  return warp_sum(s);
}

template <typename T, int VPL>
__global__ void kv_attention_forward_kernel(const T* __restrict__ q, const T* __restrict__ k,
                                            const bool* __restrict__ mask, T* __restrict__ out,
                                            T* __restrict__ lse, int64_t G, int64_t Nq, int64_t Nk, int64_t d,
                                            T scale) {
  VGOPS_WARP_ROWS(row, G * Nq) {
    const int64_t g = row / Nq;
    T qv[VPL], acc[VPL];
    load_row<T, VPL>(q + row * d, d, lane, qv);
#pragma unroll
    for (int t = 0; t < VPL; ++t) acc[t] = 0;
    T m = kv_attention::neg_inf<T>(), l = 0;
    for (int64_t j = 0; j < Nk; ++j) {
      if (mask != nullptr && !mask[g * Nk + j]) continue;  // warp-uniform
      const T* kj = k + (g * Nk + j) * d;
      const T s = dot_row<T, VPL>(qv, kj, d, lane) * scale;
      T p;
      const T c = kv_attention::online_softmax_step<T>(s, &m, &l, &p);
#pragma unroll
      for (int t = 0; t < VPL; ++t) {
        const int64_t col = lane + 32 * t;
        acc[t] = acc[t] * c + (col < d ? p * kj[col] : T(0));
      }
    }
    const T inv = l > T(0) ? T(1) / l : T(0);
#pragma unroll
    for (int t = 0; t < VPL; ++t) {
      const int64_t col = lane + 32 * t;
      if (col < d) out[row * d + col] = acc[t] * inv;
    }
    if (lane == 0) lse[row] = kv_attention::row_lse<T>(m, l);
  }
}

// d q for each query row, and D_i = dO_i . O_i into d_row.
template <typename T, int VPL>
__global__ void kv_attention_dq_kernel(const T* __restrict__ grad, const T* __restrict__ q, const T* __restrict__ k,
                                       const bool* __restrict__ mask, const T* __restrict__ out,
                                       const T* __restrict__ lse, T* __restrict__ dq, T* __restrict__ d_row_out,
                                       int64_t G, int64_t Nq, int64_t Nk, int64_t d, T scale) {
  VGOPS_WARP_ROWS(row, G * Nq) {
    const int64_t g = row / Nq;
    T qv[VPL], gv[VPL], acc[VPL];
    load_row<T, VPL>(q + row * d, d, lane, qv);
    load_row<T, VPL>(grad + row * d, d, lane, gv);
    const T d_row = dot_row<T, VPL>(gv, out + row * d, d, lane);
    const T l = lse[row];
#pragma unroll
    for (int t = 0; t < VPL; ++t) acc[t] = 0;
    for (int64_t j = 0; j < Nk; ++j) {
      if (mask != nullptr && !mask[g * Nk + j]) continue;
      const T* kj = k + (g * Nk + j) * d;
      const T p = kv_attention::weight_from_lse<T>(dot_row<T, VPL>(qv, kj, d, lane) * scale, l);
      const T ds = kv_attention::score_grad<T>(p, dot_row<T, VPL>(gv, kj, d, lane), d_row) * scale;
#pragma unroll
      for (int t = 0; t < VPL; ++t) {
        const int64_t col = lane + 32 * t;
        acc[t] += col < d ? ds * kj[col] : T(0);
      }
    }
#pragma unroll
    for (int t = 0; t < VPL; ++t) {
      const int64_t col = lane + 32 * t;
      if (col < d) dq[row * d + col] = acc[t];
    }
    if (lane == 0) d_row_out[row] = d_row;
  }
}

// d k for each key row: sum over the queries i of its group of scale dS_ij q_i + P_ij dO_i.
template <typename T, int VPL>
__global__ void kv_attention_dk_kernel(const T* __restrict__ grad, const T* __restrict__ q, const T* __restrict__ k,
                                       const bool* __restrict__ mask, const T* __restrict__ lse,
                                       const T* __restrict__ d_row, T* __restrict__ dk, int64_t G, int64_t Nq,
                                       int64_t Nk, int64_t d, T scale) {
  VGOPS_WARP_ROWS(krow, G * Nk) {
    const int64_t g = krow / Nk;
    T kv[VPL], acc[VPL];
#pragma unroll
    for (int t = 0; t < VPL; ++t) acc[t] = 0;
    if (mask == nullptr || mask[krow]) {
      load_row<T, VPL>(k + krow * d, d, lane, kv);
      for (int64_t i = 0; i < Nq; ++i) {
        const int64_t row = g * Nq + i;
        const T* qi = q + row * d;
        const T* gi = grad + row * d;
        const T p = kv_attention::weight_from_lse<T>(dot_row<T, VPL>(kv, qi, d, lane) * scale, lse[row]);
        const T ds = kv_attention::score_grad<T>(p, dot_row<T, VPL>(kv, gi, d, lane), d_row[row]) * scale;
#pragma unroll
        for (int t = 0; t < VPL; ++t) {
          const int64_t col = lane + 32 * t;
          acc[t] += col < d ? ds * qi[col] + p * gi[col] : T(0);
        }
      }
    }
#pragma unroll
    for (int t = 0; t < VPL; ++t) {
      const int64_t col = lane + 32 * t;
      if (col < d) dk[krow * d + col] = acc[t];
    }
  }
}

// Calls f(std::integral_constant<int, VPL>) with the smallest supported VPL >= ceil(d / 32).
template <typename F>
void with_vpl(int64_t d, F&& f) {
  const int64_t need = (d + 31) / 32;
  if (need <= 1) f(std::integral_constant<int, 1>{});
  else if (need <= 2) f(std::integral_constant<int, 2>{});
  else if (need <= 4) f(std::integral_constant<int, 4>{});
  else if (need <= 8) f(std::integral_constant<int, 8>{});
  else if (need <= 16) f(std::integral_constant<int, 16>{});
  else f(std::integral_constant<int, 32>{});
}

const bool* mask_ptr(const std::optional<at::Tensor>& mask, at::Tensor& keep) {
  if (!(mask.has_value() && mask->defined())) return nullptr;
  keep = mask->contiguous();
  return keep.const_data_ptr<bool>();
}

std::tuple<at::Tensor, at::Tensor> kv_attention_cuda(const at::Tensor& q_in, const at::Tensor& k_in,
                                                     const std::optional<at::Tensor>& mask_in, double scale) {
  check_kv_attention_inputs(q_in, k_in, mask_in);
  c10::cuda::CUDAGuard guard(q_in.device());
  const int64_t G = q_in.size(0), Nq = q_in.size(1), Nk = k_in.size(1), d = q_in.size(2);
  TORCH_CHECK_VALUE(d <= kMaxD, "kv_attention: the CUDA kernel supports d <= ", kMaxD, ", got ", d);
  at::Tensor out = at::zeros({G, Nq, d}, q_in.options());
  at::Tensor lse = at::empty({G, Nq}, q_in.options());
  if (G * Nq == 0) return {out, lse};
  at::Tensor q = q_in.contiguous(), k = k_in.contiguous(), mask_keep;
  const bool* pm = mask_ptr(mask_in, mask_keep);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "kv_attention_cuda", [&] {
    with_vpl(d, [&](auto vpl) {
      kv_attention_forward_kernel<scalar_t, decltype(vpl)::value>
          <<<blocks_for_rows(G * Nq), 32 * kWarpsPerBlock, 0, stream>>>(
              q.const_data_ptr<scalar_t>(), k.const_data_ptr<scalar_t>(), pm, out.mutable_data_ptr<scalar_t>(),
              lse.mutable_data_ptr<scalar_t>(), G, Nq, Nk, d, static_cast<scalar_t>(scale));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return {out, lse};
}

std::tuple<at::Tensor, at::Tensor> kv_attention_backward_cuda(const at::Tensor& grad_in, const at::Tensor& q_in,
                                                              const at::Tensor& k_in,
                                                              const std::optional<at::Tensor>& mask_in,
                                                              const at::Tensor& out_in, const at::Tensor& lse_in,
                                                              double scale) {
  check_kv_attention_inputs(q_in, k_in, mask_in);
  c10::cuda::CUDAGuard guard(q_in.device());
  const int64_t G = q_in.size(0), Nq = q_in.size(1), Nk = k_in.size(1), d = q_in.size(2);
  TORCH_CHECK_VALUE(d <= kMaxD, "kv_attention: the CUDA kernel supports d <= ", kMaxD, ", got ", d);
  TORCH_CHECK_VALUE(grad_in.sizes() == q_in.sizes() && out_in.sizes() == q_in.sizes() && lse_in.dim() == 2 &&
                        lse_in.size(0) == G && lse_in.size(1) == Nq,
                    "_kv_attention_backward: grad_out and out must be [G, Nq, d] and lse [G, Nq], got ",
                    grad_in.sizes(), ", ", out_in.sizes(), " and ", lse_in.sizes());
  at::Tensor dq = at::zeros({G, Nq, d}, q_in.options()), dk = at::zeros({G, Nk, d}, k_in.options());
  if (G * Nq == 0 || Nk == 0) return {dq, dk};
  auto dt = q_in.scalar_type();
  at::Tensor q = q_in.contiguous(), k = k_in.contiguous(), mask_keep;
  at::Tensor grad = grad_in.contiguous().to(dt), out = out_in.contiguous().to(dt), lse = lse_in.contiguous().to(dt);
  at::Tensor d_row = at::empty({G, Nq}, q_in.options());
  const bool* pm = mask_ptr(mask_in, mask_keep);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(dt, "kv_attention_backward_cuda", [&] {
    using T = scalar_t;
    with_vpl(d, [&](auto vpl) {
      constexpr int V = decltype(vpl)::value;
      kv_attention_dq_kernel<T, V><<<blocks_for_rows(G * Nq), 32 * kWarpsPerBlock, 0, stream>>>(
          grad.const_data_ptr<T>(), q.const_data_ptr<T>(), k.const_data_ptr<T>(), pm, out.const_data_ptr<T>(),
          lse.const_data_ptr<T>(), dq.mutable_data_ptr<T>(), d_row.mutable_data_ptr<T>(), G, Nq, Nk, d,
          static_cast<T>(scale));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      kv_attention_dk_kernel<T, V><<<blocks_for_rows(G * Nk), 32 * kWarpsPerBlock, 0, stream>>>(
          grad.const_data_ptr<T>(), q.const_data_ptr<T>(), k.const_data_ptr<T>(), pm, lse.const_data_ptr<T>(),
          d_row.const_data_ptr<T>(), dk.mutable_data_ptr<T>(), G, Nq, Nk, d, static_cast<T>(scale));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return {dq, dk};
}

}  // namespace

TORCH_LIBRARY_IMPL(vgops, CUDA, m) {
  m.impl("kv_attention", &kv_attention_cuda);
  m.impl("_kv_attention_backward", &kv_attention_backward_cuda);
}

}  // namespace vgops
