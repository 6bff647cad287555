"""FSAN's segment-score map and its alignment losses (Eq. 7-12), in pure PyTorch.

Two versions of each op:

* ``segment_score_map`` etc.: the naive formulas, written to read like the paper. Every segment
  sum sum_{j=s..e} is materialised for every (s, e) (the token loss builds a
  ``[B, Ns, Nv, Nv]`` tensor, as a direct transcription does). They are the test oracle
  (float64-safe) and the "naive" benchmark baseline.
* ``segment_score_map_cumsum`` etc.: the best pure-PyTorch versions we could write: prefix sums
  (``cumsum``) and one broadcast difference ``X[e + 1] - X[s]`` per segment; O(B Nv^2) for the
  score map and the weighted means. The token loss still needs fn() of every per-token segment
  sum, so it still holds ``[B, Ns, Nv, Nv]`` (the only way around that in PyTorch is a Python
  loop). They are the honest benchmark baseline.

Conventions shared with the kernels (see ``vgops.segment_score_map``): a segment (s, e) is valid
when s <= e and clips s and e are both valid; masked clips inside it take no part in sums or
counts; masked tokens take no part in sums over tokens, minima or Ns; the outside mean of a
segment with no valid clip outside is 0; invalid entries of the map are -inf and invalid
weights are ignored.
"""
import torch
import torch.nn.functional as F

TOKEN_FNS = {"sigmoid": torch.sigmoid, "identity": lambda x: x}


def compute_dtype(dtype):
    """float32 for half and bfloat16 inputs, the input dtype otherwise."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _masks(P, token_mask, clip_mask):
    B, Nv = P.shape[0], P.shape[-1]
    if clip_mask is None:
        clip_mask = torch.ones(B, Nv, dtype=torch.bool, device=P.device)
    if token_mask is None and P.dim() == 3:
        token_mask = torch.ones(B, P.shape[1], dtype=torch.bool, device=P.device)
    return token_mask, clip_mask


def _valid_segments(clip_mask):
    """[B, Nv, Nv] bool: s <= e and clips s and e are both valid."""
    Nv = clip_mask.shape[-1]
    idx = torch.arange(Nv, device=clip_mask.device)
    s_le_e = idx[:, None] <= idx[None, :]
    return s_le_e & clip_mask[:, :, None] & clip_mask[:, None, :]


def _segment_sums(x):
    """x [..., Nv] -> [..., Nv, Nv] with [..., s, e] = sum_{j=s..e} x[..., j] (0 where e < s)."""
    Nv = x.shape[-1]
    j = torch.arange(Nv, device=x.device)
    from_s = (j[None, :] >= j[:, None]).to(x.dtype)  # [s, j]: j >= s
    return torch.cumsum(x.unsqueeze(-2) * from_s, dim=-1)


def _safe(n):
    return torch.where(n > 0, n, torch.ones_like(n))


def segment_score_map(P, token_mask=None, clip_mask=None):
    """FSAN Eq. 8 for every segment: P [B, Ns, Nv] -> SC [B, Nv, Nv] (-inf where (s, e) is not a
    valid segment)."""
    dtype = P.dtype
    P = P.to(compute_dtype(dtype))
    token_mask, clip_mask = _masks(P, token_mask, clip_mask)
    tm, cm = token_mask.to(P.dtype), clip_mask.to(P.dtype)
    Ns = tm.sum(1)[:, None, None]
    # sum_i sum_{j=s..e} P[i, j] over valid tokens and valid clips
    inside_sum = _segment_sums(P * tm[:, :, None] * cm[:, None, :]).sum(1)
    n_in = _segment_sums(cm)                                   # valid clips in [s, e]
    n_out = cm.sum(-1)[:, None, None] - n_in                   # valid clips outside [s, e]
    # min over valid tokens at each clip; its gradient goes to the token torch.min returns
    clip_min = P.masked_fill(~token_mask[:, :, None], float("inf")).min(dim=1).values
    clip_min = torch.where(clip_mask, clip_min, torch.zeros_like(clip_min))
    outside_sum = clip_min.sum(-1)[:, None, None] - _segment_sums(clip_min)
    inside_term = inside_sum / (Ns * _safe(n_in))
    outside_term = torch.where(n_out > 0, outside_sum / _safe(n_out), torch.zeros_like(outside_sum))
    sc = inside_term - outside_term
    return torch.where(_valid_segments(clip_mask), sc, torch.full_like(sc, float("-inf"))).to(dtype)


def segment_weighted_token_loss(P, W, token_mask=None, clip_mask=None, fn="sigmoid"):
    """sum over valid (s, e) of W[s, e] * (1/Ns) sum_i fn(sum_{j=s..e} P[i, j]) (FSAN Eq. 9-10 with
    fn = sigmoid and the sign left to the caller) -> [B]."""
    dtype = torch.promote_types(P.dtype, W.dtype)
    ct = compute_dtype(dtype)
    P, W = P.to(ct), W.to(ct)
    token_mask, clip_mask = _masks(P, token_mask, clip_mask)
    tm, cm = token_mask.to(ct), clip_mask.to(ct)
    Ns = tm.sum(1)[:, None, None]
    S = _segment_sums(P * cm[:, None, :])                      # [B, Ns, Nv, Nv]: per-token segment sums
    per_segment = (TOKEN_FNS[fn](S) * tm[:, :, None, None]).sum(1) / Ns
    weighted = torch.where(_valid_segments(clip_mask), W * per_segment, torch.zeros_like(per_segment))
    return weighted.sum((-2, -1)).to(dtype)


def _weighted_mean(x, W, clip_mask, outside):
    dtype = torch.promote_types(x.dtype, W.dtype)
    ct = compute_dtype(dtype)
    x, W = x.to(ct), W.to(ct)
    _, clip_mask = _masks(x, None, clip_mask)
    cm = clip_mask.to(ct)
    xm = torch.where(clip_mask, x, torch.zeros_like(x))
    n_in = _segment_sums(cm)
    if outside:
        n_out = cm.sum(-1)[:, None, None] - n_in
        total = xm.sum(-1)[:, None, None] - _segment_sums(xm)
        mean = torch.where(n_out > 0, total / _safe(n_out), torch.zeros_like(total))
    else:
        mean = _segment_sums(xm) / _safe(n_in)
    weighted = torch.where(_valid_segments(clip_mask), W * mean, torch.zeros_like(mean))
    return weighted.sum((-2, -1)).to(dtype)


def segment_weighted_outside_mean(x, W, clip_mask=None):
    """sum over valid (s, e) of W[s, e] * mean of x over the valid clips outside [s, e] (0 where
    none is outside) -> [B]. FSAN's outer loss (Eq. 11-12) with x = g(min_i P)."""
    return _weighted_mean(x, W, clip_mask, outside=True)


