import torch
from torch import nn

from .. import _backend, _checks, reference
from .._loader import HAS_EXTENSION

__all__ = ["roi_align_1d", "RoIAlign1d"]


def _check_batch_indices(op, segments, batch):
    """Rejects batch indices that are not integers in [0, batch). Reads the data: one device sync
    on CUDA; skipped while torch.compile traces or a CUDA graph captures (the kernels then never
    read outside ``features`` either: the CPU kernel raises, the CUDA kernel gives those rows 0)."""
    if segments.shape[0] == 0 or torch.compiler.is_compiling():
        return
    if segments.is_cuda and torch.cuda.is_current_stream_capturing():
        return
    idx = segments[:, 0]
    bad = ~((idx >= 0) & (idx < batch) & (idx == idx.trunc()))
    if bool(bad.any()):
        row = int(bad.nonzero()[0, 0])
        raise ValueError(f"{op}: segments[:, 0] must hold batch indices, integers in [0, {batch}) for features "
                         f"[B={batch}, C, T], got {idx[row].item()} at row {row}")


def roi_align_1d(features, segments, output_len, temporal_scale=1.0, sampling_ratio=-1, aligned=True, *,
                 backend=None):
    """Temporal RoIAlign: features of segments by linear interpolation along time.

    The 1D analogue of ``torchvision.ops.roi_align``: segment ``(b, s, e)`` is split into
    ``output_len`` bins of length ``(e - s) * temporal_scale / output_len``; each bin averages
    ``grid`` linearly interpolated samples of ``features[b]`` (``grid = sampling_ratio`` if > 0,
    else ``ceil(bin length)``). Samples off the sequence (outside [-1, T]) count as 0; within one
    step of an end they read that end. Equal to ``torchvision.ops.roi_align`` on ``features[:, :,
    None, :]`` with boxes ``(s, 0, e, 1)`` and output size ``(1, output_len)``.

    Args:
        features (Tensor[B, C, T]): per-clip features along time; float16, bfloat16, float32 or
            float64, any strides.
        segments (Tensor[K, 3]): ``(batch index, start, end)`` rows, start and end in the units
            of the input (e.g. seconds, or clips when ``temporal_scale`` = 1); any floating
            dtype. Batch indices must be integers in [0, B) (checked: ValueError; one device
            sync on CUDA). Segments get no gradient.
        output_len (int): bins per segment.
        temporal_scale (float): feature steps per input unit (e.g. clips per second).
        sampling_ratio (int): samples per bin; ``<= 0``: adaptive.
        aligned (bool): shift segments by -0.5 step (torchvision's ``aligned=True``); if False,
            segments shorter than one step are stretched to one.
        backend (str, optional): "auto" (default, or the VGOPS_BACKEND variable), "cpp" or
            "reference".

    Returns:
        Tensor[K, C, output_len], contiguous, in the dtype of ``features`` (float16/bfloat16
        computed in float32; autocast does not change the dtype). Differentiable with respect to
        ``features``; deterministic backward on the CPU and, under
        ``torch.use_deterministic_algorithms(True)``, on CUDA.
    """
    op = "roi_align_1d"
    _checks.floating(features, "features", op)
    if features.dim() != 3:
        raise ValueError(f"{op}: features must be a 3-d tensor [B, C, T], got shape {tuple(features.shape)}")
    _checks.floating(segments, "segments", op)
    if segments.dim() != 2 or segments.shape[1] != 3:
        raise ValueError(f"{op}: segments must be [K, 3] rows of (batch index, start, end), got shape "
                         f"{tuple(segments.shape)}")
    _checks.positive_integer(output_len, "output_len", op)
    scale = _checks.positive_float(temporal_scale, "temporal_scale", op)
    _checks.integer(sampling_ratio, "sampling_ratio", op)
    if not isinstance(aligned, bool):
        raise TypeError(f"{op}: aligned must be a bool, got {type(aligned).__name__}")
    _checks.same_device(op, features=features, segments=segments)
    _check_batch_indices(op, segments, features.shape[0])
    if _backend.choose(op, backend, features, segments) == "reference":
        return reference.roi_align_1d(features, segments, output_len, scale, sampling_ratio, aligned)
    return torch.ops.vgops.roi_align_1d(features, segments, output_len, scale, sampling_ratio, aligned)


class RoIAlign1d(nn.Module):
    """Module form of :func:`roi_align_1d`: ``forward(features, segments)``."""

    def __init__(self, output_len, temporal_scale=1.0, sampling_ratio=-1, aligned=True):
        super().__init__()
        self.output_len = output_len
        self.temporal_scale = temporal_scale
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned

    def forward(self, features, segments):
        return roi_align_1d(features, segments, self.output_len, self.temporal_scale, self.sampling_ratio,
                            self.aligned)

    def extra_repr(self):
        return (f"output_len={self.output_len}, temporal_scale={self.temporal_scale}, "
                f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}")


if HAS_EXTENSION:
    @torch.library.register_fake("vgops::roi_align_1d")
    def _(features, segments, output_len, temporal_scale=1.0, sampling_ratio=-1, aligned=True):
        torch._check(features.dim() == 3, lambda: f"roi_align_1d: features must be [B, C, T], got {features.shape}")
        torch._check(segments.dim() == 2 and segments.shape[1] == 3,
                     lambda: f"roi_align_1d: segments must be [K, 3], got {segments.shape}")
        torch._check(output_len > 0, lambda: "roi_align_1d: output_len must be positive")
        return features.new_empty((segments.shape[0], features.shape[1], output_len))

    @torch.library.register_fake("vgops::_roi_align_1d_backward")
    def _(grad, segments, batch_size, length, temporal_scale, sampling_ratio, aligned):
        torch._check(grad.dim() == 3, lambda: "_roi_align_1d_backward: grad must be [K, C, L]")
        return grad.new_empty((batch_size, grad.shape[1], length))

    def _setup_context(ctx, inputs, output):
        features, segments, output_len, temporal_scale, sampling_ratio, aligned = inputs
        ctx.save_for_backward(segments)
        ctx.shape = (features.shape[0], features.shape[2])
        ctx.args = (temporal_scale, sampling_ratio, aligned)

    def _backward(ctx, grad):
        (segments,) = ctx.saved_tensors
        temporal_scale, sampling_ratio, aligned = ctx.args
        grad_features = None
        if ctx.needs_input_grad[0]:
            grad_features = torch.ops.vgops._roi_align_1d_backward(grad, segments, ctx.shape[0], ctx.shape[1],
                                                                   temporal_scale, sampling_ratio, aligned)
        return (grad_features,) + (None,) * (len(ctx.needs_input_grad) - 1)

    torch.library.register_autograd("vgops::roi_align_1d", _backward, setup_context=_setup_context)
