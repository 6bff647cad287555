import math

import torch

from .. import _backend, _checks, reference
from .._loader import HAS_EXTENSION

__all__ = ["temporal_soft_nms", "temporal_soft_nms_padded"]

METHODS = ("gaussian", "linear", "hard")


def _check_args(op, method, iou_threshold, sigma, min_score, max_keep):
    if not isinstance(method, str):
        raise TypeError(f"{op}: method must be a str, one of {METHODS}, got {type(method).__name__}")
    if method not in METHODS:
        raise ValueError(f"{op}: method must be one of {METHODS}, got {method!r}")
    _checks.iou_threshold(iou_threshold, op)
    _checks.number(sigma, "sigma", op)
    if method == "gaussian" and not (sigma > 0 and math.isfinite(sigma)):
        raise ValueError(f"{op}: sigma must be a finite number > 0 for method='gaussian', got {sigma}")
    _checks.number(min_score, "min_score", op)
    return _checks.max_keep(max_keep, op)


def temporal_soft_nms(segments, scores, method="gaussian", iou_threshold=0.3, sigma=0.5, min_score=1e-3,
                      max_keep=None, *, backend=None):
    """Soft non-maximum suppression of 1-D segments (Bodla et al., "Soft-NMS", ICCV 2017), as
    ActionFormer and mmcv post-process temporal action / moment proposals.

    Repeatedly selects the remaining segment with the highest current score (ties: lower index),
    records it with that score, and multiplies the score of every other remaining segment by a
    weight of its IoU with the selected one:

    * ``"gaussian"``: ``w = exp(-IoU^2 / sigma)``;
    * ``"linear"``: ``w = 1 - IoU`` where ``IoU >= iou_threshold``, else 1;
    * ``"hard"``: ``w = 0`` where ``IoU > iou_threshold``, else 1.

    A segment whose decayed score falls below ``min_score`` is dropped. Stops after ``max_keep``
    selections or when no segment remains. Computed in float64 when ``segments`` or ``scores``
    is float64, else in float32 (IoU included).

    Followed: mmcv's ``softnms_cpu`` (``mmcv/ops/csrc/pytorch/cpu/nms.cpp``) and ActionFormer's
    1-D ``softnms`` (``libs/utils/csrc/nms_cpu.cpp``), which share the weights, the strict
    ``score < min_score`` drop and the selection-ordered output. Divergences, all deliberate:

    * ties between equal current scores go to the lower index (mmcv / ActionFormer take the first
      in their working array, whose order their swaps scramble);
    * ``"hard"`` removes at IoU ``> iou_threshold`` (mmcv / ActionFormer: ``>=``), the rule of
      :func:`temporal_nms`: with ``min_score > 0`` it selects exactly what ``temporal_nms``
      keeps;
    * segments scored below ``min_score`` from the start are never selected (mmcv / ActionFormer
      test ``min_score`` only after a decay, so they return the best segment even when every
      score is below ``min_score``); every returned score is ``>= min_score``;
    * IoU is the exact ``inter / union`` of :func:`vgops.temporal_iou` (ActionFormer adds 1e-6
      to each length; mmcv's ``offset`` is not supported);
    * non-finite scores are rejected (``inf * 0`` would be NaN).

    On CUDA one thread block serves the problem (a block-wide argmax per selection), so the
    time grows with ``N * K``; it handles N in the tens of thousands.

    Args:
        segments (Tensor[N, 2]): ``(start, end)`` segments, floating point.
        scores (Tensor[N]): floating point, finite (ValueError otherwise).
        method (str): ``"gaussian"``, ``"linear"`` or ``"hard"``.
        iou_threshold (float): used by ``"linear"`` and ``"hard"``.
        sigma (float): used by ``"gaussian"``; must be > 0 there.
        min_score (float): segments whose score is below it are dropped.
        max_keep (int or None): at most this many selections; ``None`` or ``-1``: no limit.
        backend (str, optional): "auto", "cpp" or "reference".

    Returns:
        (Tensor[K], Tensor[K]): the selected indices (int64) in selection order, and their scores
        at selection (decayed; ``scores``' dtype).
    """
    op = "temporal_soft_nms"
    _checks.segments(segments, "segments", op, dim=2)
    _checks.floating(scores, "scores", op)
    if scores.dim() != 1 or scores.shape[0] != segments.shape[0]:
        raise ValueError(f"{op}: scores must be [N] for segments [N, 2] = {tuple(segments.shape)}, "
                         f"got shape {tuple(scores.shape)}")
    _checks.same_device(op, segments=segments, scores=scores)
    k = _check_args(op, method, iou_threshold, sigma, min_score, max_keep)
    if _backend.choose(op, backend, segments, scores) == "reference":
        return reference.temporal_soft_nms(segments, scores, method, iou_threshold, sigma, min_score, k)
    return torch.ops.vgops.temporal_soft_nms(segments, scores, method, float(iou_threshold), float(sigma),
                                             float(min_score), k)


