import torch

from .temporal_iou import temporal_iou

METHODS = ("gaussian", "linear", "hard")


def compute_dtype(segments_dtype, scores_dtype):
    """Soft-NMS computes in float64 when segments or scores are float64, else in float32."""
    return torch.float64 if torch.float64 in (segments_dtype, scores_dtype) else torch.float32


def decay_weight(method, iou, iou_threshold, sigma):
    """Weight of the remaining segments' scores given their IoU with the selected segment."""
    if method == "gaussian":
        return torch.exp(-(iou * iou) / sigma)
    if method == "linear":
        return torch.where(iou >= iou_threshold, 1 - iou, torch.ones_like(iou))
    if method == "hard":
        return torch.where(iou > iou_threshold, torch.zeros_like(iou), torch.ones_like(iou))
    raise ValueError(f"temporal_soft_nms: method must be one of {METHODS}, got {method!r}")


def temporal_soft_nms(segments, scores, method="gaussian", iou_threshold=0.3, sigma=0.5, min_score=1e-3,
                      max_keep=None):
    """Soft-NMS of segments [N, 2] by scores [N]: select the highest current score (ties: lower
    index), multiply every remaining score by decay_weight(IoU with the selected segment), drop
    the scores below min_score, repeat (at most max_keep times; None or -1: no limit). Segments
    scored below min_score from the start are never selected. Returns (selected indices int64
    [K], their scores at selection [K] in scores' dtype), in selection order."""
    if not torch.isfinite(scores).all():
        raise ValueError("temporal_soft_nms: scores must be finite")
    ct = compute_dtype(segments.dtype, scores.dtype)
    seg = segments.to(ct)
    cur = scores.to(ct).clone()
    n = len(cur)
    limit = n if max_keep is None or max_keep < 0 else min(max_keep, n)
    alive = cur >= min_score
    keep, kept_scores = [], []
    while len(keep) < limit and bool(alive.any()):
        # argmax returns the first of equal maxima: the lower index.
        i = int(torch.argmax(torch.where(alive, cur, torch.full_like(cur, float("-inf")))))
        keep.append(i)
        kept_scores.append(cur[i].clone())
        alive[i] = False
        iou = temporal_iou(seg[i:i + 1], seg)[0]  # [N], the selected segment first (as the kernels)
        cur = torch.where(alive, cur * decay_weight(method, iou, iou_threshold, sigma), cur)
        alive &= cur >= min_score
    idx = torch.tensor(keep, dtype=torch.long, device=segments.device)
    out = torch.stack(kept_scores) if kept_scores else cur.new_empty(0)
    return idx, out.to(scores.dtype)


def temporal_soft_nms_padded(segments, scores, method="gaussian", iou_threshold=0.3, sigma=0.5, min_score=1e-3,
                             max_keep=None, valid_mask=None):
    """temporal_soft_nms of every row b of segments [B, N, 2] / scores [B, N] over its valid
    segments (valid_mask [B, N], None: all); returns (indices [B, K] into N, -1 padded; scores
    [B, K], 0 padded; bool [B, K] marking the selections), K = max_keep (None or -1: N)."""
    b_rows, n = scores.shape
    k = n if max_keep is None or max_keep < 0 else max_keep
    idx = torch.full((b_rows, k), -1, dtype=torch.long, device=segments.device)
    out = torch.zeros((b_rows, k), dtype=scores.dtype, device=segments.device)
    ok = torch.zeros((b_rows, k), dtype=torch.bool, device=segments.device)
    for b in range(b_rows):
        if valid_mask is None:
            members = torch.arange(n, device=segments.device)
        else:
            members = torch.nonzero(valid_mask[b]).flatten()
        sel, sel_scores = temporal_soft_nms(segments[b, members], scores[b, members], method, iou_threshold, sigma,
                                            min_score, k)
        idx[b, :len(sel)] = members[sel]
        out[b, :len(sel)] = sel_scores
        ok[b, :len(sel)] = True
    return idx, out, ok
