"""Pure-PyTorch gated-correlation attentions of FSM (Eq. 1 and its text-side counterpart).

No projections: the keys are also the values. Masked keys get no weight; a query whose keys are
all masked gets a zero output (instead of softmax's NaN).
"""
import math

import torch

from .gates import compute_dtype
from .masked_softmax import masked_softmax


def _attend(q, k, key_mask, scale):
    """softmax(q k^T * scale) k over the keys where key_mask is True.
    q [..., Nq, d], k [..., Nk, d], key_mask [..., Nk] (bool) or None -> [..., Nq, d]."""
    scores = q @ k.transpose(-1, -2) * scale  # [..., Nq, Nk]
    if key_mask is None:
        return torch.softmax(scores, dim=-1) @ k
    return masked_softmax(scores, key_mask.unsqueeze(-2), dim=-1) @ k  # all keys masked -> 0


def dual_correlation(x, y, y_mask=None, scale=None):
    """FSM Eq. 1, visual side. x [B, T, L, d] (L = H*W tokens per frame), y [B, M, d],
    y_mask [B, M] (True = valid word) or None.

        x_s = softmax(x x^T * scale) x    over the L tokens of the same frame
        x_c = softmax(x y^T * scale) y    over the valid words of the video's sentence

    scale defaults to 1/sqrt(d). Half/bfloat16 inputs are computed in float32.
    """
    dtype = torch.promote_types(x.dtype, y.dtype)
    ct = compute_dtype(dtype)
    x, y = x.to(ct), y.to(ct)
    scale = 1.0 / math.sqrt(x.shape[-1]) if scale is None else scale
    B, T, L, d = x.shape
    x_s = _attend(x, x, None, scale)  # per frame: [B, T, L, L] weights
    x_c = _attend(x.reshape(B, T * L, d), y, y_mask, scale).reshape(B, T, L, d)
    return x_s.to(dtype), x_c.to(dtype)


def text_correlation(y, x, x_mask=None, y_mask=None, scale=None):
    """Text side. y [B, M, d], x [B, T, L, d], x_mask [B, T] (True = valid frame) or None,
    y_mask [B, M] or None.

        y_s = softmax(y y^T * scale) y    over the valid words
        y_c = softmax(y X^T * scale) X    over all T*L visual tokens of the valid frames
    """
    dtype = torch.promote_types(x.dtype, y.dtype)
    ct = compute_dtype(dtype)
    x, y = x.to(ct), y.to(ct)
    scale = 1.0 / math.sqrt(y.shape[-1]) if scale is None else scale
    B, T, L, d = x.shape
    y_s = _attend(y, y, y_mask, scale)
    token_mask = None if x_mask is None else x_mask.unsqueeze(-1).expand(B, T, L).reshape(B, T * L)
    y_c = _attend(y, x.reshape(B, T * L, d), token_mask, scale)
    return y_s.to(dtype), y_c.to(dtype)
