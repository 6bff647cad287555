"""FSAN: Fine-grained Semantic Alignment Network for weakly supervised temporal language
grounding (Wang et al., Findings of EMNLP 2021), thin version.

Weakly supervised: training sees only (video, sentence) pairs, never the moment; the moment is
read off the segment score map at inference.

Architecture (equation numbers refer to the paper):

* Language and video encoders: word embeddings / projected clip features + sinusoidal positions
  -> Transformer encoders (Eq. 1-2).
* Iterative cross-modal interaction, ``layers`` = 6 rounds (Eq. 3-4): in each round the words
  attend to the clips and the clips attend to the (updated) words, each with a residual,
  LayerNorm and a feed-forward block.
* Semantic alignment map (Eq. 5): P[i, j] = sigmoid(logit_scale * <W_q q_i, W_v v_j> / sqrt(d) + b)
  for every token i and valid clip j (0 at padded clips).
* Segment score map SC[s, e] (Eq. 8) with ``vgops.segment_score_map``: mean alignment of the
  tokens inside [s, e] minus the mean over the clips outside of the least-aligned token's score;
  the video-sentence matching score S is pooled over the segments (Eq. 7).
* Losses (Eq. 6-13):
  - triplet (Eq. 6): ``max(0, margin - S(V, Q) + S(V, Q-)) + max(0, margin - S(V, Q) + S(V-, Q))``
    with the negatives of the next sample in the batch; the negative sentence's tokens that
    also occur in the positive sentence are masked out of its score map (repeated-token masking),
    so a shared word cannot make the negative look positive;
  - inner (Eq. 9-10): ``-segment_weighted_token_loss(P, W)``, sigmoid of each token's summed
    alignment inside each segment, weighted by W = softmax over valid segments of SC / tau
    (detached: the current belief of where the moment is);
  - outer (Eq. 11-12): ``-segment_weighted_outside_mean(1 - sigmoid(min_i P), W)``: outside the
    believed segment no clip should align with the sentence;
  - total (Eq. 13): triplet + lambda_inner * inner + lambda_outer * outer.
* Inference: every valid (s, e) is the moment [s, e + 1) in clip units, ranked (see below); the
  best ``candidates`` go through ``vgops.temporal_nms_padded``; top-k.

Deviations from the paper (each needed to learn the synthetic task; the defaults below):

1. Eq. 5 normalisation: a sigmoid with a learned bias b (initialised at -2) instead of a
   softmax over the clips (``norm="softmax"`` keeps that reading). A per-token softmax always
   puts a unit of mass somewhere, so an unrelated video can concentrate it on one clip and match
   as well as the right one; with it the triplet loss drove P to uniform (R@1,IoU=0.5 ~7%).
   The negative bias makes "no clip aligns" the starting point: with a 0.5 baseline the outside
   term cannot beat the whole video, whose outside term is 0.
2. Clip side of Eq. 5 (``clip_side="local"``): the clip's own projected feature, not the clip
   after the video encoder and the interaction rounds. Weakly supervised, nothing asks the
   contextualised clips to stay local: self-attention spreads "the video contains the concept"
   over every clip, P becomes flat and the whole video wins (with ``clip_side="interacted"``:
   R@1,IoU=0.5 26% vs 63%). The words still go through the encoder and every interaction round
   (Eq. 3); the last round's clip update (Eq. 4), which would feed nothing, is not built.
3. Eq. 7 pooling: S = pool_tau * logsumexp(SC / pool_tau) over the valid segments, pool_tau =
   0.05 (a soft maximum) instead of the hard max: the max sends the gradient to one segment
   (often a one-clip noise peak); the soft max spreads it over the best segments (R@1,IoU=0.5
   43% with the hard max vs 63%).
4. Inference ranking: by n_in(s, e) * (SC[s, e] - 0.5 * max_{s,e} SC), the segment's summed
   excess over half of the video's best score, instead of SC. SC is a *mean* inside the segment,
   so with a noisy P one high clip beats the whole moment (plain SC: R@1,IoU=0.5 ~3%, predicted
   length ~1.4 clips vs ~9); weighting by length while subtracting a threshold relative to the
   best score keeps the segments whose clips are all well aligned. ``rank_fraction=None``
   restores ranking by SC.

Defaults: 6 interaction layers (paper); d = 256, 4 heads, one encoder layer, margin 0.2,
tau 0.1, lambda_inner = lambda_outer = 0.1, logit_scale 1 are ours (the paper's values could not
be checked here); the structure of the losses is the paper's.
"""
import torch
import torch.nn as nn

