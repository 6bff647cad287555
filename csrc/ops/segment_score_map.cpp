// Schema of the segment_score_map op family (FSAN Eq. 7-12): the one place its signatures live.
// Masks are bool tensors (true = valid); the Python functions pass all-true masks for None.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(vgops, m) {
  // P [B, Ns, Nv], token_mask [B, Ns], clip_mask [B, Nv] -> SC [B, Nv, Nv] (FSAN Eq. 8) for every
  // s <= e with both s and e valid clips; -inf elsewhere.
  m.def("segment_score_map(Tensor P, Tensor token_mask, Tensor clip_mask) -> Tensor");
  // Backward of segment_score_map: gradient with respect to P.
  m.def("_segment_score_map_backward(Tensor grad, Tensor P, Tensor token_mask, Tensor clip_mask) -> Tensor");
  // P [B, Ns, Nv], W [B, Nv, Nv] -> [B]: sum over valid s <= e of W[s, e] * mean over valid tokens
  // of fn(sum over valid clips j in [s, e] of P[i, j]); fn in {"sigmoid", "identity"}.
  m.def("segment_weighted_token_loss(Tensor P, Tensor W, Tensor token_mask, Tensor clip_mask, str fn=\"sigmoid\") -> Tensor");
  // Backward of segment_weighted_token_loss: gradients with respect to P and W.
  m.def("_segment_weighted_token_loss_backward(Tensor grad, Tensor P, Tensor W, Tensor token_mask, Tensor clip_mask, str fn) -> (Tensor, Tensor)");
  // x [B, Nv], W [B, Nv, Nv], clip_mask [B, Nv] -> [B]: sum over valid s <= e of W[s, e] * mean
  // of x over the valid clips outside [s, e] (0 where none is outside).
  m.def("segment_weighted_outside_mean(Tensor x, Tensor W, Tensor clip_mask) -> Tensor");
  m.def("_segment_weighted_outside_mean_backward(Tensor grad, Tensor x, Tensor W, Tensor clip_mask) -> (Tensor, Tensor)");
  // The same with the mean over the valid clips inside [s, e].
  m.def("segment_weighted_inside_mean(Tensor x, Tensor W, Tensor clip_mask) -> Tensor");
  m.def("_segment_weighted_inside_mean_backward(Tensor grad, Tensor x, Tensor W, Tensor clip_mask) -> (Tensor, Tensor)");
}
