// CUDA kernel of tube_iou (one thread per query); the math is in ../tube_iou.h.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../checks.h"
#include "../tube_iou.h"

namespace vgops {
namespace {

template <typename scalar_t>
__global__ void tube_iou_kernel(const scalar_t* __restrict__ p, const scalar_t* __restrict__ pspan,
                                const scalar_t* __restrict__ g, const scalar_t* __restrict__ gspan,
                                const bool* __restrict__ m, scalar_t* __restrict__ ot, scalar_t* __restrict__ ov,
                                int64_t B, int64_t T) {
  using U = at::opmath_type<scalar_t>;
  for (int64_t b = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; b < B; b += (int64_t)gridDim.x * blockDim.x) {
    U ti, vi;
    tube::tube_iou<U>(p + b * T * 4, g + b * T * 4, m + b * T, T, U(pspan[2 * b]), U(pspan[2 * b + 1]),
                      U(gspan[2 * b]), U(gspan[2 * b + 1]), &ti, &vi);
    ot[b] = static_cast<scalar_t>(ti);
    ov[b] = static_cast<scalar_t>(vi);
  }
}

std::tuple<at::Tensor, at::Tensor> tube_iou_cuda(const at::Tensor& pb_in, const at::Tensor& ps_in, const at::Tensor& gb_in,
                                                 const at::Tensor& gs_in, const at::Tensor& mask_in) {
  check_tube_iou_inputs(pb_in, ps_in, gb_in, gs_in, mask_in);
  c10::cuda::CUDAGuard guard(pb_in.device());
  const int64_t B = pb_in.size(0), T = pb_in.size(1);
  at::Tensor tiou = at::empty({B}, pb_in.options()), viou = at::empty({B}, pb_in.options());
  if (B == 0) return {tiou, viou};
  at::Tensor pb = pb_in.contiguous(), ps = ps_in.contiguous(), gb = gb_in.contiguous(), gs = gs_in.contiguous();
  at::Tensor mask = mask_in.contiguous();
  const int threads = 128;
  const int blocks = static_cast<int>(std::min<int64_t>((B + threads - 1) / threads, 65535));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, pb.scalar_type(), "tube_iou_cuda", [&] {
    tube_iou_kernel<scalar_t><<<blocks, threads, 0, at::cuda::getCurrentCUDAStream()>>>(
        pb.const_data_ptr<scalar_t>(), ps.const_data_ptr<scalar_t>(), gb.const_data_ptr<scalar_t>(),
        gs.const_data_ptr<scalar_t>(), mask.const_data_ptr<bool>(), tiou.mutable_data_ptr<scalar_t>(),
        viou.mutable_data_ptr<scalar_t>(), B, T);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {tiou, viou};
}

}  // namespace

TORCH_LIBRARY_IMPL(vgops, CUDA, m) { m.impl("tube_iou", &tube_iou_cuda); }

}  // namespace vgops
