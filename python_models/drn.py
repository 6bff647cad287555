"""DRN: Dense Regression Network for Video Grounding (Zeng et al., CVPR 2020), thin version.

Every location of a temporal feature pyramid regresses its distances to the start and end of
the moment (dense regression), so every clip inside the ground truth is a training sample
rather than the few proposals that match it.

Architecture (equation numbers refer to the paper):

* Query encoder: word embeddings -> BiLSTM -> word features h_i (Eq. 1-2).
* Video: linear projection + a location embedding (the location of each clip, normalised by the
  video's length: ``[t / L, (t + 1) / L]``) before the first temporal convolution.
* 3-level temporal feature pyramid (strides 1, 2, 4), bottom-up 1-D convolutions; at every
  level a textual attention over the words conditioned on each location (Eq. 3),
  ``a_{t,i} = softmax_i((W_l f_t) . h_i / sqrt(d))`` and the fusion
  ``m_t = ReLU(Conv(f_t * sum_i a_{t,i} h_i))``; then a top-down path (FPN) adds the coarser levels.
* Heads shared by the levels (FCOS-style towers):
  - location regression: distances (d_s, d_e) >= 0 from a location's centre c_t to the moment
    boundaries, trained with the IoU loss ``1 - IoU((c - d_s, c + d_e), gt)`` on locations inside
    the ground truth, IoU via ``vgops.temporal_iou(aligned=True)`` (Eq. 4-5);
  - semantic matching: is the location inside the moment? sigmoid focal loss, alpha = 0.25,
    gamma = 2 (Eq. 6);
  - IoU regression: the IoU of the location's (detached) regressed box with the ground truth,
    smooth-L1 on every valid location (Eq. 7).
* Inference: score = matching probability x predicted IoU; ``vgops.temporal_nms_padded``
  (NMS threshold 0.5) per query; top-k.

Paper defaults kept as our defaults: 3 pyramid levels, BiLSTM query encoder, focal loss
alpha = 0.25 and gamma = 2, the IoU loss, ranking by matching x IoU score. Ours, not from the
paper: hidden 512 and word dim 300 (GloVe size) default but are free, one training stage (the
paper trains the IoU head in a second stage; here its input is detached so it cannot disturb
the other heads), every level regresses every location inside the moment (no per-level
regression ranges).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

import vgops

from .common import FromDataset, focal_loss, masked_softmax, pad_topk


def _check_batch(batch, op):
    for key in ("video", "video_mask", "query", "query_mask"):
        if key not in batch:
            raise KeyError(f"{op}: batch must have key {key!r}, got keys {sorted(batch)}")
    if not bool(batch["query_mask"].any(1).all()):
        raise ValueError(f"{op}: every query needs at least one valid token (query_mask row all False)")


class QueryEncoder(nn.Module):
    """Word embeddings + BiLSTM over the valid tokens (packed: padding never enters the state)."""

    def __init__(self, vocab_size, word_dim, hidden):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, word_dim, padding_idx=0)
        self.lstm = nn.LSTM(word_dim, hidden // 2, batch_first=True, bidirectional=True)

    def forward(self, query, mask):
        lengths = mask.sum(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(self.embed(query), lengths, batch_first=True,
                                                   enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=query.shape[1])
        return out  # [B, N, hidden]


class TextualAttentionFusion(nn.Module):
    """Per-level textual attention (Eq. 3) and element-wise fusion with the location's feature."""

    def __init__(self, dim):
        super().__init__()
        self.query = nn.Linear(dim, dim)
        self.fuse = nn.Conv1d(dim, dim, 3, padding=1)

    def forward(self, f, words, word_mask):  # f [B, T, d], words [B, N, d]
        logits = self.query(f) @ words.transpose(1, 2) / f.shape[-1] ** 0.5   # [B, T, N]
        att = masked_softmax(logits, word_mask[:, None, :])
        ctx = att @ words                                                     # [B, T, d]
        return F.relu(self.fuse((f * ctx).transpose(1, 2))).transpose(1, 2)


def _tower(dim, out):
    return nn.Sequential(nn.Conv1d(dim, dim, 3, padding=1), nn.ReLU(), nn.Conv1d(dim, out, 3, padding=1))


