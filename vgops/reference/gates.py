"""Pure-PyTorch gating epilogues of FSM's gated correlation (Eq. 2 and 3)."""
import torch


def compute_dtype(dtype):
    """The gates are computed in float32 for half and bfloat16 inputs, in the input dtype otherwise."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def cross_gate(x_s, x_c, g_s, g_c):
    """FSM Eq. 2 (cross-gating): x_a = sigmoid(g_c) * x_s + sigmoid(g_s) * x_c, where
    g_c = FFN1(x_c) and g_s = FFN2(x_s): each attention result is gated by the other one."""
    dtype = torch.promote_types(torch.promote_types(x_s.dtype, x_c.dtype), torch.promote_types(g_s.dtype, g_c.dtype))
    ct = compute_dtype(dtype)
    x_s, x_c, g_s, g_c = (t.to(ct) for t in (x_s, x_c, g_s, g_c))
    x_a = torch.sigmoid(g_c) * x_s + torch.sigmoid(g_s) * x_c
    return x_a.to(dtype)


def self_guided(h_gate, h_value, residual):
    """FSM Eq. 3 (self-guided head): x_g = sigmoid(h_gate) * h_value + residual, where
    h_gate = FFN3(x_a), h_value = FFN4(x_a) and residual = x."""
    dtype = torch.promote_types(torch.promote_types(h_gate.dtype, h_value.dtype), residual.dtype)
    ct = compute_dtype(dtype)
    h_gate, h_value, residual = (t.to(ct) for t in (h_gate, h_value, residual))
    x_g = torch.sigmoid(h_gate) * h_value + residual
    return x_g.to(dtype)
