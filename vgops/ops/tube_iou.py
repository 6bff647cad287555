import torch

from .. import _backend, _checks, reference
from .._loader import HAS_EXTENSION

__all__ = ["tube_iou", "tube_metrics"]


def tube_iou(pred_boxes, pred_span, gt_boxes, gt_span, frame_mask=None, *, backend=None):
    """tIoU and vIoU of predicted spatio-temporal tubes (TubeDETR's definitions).

    Frame t belongs to a span [s, e) when s <= t < e (half-open, frame indices).
    tIoU is the temporal IoU of the two spans. vIoU = (sum over valid frames in both spans of
    the box IoU) / (number of valid frames in either span), 0 when that union is empty.

    Args:
        pred_boxes (Tensor[B, T, 4]): predicted ``(x1, y1, x2, y2)`` box in every frame.
        pred_span (Tensor[B, 2]): predicted ``[start, end)`` frame span.
        gt_boxes (Tensor[B, T, 4]): ground-truth boxes (only frames in the gt span are read).
        gt_span (Tensor[B, 2]): ground-truth ``[start, end)`` frame span.
        frame_mask (BoolTensor[B, T], optional): which frames exist (videos of different
            lengths, or the evaluated frames of a sampled video); all when None.
        backend (str, optional): "auto", "cpp" or "reference".

    Returns:
        (Tensor[B], Tensor[B]): tIoU and vIoU in the boxes' dtype (float16/bfloat16 computed in
        float32). Not differentiable (a metric).
    """
    op = "tube_iou"
    for name, x in (("pred_boxes", pred_boxes), ("gt_boxes", gt_boxes)):
        _checks.floating(x, name, op)
        if x.dim() != 3 or x.shape[-1] != 4:
            raise ValueError(f"{op}: {name} must be boxes [B, T, 4], got shape {tuple(x.shape)}")
    if gt_boxes.shape != pred_boxes.shape:
        raise ValueError(f"{op}: gt_boxes must have pred_boxes' shape {tuple(pred_boxes.shape)}, got {tuple(gt_boxes.shape)}")
    b, t = pred_boxes.shape[:2]
    for name, x in (("pred_span", pred_span), ("gt_span", gt_span)):
        _checks.tensor(x, name, op)
        if x.shape != (b, 2) or x.dtype == torch.bool or x.is_complex():
            raise ValueError(f"{op}: {name} must be a real tensor [B, 2] = [{b}, 2] of frame indices, "
                             f"got {x.dtype} of shape {tuple(x.shape)}")
    if frame_mask is None:
        frame_mask = torch.ones(b, t, dtype=torch.bool, device=pred_boxes.device)
    _checks.tensor(frame_mask, "frame_mask", op)
    if frame_mask.dtype != torch.bool or frame_mask.shape != (b, t):
        raise ValueError(f"{op}: frame_mask must be a bool tensor [B, T] = [{b}, {t}], "
                         f"got {frame_mask.dtype} of shape {tuple(frame_mask.shape)}")
    _checks.same_device(op, pred_boxes=pred_boxes, pred_span=pred_span, gt_boxes=gt_boxes, gt_span=gt_span,
                        frame_mask=frame_mask)
    dtype = pred_boxes.dtype
    args = (pred_boxes.detach(), pred_span.detach().to(dtype), gt_boxes.detach().to(dtype), gt_span.detach().to(dtype),
            frame_mask)
    if _backend.choose(op, backend, *args) == "reference":
        return reference.tube_iou(*args)
    return torch.ops.vgops.tube_iou(*args)


def tube_metrics(tiou, viou, thresholds=(0.3, 0.5)):
    """Summary of :func:`tube_iou` over a dataset, in percent (TubeDETR's report).

    Returns:
        dict: ``m_tIoU`` and ``m_vIoU`` (means) and ``vIoU@R`` for each R in ``thresholds``: the
        percentage of queries with vIoU > R.
    """
    for name, x in (("tiou", tiou), ("viou", viou)):
        _checks.floating(x, name, "tube_metrics")
        if x.dim() != 1:
            raise ValueError(f"tube_metrics: {name} must be [B], got shape {tuple(x.shape)}")
    n = max(viou.shape[0], 1)
    out = {"m_tIoU": 100.0 * float(tiou.double().sum()) / n, "m_vIoU": 100.0 * float(viou.double().sum()) / n}
    for r in thresholds:
        out[f"vIoU@{r}"] = 100.0 * float((viou > r).sum()) / n
    return out


if HAS_EXTENSION:
    @torch.library.register_fake("vgops::tube_iou")
    def _(pred_boxes, pred_span, gt_boxes, gt_span, frame_mask):
        torch._check(pred_boxes.dim() == 3 and pred_boxes.shape[2] == 4, lambda: "tube_iou: pred_boxes must be [B, T, 4]")
        b = pred_boxes.shape[0]
        return pred_boxes.new_empty((b,)), pred_boxes.new_empty((b,))
