#pragma once
// Input checks shared by the kernels of every op. The public Python functions check first with
// friendlier messages; these keep direct torch.ops.vgops.* callers (and C++ users) in bounds.
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

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
