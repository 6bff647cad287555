import math

import torch

from .. import _backend, _checks, reference
from .._loader import HAS_EXTENSION

__all__ = ["temporal_iou"]


def temporal_iou(a, b, aligned=False, *, backend=None):
    """Temporal IoU of 1-D segments.

    IoU(a, b) = |a ∩ b| / (len(a) + len(b) - |a ∩ b|), and 0 where the union is <= 0.
    Segments are ``(start, end)`` in any continuous unit (seconds, clip indices).

    Args:
        a (Tensor[..., N, 2]): segments.
        b (Tensor[..., M, 2]): segments; leading dims broadcast with ``a``'s.
        aligned (bool): if True, the IoU of corresponding pairs: ``a`` and ``b`` are
            ``Tensor[..., 2]`` of broadcastable shapes (DRN's IoU loss).
        backend (str, optional): "auto" (default, or the VGOPS_BACKEND variable), "cpp" or
            "reference".

    Returns:
        Tensor[..., N, M] (pairwise) or Tensor[...] (aligned), in the promoted dtype of ``a`` and
        ``b``. float16/bfloat16 inputs are computed in float32 and rounded once. Autocast does not
        change the dtype. Differentiable with respect to ``a`` and ``b`` (ties of min/max split the
        gradient evenly, as torch.minimum/maximum do; no gradient where the union is <= 0).
    """
    op = "temporal_iou"
    _checks.segments(a, "a", op)
    _checks.segments(b, "b", op)
    _checks.same_device(op, a=a, b=b)
    dtype = torch.promote_types(a.dtype, b.dtype)
    a, b = a.to(dtype), b.to(dtype)
    if aligned:
        try:
            shape = torch.broadcast_shapes(a.shape[:-1], b.shape[:-1])
        except RuntimeError:
            raise ValueError(f"{op}: aligned=True needs broadcastable a [..., 2] and b [..., 2], "
                             f"got {tuple(a.shape)} and {tuple(b.shape)}") from None
    else:
        try:
            lead = torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        except RuntimeError:
            raise ValueError(f"{op}: the leading dims of a [..., N, 2] and b [..., M, 2] must "
                             f"broadcast, got {tuple(a.shape)} and {tuple(b.shape)}") from None
    if _backend.choose(op, backend, a, b) == "reference":
        return reference.temporal_iou(a, b, aligned)
    if aligned:
        a3 = a.expand(*shape, 2).reshape(1, math.prod(shape), 2)
        b3 = b.expand(*shape, 2).reshape(1, math.prod(shape), 2)
        return torch.ops.vgops.temporal_iou(a3, b3, True).reshape(shape)
    n, m, batch = a.shape[-2], b.shape[-2], math.prod(lead)
    a3 = a.expand(*lead, n, 2).reshape(batch, n, 2)
    b3 = b.expand(*lead, m, 2).reshape(batch, m, 2)
    return torch.ops.vgops.temporal_iou(a3, b3, False).reshape(*lead, n, m)


if HAS_EXTENSION:
    @torch.library.register_fake("vgops::temporal_iou")
    def _(a, b, aligned=False):
        torch._check(a.dim() == 3 and b.dim() == 3, lambda: "temporal_iou: a and b must be [B, N, 2]")
        torch._check(a.shape[0] == b.shape[0], lambda: "temporal_iou: batch sizes of a and b differ")
        if aligned:
            torch._check(a.shape[1] == b.shape[1], lambda: "temporal_iou: aligned needs N == M")
            return a.new_empty(a.shape[:2])
        return a.new_empty((a.shape[0], a.shape[1], b.shape[1]))

    @torch.library.register_fake("vgops::_temporal_iou_backward")
    def _(grad, a, b, aligned):
        return torch.empty_like(a), torch.empty_like(b)

    def _setup_context(ctx, inputs, output):
        a, b, aligned = inputs
        ctx.save_for_backward(a, b)
        ctx.aligned = aligned

    def _backward(ctx, grad):
        a, b = ctx.saved_tensors
        ga, gb = torch.ops.vgops._temporal_iou_backward(grad, a, b, ctx.aligned)
        return ga, gb, None

    torch.library.register_autograd("vgops::temporal_iou", _backward, setup_context=_setup_context)
