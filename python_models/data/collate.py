"""Batching of grounding samples: pad every variable-length key and stack the rest."""
import torch

# key -> the mask key that marks its valid rows (time-like keys share video_mask)
_PADDED = {"video": "video_mask", "patches": "video_mask", "query": "query_mask",
           "boxes": "box_mask"}


def _pad(tensors, length):
    out = tensors[0].new_zeros((len(tensors), length) + tuple(tensors[0].shape[1:]))
    for i, t in enumerate(tensors):
        out[i, : t.shape[0]] = t
    return out


def collate(samples):
    """List of sample dicts -> batch dict (batch-first). Variable-length keys (video, patches,
    query, their masks, boxes) are zero/False-padded to the longest in the batch; "frames" (a
    list of per-level tensors) is stacked level by level; everything else is stacked."""
    if not samples:
        raise ValueError("collate: samples must be a non-empty list, got an empty one")
    keys = samples[0].keys()
    batch = {}
    for k in keys:
        vals = [s[k] for s in samples]
        if k == "frames":
            batch[k] = [torch.stack(level) for level in zip(*vals)]
        elif k in _PADDED or k in _PADDED.values():
            batch[k] = _pad(vals, max(v.shape[0] for v in vals))
        elif isinstance(vals[0], torch.Tensor):
            batch[k] = torch.stack(vals)
        else:
            batch[k] = vals
    return batch
