import torch

from .. import _backend, _checks, reference
from .._loader import HAS_EXTENSION

__all__ = ["temporal_nms", "batched_temporal_nms", "temporal_nms_padded"]


def _check_nms(op, segments, scores, iou_threshold):
    _checks.segments(segments, "segments", op, dim=2)
    _checks.floating(scores, "scores", op)
    if scores.dim() != 1 or scores.shape[0] != segments.shape[0]:
        raise ValueError(f"{op}: scores must be [N] for segments [N, 2] = {tuple(segments.shape)}, "
                         f"got shape {tuple(scores.shape)}")
    _checks.iou_threshold(iou_threshold, op)


def temporal_nms(segments, scores, iou_threshold, *, backend=None):
    """Non-maximum suppression of 1-D segments (torchvision.ops.nms for moments).

    Repeatedly keeps the highest-scoring remaining segment and removes every segment whose IoU
    with it is > ``iou_threshold`` (torchvision's strict rule). Equal scores rank by lower index on
    every device. IoU is computed in float32 for float16/bfloat16/float32 inputs.

    GPU memory: the suppression bitmask (1 bit per pair) is built and consumed in bands of R rows,
    so only ``8 * R * ceil(N / 64)`` bytes of it exist at a time, with R = 4096 rows where that
    stays under 256 MiB (fewer rows, at least 64, for larger N): 3.2 MB for N = 5,000, 102 MB for
    N = 200,000 (the full mask would be 5 GB). On top of that O(N): about 50 bytes per segment for
    the rank sort, the reordered segments and the flags. Results are identical to the CPU kernel.

    Args:
        segments (Tensor[N, 2]): ``(start, end)`` segments, floating point.
        scores (Tensor[N]): floating point; NaN is rejected with a ValueError.
        iou_threshold (float): segments with IoU > iou_threshold with a kept one are removed.
        backend (str, optional): "auto", "cpp" or "reference".

    Returns:
        Tensor[K] (int64): indices of the kept segments by decreasing score.
    """
    op = "temporal_nms"
    _check_nms(op, segments, scores, iou_threshold)
    _checks.same_device(op, segments=segments, scores=scores)
    if _backend.choose(op, backend, segments, scores) == "reference":
        return reference.temporal_nms(segments, scores, iou_threshold)
    return torch.ops.vgops.temporal_nms(segments, scores, float(iou_threshold))


def batched_temporal_nms(segments, scores, idxs, iou_threshold, *, backend=None):
    """NMS independently within each group (one video, one query) of a batch of segments.

    Same result as ``torchvision.ops.batched_nms``, but each group is its own problem: no IoU is
    ever computed across groups and no coordinate offset is added (which loses precision on large
    coordinates).

    Args:
        segments (Tensor[N, 2]): ``(start, end)`` segments, floating point.
        scores (Tensor[N]): floating point; NaN is rejected with a ValueError.
        idxs (Tensor[N]): integer group id of each segment (any values).
        iou_threshold (float): as in :func:`temporal_nms`.
        backend (str, optional): "auto", "cpp" or "reference".

    Returns:
        Tensor[K] (int64): indices of the kept segments of all groups, by decreasing score
        (ties by lower index).

    GPU memory: as :func:`temporal_nms`, with the band buffer summed over the groups
    (``8 * min(n_g, R) * ceil(n_g / 64)`` bytes per group g, R chosen to keep the sum under
    256 MiB where possible): 8.2 MB for 64 groups of 1,000 segments.
    """
    op = "batched_temporal_nms"
    _check_nms(op, segments, scores, iou_threshold)
    _checks.tensor(idxs, "idxs", op)
    if idxs.dim() != 1 or idxs.shape[0] != segments.shape[0] or idxs.is_floating_point() \
            or idxs.is_complex() or idxs.dtype == torch.bool:
        raise ValueError(f"{op}: idxs must be an integer tensor [N] for segments "
                         f"{tuple(segments.shape)}, got {idxs.dtype} of shape {tuple(idxs.shape)}")
    _checks.same_device(op, segments=segments, scores=scores, idxs=idxs)
    if _backend.choose(op, backend, segments, scores, idxs) == "reference":
        return reference.batched_temporal_nms(segments, scores, idxs, iou_threshold)
    return torch.ops.vgops.batched_temporal_nms(segments, scores, idxs, float(iou_threshold))


