#pragma once
// Input checks shared by the kernels of every op. The public Python functions check first with
// friendlier messages; these keep direct torch.ops.vgops.* callers (and C++ users) in bounds.
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <c10/util/string_view.h>

#include <cmath>
#include <optional>

#include "temporal_soft_nms.h"

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

namespace vgops {

inline void check_segment_map_iou_inputs(const at::Tensor& gt, int64_t num_clips, const at::Tensor& duration) {
  const char* op = "segment_map_iou";
  check_segments(gt, op, "gt", 2);
  TORCH_CHECK_VALUE(num_clips >= 0, op, ": num_clips must be >= 0, got ", num_clips);
  TORCH_CHECK_VALUE(duration.dim() == 1 && duration.size(0) == gt.size(0), op,
                    ": duration must be [B] for gt [B, 2], got ", duration.sizes());
  check_same_device_dtype(gt, duration, op, "gt", "duration");
}

}  // namespace vgops

namespace vgops {

inline void check_tube_iou_inputs(const at::Tensor& pb, const at::Tensor& ps, const at::Tensor& gb,
                                  const at::Tensor& gs, const at::Tensor& mask) {
  const char* op = "tube_iou";
  TORCH_CHECK_VALUE(pb.dim() == 3 && pb.size(2) == 4, op, ": pred_boxes must be [B, T, 4], got ", pb.sizes());
  TORCH_CHECK_VALUE(gb.sizes() == pb.sizes(), op, ": gt_boxes must match pred_boxes ", pb.sizes(), ", got ", gb.sizes());
  TORCH_CHECK_VALUE(ps.dim() == 2 && ps.size(0) == pb.size(0) && ps.size(1) == 2, op,
                    ": pred_span must be [B, 2], got ", ps.sizes());
  TORCH_CHECK_VALUE(gs.sizes() == ps.sizes(), op, ": gt_span must be [B, 2], got ", gs.sizes());
  TORCH_CHECK_VALUE(mask.dim() == 2 && mask.size(0) == pb.size(0) && mask.size(1) == pb.size(1) &&
                        mask.scalar_type() == at::kBool,
                    op, ": frame_mask must be a bool tensor [B, T], got ", mask.scalar_type(), " ", mask.sizes());
  TORCH_CHECK_VALUE(at::isFloatingType(pb.scalar_type()), op, ": boxes must be floating point, got ", pb.scalar_type());
  for (const at::Tensor* t : {&ps, &gb, &gs})
    TORCH_CHECK_VALUE(t->scalar_type() == pb.scalar_type(), op, ": boxes and spans must share one dtype, got ",
                      pb.scalar_type(), " and ", t->scalar_type());
  for (const at::Tensor* t : {&ps, &gb, &gs, &mask})
    TORCH_CHECK_VALUE(t->device() == pb.device(), op, ": all inputs must be on ", pb.device(), ", got ", t->device());
}

}  // namespace vgops

