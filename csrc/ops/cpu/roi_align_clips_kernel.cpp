// CPU kernels of roi_align_clips, roi_align_clips_multiscale and their backward; the math is in
// ../roi_align_clips.h (shared with the CUDA kernels) and roi_align_table.h.
//
// Per box, the two axes' weight tables are built once; then every channel is two small passes
// (rows: tmp[w] = sum_h Wy[ph, h] * f[h, w], vectorised over w; columns: sum_w Wx[pw, w] * tmp[w]).
// The backward is the exact transpose. Work is split over (box, channel chunk) in the forward and
// (frame, channel chunk) in the backward: each task owns its output slice and adds the boxes of a
// frame in order, so the results do not depend on the number of threads (deterministic).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "../checks.h"
#include "../roi_align_clips.h"
#include "roi_align_table.h"

namespace vgops {
namespace {

using roi::AxisTable;

// Channels per task: enough work per task to amortise the per-box tables, and enough tasks for
// every thread when there are few boxes.
int64_t channel_chunk(int64_t tasks_without_split, int64_t C) {
  const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
  const int64_t want_chunks = std::max<int64_t>(1, (4 * threads + tasks_without_split - 1) / std::max<int64_t>(tasks_without_split, 1));
  return std::max<int64_t>(1, std::min<int64_t>(C, std::max<int64_t>(16, (C + want_chunks - 1) / want_chunks)));
}

// Prefetch the rows [h0, h1) x columns [w0, w0 + n) of a plane (row stride W). The forward reads a
// few short rows of each of C planes H*W apart: without prefetching it waits on memory latency.
template <typename scalar_t>
inline void prefetch_rows(const scalar_t* plane, int64_t W, int64_t h0, int64_t h1, int64_t w0, int64_t n) {
#if defined(__GNUC__) || defined(__clang__)
  constexpr int64_t kLine = 64 / sizeof(scalar_t);
  for (int64_t h = h0; h < h1; ++h) {
    const scalar_t* row = plane + h * W + w0;
    for (int64_t j = 0; j < n; j += kLine) __builtin_prefetch(row + j, 0, 3);
    __builtin_prefetch(row + n - 1, 0, 3);
  }
#endif
}

// Tasks per thread at least: a parallel region costs far more than a small problem (and an
// oversubscribed machine makes its barrier slower still), so small inputs run on one thread.
int64_t grain_for(int64_t work_per_task) {
  constexpr int64_t kMinWork = 1 << 15;
  return std::max<int64_t>(1, kMinWork / std::max<int64_t>(work_per_task, 1));
}

// One level: features [F, C, H, W] (F = B*T frames), boxes [F*R, 4] in T, valid [F] or null;
// out points at this level's slice of box 0, box n's slice at out + n * out_box_stride, laid out
// [C, ph, pw].
template <typename scalar_t>
void forward_level(const scalar_t* feat, const at::opmath_type<scalar_t>* boxes, const bool* valid, scalar_t* out,
                   int64_t F, int64_t R, int64_t C, int64_t H, int64_t W, int64_t ph_n, int64_t pw_n,
                   at::opmath_type<scalar_t> scale, int64_t sampling_ratio, bool aligned, int64_t out_box_stride) {
  using T = at::opmath_type<scalar_t>;
  const int64_t NB = F * R;
  const int64_t cch = channel_chunk(NB, C);
  const int64_t chunks = (C + cch - 1) / cch;
  const int64_t plane = H * W, oplane = ph_n * pw_n;
  at::parallel_for(0, NB * chunks, grain_for(cch * oplane * 8), [&](int64_t begin, int64_t end) {
    AxisTable<T> ty, tx;
    T inv_count = T(1);
    std::vector<T> tmp;
    int64_t cached = -1;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / chunks, c0 = (task % chunks) * cch, c1 = std::min(C, c0 + cch);
      const int64_t f = n / R;
      scalar_t* o = out + n * out_box_stride;
      if (valid != nullptr && !valid[f]) {
        std::fill(o + c0 * oplane, o + c1 * oplane, scalar_t(0));
        continue;
      }
      if (n != cached) {
        const roi::Box<T> box = roi::make_box<T>(boxes + 4 * n, scale, aligned, ph_n, pw_n, sampling_ratio);
        ty.build(box.y, ph_n, H);
        tx.build(box.x, pw_n, W);
        inv_count = T(1) / box.count;
        tmp.assign(static_cast<size_t>(tx.span), T(0));
        cached = n;
      }
      const int64_t span = tx.span;
      constexpr int64_t kAhead = 4;  // channels prefetched ahead
      if (span > 0) {
        for (int64_t c = c0; c < std::min(c1, c0 + kAhead); ++c)
          prefetch_rows(feat + (f * C + c) * plane, W, ty.u0, ty.u0 + ty.span, tx.u0, span);
      }
      for (int64_t c = c0; c < c1; ++c) {
        const scalar_t* fp = feat + (f * C + c) * plane;
        scalar_t* oc = o + c * oplane;
        if (span > 0 && c + kAhead < c1) prefetch_rows(fp + kAhead * plane, W, ty.u0, ty.u0 + ty.span, tx.u0, span);
        for (int64_t ph = 0; ph < ph_n; ++ph) {
          scalar_t* orow = oc + ph * pw_n;
          if (ty.lo[ph] >= ty.hi[ph] || span == 0) {
            std::fill(orow, orow + pw_n, scalar_t(0));
            continue;
          }
          // Row pass: t[j] = sum_h Wy[ph, h] * f[h, u0 + j], vectorised over j.
          T* t = tmp.data();
          std::fill(t, t + span, T(0));
          const T* wy = ty.row(ph) - ty.u0;
          for (int64_t h = ty.lo[ph]; h < ty.hi[ph]; ++h) {
            const T a = wy[h];
            const scalar_t* src = fp + h * W + tx.u0;
            for (int64_t j = 0; j < span; ++j) t[j] += a * static_cast<T>(src[j]);
          }
          // Column pass: out[pw] = sum_w Wx[pw, w] * t[w] / count.
          for (int64_t pw = 0; pw < pw_n; ++pw) {
            const T* wx = tx.row(pw) - tx.u0;
            T acc = T(0);
            for (int64_t w = tx.lo[pw]; w < tx.hi[pw]; ++w) acc += wx[w] * t[w - tx.u0];
            orow[pw] = static_cast<scalar_t>(acc * inv_count);
          }
        }
      }
    }
  });
}

// Backward of one level: grad points at this level's slice of box 0 (box n at + n * grad_box_stride,
// laid out [C, ph, pw]); writes every element of gin [F, C, H, W] exactly once. Per channel the
// frame's boxes are added into a plane buffer in T (cache-resident), in box order, then the plane
// is stored: no zero-fill pass over gin and no read-modify-write of it.
template <typename scalar_t>
void backward_level(const scalar_t* grad, const at::opmath_type<scalar_t>* boxes, const bool* valid, scalar_t* gin,
                    int64_t F, int64_t R, int64_t C, int64_t H, int64_t W, int64_t ph_n, int64_t pw_n,
                    at::opmath_type<scalar_t> scale, int64_t sampling_ratio, bool aligned, int64_t grad_box_stride) {
  using T = at::opmath_type<scalar_t>;
  const int64_t cch = channel_chunk(F, C);
  const int64_t chunks = (C + cch - 1) / cch;
  const int64_t plane = H * W, oplane = ph_n * pw_n;
  at::parallel_for(0, F * chunks, grain_for(cch * (plane + R * oplane * 8)), [&](int64_t begin, int64_t end) {
    std::vector<AxisTable<T>> ty(static_cast<size_t>(R)), tx(static_cast<size_t>(R));
    std::vector<T> inv_count(static_cast<size_t>(R)), tmp, buffer(static_cast<size_t>(plane));
    int64_t built = -1;  // frame whose tables are built
    for (int64_t task = begin; task < end; ++task) {
      const int64_t f = task / chunks, c0 = (task % chunks) * cch, c1 = std::min(C, c0 + cch);
      const bool frame_valid = valid == nullptr || valid[f];
      if (frame_valid && built != f) {
        int64_t span_max = 0;
        for (int64_t r = 0; r < R; ++r) {
          const roi::Box<T> box = roi::make_box<T>(boxes + 4 * (f * R + r), scale, aligned, ph_n, pw_n, sampling_ratio);
          ty[r].build(box.y, ph_n, H);
          tx[r].build(box.x, pw_n, W);
          inv_count[r] = T(1) / box.count;
          span_max = std::max(span_max, tx[r].span);
        }
        tmp.resize(static_cast<size_t>(span_max));
        built = f;
      }
      for (int64_t c = c0; c < c1; ++c) {
        T* dp = buffer.data();
        std::fill(dp, dp + plane, T(0));
        for (int64_t r = 0; r < R && frame_valid; ++r) {
          const AxisTable<T>& y = ty[r];
          const AxisTable<T>& x = tx[r];
          const int64_t span = x.span;
          if (y.span == 0 || span == 0) continue;
          const scalar_t* gp = grad + (f * R + r) * grad_box_stride + c * oplane;
          T* t = tmp.data();
          for (int64_t ph = 0; ph < ph_n; ++ph) {
            if (y.lo[ph] >= y.hi[ph]) continue;
            std::fill(t, t + span, T(0));
            for (int64_t pw = 0; pw < pw_n; ++pw) {
              const T g = static_cast<T>(gp[ph * pw_n + pw]) * inv_count[r];
              const T* wx = x.row(pw) - x.u0;
              for (int64_t w = x.lo[pw]; w < x.hi[pw]; ++w) t[w - x.u0] += g * wx[w];
            }
            const T* wy = y.row(ph) - y.u0;
            for (int64_t h = y.lo[ph]; h < y.hi[ph]; ++h) {
              const T a = wy[h];
              T* drow = dp + h * W + x.u0;
              for (int64_t j = 0; j < span; ++j) drow[j] += a * t[j];
            }
          }
        }
        scalar_t* out = gin + (f * C + c) * plane;
        for (int64_t i = 0; i < plane; ++i) out[i] = static_cast<scalar_t>(dp[i]);
      }
    }
  });
}

// Shared by roi_align_clips (one level, output [B, T, R, C, ph, pw]) and roi_align_clips_multiscale
// (output [B, T, R, L, C, ph, pw]); the layouts agree for L = 1.
at::Tensor forward_cpu(const char* op, at::TensorList features, const at::Tensor& boxes_in,
                       const std::optional<at::Tensor>& valid_in, int64_t ph_n, int64_t pw_n,
                       at::ArrayRef<double> scales, int64_t sampling_ratio, bool aligned, bool level_axis) {
  check_roi_align_clips_inputs(op, features, boxes_in, valid_in, ph_n, pw_n, scales.size());
  const at::Tensor& f0 = features[0];
  const int64_t B = f0.size(0), Tn = f0.size(1), C = f0.size(2), R = boxes_in.size(2);
  const int64_t L = static_cast<int64_t>(features.size());
  std::vector<int64_t> shape = {B, Tn, R};
  if (level_axis) shape.push_back(L);
  shape.insert(shape.end(), {C, ph_n, pw_n});
  at::Tensor out = at::empty(shape, f0.options().memory_format(at::MemoryFormat::Contiguous));
  if (out.numel() == 0) return out;
  const at::Tensor boxes = boxes_in.to(at::toOpMathType(f0.scalar_type())).contiguous();
  const at::Tensor valid = valid_in.has_value() ? valid_in->contiguous() : at::Tensor();
  const int64_t box_stride = L * C * ph_n * pw_n;
  for (int64_t l = 0; l < L; ++l) {
    const at::Tensor feat = features[l].contiguous();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, feat.scalar_type(), "roi_align_clips_cpu", [&] {
      using T = at::opmath_type<scalar_t>;
      forward_level<scalar_t>(feat.const_data_ptr<scalar_t>(), boxes.const_data_ptr<T>(),
                              valid.defined() ? valid.const_data_ptr<bool>() : nullptr,
                              out.mutable_data_ptr<scalar_t>() + l * C * ph_n * pw_n, B * Tn, R, C, feat.size(3),
                              feat.size(4), ph_n, pw_n, static_cast<T>(scales[l]), sampling_ratio, aligned,
                              box_stride);
    });
  }
  return out;
}

