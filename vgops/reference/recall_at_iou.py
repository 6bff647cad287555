from .temporal_iou import temporal_iou


def recall_at_iou(pred, gt, gt_mask=None, pred_mask=None, ns=(1, 5), thresholds=(0.3, 0.5, 0.7), strict=False):
    """R@n,IoU=m and mIoU as a straightforward per-query Python loop (the evaluation-script way).

    pred [B, K, 2] ranked best first; gt [B, 2] or [B, G, 2] with gt_mask [B, G]; pred_mask [B, K].
    A query counts for R@n,IoU=m when one of its first n valid predictions has IoU >= m (> m
    when strict) with its best-matching valid ground-truth window. mIoU: mean top-1 IoU.
    Values are percentages.
    """
    if gt.dim() == 2:
        gt = gt[:, None, :]
    hits = {(n, m): 0 for n in ns for m in thresholds}
    top1 = 0.0
    for b in range(pred.shape[0]):
        preds = [pred[b, k] for k in range(pred.shape[1]) if pred_mask is None or pred_mask[b, k]]
        gts = [gt[b, g] for g in range(gt.shape[1]) if gt_mask is None or gt_mask[b, g]]
        ious = []
        for p in preds:
            best = 0.0
            for w in gts:
                best = max(best, float(temporal_iou(p[None], w[None], aligned=True)[0]))
            ious.append(best)
        top1 += ious[0] if ious else 0.0
        for n in ns:
            for m in thresholds:
                if any((i > m) if strict else (i >= m) for i in ious[:n]):
                    hits[(n, m)] += 1
    count = max(pred.shape[0], 1)
    out = {f"R@{n},IoU={m}": 100.0 * hits[(n, m)] / count for n in ns for m in thresholds}
    out["mIoU"] = 100.0 * top1 / count
    return out
