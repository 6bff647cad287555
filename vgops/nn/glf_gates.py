"""GLF's gates as modules on vgops' fused elementwise kernels: the textual gate (Eq. 3) and the
multi-scale gated fusion (Eq. 9)."""
import torch
from torch import nn

from ..ops.gates import cross_gate, self_guided


def _zeros_like(x):
    # A stride-0 zero of x's shape: self_guided takes a residual of the same shape (no
    # broadcasting) and GLF's gates have none; expand allocates nothing.
    return x.new_zeros(()).expand(x.shape)


class TextualGate(nn.Module):
    """GLF's textual gate (Eq. 3): the attended word context r of each patch decides which
    channels of the patch feature p pass,

        g = sigmoid(W r + b),     out = [p ⊙ g ; r]      (concatenated on the last dim)

    ``p ⊙ sigmoid(W r + b)`` is one fused :func:`vgops.self_guided` call (residual 0).

    Args:
        dim (int): D, the feature size of p and r (W is D x D).

    Shape:
        forward(p [..., D], r [..., D]) -> [..., 2D].
    """

    def __init__(self, dim):
        super().__init__()
        if dim < 1:
            raise ValueError(f"TextualGate: dim must be >= 1, got {dim}")
        self.dim = dim
        self.gate = nn.Linear(dim, dim)

    def forward(self, p, r):
        if p.shape != r.shape or p.shape[-1] != self.dim:
            raise ValueError(f"TextualGate: p and r must both be [..., {self.dim}], got "
                             f"{tuple(p.shape)} and {tuple(r.shape)}")
        gated = self_guided(self.gate(r), p, _zeros_like(p))
        return torch.cat([gated, r], -1)

    def extra_repr(self):
        return f"dim={self.dim}"


class MultiScaleGatedFusion(nn.Module):
    """GLF's multi-scale gated fusion (Eq. 9): every scale j keeps a gated share of itself and
    receives a gated, learnably weighted share of every other scale j',

        g1_j = sigmoid(W1_j x_j + b1_j)                    distil gate: what scale j sends
        g2_j = sigmoid(W2_j x_j + b2_j)                    reset gate: what scale j keeps
        m_j  = Σ_{j' != j} eta[j', j] · (g1_{j'} ⊙ x_{j'})
        y_j  = (1 + g2_j) ⊙ x_j + (1 - g2_j) ⊙ m_j

    Assumed form (the paper's Eq. 9 as we reconstruct it; it follows the gated fully fusion of
    Li et al., AAAI 2020, "(1 + G) X + (1 - G) Σ G' X'", with GLF's learnable scale-mixing
    weights eta): eta[j', j] starts at 1 / (S - 1) and the diagonal is never used. Kernels: the
    distil products ``g1 ⊙ x`` are one :func:`vgops.self_guided` call (residual 0) over all
    scales; ``g2 ⊙ x + (1 - g2) ⊙ m`` is one :func:`vgops.cross_gate` call with the gate logits
    (+h2, -h2), since 1 - sigmoid(h) = sigmoid(-h); the ``+ x`` is a plain add.

    Args:
        dim (int): D, the feature size.
        num_scales (int): S (3 in GLF: patch grids K = 3, 5, 7).

    Shape:
        forward(x [B, S, *, D]) -> [B, S, *, D] (scale on dim 1; any middle dims, e.g. clips T).
    """

    def __init__(self, dim, num_scales):
        super().__init__()
        if dim < 1 or num_scales < 1:
            raise ValueError(f"MultiScaleGatedFusion: dim and num_scales must be >= 1, got {dim} and {num_scales}")
        self.dim, self.num_scales = dim, num_scales
        S = num_scales
        bound = dim ** -0.5
        # per-scale gate weights, stored batched: [S, D, D] applied as x_j @ W[j]
        self.w_distil = nn.Parameter(torch.empty(S, dim, dim).uniform_(-bound, bound))
        self.b_distil = nn.Parameter(torch.empty(S, dim).uniform_(-bound, bound))
        self.w_reset = nn.Parameter(torch.empty(S, dim, dim).uniform_(-bound, bound))
        self.b_reset = nn.Parameter(torch.empty(S, dim).uniform_(-bound, bound))
        self.eta = nn.Parameter(torch.full((S, S), 1.0 / max(S - 1, 1)))
        self.register_buffer("off_diagonal", 1.0 - torch.eye(S), persistent=False)

    def _logits(self, x, w, b):
        # x [B, S, *, D] -> per-scale linear map, [B, S, *, D]
        B, S = x.shape[:2]
        flat = x.reshape(B, S, -1, self.dim)
        out = torch.einsum("bsnd,sde->bsne", flat, w) + b[None, :, None, :]
        return out.reshape(x.shape)

    def forward(self, x):
        if x.dim() < 3 or x.shape[1] != self.num_scales or x.shape[-1] != self.dim:
            raise ValueError(f"MultiScaleGatedFusion: x must be [B, S={self.num_scales}, *, D={self.dim}], "
                             f"got {tuple(x.shape)}")
        h1 = self._logits(x, self.w_distil, self.b_distil)
        h2 = self._logits(x, self.w_reset, self.b_reset)
        sent = self_guided(h1, x, _zeros_like(x))                            # g1_j' ⊙ x_j'
        eta = (self.eta * self.off_diagonal).to(x.dtype)                     # eta[j', j], j' != j
        m = torch.einsum("kj,bk...->bj...", eta, sent)                        # m_j
        return x + cross_gate(x, m, -h2, h2)                                 # (1+g2) x + (1-g2) m

    def extra_repr(self):
        return f"dim={self.dim}, num_scales={self.num_scales}"