std::vector<at::Tensor> backward_cpu(const char* op, const at::Tensor& grad_in, const at::Tensor& boxes_in,
                                     const std::optional<at::Tensor>& valid_in, at::IntArrayRef heights,
                                     at::IntArrayRef widths, at::ArrayRef<double> scales, int64_t sampling_ratio,
                                     bool aligned) {
  check_roi_align_clips_backward_inputs(op, grad_in, boxes_in, valid_in, heights, widths, scales.size());
  const int64_t B = grad_in.size(0), Tn = grad_in.size(1), R = grad_in.size(2), L = grad_in.size(3);
  const int64_t C = grad_in.size(4), ph_n = grad_in.size(5), pw_n = grad_in.size(6);
  std::vector<at::Tensor> grads;
  for (int64_t l = 0; l < L; ++l) grads.push_back(at::empty({B, Tn, C, heights[l], widths[l]}, grad_in.options()));
  const at::Tensor grad = grad_in.contiguous();
  const at::Tensor boxes = boxes_in.to(at::toOpMathType(grad.scalar_type())).contiguous();
  const at::Tensor valid = valid_in.has_value() ? valid_in->contiguous() : at::Tensor();
  const int64_t box_stride = L * C * ph_n * pw_n;
  for (int64_t l = 0; l < L; ++l) {
    if (grads[l].numel() == 0) continue;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "roi_align_clips_backward_cpu", [&] {
      using T = at::opmath_type<scalar_t>;
      backward_level<scalar_t>(grad.const_data_ptr<scalar_t>() + l * C * ph_n * pw_n, boxes.const_data_ptr<T>(),
                               valid.defined() ? valid.const_data_ptr<bool>() : nullptr,
                               grads[l].mutable_data_ptr<scalar_t>(), B * Tn, R, C, heights[l], widths[l], ph_n, pw_n,
                               static_cast<T>(scales[l]), sampling_ratio, aligned, box_stride);
    });
  }
  return grads;
}

