// CUDA kernels of roi_align_1d and its backward; the math is in ../roi_align_1d.h (shared with the
// CPU kernels, so the CPU tests check it).
//
// Forward: one thread per output element (k, c, p), pool_bin_1d. Backward, two kernels:
//   * default: one thread per output-gradient element scattering with atomicAdd into a float32
//     (float64 for double) buffer;
//   * under torch.use_deterministic_algorithms(True): segments are grouped by batch element with a
//     stable sort (deterministic), and one thread per input element (b, c, t) gathers from the
//     segments of its batch element in index order (gather_index_1d: no atomics).
// Rows whose batch index is not in [0, B) are never read from or written to (the public function
// rejects them before the kernels; they give zeros here). int64 indexing; current stream.
#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/Atomic.cuh>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../checks.h"
#include "../roi_align_1d.h"

namespace vgops {
namespace {

constexpr int kThreads = 256;

inline int blocks_for(int64_t n) {
  return static_cast<int>(std::min<int64_t>((n + kThreads - 1) / kThreads, 65535LL * 16));
}

template <typename scalar_t>
__global__ void roi_align_1d_forward_kernel(const scalar_t* __restrict__ feat,
                                            const at::opmath_type<scalar_t>* __restrict__ seg,
                                            scalar_t* __restrict__ out, int64_t K, int64_t B, int64_t C, int64_t Tn,
                                            int64_t L, at::opmath_type<scalar_t> scale, int64_t sampling_ratio,
                                            bool aligned) {
  using T = at::opmath_type<scalar_t>;
  const int64_t total = K * C * L;
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < total;
       idx += (int64_t)gridDim.x * blockDim.x) {
    const int64_t p = idx % L;
    const int64_t c = (idx / L) % C;
    const int64_t k = idx / (L * C);
    const int64_t b = roi::segment_batch(seg[3 * k], B);
    T value = T(0);
    if (b >= 0) {
      const roi::Axis<T> a = roi::make_axis<T>(seg[3 * k + 1], seg[3 * k + 2], scale, aligned, L, sampling_ratio);
      value = roi::pool_bin_1d<T>(feat + (b * C + c) * Tn, Tn, a, p);
    }
    out[idx] = static_cast<scalar_t>(value);
  }
}

template <typename scalar_t>
__global__ void roi_align_1d_backward_atomic_kernel(const scalar_t* __restrict__ grad,
                                                    const at::opmath_type<scalar_t>* __restrict__ seg,
                                                    at::opmath_type<scalar_t>* __restrict__ gin, int64_t K, int64_t B,
                                                    int64_t C, int64_t Tn, int64_t L,
                                                    at::opmath_type<scalar_t> scale, int64_t sampling_ratio,
                                                    bool aligned) {
  using T = at::opmath_type<scalar_t>;
  const int64_t total = K * C * L;
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < total;
       idx += (int64_t)gridDim.x * blockDim.x) {
    const int64_t p = idx % L;
    const int64_t c = (idx / L) % C;
    const int64_t k = idx / (L * C);
    const int64_t b = roi::segment_batch(seg[3 * k], B);
    if (b < 0) continue;
    const roi::Axis<T> a = roi::make_axis<T>(seg[3 * k + 1], seg[3 * k + 2], scale, aligned, L, sampling_ratio);
    const T g = static_cast<T>(grad[idx]) / roi::axis_count(a);
    T* row = gin + (b * C + c) * Tn;
    roi::for_each_tap(a, p, Tn, [&](int64_t t, T w) { gpuAtomicAdd(row + t, w * g); });
  }
}

// order: segment indices sorted by batch element (stable); start[b] .. start[b + 1] the range of
// batch element b in it.
template <typename scalar_t>
__global__ void roi_align_1d_backward_gather_kernel(const scalar_t* __restrict__ grad,
                                                    const at::opmath_type<scalar_t>* __restrict__ seg,
                                                    const int64_t* __restrict__ order,
                                                    const int64_t* __restrict__ start, scalar_t* __restrict__ gin,
                                                    int64_t B, int64_t C, int64_t Tn, int64_t L,
                                                    at::opmath_type<scalar_t> scale, int64_t sampling_ratio,
                                                    bool aligned) {
  using T = at::opmath_type<scalar_t>;
  const int64_t total = B * C * Tn;
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < total;
       idx += (int64_t)gridDim.x * blockDim.x) {
    const int64_t t = idx % Tn;
    const int64_t c = (idx / Tn) % C;
    const int64_t b = idx / (Tn * C);
    T acc = T(0);
    for (int64_t j = start[b]; j < start[b + 1]; ++j) {
      const int64_t k = order[j];
      const roi::Axis<T> a = roi::make_axis<T>(seg[3 * k + 1], seg[3 * k + 2], scale, aligned, L, sampling_ratio);
      acc += roi::gather_index_1d<T>(grad + (k * C + c) * L, L, Tn, a, t);
    }
    gin[idx] = static_cast<scalar_t>(acc);
  }
}