namespace vgops {

// Inputs of the segment_score_map family: P [B, Ns, Nv] (or x [B, Nv]: Ns == 0 and
// token_mask undefined), W [B, Nv, Nv] (undefined for segment_score_map), bool masks.
inline void check_segment_score_map_inputs(const char* op, const at::Tensor& p, const at::Tensor* w,
                                           const at::Tensor* token_mask, const at::Tensor& clip_mask) {
  const bool has_tokens = token_mask != nullptr;
  const char* pname = has_tokens ? "P" : "x";
  TORCH_CHECK_VALUE(p.dim() == (has_tokens ? 3 : 2), op, ": ", pname, " must be ",
                    has_tokens ? "[B, Ns, Nv]" : "[B, Nv]", ", got shape ", p.sizes());
  TORCH_CHECK_VALUE(at::isFloatingType(p.scalar_type()), op, ": ", pname, " must be floating point, got ",
                    p.scalar_type());
  const int64_t B = p.size(0), Nv = p.size(-1);
  TORCH_CHECK_VALUE(clip_mask.dim() == 2 && clip_mask.size(0) == B && clip_mask.size(1) == Nv &&
                        clip_mask.scalar_type() == at::kBool,
                    op, ": clip_mask must be a bool tensor [B, Nv] = [", B, ", ", Nv, "], got ",
                    clip_mask.scalar_type(), " ", clip_mask.sizes());
  TORCH_CHECK_VALUE(clip_mask.device() == p.device(), op, ": clip_mask must be on ", p.device(), ", got ",
                    clip_mask.device());
  if (has_tokens) {
    TORCH_CHECK_VALUE(token_mask->dim() == 2 && token_mask->size(0) == B && token_mask->size(1) == p.size(1) &&
                          token_mask->scalar_type() == at::kBool,
                      op, ": token_mask must be a bool tensor [B, Ns] = [", B, ", ", p.size(1), "], got ",
                      token_mask->scalar_type(), " ", token_mask->sizes());
    TORCH_CHECK_VALUE(token_mask->device() == p.device(), op, ": token_mask must be on ", p.device(),
                      ", got ", token_mask->device());
  }
  if (w != nullptr) {
    TORCH_CHECK_VALUE(w->dim() == 3 && w->size(0) == B && w->size(1) == Nv && w->size(2) == Nv, op,
                      ": W must be [B, Nv, Nv] = [", B, ", ", Nv, ", ", Nv, "], got ", w->sizes());
    check_same_device_dtype(p, *w, op, pname, "W");
  }
}

inline int check_token_fn(const char* op, c10::string_view fn) {
  if (fn == "sigmoid") return 1;
  if (fn == "identity") return 0;
  TORCH_CHECK_VALUE(false, op, ": fn must be \"sigmoid\" or \"identity\", got \"", std::string(fn), "\"");
  return -1;
}

}  // namespace vgops

#include <initializer_list>
#include <utility>

namespace vgops {

// Elementwise ops (gates): every tensor floating point, with the shape, dtype and device of the
// first.
inline void check_same_elementwise(const char* op, std::initializer_list<std::pair<const char*, const at::Tensor*>> ts) {
  const auto& first = *ts.begin();
  const at::Tensor& a = *first.second;
  TORCH_CHECK_VALUE(at::isFloatingType(a.scalar_type()), op, ": ", first.first, " must be floating point, got ",
                    a.scalar_type());
  for (const auto& p : ts) {
    const at::Tensor& t = *p.second;
    TORCH_CHECK_VALUE(t.sizes() == a.sizes(), op, ": ", p.first, " must have the shape of ", first.first, " ",
                      a.sizes(), ", got ", t.sizes());
    check_same_device_dtype(a, t, op, first.first, p.first);
  }
}

}  // namespace vgops

