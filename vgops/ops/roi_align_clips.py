import torch
from torch import nn

from .. import _backend, _checks, reference
from .._loader import HAS_EXTENSION

__all__ = ["roi_align_clips", "roi_align_clips_multiscale", "RoIAlignClips", "MultiScaleRoIAlignClips"]


def _check_common(op, output_size, sampling_ratio, aligned):
    oh, ow = _checks.output_size(output_size, "output_size", op)
    _checks.integer(sampling_ratio, "sampling_ratio", op)
    if not isinstance(aligned, bool):
        raise TypeError(f"{op}: aligned must be a bool, got {type(aligned).__name__}")
    return oh, ow


def _check_boxes_valid(op, features, boxes, valid):
    """boxes [B, T, 4] or [B, T, R, 4] matching features [B, T, ...]; valid [B, T] bool or None."""
    _checks.floating(boxes, "boxes", op)
    B, T = features.shape[:2]
    if boxes.dim() not in (3, 4) or boxes.shape[-1] != 4 or tuple(boxes.shape[:2]) != (B, T):
        raise ValueError(f"{op}: boxes must be [B, T, 4] or [B, T, R, 4] with (B, T) = {(B, T)} of features "
                         f"(x1, y1, x2, y2), got shape {tuple(boxes.shape)}")
    if valid is not None:
        _checks.tensor(valid, "valid", op)
        if valid.dtype != torch.bool or tuple(valid.shape) != (B, T):
            raise ValueError(f"{op}: valid must be a bool tensor [B, T] = [{B}, {T}], got {valid.dtype} of shape "
                             f"{tuple(valid.shape)}")


def _check_features(op, features, name="features"):
    _checks.floating(features, name, op)
    if features.dim() != 5:
        raise ValueError(f"{op}: {name} must be a 5-d tensor [B, T, C, H, W], got shape {tuple(features.shape)}")


def roi_align_clips(features, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=True, valid=None, *,
                    backend=None):
    """RoIAlign of a box (or R boxes) in every frame of a clip (FSM's per-frame box features).

    For every frame ``(b, t)`` the result equals
    ``torchvision.ops.roi_align(features[b, t][None], [boxes[b, t]], output_size, spatial_scale,
    sampling_ratio, aligned)``: the same half-pixel rule, the same adaptive sampling grid, the same
    treatment of boxes partly or wholly outside the map (samples off the map count as 0). Without
    flattening the clip or building a ``[K, 5]`` RoI list.

    Args:
        features (Tensor[B, T, C, H, W]): per-frame feature maps; float16, bfloat16, float32 or
            float64. Any strides (channels-last frames, non-contiguous views).
        boxes (Tensor[B, T, 4] or Tensor[B, T, R, 4]): ``(x1, y1, x2, y2)`` in input-image pixels,
            one box (or R boxes) per frame; any floating dtype (converted to the compute dtype).
            Boxes get no gradient. Non-finite boxes pool to 0.
        output_size (int or Tuple[int, int]): ``(oh, ow)`` of each pooled region.
        spatial_scale (float): feature-map size over input-image size (e.g. 1/16).
        sampling_ratio (int): samples per bin along each axis; ``<= 0``: adaptive,
            ``ceil(box size on the map / output size)``.
        aligned (bool): shift the box by -0.5 feature pixel (pixel-centre model, torchvision's
            ``aligned=True``); if False, boxes shorter than one pixel are stretched to one.
        valid (BoolTensor[B, T], optional): frames with False give zeros and no gradient (padding
            frames of a batch of clips of different lengths).
        backend (str, optional): "auto" (default, or the VGOPS_BACKEND variable), "cpp" or
            "reference".

    Returns:
        Tensor[B, T, C, oh, ow] (boxes [B, T, 4]) or Tensor[B, T, R, C, oh, ow] (boxes
        [B, T, R, 4]), contiguous, in the dtype of ``features``. float16/bfloat16 are computed and
        accumulated in float32 and rounded once; autocast does not change the dtype.
        Differentiable with respect to ``features``; the backward is deterministic on the CPU
        and, under ``torch.use_deterministic_algorithms(True)``, on CUDA (a gather per input
        pixel instead of atomics).
    """
    op = "roi_align_clips"
    _check_features(op, features)
    _check_boxes_valid(op, features, boxes, valid)
    oh, ow = _check_common(op, output_size, sampling_ratio, aligned)
    scale = _checks.positive_float(spatial_scale, "spatial_scale", op)
    _checks.same_device(op, features=features, boxes=boxes, **({} if valid is None else {"valid": valid}))
    tensors = (features, boxes) if valid is None else (features, boxes, valid)
    if _backend.choose(op, backend, *tensors) == "reference":
        return reference.roi_align_clips(features, boxes, (oh, ow), scale, sampling_ratio, aligned, valid)
    single = boxes.dim() == 3
    out = torch.ops.vgops.roi_align_clips(features, boxes.unsqueeze(2) if single else boxes, oh, ow, scale,
                                          sampling_ratio, aligned, valid)
    return out.squeeze(2) if single else out


