// Schema of the key-value attention behind FSM's gated correlation (vgops.dual_correlation and
// vgops.text_correlation call it twice each): the one place its signatures live.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(vgops, m) {
  // q [G, Nq, d], k [G, Nk, d] (keys are also the values), key_mask [G, Nk] bool (True = valid)
  // or None -> (out [G, Nq, d] = softmax(q k^T * scale) k over the valid keys, lse [G, Nq] the
  // per-row log-sum-exp of the scaled scores, -inf where every key is masked; out is 0 there).
  // No [G, Nq, Nk] tensor is kept: the backward recomputes the weights from lse.
  m.def("kv_attention(Tensor q, Tensor k, Tensor? key_mask, float scale) -> (Tensor, Tensor)");
  // Gradients with respect to (q, k) (k's includes its use as the values).
  m.def("_kv_attention_backward(Tensor grad_out, Tensor q, Tensor k, Tensor? key_mask, Tensor out, "
        "Tensor lse, float scale) -> (Tensor, Tensor)");
}
