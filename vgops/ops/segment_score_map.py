"""FSAN's segment-score map SC[s, e] and the segment-weighted alignment losses (FSAN Eq. 7-12),
as fused kernels with fused backward passes.

Conventions shared by every op here (and by ``vgops.reference.segment_score_map``):

* A segment (s, e) of a sample is **valid** when s <= e and clips s and e are both valid
  (``clip_mask[s]`` and ``clip_mask[e]``). Masked clips strictly inside a valid segment are
  skipped: they add nothing to its sums and are not counted in its length.
* Masked tokens take no part in sums over tokens, in the minimum over tokens, or in Ns (the
  number of valid tokens of the sample).
* Every sample needs at least one valid token (the minimum over no token is undefined). On the
  CPU, outside ``torch.compile``, the public functions raise ``ValueError`` otherwise; where the
  check would cost a device sync (CUDA, compiled graphs) it is not made and such a sample's
  valid entries are NaN (``segment_score_map``) and its loss is NaN
  (``segment_weighted_token_loss``).
* Entries of ``segment_score_map`` at invalid (s, e) are ``-inf`` and get no gradient. Weights
  ``W`` at invalid (s, e) are ignored (they may hold anything, even NaN) and get zero gradient.
* Results are deterministic: every sum has a fixed order whatever the number of threads.
"""
import torch

from .. import _backend, _checks, reference
from .._loader import HAS_EXTENSION

__all__ = [
    "segment_score_map",
    "segment_weighted_token_loss",
    "segment_weighted_outside_mean",
    "segment_weighted_inside_mean",
]

TOKEN_FNS = ("sigmoid", "identity")


def _map_input(P, name, op, dim):
    _checks.floating(P, name, op)
    if P.dim() != dim:
        want = "[B, Ns, Nv]" if dim == 3 else "[B, Nv]"
        raise ValueError(f"{op}: {name} must be a {dim}-d tensor {want}, got shape {tuple(P.shape)}")


def _mask(mask, name, shape, op, device):
    """A bool mask of `shape` (all True for None)."""
    if mask is None:
        return torch.ones(shape, dtype=torch.bool, device=device)
    _checks.tensor(mask, name, op)
    if mask.dtype != torch.bool or tuple(mask.shape) != tuple(shape):
        dims = "[B, Ns]" if name == "token_mask" else "[B, Nv]"
        raise ValueError(f"{op}: {name} must be a bool tensor {dims} = {list(shape)}, got {mask.dtype} "
                         f"of shape {tuple(mask.shape)}")
    return mask


def _weights(W, B, Nv, op):
    _checks.floating(W, "W", op)
    if tuple(W.shape) != (B, Nv, Nv):
        raise ValueError(f"{op}: W must be [B, Nv, Nv] = [{B}, {Nv}, {Nv}], got shape {tuple(W.shape)}")


def _check_tokens(token_mask, op):
    """Every sample needs a valid token; checked where it costs no device sync."""
    B, Ns = token_mask.shape
    if B > 0 and Ns == 0:
        raise ValueError(f"{op}: P has Ns = 0 tokens; every sample needs at least one valid token")
    if token_mask.device.type == "cpu" and not torch.compiler.is_compiling() and B > 0:
        empty = (~token_mask.any(1)).nonzero().flatten()
        if empty.numel() > 0:
            raise ValueError(f"{op}: every sample needs at least one valid token (the minimum over "
                             f"tokens is undefined otherwise); samples {empty.tolist()[:8]} have none")


def segment_score_map(P, token_mask=None, clip_mask=None, *, backend=None):
    """FSAN's segment score SC[s, e] of every candidate moment (FSAN Eq. 8).

    With Ns the number of valid tokens and counts over valid clips only::

        SC[s, e] = sum_{i valid} sum_{j=s..e, valid} P[i, j] / (Ns * n_in(s, e))
                   - sum_{j outside [s, e], valid} min_{i valid} P[i, j] / n_out(s, e)

    where n_in / n_out are the numbers of valid clips inside / outside [s, e]. When the segment
    covers every valid clip (n_out = 0) the outside term is 0. The video-sentence matching score
    of FSAN Eq. 7 is ``segment_score_map(P).flatten(1).amax(1)``.

    Args:
        P (Tensor[B, Ns, Nv]): token-by-clip alignment map.
        token_mask (BoolTensor[B, Ns], optional): valid tokens (default: all). Every sample needs
            at least one (see the module docstring).
        clip_mask (BoolTensor[B, Nv], optional): valid clips (default: all).
        backend (str, optional): "auto" (default, or the VGOPS_BACKEND variable), "cpp" or
            "reference" (the prefix-sum PyTorch version).

    Returns:
        Tensor[B, Nv, Nv] in P's dtype (float16/bfloat16 computed in float32): SC at every valid
        (s, e) (s <= e, clips s and e valid), ``-inf`` elsewhere. Differentiable with respect to
        P; the gradient of the minimum over tokens goes to the first (lowest-index) valid token
        that reaches it (ties are not split). Autocast does not change the dtype.
    """
    op = "segment_score_map"
    _map_input(P, "P", op, 3)
    B, Ns, Nv = P.shape
    token_mask = _mask(token_mask, "token_mask", (B, Ns), op, P.device)
    clip_mask = _mask(clip_mask, "clip_mask", (B, Nv), op, P.device)
    _checks.same_device(op, P=P, token_mask=token_mask, clip_mask=clip_mask)
    _check_tokens(token_mask, op)
    if _backend.choose(op, backend, P) == "reference":
        return reference.segment_score_map_cumsum(P, token_mask, clip_mask)
    return torch.ops.vgops.segment_score_map(P, token_mask, clip_mask)


