#pragma once
// Input checks shared by the kernels of every op. The public Python functions check first with
// friendlier messages; these keep direct torch.ops.vgops.* callers (and C++ users) in bounds.
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <c10/util/string_view.h>

#include <cmath>
#include <optional>

#include "temporal_soft_nms.h"

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

// Inputs of the padded (batched, static-shape) NMS ops: segments [B, N, 2], scores [B, N] (both
// floating, one device), valid_mask bool [B, N] when given, max_keep >= -1. Returns the number of
// output columns: max_keep, or N for max_keep = -1 ("keep all").
inline int64_t check_padded_nms_inputs(const at::Tensor& segments, const at::Tensor& scores,
                                       const std::optional<at::Tensor>& valid_mask, int64_t max_keep,
                                       const char* op) {
  check_segments(segments, op, "segments", 3);
  TORCH_CHECK_VALUE(scores.dim() == 2 && scores.size(0) == segments.size(0) &&
                        scores.size(1) == segments.size(1),
                    op, ": scores must be a 2-d tensor [B, N] matching segments [B, N, 2], got ",
                    scores.sizes(), " for segments ", segments.sizes());
  TORCH_CHECK_VALUE(at::isFloatingType(scores.scalar_type()), op,
                    ": scores must be floating point, got ", scores.scalar_type());
  TORCH_CHECK_VALUE(scores.device() == segments.device(), op,
                    ": segments and scores must be on the same device, got ", segments.device(),
                    " and ", scores.device());
  if (valid_mask.has_value()) {
    const at::Tensor& m = *valid_mask;
    TORCH_CHECK_VALUE(m.scalar_type() == at::kBool && m.dim() == 2 && m.size(0) == scores.size(0) &&
                          m.size(1) == scores.size(1),
                      op, ": valid_mask must be a bool tensor [B, N] matching scores, got ",
                      m.scalar_type(), " of shape ", m.sizes(), " for scores ", scores.sizes());
    TORCH_CHECK_VALUE(m.device() == segments.device(), op, ": valid_mask must be on ",
                      segments.device(), ", got ", m.device());
  }
  TORCH_CHECK_VALUE(max_keep >= -1, op, ": max_keep must be >= 0 (or -1 for all), got ", max_keep);
  return max_keep < 0 ? segments.size(1) : max_keep;
}

// Scalar arguments of the soft-NMS ops; returns the soft_nms1d::Method code of `method`.
inline int check_soft_nms_args(c10::string_view method, double iou_threshold, double sigma, double min_score,
                               const char* op) {
  int code = -1;
  if (method == "gaussian") code = soft_nms1d::kGaussian;
  if (method == "linear") code = soft_nms1d::kLinear;
  if (method == "hard") code = soft_nms1d::kHard;
  TORCH_CHECK_VALUE(code >= 0, op, ": method must be \"gaussian\", \"linear\" or \"hard\", got \"",
                    std::string(method.data(), method.size()), "\"");
  TORCH_CHECK_VALUE(!std::isnan(iou_threshold), op, ": iou_threshold must not be NaN");
  TORCH_CHECK_VALUE(code != soft_nms1d::kGaussian || (sigma > 0 && std::isfinite(sigma)), op,
                    ": sigma must be a finite number > 0 for the gaussian method, got ", sigma);
  TORCH_CHECK_VALUE(!std::isnan(min_score), op, ": min_score must not be NaN");
  return code;
}

// Inputs of temporal_soft_nms: segments [N, 2], scores [N], both floating, one device.
inline void check_soft_nms_inputs(const at::Tensor& segments, const at::Tensor& scores, int64_t max_keep,
                                  const char* op) {
  check_segments(segments, op, "segments", 2);
  TORCH_CHECK_VALUE(scores.dim() == 1 && scores.size(0) == segments.size(0), op,
                    ": scores must be a 1-d tensor [N] matching segments [N, 2], got ", scores.sizes(),
                    " for segments ", segments.sizes());
  TORCH_CHECK_VALUE(at::isFloatingType(scores.scalar_type()), op,
                    ": scores must be floating point, got ", scores.scalar_type());
  TORCH_CHECK_VALUE(scores.device() == segments.device(), op,
                    ": segments and scores must be on the same device, got ", segments.device(),
                    " and ", scores.device());
  TORCH_CHECK_VALUE(max_keep >= -1, op, ": max_keep must be >= 0 (or -1 for all), got ", max_keep);
}

// Soft-NMS computes in double when segments or scores are double, else in float.
inline at::ScalarType soft_nms_compute_type(const at::Tensor& segments, const at::Tensor& scores) {
  return segments.scalar_type() == at::kDouble || scores.scalar_type() == at::kDouble ? at::kDouble
                                                                                       : at::kFloat;
}

}  // namespace vgops