def temporal_soft_nms_padded(segments, scores, method="gaussian", iou_threshold=0.3, sigma=0.5, min_score=1e-3,
                             max_keep=None, valid_mask=None, *, backend=None):
    """:func:`temporal_soft_nms` of every row of a padded batch, with static output shapes (for
    models, torch.compile and export: no data-dependent size, and on the GPU no host
    synchronisation).

    Row ``b`` is an independent problem over its valid segments (``valid_mask[b]``); its output
    holds its first ``max_keep`` selections (indices into N, in selection order) with their decayed
    scores, then padding. Masked-out segments are never read and their scores may be anything.
    Non-finite scores among the valid segments raise a ValueError on the CPU; on CUDA (where
    raising would need a host synchronisation) such a segment is treated as masked out.

    Args:
        segments (Tensor[B, N, 2]): ``(start, end)`` segments, floating point.
        scores (Tensor[B, N]): floating point.
        method, iou_threshold, sigma, min_score: as in :func:`temporal_soft_nms`.
        max_keep (int or None): columns K of the output; ``None`` or ``-1``: K = N.
        valid_mask (Tensor[B, N], optional): bool, False excludes a segment; ``None``: all valid.
        backend (str, optional): "auto", "cpp" or "reference".

    Returns:
        (Tensor[B, K], Tensor[B, K], Tensor[B, K]): selected indices (int64, ``-1`` where
        padded), their decayed scores (``scores``' dtype, 0 where padded) and a bool mask that is
        True exactly on the selections (the first ``k_b`` entries of row ``b``).
    """
    op = "temporal_soft_nms_padded"
    _checks.padded_segments_scores(op, segments, scores, valid_mask)
    k = _check_args(op, method, iou_threshold, sigma, min_score, max_keep)
    tensors = (segments, scores) + ((valid_mask,) if valid_mask is not None else ())
    if _backend.choose(op, backend, *tensors) == "reference":
        return reference.temporal_soft_nms_padded(segments, scores, method, iou_threshold, sigma, min_score, k,
                                                  valid_mask)
    return torch.ops.vgops.temporal_soft_nms_padded(segments, scores, method, float(iou_threshold), float(sigma),
                                                    float(min_score), k, valid_mask)


if HAS_EXTENSION:
    @torch.library.register_fake("vgops::temporal_soft_nms")
    def _(segments, scores, method, iou_threshold, sigma, min_score, max_keep):
        torch._check(segments.dim() == 2 and segments.shape[1] == 2,
                     lambda: f"temporal_soft_nms: segments must be [N, 2], got {segments.shape}")
        torch._check(scores.dim() == 1 and scores.shape[0] == segments.shape[0],
                     lambda: f"temporal_soft_nms: scores must be [N], got {scores.shape}")
        # The number selected depends on the data: an unbacked size for torch.compile / export.
        k = torch.library.get_ctx().new_dynamic_size()
        return segments.new_empty((k,), dtype=torch.long), scores.new_empty((k,))

    @torch.library.register_fake("vgops::temporal_soft_nms_padded")
    def _(segments, scores, method, iou_threshold, sigma, min_score, max_keep, valid_mask=None):
        torch._check(segments.dim() == 3 and segments.shape[2] == 2,
                     lambda: f"temporal_soft_nms_padded: segments must be [B, N, 2], got {segments.shape}")
        torch._check(scores.dim() == 2 and scores.shape[0] == segments.shape[0]
                     and scores.shape[1] == segments.shape[1],
                     lambda: f"temporal_soft_nms_padded: scores must be [B, N], got {scores.shape}")
        torch._check(max_keep >= -1, lambda: f"temporal_soft_nms_padded: max_keep must be >= -1, got {max_keep}")
        k = segments.shape[1] if max_keep < 0 else max_keep
        b = segments.shape[0]
        # Static shapes: [B, K] whatever the data.
        return (segments.new_empty((b, k), dtype=torch.long), scores.new_empty((b, k)),
                segments.new_empty((b, k), dtype=torch.bool))
