"""IA-Net's padded multi-head co-attention (Eq. 1-6): one logits GEMM per head serves both
directions; softmaxes, head average and their backward are fused kernels."""
import functools
import math

import torch

from .. import _backend, _checks, reference
from .._loader import HAS_EXTENSION

__all__ = ["padded_coattention"]


def _check(op, v_heads, q_heads, v_full, q_full, v_mask, q_mask):
    feats = dict(v_heads=v_heads, q_heads=q_heads, v_full=v_full, q_full=q_full)
    for name, t in feats.items():
        _checks.floating(t, name, op)
    if v_heads.dim() != 4:
        raise ValueError(f"{op}: v_heads must be [B, H, T+K, d], got shape {tuple(v_heads.shape)}")
    B, H, Tk, d = v_heads.shape
    if q_heads.dim() != 4 or (q_heads.shape[0], q_heads.shape[1], q_heads.shape[3]) != (B, H, d):
        raise ValueError(f"{op}: q_heads must be [B, H, N+K, d] = [{B}, {H}, N+K, {d}] for v_heads "
                         f"{tuple(v_heads.shape)}, got {tuple(q_heads.shape)}")
    Nk = q_heads.shape[2]
    if v_full.dim() != 3 or tuple(v_full.shape[:2]) != (B, Tk):
        raise ValueError(f"{op}: v_full must be [B, T+K, D] = [{B}, {Tk}, D], got {tuple(v_full.shape)}")
    if q_full.dim() != 3 or tuple(q_full.shape[:2]) != (B, Nk) or q_full.shape[2] != v_full.shape[2]:
        raise ValueError(f"{op}: q_full must be [B, N+K, D] = [{B}, {Nk}, {v_full.shape[2]}], "
                         f"got {tuple(q_full.shape)}")
    for name, mask, rows, what in (("v_mask", v_mask, Tk, "T <= T+K"), ("q_mask", q_mask, Nk, "N <= N+K")):
        _checks.tensor(mask, name, op)
        if mask.dtype != torch.bool or mask.dim() != 2 or mask.shape[0] != B or mask.shape[1] > rows:
            raise ValueError(f"{op}: {name} must be a bool tensor [B, {what.split()[0]}] with B = {B} and "
                             f"{what} = {rows}, got {mask.dtype} {tuple(mask.shape)}")
    _checks.same_device(op, **feats, v_mask=v_mask, q_mask=q_mask)
    dtype = functools.reduce(torch.promote_types, (t.dtype for t in feats.values()))
    return [t.to(dtype) for t in feats.values()]


def padded_coattention(v_heads, q_heads, v_full, q_full, v_mask, q_mask, return_maps=False, *,
                       scale=None, backend=None):
    """Padded multi-head co-attention of IA-Net (Eq. 1-6).

    Clips V [B, T, D] and words Q [B, N, D] are each extended with learnable pad rows
    (Ṽ = [V; Pv], Q̃ = [Q; Pq]) so that a clip or word matching nothing can attend to a pad.
    With per-head projections Ṽʰ, Q̃ʰ (d = D / H):

        A_V = mean_h softmax_rows(Ṽʰ Q̃ʰᵀ · scale)   [T+K, N+K]   keys: valid words + pads
        A_Q = mean_h softmax_rows(Q̃ʰ Ṽʰᵀ · scale)   [N+K, T+K]   keys: valid clips + pads
        M_V = (A_V Q̃)[:T]        M_Q = (A_Q Ṽ)[:N]

    The values are the unprojected D-dim features. One logits GEMM per head serves both
    directions (A_Q's logits are A_V's transposed); the row and column softmaxes and the head
    average are one fused kernel, so only the head-averaged maps [B, T+K, N+K] (and per-head
    log-sum-exps) are kept, never per-head probabilities. The backward recomputes the logits.

    Args:
        v_heads (Tensor[B, H, T+Kv, d]): per-head projections of the padded clips.
        q_heads (Tensor[B, H, N+Kq, d]): per-head projections of the padded words.
        v_full (Tensor[B, T+Kv, D]): padded clips Ṽ (the values of A_Q).
        q_full (Tensor[B, N+Kq, D]): padded words Q̃ (the values of A_V).
        v_mask (BoolTensor[B, T]): True for valid clips; its length gives T (Kv = rows - T).
        q_mask (BoolTensor[B, N]): True for valid words; its length gives N.
        return_maps (bool): also return A_V [B, T+Kv, N+Kq] and A_Q [B, N+Kq, T+Kv].
        scale (float, optional): logit scale, 1/sqrt(d) by default.
        backend (str, optional): "auto" (default, or VGOPS_BACKEND), "cpp" or "reference".

    Returns:
        (M_V Tensor[B, T, D], M_Q Tensor[B, N, D]) and, with return_maps, (A_V, A_Q); in the
        promoted dtype of the four feature tensors. Invalid clips/words never receive attention;
        they still attend (their own rows are computed like any other). With no pad rows and no
        valid key a row's attention is all zeros. Differentiable with respect to the four feature
        tensors (and through the maps when returned).
    """
    op = "padded_coattention"
    v_heads, q_heads, v_full, q_full = _check(op, v_heads, q_heads, v_full, q_full, v_mask, q_mask)
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float))
                              or not math.isfinite(scale)):
        raise ValueError(f"{op}: scale must be a finite float or None, got {scale!r}")
    scale = 1.0 / math.sqrt(v_heads.shape[-1]) if scale is None else float(scale)
    if _backend.choose(op, backend, v_heads, q_heads, v_full, q_full) == "reference":
        m_v, m_q, a_v, a_q = reference.padded_coattention(v_heads, q_heads, v_full, q_full, v_mask, q_mask, scale)
    else:
        m_v, m_q, a_v, a_qt, _, _ = torch.ops.vgops.padded_coattention(
            v_heads, q_heads, v_full, q_full, v_mask, q_mask, scale)
        a_q = a_qt.transpose(1, 2)
    return (m_v, m_q, a_v, a_q) if return_maps else (m_v, m_q)


