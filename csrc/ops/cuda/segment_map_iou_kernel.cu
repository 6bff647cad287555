// CUDA kernel of segment_map_iou; the math is in ../segment_map_iou.h.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../checks.h"
#include "../segment_map_iou.h"

namespace vgops {
namespace {

template <typename scalar_t>
__global__ void segment_map_iou_kernel(const scalar_t* __restrict__ gt, const scalar_t* __restrict__ duration,
                                       scalar_t* __restrict__ out, int64_t B, int64_t n) {
  using T = at::opmath_type<scalar_t>;
  const int64_t total = B * n * n;
  for (int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; k < total; k += (int64_t)gridDim.x * blockDim.x) {
    const int64_t e = k % n, s = (k / n) % n, b = k / (n * n);
    out[k] = static_cast<scalar_t>(map1d::cell_iou<T>(s, e, map1d::grid_step<T>(T(duration[b]), n), T(gt[2 * b]), T(gt[2 * b + 1])));
  }
}

at::Tensor segment_map_iou_cuda(const at::Tensor& gt_in, int64_t n, const at::Tensor& duration_in) {
  check_segment_map_iou_inputs(gt_in, n, duration_in);
  c10::cuda::CUDAGuard guard(gt_in.device());
  const int64_t B = gt_in.size(0);
  at::Tensor out = at::empty({B, n, n}, gt_in.options());
  if (out.numel() == 0) return out;
  at::Tensor gt = gt_in.contiguous(), duration = duration_in.contiguous();
  const int threads = 256;
  const int blocks = static_cast<int>(std::min<int64_t>((out.numel() + threads - 1) / threads, 65535LL * 16));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, gt.scalar_type(), "segment_map_iou_cuda", [&] {
    segment_map_iou_kernel<scalar_t><<<blocks, threads, 0, at::cuda::getCurrentCUDAStream()>>>(
        gt.const_data_ptr<scalar_t>(), duration.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), B, n);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(vgops, CUDA, m) { m.impl("segment_map_iou", &segment_map_iou_cuda); }

}  // namespace vgops