at::Tensor roi_align_clips_cpu(const at::Tensor& features, const at::Tensor& boxes, int64_t pooled_height,
                               int64_t pooled_width, double spatial_scale, int64_t sampling_ratio, bool aligned,
                               const std::optional<at::Tensor>& valid) {
  return forward_cpu("roi_align_clips", {features}, boxes, valid, pooled_height, pooled_width, {spatial_scale},
                     sampling_ratio, aligned, /*level_axis=*/false);
}

at::Tensor roi_align_clips_backward_cpu(const at::Tensor& grad, const at::Tensor& boxes, int64_t height, int64_t width,
                                        double spatial_scale, int64_t sampling_ratio, bool aligned,
                                        const std::optional<at::Tensor>& valid) {
  TORCH_CHECK_VALUE(grad.dim() == 6, "_roi_align_clips_backward: grad must be [B, T, R, C, ph, pw], got shape ",
                    grad.sizes());
  return backward_cpu("_roi_align_clips_backward", grad.unsqueeze(3), boxes, valid, {height}, {width},
                      {spatial_scale}, sampling_ratio, aligned)[0];
}

at::Tensor roi_align_clips_multiscale_cpu(at::TensorList features, const at::Tensor& boxes, int64_t pooled_height,
                                          int64_t pooled_width, at::ArrayRef<double> spatial_scales,
                                          int64_t sampling_ratio, bool aligned,
                                          const std::optional<at::Tensor>& valid) {
  return forward_cpu("roi_align_clips_multiscale", features, boxes, valid, pooled_height, pooled_width,
                     spatial_scales, sampling_ratio, aligned, /*level_axis=*/true);
}

std::vector<at::Tensor> roi_align_clips_multiscale_backward_cpu(const at::Tensor& grad, const at::Tensor& boxes,
                                                                c10::SymIntArrayRef heights, c10::SymIntArrayRef widths,
                                                                at::ArrayRef<double> spatial_scales,
                                                                int64_t sampling_ratio, bool aligned,
                                                                const std::optional<at::Tensor>& valid) {
  return backward_cpu("_roi_align_clips_multiscale_backward", grad, boxes, valid, C10_AS_INTARRAYREF_SLOW(heights),
                      C10_AS_INTARRAYREF_SLOW(widths), spatial_scales, sampling_ratio, aligned);
}

}  // namespace

TORCH_LIBRARY_IMPL(vgops, CPU, m) {
  m.impl("roi_align_clips", &roi_align_clips_cpu);
  m.impl("_roi_align_clips_backward", &roi_align_clips_backward_cpu);
  m.impl("roi_align_clips_multiscale", &roi_align_clips_multiscale_cpu);
  m.impl("_roi_align_clips_multiscale_backward", &roi_align_clips_multiscale_backward_cpu);
}

}  // namespace vgops
