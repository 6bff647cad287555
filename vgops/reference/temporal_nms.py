import torch

from .temporal_iou import compute_dtype, temporal_iou


def _check_scores(scores, op):
    if torch.isnan(scores).any():
        raise ValueError(f"{op}: scores must not contain NaN")


def rank_order(scores):
    """Indices by decreasing score, ties by lower index (a stable descending sort)."""
    return torch.sort(scores, descending=True, stable=True).indices


def temporal_nms(segments, scores, iou_threshold):
    """Greedy NMS of segments [N, 2] by scores [N]: keep the best remaining segment, remove every
    segment whose IoU with it is > iou_threshold, repeat. Returns kept indices (int64) by
    decreasing score, ties by lower index."""
    _check_scores(scores, "temporal_nms")
    order = rank_order(scores)
    seg = segments[order].to(compute_dtype(segments.dtype))
    iou = temporal_iou(seg, seg)  # [N, N] in the compute dtype
    removed = torch.zeros(len(order), dtype=torch.bool, device=segments.device)
    keep = []
    for i in range(len(order)):
        if removed[i]:
            continue
        keep.append(i)
        removed |= iou[i] > iou_threshold
    return order[torch.tensor(keep, dtype=torch.long, device=segments.device)]


def batched_temporal_nms(segments, scores, idxs, iou_threshold):
    """temporal_nms independently within each group id of idxs [N]; the kept indices of all groups
    by decreasing score, ties by lower index."""
    _check_scores(scores, "batched_temporal_nms")
    kept = [torch.zeros(0, dtype=torch.long, device=segments.device)]
    for g in torch.unique(idxs):
        members = torch.nonzero(idxs == g).flatten()
        kept.append(members[temporal_nms(segments[members], scores[members], iou_threshold)])
    kept = torch.sort(torch.cat(kept)).values
    return kept[rank_order(scores[kept])]


def temporal_nms_padded(segments, scores, iou_threshold, max_keep, valid_mask=None):
    """temporal_nms of every row b of segments [B, N, 2] / scores [B, N] over its valid segments
    (valid_mask [B, N], None: all); returns (indices [B, K] int64 into N, -1 padded; bool [B, K]
    marking the kept entries), K = max_keep (None or -1: N), the first K kept of each row."""
    b_rows, n = scores.shape
    k = n if max_keep is None or max_keep < 0 else max_keep
    idx = torch.full((b_rows, k), -1, dtype=torch.long, device=segments.device)
    ok = torch.zeros((b_rows, k), dtype=torch.bool, device=segments.device)
    for b in range(b_rows):
        if valid_mask is None:
            members = torch.arange(n, device=segments.device)
        else:
            members = torch.nonzero(valid_mask[b]).flatten()
        kept = members[temporal_nms(segments[b, members], scores[b, members], iou_threshold)][:k]
        idx[b, :len(kept)] = kept
        ok[b, :len(kept)] = True
    return idx, ok
