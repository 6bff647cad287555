// CUDA kernels of roi_align_clips, roi_align_clips_multiscale and their backward; the math is in
// ../roi_align_clips.h (shared with the CPU kernels, so the CPU tests check it).
//
// Forward: one thread per output element (box, c, ph, pw), pool_bin. Backward, two kernels:
//   * default: one thread per output-gradient element scattering with atomicAdd into a float32
//     (float64 for double) buffer, as torchvision does;
//   * under torch.use_deterministic_algorithms(True): one thread per input pixel (b, t, c, h, w)
//     gathering from the boxes of its frame (gather_pixel: no atomics, a fixed order), writing
//     every element once, so it needs no zero-filled buffer and no extra memory.
// All index arithmetic is int64 (B*T*C*H*W can pass 2^31); launches go on the current stream.
#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/Atomic.cuh>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <vector>

#include "../checks.h"
#include "../roi_align_clips.h"

namespace vgops {
namespace {

constexpr int kThreads = 256;

inline int blocks_for(int64_t n) {
  return static_cast<int>(std::min<int64_t>((n + kThreads - 1) / kThreads, 65535LL * 16));
}

// One level. feat [F, C, H, W]; boxes [F*R, 4] in T; valid [F] or null; out + n * out_box_stride
// is box n's [C, ph, pw] slice of this level.
template <typename scalar_t>
__global__ void roi_align_clips_forward_kernel(const scalar_t* __restrict__ feat,
                                               const at::opmath_type<scalar_t>* __restrict__ boxes,
                                               const bool* __restrict__ valid, scalar_t* __restrict__ out,
                                               int64_t NB, int64_t R, int64_t C, int64_t H, int64_t W, int64_t ph_n,
                                               int64_t pw_n, at::opmath_type<scalar_t> scale, int64_t sampling_ratio,
                                               bool aligned, int64_t out_box_stride) {
  using T = at::opmath_type<scalar_t>;
  const int64_t per_box = C * ph_n * pw_n;
  const int64_t total = NB * per_box;
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < total;
       idx += (int64_t)gridDim.x * blockDim.x) {
    const int64_t pw = idx % pw_n;
    const int64_t ph = (idx / pw_n) % ph_n;
    const int64_t c = (idx / (pw_n * ph_n)) % C;
    const int64_t n = idx / per_box;
    const int64_t f = n / R;
    T value = T(0);
    if (valid == nullptr || valid[f]) {
      const roi::Box<T> box = roi::make_box<T>(boxes + 4 * n, scale, aligned, ph_n, pw_n, sampling_ratio);
      value = roi::pool_bin<T>(feat + (f * C + c) * H * W, H, W, box, ph, pw);
    }
    out[n * out_box_stride + idx % per_box] = static_cast<scalar_t>(value);
  }
}

// Atomic backward of one level: grad + n * grad_box_stride is box n's [C, ph, pw] slice;
// gin [F, C, H, W] in the accumulation type T, zero-filled.
template <typename scalar_t>
__global__ void roi_align_clips_backward_atomic_kernel(const scalar_t* __restrict__ grad,
                                                       const at::opmath_type<scalar_t>* __restrict__ boxes,
                                                       const bool* __restrict__ valid,
                                                       at::opmath_type<scalar_t>* __restrict__ gin, int64_t NB,
                                                       int64_t R, int64_t C, int64_t H, int64_t W, int64_t ph_n,
                                                       int64_t pw_n, at::opmath_type<scalar_t> scale,
                                                       int64_t sampling_ratio, bool aligned, int64_t grad_box_stride) {
  using T = at::opmath_type<scalar_t>;
  const int64_t per_box = C * ph_n * pw_n;
  const int64_t total = NB * per_box;
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < total;
       idx += (int64_t)gridDim.x * blockDim.x) {
    const int64_t pw = idx % pw_n;
    const int64_t ph = (idx / pw_n) % ph_n;
    const int64_t c = (idx / (pw_n * ph_n)) % C;
    const int64_t n = idx / per_box;
    const int64_t f = n / R;
    if (valid != nullptr && !valid[f]) continue;
    const T g = static_cast<T>(grad[n * grad_box_stride + idx % per_box]);
    const roi::Box<T> box = roi::make_box<T>(boxes + 4 * n, scale, aligned, ph_n, pw_n, sampling_ratio);
    T* plane = gin + (f * C + c) * H * W;
    roi::scatter_bin<T>(H, W, box, ph, pw, g, [&](int64_t offset, T v) { gpuAtomicAdd(plane + offset, v); });
  }
}

