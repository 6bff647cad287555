"""GLF: temporal sentence grounding with learnable foreground (patch level), thin version on the
vgops ops.

* 3D patch embedding (Eq. 1): every clip's spatial map (batch["patches"] [B, T, C, h, w]) is
  pooled to K x K patches for each scale K in {3, 5, 7} and embedded by a Conv3d with a temporal
  kernel of 3 (a patch sees its neighbours in time); + learned spatial positions per scale.
* Transformer encoders: words (embedding + encoder) -> q̂ [B, S, D]; clip features + the mean of
  their patches -> a video encoder whose clip outputs are added to every patch of the clip -> p̂.
* Additive patch-word attention (Eq. 2, ``vgops.additive_attention``):
  ``alpha[p, s] = wᵀ tanh(W1 p̂_p + W2 q̂_s)``, ``r_p = Σ_s softmax_s(alpha) q̂_s``.
* Textual gate (Eq. 3, ``vgops.nn.TextualGate``): ``[p̂ ⊙ sigmoid(W r + b); r]`` -> linear -> u_p.
* Coarse patch scoring and weighting (Eq. 4): ``c_p = sigmoid(MLP(u_p))`` is patch p's
  foreground probability. Balanced matching loss (Eq. 5, reconstructed): per clip and scale the
  foreground score is the max of its patches' c_p (multiple-instance: some patch of a clip in the
  moment is the foreground); binary cross-entropy against "clip inside the ground truth",
  averaged separately over foreground and background clips and summed (balanced: moments are
  short).
* Fine patch selection: per clip and scale the top-k patches by c_p (k = ceil(K^2 / 3)),
  averaged with weights c_p -> one feature per clip and scale [B, 3, T, D].
* Multi-scale gated fusion (Eq. 9, ``vgops.nn.MultiScaleGatedFusion``), mean over scales, + the
  clip's encoder output.
* Proposal head (Eq. 6-8): every candidate moment (s, e), s <= e, of the 2-D map is
  ``[f_s; f_e; mean f_{s..e}]`` (prefix sums) -> MLP -> IoU score logit and two boundary offsets.
  IoU-score loss (Eq. 6-7): BCE against ``vgops.segment_map_iou`` targets scaled as 2D-TAN
  (``clamp((IoU - t_min) / (t_max - t_min), 0, 1)``, t_min = 0.5, t_max = 1.0); boundary loss
  (Eq. 8): smooth-L1 of the offsets (clip units) of candidates with IoU >= 0.5.
* Inference: candidates + offsets ranked by the IoU score, ``vgops.temporal_nms_padded`` (0.5), top-k.

Paper defaults kept: scales {3, 5, 7}, additive attention, the textual gate, the 2-D proposal
map. Ours/assumed: D = 256, 1-layer encoders, the weights of the three losses (1, 1, 1), the
top-k fraction 1/3, the MIL reading of the balanced matching loss.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

import vgops

from .common import FromDataset, TransformerEncoder, mlp, pad_topk


class GLF(FromDataset, nn.Module):
    """GLF on clip features plus per-clip patch maps.

    Args:
        video_dim: Dv. vocab_size: words (0 = padding). patch_channels: C of the patch maps.
        hidden: D (256). scales: patch grids K (3, 5, 7). heads: encoder heads (4).
        iou_range: (t_min, t_max) of the IoU-score target (0.5, 1.0). select_frac: fine selection
        keeps ceil(K^2 * select_frac) patches. loss_weights: (IoU score, boundary, matching).
        max_len: longest candidate moment in clips (None: the whole video).
    """

    META_KEYS = ("video_dim", "vocab_size", "patch_channels")

    def __init__(self, video_dim, vocab_size, patch_channels, hidden=256, scales=(3, 5, 7), heads=4,
                 iou_range=(0.5, 1.0), select_frac=1 / 3, loss_weights=(1.0, 1.0, 1.0), nms_threshold=0.5,
                 max_len=None, dropout=0.1):
        super().__init__()
        D = hidden
        self.scales, self.iou_range, self.select_frac = tuple(scales), tuple(iou_range), select_frac
        self.loss_weights, self.nms_threshold, self.max_len = tuple(loss_weights), nms_threshold, max_len
        self.embed = nn.Embedding(vocab_size, D, padding_idx=0)
        self.text_encoder = TransformerEncoder(D, layers=1, heads=heads, dropout=dropout)
        self.patch_embed = nn.ModuleList(nn.Conv3d(patch_channels, D, (3, 1, 1), padding=(1, 0, 0)) for _ in scales)
        self.patch_pos = nn.ParameterList(nn.Parameter(torch.randn(k * k, D) * 0.02) for k in scales)
        self.video_in = nn.Linear(video_dim + D, D)
        self.video_encoder = TransformerEncoder(D, layers=1, heads=heads, dropout=dropout)
        self.att_patch, self.att_word = nn.Linear(D, D), nn.Linear(D, D, bias=False)
        self.att_w = nn.Parameter(torch.randn(D) * D ** -0.5)
        self.gate = vgops.nn.TextualGate(D)
        self.gate_out = nn.Linear(2 * D, D)
        self.coarse = mlp((D, D, 1))
        self.fusion = vgops.nn.MultiScaleGatedFusion(D, len(scales))
        self.proposal = mlp((3 * D, D, 3))

    @classmethod
    def from_dataset(cls, meta, **overrides):
        if not meta.get("has_patches"):
            raise ValueError("GLF needs per-clip patch maps: build the dataset with patches=True "
                             f"(meta['has_patches'] is {meta.get('has_patches')!r})")
        return super().from_dataset(meta, **overrides)

    def forward(self, batch):
        """"score" [B, T, T] IoU logits of candidate (s, e), "offsets" [B, T, T, 2], "cand"
        [B, T, T, 2] candidate segments, "cand_valid" Bool[B, T, T], "coarse" list of [B, T, K*K]
        foreground probabilities per scale."""
        video, vmask, qmask = batch["video"], batch["video_mask"], batch["query_mask"]
        B, T, _ = video.shape
        D = self.att_w.shape[0]
        q = self.text_encoder(self.embed(batch["query"]), qmask)                    # q̂ [B, S, D]
        maps = batch["patches"].transpose(1, 2)                                     # [B, C, T, h, w]
        patches = []
        for k, emb, pos in zip(self.scales, self.patch_embed, self.patch_pos):    # Eq. 1
            x = emb(F.adaptive_avg_pool3d(maps, (T, k, k)))                         # [B, D, T, k, k]
            patches.append(x.flatten(3).permute(0, 2, 3, 1) + pos)                  # [B, T, k*k, D]
        pmean = torch.cat(patches, 2).mean(2)
        clips = self.video_encoder(self.video_in(torch.cat([video, pmean], -1)), vmask)   # [B, T, D]
        p = torch.cat(patches, 2) + clips[:, :, None]                               # p̂ [B, T, P, D]
        P = p.shape[2]
        flat = p.reshape(B, T * P, D)
        r = vgops.additive_attention(self.att_patch(flat), self.att_word(q), self.att_w, q, qmask)  # Eq. 2
        u = self.gate_out(self.gate(flat, r)).reshape(B, T, P, D)                    # Eq. 3
        c = torch.sigmoid(self.coarse(u).squeeze(-1)) * vmask[..., None]             # Eq. 4 [B, T, P]
        per_scale, coarse, start = [], [], 0
        for k in self.scales:
            cs, us = c[..., start:start + k * k], u[..., start:start + k * k, :]
            start += k * k
            top, idx = cs.topk(max(1, math.ceil(k * k * self.select_frac)), -1)     # fine selection
            sel = us.gather(2, idx[..., None].expand(-1, -1, -1, D))
            per_scale.append((sel * top[..., None]).sum(2) / top.sum(-1, keepdim=True).clamp_min(1e-6))
            coarse.append(cs)
        fused = self.fusion(torch.stack(per_scale, 1)).mean(1) + clips               # Eq. 9
        fused = fused * vmask[..., None]
        # 2-D proposal map: [f_s; f_e; mean f_{s..e}] via prefix sums
        cs_ = F.pad(fused.cumsum(1), (0, 0, 1, 0))                                   # [B, T+1, D]
        s_i = torch.arange(T, device=video.device)
        n = (s_i[None, :] - s_i[:, None] + 1).clamp_min(1).to(fused.dtype)          # [T(s), T(e)]
        mean = (cs_[:, None, 1:] - cs_[:, :T, None]) / n[None, ..., None]
        feat = torch.cat([fused[:, :, None].expand(B, T, T, D), fused[:, None].expand(B, T, T, D), mean], -1)
        out = self.proposal(feat)
        dur = vmask.sum(1)
        cand_valid = (s_i[:, None] <= s_i[None, :])[None] & (s_i[None, None, :] < dur[:, None, None])
        if self.max_len is not None:
            cand_valid &= (s_i[None, :] - s_i[:, None] < self.max_len)[None]
        cand = torch.stack(torch.broadcast_tensors(s_i[:, None].to(fused.dtype), s_i[None, :].to(fused.dtype) + 1), -1)
        return {"score": out[..., 0], "offsets": out[..., 1:], "cand": cand.expand(B, T, T, 2),
                "cand_valid": cand_valid, "coarse": coarse}

    def loss(self, out, batch):
        """IoU-score loss (Eq. 6-7) + boundary loss (Eq. 8) + balanced matching loss (Eq. 5)."""
        vmask, gt = batch["video_mask"], batch["moment"]
        B, T = vmask.shape
        dt = out["score"].dtype
        iou = vgops.segment_map_iou(gt.to(dt), T)                                    # clip units: [s, e+1)
        valid = out["cand_valid"]
        lo, hi = self.iou_range
        target = ((iou - lo) / (hi - lo)).clamp(0, 1)
        vf = valid.to(dt)
        l_iou = (F.binary_cross_entropy_with_logits(out["score"], target, reduction="none") * vf).sum() / vf.sum()
        pos = (iou >= 0.5) & valid
        reg_t = gt[:, None, None, :].to(dt) - out["cand"]
        l_bound = ((F.smooth_l1_loss(out["offsets"], reg_t, reduction="none").sum(-1) * pos).sum()
                   / pos.sum().clamp_min(1))
        t = torch.arange(T, device=vmask.device, dtype=dt)
        fg = ((t[None] + 0.5 > gt[:, :1]) & (t[None] + 0.5 < gt[:, 1:]) & vmask).to(dt)   # clip inside the moment
        bg = vmask.to(dt) - fg
        l_match = 0.0
        for cs in out["coarse"]:
            score = cs.max(-1).values.clamp(1e-6, 1 - 1e-6)
            l_match = l_match + (-(torch.log(score) * fg).sum() / fg.sum().clamp_min(1)
                                 - (torch.log1p(-score) * bg).sum() / bg.sum().clamp_min(1))
        l_match = l_match / len(out["coarse"])
        wi, wb, wm = self.loss_weights
        total = wi * l_iou + wb * l_bound + wm * l_match
        return total, {"iou": l_iou.detach().item(), "boundary": l_bound.detach().item(),
                       "matching": l_match.detach().item()}

    @torch.no_grad()
    def predict(self, out, batch, k=5):
        B, T = batch["video_mask"].shape
        dur = batch["video_mask"].sum(1).to(out["score"].dtype)
        seg = (out["cand"] + out["offsets"]).reshape(B, T * T, 2)
        seg = torch.minimum(seg.clamp_min(0), dur[:, None, None])
        seg = torch.stack([seg[..., 0], torch.maximum(seg[..., 0], seg[..., 1])], -1)
        scores = torch.sigmoid(out["score"]).reshape(B, T * T)
        valid = out["cand_valid"].reshape(B, T * T)
        keep, kept = vgops.temporal_nms_padded(seg.float(), scores.float(), self.nms_threshold, k, valid)
        s, sc = pad_topk(seg, scores, keep, kept, k)
        return {"segments": s, "scores": sc}