class DRN(FromDataset, nn.Module):
    """DRN on clip features.

    Args:
        video_dim: Dv of the clip features.
        vocab_size: words (0 = padding).
        hidden: d, the width of every layer (paper-scale default 512).
        word_dim: word embedding size (300 = GloVe's).
        levels: pyramid levels (3 in the paper).
        focal_alpha, focal_gamma: focal loss parameters (0.25, 2).
        nms_threshold: IoU threshold of the NMS at inference.
        loss_weights: (matching, location, IoU) weights of the three losses.
    """

    def __init__(self, video_dim, vocab_size, hidden=512, word_dim=300, levels=3, focal_alpha=0.25,
                 focal_gamma=2.0, nms_threshold=0.5, loss_weights=(1.0, 1.0, 1.0), dropout=0.1):
        super().__init__()
        if levels < 1:
            raise ValueError(f"DRN: levels must be >= 1, got {levels}")
        self.levels, self.nms_threshold = levels, nms_threshold
        self.focal_alpha, self.focal_gamma = focal_alpha, focal_gamma
        self.loss_weights = tuple(loss_weights)
        self.query_encoder = QueryEncoder(vocab_size, word_dim, hidden)
        self.video_proj = nn.Sequential(nn.Linear(video_dim + 2, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.down = nn.ModuleList(
            nn.Conv1d(hidden, hidden, 3, stride=1 if l == 0 else 2, padding=1) for l in range(levels))
        self.fusion = nn.ModuleList(TextualAttentionFusion(hidden) for _ in range(levels))
        self.smooth = nn.ModuleList(nn.Conv1d(hidden, hidden, 3, padding=1) for _ in range(levels))
        self.match_head = _tower(hidden, 1)
        self.loc_head = _tower(hidden, 2)
        self.iou_head = _tower(hidden, 1)

    def forward(self, batch):
        """Returns per-location tensors over all levels concatenated (N = sum_l ceil(T / 2^l)):
        "match" [B, N] logits, "iou" [B, N] logits, "boxes" [B, N, 2] clip units,
        "centers" [B, N], "valid" Bool[B, N]."""
        _check_batch(batch, "DRN")
        video, vmask = batch["video"], batch["video_mask"]
        B, T, _ = video.shape
        length = vmask.sum(1, keepdim=True).clamp_min(1).to(video.dtype)       # [B, 1]
        t = torch.arange(T, device=video.device, dtype=video.dtype)[None, :]
        loc = torch.stack([t / length, (t + 1) / length], -1) * vmask[..., None]  # location embedding
        words = self.query_encoder(batch["query"], batch["query_mask"])
        x = self.video_proj(torch.cat([video, loc], -1)) * vmask[..., None]
        feats, masks, strides = [], [], []
        x = x.transpose(1, 2)
        for l in range(self.levels):
            x = F.relu(self.down[l](x))
            stride = 2 ** l
            m = (torch.arange(x.shape[-1], device=x.device)[None, :] * stride) < length
            x = x * m[:, None, :]
            fused = self.fusion[l](x.transpose(1, 2), words, batch["query_mask"])  # Eq. 3
            feats.append(fused.transpose(1, 2))
            masks.append(m)
            strides.append(stride)
        # top-down path: each level also sees the coarser context
        for l in range(self.levels - 2, -1, -1):
            up = F.interpolate(feats[l + 1], size=feats[l].shape[-1], mode="nearest")
            feats[l] = feats[l] + up
        out = {k: [] for k in ("match", "iou", "boxes", "centers", "valid")}
        for l, (f, m, s) in enumerate(zip(feats, masks, strides)):
            f = F.relu(self.smooth[l](f))
            c = (torch.arange(f.shape[-1], device=f.device, dtype=f.dtype) + 0.5) * s
            dist = F.softplus(self.loc_head(f)).transpose(1, 2) * s             # [B, T_l, 2]
            c = c[None, :].expand(B, -1)
            out["boxes"].append(torch.stack([c - dist[..., 0], c + dist[..., 1]], -1))
            out["match"].append(self.match_head(f).squeeze(1))
            out["iou"].append(self.iou_head(f.detach()).squeeze(1))  # detached: the 2nd-stage head
            out["centers"].append(c)
            out["valid"].append(m)
        return {k: torch.cat(v, 1) for k, v in out.items()}

    def loss(self, out, batch):
        """Focal matching loss + IoU location loss + IoU regression loss (Eq. 4-7)."""
        gt = batch["moment"].to(out["boxes"].dtype)                            # [B, 2]
        c, valid = out["centers"], out["valid"]
        inside = (c >= gt[:, :1]) & (c <= gt[:, 1:]) & valid                  # positives
        l_match = focal_loss(out["match"], inside.to(c.dtype), valid, self.focal_alpha, self.focal_gamma)
        gt_all = gt[:, None, :].expand_as(out["boxes"])
        iou = vgops.temporal_iou(out["boxes"], gt_all, aligned=True)          # [B, N]
        n_pos = inside.sum().clamp_min(1)
        l_loc = ((1 - iou) * inside).sum() / n_pos
        target = iou.detach()
        l_iou = (F.smooth_l1_loss(torch.sigmoid(out["iou"]), target, reduction="none", beta=0.1)
                 * valid).sum() / valid.sum().clamp_min(1)
        wm, wl, wi = self.loss_weights
        total = wm * l_match + wl * l_loc + wi * l_iou
        return total, {"match": l_match.detach().item(), "loc": l_loc.detach().item(), "iou": l_iou.detach().item()}

    @torch.no_grad()
    def predict(self, out, batch, k=5):
        """Top-k moments by matching x IoU score after NMS: "segments" [B, k, 2], "scores" [B, k]."""
        dur = batch["video_mask"].sum(1).to(out["boxes"].dtype)
        boxes = torch.minimum(out["boxes"].clamp_min(0), dur[:, None, None])
        boxes = torch.stack([boxes[..., 0], torch.maximum(boxes[..., 0], boxes[..., 1])], -1)
        scores = torch.sigmoid(out["match"]) * torch.sigmoid(out["iou"])
        keep, kept = vgops.temporal_nms_padded(boxes.float(), scores.float(), self.nms_threshold,
                                               k, out["valid"])
        seg, sc = pad_topk(boxes, scores, keep, kept, k)
        return {"segments": seg, "scores": sc}
