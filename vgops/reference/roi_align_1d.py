"""Pure-PyTorch temporal RoIAlign (the 1D analogue of torchvision's roi_align), written from the
definition: per segment ``start = s * scale - offset``, ``length = e * scale - offset - start``
(``offset`` = 0.5 when ``aligned``; at least 1 when not aligned), ``bin = length / output_len``;
every output bin averages ``grid`` linearly interpolated samples (``grid`` = ``sampling_ratio``
if > 0, else ``ceil(length / output_len)``) at ``start + p * bin + (i + 0.5) * bin / grid``. A
sample off the sequence (outside [-1, T]) contributes 0 but still counts; one within a step of an
end reads that end. Computed in float32 for float16/bfloat16 inputs; segments get no gradient.
"""
import torch

from .roi_align_clips import roi_axis, sample_points
from .temporal_iou import compute_dtype


def roi_align_1d(features, segments, output_len, temporal_scale=1.0, sampling_ratio=-1, aligned=True):
    """features [B, C, T], segments [K, 3] (batch index, start, end) -> [K, C, output_len]."""
    B, C, T = features.shape
    K = segments.shape[0]
    dtype = features.dtype
    ct = compute_dtype(dtype)
    seg = segments.detach().to(ct)
    start, bin_size, grid = roi_axis(seg[:, 1], seg[:, 2], temporal_scale, aligned, output_len, sampling_ratio)
    G = int(grid.max()) if K else 0
    if K * C == 0 or T == 0 or G == 0:
        return features.new_zeros((K, C, output_len))
    coord, keep = sample_points(start, bin_size, grid, output_len, G, T)  # [K, L, G]
    lo = coord.floor().long().clamp(max=T - 1)
    hi = (lo + 1).clamp(max=T - 1)
    w_hi = coord - lo.to(ct)
    w_lo = 1 - w_hi
    rows = features.to(ct).transpose(1, 2)  # [B, T, C]
    b = seg[:, 0].long()[:, None]  # [K, 1]
    v_lo = rows[b, lo.reshape(K, -1)]  # [K, L*G, C]
    v_hi = rows[b, hi.reshape(K, -1)]
    w_lo, w_hi, keep = (x.reshape(K, -1, 1) for x in (w_lo, w_hi, keep))
    samples = torch.where(keep, w_lo * v_lo + w_hi * v_hi, torch.zeros((), dtype=ct, device=features.device))
    out = samples.view(K, output_len, G, C).sum(2) / grid.clamp(min=1.0)[:, None, None]
    return out.transpose(1, 2).contiguous().to(dtype)
