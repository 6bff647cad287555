"""SyntheticSTVG: a spatio-temporal grounding task with a planted, learnable signal (FSM's
default data), built on :class:`SyntheticGrounding` (same queries, moments and concepts).

Every frame has a feature pyramid (one map per level, noise). Inside the ground-truth moment an
"object" box moves linearly across the image; the map cells it covers carry the named concepts'
channel direction (weighted by how much of the cell the box covers). A second box with an
unnamed concept moves through another stretch of the video (the distractor), so finding "the
thing that moves" is not enough: the model has to read the query.
"""
import torch
from torch.utils.data import Dataset

from .synthetic import SyntheticGrounding


def _coverage(box, size, stride):
    """Fraction of each cell of a [size, size] map (cells stride x stride pixels) covered by box."""
    edges = torch.arange(size + 1, dtype=torch.float32) * stride
    lo, hi = edges[:-1], edges[1:]
    x = (torch.minimum(hi, box[2]) - torch.maximum(lo, box[0])).clamp_min(0) / stride
    y = (torch.minimum(hi, box[3]) - torch.maximum(lo, box[1])).clamp_min(0) / stride
    return y[:, None] * x[None, :]


class SyntheticSTVG(Dataset):
    """Samples of :class:`SyntheticGrounding` plus "frames" (list of Float[T, C, H_l, W_l], one
    per level, H_l = image_size / stride_l), "boxes" Float[T, 4] (x1, y1, x2, y2 pixels; zero
    outside the moment) and "box_mask" Bool[T] (True inside the moment).

    Args:
        num_videos, num_clips, vocab_size, num_concepts, query_len, seed, task_seed: as in
            SyntheticGrounding (one clip = one frame here).
        image_size: side of the square image in pixels.
        strides: pixel stride of each pyramid level (finest first).
        channels: C of every level.
        box_size: (min, max) side of the object box in pixels.
        signal, noise: norm of a concept's channel direction and std of the map noise.
    """

    def __init__(self, num_videos, num_clips=16, vocab_size=30, num_concepts=6, query_len=(3, 5), seed=0,
                 image_size=64, strides=(8, 16), channels=16, box_size=(16, 28), signal=3.0, noise=1.0,
                 task_seed=0):
        self.base = SyntheticGrounding(num_videos, num_clips=num_clips, video_dim=channels, vocab_size=vocab_size,
                                       num_concepts=num_concepts, query_len=query_len, seed=seed,
                                       task_seed=task_seed)
        if any(image_size % s for s in strides):
            raise ValueError(f"image_size must be divisible by every stride, got {image_size} and {tuple(strides)}")
        T, C, nc = num_clips, channels, num_concepts
        w = torch.Generator().manual_seed(task_seed + 1)
        self.directions = torch.nn.functional.normalize(torch.randn(nc, C, generator=w), dim=1) * signal
        g = torch.Generator().manual_seed(seed + 7919)
        self.frames = [torch.randn(num_videos, T, C, image_size // s, image_size // s, generator=g) * noise
                       for s in strides]
        self.boxes = torch.zeros(num_videos, T, 4)
        self.box_mask = torch.zeros(num_videos, T, dtype=torch.bool)
        for v in range(num_videos):
            s, e = (int(x) for x in self.base.moments[v])
            L = int(self.base.lengths[v])
            q = self.base.queries[v]
            named = q[(q >= 2) & (q < 2 + nc)] - 2
            track = self._track(e - s, image_size, box_size, g)
            self.boxes[v, s:e] = track
            self.box_mask[v, s:e] = True
            self._plant(v, s, track, self.directions[named].sum(0), strides)
            # distractor: an unnamed concept's box in a free stretch of the same length
            others = [c for c in range(nc) if c not in set(named.tolist())]
            room = [(0, s - (e - s))] if s - (e - s) >= 0 else []
            room += [(e, L - (e - s))] if L - (e - s) >= e else []
            if room:
                lo, hi = room[int(torch.randint(0, len(room), (1,), generator=g))]
                d = int(torch.randint(lo, hi + 1, (1,), generator=g))
                c = others[int(torch.randint(0, len(others), (1,), generator=g))]
                self._plant(v, d, self._track(e - s, image_size, box_size, g), self.directions[c], strides)
            for f in self.frames:
                f[v, L:] = 0
        self.meta = dict(self.base.meta, name="synthetic_stvg", num_frames=T, image_size=image_size,
                         strides=tuple(strides), frame_channels=C, num_levels=len(strides))

    @staticmethod
    def _track(n, image_size, box_size, g):
        """n boxes of one object moving linearly (start and end positions drawn in the image)."""
        side = box_size[0] + torch.rand(2, generator=g) * (box_size[1] - box_size[0])      # w, h
        p0 = torch.rand(2, generator=g) * (image_size - side)
        p1 = torch.rand(2, generator=g) * (image_size - side)
        a = torch.linspace(0, 1, n)[:, None] if n > 1 else torch.zeros(1, 1)
        xy = p0 + a * (p1 - p0)
        return torch.cat([xy, xy + side], 1)

    def _plant(self, v, start, track, direction, strides):
        for f, s in zip(self.frames, strides):
            for i, box in enumerate(track):
                f[v, start + i] += direction[:, None, None] * _coverage(box, f.shape[-1], s)

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        out = self.base[i]
        del out["video"]  # FSM reads the frames
        out["frames"] = [f[i] for f in self.frames]
        out["boxes"] = self.boxes[i]
        out["box_mask"] = self.box_mask[i]
        return out
