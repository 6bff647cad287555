"""Input checks at the public boundary: messages name the op, the argument, what was expected
and what came."""
import torch


class InputError(TypeError, ValueError):
    """A bad argument at the public boundary. Both a ValueError (a tensor of the wrong dtype,
    shape or device is a wrong value) and a TypeError (the Python convention for wrong types), so
    callers can catch either."""


def tensor(x, name, op):
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{op}: {name} must be a torch.Tensor, got {type(x).__name__}")


def floating(x, name, op):
    tensor(x, name, op)
    if not x.is_floating_point():
        raise InputError(f"{op}: {name} must be a floating-point tensor, got dtype {x.dtype}")


def segments(x, name, op, dim=None):
    """x: floating Tensor[..., 2] of (start, end); exactly `dim` dims when given, else >= 2."""
    floating(x, name, op)
    if dim is not None and x.dim() != dim:
        want = "[N, 2]" if dim == 2 else f"{dim}-d [..., 2]"
        raise ValueError(f"{op}: {name} must be a segment tensor {want}, got shape {tuple(x.shape)}")
    if x.dim() < 2 or x.shape[-1] != 2:
        raise ValueError(f"{op}: {name} must be a segment tensor [..., N, 2] of (start, end), "
                         f"got shape {tuple(x.shape)}")


def same_device(op, **tensors):
    devices = {name: t.device for name, t in tensors.items()}
    if len(set(devices.values())) > 1:
        got = ", ".join(f"{n} on {d}" for n, d in devices.items())
        raise ValueError(f"{op}: all tensors must be on one device, got {got}")


def iou_threshold(value, op):
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise InputError(f"{op}: iou_threshold must be a float, got {type(value).__name__}")
    if value != value:
        raise ValueError(f"{op}: iou_threshold must not be NaN")