// Deterministic backward of one level: one thread per element of gin [F, C, H, W].
template <typename scalar_t>
__global__ void roi_align_clips_backward_gather_kernel(const scalar_t* __restrict__ grad,
                                                       const at::opmath_type<scalar_t>* __restrict__ boxes,
                                                       const bool* __restrict__ valid, scalar_t* __restrict__ gin,
                                                       int64_t F, int64_t R, int64_t C, int64_t H, int64_t W,
                                                       int64_t ph_n, int64_t pw_n, at::opmath_type<scalar_t> scale,
                                                       int64_t sampling_ratio, bool aligned, int64_t grad_box_stride) {
  using T = at::opmath_type<scalar_t>;
  const int64_t total = F * C * H * W;
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < total;
       idx += (int64_t)gridDim.x * blockDim.x) {
    const int64_t w = idx % W;
    const int64_t h = (idx / W) % H;
    const int64_t c = (idx / (W * H)) % C;
    const int64_t f = idx / (C * H * W);
    T acc = T(0);
    if (valid == nullptr || valid[f]) {
      for (int64_t r = 0; r < R; ++r) {
        const int64_t n = f * R + r;
        const roi::Box<T> box = roi::make_box<T>(boxes + 4 * n, scale, aligned, ph_n, pw_n, sampling_ratio);
        acc += roi::gather_pixel<T>(grad + n * grad_box_stride + c * ph_n * pw_n, ph_n, pw_n, H, W, box, h, w);
      }
    }
    gin[idx] = static_cast<scalar_t>(acc);
  }
}