def roi_align_clips_multiscale(features, boxes, output_size, spatial_scales, sampling_ratio=-1, aligned=True,
                               valid=None, *, backend=None):
    """The same boxes pooled from every level of a feature pyramid (FSM appendix, Eq. 14).

    Level ``l`` is :func:`roi_align_clips` of ``features[l]`` with ``spatial_scales[l]``; the levels
    are written straight into one output (one kernel launch per level, no stacking copy).

    Args:
        features (list of Tensor[B, T, C, H_l, W_l]): the L pyramid levels; B, T, C, dtype and
            device shared, H_l and W_l free.
        boxes (Tensor[B, T, 4] or Tensor[B, T, R, 4]): ``(x1, y1, x2, y2)`` in input-image pixels.
        output_size (int or Tuple[int, int]): ``(oh, ow)``.
        spatial_scales (sequence of float): one positive scale per level (e.g. 1/4, 1/8, 1/16, 1/32).
        sampling_ratio, aligned, valid, backend: as in :func:`roi_align_clips`.

    Returns:
        Tensor[B, T, L, C, oh, ow] (or Tensor[B, T, R, L, C, oh, ow] for R boxes per frame): the
        level axis sits before C, so ``out.flatten(-4, -3)`` is the channel concatenation of the
        levels. Differentiable with respect to every level.
    """
    op = "roi_align_clips_multiscale"
    if not isinstance(features, (list, tuple)) or len(features) == 0:
        raise TypeError(f"{op}: features must be a non-empty list of Tensor[B, T, C, H_l, W_l], got "
                        f"{type(features).__name__}{'' if not isinstance(features, (list, tuple)) else ' of length 0'}")
    for i, f in enumerate(features):
        _check_features(op, f, f"features[{i}]")
    f0 = features[0]
    for i, f in enumerate(features[1:], 1):
        if tuple(f.shape[:3]) != tuple(f0.shape[:3]) or f.dtype != f0.dtype:
            raise ValueError(f"{op}: every level must share B, T, C and dtype with level 0, got features[{i}] "
                             f"{f.dtype} {tuple(f.shape)} and features[0] {f0.dtype} {tuple(f0.shape)}")
    _check_boxes_valid(op, f0, boxes, valid)
    oh, ow = _check_common(op, output_size, sampling_ratio, aligned)
    if not isinstance(spatial_scales, (list, tuple)) or len(spatial_scales) != len(features):
        got = len(spatial_scales) if isinstance(spatial_scales, (list, tuple)) else type(spatial_scales).__name__
        raise ValueError(f"{op}: spatial_scales must be a list with one scale per level ({len(features)}), got {got}")
    scales = [_checks.positive_float(s, f"spatial_scales[{i}]", op) for i, s in enumerate(spatial_scales)]
    named = {f"features[{i}]": f for i, f in enumerate(features)}
    named["boxes"] = boxes
    if valid is not None:
        named["valid"] = valid
    _checks.same_device(op, **named)
    if _backend.choose(op, backend, *named.values()) == "reference":
        return reference.roi_align_clips_multiscale(list(features), boxes, (oh, ow), scales, sampling_ratio, aligned,
                                                    valid)
    single = boxes.dim() == 3
    out = torch.ops.vgops.roi_align_clips_multiscale(list(features), boxes.unsqueeze(2) if single else boxes, oh, ow,
                                                     scales, sampling_ratio, aligned, valid)
    return out.squeeze(2) if single else out


class RoIAlignClips(nn.Module):
    """Module form of :func:`roi_align_clips`: ``forward(features, boxes, valid=None)``."""

    def __init__(self, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=True):
        super().__init__()
        self.output_size = output_size
        self.spatial_scale = spatial_scale
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned

    def forward(self, features, boxes, valid=None):
        return roi_align_clips(features, boxes, self.output_size, self.spatial_scale, self.sampling_ratio,
                               self.aligned, valid)

    def extra_repr(self):
        return (f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
                f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}")


class MultiScaleRoIAlignClips(nn.Module):
    """Module form of :func:`roi_align_clips_multiscale`: ``forward(features, boxes, valid=None)``."""

    def __init__(self, output_size, spatial_scales, sampling_ratio=-1, aligned=True):
        super().__init__()
        self.output_size = output_size
        self.spatial_scales = list(spatial_scales)
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned

    def forward(self, features, boxes, valid=None):
        return roi_align_clips_multiscale(features, boxes, self.output_size, self.spatial_scales,
                                          self.sampling_ratio, self.aligned, valid)

    def extra_repr(self):
        return (f"output_size={self.output_size}, spatial_scales={self.spatial_scales}, "
                f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}")


