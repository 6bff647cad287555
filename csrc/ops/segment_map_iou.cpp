// Schema of segment_map_iou: the one place its signature lives.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(vgops, m) {
  // gt [B, 2], duration [B] -> [B, N, N]: IoU of every candidate moment (s, e), s <= e, of an
  // N-clip grid (cell (s, e) = [s, e + 1) * duration / N) with gt; entries with s > e are 0.
  m.def("segment_map_iou(Tensor gt, int num_clips, Tensor duration) -> Tensor");
}
