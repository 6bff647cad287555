import torch

from .. import _checks
from .temporal_iou import temporal_iou

__all__ = ["recall_at_iou"]


def recall_at_iou(pred, gt, gt_mask=None, pred_mask=None, ns=(1, 5), thresholds=(0.3, 0.5, 0.7),
                  strict=False, *, backend=None):
    """Moment-retrieval recall: "R@n,IoU=m" and "mIoU", as every temporal-grounding paper reports.

    "R@n,IoU=m" is the percentage of queries with at least one of their top-n predictions at
    IoU >= m with the ground truth (moment_detr's rule; ``strict=True`` gives IoU > m, as
    2D-TAN's evaluation does). With several ground-truth windows per query the best-matching
    window counts (moment_detr). "mIoU" is the mean IoU of the top-1 prediction, in percent
    (2D-TAN's own script averages the top-3 instead; not done here). A query with no valid
    prediction counts as a miss with IoU 0. IoU is :func:`vgops.temporal_iou` (len_a + len_b -
    inter as the union; the scripts' max(end) - min(start) agrees wherever the segments overlap).

    Args:
        pred (Tensor[B, K, 2]): predicted moments per query, ranked best first.
        gt (Tensor[B, 2] or Tensor[B, G, 2]): ground-truth window(s), same units as ``pred``.
        gt_mask (BoolTensor[B, G], optional): which ground-truth windows exist.
        pred_mask (BoolTensor[B, K], optional): which predictions exist (e.g. the valid flags of
            ``temporal_nms_padded``); the top-n are the first n valid ones.
        ns (tuple of int): the n of R@n.
        thresholds (tuple of float): the m of IoU=m.
        strict (bool): compare IoU > m instead of >= m.
        backend (str, optional): backend of the IoU computation.

    Returns:
        dict: ``{"R@n,IoU=m": float percent, ..., "mIoU": float percent}``.
    """
    op = "recall_at_iou"
    _checks.segments(pred, "pred", op, dim=3)
    _checks.segments(gt, "gt", op)
    if gt.dim() not in (2, 3) or gt.shape[0] != pred.shape[0]:
        raise ValueError(f"{op}: gt must be [B, 2] or [B, G, 2] with B = {pred.shape[0]} as in pred, "
                         f"got shape {tuple(gt.shape)}")
    gt3 = gt if gt.dim() == 3 else gt[:, None, :]
    for name, mask, shape in (("gt_mask", gt_mask, gt3.shape[:2]), ("pred_mask", pred_mask, pred.shape[:2])):
        if mask is not None and (not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool
                                 or mask.shape != shape):
            got = f"{mask.dtype} of shape {tuple(mask.shape)}" if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise ValueError(f"{op}: {name} must be a bool tensor of shape {tuple(shape)}, got {got}")
    if not ns or any(not isinstance(n, int) or n < 1 for n in ns):
        raise ValueError(f"{op}: ns must be positive ints, got {ns!r}")
    _checks.same_device(op, pred=pred, gt=gt)
    with torch.no_grad():
        iou = temporal_iou(pred, gt3.to(pred.device), backend=backend)  # [B, K, G]
        if gt_mask is not None:
            iou = iou.masked_fill(~gt_mask[:, None, :].to(iou.device), 0)
        best = iou.amax(-1) if iou.shape[-1] > 0 else iou.new_zeros(iou.shape[:2])  # [B, K]
        valid = torch.ones_like(best, dtype=torch.bool) if pred_mask is None else pred_mask.to(best.device)
        # Rank of each prediction among its query's valid ones (0-based); invalid ones never count.
        rank = torch.cumsum(valid.long(), dim=1) - 1
        queries = max(pred.shape[0], 1)
        out = {}
        for n in ns:
            in_top = valid & (rank < n)
            for m in thresholds:
                hit = (best > m) if strict else (best >= m)
                out[f"R@{n},IoU={m}"] = 100.0 * float((hit & in_top).any(1).sum()) / queries
        top1 = (best * (valid & (rank == 0))).sum()
        out["mIoU"] = 100.0 * float(top1) / queries
    return out