def segment_weighted_token_loss(P, W, token_mask=None, clip_mask=None, fn="sigmoid", *, backend=None):
    """Segment-weighted per-token term of FSAN's inner loss (Eq. 9-10), fused.

    ::

        out[b] = sum_{valid (s, e)} W[b, s, e] * (1 / Ns) * sum_{i valid} fn(sum_{j=s..e, valid} P[b, i, j])

    FSAN's inner loss is ``-segment_weighted_token_loss(P, SC, ...)`` with ``SC`` the segment
    score map (detached or not, as the model decides). The kernel never materialises the
    ``[B, Ns, Nv, Nv]`` tensor of per-token segment sums: it uses O(B * Ns * Nv) extra memory and
    a fused backward gives the gradients with respect to P and W.

    Args:
        P (Tensor[B, Ns, Nv]): token-by-clip alignment map.
        W (Tensor[B, Nv, Nv]): weight of every segment; entries at invalid (s, e) are ignored.
        token_mask (BoolTensor[B, Ns], optional): valid tokens (default: all; at least one each).
        clip_mask (BoolTensor[B, Nv], optional): valid clips (default: all).
        fn (str): "sigmoid" (FSAN) or "identity".
        backend (str, optional): "auto", "cpp" or "reference".

    Returns:
        Tensor[B] in the promoted dtype of P and W (float16/bfloat16 computed in float32).
        Differentiable with respect to P and W (W's gradient is 0 at invalid (s, e)).
    """
    op = "segment_weighted_token_loss"
    _map_input(P, "P", op, 3)
    B, Ns, Nv = P.shape
    _weights(W, B, Nv, op)
    if fn not in TOKEN_FNS:
        raise ValueError(f"{op}: fn must be one of {TOKEN_FNS}, got {fn!r}")
    token_mask = _mask(token_mask, "token_mask", (B, Ns), op, P.device)
    clip_mask = _mask(clip_mask, "clip_mask", (B, Nv), op, P.device)
    _checks.same_device(op, P=P, W=W, token_mask=token_mask, clip_mask=clip_mask)
    _check_tokens(token_mask, op)
    dtype = torch.promote_types(P.dtype, W.dtype)
    P, W = P.to(dtype), W.to(dtype)
    if _backend.choose(op, backend, P, W) == "reference":
        return reference.segment_weighted_token_loss_cumsum(P, W, token_mask, clip_mask, fn)
    return torch.ops.vgops.segment_weighted_token_loss(P, W, token_mask, clip_mask, fn)


def _weighted_mean(op, x, W, clip_mask, backend):
    _map_input(x, "x", op, 2)
    B, Nv = x.shape
    _weights(W, B, Nv, op)
    clip_mask = _mask(clip_mask, "clip_mask", (B, Nv), op, x.device)
    _checks.same_device(op, x=x, W=W, clip_mask=clip_mask)
    dtype = torch.promote_types(x.dtype, W.dtype)
    x, W = x.to(dtype), W.to(dtype)
    if _backend.choose(op, backend, x, W) == "reference":
        return getattr(reference, op + "_cumsum")(x, W, clip_mask)
    return getattr(torch.ops.vgops, op)(x, W, clip_mask)


