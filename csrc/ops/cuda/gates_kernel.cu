// CUDA kernels of cross_gate and self_guided and their backward passes; the math is in
// ../gates.h (the same functions the CPU kernels run). One thread per element, grid-stride
// loops with 64-bit indices, launched on the current stream.
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

#define VGOPS_GRID_STRIDE(i, n) \
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

template <typename scalar_t>
__global__ void cross_gate_kernel(const scalar_t* __restrict__ a, const scalar_t* __restrict__ b,
                                  const scalar_t* __restrict__ gs, const scalar_t* __restrict__ gc,
                                  scalar_t* __restrict__ out, int64_t n) {
  using T = at::opmath_type<scalar_t>;
  VGOPS_GRID_STRIDE(i, n) {
    out[i] = static_cast<scalar_t>(gates::cross_gate<T>(T(a[i]), T(b[i]), T(gs[i]), T(gc[i])));
  }
}

template <typename scalar_t>
__global__ void cross_gate_backward_kernel(const scalar_t* __restrict__ g, const scalar_t* __restrict__ a,
                                           const scalar_t* __restrict__ b, const scalar_t* __restrict__ gs,
                                           const scalar_t* __restrict__ gc, scalar_t* __restrict__ oa,
                                           scalar_t* __restrict__ ob, scalar_t* __restrict__ ogs,
                                           scalar_t* __restrict__ ogc, int64_t n) {
  using T = at::opmath_type<scalar_t>;
  VGOPS_GRID_STRIDE(i, n) {
    T da, db, dgs, dgc;
    gates::cross_gate_backward<T>(T(g[i]), T(a[i]), T(b[i]), T(gs[i]), T(gc[i]), &da, &db, &dgs, &dgc);
    oa[i] = static_cast<scalar_t>(da);
    ob[i] = static_cast<scalar_t>(db);
    ogs[i] = static_cast<scalar_t>(dgs);
    ogc[i] = static_cast<scalar_t>(dgc);
  }
}

template <typename scalar_t>
__global__ void self_guided_kernel(const scalar_t* __restrict__ a, const scalar_t* __restrict__ b,
                                   const scalar_t* __restrict__ c, scalar_t* __restrict__ out, int64_t n) {
  using T = at::opmath_type<scalar_t>;
  VGOPS_GRID_STRIDE(i, n) { out[i] = static_cast<scalar_t>(gates::self_guided<T>(T(a[i]), T(b[i]), T(c[i]))); }
}

template <typename scalar_t>
__global__ void self_guided_backward_kernel(const scalar_t* __restrict__ g, const scalar_t* __restrict__ a,
                                            const scalar_t* __restrict__ b, scalar_t* __restrict__ oa,
                                            scalar_t* __restrict__ ob, int64_t n) {
  using T = at::opmath_type<scalar_t>;
  VGOPS_GRID_STRIDE(i, n) {
    T da, db;
    gates::self_guided_backward<T>(T(g[i]), T(a[i]), T(b[i]), &da, &db);
    oa[i] = static_cast<scalar_t>(da);
    ob[i] = static_cast<scalar_t>(db);
  }
}

