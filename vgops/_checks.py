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


def integer(value, name, op):
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{op}: {name} must be an int, got {type(value).__name__}")
    return value


def positive_integer(value, name, op):
    integer(value, name, op)
    if value <= 0:
        raise ValueError(f"{op}: {name} must be positive, got {value}")
    return value


def output_size(value, name, op):
    """An int or a pair of ints, all positive -> (h, w)."""
    pair = (value, value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in pair)):
        raise TypeError(f"{op}: {name} must be an int or a pair of ints (h, w), got {value!r}")
    if pair[0] <= 0 or pair[1] <= 0:
        raise ValueError(f"{op}: {name} must be positive, got {value!r}")
    return int(pair[0]), int(pair[1])


def positive_float(value, name, op):
    """A finite number > 0 -> float."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{op}: {name} must be a float, got {type(value).__name__}")
    if not (value > 0 and value != float("inf")):
        raise ValueError(f"{op}: {name} must be a finite number > 0, got {value}")
    return float(value)


def number(value, name, op):
    """A real number (int or float, not bool), not NaN."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{op}: {name} must be a float, got {type(value).__name__}")
    if value != value:
        raise ValueError(f"{op}: {name} must not be NaN")


def max_keep(value, op):
    """None or an int >= -1 (None and -1 mean "keep all"); returns the int the kernels take."""
    if value is None:
        return -1
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{op}: max_keep must be an int >= 0 or None, got {type(value).__name__}")
    if value < -1:
        raise ValueError(f"{op}: max_keep must be >= 0, or None / -1 for all, got {value}")
    return value


def padded_segments_scores(op, segments_, scores, valid_mask=None):
    """segments [B, N, 2] and scores [B, N] (floating), valid_mask None or bool [B, N], one device."""
    segments(segments_, "segments", op, dim=3)
    floating(scores, "scores", op)
    if tuple(scores.shape) != tuple(segments_.shape[:2]):
        raise ValueError(f"{op}: scores must be [B, N] for segments [B, N, 2] = {tuple(segments_.shape)}, "
                         f"got shape {tuple(scores.shape)}")
    if valid_mask is not None:
        tensor(valid_mask, "valid_mask", op)
        if valid_mask.dtype != torch.bool or tuple(valid_mask.shape) != tuple(scores.shape):
            raise ValueError(f"{op}: valid_mask must be a bool tensor [B, N] = {tuple(scores.shape)}, "
                             f"got {valid_mask.dtype} of shape {tuple(valid_mask.shape)}")
        same_device(op, segments=segments_, scores=scores, valid_mask=valid_mask)
    else:
        same_device(op, segments=segments_, scores=scores)
