"""FSM: spatio-temporal video grounding (find the moment and the box in every frame of it), thin
version on the vgops ops.

Architecture (equation numbers refer to the paper; where our form is a reconstruction it says so):

* Text: word embeddings + a Transformer encoder -> y [B, M, d] (the paper uses a pretrained
  language model; the synthetic task needs none).
* Visual: every pyramid level of the per-frame maps is projected to d by a 1x1 convolution.
* Frame-level fusion (Eq. 1-3): ``vgops.nn.GatedCorrelation`` on the coarsest level's tokens
  x [B, T, L, d] (+ learned 2-D positions) and the words: self/cross correlation, cross gating,
  self-guided head, for the visual tokens and the words in parallel.
* Video-level fusion (Eq. 4-5, reconstructed): frame vectors f_t (mean of the frame's fused
  tokens) run through a temporal Transformer, h = Enc(f); the result enters through learnable
  tanh scaling factors initialised at 0 (so training starts from the frame-level model):
  ``v_t = f_t + tanh(alpha) ⊙ h_t`` and the tokens ``x̂ = x_g + tanh(beta) ⊙ v_t``.
* Decoder (DETR-style, time-aligned): N = 5 tube queries, each with one query per frame
  (query embedding + time position + that frame's fused feature). Per layer: temporal self-attention inside a tube,
  cross-attention over the video-level frames v and the words, FFN. Heads per (tube, frame):
  box (centre = soft-argmax of an attention over the frame's finest-level cells, size by an MLP),
  frame probability (is the frame in the moment), start/end logits; per tube a confidence.
* Tube matching (Eq. 8, cost as we reconstruct it): cost = l1 · |b - b̂|_1 + giou · (1 - GIoU)
  over the ground-truth frames + se · (-log p_s(gs) - log p_e(ge)) - conf · sigmoid(c); batched
  on the device, solved per video by ``lap.lapjv`` (scipy's ``linear_sum_assignment`` if lap is
  missing).
* Losses of the matched tube: L1 + GIoU boxes, KL(start/end target ‖ predicted distribution)
  (targets: Gaussians of sigma 1 frame around the ground-truth start / last frame), BCE frame
  probabilities, guided attention loss (-log of the decoder's cross-attention mass on the
  ground-truth frames, TubeDETR's form); tube confidence BCE (matched 1, others 0, weight 0.1 on
  the others as in DETR's no-object class).
* Mismatching-rectify contrastive loss (Eq. 10, reconstructed): a tube's anchor embedding is the
  RoIAlign of its (detached) boxes from every pyramid level (``vgops.roi_align_clips_multiscale``),
  projected and averaged over the ground-truth frames. InfoNCE with temperature tau pulls the
  sentence towards the ground-truth tube's anchor and away from the mismatched tubes (every
  query whose mean box IoU with the ground truth is < 0.5, the matched one included: a mismatch
  is what the loss rectifies) and the other videos' ground-truth tubes.
* Inference: the tube of highest confidence; its moment is the top pair (i <= j) of
  p_s(i) · p_e(j) over valid frames, the span [i, j + 1) in frame units.

Paper defaults kept as ours: N = 5 queries, d = 256, 6 decoder layers, 8 heads. Ours: the loss
weights below, the soft-argmax box centre, the 1-layer text encoder.
"""
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import vgops

from .common import FromDataset, TransformerEncoder, masked_mean, masked_softmax, mlp, sinusoidal_positions

try:
    import lap
except ImportError:  # lap is in requirements; scipy's solver serves the same problem
    lap = None


def linear_assignment(cost):
    """Row index assigned to every column of a [N, G] cost (N >= G): Long[G]."""
    cost = np.asarray(cost, dtype=np.float64)
    if lap is not None:
        _, _, y = lap.lapjv(cost, extend_cost=True)
        return torch.as_tensor(y, dtype=torch.long)
    from scipy.optimize import linear_sum_assignment
    rows, cols = linear_sum_assignment(cost)
    out = torch.empty(cost.shape[1], dtype=torch.long)
    out[torch.as_tensor(cols)] = torch.as_tensor(rows, dtype=torch.long)
    return out


