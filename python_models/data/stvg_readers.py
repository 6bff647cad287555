"""Spatio-temporal grounding annotations (HC-STVG and VidSTG style) and a Dataset over
pre-extracted per-frame feature pyramids, giving FSM's batch keys.

Records (what both readers return, one per sentence): dict with video (str), sentence (str),
num_frames (int), width, height (pixels), start, end (frame indices, [start, end) half-open),
boxes (dict frame index -> (x1, y1, x2, y2) in pixels, for the frames of the tube).
"""
import json
import os
import re

import numpy as np
import torch
from torch.utils.data import Dataset

from .synthetic import PAD, UNK


def read_hcstvg(path):
    """HC-STVG: {video: {"English": sentence, "st_frame", "ed_frame" (inclusive), "bbox": [[x, y,
    w, h] per frame from st_frame], "img_hw": [h, w], "img_num": frames}}."""
    with open(path) as f:
        ann = json.load(f)
    out = []
    for video, a in ann.items():
        st, ed = int(a["st_frame"]), int(a["ed_frame"])
        h, w = a["img_hw"]
        boxes = {st + i: (x, y, x + bw, y + bh) for i, (x, y, bw, bh) in enumerate(a["bbox"])}
        out.append(dict(video=video, sentence=a["English"], num_frames=int(a["img_num"]), width=w, height=h,
                        start=st, end=ed + 1, boxes=boxes))
    return out


def read_vidstg(path):
    """VidSTG: a list of {"vid", "frame_count", "width", "height", "temporal_gt": {"begin_fid",
    "end_fid" (inclusive)}, "captions" (or "questions"): [{"description", "target_id"}],
    "trajectories": [[{"tid", "bbox": {"xmin", "ymin", "xmax", "ymax"}}, ...] per frame]}."""
    with open(path) as f:
        ann = json.load(f)
    out = []
    for a in ann:
        st, ed = int(a["temporal_gt"]["begin_fid"]), int(a["temporal_gt"]["end_fid"])
        for cap in a.get("captions", []) + a.get("questions", []):
            boxes = {}
            for fid in range(st, ed + 1):
                for obj in a["trajectories"][fid] if fid < len(a["trajectories"]) else []:
                    if obj["tid"] == cap["target_id"]:
                        b = obj["bbox"]
                        boxes[fid] = (b["xmin"], b["ymin"], b["xmax"], b["ymax"])
            out.append(dict(video=a["vid"], sentence=cap["description"], num_frames=int(a["frame_count"]),
                            width=a["width"], height=a["height"], start=st, end=ed + 1, boxes=boxes))
    return out


def tokenize(sentence):
    return re.findall(r"[a-z0-9]+", sentence.lower())


def build_vocab(records, min_count=1):
    """["<pad>", "<unk>", words by decreasing count]."""
    counts = {}
    for r in records:
        for w in tokenize(r["sentence"]):
            counts[w] = counts.get(w, 0) + 1
    words = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    return ["<pad>", "<unk>"] + words


def load_pyramid(features_dir, video):
    """The levels of a video: <dir>/<video>.npz with arrays level0, level1, ... each [F, C, H, W]
    (or <dir>/<video>.h5 with datasets level0, ... when h5py is installed)."""
    npz = os.path.join(features_dir, video + ".npz")
    if os.path.exists(npz):
        with np.load(npz) as z:
            return [z[f"level{i}"] for i in range(len(z.files))]
    import h5py
    with h5py.File(os.path.join(features_dir, video + ".h5"), "r") as h:
        return [h[f"level{i}"][()] for i in range(len(h.keys()))]


class STVGDataset(Dataset):
    """Records + per-video feature pyramids -> samples with FSM's keys: frames (list of
    Float[T, C, H_l, W_l]), video_mask, query, query_mask, moment (sampled-frame units), duration,
    boxes Float[T, 4] and box_mask Bool[T]. T frames are sampled uniformly over the video; boxes
    are rescaled to a square image of ``image_size`` pixels (the strides' reference).
    """

    def __init__(self, records, features_dir, num_frames=32, vocab=None, image_size=None, strides=None):
        self.records, self.dir, self.T = records, features_dir, num_frames
        self.vocab = vocab or build_vocab(records)
        self.word_id = {w: i for i, w in enumerate(self.vocab)}
        levels = load_pyramid(features_dir, records[0]["video"])
        self.image_size = image_size or 32 * levels[0].shape[-1]
        self.strides = tuple(strides or (self.image_size // lv.shape[-1] for lv in levels))
        self.meta = dict(name="stvg", vocab=self.vocab, vocab_size=len(self.vocab), num_frames=num_frames,
                         image_size=self.image_size, strides=self.strides, frame_channels=levels[0].shape[1],
                         num_levels=len(levels))

    def __len__(self):
        return len(self.records)

    def __getitem__(self, i):
        r = self.records[i]
        levels = load_pyramid(self.dir, r["video"])
        F_ = levels[0].shape[0]
        n = min(self.T, F_)
        idx = np.linspace(0, F_ - 1, n).round().astype(int)
        src = np.linspace(0, r["num_frames"] - 1, n)                      # annotation frame of each sample
        frames = [torch.zeros(self.T, *lv.shape[1:]) for lv in levels]
        for f, lv in zip(frames, levels):
            f[:n] = torch.as_tensor(lv[idx], dtype=torch.float32)
        inside = (src >= r["start"]) & (src < r["end"])
        s = int(inside.argmax()) if inside.any() else int(np.abs(src - r["start"]).argmin())
        e = s + max(1, int(inside.sum()))
        sx, sy = self.image_size / r["width"], self.image_size / r["height"]
        boxes, box_mask = torch.zeros(self.T, 4), torch.zeros(self.T, dtype=torch.bool)
        for t in range(s, e):
            near = min(r["boxes"], key=lambda k: abs(k - src[t])) if r["boxes"] else None
            if near is not None:
                x1, y1, x2, y2 = r["boxes"][near]
                boxes[t] = torch.tensor([x1 * sx, y1 * sy, x2 * sx, y2 * sy])
                box_mask[t] = True
        words = [self.word_id.get(w, UNK) for w in tokenize(r["sentence"])] or [UNK]
        return {"frames": frames, "video_mask": torch.arange(self.T) < n, "query": torch.tensor(words),
                "query_mask": torch.ones(len(words), dtype=torch.bool), "moment": torch.tensor([float(s), float(e)]),
                "duration": torch.tensor(float(n)), "index": torch.tensor(i), "boxes": boxes, "box_mask": box_mask}


__all__ = ["read_hcstvg", "read_vidstg", "build_vocab", "tokenize", "load_pyramid", "STVGDataset", "PAD"]
