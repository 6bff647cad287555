"""Pure-PyTorch calibration gate of IA-Net (Eq. 7-12)."""
import torch
import torch.nn.functional as F

from .gates import compute_dtype


def calibration_gate(x, m, weight, bias):
    """IA-Net's calibration gate: x [..., D] is calibrated by the co-attended feature m [..., D].

        [r, z_pre] = [x, m] W^T + b        (weight W [2D, 2D], bias b [2D])
        z = sigmoid(z_pre)                   update gate
        out = z * x + (1 - z) * tanh(r)      keep x where z is high, take the candidate tanh(r) elsewhere

    Half/bfloat16 inputs are computed in float32 and the result rounded once.
    """
    dtype = torch.promote_types(torch.promote_types(x.dtype, m.dtype), torch.promote_types(weight.dtype, bias.dtype))
    ct = compute_dtype(dtype)
    x, m, weight, bias = (t.to(ct) for t in (x, m, weight, bias))
    r, z_pre = F.linear(torch.cat([x, m], dim=-1), weight, bias).chunk(2, dim=-1)
    z = torch.sigmoid(z_pre)
    out = z * x + (1 - z) * torch.tanh(r)
    return out.to(dtype)