if HAS_EXTENSION:
    def _check_fake(op, features, boxes, valid, pooled_height, pooled_width):
        for f in features:
            torch._check(f.dim() == 5, lambda: f"{op}: features must be [B, T, C, H, W], got {f.shape}")
            torch._check(f.shape[:3] == features[0].shape[:3], lambda: f"{op}: levels differ in B, T or C")
        torch._check(boxes.dim() == 4 and boxes.shape[-1] == 4, lambda: f"{op}: boxes must be [B, T, R, 4]")
        torch._check(boxes.shape[:2] == features[0].shape[:2], lambda: f"{op}: boxes and features differ in B, T")
        if valid is not None:
            torch._check(valid.shape == features[0].shape[:2], lambda: f"{op}: valid must be [B, T]")
        torch._check(pooled_height > 0 and pooled_width > 0, lambda: f"{op}: the output size must be positive")

    @torch.library.register_fake("vgops::roi_align_clips")
    def _(features, boxes, pooled_height, pooled_width, spatial_scale=1.0, sampling_ratio=-1, aligned=True,
          valid=None):
        _check_fake("roi_align_clips", [features], boxes, valid, pooled_height, pooled_width)
        B, T, C = features.shape[:3]
        return features.new_empty((B, T, boxes.shape[2], C, pooled_height, pooled_width))

    @torch.library.register_fake("vgops::_roi_align_clips_backward")
    def _(grad, boxes, height, width, spatial_scale, sampling_ratio, aligned, valid):
        torch._check(grad.dim() == 6, lambda: "_roi_align_clips_backward: grad must be [B, T, R, C, ph, pw]")
        B, T, _, C = grad.shape[:4]
        return grad.new_empty((B, T, C, height, width))

    @torch.library.register_fake("vgops::roi_align_clips_multiscale")
    def _(features, boxes, pooled_height, pooled_width, spatial_scales, sampling_ratio=-1, aligned=True, valid=None):
        _check_fake("roi_align_clips_multiscale", features, boxes, valid, pooled_height, pooled_width)
        torch._check(len(spatial_scales) == len(features), lambda: "roi_align_clips_multiscale: one scale per level")
        B, T, C = features[0].shape[:3]
        return features[0].new_empty((B, T, boxes.shape[2], len(features), C, pooled_height, pooled_width))

    @torch.library.register_fake("vgops::_roi_align_clips_multiscale_backward")
    def _(grad, boxes, heights, widths, spatial_scales, sampling_ratio, aligned, valid):
        torch._check(grad.dim() == 7, lambda: "_roi_align_clips_multiscale_backward: grad must be 7-d")
        B, T, _, _, C = grad.shape[:5]
        return [grad.new_empty((B, T, C, h, w)) for h, w in zip(heights, widths)]

    def _setup_context(ctx, inputs, output):
        features, boxes, pooled_height, pooled_width, spatial_scale, sampling_ratio, aligned, valid = inputs
        ctx.save_for_backward(boxes, valid)
        ctx.size = features.shape[3:]
        ctx.args = (spatial_scale, sampling_ratio, aligned)

    def _backward(ctx, grad):
        boxes, valid = ctx.saved_tensors
        spatial_scale, sampling_ratio, aligned = ctx.args
        grad_features = None
        if ctx.needs_input_grad[0]:
            grad_features = torch.ops.vgops._roi_align_clips_backward(
                grad, boxes, ctx.size[0], ctx.size[1], spatial_scale, sampling_ratio, aligned, valid)
        # One entry per argument the dispatcher passed (it drops trailing defaults).
        return (grad_features,) + (None,) * (len(ctx.needs_input_grad) - 1)

    torch.library.register_autograd("vgops::roi_align_clips", _backward, setup_context=_setup_context)

    def _setup_context_ms(ctx, inputs, output):
        features, boxes, pooled_height, pooled_width, spatial_scales, sampling_ratio, aligned, valid = inputs
        ctx.save_for_backward(boxes, valid)
        ctx.heights = [f.shape[3] for f in features]
        ctx.widths = [f.shape[4] for f in features]
        ctx.args = (spatial_scales, sampling_ratio, aligned)

    def _backward_ms(ctx, grad):
        boxes, valid = ctx.saved_tensors
        spatial_scales, sampling_ratio, aligned = ctx.args
        grads = torch.ops.vgops._roi_align_clips_multiscale_backward(
            grad, boxes, ctx.heights, ctx.widths, spatial_scales, sampling_ratio, aligned, valid)
        return (list(grads),) + (None,) * (len(ctx.needs_input_grad) - 1)

    torch.library.register_autograd("vgops::roi_align_clips_multiscale", _backward_ms, setup_context=_setup_context_ms)