def segment_weighted_inside_mean(x, W, clip_mask=None):
    """sum over valid (s, e) of W[s, e] * mean of x over the valid clips inside [s, e] -> [B]."""
    return _weighted_mean(x, W, clip_mask, outside=False)


# ----------------------------------------------------------------------------------------------
# prefix-sum (cumsum) versions: the best pure-PyTorch baselines

def _prefix(x):
    """[..., Nv] -> [..., Nv + 1]: X[k] = sum_{j<k} x[j]."""
    return F.pad(x.cumsum(-1), (1, 0))


def _window(X):
    """[..., Nv + 1] -> [..., Nv, Nv]: X[e + 1] - X[s] (meaningful for s <= e)."""
    return X[..., None, 1:] - X[..., :-1, None]


def segment_score_map_cumsum(P, token_mask=None, clip_mask=None):
    """segment_score_map via prefix sums: O(B Nv^2) memory."""
    dtype = P.dtype
    P = P.to(compute_dtype(dtype))
    token_mask, clip_mask = _masks(P, token_mask, clip_mask)
    cm = clip_mask.to(P.dtype)
    Ns = token_mask.sum(1).to(P.dtype)[:, None, None]
    colsum = torch.einsum("bij,bi->bj", P, token_mask.to(P.dtype)) * cm
    clip_min = P.masked_fill(~token_mask[:, :, None], float("inf")).min(dim=1).values
    clip_min = torch.where(clip_mask, clip_min, torch.zeros_like(clip_min))
    C, A, M = _prefix(cm), _prefix(colsum), _prefix(clip_min)
    n_in = _window(C)
    n_out = C[:, -1, None, None] - n_in
    valid = _valid_segments(clip_mask)
    inside = _window(A) / (Ns * _safe(n_in))
    outside = torch.where(n_out > 0, (M[:, -1, None, None] - _window(M)) / _safe(n_out), 0.0)
    return torch.where(valid, inside - outside, float("-inf")).to(dtype)


def segment_weighted_token_loss_cumsum(P, W, token_mask=None, clip_mask=None, fn="sigmoid"):
    """segment_weighted_token_loss via prefix sums; still materialises fn of every per-token
    segment sum ([B, Ns, Nv, Nv])."""
    dtype = torch.promote_types(P.dtype, W.dtype)
    ct = compute_dtype(dtype)
    P, W = P.to(ct), W.to(ct)
    token_mask, clip_mask = _masks(P, token_mask, clip_mask)
    tm = token_mask.to(ct)
    S = _window(_prefix(P * clip_mask.to(ct)[:, None, :]))    # [B, Ns, Nv, Nv]
    Wv = torch.where(_valid_segments(clip_mask), W, 0.0) / tm.sum(1)[:, None, None]
    per_segment = torch.einsum("bise,bi->bse", TOKEN_FNS[fn](S), tm)
    return (per_segment * Wv).sum((-2, -1)).to(dtype)


def _weighted_mean_cumsum(x, W, clip_mask, outside):
    dtype = torch.promote_types(x.dtype, W.dtype)
    ct = compute_dtype(dtype)
    x, W = x.to(ct), W.to(ct)
    _, clip_mask = _masks(x, None, clip_mask)
    C, X = _prefix(clip_mask.to(ct)), _prefix(torch.where(clip_mask, x, 0.0))
    n_in, s_in = _window(C), _window(X)
    if outside:
        n = C[:, -1, None, None] - n_in
        mean = torch.where(n > 0, (X[:, -1, None, None] - s_in) / _safe(n), 0.0)
    else:
        mean = s_in / _safe(n_in)
    return torch.where(_valid_segments(clip_mask), W * mean, 0.0).sum((-2, -1)).to(dtype)


def segment_weighted_outside_mean_cumsum(x, W, clip_mask=None):
    return _weighted_mean_cumsum(x, W, clip_mask, outside=True)


def segment_weighted_inside_mean_cumsum(x, W, clip_mask=None):
    return _weighted_mean_cumsum(x, W, clip_mask, outside=False)
