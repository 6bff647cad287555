"""Pure-PyTorch RoIAlign over clips, written from the RoIAlign definition (torchvision's rules):

For a box (x1, y1, x2, y2) on a map scaled by ``spatial_scale``, per axis
``start = x1 * scale - offset`` and ``length = x2 * scale - offset - start`` (``offset`` = 0.5 when
``aligned``; when not aligned the length is at least 1), ``bin = length / pooled``, and every
output bin averages a grid of ``grid_h * grid_w`` bilinear samples (``grid`` = ``sampling_ratio``
if > 0, else ``ceil(length / pooled)``) at ``start + p * bin + (i + 0.5) * bin / grid``. A sample
off the map (a coordinate outside [-1, size]) contributes 0 but still counts; one within a pixel
of the edge reads the edge (coordinates are clamped to [0, size - 1]).

The bilinear samples are taken with ``grid_sample`` (``align_corners=True``, after the clamping
above, so its border handling never matters). Computed in float32 for float16/bfloat16 inputs.
Boxes get no gradient.
"""
import torch
import torch.nn.functional as F

from .temporal_iou import compute_dtype


def _pair(output_size):
    if isinstance(output_size, int):
        return output_size, output_size
    return int(output_size[0]), int(output_size[1])


def roi_axis(lo, hi, scale, aligned, pooled, sampling_ratio):
    """Per-RoI geometry along one axis: (start, bin size, samples per bin), torchvision's rules."""
    offset = 0.5 if aligned else 0.0
    start = lo * scale - offset
    length = (hi * scale - offset) - start
    if not aligned:
        length = length.clamp(min=1.0)  # malformed RoIs become 1 long
    bin_size = length / pooled
    if sampling_ratio > 0:
        grid = torch.full_like(length, float(sampling_ratio))
    else:
        grid = torch.ceil(length / pooled).clamp(min=0.0)
        grid = torch.where(torch.isfinite(grid), grid, torch.zeros_like(grid))  # NaN/inf RoIs: no samples
    return start, bin_size, grid


def sample_points(start, bin_size, grid, pooled, max_grid, size):
    """Coordinates [..., pooled, max_grid] of the sampling points of every bin, clamped to
    [0, size - 1], and a mask of those that exist (i < grid) and land on the map ([-1, size])."""
    p = torch.arange(pooled, dtype=start.dtype, device=start.device)[:, None]
    i = torch.arange(max_grid, dtype=start.dtype, device=start.device)
    s, b, g = start[..., None, None], bin_size[..., None, None], grid[..., None, None]
    coord = s + p * b + (i + 0.5) * b / g.clamp(min=1.0)
    keep = (i < g) & (coord >= -1) & (coord <= size)
    coord = torch.where(keep, coord, torch.zeros_like(coord))  # dropped samples: any finite place
    return coord.clamp(min=0.0, max=max(size - 1, 0)), keep


def _max_grid(grid):
    return int(grid.max()) if grid.numel() else 0


def roi_align_clips(features, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=True, valid=None):
    """features [B, T, C, H, W], boxes [B, T, 4] or [B, T, R, 4] (x1, y1, x2, y2), valid [B, T]
    bool or None -> [B, T, C, oh, ow] or [B, T, R, C, oh, ow]; frame (b, t) pooled with its
    box(es), as torchvision.ops.roi_align would; frames with valid False give zeros."""
    B, T, C, H, W = features.shape
    single = boxes.dim() == 3
    if single:
        boxes = boxes.unsqueeze(2)
    R = boxes.shape[2]
    oh, ow = _pair(output_size)
    dtype = features.dtype
    ct = compute_dtype(dtype)
    N = B * T
    if N * R * C == 0 or H == 0 or W == 0:
        out = features.new_zeros((B, T, R, C, oh, ow))
        return out[:, :, 0] if single else out
    f = features.to(ct).reshape(N, C, H, W)
    bx = boxes.detach().to(ct).reshape(N, R, 4)
    x1, y1, x2, y2 = bx.unbind(-1)
    ys, ybin, ygrid = roi_axis(y1, y2, spatial_scale, aligned, oh, sampling_ratio)
    xs, xbin, xgrid = roi_axis(x1, x2, spatial_scale, aligned, ow, sampling_ratio)
    gy, gx = _max_grid(ygrid), _max_grid(xgrid)
    if gy == 0 or gx == 0:  # no box samples anything
        out = features.new_zeros((B, T, R, C, oh, ow))
        return out[:, :, 0] if single else out
    y, ykeep = sample_points(ys, ybin, ygrid, oh, gy, H)  # [N, R, oh, gy]
    x, xkeep = sample_points(xs, xbin, xgrid, ow, gx, W)  # [N, R, ow, gx]
    # Every (y, x) pair of a bin: [N, R, oh, gy, ow, gx], normalised for align_corners=True.
    shape = (N, R, oh, gy, ow, gx)
    yn = (y / max(H - 1, 1) * 2 - 1)[:, :, :, :, None, None].expand(shape)
    xn = (x / max(W - 1, 1) * 2 - 1)[:, :, None, None, :, :].expand(shape)
    grid = torch.stack([xn, yn], -1).reshape(N, R * oh * gy, ow * gx, 2)
    samples = F.grid_sample(f, grid, mode="bilinear", padding_mode="border", align_corners=True)
    samples = samples.view(N, C, R, oh, gy, ow, gx)
    keep = (ykeep[:, :, :, :, None, None] & xkeep[:, :, None, None, :, :])[:, None]  # [N, 1, R, oh, gy, ow, gx]
    total = torch.where(keep, samples, torch.zeros((), dtype=ct, device=f.device)).sum(dim=(4, 6))
    count = (ygrid * xgrid).clamp(min=1.0)[:, None, :, None, None]  # [N, 1, R, 1, 1]
    out = (total / count).permute(0, 2, 1, 3, 4).reshape(B, T, R, C, oh, ow)
    if valid is not None:
        out = torch.where(valid[:, :, None, None, None, None], out, torch.zeros((), dtype=ct, device=f.device))
    out = out.to(dtype)
    return out[:, :, 0] if single else out


def roi_align_clips_multiscale(features, boxes, output_size, spatial_scales, sampling_ratio=-1, aligned=True,
                               valid=None):
    """Every level l of ``features`` (a list of [B, T, C, H_l, W_l]) pooled with scale
    ``spatial_scales[l]``, stacked on a level axis before C: [B, T, L, C, oh, ow] (or
    [B, T, R, L, C, oh, ow] for boxes [B, T, R, 4])."""
    outs = [roi_align_clips(f, boxes, output_size, s, sampling_ratio, aligned, valid)
            for f, s in zip(features, spatial_scales)]
    return torch.stack(outs, dim=-4)
