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