def temporal_nms_padded(segments, scores, iou_threshold, max_keep, valid_mask=None, *, backend=None):
    """NMS of every row of a padded batch, with static output shapes (for models, torch.compile and
    export: no data-dependent size, and on the GPU no host synchronisation).

    Row ``b`` is an independent :func:`temporal_nms` problem over its valid segments
    (``valid_mask[b]``); its output holds the first ``max_keep`` kept indices (indices into N, by
    decreasing score, ties by lower index), then padding. Row by row, the kept indices equal
    ``temporal_nms(segments[b, v], scores[b, v], iou_threshold)[:max_keep]`` mapped back through
    ``v = valid_mask[b].nonzero()``.

    Masked-out segments are never read for IoU and their scores may be anything. NaN scores among
    the valid segments raise a ValueError on the CPU; on CUDA (where raising would need a host
    synchronisation) a NaN-scored segment is treated as masked out.

    CUDA: one thread block per row walks the row in rank order 256 candidates at a time (each
    candidate against the segments kept so far, then the tile's own greedy order); it stops once
    ``max_keep`` are kept. Extra memory: the row order (``B * N`` int64) and
    ``B * min(max_keep, N)`` kept segments.

    Args:
        segments (Tensor[B, N, 2]): ``(start, end)`` segments, floating point.
        scores (Tensor[B, N]): floating point.
        iou_threshold (float): a kept segment removes the segments whose IoU with it is
            > ``iou_threshold`` (torchvision's strict rule).
        max_keep (int or None): columns K of the output; ``None`` or ``-1``: K = N.
        valid_mask (Tensor[B, N], optional): bool, False excludes a segment; ``None``: all valid.
        backend (str, optional): "auto", "cpp" or "reference".

    Returns:
        (Tensor[B, K], Tensor[B, K]): kept indices (int64, ``-1`` where padded) and a bool mask
        that is True exactly on the kept entries (the first ``kept_b`` of row ``b``).
    """
    op = "temporal_nms_padded"
    _checks.padded_segments_scores(op, segments, scores, valid_mask)
    _checks.iou_threshold(iou_threshold, op)
    k = _checks.max_keep(max_keep, op)
    tensors = (segments, scores) + ((valid_mask,) if valid_mask is not None else ())
    if _backend.choose(op, backend, *tensors) == "reference":
        return reference.temporal_nms_padded(segments, scores, iou_threshold, k, valid_mask)
    return torch.ops.vgops.temporal_nms_padded(segments, scores, float(iou_threshold), k, valid_mask)


if HAS_EXTENSION:
    def _kept_indices(segments):
        # The number kept depends on the data: an unbacked size for torch.compile / export.
        k = torch.library.get_ctx().new_dynamic_size()
        return segments.new_empty((k,), dtype=torch.long)

    @torch.library.register_fake("vgops::temporal_nms")
    def _(segments, scores, iou_threshold):
        torch._check(segments.dim() == 2 and segments.shape[1] == 2,
                     lambda: f"temporal_nms: segments must be [N, 2], got {segments.shape}")
        torch._check(scores.dim() == 1 and scores.shape[0] == segments.shape[0],
                     lambda: f"temporal_nms: scores must be [N], got {scores.shape}")
        return _kept_indices(segments)

    @torch.library.register_fake("vgops::batched_temporal_nms")
    def _(segments, scores, idxs, iou_threshold):
        torch._check(segments.dim() == 2 and segments.shape[1] == 2,
                     lambda: f"batched_temporal_nms: segments must be [N, 2], got {segments.shape}")
        torch._check(scores.dim() == 1 and scores.shape[0] == segments.shape[0],
                     lambda: f"batched_temporal_nms: scores must be [N], got {scores.shape}")
        torch._check(idxs.dim() == 1 and idxs.shape[0] == segments.shape[0],
                     lambda: f"batched_temporal_nms: idxs must be [N], got {idxs.shape}")
        return _kept_indices(segments)

    @torch.library.register_fake("vgops::temporal_nms_padded")
    def _(segments, scores, iou_threshold, max_keep, valid_mask=None):
        torch._check(segments.dim() == 3 and segments.shape[2] == 2,
                     lambda: f"temporal_nms_padded: segments must be [B, N, 2], got {segments.shape}")
        torch._check(scores.dim() == 2 and scores.shape[0] == segments.shape[0]
                     and scores.shape[1] == segments.shape[1],
                     lambda: f"temporal_nms_padded: scores must be [B, N], got {scores.shape}")
        torch._check(max_keep >= -1, lambda: f"temporal_nms_padded: max_keep must be >= -1, got {max_keep}")
        k = segments.shape[1] if max_keep < 0 else max_keep
        # Static shapes: [B, K] whatever the data.
        return (segments.new_empty((segments.shape[0], k), dtype=torch.long),
                segments.new_empty((segments.shape[0], k), dtype=torch.bool))
