"""FSM's gated-correlation attentions (Eq. 1): dual_correlation (visual side) and
text_correlation (text side), on the flash-style kernel kv_attention."""
import math

import torch

from .. import _backend, _checks, reference
from .._loader import HAS_EXTENSION

__all__ = ["dual_correlation", "text_correlation"]


def _compute_dtype(dtype):
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _check(op, x, y, x_mask, y_mask, scale):
    _checks.floating(x, "x", op)
    _checks.floating(y, "y", op)
    if x.dim() != 4:
        raise ValueError(f"{op}: x must be [B, T, L, d], got shape {tuple(x.shape)}")
    if y.dim() != 3 or y.shape[0] != x.shape[0] or y.shape[2] != x.shape[3]:
        raise ValueError(f"{op}: y must be [B, M, d] = [{x.shape[0]}, M, {x.shape[3]}] for x "
                         f"{tuple(x.shape)}, got {tuple(y.shape)}")
    tensors = dict(x=x, y=y)
    for name, mask, want in (("x_mask", x_mask, tuple(x.shape[:2])), ("y_mask", y_mask, tuple(y.shape[:2]))):
        if mask is None:
            continue
        _checks.tensor(mask, name, op)
        if mask.dtype != torch.bool or tuple(mask.shape) != want:
            raise ValueError(f"{op}: {name} must be a bool tensor {list(want)}, got {mask.dtype} {tuple(mask.shape)}")
        tensors[name] = mask
    _checks.same_device(op, **tensors)
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale)):
        raise ValueError(f"{op}: scale must be a finite float or None, got {scale!r}")
    dtype = torch.promote_types(x.dtype, y.dtype)
    ct = _compute_dtype(dtype)
    scale = 1.0 / math.sqrt(x.shape[-1]) if scale is None else float(scale)
    return dtype, x.to(ct), y.to(ct), scale


def _attend(q, k, key_mask, scale):
    return torch.ops.vgops.kv_attention(q, k, key_mask, scale)[0]


def dual_correlation(x, y, y_mask=None, scale=None, *, backend=None):
    """Visual side of FSM's gated correlation (Eq. 1): self- and cross-correlation of the
    last-level visual tokens, without projections (the keys are also the values).

        x_s = softmax(x x^T * scale) x    over the L tokens of the same frame
        x_c = softmax(x y^T * scale) y    over the valid words of the video's sentence

    Computed flash-style by the kv_attention kernel: no [B, T, L, L] or [B, T, L, M] tensor is
    kept for the backward, which recomputes the weights from a per-row log-sum-exp.

    Args:
        x (Tensor[B, T, L, d]): visual tokens (L = H * W per frame).
        y (Tensor[B, M, d]): word features.
        y_mask (BoolTensor[B, M], optional): True for valid words. A token whose sentence has no
            valid word gets x_c = 0 (softmax of nothing), with zero gradient.
        scale (float, optional): score scale; 1/sqrt(d) by default (the paper writes a plain dot
            product: pass scale=1).
        backend (str, optional): "auto" (default, or VGOPS_BACKEND), "cpp" or "reference".

    Returns:
        (x_s, x_c): two Tensor[B, T, L, d] in the promoted dtype of x and y. float16/bfloat16
        inputs are computed in float32 and rounded once. Autocast does not change the dtype (the
        op is not on autocast's lists). Differentiable with respect to x and y.
    """
    op = "dual_correlation"
    dtype, xc, yc, scale = _check(op, x, y, None, y_mask, scale)
    if _backend.choose(op, backend, xc, yc) == "reference":
        return reference.dual_correlation(x.to(dtype), y.to(dtype), y_mask, scale)
    B, T, L, d = xc.shape
    x_s = _attend(xc.reshape(B * T, L, d), xc.reshape(B * T, L, d), None, scale).reshape(B, T, L, d)
    x_c = _attend(xc.reshape(B, T * L, d), yc, y_mask, scale).reshape(B, T, L, d)
    return x_s.to(dtype), x_c.to(dtype)


def text_correlation(y, x, x_mask=None, y_mask=None, scale=None, *, backend=None):
    """Text side of FSM's gated correlation: each word attends over the words of its sentence and
    over all T * L visual tokens of its video (keys are also the values; no projections).

        y_s = softmax(y y^T * scale) y    over the valid words
        y_c = softmax(y X^T * scale) X    over the T * L tokens of the valid frames

    Args:
        y (Tensor[B, M, d]): word features.
        x (Tensor[B, T, L, d]): visual tokens.
        x_mask (BoolTensor[B, T], optional): True for valid frames (all their L tokens are keys).
        y_mask (BoolTensor[B, M], optional): True for valid words (keys of y_s).
        scale (float, optional): 1/sqrt(d) by default; scale=1 for the paper's plain dot product.
        backend (str, optional): "auto", "cpp" or "reference".

    Returns:
        (y_s, y_c): two Tensor[B, M, d] in the promoted dtype; a word with no valid key gets 0.
        Dtype and autocast behaviour as :func:`dual_correlation`.
    """
    op = "text_correlation"
    dtype, xc, yc, scale = _check(op, x, y, x_mask, y_mask, scale)
    if _backend.choose(op, backend, xc, yc) == "reference":
        return reference.text_correlation(y.to(dtype), x.to(dtype), x_mask, y_mask, scale)
    B, T, L, d = xc.shape
    y_s = _attend(yc, yc, y_mask, scale)
    token_mask = None if x_mask is None else x_mask.unsqueeze(-1).expand(B, T, L).reshape(B, T * L)
    y_c = _attend(yc, xc.reshape(B, T * L, d), token_mask, scale)
    return y_s.to(dtype), y_c.to(dtype)


if HAS_EXTENSION:
    @torch.library.register_fake("vgops::kv_attention")
    def _(q, k, key_mask, scale):
        torch._check(q.dim() == 3 and k.dim() == 3, lambda: "kv_attention: q and k must be 3-d")
        torch._check(q.shape[0] == k.shape[0] and q.shape[2] == k.shape[2], lambda: "kv_attention: q/k shapes differ")
        return q.new_empty(q.shape), q.new_empty(q.shape[:2])

    @torch.library.register_fake("vgops::_kv_attention_backward")
    def _(grad_out, q, k, key_mask, out, lse, scale):
        return q.new_empty(q.shape), k.new_empty(k.shape)

    def _setup_context(ctx, inputs, output):
        q, k, key_mask, scale = inputs
        out, lse = output
        ctx.save_for_backward(q, k, key_mask, out, lse)
        ctx.scale = scale
        ctx.mark_non_differentiable(lse)

    def _backward(ctx, grad_out, grad_lse):
        q, k, key_mask, out, lse = ctx.saved_tensors
        dq, dk = torch.ops.vgops._kv_attention_backward(grad_out, q, k, key_mask, out, lse, ctx.scale)
        return dq, dk, None, None

    torch.library.register_autograd("vgops::kv_attention", _backward, setup_context=_setup_context)
