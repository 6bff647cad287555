import torch

from .. import _backend, _checks, reference
from .._loader import HAS_EXTENSION

__all__ = ["temporal_nms", "batched_temporal_nms"]


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
