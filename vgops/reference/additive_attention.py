"""Pure-PyTorch additive (Bahdanau) patch-word attention of GLF (Eq. 2). Materialises
[B, P, S, d]: the baseline the fused op is measured against."""
import torch

from .masked_softmax import masked_softmax


def additive_attention(a, b, w, values, s_mask=None):
    """GLF Eq. 2: alpha[p, s] = wᵀ tanh(a[p] + b[s]),  r[p] = Σ_s softmax_s(alpha)[p, s] values[s].

    a [B, P, d] (W1 p̂ + bias, per patch), b [B, S, d] (W2 q̂, per word), w [d], values [B, S, Dv],
    s_mask [B, S] (True = valid word) or None. A patch whose sentence has no valid word gets zero
    weights and a zero context. Returns (context [B, P, Dv], weights [B, P, S]).
    """
    alpha = torch.tanh(a.unsqueeze(2) + b.unsqueeze(1)) @ w  # [B, P, S, d] -> [B, P, S]
    if s_mask is None:
        weights = torch.softmax(alpha, dim=-1)
    else:
        weights = masked_softmax(alpha, s_mask.unsqueeze(1), dim=-1)
    return weights @ values, weights
