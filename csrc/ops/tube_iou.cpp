// Schema of tube_iou: the one place its signature lives.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(vgops, m) {
  // pred_boxes [B, T, 4], pred_span [B, 2], gt_boxes [B, T, 4], gt_span [B, 2], frame_mask [B, T]
  // -> (tIoU [B], vIoU [B]) of spatio-temporal tubes (TubeDETR's definitions, frames [s, e)).
  m.def("tube_iou(Tensor pred_boxes, Tensor pred_span, Tensor gt_boxes, Tensor gt_span, Tensor frame_mask) -> (Tensor, Tensor)");
}
