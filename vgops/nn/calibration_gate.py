import math

import torch
from torch import nn

from ..ops.calibration_gate import calibration_gate


class CalibrationGate(nn.Module):
    """IA-Net's calibration gate (Eq. 7-12) as a module: ``out = z * x + (1 - z) * tanh(r)`` with
    ``[r, z_pre] = Linear(2D, 2D)([x, m])`` and ``z = sigmoid(z_pre)``.

    Args:
        dim (int): D, the feature size of ``x`` and ``m``.

    Shape:
        x, m: Tensor[..., D] -> Tensor[..., D]. See :func:`vgops.calibration_gate`.

    The parameters are initialised as ``nn.Linear(2D, 2D)``'s (so a state dict of such a layer
    loads into ``weight`` / ``bias``).
    """

    def __init__(self, dim, *, device=None, dtype=None):
        super().__init__()
        if dim < 1:
            raise ValueError(f"CalibrationGate: dim must be >= 1, got {dim}")
        self.dim = dim
        self.weight = nn.Parameter(torch.empty(2 * dim, 2 * dim, device=device, dtype=dtype))
        self.bias = nn.Parameter(torch.empty(2 * dim, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self):
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        bound = 1 / math.sqrt(2 * self.dim)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x, m):
        return calibration_gate(x, m, self.weight, self.bias)

    def extra_repr(self):
        return f"dim={self.dim}"
