"""Backend choice: per call, the first backend with no reason it cannot serve the inputs.

Order: "cpp" (the compiled C++/CUDA kernels, torch.ops.vgops.*), then "reference" (pure PyTorch).
A user forces one with an op's ``backend=`` argument or the ``VGOPS_BACKEND`` environment
variable ("auto" = choose); a forced backend that cannot serve the inputs raises an error that
lists why (flash-attention / xformers style).
"""
import os

from ._loader import BUILD_INFO, HAS_EXTENSION

BACKENDS = ("cpp", "reference")


def cpp_reasons(*tensors):
    """Reasons the compiled kernels cannot serve these tensors (empty list: they can)."""
    if not HAS_EXTENSION:
        return ["the C++ extension vgops._C is not built (pip install --no-build-isolation .)"]
    reasons = []
    for t in tensors:
        dev = t.device.type
        if dev == "cuda" and not BUILD_INFO.WITH_CUDA:
            reasons.append("vgops was built without CUDA kernels (rebuild with a CUDA build of torch "
                           "and a CUDA toolkit, or FORCE_CUDA=1)")
        elif dev not in ("cpu", "cuda", "meta"):
            reasons.append(f"no compiled kernel for device type {dev!r}")
    return sorted(set(reasons))


_REASONS = {"cpp": cpp_reasons, "reference": lambda *tensors: []}


def choose(op, backend, *tensors):
    """Name of the backend that runs `op` on `tensors` ("cpp" or "reference")."""
    requested = backend if backend is not None else os.environ.get("VGOPS_BACKEND", "auto")
    if requested == "auto":
        for name in BACKENDS:
            if not _REASONS[name](*tensors):
                return name
    if requested not in _REASONS:
        raise ValueError(f"{op}: backend must be one of {('auto',) + BACKENDS}, got {requested!r}")
    reasons = _REASONS[requested](*tensors)
    if reasons:
        raise RuntimeError(f"{op}: backend {requested!r} cannot serve these inputs: " + "; ".join(reasons))
    return requested