def box_cxcywh_to_xyxy(b):
    cx, cy, w, h = b.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


def box_iou_giou(a, b):
    """Aligned IoU and generalised IoU of xyxy boxes [..., 4] -> ([...], [...])."""
    area = lambda x: (x[..., 2] - x[..., 0]).clamp_min(0) * (x[..., 3] - x[..., 1]).clamp_min(0)
    lt, rb = torch.maximum(a[..., :2], b[..., :2]), torch.minimum(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp_min(0).prod(-1)
    union = area(a) + area(b) - inter
    iou = inter / union.clamp_min(1e-7)
    hull = (torch.maximum(a[..., 2:], b[..., 2:]) - torch.minimum(a[..., :2], b[..., :2])).clamp_min(0).prod(-1)
    return iou, iou - (hull - union) / hull.clamp_min(1e-7)


class DecoderLayer(nn.Module):
    """Temporal self-attention inside a tube, cross-attention to [frames; words], FFN (post-norm
    as DETR). Returns the new queries and the cross-attention weights over the memory."""

    def __init__(self, dim, heads, dropout):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.ffn = mlp((dim, 2 * dim, dim))
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(3))

    def forward(self, q, memory, q_pad, mem_pad):
        q = self.norms[0](q + self.self_attn(q, q, q, key_padding_mask=q_pad, need_weights=False)[0])
        att, w = self.cross_attn(q, memory, memory, key_padding_mask=mem_pad, need_weights=True)
        q = self.norms[1](q + att)
        return self.norms[2](q + self.ffn(q)), w


