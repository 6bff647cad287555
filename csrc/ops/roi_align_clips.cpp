// Schema of the roi_align_clips op family: the one place its signatures live.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(vgops, m) {
  // Per-frame 2D RoIAlign of video features: features [B, T, C, H, W], boxes [B, T, R, 4]
  // (x1, y1, x2, y2) in input-image pixels, valid [B, T] bool or None -> [B, T, R, C, ph, pw].
  // Every (b, t, r) equals torchvision.ops.roi_align of frame (b, t) with box (b, t, r).
  m.def(
      "roi_align_clips(Tensor features, Tensor boxes, SymInt pooled_height, SymInt pooled_width, "
      "float spatial_scale=1.0, int sampling_ratio=-1, bool aligned=True, Tensor? valid=None) -> Tensor");
  // Backward of roi_align_clips with respect to features: grad [B, T, R, C, ph, pw] -> [B, T, C, H, W].
  m.def(
      "_roi_align_clips_backward(Tensor grad, Tensor boxes, SymInt height, SymInt width, float spatial_scale, "
      "int sampling_ratio, bool aligned, Tensor? valid) -> Tensor");
  // The same boxes pooled from every level of a feature pyramid: features[l] [B, T, C, H_l, W_l],
  // one spatial scale per level -> [B, T, R, L, C, ph, pw] (one kernel launch per level).
  m.def(
      "roi_align_clips_multiscale(Tensor[] features, Tensor boxes, SymInt pooled_height, SymInt pooled_width, "
      "float[] spatial_scales, int sampling_ratio=-1, bool aligned=True, Tensor? valid=None) -> Tensor");
  // Backward of roi_align_clips_multiscale: grad [B, T, R, L, C, ph, pw] -> L tensors [B, T, C, H_l, W_l].
  m.def(
      "_roi_align_clips_multiscale_backward(Tensor grad, Tensor boxes, SymInt[] heights, SymInt[] widths, "
      "float[] spatial_scales, int sampling_ratio, bool aligned, Tensor? valid) -> Tensor[]");
}
