import torch

from .. import _backend, _checks, reference
from .._loader import HAS_EXTENSION

__all__ = ["segment_map_iou"]


def segment_map_iou(gt, num_clips, duration=None, *, backend=None):
    """IoU of every candidate moment of an N-clip 2D map with the ground truth (2D-TAN targets).

    Cell (s, e) of the map is the moment [s, e + 1) · duration / N for s <= e; cells with
    s > e are not moments and are 0. This is the IoU target of 2D-TAN-style proposal heads
    (GLF Eq. 6-8).

    Args:
        gt (Tensor[B, 2]): ground-truth ``(start, end)`` per query, in the units of ``duration``.
        num_clips (int): N, the number of clips of the grid.
        duration (float | Tensor[B], optional): length of each video in the units of ``gt``;
            None means ``gt`` is in clip units (duration = N).
        backend (str, optional): "auto", "cpp" or "reference".

    Returns:
        Tensor[B, N, N] in ``gt``'s dtype (float16/bfloat16 computed in float32). Not
        differentiable (a target): ``gt`` is detached.
    """
    op = "segment_map_iou"
    _checks.segments(gt, "gt", op, dim=2)
    if not isinstance(num_clips, int) or isinstance(num_clips, bool) or num_clips < 0:
        raise ValueError(f"{op}: num_clips must be an int >= 0, got {num_clips!r}")
    gt = gt.detach()
    if duration is None:
        duration = float(num_clips)
    if isinstance(duration, torch.Tensor):
        _checks.floating(duration, "duration", op)
        if duration.dim() > 1 or (duration.dim() == 1 and duration.shape[0] != gt.shape[0]):
            raise ValueError(f"{op}: duration must be a float or a tensor [B] = [{gt.shape[0]}], "
                             f"got shape {tuple(duration.shape)}")
        _checks.same_device(op, gt=gt, duration=duration)
        duration = duration.detach().to(gt.dtype).expand(gt.shape[0])
    elif isinstance(duration, (int, float)) and not isinstance(duration, bool):
        duration = torch.full((gt.shape[0],), float(duration), dtype=gt.dtype, device=gt.device)
    else:
        raise _checks.InputError(f"{op}: duration must be None, a float or a tensor [B], got {type(duration).__name__}")
    if _backend.choose(op, backend, gt) == "reference":
        return reference.segment_map_iou(gt, num_clips, duration)
    return torch.ops.vgops.segment_map_iou(gt, num_clips, duration.contiguous())


if HAS_EXTENSION:
    @torch.library.register_fake("vgops::segment_map_iou")
    def _(gt, num_clips, duration):
        torch._check(gt.dim() == 2 and gt.shape[1] == 2, lambda: f"segment_map_iou: gt must be [B, 2], got {gt.shape}")
        torch._check(duration.shape == (gt.shape[0],), lambda: "segment_map_iou: duration must be [B]")
        return gt.new_empty((gt.shape[0], num_clips, num_clips))