class FSM(FromDataset, nn.Module):
    """FSM on multi-scale per-frame feature maps and a tokenised sentence.

    Args:
        frame_channels: C of every pyramid level.
        vocab_size: words (0 = padding).
        strides: pixel stride of each level (finest first; spatial scale = 1 / stride).
        image_size: side of the (square) image in pixels; boxes are in its pixels.
        hidden: d (256). heads: attention heads (8). num_queries: N tube queries (5).
        dec_layers: decoder layers (6).
        roi_size: RoIAlign output side of the anchor embedding.
        weights: loss weights (l1, giou, se (KL), frame, guided attention, contrastive, conf).
        tau: temperature of the contrastive loss.
    """

    META_KEYS = ("frame_channels", "vocab_size", "strides", "image_size")

    def __init__(self, frame_channels, vocab_size, strides=(8, 16), image_size=64, hidden=256, heads=8,
                 num_queries=5, dec_layers=6, roi_size=2, dropout=0.1, tau=0.1,
                 weights=(5.0, 2.0, 1.0, 1.0, 1.0, 0.5, 1.0)):
        super().__init__()
        d = hidden
        self.strides, self.image_size, self.num_queries, self.tau = tuple(strides), image_size, num_queries, tau
        self.roi_size, self.weights = roi_size, tuple(weights)
        self.embed = nn.Embedding(vocab_size, d, padding_idx=0)
        self.text_encoder = TransformerEncoder(d, layers=1, heads=heads, dropout=dropout)
        self.proj = nn.ModuleList(nn.Conv2d(frame_channels, d, 1) for _ in strides)
        side = lambda s: image_size // s
        self.pos_coarse = nn.Parameter(torch.randn(side(strides[-1]) ** 2, d) * 0.02)
        self.pos_fine = nn.Parameter(torch.randn(side(strides[0]) ** 2, d) * 0.02)
        self.correlation = vgops.nn.GatedCorrelation(d, 2 * d)                   # Eq. 1-3
        self.temporal = TransformerEncoder(d, layers=1, heads=heads, dropout=dropout)
        self.alpha = nn.Parameter(torch.zeros(d))                                # Eq. 4 scaling
        self.beta = nn.Parameter(torch.zeros(d))                                 # Eq. 5 scaling
        self.queries = nn.Embedding(num_queries, d)
        self.decoder = nn.ModuleList(DecoderLayer(d, heads, dropout) for _ in range(dec_layers))
        self.box_key, self.box_query = nn.Linear(d, d), nn.Linear(d, d)
        self.box_head = mlp((2 * d, d, 4))                                       # centre offset, w, h
        self.frame_head = nn.Linear(d, 1)
        self.se_head = nn.Linear(d, 2)
        self.conf_head = nn.Linear(d, 1)
        self.anchor_proj = nn.Linear(len(strides) * d * roi_size * roi_size, d)
        self.sent_proj = nn.Linear(d, d)
        s0 = strides[0]
        n0 = side(s0)
        c = (torch.arange(n0, dtype=torch.float32) + 0.5) * s0 / image_size
        self.register_buffer("cell_xy", torch.stack(torch.meshgrid(c, c, indexing="xy"), -1).reshape(-1, 2),
                             persistent=False)                                   # [L0, 2] (x, y) in [0, 1]

    def forward(self, batch):
        """Returns "boxes" [B, N, T, 4] (xyxy pixels), "frame" [B, N, T] logits, "start"/"end"
        [B, N, T] logits, "conf" [B, N] logits, "attn" [B, N, T, T] decoder cross-attention on
        the frames (last layer), "levels" the projected pyramid, "sentence" [B, d]."""
        frames, vmask = batch["frames"], batch["video_mask"]
        qmask = batch["query_mask"]
        B, T = vmask.shape
        N, d = self.num_queries, self.alpha.shape[0]
        y = self.text_encoder(self.embed(batch["query"]), qmask)
        levels = [p(f.flatten(0, 1)).unflatten(0, (B, T)) for p, f in zip(self.proj, frames)]  # [B,T,d,H,W]
        x = levels[-1].flatten(3).transpose(2, 3) + self.pos_coarse                # [B, T, L, d]
        x_g, y_g = self.correlation(x, y, vmask, qmask)                            # Eq. 1-3
        f = x_g.mean(2)                                                            # [B, T, d]
        v = f + torch.tanh(self.alpha) * self.temporal(f, vmask)                   # Eq. 4
        x_hat = x_g + torch.tanh(self.beta) * v[:, :, None]                        # Eq. 5
        # finest-level cells for the boxes, with the fused coarse tokens upsampled onto them
        H0 = levels[0].shape[-1]
        Hc = levels[-1].shape[-1]
        up = x_hat.transpose(2, 3).reshape(B * T, d, Hc, Hc)
        up = F.interpolate(up, size=(H0, H0), mode="nearest").reshape(B, T, d, H0 * H0).transpose(2, 3)
        cells = levels[0].flatten(3).transpose(2, 3) + self.pos_fine + up          # [B, T, L0, d]
        # decoder: N tubes x T frame queries
        # time-aligned queries start from their own frame, so a frame query knows what it sees
        pe = sinusoidal_positions(T, d, v.device, v.dtype)
        q = self.queries.weight[None, :, None, :] + (pe + v)[:, None]
        q = q.expand(B, N, T, d).reshape(B * N, T, d)
        memory = torch.cat([v + pe, y_g], 1).repeat_interleave(N, 0)
        mem_pad = ~torch.cat([vmask, qmask], 1).repeat_interleave(N, 0)
        q_pad = ~vmask.repeat_interleave(N, 0)
        for layer in self.decoder:
            q, w = layer(q, memory, q_pad, mem_pad)
        h = q.reshape(B, N, T, d)
        attn = w[..., :T].reshape(B, N, T, T)
        # box: soft-argmax of an attention over the frame's cells + an MLP for offset and size
        logits = torch.einsum("bntd,btld->bntl", self.box_query(h), self.box_key(cells)) / d ** 0.5
        sp = logits.softmax(-1)
        pooled = torch.einsum("bntl,btld->bntd", sp, cells)
        centre = sp @ self.cell_xy
        raw = self.box_head(torch.cat([h, pooled], -1))
        box = torch.cat([centre + 0.1 * torch.tanh(raw[..., :2]), torch.sigmoid(raw[..., 2:])], -1)
        boxes = box_cxcywh_to_xyxy(box) * self.image_size
        se = self.se_head(h)
        conf = self.conf_head(masked_mean(h, vmask[:, None, :], 2)).squeeze(-1)
        sentence = self.sent_proj(masked_mean(y_g, qmask, 1))
        return {"boxes": boxes, "frame": self.frame_head(h).squeeze(-1), "start": se[..., 0], "end": se[..., 1],
                "conf": conf, "attn": attn, "levels": levels, "sentence": sentence}

    # -- losses ---------------------------------------------------------------------------------
    def _targets(self, batch, dtype):
        vmask, gt = batch["video_mask"], batch["moment"]
        T = vmask.shape[1]
        t = torch.arange(T, device=vmask.device, dtype=dtype)
        s_idx, e_idx = gt[:, 0].long(), (gt[:, 1].long() - 1).clamp_min(0)
        gauss = lambda c: masked_softmax(-0.5 * (t[None] - c[:, None].to(dtype)) ** 2, vmask)  # sigma 1 frame
        return s_idx, e_idx, gauss(s_idx), gauss(e_idx)

    def _log_se(self, out, vmask):
        m = vmask[:, None, :]
        ls = torch.log_softmax(out["start"].masked_fill(~m, -1e4), -1)
        le = torch.log_softmax(out["end"].masked_fill(~m, -1e4), -1)
        return ls, le

    def _anchor(self, levels, boxes, frame_w, vmask):
        """Anchor embedding of tubes boxes [B, R, T, 4] averaged over frames with weights
        frame_w [B, T] (Eq. 10's anchors): [B, R, d]."""
        B, R, T, _ = boxes.shape
        pooled = vgops.roi_align_clips_multiscale(levels, boxes.detach().transpose(1, 2), self.roi_size,
                                                  [1.0 / s for s in self.strides], valid=vmask)
        emb = self.anchor_proj(pooled.flatten(3))                                # [B, T, R, d]
        w = frame_w / frame_w.sum(1, keepdim=True).clamp_min(1)
        return torch.einsum("btrd,bt->brd", emb, w)

    def match(self, out, batch):
        """Hungarian tube matching (Eq. 8): the query index matched to each video's tube, Long[B]."""
        with torch.no_grad():
            cost = self._cost(out, batch)                                        # [B, N, 1]
        return torch.stack([linear_assignment(c)[0] for c in cost.float().cpu()]).to(cost.device)

    def _cost(self, out, batch):
        wl1, wg = self.weights[:2]
        bm = batch["box_mask"][:, None, :].to(out["boxes"].dtype)                # [B, 1, T]
        n_gt = bm.sum(-1).clamp_min(1)
        gtb = batch["boxes"][:, None].to(out["boxes"].dtype) / self.image_size
        pb = out["boxes"] / self.image_size
        l1 = ((pb - gtb).abs().sum(-1) * bm).sum(-1) / n_gt
        giou = ((1 - box_iou_giou(pb, gtb)[1]) * bm).sum(-1) / n_gt
        ls, le = self._log_se(out, batch["video_mask"])
        s_idx, e_idx, _, _ = self._targets(batch, pb.dtype)
        nll = -(ls.gather(2, s_idx[:, None, None].expand(-1, ls.shape[1], 1)).squeeze(2)
                + le.gather(2, e_idx[:, None, None].expand(-1, le.shape[1], 1)).squeeze(2))
        return (wl1 * l1 + wg * giou + self.weights[2] * nll - torch.sigmoid(out["conf"]))[..., None]

    def loss(self, out, batch):
        """Matched-tube losses + confidence + contrastive (see the module docstring)."""
        wl1, wg, wse, wf, wa, wc, wconf = self.weights
        vmask, bm = batch["video_mask"], batch["box_mask"]
        B, N, T, _ = out["boxes"].shape
        idx = self.match(out, batch)
        ar = torch.arange(B, device=idx.device)
        dt = out["boxes"].dtype
        bmf = bm.to(dt)
        n_gt = bmf.sum(1).clamp_min(1)
        pb, gtb = out["boxes"][ar, idx] / self.image_size, batch["boxes"].to(dt) / self.image_size
        l1 = (((pb - gtb).abs().sum(-1) * bmf).sum(1) / n_gt).mean()
        iou, giou = box_iou_giou(pb, gtb)
        l_giou = (((1 - giou) * bmf).sum(1) / n_gt).mean()
        ls, le = self._log_se(out, vmask)
        _, _, ts, te = self._targets(batch, dt)
        kl = lambda t, lp: (t * (torch.log(t.clamp_min(1e-12)) - lp)).sum(-1).mean()
        l_se = kl(ts, ls[ar, idx]) + kl(te, le[ar, idx])
        vf = vmask.to(dt)
        l_frame = (F.binary_cross_entropy_with_logits(out["frame"][ar, idx], bmf, reduction="none") * vf).sum() / vf.sum()
        mass = (out["attn"][ar, idx] * bmf[:, None, :]).sum(-1)                   # [B, T] per query frame
        l_attn = (-torch.log(mass + 1e-6) * vf).sum() / vf.sum()
        target = torch.zeros(B, N, dtype=dt, device=idx.device)
        target[ar, idx] = 1
        l_conf = (F.binary_cross_entropy_with_logits(out["conf"], target, reduction="none")
                  * (target + 0.1 * (1 - target))).sum() / B
        l_con = self._contrastive(out, batch, idx, bmf)
        total = (wl1 * l1 + wg * l_giou + wse * l_se + wf * l_frame + wa * l_attn + wc * l_con + wconf * l_conf)
        parts = {"l1": l1, "giou": l_giou, "kl_se": l_se, "frame": l_frame, "attn": l_attn, "contrast": l_con,
                 "conf": l_conf}
        return total, {k: v.detach().item() for k, v in parts.items()}

    def _contrastive(self, out, batch, idx, bmf):
        """Mismatching-rectify contrastive loss (Eq. 10, reconstructed; see the module docstring)."""
        B, N, T, _ = out["boxes"].shape
        tubes = torch.cat([batch["boxes"].to(out["boxes"].dtype)[:, None], out["boxes"]], 1)  # [B, 1+N, T, 4]
        anchors = F.normalize(self._anchor(out["levels"], tubes, bmf, batch["video_mask"]), dim=-1)
        s = F.normalize(out["sentence"], dim=-1)
        with torch.no_grad():
            iou = box_iou_giou(out["boxes"], batch["boxes"][:, None].to(out["boxes"].dtype))[0]
            miou = (iou * bmf[:, None]).sum(-1) / bmf.sum(1, keepdim=True).clamp_min(1)
            mismatched = miou < 0.5
        pos = (s * anchors[:, 0]).sum(-1) / self.tau                                 # [B]
        own = torch.einsum("bd,bnd->bn", s, anchors[:, 1:]) / self.tau                # own mismatched tubes
        own = own.masked_fill(~mismatched, float("-inf"))
        cross = (s @ anchors[:, 0].T) / self.tau                                      # other videos' tubes
        cross = cross.masked_fill(torch.eye(B, dtype=torch.bool, device=s.device), float("-inf"))
        logits = torch.cat([pos[:, None], own, cross], 1)
        return -torch.log_softmax(logits, 1)[:, 0].mean()

    @torch.no_grad()
    def predict(self, out, batch, k=5):
        """"segments" [B, k, 2] (frame units, best first) of the most confident tube, "scores"
        [B, k], "boxes" [B, T, 4] of that tube."""
        vmask = batch["video_mask"]
        B, N, T, _ = out["boxes"].shape
        best = out["conf"].argmax(1)
        ar = torch.arange(B, device=best.device)
        ls, le = self._log_se(out, vmask)
        joint = ls[ar, best][:, :, None] + le[ar, best][:, None, :]                   # [B, T, T]
        ok = torch.ones(T, T, dtype=torch.bool, device=best.device).triu()[None] & vmask[:, :, None] & vmask[:, None]
        joint = joint.masked_fill(~ok, float("-inf")).flatten(1)
        sc, flat = joint.topk(min(k, T * T), 1)
        seg = torch.stack([flat // T, flat % T + 1], -1).to(out["boxes"].dtype)
        return {"segments": seg, "scores": sc, "boxes": out["boxes"][ar, best]}
