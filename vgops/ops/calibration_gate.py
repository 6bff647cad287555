"""IA-Net's calibration gate (Eq. 7-12): one GEMM pair and fused elementwise epilogues."""
import functools
import math

import torch

from .. import _backend, _checks, reference
from .._loader import HAS_EXTENSION

__all__ = ["calibration_gate"]


def calibration_gate(x, m, weight, bias, *, backend=None):
    """Calibration gate of IA-Net (Eq. 7-12):

        [r, z_pre] = [x, m] W^T + b,   z = sigmoid(z_pre),   out = z * x + (1 - z) * tanh(r)

    Computed as two GEMMs on x and m against the halves of W (no concatenated copy), then one
    fused epilogue kernel (tanh, sigmoid, blend). The backward runs one fused epilogue kernel
    giving d r and d z_pre (and the direct z * grad term of d x), then the GEMMs for the input,
    weight and bias gradients.

    Args:
        x (Tensor[..., D]): the features to calibrate.
        m (Tensor[..., D]): the co-attended features (same shape as ``x``; no broadcasting).
        weight (Tensor[2D, 2D]): the gate's linear map; rows [:D] give r, rows [D:] give z_pre;
            columns [:D] act on x, columns [D:] on m (``nn.Linear(2D, 2D)`` on ``cat([x, m])``).
        bias (Tensor[2D]).
        backend (str, optional): "auto" (default, or the VGOPS_BACKEND variable), "cpp" or
            "reference".

    Returns:
        Tensor[..., D] in the promoted dtype of the four inputs. For float16/bfloat16 the GEMMs
        run in that dtype (with float32 accumulation) and the epilogues compute in float32,
        rounding once. Autocast does not change the dtype: the op is not on autocast's lists, so
        float32 parameters with bfloat16 activations promote to a float32 computation.
        Differentiable with respect to all four inputs.
    """
    op = "calibration_gate"
    for name, t in dict(x=x, m=m, weight=weight, bias=bias).items():
        _checks.floating(t, name, op)
    _checks.same_device(op, x=x, m=m, weight=weight, bias=bias)
    if x.dim() < 1:
        raise ValueError(f"{op}: x must be [..., D], got a 0-d tensor")
    if m.shape != x.shape:
        raise ValueError(f"{op}: m must have the shape of x {tuple(x.shape)} (no broadcasting), got {tuple(m.shape)}")
    d = x.shape[-1]
    if tuple(weight.shape) != (2 * d, 2 * d):
        raise ValueError(f"{op}: weight must be [2D, 2D] = [{2 * d}, {2 * d}] for x [..., {d}], got {tuple(weight.shape)}")
    if tuple(bias.shape) != (2 * d,):
        raise ValueError(f"{op}: bias must be [2D] = [{2 * d}] for x [..., {d}], got {tuple(bias.shape)}")
    dtype = functools.reduce(torch.promote_types, (x.dtype, m.dtype, weight.dtype, bias.dtype))
    x, m, weight, bias = (t.to(dtype) for t in (x, m, weight, bias))
    if _backend.choose(op, backend, x, m, weight, bias) == "reference":
        return reference.calibration_gate(x, m, weight, bias)
    lead = x.shape[:-1]
    n = math.prod(lead)
    out, _ = torch.ops.vgops.calibration_gate(x.reshape(n, d), m.reshape(n, d), weight, bias)
    return out.reshape(*lead, d)


if HAS_EXTENSION:
    def _check(x, m, weight, bias_len):
        d = x.shape[1]
        torch._check(x.dim() == 2 and m.shape == x.shape, lambda: "calibration_gate: x and m must be [N, D]")
        torch._check(weight.shape == (2 * d, 2 * d), lambda: "calibration_gate: weight must be [2D, 2D]")
        torch._check(bias_len == 2 * d, lambda: "calibration_gate: bias must be [2D]")

    @torch.library.register_fake("vgops::calibration_gate")
    def _(x, m, weight, bias):
        _check(x, m, weight, bias.shape[0])
        return x.new_empty(x.shape), x.new_empty((x.shape[0], 2 * x.shape[1]))

    @torch.library.register_fake("vgops::_calibration_gate_backward")
    def _(grad, grad_pre, x, m, weight, pre):
        return x.new_empty(x.shape), x.new_empty(x.shape), weight.new_empty(weight.shape), weight.new_empty(weight.shape[0])

    @torch.library.register_fake("vgops::_calibration_gate_epilogue")
    def _(x, pre):
        torch._check(pre.shape == (x.shape[0], 2 * x.shape[1]), lambda: "pre must be [N, 2D]")
        return x.new_empty(x.shape)

    @torch.library.register_fake("vgops::_calibration_gate_epilogue_backward")
    def _(grad, x, pre):
        return x.new_empty(x.shape), x.new_empty((x.shape[0], 2 * x.shape[1]))

    def _setup_context(ctx, inputs, output):
        x, m, weight, _ = inputs
        _, pre = output
        ctx.save_for_backward(x, m, weight, pre)
        ctx.set_materialize_grads(False)  # pre's gradient is None unless pre is used

    def _backward(ctx, grad, grad_pre):
        x, m, weight, pre = ctx.saved_tensors
        if grad is None:
            grad = torch.zeros_like(x)
        return torch.ops.vgops._calibration_gate_backward(grad, grad_pre, x, m, weight, pre)

    torch.library.register_autograd("vgops::calibration_gate", _backward, setup_context=_setup_context)
