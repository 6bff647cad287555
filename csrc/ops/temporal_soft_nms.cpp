// Schemas of the temporal_soft_nms op family: the one place their signatures live.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(vgops, m) {
  // segments [N, 2], scores [N]; method "gaussian" | "linear" | "hard"; max_keep -1: no limit.
  // -> (selected indices int64 [K], their decayed scores [K] in scores' dtype), in selection order.
  m.def("temporal_soft_nms(Tensor segments, Tensor scores, str method, float iou_threshold, float sigma, "
        "float min_score, int max_keep) -> (Tensor, Tensor)");
  // Padded batch form with static output shapes: segments [B, N, 2], scores [B, N], valid_mask
  // bool [B, N] (None: all valid) -> (indices int64 [B, K] into N, -1 padded; decayed scores
  // [B, K], 0 padded; valid bool [B, K]), K = max_keep (-1: N).
  m.def("temporal_soft_nms_padded(Tensor segments, Tensor scores, str method, float iou_threshold, "
        "float sigma, float min_score, int max_keep, Tensor? valid_mask=None) -> (Tensor, Tensor, Tensor)");
}