namespace vgops {

// calibration_gate: x, m [N, D]; weight [2D, 2D]; bias [2D]; one dtype and device.
inline void check_calibration_gate_inputs(const at::Tensor& x, const at::Tensor& m, const at::Tensor& weight,
                                          const at::Tensor& bias) {
  const char* op = "calibration_gate";
  TORCH_CHECK_VALUE(x.dim() == 2, op, ": x must be [N, D], got ", x.sizes());
  TORCH_CHECK_VALUE(at::isFloatingType(x.scalar_type()), op, ": x must be floating point, got ", x.scalar_type());
  TORCH_CHECK_VALUE(m.sizes() == x.sizes(), op, ": m must have the shape of x ", x.sizes(), ", got ", m.sizes());
  const int64_t D = x.size(1);
  TORCH_CHECK_VALUE(weight.dim() == 2 && weight.size(0) == 2 * D && weight.size(1) == 2 * D, op,
                    ": weight must be [2D, 2D] = [", 2 * D, ", ", 2 * D, "], got ", weight.sizes());
  TORCH_CHECK_VALUE(bias.dim() == 1 && bias.size(0) == 2 * D, op, ": bias must be [2D] = [", 2 * D, "], got ",
                    bias.sizes());
  check_same_device_dtype(x, m, op, "x", "m");
  check_same_device_dtype(x, weight, op, "x", "weight");
  check_same_device_dtype(x, bias, op, "x", "bias");
}

// The epilogue's pre-activations: x [N, D] with pre [N, 2D] (and grad [N, D] when given).
inline void check_calibration_epilogue_inputs(const char* op, const at::Tensor& x, const at::Tensor& pre,
                                              const at::Tensor* grad = nullptr) {
  TORCH_CHECK_VALUE(x.dim() == 2 && at::isFloatingType(x.scalar_type()), op, ": x must be a floating [N, D] tensor, got ",
                    x.scalar_type(), " ", x.sizes());
  TORCH_CHECK_VALUE(pre.dim() == 2 && pre.size(0) == x.size(0) && pre.size(1) == 2 * x.size(1), op,
                    ": pre must be [N, 2D] for x ", x.sizes(), ", got ", pre.sizes());
  check_same_device_dtype(x, pre, op, "x", "pre");
  if (grad != nullptr) {
    TORCH_CHECK_VALUE(grad->sizes() == x.sizes(), op, ": grad must have the shape of x ", x.sizes(), ", got ",
                      grad->sizes());
    check_same_device_dtype(x, *grad, op, "x", "grad");
  }
}

}  // namespace vgops

namespace vgops {

// kv_attention: q [G, Nq, d], k [G, Nk, d] of one float/double dtype and device; key_mask
// [G, Nk] bool when given.
inline void check_kv_attention_inputs(const at::Tensor& q, const at::Tensor& k, const std::optional<at::Tensor>& mask) {
  const char* op = "kv_attention";
  TORCH_CHECK_VALUE(q.dim() == 3 && k.dim() == 3 && q.size(0) == k.size(0) && q.size(2) == k.size(2), op,
                    ": q must be [G, Nq, d] and k [G, Nk, d], got ", q.sizes(), " and ", k.sizes());
  TORCH_CHECK_VALUE(q.scalar_type() == at::kFloat || q.scalar_type() == at::kDouble, op,
                    ": q and k must be float32 or float64 (the public functions upcast half/bfloat16), got ",
                    q.scalar_type());
  check_same_device_dtype(q, k, op, "q", "k");
  if (mask.has_value() && mask->defined()) {
    TORCH_CHECK_VALUE(mask->dim() == 2 && mask->size(0) == k.size(0) && mask->size(1) == k.size(1) &&
                          mask->scalar_type() == at::kBool,
                      op, ": key_mask must be a bool tensor [G, Nk] = [", k.size(0), ", ", k.size(1), "], got ",
                      mask->scalar_type(), " ", mask->sizes());
    TORCH_CHECK_VALUE(mask->device() == k.device(), op, ": key_mask must be on ", k.device(), ", got ",
                      mask->device());
  }
}

}  // namespace vgops

