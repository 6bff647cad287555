#pragma once
// Public C++ API of vgops for programs that link the `vgops` library (CMake target vgops::vgops).
//
// Each function calls the op through the PyTorch dispatcher, exactly as torch.ops.vgops.<op>
// does from Python: the kernel for the inputs' device (CPU, CUDA where built) is chosen there,
// and the inputs are checked by the kernel. The schemas live in csrc/ops/<op>.cpp; the
// signatures below must match them. Errors are thrown as c10::Error (c10::ValueError for bad
// inputs). No autograd: the ops are registered without an Autograd kernel in C++.
//
// Segments are [..., 2] tensors (start, end); IoU = intersection / union, 0 when the union is 0.
#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>

namespace vgops {

// Temporal IoU of segments.
//   aligned = false: a Tensor[B, N, 2], b Tensor[B, M, 2] -> Tensor[B, N, M] (every pair).
//   aligned = true:  a Tensor[B, N, 2], b Tensor[B, N, 2] -> Tensor[B, N] (a[:, i] with b[:, i]).
// a and b: the same floating dtype and device; the output has that dtype.
inline at::Tensor temporal_iou(const at::Tensor& a, const at::Tensor& b, bool aligned = false) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("vgops::temporal_iou", "")
                       .typed<at::Tensor(const at::Tensor&, const at::Tensor&, bool)>();
  return op.call(a, b, aligned);
}

// Greedy 1D non-maximum suppression.
//   segments Tensor[N, 2], scores Tensor[N] -> int64 Tensor[K]: indices of the kept segments by
//   decreasing score (ties: lower index). A kept segment removes every other whose IoU with it
//   is strictly greater than iou_threshold (torchvision's rule).
inline at::Tensor temporal_nms(const at::Tensor& segments, const at::Tensor& scores, double iou_threshold) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("vgops::temporal_nms", "")
                       .typed<at::Tensor(const at::Tensor&, const at::Tensor&, double)>();
  return op.call(segments, scores, iou_threshold);
}

// temporal_nms independently within each group: idxs int64 Tensor[N] gives each segment's group
// id. Returns the kept indices of all groups, int64 Tensor[K], by decreasing score (ties: lower
// index).
inline at::Tensor batched_temporal_nms(const at::Tensor& segments, const at::Tensor& scores, const at::Tensor& idxs,
                                       double iou_threshold) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("vgops::batched_temporal_nms", "")
                       .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, double)>();
  return op.call(segments, scores, idxs, iou_threshold);
}

}  // namespace vgops
