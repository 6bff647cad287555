#pragma once
// Input checks shared by the kernels of every op. The public Python functions check first with
// friendlier messages; these keep direct torch.ops.vgops.* callers (and C++ users) in bounds.
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <optional>

namespace vgops {

inline void check_segments(const at::Tensor& t, const char* op, const char* name, int64_t dim) {
  TORCH_CHECK_VALUE(t.dim() == dim && t.size(-1) == 2, op, ": ", name, " must be a ", dim,
                    "-d tensor of (start, end) segments [..., 2], got shape ", t.sizes());
  TORCH_CHECK_VALUE(at::isFloatingType(t.scalar_type()), op, ": ", name,
                    " must be floating point, got ", t.scalar_type());
}

inline void check_same_device_dtype(const at::Tensor& a, const at::Tensor& b, const char* op,
                                    const char* na, const char* nb) {
  TORCH_CHECK_VALUE(a.device() == b.device(), op, ": ", na, " and ", nb,
                    " must be on the same device, got ", a.device(), " and ", b.device());
  TORCH_CHECK_VALUE(a.scalar_type() == b.scalar_type(), op, ": ", na, " and ", nb,
                    " must have the same dtype, got ", a.scalar_type(), " and ", b.scalar_type());
}

// Shapes of temporal_iou's inputs: a [B, N, 2] with b [B, M, 2] (pairwise) or b [B, N, 2]
// (aligned).
inline void check_temporal_iou_inputs(const at::Tensor& a, const at::Tensor& b, bool aligned) {
  const char* op = "temporal_iou";
  check_segments(a, op, "a", 3);
  check_segments(b, op, "b", 3);
  check_same_device_dtype(a, b, op, "a", "b");
  TORCH_CHECK_VALUE(a.size(0) == b.size(0), op, ": a and b must have the same batch size, got ",
                    a.sizes(), " and ", b.sizes());
  if (aligned) {
    TORCH_CHECK_VALUE(a.size(1) == b.size(1), op,
                      ": aligned=True needs the same number of segments in a and b, got ",
                      a.sizes(), " and ", b.sizes());
  }
}


// roi_align_clips (one level) and roi_align_clips_multiscale (every level): features [B, T, C, H, W]
// (levels agree on B, T, C, dtype and device), boxes [B, T, R, 4] floating on the same device,
// valid [B, T] bool or none, positive pooled sizes, one spatial scale per level.
inline void check_roi_align_clips_inputs(const char* op, at::TensorList features, const at::Tensor& boxes,
                                         const std::optional<at::Tensor>& valid, int64_t pooled_h,
                                         int64_t pooled_w, size_t n_scales) {
  TORCH_CHECK_VALUE(!features.empty(), op, ": features must hold at least one level, got none");
  TORCH_CHECK_VALUE(n_scales == features.size(), op, ": expected one spatial scale per level (",
                    features.size(), " levels), got ", n_scales);
  const at::Tensor& f0 = features[0];
  for (size_t l = 0; l < features.size(); ++l) {
    const at::Tensor& f = features[l];
    TORCH_CHECK_VALUE(f.dim() == 5, op, ": features must be 5-d [B, T, C, H, W], got shape ", f.sizes(),
                      " (level ", l, ")");
    TORCH_CHECK_VALUE(at::isFloatingType(f.scalar_type()), op, ": features must be floating point, got ",
                      f.scalar_type(), " (level ", l, ")");
    TORCH_CHECK_VALUE(f.device() == f0.device() && f.scalar_type() == f0.scalar_type(), op,
                      ": every level must have the dtype and device of level 0, got ", f.scalar_type(), " on ",
                      f.device(), " and ", f0.scalar_type(), " on ", f0.device(), " (level ", l, ")");
    TORCH_CHECK_VALUE(f.size(0) == f0.size(0) && f.size(1) == f0.size(1) && f.size(2) == f0.size(2), op,
                      ": every level must have the B, T and C of level 0, got ", f.sizes(), " and ", f0.sizes(),
                      " (level ", l, ")");
  }
  TORCH_CHECK_VALUE(boxes.dim() == 4 && boxes.size(-1) == 4, op, ": boxes must be [B, T, R, 4], got shape ",
                    boxes.sizes());
  TORCH_CHECK_VALUE(boxes.size(0) == f0.size(0) && boxes.size(1) == f0.size(1), op,
                    ": boxes [B, T, R, 4] must match features [B, T, ...] in B and T, got ", boxes.sizes(), " and ",
                    f0.sizes());
  TORCH_CHECK_VALUE(at::isFloatingType(boxes.scalar_type()), op, ": boxes must be floating point, got ",
                    boxes.scalar_type());
  TORCH_CHECK_VALUE(boxes.device() == f0.device(), op, ": boxes must be on the device of features, got ",
                    boxes.device(), " and ", f0.device());
  if (valid.has_value()) {
    const at::Tensor& v = *valid;
    TORCH_CHECK_VALUE(v.scalar_type() == at::kBool && v.dim() == 2 && v.size(0) == f0.size(0) &&
                          v.size(1) == f0.size(1),
                      op, ": valid must be a bool tensor [B, T] = [", f0.size(0), ", ", f0.size(1), "], got ",
                      v.scalar_type(), " of shape ", v.sizes());
    TORCH_CHECK_VALUE(v.device() == f0.device(), op, ": valid must be on the device of features, got ",
                      v.device(), " and ", f0.device());
  }
  TORCH_CHECK_VALUE(pooled_h > 0 && pooled_w > 0, op, ": the output size must be positive, got (", pooled_h, ", ",
                    pooled_w, ")");
}

// Backward of roi_align_clips(_multiscale): grad [B, T, R, L, C, ph, pw] (L = number of levels) of
// the boxes' B, T, R; heights and widths of the L levels non-negative.
inline void check_roi_align_clips_backward_inputs(const char* op, const at::Tensor& grad, const at::Tensor& boxes,
                                                  const std::optional<at::Tensor>& valid, at::IntArrayRef heights,
                                                  at::IntArrayRef widths, size_t n_scales) {
  const size_t L = heights.size();
  TORCH_CHECK_VALUE(L > 0 && widths.size() == L && n_scales == L, op,
                    ": heights, widths and spatial scales must have one entry per level, got ", heights.size(), ", ",
                    widths.size(), " and ", n_scales);
  TORCH_CHECK_VALUE(grad.dim() == 7 && boxes.dim() == 4 && boxes.size(-1) == 4 && grad.size(0) == boxes.size(0) &&
                        grad.size(1) == boxes.size(1) && grad.size(2) == boxes.size(2) &&
                        grad.size(3) == static_cast<int64_t>(L),
                    op, ": grad must be [B, T, R, L, C, ph, pw] for boxes [B, T, R, 4] and ", L, " levels, got ",
                    grad.sizes(), " and ", boxes.sizes());
  TORCH_CHECK_VALUE(at::isFloatingType(grad.scalar_type()) && at::isFloatingType(boxes.scalar_type()), op,
                    ": grad and boxes must be floating point, got ", grad.scalar_type(), " and ", boxes.scalar_type());
  TORCH_CHECK_VALUE(boxes.device() == grad.device(), op, ": boxes must be on the device of grad, got ",
                    boxes.device(), " and ", grad.device());
  for (size_t l = 0; l < L; ++l) {
    TORCH_CHECK_VALUE(heights[l] >= 0 && widths[l] >= 0, op, ": heights and widths must be >= 0, got ", heights[l],
                      " and ", widths[l], " (level ", l, ")");
  }
  if (valid.has_value()) {
    const at::Tensor& v = *valid;
    TORCH_CHECK_VALUE(v.scalar_type() == at::kBool && v.dim() == 2 && v.size(0) == grad.size(0) &&
                          v.size(1) == grad.size(1) && v.device() == grad.device(),
                      op, ": valid must be a bool tensor [B, T] on the device of grad, got ", v.scalar_type(),
                      " of shape ", v.sizes(), " on ", v.device());
  }
}

// roi_align_1d: features [B, C, T] floating, segments [K, 3] (batch index, start, end) floating on
// the same device, output_len > 0.
inline void check_roi_align_1d_inputs(const at::Tensor& features, const at::Tensor& segments, int64_t output_len) {
  const char* op = "roi_align_1d";
  TORCH_CHECK_VALUE(features.dim() == 3, op, ": features must be 3-d [B, C, T], got shape ", features.sizes());
  TORCH_CHECK_VALUE(at::isFloatingType(features.scalar_type()), op, ": features must be floating point, got ",
                    features.scalar_type());
  TORCH_CHECK_VALUE(segments.dim() == 2 && segments.size(1) == 3, op,
                    ": segments must be [K, 3] (batch index, start, end), got shape ", segments.sizes());
  TORCH_CHECK_VALUE(at::isFloatingType(segments.scalar_type()), op, ": segments must be floating point, got ",
                    segments.scalar_type());
  TORCH_CHECK_VALUE(segments.device() == features.device(), op,
                    ": segments must be on the device of features, got ", segments.device(), " and ",
                    features.device());
  TORCH_CHECK_VALUE(output_len > 0, op, ": output_len must be positive, got ", output_len);
}

inline void check_roi_align_1d_backward_inputs(const at::Tensor& grad, const at::Tensor& segments, int64_t batch,
                                               int64_t length) {
  const char* op = "_roi_align_1d_backward";
  TORCH_CHECK_VALUE(grad.dim() == 3 && segments.dim() == 2 && segments.size(1) == 3 &&
                        grad.size(0) == segments.size(0),
                    op, ": grad must be [K, C, L] for segments [K, 3], got ", grad.sizes(), " and ", segments.sizes());
  TORCH_CHECK_VALUE(at::isFloatingType(grad.scalar_type()) && at::isFloatingType(segments.scalar_type()), op,
                    ": grad and segments must be floating point, got ", grad.scalar_type(), " and ",
                    segments.scalar_type());
  TORCH_CHECK_VALUE(segments.device() == grad.device(), op, ": segments must be on the device of grad, got ",
                    segments.device(), " and ", grad.device());
  TORCH_CHECK_VALUE(batch >= 0 && length >= 0, op, ": batch_size and length must be >= 0, got ", batch, " and ",
                    length);
}

}  // namespace vgops
