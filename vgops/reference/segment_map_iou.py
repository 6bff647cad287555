import torch

from .temporal_iou import compute_dtype, temporal_iou


def segment_map_iou(gt, num_clips, duration=None):
    """IoU of every candidate moment (s, e) of an N-clip grid with gt [B, 2] -> [B, N, N].

    Cell (s, e) is the segment [s, e + 1) * duration / N (2D-TAN); cells with s > e are 0.
    duration: None (gt in clip units: duration = N), a float, or a tensor [B].
    """
    dtype = gt.dtype
    ct = compute_dtype(dtype)
    b, n = gt.shape[0], num_clips
    if duration is None:
        duration = float(n)
    duration = torch.as_tensor(duration, dtype=ct, device=gt.device).expand(b)
    step = duration / n  # [B]
    idx = torch.arange(n, dtype=ct, device=gt.device)
    starts = (idx[None, :, None] * step[:, None, None]).expand(b, n, n)
    ends = ((idx[None, None, :] + 1) * step[:, None, None]).expand(b, n, n)
    cells = torch.stack([starts, ends], -1).reshape(b, n * n, 2)
    iou = temporal_iou(cells, gt.to(ct)[:, None, :]).reshape(b, n, n)
    upper = torch.ones(n, n, dtype=torch.bool, device=gt.device).triu()
    return torch.where(upper, iou, torch.zeros_like(iou)).to(dtype)
