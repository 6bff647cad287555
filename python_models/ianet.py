"""IA-Net: "Progressively Guide to Attend: An Iterative Alignment Framework for Temporal Sentence
Grounding" (Liu et al., EMNLP 2021), thin version on the vgops ops.

* Encoders: word embeddings -> BiGRU -> Q [B, N, D]; clip features -> linear -> BiGRU -> V [B, T, D].
* L iterative alignment blocks. Each block:
  - inter-modal: padded multi-head co-attention between clips and words (Eq. 1-6,
    ``vgops.nn.PaddedCoAttention``, K = 3 learnable pads, H = 4 heads, heads averaged), then a
    calibration gate per modality (Eq. 7-12, ``vgops.nn.CalibrationGate``):
    ``V <- CG_v(V, M_V)``, ``Q <- CG_q(Q, M_Q)``;
  - intra-modal: the same padded co-attention of each modality with itself, then a calibration
    gate: ``V <- CG'_v(V, M_VV)``, ``Q <- CG'_q(Q, M_QQ)``.
* Multi-scale anchor localizer: the fused clip feature ``[V; V ⊙ q̄; q̄]`` (q̄ the mean word) through
  a temporal convolution; at every clip t one anchor per width w_k centred at t + 1/2; per anchor
  an alignment logit and two boundary offsets (in units of the anchor's width).
* Losses: alignment loss (Eq. 14), binary cross-entropy against the anchor's IoU with the ground
  truth scaled 2D-TAN style (``clamp((IoU - t_min) / (t_max - t_min), 0, 1)``); boundary loss
  (Eq. 15), smooth-L1 of the offsets of anchors with IoU >= 0.5 (at least the best anchor);
  total (Eq. 16) ``L_align + lambda * L_boundary``.
* Inference: anchors + offsets ranked by the alignment score, ``vgops.temporal_nms_padded``
  (threshold 0.5), top-k.

Paper defaults kept: K = 3 pads, H = 4 heads, BiGRU encoders. Assumed (not certain from the
paper): L = 3 blocks, D = 512, anchor widths (2, 4, 6, 8, 12, 16, 24, 32) clips, t_min = 0.3,
t_max = 0.7, lambda = 1.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

import vgops

from .common import FromDataset, masked_mean, pad_topk


class BiGRU(nn.Module):
    """BiGRU over the valid steps (packed), output [B, L, D]."""

    def __init__(self, in_dim, dim):
        super().__init__()
        self.gru = nn.GRU(in_dim, dim // 2, batch_first=True, bidirectional=True)

    def forward(self, x, mask):
        lengths = mask.sum(1).clamp_min(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return out


class AlignmentBlock(nn.Module):
    """One iterative alignment block: inter-modal then intra-modal co-attention + calibration."""

    def __init__(self, dim, heads, pads):
        super().__init__()
        self.inter = vgops.nn.PaddedCoAttention(dim, heads, pads)
        self.intra_v = vgops.nn.PaddedCoAttention(dim, heads, pads)
        self.intra_q = vgops.nn.PaddedCoAttention(dim, heads, pads)
        self.gates = nn.ModuleList(vgops.nn.CalibrationGate(dim) for _ in range(4))

    def forward(self, v, q, vmask, qmask):
        m_v, m_q = self.inter(v, q, vmask, qmask)                                # Eq. 1-6
        v, q = self.gates[0](v, m_v), self.gates[1](q, m_q)                      # Eq. 7-12
        m_vv, _ = self.intra_v(v, v, vmask, vmask)
        m_qq, _ = self.intra_q(q, q, qmask, qmask)
        return self.gates[2](v, m_vv), self.gates[3](q, m_qq)


class IANet(FromDataset, nn.Module):
    """IA-Net on clip features.

    Args:
        video_dim: Dv of the clip features. vocab_size: words (0 = padding).
        hidden: D (512). word_dim: word embedding size (300). blocks: L (3). heads: H (4).
        pads: K (3). anchor_widths: anchor lengths in clips. iou_range: (t_min, t_max) of the
        alignment target. boundary_weight: lambda of Eq. 16. nms_threshold: 0.5.
    """

    def __init__(self, video_dim, vocab_size, hidden=512, word_dim=300, blocks=3, heads=4, pads=3,
                 anchor_widths=(2, 4, 6, 8, 12, 16, 24, 32), iou_range=(0.3, 0.7), boundary_weight=1.0,
                 nms_threshold=0.5, dropout=0.1):
        super().__init__()
        self.anchor_widths, self.iou_range = tuple(float(w) for w in anchor_widths), tuple(iou_range)
        self.boundary_weight, self.nms_threshold = boundary_weight, nms_threshold
        self.embed = nn.Embedding(vocab_size, word_dim, padding_idx=0)
        self.query_rnn = BiGRU(word_dim, hidden)
        self.video_in = nn.Sequential(nn.Linear(video_dim, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.video_rnn = BiGRU(hidden, hidden)
        self.blocks = nn.ModuleList(AlignmentBlock(hidden, heads, pads) for _ in range(blocks))
        self.conv = nn.Sequential(nn.Conv1d(3 * hidden, hidden, 3, padding=1), nn.ReLU(),
                                  nn.Conv1d(hidden, hidden, 3, padding=1), nn.ReLU())
        self.head = nn.Conv1d(hidden, 3 * len(anchor_widths), 1)

    def forward(self, batch):
        """"align" [B, T*A] logits, "anchors" [B, T*A, 2], "offsets" [B, T*A, 2], "valid" Bool[B, T*A]."""
        vmask, qmask = batch["video_mask"], batch["query_mask"]
        q = self.query_rnn(self.embed(batch["query"]), qmask)
        v = self.video_rnn(self.video_in(batch["video"]), vmask)
        for block in self.blocks:
            v, q = block(v, q, vmask, qmask)
        qbar = masked_mean(q, qmask, 1)[:, None, :].expand_as(v)
        f = torch.cat([v, v * qbar, qbar], -1) * vmask[..., None]
        out = self.head(self.conv(f.transpose(1, 2))).transpose(1, 2)           # [B, T, 3A]
        B, T = vmask.shape
        A = len(self.anchor_widths)
        out = out.reshape(B, T, A, 3)
        c = torch.arange(T, device=f.device, dtype=f.dtype)[:, None] + 0.5
        w = torch.tensor(self.anchor_widths, device=f.device, dtype=f.dtype)[None, :]
        anchors = torch.stack([c - w / 2, c + w / 2], -1).expand(B, T, A, 2)
        valid = vmask[:, :, None].expand(B, T, A)
        return {"align": out[..., 0].reshape(B, -1), "offsets": out[..., 1:].reshape(B, -1, 2),
                "anchors": anchors.reshape(B, -1, 2), "valid": valid.reshape(B, -1)}

    def _segments(self, out):
        a = out["anchors"]
        w = (a[..., 1] - a[..., 0])[..., None]
        return a + out["offsets"] * w

    def loss(self, out, batch):
        """Alignment loss (Eq. 14) + lambda * boundary loss (Eq. 15) = Eq. 16."""
        a, valid = out["anchors"], out["valid"]
        gt = batch["moment"].to(a.dtype)
        iou = vgops.temporal_iou(a, gt[:, None, :].expand_as(a), aligned=True)    # [B, M]
        lo, hi = self.iou_range
        target = ((iou - lo) / (hi - lo)).clamp(0, 1)
        vf = valid.to(a.dtype)
        l_align = (F.binary_cross_entropy_with_logits(out["align"], target, reduction="none") * vf).sum() / vf.sum()
        best = iou.masked_fill(~valid, -1).argmax(1)
        pos = ((iou >= 0.5) & valid)
        pos[torch.arange(pos.shape[0]), best] = True
        w = (a[..., 1] - a[..., 0])[..., None]
        reg_target = (gt[:, None, :] - a) / w
        l_bound = (F.smooth_l1_loss(out["offsets"], reg_target, reduction="none").sum(-1) * pos).sum() / pos.sum()
        total = l_align + self.boundary_weight * l_bound
        return total, {"align": l_align.detach().item(), "boundary": l_bound.detach().item()}

    @torch.no_grad()
    def predict(self, out, batch, k=5):
        dur = batch["video_mask"].sum(1).to(out["anchors"].dtype)
        seg = self._segments(out)
        seg = torch.minimum(seg.clamp_min(0), dur[:, None, None])
        seg = torch.stack([seg[..., 0], torch.maximum(seg[..., 0], seg[..., 1])], -1)
        scores = torch.sigmoid(out["align"])
        keep, kept = vgops.temporal_nms_padded(seg.float(), scores.float(), self.nms_threshold, k, out["valid"])
        s, sc = pad_topk(seg, scores, keep, kept, k)
        return {"segments": s, "scores": sc}
