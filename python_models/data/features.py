"""Pre-extracted clip features stored one array per video (a folder of <vid>.npy, or one HDF5
file with a dataset per video when h5py is installed) and FeatureGrounding, which pairs them
with annotations as grounding samples of a fixed number of clips."""
import os

import numpy as np
import torch
from torch.utils.data import Dataset

from .readers import Vocabulary, seconds_to_clips


class FeatureStore:
    """features[vid] -> np.ndarray [L, D]; `root` is a folder of .npy files or an .h5/.hdf5 file."""

    def __init__(self, root):
        self.root = str(root)
        self.h5 = None
        if self.root.endswith((".h5", ".hdf5")):
            try:
                import h5py
            except ImportError as e:
                raise ImportError(f"features {self.root!r}: reading HDF5 needs h5py (pip install h5py)") from e
            self.h5 = h5py.File(self.root, "r")
        elif not os.path.isdir(self.root):
            raise ValueError(f"features must be a folder of <vid>.npy files or an .h5/.hdf5 file, got {self.root!r}")

    def __getitem__(self, vid):
        if self.h5 is not None:
            if vid not in self.h5:
                raise KeyError(f"features {self.root!r}: no dataset for video {vid!r}")
            x = np.asarray(self.h5[vid][()])
        else:
            path = os.path.join(self.root, f"{vid}.npy")
            if not os.path.exists(path):
                raise KeyError(f"features {self.root!r}: no file {vid}.npy for video {vid!r}")
            x = np.load(path)
        if x.ndim != 2:
            raise ValueError(f"features of video {vid!r} must be [L, D], got shape {x.shape}")
        return x


def resample(feat, num_clips):
    """[L, D] -> ([num_clips, D], valid length): average-pool into num_clips bins when longer
    (as 2D-TAN does), zero-pad when shorter."""
    feat = torch.as_tensor(feat, dtype=torch.float32)
    L, D = feat.shape
    if L == 0:
        raise ValueError("a video's feature array has 0 rows")
    if L > num_clips:
        edges = torch.linspace(0, L, num_clips + 1)
        idx = torch.arange(L, dtype=torch.float32)
        out = torch.stack([feat[(idx >= a) & (idx < max(b, a + 1))].mean(0) for a, b in
                           zip(edges[:-1].floor().tolist(), edges[1:].ceil().tolist())])
        return out, num_clips
    out = feat.new_zeros(num_clips, D)
    out[:L] = feat
    return out, L


class FeatureGrounding(Dataset):
    """Grounding samples (the keys of SyntheticGrounding) from annotations and features.

    Args:
        annotations: list of dicts from :mod:`readers` (vid, start, end, sentence, duration).
        features: a FeatureStore or its root path.
        num_clips: T of every sample (features resampled / padded).
        vocab: a Vocabulary (default: built from these annotations' sentences).
        durations: {vid: seconds} for formats that do not carry durations (Charades-STA).
    """

    def __init__(self, annotations, features, num_clips=32, vocab=None, durations=None):
        self.features = features if isinstance(features, FeatureStore) else FeatureStore(features)
        self.ann, self.num_clips = list(annotations), num_clips
        self.vocab = vocab or Vocabulary.build(a["sentence"] for a in self.ann)
        self.durations = durations or {}
        if not self.ann:
            raise ValueError("annotations must hold at least one sample, got none")
        dim = self.features[self.ann[0]["vid"]].shape[1]
        self.meta = dict(name="features", video_dim=dim, vocab_size=len(self.vocab), vocab=self.vocab.words,
                         num_clips=num_clips, max_query_len=max(len(self.vocab.encode(a["sentence"])) for a in self.ann),
                         has_patches=False)

    def __len__(self):
        return len(self.ann)

    def __getitem__(self, i):
        a = self.ann[i]
        video, n = resample(self.features[a["vid"]], self.num_clips)
        duration = a["duration"] if a["duration"] is not None else self.durations.get(a["vid"])
        if duration is None:
            raise ValueError(f"video {a['vid']!r}: the annotation has no duration; pass durations={{vid: seconds}}")
        s, e = seconds_to_clips(a["start"], a["end"], duration, n)
        q = torch.tensor(self.vocab.encode(a["sentence"]), dtype=torch.long)
        return {"video": video, "video_mask": torch.arange(self.num_clips) < n, "query": q,
                "query_mask": torch.ones(len(q), dtype=torch.bool), "moment": torch.tensor([s, e]),
                "duration": torch.tensor(float(n)), "index": torch.tensor(i)}