def segment_weighted_outside_mean(x, W, clip_mask=None, *, backend=None):
    """Segment-weighted mean of a per-clip value outside each segment (FSAN Eq. 11-12).

    ::

        out[b] = sum_{valid (s, e)} W[b, s, e] * mean_{j outside [s, e], valid} x[b, j]

    with the mean taken as 0 for a segment that covers every valid clip. FSAN's outer loss is
    ``-segment_weighted_outside_mean(g(min_i P), SC, clip_mask)``; the minimum over tokens and g
    stay in PyTorch, so the op is generic. Computed from prefix sums in O(B * Nv^2) time and
    O(B * Nv) extra memory.

    Args:
        x (Tensor[B, Nv]): per-clip values.
        W (Tensor[B, Nv, Nv]): weight of every segment; entries at invalid (s, e) are ignored.
        clip_mask (BoolTensor[B, Nv], optional): valid clips (default: all).
        backend (str, optional): "auto", "cpp" or "reference".

    Returns:
        Tensor[B] in the promoted dtype of x and W. Differentiable with respect to x and W.
    """
    return _weighted_mean("segment_weighted_outside_mean", x, W, clip_mask, backend)


def segment_weighted_inside_mean(x, W, clip_mask=None, *, backend=None):
    """Segment-weighted mean of a per-clip value inside each segment (the inside counterpart of
    :func:`segment_weighted_outside_mean`).

    ::

        out[b] = sum_{valid (s, e)} W[b, s, e] * mean_{j in [s, e], valid} x[b, j]

    Args:
        x (Tensor[B, Nv]): per-clip values.
        W (Tensor[B, Nv, Nv]): weight of every segment; entries at invalid (s, e) are ignored.
        clip_mask (BoolTensor[B, Nv], optional): valid clips (default: all).
        backend (str, optional): "auto", "cpp" or "reference".

    Returns:
        Tensor[B] in the promoted dtype of x and W. Differentiable with respect to x and W.
    """
    return _weighted_mean("segment_weighted_inside_mean", x, W, clip_mask, backend)


if HAS_EXTENSION:
    def _check_fake(op, P, dim):
        torch._check(P.dim() == dim, lambda: f"{op}: P must be {dim}-d, got {P.dim()}-d")

    @torch.library.register_fake("vgops::segment_score_map")
    def _(P, token_mask, clip_mask):
        _check_fake("segment_score_map", P, 3)
        return P.new_empty((P.shape[0], P.shape[2], P.shape[2]))

    @torch.library.register_fake("vgops::_segment_score_map_backward")
    def _(grad, P, token_mask, clip_mask):
        return torch.empty_like(P, memory_format=torch.contiguous_format)

    @torch.library.register_fake("vgops::segment_weighted_token_loss")
    def _(P, W, token_mask, clip_mask, fn="sigmoid"):
        _check_fake("segment_weighted_token_loss", P, 3)
        return P.new_empty((P.shape[0],))

    @torch.library.register_fake("vgops::_segment_weighted_token_loss_backward")
    def _(grad, P, W, token_mask, clip_mask, fn):
        return (torch.empty_like(P, memory_format=torch.contiguous_format),
                torch.empty_like(W, memory_format=torch.contiguous_format))

    for _name in ("segment_weighted_outside_mean", "segment_weighted_inside_mean"):
        @torch.library.register_fake(f"vgops::{_name}")
        def _(x, W, clip_mask, _name=_name):
            _check_fake(_name, x, 2)
            return x.new_empty((x.shape[0],))

        @torch.library.register_fake(f"vgops::_{_name}_backward")
        def _(grad, x, W, clip_mask):
            return (torch.empty_like(x, memory_format=torch.contiguous_format),
                    torch.empty_like(W, memory_format=torch.contiguous_format))

    def _setup_map(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    def _backward_map(ctx, grad):
        P, token_mask, clip_mask = ctx.saved_tensors
        return torch.ops.vgops._segment_score_map_backward(grad, P, token_mask, clip_mask), None, None

    torch.library.register_autograd("vgops::segment_score_map", _backward_map, setup_context=_setup_map)

    def _setup_token(ctx, inputs, output):
        P, W, token_mask, clip_mask, fn = inputs
        ctx.save_for_backward(P, W, token_mask, clip_mask)
        ctx.fn = fn

    def _backward_token(ctx, grad):
        P, W, token_mask, clip_mask = ctx.saved_tensors
        gP, gW = torch.ops.vgops._segment_weighted_token_loss_backward(grad, P, W, token_mask, clip_mask, ctx.fn)
        return gP, gW, None, None, None

    torch.library.register_autograd("vgops::segment_weighted_token_loss", _backward_token,
                                    setup_context=_setup_token)

    def _make_mean_backward(name):
        backward_op = getattr(torch.ops.vgops, f"_{name}_backward")

        def _backward(ctx, grad):
            x, W, clip_mask = ctx.saved_tensors
            gx, gW = backward_op(grad, x, W, clip_mask)
            return gx, gW, None
        return _backward

    for _name in ("segment_weighted_outside_mean", "segment_weighted_inside_mean"):
        torch.library.register_autograd(f"vgops::{_name}", _make_mean_backward(_name), setup_context=_setup_map)