at::Tensor forward_cuda(const char* op, at::TensorList features, const at::Tensor& boxes_in,
                        const std::optional<at::Tensor>& valid_in, int64_t ph_n, int64_t pw_n,
                        at::ArrayRef<double> scales, int64_t sampling_ratio, bool aligned, bool level_axis) {
  check_roi_align_clips_inputs(op, features, boxes_in, valid_in, ph_n, pw_n, scales.size());
  const at::Tensor& f0 = features[0];
  c10::cuda::CUDAGuard guard(f0.device());
  const int64_t B = f0.size(0), Tn = f0.size(1), C = f0.size(2), R = boxes_in.size(2);
  const int64_t L = static_cast<int64_t>(features.size());
  std::vector<int64_t> shape = {B, Tn, R};
  if (level_axis) shape.push_back(L);
  shape.insert(shape.end(), {C, ph_n, pw_n});
  at::Tensor out = at::empty(shape, f0.options().memory_format(at::MemoryFormat::Contiguous));
  if (out.numel() == 0) return out;
  const at::Tensor boxes = boxes_in.to(at::toOpMathType(f0.scalar_type())).contiguous();
  const at::Tensor valid = valid_in.has_value() ? valid_in->contiguous() : at::Tensor();
  const int64_t NB = B * Tn * R, box_stride = L * C * ph_n * pw_n;
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  for (int64_t l = 0; l < L; ++l) {
    const at::Tensor feat = features[l].contiguous();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, feat.scalar_type(), "roi_align_clips_cuda", [&] {
      using T = at::opmath_type<scalar_t>;
      roi_align_clips_forward_kernel<scalar_t><<<blocks_for(NB * C * ph_n * pw_n), kThreads, 0, stream>>>(
          feat.const_data_ptr<scalar_t>(), boxes.const_data_ptr<T>(),
          valid.defined() ? valid.const_data_ptr<bool>() : nullptr,
          out.mutable_data_ptr<scalar_t>() + l * C * ph_n * pw_n, NB, R, C, feat.size(3), feat.size(4), ph_n, pw_n,
          static_cast<T>(scales[l]), sampling_ratio, aligned, box_stride);
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return out;
}

std::vector<at::Tensor> backward_cuda(const char* op, const at::Tensor& grad_in, const at::Tensor& boxes_in,
                                      const std::optional<at::Tensor>& valid_in, at::IntArrayRef heights,
                                      at::IntArrayRef widths, at::ArrayRef<double> scales, int64_t sampling_ratio,
                                      bool aligned) {
  check_roi_align_clips_backward_inputs(op, grad_in, boxes_in, valid_in, heights, widths, scales.size());
  c10::cuda::CUDAGuard guard(grad_in.device());
  const int64_t B = grad_in.size(0), Tn = grad_in.size(1), R = grad_in.size(2), L = grad_in.size(3);
  const int64_t C = grad_in.size(4), ph_n = grad_in.size(5), pw_n = grad_in.size(6);
  const int64_t F = B * Tn, NB = F * R, box_stride = L * C * ph_n * pw_n;
  const at::Tensor grad = grad_in.contiguous();
  const at::ScalarType acc_type = at::toOpMathType(grad.scalar_type());
  const at::Tensor boxes = boxes_in.to(acc_type).contiguous();
  const at::Tensor valid = valid_in.has_value() ? valid_in->contiguous() : at::Tensor();
  const bool deterministic = at::globalContext().deterministicAlgorithms();
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  std::vector<at::Tensor> grads;
  for (int64_t l = 0; l < L; ++l) {
    const int64_t H = heights[l], W = widths[l];
    if (deterministic || NB * C == 0 || H * W == 0) {
      at::Tensor gin = at::empty({B, Tn, C, H, W}, grad.options());
      if (gin.numel() > 0) {
        AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(),
                                        "roi_align_clips_backward_gather_cuda", [&] {
          using T = at::opmath_type<scalar_t>;
          roi_align_clips_backward_gather_kernel<scalar_t><<<blocks_for(gin.numel()), kThreads, 0, stream>>>(
              grad.const_data_ptr<scalar_t>() + l * C * ph_n * pw_n, boxes.const_data_ptr<T>(),
              valid.defined() ? valid.const_data_ptr<bool>() : nullptr, gin.mutable_data_ptr<scalar_t>(), F, R, C, H,
              W, ph_n, pw_n, static_cast<T>(scales[l]), sampling_ratio, aligned, box_stride);
        });
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
      grads.push_back(gin);
      continue;
    }
    at::Tensor acc = at::zeros({B, Tn, C, H, W}, grad.options().dtype(acc_type));
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(),
                                    "roi_align_clips_backward_atomic_cuda", [&] {
      using T = at::opmath_type<scalar_t>;
      roi_align_clips_backward_atomic_kernel<scalar_t><<<blocks_for(NB * C * ph_n * pw_n), kThreads, 0, stream>>>(
          grad.const_data_ptr<scalar_t>() + l * C * ph_n * pw_n, boxes.const_data_ptr<T>(),
          valid.defined() ? valid.const_data_ptr<bool>() : nullptr, acc.mutable_data_ptr<T>(), NB, R, C, H, W, ph_n,
          pw_n, static_cast<T>(scales[l]), sampling_ratio, aligned, box_stride);
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    grads.push_back(acc.scalar_type() == grad.scalar_type() ? acc : acc.to(grad.scalar_type()));
  }
  return grads;
}

at::Tensor roi_align_clips_cuda(const at::Tensor& features, const at::Tensor& boxes, int64_t pooled_height,
                                int64_t pooled_width, double spatial_scale, int64_t sampling_ratio, bool aligned,
                                const std::optional<at::Tensor>& valid) {
  return forward_cuda("roi_align_clips", {features}, boxes, valid, pooled_height, pooled_width, {spatial_scale},
                      sampling_ratio, aligned, /*level_axis=*/false);
}

at::Tensor roi_align_clips_backward_cuda(const at::Tensor& grad, const at::Tensor& boxes, int64_t height,
                                         int64_t width, double spatial_scale, int64_t sampling_ratio, bool aligned,
                                         const std::optional<at::Tensor>& valid) {
  TORCH_CHECK_VALUE(grad.dim() == 6, "_roi_align_clips_backward: grad must be [B, T, R, C, ph, pw], got shape ",
                    grad.sizes());
  return backward_cuda("_roi_align_clips_backward", grad.unsqueeze(3), boxes, valid, {height}, {width},
                       {spatial_scale}, sampling_ratio, aligned)[0];
}

at::Tensor roi_align_clips_multiscale_cuda(at::TensorList features, const at::Tensor& boxes, int64_t pooled_height,
                                           int64_t pooled_width, at::ArrayRef<double> spatial_scales,
                                           int64_t sampling_ratio, bool aligned,
                                           const std::optional<at::Tensor>& valid) {
  return forward_cuda("roi_align_clips_multiscale", features, boxes, valid, pooled_height, pooled_width,
                      spatial_scales, sampling_ratio, aligned, /*level_axis=*/true);
}

std::vector<at::Tensor> roi_align_clips_multiscale_backward_cuda(const at::Tensor& grad, const at::Tensor& boxes,
                                                                 c10::SymIntArrayRef heights,
                                                                 c10::SymIntArrayRef widths,
                                                                 at::ArrayRef<double> spatial_scales,
                                                                 int64_t sampling_ratio, bool aligned,
                                                                 const std::optional<at::Tensor>& valid) {
  return backward_cuda("_roi_align_clips_multiscale_backward", grad, boxes, valid, C10_AS_INTARRAYREF_SLOW(heights),
                       C10_AS_INTARRAYREF_SLOW(widths), spatial_scales, sampling_ratio, aligned);
}

}  // namespace

TORCH_LIBRARY_IMPL(vgops, CUDA, m) {
  m.impl("roi_align_clips", &roi_align_clips_cuda);
  m.impl("_roi_align_clips_backward", &roi_align_clips_backward_cuda);
  m.impl("roi_align_clips_multiscale", &roi_align_clips_multiscale_cuda);
  m.impl("_roi_align_clips_multiscale_backward", &roi_align_clips_multiscale_backward_cuda);
}

}  // namespace vgops