if HAS_EXTENSION:
    @torch.library.register_fake("vgops::padded_coattention")
    def _(v_heads, q_heads, v_full, q_full, v_mask, q_mask, scale):
        B, H, Tk, _ = v_heads.shape
        Nk, D = q_heads.shape[2], v_full.shape[2]
        T, N = v_mask.shape[1], q_mask.shape[1]
        torch._check(q_heads.shape[0] == B and q_full.shape[1] == Nk and v_full.shape[1] == Tk,
                     lambda: "padded_coattention: shapes disagree")
        lse_dtype = v_heads.dtype if v_heads.dtype in (torch.float32, torch.float64) else torch.float32
        return (v_full.new_empty((B, T, D)), q_full.new_empty((B, N, D)), v_heads.new_empty((B, Tk, Nk)),
                v_heads.new_empty((B, Tk, Nk)), v_heads.new_empty((B, H, Tk), dtype=lse_dtype),
                v_heads.new_empty((B, H, Nk), dtype=lse_dtype))

    @torch.library.register_fake("vgops::_padded_coattention_backward")
    def _(grad_mv, grad_mq, grad_av, grad_aqt, v_heads, q_heads, v_full, q_full, v_mask, q_mask, a_v, a_qt,
          row_lse, col_lse, scale):
        return (v_heads.new_empty(v_heads.shape), q_heads.new_empty(q_heads.shape),
                v_full.new_empty(v_full.shape), q_full.new_empty(q_full.shape))

    @torch.library.register_fake("vgops::_coattention_softmax")
    def _(logits, v_keys, q_keys, scale):
        B, H, Tk, Nk = logits.shape
        lse_dtype = logits.dtype if logits.dtype in (torch.float32, torch.float64) else torch.float32
        return (logits.new_empty((B, Tk, Nk)), logits.new_empty((B, Tk, Nk)),
                logits.new_empty((B, H, Tk), dtype=lse_dtype), logits.new_empty((B, H, Nk), dtype=lse_dtype))

    @torch.library.register_fake("vgops::_coattention_softmax_backward")
    def _(logits, v_keys, q_keys, row_lse, col_lse, g_v, g_qt, scale, grad_scale):
        return logits.new_empty(logits.shape)

    def _setup_context(ctx, inputs, output):
        v_heads, q_heads, v_full, q_full, v_mask, q_mask, scale = inputs
        _, _, a_v, a_qt, row_lse, col_lse = output
        ctx.save_for_backward(v_heads, q_heads, v_full, q_full, v_mask, q_mask, a_v, a_qt, row_lse, col_lse)
        ctx.scale = scale
        ctx.set_materialize_grads(False)

    def _backward(ctx, grad_mv, grad_mq, grad_av, grad_aqt, _grad_row_lse, _grad_col_lse):
        saved = ctx.saved_tensors
        v_full, q_full, v_mask, q_mask = saved[2], saved[3], saved[4], saved[5]
        if grad_mv is None:
            grad_mv = v_full.new_zeros((v_full.shape[0], v_mask.shape[1], v_full.shape[2]))
        if grad_mq is None:
            grad_mq = q_full.new_zeros((q_full.shape[0], q_mask.shape[1], q_full.shape[2]))
        grads = torch.ops.vgops._padded_coattention_backward(grad_mv, grad_mq, grad_av, grad_aqt, *saved, ctx.scale)
        return (*grads, None, None, None)

    torch.library.register_autograd("vgops::padded_coattention", _backward, setup_context=_setup_context)
