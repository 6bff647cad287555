// Schema of the temporal_iou op family: the one place its signatures live.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(vgops, m) {
  // a: [B, N, 2], b: [B, M, 2] -> [B, N, M] (aligned=false) or a, b: [B, N, 2] -> [B, N].
  m.def("temporal_iou(Tensor a, Tensor b, bool aligned=False) -> Tensor");
  // Backward of temporal_iou: gradients with respect to a and b.
  m.def("_temporal_iou_backward(Tensor grad, Tensor a, Tensor b, bool aligned) -> (Tensor, Tensor)");
}
