"""vgops.nn.PaddedCoAttention: IA-Net's padded multi-head co-attention block (Eq. 1-6)."""
import torch
from torch import nn

from ..ops.padded_coattention import padded_coattention


class PaddedCoAttention(nn.Module):
    """IA-Net's co-attention with K learnable padding rows per modality (Eq. 1-6).

    Owns the pads Pv, Pq [K, D] and the per-head projections of clips and words (one D x D linear
    map per modality, split into H heads of d = D / H). The attention itself is
    :func:`vgops.padded_coattention`.

    Args:
        dim (int): feature size D (divisible by heads).
        heads (int): H, 4 in the paper.
        num_pads (int): K, 3 in the paper (0 allowed: plain co-attention).

    Shape:
        forward(v [B, T, D], q [B, N, D], v_mask [B, T] | None, q_mask [B, N] | None)
        -> (M_V [B, T, D], M_Q [B, N, D]); masks are True for valid clips/words (None: all valid).
    """

    def __init__(self, dim, heads=4, num_pads=3):
        super().__init__()
        if dim % heads:
            raise ValueError(f"PaddedCoAttention: dim must be divisible by heads, got dim={dim}, heads={heads}")
        if num_pads < 0:
            raise ValueError(f"PaddedCoAttention: num_pads must be >= 0, got {num_pads}")
        self.dim, self.heads, self.num_pads = dim, heads, num_pads
        self.pad_v = nn.Parameter(torch.randn(num_pads, dim) * dim ** -0.5)
        self.pad_q = nn.Parameter(torch.randn(num_pads, dim) * dim ** -0.5)
        self.proj_v = nn.Linear(dim, dim)
        self.proj_q = nn.Linear(dim, dim)

    def _split(self, x):
        B, R, _ = x.shape
        return x.view(B, R, self.heads, self.dim // self.heads).transpose(1, 2)  # [B, H, R, d]

    def forward(self, v, q, v_mask=None, q_mask=None, return_maps=False):
        B = v.shape[0]
        if v_mask is None:
            v_mask = torch.ones(v.shape[:2], dtype=torch.bool, device=v.device)
        if q_mask is None:
            q_mask = torch.ones(q.shape[:2], dtype=torch.bool, device=q.device)
        v_full = torch.cat([v, self.pad_v.to(v.dtype).expand(B, -1, -1)], 1)  # Ṽ = [V; Pv]
        q_full = torch.cat([q, self.pad_q.to(q.dtype).expand(B, -1, -1)], 1)  # Q̃ = [Q; Pq]
        return padded_coattention(self._split(self.proj_v(v_full)), self._split(self.proj_q(q_full)),
                                  v_full, q_full, v_mask, q_mask, return_maps=return_maps)

    def extra_repr(self):
        return f"dim={self.dim}, heads={self.heads}, num_pads={self.num_pads}"
