"""SyntheticGrounding: a temporal-grounding task with a planted, learnable signal (the default
data: everything runs with no download).

Each concept c has a feature direction u_c (and, for patches, a channel direction w_c) and a
word. A query names one or two concepts among filler words; the clips of the ground-truth moment
carry the sum of the named concepts' directions plus noise. One *unnamed* concept is planted in
another stretch of the video as a distractor, so "where is any concept" is not enough: the model
has to read the query. Everything is drawn once, at construction: the concept directions from ``task_seed``, the
samples from ``seed``.
"""
import torch
from torch.utils.data import Dataset

PAD, UNK = 0, 1


def make_vocab(vocab_size, num_concepts):
    """Word list: <pad>, <unk>, one word per concept, then filler words."""
    if vocab_size < num_concepts + 4:
        raise ValueError(f"vocab_size must be >= num_concepts + 4 = {num_concepts + 4} "
                         f"(pad, unk, concepts and some filler words), got {vocab_size}")
    return (["<pad>", "<unk>"] + [f"concept{c}" for c in range(num_concepts)]
            + [f"word{i}" for i in range(vocab_size - num_concepts - 2)])


class SyntheticGrounding(Dataset):
    """Samples are dicts of unbatched tensors (see ``python_models.data.collate``):
    video Float[T, Dv] (zero rows past the length), video_mask Bool[T], query Long[N],
    query_mask Bool[N], moment Float[2] (clip units, [start, end)), duration Float[],
    index Long[]; with ``patches=True`` also patches Float[T, C, p, p].

    Args:
        num_videos: number of samples (one query per video).
        num_clips: T, clips per video; each video has a random length in [3T/4, T].
        video_dim: Dv.
        vocab_size: words including <pad> and <unk>.
        num_concepts: concepts (each with a word and a feature direction).
        query_len: (min, max) words per query.
        seed: everything is drawn from this seed.
        patches: also make per-clip patch maps (GLF).
        patch_size, patch_channels: p and C of the patch maps.
        signal, noise: norm of a concept direction and std of the per-element noise.
        task_seed: seed of the concept directions (the "world"). Datasets with different
            ``seed`` and the same ``task_seed`` are train/test splits of one task.
    """

    def __init__(self, num_videos, num_clips=32, video_dim=64, vocab_size=50, num_concepts=8,
                 query_len=(4, 8), seed=0, patches=False, patch_size=4, patch_channels=16,
                 signal=3.0, noise=1.0, task_seed=0):
        if num_videos < 1 or num_clips < 4:
            raise ValueError(f"num_videos must be >= 1 and num_clips >= 4, got {num_videos} and {num_clips}")
        if num_concepts < 2:
            raise ValueError(f"num_concepts must be >= 2 (a named concept and a distractor), got {num_concepts}")
        qmin, qmax = query_len
        if not 2 <= qmin <= qmax:
            raise ValueError(f"query_len must be (min, max) with 2 <= min <= max, got {query_len}")
        self.vocab = make_vocab(vocab_size, num_concepts)
        T, D, C = num_clips, video_dim, patch_channels
        w = torch.Generator().manual_seed(task_seed)
        self.directions = torch.nn.functional.normalize(torch.randn(num_concepts, D, generator=w), dim=1) * signal
        self.patch_directions = torch.nn.functional.normalize(torch.randn(num_concepts, C, generator=w), dim=1) * signal
        g = torch.Generator().manual_seed(seed)
        n_fill = vocab_size - num_concepts - 2
        self.videos = torch.randn(num_videos, T, D, generator=g) * noise
        self.patches = torch.randn(num_videos, T, C, patch_size, patch_size, generator=g) * noise if patches else None
        self.lengths = torch.zeros(num_videos, dtype=torch.long)
        self.moments = torch.zeros(num_videos, 2)
        self.queries = []
        for v in range(num_videos):
            L = int(torch.randint(3 * T // 4, T + 1, (1,), generator=g))
            m = int(torch.randint(max(2, L // 6), max(2, L // 2) + 1, (1,), generator=g))
            s = int(torch.randint(0, L - m + 1, (1,), generator=g))
            perm = torch.randperm(num_concepts, generator=g)
            k = 1 + int(torch.randint(0, 2, (1,), generator=g))
            named, distractor = perm[:k], int(perm[k])
            n = int(torch.randint(qmin, qmax + 1, (1,), generator=g))
            words = torch.randint(2 + num_concepts, 2 + num_concepts + n_fill, (n,), generator=g)
            pos = torch.randperm(n, generator=g)[:k]
            words[pos] = 2 + named
            self._plant(v, s, s + m, named, g, patch_size)
            # the distractor: same length, in whichever free stretch (before or after) fits it
            room = [(0, s - m)] if s - m >= 0 else []
            room += [(s + m, L - m)] if L - m >= s + m else []
            if room:
                lo, hi = room[int(torch.randint(0, len(room), (1,), generator=g))]
                d = int(torch.randint(lo, hi + 1, (1,), generator=g))
                self._plant(v, d, d + m, torch.tensor([distractor]), g, patch_size)
            self.videos[v, L:] = 0
            if self.patches is not None:
                self.patches[v, L:] = 0
            self.lengths[v] = L
            self.moments[v] = torch.tensor([float(s), float(s + m)])
            self.queries.append(words)
        self.meta = dict(name="synthetic", video_dim=D, vocab_size=vocab_size, vocab=self.vocab,
                         num_clips=T, max_query_len=qmax, num_concepts=num_concepts,
                         has_patches=bool(patches), patch_size=patch_size, patch_channels=C)

    def _plant(self, v, s, e, concepts, g, p):
        self.videos[v, s:e] += self.directions[concepts].sum(0)
        if self.patches is not None:
            # an "object" occupying a random half-size square of the patch grid
            h = max(1, p // 2)
            y, x = (int(t) for t in torch.randint(0, p - h + 1, (2,), generator=g))
            self.patches[v, s:e, :, y:y + h, x:x + h] += self.patch_directions[concepts].sum(0)[:, None, None]

    def __len__(self):
        return len(self.queries)

    def __getitem__(self, i):
        T = self.videos.shape[1]
        q = self.queries[i]
        out = {
            "video": self.videos[i],
            "video_mask": torch.arange(T) < self.lengths[i],
            "query": q,
            "query_mask": torch.ones(len(q), dtype=torch.bool),
            "moment": self.moments[i],
            "duration": self.lengths[i].float(),
            "index": torch.tensor(i),
        }
        if self.patches is not None:
            out["patches"] = self.patches[i]
        return out
