// CUDA kernels of the calibration gate's fused epilogues; the math is in ../gates.h (the same
// functions the CPU kernels run). One thread per (row, feature), 64-bit grid-stride loops, the
// current stream. The GEMMs around them run through ATen (../calibration_gate.cpp).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../checks.h"
#include "../gates.h"

namespace vgops {
namespace {

constexpr int kThreads = 256;

inline int blocks_for(int64_t n) {
  return static_cast<int>(std::min<int64_t>((n + kThreads - 1) / kThreads, 65535LL * 16));
}

template <typename scalar_t>
__global__ void calibration_epilogue_kernel(const scalar_t* __restrict__ x, const scalar_t* __restrict__ pre,
                                            scalar_t* __restrict__ out, int64_t N, int64_t D) {
  using T = at::opmath_type<scalar_t>;
  const int64_t total = N * D;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t n = i / D, j = i - n * D;
    const scalar_t* r = pre + n * 2 * D;
    out[i] = static_cast<scalar_t>(gates::calibration_blend<T>(T(x[i]), T(r[j]), T(r[D + j])));
  }
}

template <typename scalar_t>
__global__ void calibration_epilogue_backward_kernel(const scalar_t* __restrict__ g, const scalar_t* __restrict__ x,
                                                     const scalar_t* __restrict__ pre, scalar_t* __restrict__ dx,
                                                     scalar_t* __restrict__ dpre, int64_t N, int64_t D) {
  using T = at::opmath_type<scalar_t>;
  const int64_t total = N * D;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t n = i / D, j = i - n * D;
    const scalar_t* r = pre + n * 2 * D;
    T a, b, c;
    gates::calibration_blend_backward<T>(T(g[i]), T(x[i]), T(r[j]), T(r[D + j]), &a, &b, &c);
    dx[i] = static_cast<scalar_t>(a);
    dpre[n * 2 * D + j] = static_cast<scalar_t>(b);
    dpre[n * 2 * D + D + j] = static_cast<scalar_t>(c);
  }
}

at::Tensor calibration_gate_epilogue_cuda(const at::Tensor& x_in, const at::Tensor& pre_in) {
  check_calibration_epilogue_inputs("_calibration_gate_epilogue", x_in, pre_in);
  c10::cuda::CUDAGuard guard(x_in.device());
  const int64_t N = x_in.size(0), D = x_in.size(1);
  at::Tensor out = at::empty({N, D}, x_in.options());
  if (out.numel() == 0) return out;
  at::Tensor x = x_in.contiguous(), pre = pre_in.contiguous();
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "calibration_gate_epilogue_cuda", [&] {
    calibration_epilogue_kernel<scalar_t><<<blocks_for(N * D), kThreads, 0, stream>>>(
        x.const_data_ptr<scalar_t>(), pre.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), N, D);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

std::tuple<at::Tensor, at::Tensor> calibration_gate_epilogue_backward_cuda(const at::Tensor& grad_in,
                                                                           const at::Tensor& x_in,
                                                                           const at::Tensor& pre_in) {
  check_calibration_epilogue_inputs("_calibration_gate_epilogue_backward", x_in, pre_in, &grad_in);
  c10::cuda::CUDAGuard guard(x_in.device());
  const int64_t N = x_in.size(0), D = x_in.size(1);
  at::Tensor dx = at::empty({N, D}, x_in.options()), dpre = at::empty({N, 2 * D}, x_in.options());
  if (dx.numel() == 0) return {dx, dpre};
  at::Tensor grad = grad_in.contiguous(), x = x_in.contiguous(), pre = pre_in.contiguous();
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "calibration_gate_epilogue_backward_cuda", [&] {
    calibration_epilogue_backward_kernel<scalar_t><<<blocks_for(N * D), kThreads, 0, stream>>>(
        grad.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(), pre.const_data_ptr<scalar_t>(),
        dx.mutable_data_ptr<scalar_t>(), dpre.mutable_data_ptr<scalar_t>(), N, D);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {dx, dpre};
}

}  // namespace

TORCH_LIBRARY_IMPL(vgops, CUDA, m) {
  m.impl("_calibration_gate_epilogue", &calibration_gate_epilogue_cuda);
  m.impl("_calibration_gate_epilogue_backward", &calibration_gate_epilogue_backward_cuda);
}

}  // namespace vgops
