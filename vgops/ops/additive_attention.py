"""GLF's additive (Bahdanau) patch-word attention (Eq. 2) in O(B·P·S) memory: the scores
wᵀ tanh(a[p] + b[s]) are one fused kernel that never materialises [B, P, S, d], and the backward
recomputes tanh instead of storing it."""
import functools

import torch

from .. import _backend, _checks, reference
from .._loader import HAS_EXTENSION

__all__ = ["additive_attention"]


def _check(op, a, b, w, values, s_mask):
    feats = dict(a=a, b=b, w=w, values=values)
    for name, t in feats.items():
        _checks.floating(t, name, op)
    if a.dim() != 3:
        raise ValueError(f"{op}: a must be [B, P, d], got shape {tuple(a.shape)}")
    B, P, d = a.shape
    if b.dim() != 3 or b.shape[0] != B or b.shape[2] != d:
        raise ValueError(f"{op}: b must be [B, S, d] = [{B}, S, {d}] for a {tuple(a.shape)}, got {tuple(b.shape)}")
    S = b.shape[1]
    if w.dim() != 1 or w.shape[0] != d:
        raise ValueError(f"{op}: w must be [d] = [{d}], got {tuple(w.shape)}")
    if values.dim() != 3 or tuple(values.shape[:2]) != (B, S):
        raise ValueError(f"{op}: values must be [B, S, Dv] = [{B}, {S}, Dv], got {tuple(values.shape)}")
    tensors = dict(feats)
    if s_mask is not None:
        _checks.tensor(s_mask, "s_mask", op)
        if s_mask.dtype != torch.bool or tuple(s_mask.shape) != (B, S):
            raise ValueError(f"{op}: s_mask must be a bool tensor [B, S] = [{B}, {S}], "
                             f"got {s_mask.dtype} {tuple(s_mask.shape)}")
        tensors["s_mask"] = s_mask
    _checks.same_device(op, **tensors)
    dtype = functools.reduce(torch.promote_types, (t.dtype for t in feats.values()))
    return [t.to(dtype) for t in feats.values()]


def additive_attention(a, b, w, values, s_mask=None, return_weights=False, *, backend=None):
    """Additive (Bahdanau) patch-word attention of GLF (Eq. 2):

        alpha[p, s] = wᵀ tanh(a[p] + b[s]),   r[p] = Σ_s softmax_s(alpha)[p, s] · values[s]

    with a = W1 p̂ + bias (per patch) and b = W2 q̂ (per word) computed by the caller's linear
    layers. The scores are one fused kernel that never materialises the [B, P, S, d] sum (at
    GLF's setting 3.5 billion values); memory is O(B·P·S). The backward recomputes tanh.

    Args:
        a (Tensor[B, P, d]): projected patches (all T clips x patches per clip, every scale).
        b (Tensor[B, S, d]): projected words.
        w (Tensor[d]): the score vector.
        values (Tensor[B, S, Dv]): what is averaged (GLF: the word features q̂).
        s_mask (BoolTensor[B, S], optional): True for valid words; a patch whose sentence has no
            valid word gets zero weights and a zero context.
        return_weights (bool): also return the attention weights Tensor[B, P, S].
        backend (str, optional): "auto" (default, or VGOPS_BACKEND), "cpp" or "reference".

    Returns:
        context Tensor[B, P, Dv] (and weights Tensor[B, P, S]) in the promoted dtype of the four
        tensors. float16/bfloat16 scores are computed in float32. Differentiable with respect to
        a, b, w and values (and through the weights when returned).
    """
    op = "additive_attention"
    a, b, w, values = _check(op, a, b, w, values, s_mask)
    if _backend.choose(op, backend, a, b, w, values) == "reference":
        context, weights = reference.additive_attention(a, b, w, values, s_mask)
    else:
        context, weights = torch.ops.vgops.additive_attention(a, b, w, values, s_mask)
    return (context, weights) if return_weights else context


if HAS_EXTENSION:
    @torch.library.register_fake("vgops::additive_attention")
    def _(a, b, w, values, s_mask):
        B, P, _ = a.shape
        torch._check(b.shape[0] == B and values.shape[:2] == b.shape[:2], lambda: "additive_attention: shapes disagree")
        return values.new_empty((B, P, values.shape[2])), a.new_empty((B, P, b.shape[1]))

    @torch.library.register_fake("vgops::_additive_attention_backward")
    def _(grad_context, grad_weights, a, b, w, values, weights):
        return a.new_empty(a.shape), b.new_empty(b.shape), w.new_empty(w.shape), values.new_empty(values.shape)

    @torch.library.register_fake("vgops::_additive_scores")
    def _(a, b, w):
        return a.new_empty((a.shape[0], a.shape[1], b.shape[1]))

    @torch.library.register_fake("vgops::_additive_scores_backward")
    def _(grad_alpha, a, b, w):
        return a.new_empty(a.shape), b.new_empty(b.shape), w.new_empty(w.shape)

    def _setup_context(ctx, inputs, output):
        a, b, w, values, _ = inputs
        ctx.save_for_backward(a, b, w, values, output[1])
        ctx.set_materialize_grads(False)

    def _backward(ctx, grad_context, grad_weights):
        a, b, w, values, weights = ctx.saved_tensors
        if grad_context is None:
            grad_context = values.new_zeros((a.shape[0], a.shape[1], values.shape[2]))
        grads = torch.ops.vgops._additive_attention_backward(grad_context, grad_weights, a, b, w, values, weights)
        return (*grads, None)

    torch.library.register_autograd("vgops::additive_attention", _backward, setup_context=_setup_context)
