// Schema of the gating epilogues of FSM's gated correlation (Eq. 2 and 3): the one place their
// signatures live. The per-element math is in gates.h.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(vgops, m) {
  // All four inputs have one shape and dtype: sigmoid(g_c) * x_s + sigmoid(g_s) * x_c.
  m.def("cross_gate(Tensor x_s, Tensor x_c, Tensor g_s, Tensor g_c) -> Tensor");
  // Gradients with respect to (x_s, x_c, g_s, g_c).
  m.def("_cross_gate_backward(Tensor grad, Tensor x_s, Tensor x_c, Tensor g_s, Tensor g_c) "
        "-> (Tensor, Tensor, Tensor, Tensor)");
  // All three inputs have one shape and dtype: sigmoid(h_gate) * h_value + residual.
  m.def("self_guided(Tensor h_gate, Tensor h_value, Tensor residual) -> Tensor");
  // Gradients with respect to (h_gate, h_value); that of residual is grad itself.
  m.def("_self_guided_backward(Tensor grad, Tensor h_gate, Tensor h_value) -> (Tensor, Tensor)");
}
