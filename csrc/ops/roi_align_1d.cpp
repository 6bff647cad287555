// Schema of the roi_align_1d op family: the one place its signatures live.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(vgops, m) {
  // Temporal RoIAlign: features [B, C, T], segments [K, 3] (batch index, start, end) -> [K, C, L]
  // with L = output_len; linear interpolation along time (the 1D analogue of RoIAlign).
  m.def(
      "roi_align_1d(Tensor features, Tensor segments, SymInt output_len, float temporal_scale=1.0, "
      "int sampling_ratio=-1, bool aligned=True) -> Tensor");
  // Backward of roi_align_1d with respect to features: grad [K, C, L] -> [B, C, T].
  m.def(
      "_roi_align_1d_backward(Tensor grad, Tensor segments, SymInt batch_size, SymInt length, "
      "float temporal_scale, int sampling_ratio, bool aligned) -> Tensor");
}
