"""Small layers and helpers shared by the models (pure PyTorch, no vgops ops)."""
import math
import random

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def seed_everything(seed):
    """Seed Python, NumPy and torch (CPU and CUDA) RNGs."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def to_device(batch, device):
    """Move every tensor of a (possibly nested) batch to `device`."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def masked_mean(x, mask, dim):
    """Mean of x over `dim` where mask (broadcastable to x, True = valid); 0 where none is valid."""
    m = mask.to(x.dtype)
    while m.dim() < x.dim():
        m = m.unsqueeze(-1)
    return (x * m).sum(dim) / m.sum(dim).clamp_min(1.0)


def masked_softmax(logits, mask, dim=-1):
    """Softmax over `dim` restricted to mask (True = valid); all-zero where nothing is valid
    (instead of NaN)."""
    logits = logits.masked_fill(~mask, float("-inf"))
    out = torch.softmax(logits, dim)
    return torch.nan_to_num(out, nan=0.0)


def sinusoidal_positions(length, dim, device=None, dtype=torch.float32):
    """Transformer sinusoidal position encodings [length, dim] (Vaswani et al. 2017)."""
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    i = torch.arange(0, dim, 2, device=device, dtype=torch.float32)
    freq = torch.exp(-math.log(10000.0) * i / dim)
    pe = torch.zeros(length, dim, device=device)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)[:, : dim // 2]
    return pe.to(dtype)


def mlp(dims, dropout=0.0, last_act=False):
    """Linear-ReLU stack: dims = (in, hidden..., out)."""
    layers = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2 or last_act:
            layers += [nn.ReLU(), nn.Dropout(dropout)] if dropout else [nn.ReLU()]
    return nn.Sequential(*layers)


class TransformerEncoder(nn.Module):
    """Pre-norm Transformer encoder with sinusoidal positions and a key padding mask
    (True = valid, the batch convention here, unlike nn.Transformer's True = padding)."""

    def __init__(self, dim, layers=1, heads=4, ff_mult=2, dropout=0.1):
        super().__init__()
        layer = nn.TransformerEncoderLayer(dim, heads, ff_mult * dim, dropout, batch_first=True,
                                           norm_first=True)
        # enable_nested_tensor=False: the fast path changes numerics between train and eval.
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False) if layers else None

    def forward(self, x, mask):
        x = x + sinusoidal_positions(x.shape[1], x.shape[2], x.device, x.dtype)
        return x if self.encoder is None else self.encoder(x, src_key_padding_mask=~mask)


def focal_loss(logits, target, mask=None, alpha=0.25, gamma=2.0):
    """Sigmoid focal loss (Lin et al. 2017) summed over valid entries and divided by the number
    of positives (at least 1), as FCOS/DRN normalise it."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = p * target + (1 - p) * (1 - target)
    a_t = alpha * target + (1 - alpha) * (1 - target)
    loss = a_t * (1 - p_t) ** gamma * ce
    if mask is not None:
        loss = loss * mask.to(loss.dtype)
        target = target * mask.to(target.dtype)
    return loss.sum() / target.sum().clamp_min(1.0)


def pad_topk(segments, scores, keep, valid, k):
    """Gather the first k kept entries per row ([B, N, 2], [B, N], keep Long[B, K'], valid
    Bool[B, K']) into [B, k, 2], [B, k]; rows with fewer than k kept repeat their last kept
    segment with score -inf (a repeat never changes R@n), so every row has exactly k."""
    B, Kp = keep.shape
    if Kp < k:
        keep = torch.cat([keep, keep.new_full((B, k - Kp), -1)], 1)
        valid = torch.cat([valid, valid.new_zeros((B, k - Kp))], 1)
    keep, valid = keep[:, :k], valid[:, :k]
    n_valid = valid.sum(1).clamp_min(1)
    last = keep.gather(1, (n_valid - 1)[:, None]).clamp_min(0)
    idx = torch.where(valid, keep, last)
    seg = segments.gather(1, idx[..., None].expand(B, k, 2))
    sc = scores.gather(1, idx).masked_fill(~valid, float("-inf"))
    return seg, sc


class FromDataset:
    """``Model.from_dataset(meta, **overrides)``: the constructor arguments named in META_KEYS,
    read from the dataset's ``meta``, then the overrides (paper defaults for the rest)."""
    META_KEYS = ("video_dim", "vocab_size")

    @classmethod
    def from_dataset(cls, meta, **overrides):
        return cls(**{**{k: meta[k] for k in cls.META_KEYS}, **overrides})