namespace vgops {

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

namespace vgops {

// padded_coattention: v_heads [B, H, Tk, d], q_heads [B, H, Nk, d], v_full [B, Tk, D],
// q_full [B, Nk, D] of one floating dtype and device; v_mask [B, T <= Tk], q_mask [B, N <= Nk] bool.
inline void check_padded_coattention_inputs(const at::Tensor& vh, const at::Tensor& qh, const at::Tensor& vf,
                                            const at::Tensor& qf, const at::Tensor& vm, const at::Tensor& qm) {
  const char* op = "padded_coattention";
  TORCH_CHECK_VALUE(vh.dim() == 4 && at::isFloatingType(vh.scalar_type()), op,
                    ": v_heads must be a floating [B, H, T+K, d] tensor, got ", vh.scalar_type(), " ", vh.sizes());
  const int64_t B = vh.size(0), H = vh.size(1), Tk = vh.size(2), d = vh.size(3);
  TORCH_CHECK_VALUE(qh.dim() == 4 && qh.size(0) == B && qh.size(1) == H && qh.size(3) == d, op,
                    ": q_heads must be [B, H, N+K, d] with B, H, d of v_heads ", vh.sizes(), ", got ", qh.sizes());
  const int64_t Nk = qh.size(2);
  TORCH_CHECK_VALUE(vf.dim() == 3 && vf.size(0) == B && vf.size(1) == Tk, op, ": v_full must be [B, T+K, D] = [", B,
                    ", ", Tk, ", D], got ", vf.sizes());
  TORCH_CHECK_VALUE(qf.dim() == 3 && qf.size(0) == B && qf.size(1) == Nk && qf.size(2) == vf.size(2), op,
                    ": q_full must be [B, N+K, D] = [", B, ", ", Nk, ", ", vf.size(2), "], got ", qf.sizes());
  TORCH_CHECK_VALUE(vm.dim() == 2 && vm.scalar_type() == at::kBool && vm.size(0) == B && vm.size(1) <= Tk, op,
                    ": v_mask must be a bool [B, T] tensor with T <= ", Tk, ", got ", vm.scalar_type(), " ", vm.sizes());
  TORCH_CHECK_VALUE(qm.dim() == 2 && qm.scalar_type() == at::kBool && qm.size(0) == B && qm.size(1) <= Nk, op,
                    ": q_mask must be a bool [B, N] tensor with N <= ", Nk, ", got ", qm.scalar_type(), " ", qm.sizes());
  check_same_device_dtype(vh, qh, op, "v_heads", "q_heads");
  check_same_device_dtype(vh, vf, op, "v_heads", "v_full");
  check_same_device_dtype(vh, qf, op, "v_heads", "q_full");
  TORCH_CHECK_VALUE(vm.device() == vh.device() && qm.device() == vh.device(), op,
                    ": the masks must be on the features' device ", vh.device(), ", got ", vm.device(), " and ",
                    qm.device());
}

// The fused softmax kernels: logits [B, H, Tk, Nk] floating; v_keys [B, Tk], q_keys [B, Nk] bool;
// every other tensor's shape is checked by the caller through `want`.
inline void check_coattention_softmax_inputs(const char* op, const at::Tensor& logits, const at::Tensor& vk,
                                             const at::Tensor& qk) {
  TORCH_CHECK_VALUE(logits.dim() == 4 && at::isFloatingType(logits.scalar_type()), op,
                    ": logits must be a floating [B, H, Tk, Nk] tensor, got ", logits.scalar_type(), " ", logits.sizes());
  const int64_t B = logits.size(0), Tk = logits.size(2), Nk = logits.size(3);
  TORCH_CHECK_VALUE(vk.scalar_type() == at::kBool && vk.dim() == 2 && vk.size(0) == B && vk.size(1) == Tk, op,
                    ": v_keys must be bool [", B, ", ", Tk, "], got ", vk.scalar_type(), " ", vk.sizes());
  TORCH_CHECK_VALUE(qk.scalar_type() == at::kBool && qk.dim() == 2 && qk.size(0) == B && qk.size(1) == Nk, op,
                    ": q_keys must be bool [", B, ", ", Nk, "], got ", qk.scalar_type(), " ", qk.sizes());
  TORCH_CHECK_VALUE(vk.device() == logits.device() && qk.device() == logits.device(), op,
                    ": v_keys and q_keys must be on the logits' device");
}

inline void check_shape(const char* op, const char* name, const at::Tensor& t, at::IntArrayRef want,
                        const at::Tensor& like, bool same_dtype = true) {
  TORCH_CHECK_VALUE(t.sizes() == want, op, ": ", name, " must be ", want, ", got ", t.sizes());
  TORCH_CHECK_VALUE(t.device() == like.device(), op, ": ", name, " must be on ", like.device(), ", got ", t.device());
  if (same_dtype)
    TORCH_CHECK_VALUE(t.scalar_type() == like.scalar_type(), op, ": ", name, " must be ", like.scalar_type(), ", got ",
                      t.scalar_type());
}

// The log-sum-exps are float32 for half/bfloat16 logits, else the logits' dtype.
inline at::ScalarType coattention_lse_type(at::ScalarType t) {
  return (t == at::kHalf || t == at::kBFloat16) ? at::kFloat : t;
}

// The backward kernels' inputs: the forward's plus row_lse [B, H, Tk], col_lse [B, H, Nk] and
// g_v, g_qt [B, Tk, Nk].
inline void check_coattention_softmax_backward_inputs(const at::Tensor& logits, const at::Tensor& vk,
                                                      const at::Tensor& qk, const at::Tensor& row_lse,
                                                      const at::Tensor& col_lse, const at::Tensor& g_v,
                                                      const at::Tensor& g_qt) {
  const char* op = "_coattention_softmax_backward";
  check_coattention_softmax_inputs(op, logits, vk, qk);
  const int64_t B = logits.size(0), H = logits.size(1), Tk = logits.size(2), Nk = logits.size(3);
  const at::Tensor lse_like = at::empty({0}, logits.options().dtype(coattention_lse_type(logits.scalar_type())));
  check_shape(op, "row_lse", row_lse, {B, H, Tk}, lse_like);
  check_shape(op, "col_lse", col_lse, {B, H, Nk}, lse_like);
  check_shape(op, "g_v", g_v, {B, Tk, Nk}, logits);
  check_shape(op, "g_qt", g_qt, {B, Tk, Nk}, logits);
}

// The forward kernels' outputs (A_V, A_Qt, row_lse, col_lse), the lses zero-filled (their value
// where a problem is empty).
inline std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> coattention_softmax_outputs(const at::Tensor& logits) {
  const int64_t B = logits.size(0), H = logits.size(1), Tk = logits.size(2), Nk = logits.size(3);
  const auto lse_opts = logits.options().dtype(coattention_lse_type(logits.scalar_type()));
  return {at::empty({B, Tk, Nk}, logits.options()), at::empty({B, Tk, Nk}, logits.options()),
          at::zeros({B, H, Tk}, lse_opts), at::zeros({B, H, Nk}, lse_opts)};
}

}  // namespace vgops

namespace vgops {

// additive_attention scores: a [B, P, d], b [B, S, d], w [d], one floating dtype and device.
inline void check_additive_scores_inputs(const char* op, const at::Tensor& a, const at::Tensor& b, const at::Tensor& w) {
  TORCH_CHECK_VALUE(a.dim() == 3 && at::isFloatingType(a.scalar_type()), op,
                    ": a must be a floating [B, P, d] tensor, got ", a.scalar_type(), " ", a.sizes());
  TORCH_CHECK_VALUE(b.dim() == 3 && b.size(0) == a.size(0) && b.size(2) == a.size(2), op, ": b must be [B, S, d] = [",
                    a.size(0), ", S, ", a.size(2), "], got ", b.sizes());
  TORCH_CHECK_VALUE(w.dim() == 1 && w.size(0) == a.size(2), op, ": w must be [d] = [", a.size(2), "], got ", w.sizes());
  check_same_device_dtype(a, b, op, "a", "b");
  check_same_device_dtype(a, w, op, "a", "w");
}

// The scores' backward: grad_alpha [B, P, S] besides a, b, w.
inline void check_additive_scores_backward_inputs(const at::Tensor& g, const at::Tensor& a, const at::Tensor& b,
                                                  const at::Tensor& w) {
  const char* op = "_additive_scores_backward";
  check_additive_scores_inputs(op, a, b, w);
  check_shape(op, "grad_alpha", g, {a.size(0), a.size(1), b.size(1)}, a);
}

}  // namespace vgops