import vgops

from .common import FromDataset, TransformerEncoder, masked_softmax, pad_topk
from .drn import _check_batch


class CrossBlock(nn.Module):
    """x attends to y (valid keys only), residual + LayerNorm, then a feed-forward block."""

    def __init__(self, dim, heads, dropout):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, 2 * dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(2 * dim, dim))

    def forward(self, x, y, y_mask):
        x = self.norm1(x + self.attn(x, y, y, key_padding_mask=~y_mask, need_weights=False)[0])
        return self.norm2(x + self.ff(x))


class FSAN(FromDataset, nn.Module):
    """FSAN on clip features.

    Args:
        video_dim, vocab_size: input sizes.
        dim: model width d.
        layers: rounds of cross-modal interaction (6 in the paper).
        encoder_layers, heads: Transformer encoder depth and heads.
        margin: triplet margin; tau: temperature of the segment weights W;
        lambda_inner, lambda_outer: loss weights (Eq. 13).
        nms_threshold, candidates: inference NMS threshold and how many top segments enter it.
        dropout: dropout of the encoders and interaction blocks.
        logit_scale: multiplies the token-clip similarity of Eq. 5.
        norm: "sigmoid" (default) P = sigmoid(sim + b) with a learned bias b, or "softmax" (each
            token's distribution over the clips).
        clip_side: "local" (default): the clip side of Eq. 5 is the clip's own projected
            feature; "interacted": the clip after the encoder and the interaction rounds.
        bias_init: initial b (sigmoid only; -2: P starts near 0.12, so "nothing aligns" is the
            starting point and the segment contrast is not swamped by a 0.5 baseline).
        pool_tau: the matching score S is pool_tau * logsumexp(SC / pool_tau) over the segments
            (0: the max, as in Eq. 7).
        rank_fraction: inference ranks segments by n_in(s, e) * (SC[s, e] - rank_fraction * max
            SC); None ranks by SC itself.
    """

    def __init__(self, video_dim, vocab_size, dim=256, layers=6, encoder_layers=1, heads=4, margin=0.2,
                 tau=0.1, lambda_inner=0.1, lambda_outer=0.1, nms_threshold=0.5, candidates=64,
                 dropout=0.1, logit_scale=1.0, norm="sigmoid", clip_side="local", bias_init=-2.0,
                 pool_tau=0.05, rank_fraction=0.5):
        super().__init__()
        if norm not in ("sigmoid", "softmax") or clip_side not in ("local", "interacted"):
            raise ValueError(f"FSAN: norm must be 'sigmoid' or 'softmax' and clip_side 'local' or "
                             f"'interacted', got {norm!r} and {clip_side!r}")
        self.norm = norm
        self.clip_side = clip_side
        self.pool_tau = pool_tau
        self.rank_fraction = rank_fraction
        self.bias = nn.Parameter(torch.tensor(float(bias_init)))
        self.logit_scale = logit_scale
        self.margin, self.tau = margin, tau
        self.lambda_inner, self.lambda_outer = lambda_inner, lambda_outer
        self.nms_threshold, self.candidates = nms_threshold, candidates
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.video_proj = nn.Linear(video_dim, dim)
        self.text_encoder = TransformerEncoder(dim, encoder_layers, heads, dropout=dropout)
        self.video_encoder = TransformerEncoder(dim, encoder_layers, heads, dropout=dropout)
        self.word_blocks = nn.ModuleList(CrossBlock(dim, heads, dropout) for _ in range(layers))
        # with clip_side="local" the last round's clip update would feed nothing: it is not built
        n_clip = layers - 1 if clip_side == "local" else layers
        self.clip_blocks = nn.ModuleList(CrossBlock(dim, heads, dropout) for _ in range(n_clip))
        self.wq, self.wv = nn.Linear(dim, dim), nn.Linear(dim, dim)

    def alignment(self, video, vmask, query, qmask):
        """Encoders, interaction (Eq. 1-4) and the alignment map P [B, Ns, Nv] (Eq. 5)."""
        q = self.text_encoder(self.embed(query), qmask)
        v = self.video_encoder(self.video_proj(video), vmask)
        for r, wb in enumerate(self.word_blocks):
            q = wb(q, v, vmask)                        # Eq. 3: words gather clip context
            if r < len(self.clip_blocks):
                v = self.clip_blocks[r](v, q, qmask)   # Eq. 4: clips gather the updated words
        if self.clip_side == "local":
            # deviation: the clip side of Eq. 5 is the clip's own projected feature (no
            # self-attention / interaction context), so P can only fire where the clip itself
            # carries what the (contextualised) token asks for
            v = self.video_proj(video)
        logits = self.logit_scale * (self.wq(q) @ self.wv(v).transpose(1, 2)) / q.shape[-1] ** 0.5
        if self.norm == "softmax":
            # each token's distribution over the valid clips
            return masked_softmax(logits, vmask[:, None, :])
        # deviation (default): an absolute per-(token, clip) probability, 0 at padded clips
        return torch.sigmoid(logits + self.bias) * vmask[:, None, :].to(logits.dtype)

    def forward(self, batch):
        """"P" [B, Ns, Nv] and "SC" [B, Nv, Nv] of the given pairs; in training mode (batch of
        >= 2) also "S_neg_query" and "S_neg_video" [B] (matching scores of the negative pairs)
        and "neg_ok" Bool[B] (the negative sentence kept a token after masking)."""
        _check_batch(batch, "FSAN")
        video, vmask, query, qmask = batch["video"], batch["video_mask"], batch["query"], batch["query_mask"]
        B = video.shape[0]
        negatives = self.training and B >= 2
        if negatives:
            # pairs (V, Q), (V, Q-), (V-, Q) in one pass; the negatives come from the next sample
            nq, nqm = query.roll(1, 0), qmask.roll(1, 0)
            nv, nvm = video.roll(1, 0), vmask.roll(1, 0)
            video_all = torch.cat([video, video, nv])
            vmask_all = torch.cat([vmask, vmask, nvm])
            query_all = torch.cat([query, self._pad_to(nq, query), query])
            qmask_all = torch.cat([qmask, self._pad_to(nqm, qmask), qmask])
        else:
            video_all, vmask_all, query_all, qmask_all = video, vmask, query, qmask
        P_all = self.alignment(video_all, vmask_all, query_all, qmask_all)
        P = P_all[:B]
        out = {"P": P, "SC": vgops.segment_score_map(P, qmask, vmask)}
        if negatives:
            # repeated-token masking: a negative token that also occurs in the positive sentence
            repeated = (nq[:, :, None] == query[:, None, :]).logical_and(qmask[:, None, :]).any(-1)
            neg_mask = nqm & ~repeated
            neg_ok = neg_mask.any(1)
            neg_mask = torch.where(neg_ok[:, None], neg_mask, nqm)  # rows left empty: weight 0 below
            sc_nq = vgops.segment_score_map(P_all[B:2 * B], neg_mask, vmask)
            sc_nv = vgops.segment_score_map(P_all[2 * B:], qmask, nvm)
            out.update(S_neg_query=self.pool(sc_nq), S_neg_video=self.pool(sc_nv),
                       neg_ok=neg_ok)
        return out

    def pool(self, SC):
        """Sentence-video matching score from the segment score map (Eq. 7)."""
        x = SC.flatten(1)
        if self.pool_tau <= 0:
            return x.amax(1)
        return self.pool_tau * torch.logsumexp(x / self.pool_tau, 1)

    @staticmethod
    def _pad_to(x, like):
        return x if x.shape[1] == like.shape[1] else torch.nn.functional.pad(x, (0, like.shape[1] - x.shape[1]))

    def loss(self, out, batch):
        """Triplet + inner + outer losses (Eq. 6-13). Uses no "moment": weakly supervised."""
        P, SC = out["P"], out["SC"]
        qmask, vmask = batch["query_mask"], batch["video_mask"]
        S = self.pool(SC)                                                    # Eq. 7
        zero = P.sum() * 0
        if "S_neg_query" in out:
            ok = out["neg_ok"].to(S.dtype)
            l_tri = (ok * torch.relu(self.margin - S + out["S_neg_query"])
                     + torch.relu(self.margin - S + out["S_neg_video"])).mean()   # Eq. 6
        else:
            l_tri = zero
        # W: where the model currently believes the moment is (softmax over valid segments)
        W = torch.softmax((SC.detach() / self.tau).flatten(1), 1).view_as(SC)
        l_inner = -vgops.segment_weighted_token_loss(P, W, qmask, vmask, fn="sigmoid").mean()   # Eq. 9-10
        clip_min = P.masked_fill(~qmask[:, :, None], float("inf")).amin(1)
        clip_min = torch.where(vmask, clip_min, torch.zeros_like(clip_min))
        l_outer = -vgops.segment_weighted_outside_mean(1 - torch.sigmoid(clip_min), W, vmask).mean()  # Eq. 11-12
        total = l_tri + self.lambda_inner * l_inner + self.lambda_outer * l_outer        # Eq. 13
        return total, {"triplet": l_tri.detach().item(), "inner": l_inner.detach().item(),
                       "outer": l_outer.detach().item()}

    @torch.no_grad()
    def predict(self, out, batch, k=5):
        """Top-k moments [s, e + 1) after NMS, ranked by n_in * (SC - rank_fraction * max SC)
        (deviation 4 of the module docstring) or, with rank_fraction=None, by SC."""
        SC = out["SC"]
        B, T, _ = SC.shape
        idx = torch.arange(T, device=SC.device)
        seg = torch.stack(torch.broadcast_tensors(idx[:, None], idx[None, :] + 1), -1).to(SC.dtype)
        seg = seg.reshape(1, T * T, 2).expand(B, -1, -1)
        if self.rank_fraction is None:
            scores = SC.reshape(B, T * T)
        else:
            # length-aware ranking: the summed excess n_in(s, e) * (SC[s, e] - f * max SC) of the
            # score map over a fraction f of the video's best segment score (-inf stays -inf)
            vm = batch["video_mask"].to(SC.dtype)
            cs = torch.nn.functional.pad(vm.cumsum(1), (1, 0))
            n_in = (cs[:, None, 1:] - cs[:, :-1, None]).clamp_min(0)
            best = SC.flatten(1).amax(1)[:, None, None]
            scores = (n_in * (SC - self.rank_fraction * best)).masked_fill(~torch.isfinite(SC), float("-inf"))
            scores = scores.reshape(B, T * T)
        n = min(self.candidates, T * T)
        top, ti = scores.topk(n, 1)
        cand = seg.gather(1, ti[..., None].expand(B, n, 2))
        valid = torch.isfinite(top)
        keep, kept = vgops.temporal_nms_padded(cand.float(), top.float().nan_to_num(neginf=-1e30),
                                               self.nms_threshold, k, valid)
        segs, sc = pad_topk(cand, top, keep, kept, k)
        return {"segments": segs, "scores": sc}
