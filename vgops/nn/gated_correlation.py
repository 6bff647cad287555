from torch import nn

from ..ops.dual_correlation import dual_correlation, text_correlation
from ..ops.gates import cross_gate, self_guided


def _ffn(dim, ffn_dim):
    return nn.Sequential(nn.Linear(dim, ffn_dim), nn.ReLU(), nn.Linear(ffn_dim, dim))


class _GatedSide(nn.Module):
    """FFN1..FFN4 of one side (visual or text) and Eq. 2-3 on its attention outputs."""

    def __init__(self, dim, ffn_dim):
        super().__init__()
        self.ffn1, self.ffn2, self.ffn3, self.ffn4 = (_ffn(dim, ffn_dim) for _ in range(4))

    def forward(self, inp, self_corr, cross_corr):
        a = cross_gate(self_corr, cross_corr, self.ffn2(self_corr), self.ffn1(cross_corr))  # Eq. 2
        return self_guided(self.ffn3(a), self.ffn4(a), inp)  # Eq. 3


class GatedCorrelation(nn.Module):
    """FSM's gated correlation (Eq. 1-3) for the visual tokens and the words, in parallel.

    Visual side, per frame (x [B, T, L, d]) against the sentence (y [B, M, d]):

        x_s, x_c = dual_correlation(x, y, y_mask)                 Eq. 1
        x_a = sigmoid(FFN1(x_c)) * x_s + sigmoid(FFN2(x_s)) * x_c  Eq. 2 (cross_gate)
        x_g = sigmoid(FFN3(x_a)) * FFN4(x_a) + x                   Eq. 3 (self_guided)

    Text side with the roles swapped (each word attends over the words and over all T * L tokens
    of the valid frames; its own FFN1..FFN4). FFNs are Linear(d, ffn_dim) -> ReLU ->
    Linear(ffn_dim, d).

    Args:
        dim (int): d, the feature size of x and y.
        ffn_dim (int): hidden size of the FFNs.
        scale (float, optional): attention scale; 1/sqrt(d) by default.

    Shape:
        forward(x [B, T, L, d], y [B, M, d], x_mask [B, T] bool or None, y_mask [B, M] bool or
        None) -> (x_g [B, T, L, d], y_g [B, M, d]).
    """

    def __init__(self, dim, ffn_dim, scale=None):
        super().__init__()
        if dim < 1 or ffn_dim < 1:
            raise ValueError(f"GatedCorrelation: dim and ffn_dim must be >= 1, got {dim} and {ffn_dim}")
        self.dim, self.ffn_dim, self.scale = dim, ffn_dim, scale
        self.visual = _GatedSide(dim, ffn_dim)
        self.text = _GatedSide(dim, ffn_dim)

    def forward(self, x, y, x_mask=None, y_mask=None):
        x_s, x_c = dual_correlation(x, y, y_mask, self.scale)
        y_s, y_c = text_correlation(y, x, x_mask, y_mask, self.scale)
        return self.visual(x, x_s, x_c), self.text(y, y_s, y_c)

    def extra_repr(self):
        return f"dim={self.dim}, ffn_dim={self.ffn_dim}, scale={self.scale}"