at::Tensor cross_gate_cuda(const at::Tensor& x_s_in, const at::Tensor& x_c_in, const at::Tensor& g_s_in,
                           const at::Tensor& g_c_in) {
  check_same_elementwise("cross_gate", {{"x_s", &x_s_in}, {"x_c", &x_c_in}, {"g_s", &g_s_in}, {"g_c", &g_c_in}});
  c10::cuda::CUDAGuard guard(x_s_in.device());
  at::Tensor out = at::empty(x_s_in.sizes(), x_s_in.options().memory_format(at::MemoryFormat::Contiguous));
  const int64_t n = out.numel();
  if (n == 0) return out;
  at::Tensor x_s = x_s_in.contiguous(), x_c = x_c_in.contiguous(), g_s = g_s_in.contiguous(), g_c = g_c_in.contiguous();
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "cross_gate_cuda", [&] {
    cross_gate_kernel<scalar_t><<<blocks_for(n), kThreads, 0, stream>>>(
        x_s.const_data_ptr<scalar_t>(), x_c.const_data_ptr<scalar_t>(), g_s.const_data_ptr<scalar_t>(),
        g_c.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), n);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> cross_gate_backward_cuda(
    const at::Tensor& grad_in, const at::Tensor& x_s_in, const at::Tensor& x_c_in, const at::Tensor& g_s_in,
    const at::Tensor& g_c_in) {
  check_same_elementwise("_cross_gate_backward",
                         {{"x_s", &x_s_in}, {"grad", &grad_in}, {"x_c", &x_c_in}, {"g_s", &g_s_in}, {"g_c", &g_c_in}});
  c10::cuda::CUDAGuard guard(x_s_in.device());
  auto opts = x_s_in.options().memory_format(at::MemoryFormat::Contiguous);
  at::Tensor d_xs = at::empty(x_s_in.sizes(), opts), d_xc = at::empty(x_s_in.sizes(), opts);
  at::Tensor d_gs = at::empty(x_s_in.sizes(), opts), d_gc = at::empty(x_s_in.sizes(), opts);
  const int64_t n = d_xs.numel();
  if (n == 0) return {d_xs, d_xc, d_gs, d_gc};
  at::Tensor grad = grad_in.contiguous(), x_s = x_s_in.contiguous(), x_c = x_c_in.contiguous();
  at::Tensor g_s = g_s_in.contiguous(), g_c = g_c_in.contiguous();
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, d_xs.scalar_type(), "cross_gate_backward_cuda", [&] {
    cross_gate_backward_kernel<scalar_t><<<blocks_for(n), kThreads, 0, stream>>>(
        grad.const_data_ptr<scalar_t>(), x_s.const_data_ptr<scalar_t>(), x_c.const_data_ptr<scalar_t>(),
        g_s.const_data_ptr<scalar_t>(), g_c.const_data_ptr<scalar_t>(), d_xs.mutable_data_ptr<scalar_t>(),
        d_xc.mutable_data_ptr<scalar_t>(), d_gs.mutable_data_ptr<scalar_t>(), d_gc.mutable_data_ptr<scalar_t>(), n);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {d_xs, d_xc, d_gs, d_gc};
}

at::Tensor self_guided_cuda(const at::Tensor& h_gate_in, const at::Tensor& h_value_in, const at::Tensor& residual_in) {
  check_same_elementwise("self_guided", {{"h_gate", &h_gate_in}, {"h_value", &h_value_in}, {"residual", &residual_in}});
  c10::cuda::CUDAGuard guard(h_gate_in.device());
  at::Tensor out = at::empty(h_gate_in.sizes(), h_gate_in.options().memory_format(at::MemoryFormat::Contiguous));
  const int64_t n = out.numel();
  if (n == 0) return out;
  at::Tensor hg = h_gate_in.contiguous(), hv = h_value_in.contiguous(), res = residual_in.contiguous();
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "self_guided_cuda", [&] {
    self_guided_kernel<scalar_t><<<blocks_for(n), kThreads, 0, stream>>>(
        hg.const_data_ptr<scalar_t>(), hv.const_data_ptr<scalar_t>(), res.const_data_ptr<scalar_t>(),
        out.mutable_data_ptr<scalar_t>(), n);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

std::tuple<at::Tensor, at::Tensor> self_guided_backward_cuda(const at::Tensor& grad_in, const at::Tensor& h_gate_in,
                                                             const at::Tensor& h_value_in) {
  check_same_elementwise("_self_guided_backward", {{"h_gate", &h_gate_in}, {"grad", &grad_in}, {"h_value", &h_value_in}});
  c10::cuda::CUDAGuard guard(h_gate_in.device());
  auto opts = h_gate_in.options().memory_format(at::MemoryFormat::Contiguous);
  at::Tensor d_gate = at::empty(h_gate_in.sizes(), opts), d_value = at::empty(h_gate_in.sizes(), opts);
  const int64_t n = d_gate.numel();
  if (n == 0) return {d_gate, d_value};
  at::Tensor grad = grad_in.contiguous(), hg = h_gate_in.contiguous(), hv = h_value_in.contiguous();
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, d_gate.scalar_type(), "self_guided_backward_cuda", [&] {
    self_guided_backward_kernel<scalar_t><<<blocks_for(n), kThreads, 0, stream>>>(
        grad.const_data_ptr<scalar_t>(), hg.const_data_ptr<scalar_t>(), hv.const_data_ptr<scalar_t>(),
        d_gate.mutable_data_ptr<scalar_t>(), d_value.mutable_data_ptr<scalar_t>(), n);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {d_gate, d_value};
}

}  // namespace

TORCH_LIBRARY_IMPL(vgops, CUDA, m) {
  m.impl("cross_gate", &cross_gate_cuda);
  m.impl("_cross_gate_backward", &cross_gate_backward_cuda);
  m.impl("self_guided", &self_guided_cuda);
  m.impl("_self_guided_backward", &self_guided_backward_cuda);
}

}  // namespace vgops
