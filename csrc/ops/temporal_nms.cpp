// Schemas of the temporal_nms op family: the one place their signatures live.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(vgops, m) {
  // segments [N, 2], scores [N] -> kept indices int64 [K] by decreasing score (ties: lower index).
  m.def("temporal_nms(Tensor segments, Tensor scores, float iou_threshold) -> Tensor");
  // As temporal_nms, independently within each group id idxs[N] (int64); kept indices of all
  // groups sorted by decreasing score (ties: lower index).
  m.def("batched_temporal_nms(Tensor segments, Tensor scores, Tensor idxs, float iou_threshold) -> Tensor");
  // Padded batch form with static output shapes: segments [B, N, 2], scores [B, N], valid_mask
  // bool [B, N] (None: all valid) -> (indices int64 [B, K] into N, -1 padded; valid bool [B, K]),
  // K = max_keep (-1: N). Row b holds the first K indices temporal_nms keeps among the row's valid
  // segments, by decreasing score (ties: lower index).
  m.def("temporal_nms_padded(Tensor segments, Tensor scores, float iou_threshold, int max_keep, "
        "Tensor? valid_mask=None) -> (Tensor, Tensor)");
}
