"""Pure-PyTorch padded multi-head co-attention of IA-Net (Eq. 1-6)."""
import math

import torch

from .masked_softmax import masked_softmax


def padded_coattention(v_heads, q_heads, v_full, q_full, v_mask, q_mask, scale=None):
    """IA-Net Eq. 1-6, written as the paper reads.

    v_heads [B, H, T+Kv, d], q_heads [B, H, N+Kq, d]: per-head projections of the padded clips
    Ṽ = [V; Pv] and words Q̃ = [Q; Pq]; v_full [B, T+Kv, D], q_full [B, N+Kq, D]: the padded
    features themselves (the values); v_mask [B, T], q_mask [B, N]: True for valid clips/words
    (pad rows are always valid keys). scale defaults to 1/sqrt(d).

        A_V = mean_h softmax_rows(Ṽʰ Q̃ʰᵀ · scale)   [T+Kv, N+Kq]   (keys: valid words + pads)
        A_Q = mean_h softmax_rows(Q̃ʰ Ṽʰᵀ · scale)   [N+Kq, T+Kv]   (keys: valid clips + pads)
        M_V = (A_V Q̃)[:T]        M_Q = (A_Q Ṽ)[:N]

    Returns (M_V [B, T, D], M_Q [B, N, D], A_V, A_Q).
    """
    B, H, Tk, d = v_heads.shape
    Nk = q_heads.shape[2]
    T, N = v_mask.shape[1], q_mask.shape[1]
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    ones = v_mask.new_ones
    v_keys = torch.cat([v_mask, ones(B, Tk - T)], 1)  # clips + pads, as keys of A_Q
    q_keys = torch.cat([q_mask, ones(B, Nk - N)], 1)  # words + pads, as keys of A_V
    logits = v_heads @ q_heads.transpose(-1, -2) * scale  # [B, H, Tk, Nk]; A_Q's are its transpose
    a_v = masked_softmax(logits, q_keys[:, None, None, :], dim=-1).mean(1)  # [B, Tk, Nk]
    a_q = masked_softmax(logits.transpose(-1, -2), v_keys[:, None, None, :], dim=-1).mean(1)  # [B, Nk, Tk]
    m_v = (a_v @ q_full)[:, :T]
    m_q = (a_q @ v_full)[:, :N]
    return m_v, m_q, a_v, a_q
