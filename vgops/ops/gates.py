"""Gating epilogues of FSM's gated correlation: cross_gate (Eq. 2) and self_guided (Eq. 3)."""
import functools

import torch

from .. import _backend, _checks, reference
from .._loader import HAS_EXTENSION

__all__ = ["cross_gate", "self_guided"]


def _elementwise_inputs(op, **tensors):
    """Checks that every tensor is floating point, on one device and of one shape (no
    broadcasting), and returns them in their promoted dtype."""
    for name, t in tensors.items():
        _checks.floating(t, name, op)
    _checks.same_device(op, **tensors)
    names = list(tensors)
    first = tensors[names[0]]
    for name in names[1:]:
        if tensors[name].shape != first.shape:
            raise ValueError(f"{op}: {name} must have the shape of {names[0]} {tuple(first.shape)} "
                             f"(no broadcasting), got {tuple(tensors[name].shape)}")
    dtype = functools.reduce(torch.promote_types, (t.dtype for t in tensors.values()))
    return [t.to(dtype) for t in tensors.values()]


def cross_gate(x_s, x_c, g_s, g_c, *, backend=None):
    """Cross-gating of FSM's gated correlation (Eq. 2), in one pass:

        x_a = sigmoid(g_c) * x_s + sigmoid(g_s) * x_c

    where x_s / x_c are the self- / cross-correlation outputs and g_c = FFN1(x_c),
    g_s = FFN2(x_s) their gate logits.

    Args:
        x_s, x_c, g_s, g_c (Tensor[...]): floating tensors of one shape (any shape; no
            broadcasting: expand first if needed) on one device.
        backend (str, optional): "auto" (default, or the VGOPS_BACKEND variable), "cpp" or
            "reference".

    Returns:
        Tensor[...] in the promoted dtype of the inputs. float16/bfloat16 are computed in float32
        and rounded once. Autocast does not change the dtype (the op is not on autocast's lists:
        it runs in the promoted dtype of what it receives). Differentiable with respect to all
        four inputs by a fused backward kernel.
    """
    op = "cross_gate"
    x_s, x_c, g_s, g_c = _elementwise_inputs(op, x_s=x_s, x_c=x_c, g_s=g_s, g_c=g_c)
    if _backend.choose(op, backend, x_s, x_c, g_s, g_c) == "reference":
        return reference.cross_gate(x_s, x_c, g_s, g_c)
    return torch.ops.vgops.cross_gate(x_s, x_c, g_s, g_c)


def self_guided(h_gate, h_value, residual, *, backend=None):
    """Self-guided head of FSM's gated correlation (Eq. 3), in one pass:

        x_g = sigmoid(h_gate) * h_value + residual

    with h_gate = FFN3(x_a), h_value = FFN4(x_a) and residual = x.

    Args:
        h_gate, h_value, residual (Tensor[...]): floating tensors of one shape (any shape; no
            broadcasting) on one device.
        backend (str, optional): "auto", "cpp" or "reference" (see :func:`cross_gate`).

    Returns:
        Tensor[...] in the promoted dtype of the inputs; float16/bfloat16 computed in float32;
        autocast does not change the dtype. Differentiable with respect to all three inputs.
    """
    op = "self_guided"
    h_gate, h_value, residual = _elementwise_inputs(op, h_gate=h_gate, h_value=h_value, residual=residual)
    if _backend.choose(op, backend, h_gate, h_value, residual) == "reference":
        return reference.self_guided(h_gate, h_value, residual)
    return torch.ops.vgops.self_guided(h_gate, h_value, residual)


if HAS_EXTENSION:
    def _same_shape(op, *ts):
        for t in ts[1:]:
            torch._check(t.shape == ts[0].shape, lambda: f"{op}: all inputs must have one shape")
            torch._check(t.dtype == ts[0].dtype, lambda: f"{op}: all inputs must have one dtype")

    @torch.library.register_fake("vgops::cross_gate")
    def _(x_s, x_c, g_s, g_c):
        _same_shape("cross_gate", x_s, x_c, g_s, g_c)
        return torch.empty_like(x_s, memory_format=torch.contiguous_format)

    @torch.library.register_fake("vgops::_cross_gate_backward")
    def _(grad, x_s, x_c, g_s, g_c):
        return tuple(torch.empty_like(x_s, memory_format=torch.contiguous_format) for _ in range(4))

    @torch.library.register_fake("vgops::self_guided")
    def _(h_gate, h_value, residual):
        _same_shape("self_guided", h_gate, h_value, residual)
        return torch.empty_like(h_gate, memory_format=torch.contiguous_format)

    @torch.library.register_fake("vgops::_self_guided_backward")
    def _(grad, h_gate, h_value):
        return tuple(torch.empty_like(h_gate, memory_format=torch.contiguous_format) for _ in range(2))

    def _cross_setup(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    def _cross_backward(ctx, grad):
        x_s, x_c, g_s, g_c = ctx.saved_tensors
        return torch.ops.vgops._cross_gate_backward(grad, x_s, x_c, g_s, g_c)

    torch.library.register_autograd("vgops::cross_gate", _cross_backward, setup_context=_cross_setup)

    def _guided_setup(ctx, inputs, output):
        h_gate, h_value, _ = inputs
        ctx.save_for_backward(h_gate, h_value)

    def _guided_backward(ctx, grad):
        h_gate, h_value = ctx.saved_tensors
        d_gate, d_value = torch.ops.vgops._self_guided_backward(grad, h_gate, h_value)
        return d_gate, d_value, grad

    torch.library.register_autograd("vgops::self_guided", _guided_backward, setup_context=_guided_setup)
