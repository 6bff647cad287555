import torch

from .temporal_iou import compute_dtype, temporal_iou


def box_iou_aligned(a, b):
    """IoU of corresponding (x1, y1, x2, y2) boxes [..., 4] (torchvision's formula), 0 where the
    union is not positive."""
    w = (torch.minimum(a[..., 2], b[..., 2]) - torch.maximum(a[..., 0], b[..., 0])).clamp(min=0)
    h = (torch.minimum(a[..., 3], b[..., 3]) - torch.maximum(a[..., 1], b[..., 1])).clamp(min=0)
    inter = w * h
    union = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1]) + (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1]) - inter
    return torch.where(union > 0, inter / torch.where(union > 0, union, torch.ones_like(union)), torch.zeros_like(union))


def tube_iou(pred_boxes, pred_span, gt_boxes, gt_span, frame_mask=None):
    """(tIoU [B], vIoU [B]) of tubes: boxes [B, T, 4] per frame, spans [B, 2] of frame indices,
    half-open [s, e). vIoU = sum of box IoUs over valid frames in both spans / valid frames in
    either span (TubeDETR)."""
    dtype = pred_boxes.dtype
    ct = compute_dtype(dtype)
    b, t = pred_boxes.shape[:2]
    ps, gs = pred_span.to(ct), gt_span.to(ct)
    tiou = temporal_iou(ps, gs, aligned=True)
    frames = torch.arange(t, dtype=ct, device=pred_boxes.device)[None, :]  # [1, T]
    valid = torch.ones(b, t, dtype=torch.bool, device=pred_boxes.device) if frame_mask is None else frame_mask
    lo_i, hi_i = torch.maximum(ps[:, :1], gs[:, :1]), torch.minimum(ps[:, 1:], gs[:, 1:])
    lo_u, hi_u = torch.minimum(ps[:, :1], gs[:, :1]), torch.maximum(ps[:, 1:], gs[:, 1:])
    in_inter = valid & (lo_i <= frames) & (frames < hi_i)
    in_union = valid & (lo_u <= frames) & (frames < hi_u)
    ious = box_iou_aligned(pred_boxes.to(ct), gt_boxes.to(ct))  # [B, T]
    viou = torch.where(in_inter, ious, torch.zeros_like(ious)).sum(1) / in_union.sum(1).clamp(min=1).to(ct)
    return tiou.to(dtype), viou.to(dtype)
