// CUDA kernels of temporal_iou and its backward; the math is in ../temporal_iou.h.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../checks.h"
#include "../temporal_iou.h"

namespace vgops {
namespace {

constexpr int kThreads = 256;

inline int blocks_for(int64_t n) {
  return static_cast<int>(std::min<int64_t>((n + kThreads - 1) / kThreads, 65535LL * 16));
}

template <typename scalar_t>
__global__ void iou_aligned_kernel(const scalar_t* __restrict__ a, const scalar_t* __restrict__ b,
                                   scalar_t* __restrict__ out, int64_t n) {
  using T = at::opmath_type<scalar_t>;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    out[i] = static_cast<scalar_t>(iou1d::segment_iou<T>(a[2 * i], a[2 * i + 1], b[2 * i], b[2 * i + 1]));
}

template <typename scalar_t>
__global__ void iou_pairwise_kernel(const scalar_t* __restrict__ a, const scalar_t* __restrict__ b,
                                    scalar_t* __restrict__ out, int64_t B, int64_t N, int64_t M) {
  using T = at::opmath_type<scalar_t>;
  const int64_t total = B * N * M;
  for (int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; k < total; k += (int64_t)gridDim.x * blockDim.x) {
    const int64_t j = k % M, row = k / M, bi = row / N;
    const scalar_t* q = b + 2 * (bi * M + j);
    out[k] = static_cast<scalar_t>(iou1d::segment_iou<T>(a[2 * row], a[2 * row + 1], q[0], q[1]));
  }
}

template <typename scalar_t>
__global__ void iou_aligned_backward_kernel(const scalar_t* __restrict__ g, const scalar_t* __restrict__ a,
                                            const scalar_t* __restrict__ b, scalar_t* __restrict__ ga,
                                            scalar_t* __restrict__ gb, int64_t n) {
  using T = at::opmath_type<scalar_t>;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    T d[4];
    iou1d::segment_iou_backward<T>(a[2 * i], a[2 * i + 1], b[2 * i], b[2 * i + 1], T(g[i]), &d[0], &d[1], &d[2], &d[3]);
    ga[2 * i] = d[0]; ga[2 * i + 1] = d[1]; gb[2 * i] = d[2]; gb[2 * i + 1] = d[3];
  }
}

// Pairwise backward, one thread per output segment summing over its partners: for_a=true gives
// grad_a (rows of a, partners in b), for_a=false grad_b. No atomics: deterministic.
template <typename scalar_t>
__global__ void iou_pairwise_backward_kernel(const scalar_t* __restrict__ g, const scalar_t* __restrict__ a,
                                             const scalar_t* __restrict__ b, scalar_t* __restrict__ out,
                                             int64_t B, int64_t N, int64_t M, bool for_a) {
  using T = at::opmath_type<scalar_t>;
  const int64_t rows = for_a ? B * N : B * M;
  for (int64_t r = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; r < rows; r += (int64_t)gridDim.x * blockDim.x) {
    T acc_s = 0, acc_e = 0, d[4];
    if (for_a) {
      const int64_t bi = r / N;
      for (int64_t j = 0; j < M; ++j) {
        const scalar_t* q = b + 2 * (bi * M + j);
        iou1d::segment_iou_backward<T>(a[2 * r], a[2 * r + 1], q[0], q[1], T(g[r * M + j]), &d[0], &d[1], &d[2], &d[3]);
        acc_s += d[0]; acc_e += d[1];
      }
    } else {
      const int64_t bi = r / M, j = r % M;
      for (int64_t n = 0; n < N; ++n) {
        const scalar_t* p = a + 2 * (bi * N + n);
        iou1d::segment_iou_backward<T>(p[0], p[1], b[2 * r], b[2 * r + 1], T(g[(bi * N + n) * M + j]), &d[0], &d[1], &d[2], &d[3]);
        acc_s += d[2]; acc_e += d[3];
      }
    }
    out[2 * r] = static_cast<scalar_t>(acc_s);
    out[2 * r + 1] = static_cast<scalar_t>(acc_e);
  }
}

at::Tensor temporal_iou_cuda(const at::Tensor& a_in, const at::Tensor& b_in, bool aligned) {
  check_temporal_iou_inputs(a_in, b_in, aligned);
  c10::cuda::CUDAGuard guard(a_in.device());
  const int64_t B = a_in.size(0), N = a_in.size(1), M = b_in.size(1);
  at::Tensor out = aligned ? at::empty({B, N}, a_in.options()) : at::empty({B, N, M}, a_in.options());
  if (out.numel() == 0) return out;
  at::Tensor a = a_in.contiguous(), b = b_in.contiguous();
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.scalar_type(), "temporal_iou_cuda", [&] {
    if (aligned) {
      iou_aligned_kernel<scalar_t><<<blocks_for(B * N), kThreads, 0, stream>>>(
          a.const_data_ptr<scalar_t>(), b.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), B * N);
    } else {
      iou_pairwise_kernel<scalar_t><<<blocks_for(B * N * M), kThreads, 0, stream>>>(
          a.const_data_ptr<scalar_t>(), b.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), B, N, M);
    }
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

std::tuple<at::Tensor, at::Tensor> temporal_iou_backward_cuda(const at::Tensor& grad_in, const at::Tensor& a_in,
                                                              const at::Tensor& b_in, bool aligned) {
  check_temporal_iou_inputs(a_in, b_in, aligned);
  c10::cuda::CUDAGuard guard(a_in.device());
  const int64_t B = a_in.size(0), N = a_in.size(1), M = b_in.size(1);
  at::Tensor ga = at::zeros_like(a_in, at::MemoryFormat::Contiguous);
  at::Tensor gb = at::zeros_like(b_in, at::MemoryFormat::Contiguous);
  if (ga.numel() == 0 || gb.numel() == 0) return {ga, gb};
  at::Tensor a = a_in.contiguous(), b = b_in.contiguous(), grad = grad_in.contiguous().to(a.scalar_type());
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.scalar_type(), "temporal_iou_backward_cuda", [&] {
    const scalar_t *pg = grad.const_data_ptr<scalar_t>(), *pa = a.const_data_ptr<scalar_t>(), *pb = b.const_data_ptr<scalar_t>();
    if (aligned) {
      iou_aligned_backward_kernel<scalar_t><<<blocks_for(B * N), kThreads, 0, stream>>>(
          pg, pa, pb, ga.mutable_data_ptr<scalar_t>(), gb.mutable_data_ptr<scalar_t>(), B * N);
    } else {
      iou_pairwise_backward_kernel<scalar_t><<<blocks_for(B * N), kThreads, 0, stream>>>(
          pg, pa, pb, ga.mutable_data_ptr<scalar_t>(), B, N, M, true);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      iou_pairwise_backward_kernel<scalar_t><<<blocks_for(B * M), kThreads, 0, stream>>>(
          pg, pa, pb, gb.mutable_data_ptr<scalar_t>(), B, N, M, false);
    }
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {ga, gb};
}

}  // namespace

TORCH_LIBRARY_IMPL(vgops, CUDA, m) {
  m.impl("temporal_iou", &temporal_iou_cuda);
  m.impl("_temporal_iou_backward", &temporal_iou_backward_cuda);
}

}  // namespace vgops