at::Tensor roi_align_1d_cuda(const at::Tensor& features_in, const at::Tensor& segments_in, int64_t output_len,
                             double temporal_scale, int64_t sampling_ratio, bool aligned) {
  check_roi_align_1d_inputs(features_in, segments_in, output_len);
  c10::cuda::CUDAGuard guard(features_in.device());
  const int64_t B = features_in.size(0), C = features_in.size(1), Tn = features_in.size(2), K = segments_in.size(0);
  at::Tensor out = at::empty({K, C, output_len}, features_in.options().memory_format(at::MemoryFormat::Contiguous));
  if (out.numel() == 0) return out;
  const at::Tensor features = features_in.contiguous();
  const at::Tensor segments = segments_in.to(at::toOpMathType(features.scalar_type())).contiguous();
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, features.scalar_type(), "roi_align_1d_cuda", [&] {
    using T = at::opmath_type<scalar_t>;
    roi_align_1d_forward_kernel<scalar_t><<<blocks_for(out.numel()), kThreads, 0, stream>>>(
        features.const_data_ptr<scalar_t>(), segments.const_data_ptr<T>(), out.mutable_data_ptr<scalar_t>(), K, B, C,
        Tn, output_len, static_cast<T>(temporal_scale), sampling_ratio, aligned);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

at::Tensor roi_align_1d_backward_cuda(const at::Tensor& grad_in, const at::Tensor& segments_in, int64_t batch_size,
                                      int64_t length, double temporal_scale, int64_t sampling_ratio, bool aligned) {
  check_roi_align_1d_backward_inputs(grad_in, segments_in, batch_size, length);
  c10::cuda::CUDAGuard guard(grad_in.device());
  const int64_t K = grad_in.size(0), C = grad_in.size(1), L = grad_in.size(2), B = batch_size, Tn = length;
  const at::Tensor grad = grad_in.contiguous();
  const at::ScalarType acc_type = at::toOpMathType(grad.scalar_type());
  const at::Tensor segments = segments_in.to(acc_type).contiguous();
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  if (at::globalContext().deterministicAlgorithms() || K * C == 0) {
    at::Tensor gin = at::empty({B, C, Tn}, grad.options().memory_format(at::MemoryFormat::Contiguous));
    if (gin.numel() == 0) return gin;
    // Group the segments by batch element: invalid batch indices get key -1 (before every group).
    const at::Tensor bcol = segments.select(1, 0);
    const at::Tensor in_range = bcol.ge(0).logical_and(bcol.lt(static_cast<double>(B)));
    const at::Tensor key = at::where(in_range, bcol.trunc(), at::full({}, -1.0, bcol.options())).to(at::kLong);
    const auto sorted = at::sort(key, /*stable=*/true, /*dim=*/0, /*descending=*/false);
    const at::Tensor order = std::get<1>(sorted).contiguous();
    const at::Tensor start =
        at::searchsorted(std::get<0>(sorted), at::arange(B + 1, key.options())).contiguous();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "roi_align_1d_backward_gather_cuda",
                                    [&] {
      using T = at::opmath_type<scalar_t>;
      roi_align_1d_backward_gather_kernel<scalar_t><<<blocks_for(gin.numel()), kThreads, 0, stream>>>(
          grad.const_data_ptr<scalar_t>(), segments.const_data_ptr<T>(), order.const_data_ptr<int64_t>(),
          start.const_data_ptr<int64_t>(), gin.mutable_data_ptr<scalar_t>(), B, C, Tn, L,
          static_cast<T>(temporal_scale), sampling_ratio, aligned);
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return gin;
  }
  at::Tensor acc = at::zeros({B, C, Tn}, grad.options().dtype(acc_type));
  if (acc.numel() == 0) return acc.to(grad.scalar_type());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "roi_align_1d_backward_atomic_cuda",
                                  [&] {
    using T = at::opmath_type<scalar_t>;
    roi_align_1d_backward_atomic_kernel<scalar_t><<<blocks_for(grad.numel()), kThreads, 0, stream>>>(
        grad.const_data_ptr<scalar_t>(), segments.const_data_ptr<T>(), acc.mutable_data_ptr<T>(), K, B, C, Tn, L,
        static_cast<T>(temporal_scale), sampling_ratio, aligned);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return acc.scalar_type() == grad.scalar_type() ? acc : acc.to(grad.scalar_type());
}

}  // namespace

TORCH_LIBRARY_IMPL(vgops, CUDA, m) {
  m.impl("roi_align_1d", &roi_align_1d_cuda);
  m.impl("_roi_align_1d_backward", &roi_align_1d_backward_cuda);
}

}  // namespace vgops
