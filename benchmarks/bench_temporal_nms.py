"""temporal_nms on 5000 segments, batched_temporal_nms on 64 groups x 1000 segments and
temporal_nms_padded on a padded batch of 64 rows x 1000 segments (max_keep 200), iou_threshold
0.5, forward only: NMS is not differentiable.

Targets of the issue, on the CPU: temporal_nms >= 1.3x torchvision.ops.nms,
batched_temporal_nms >= 5x torchvision.ops.batched_nms, and temporal_nms_padded >= 5x a Python
loop of torchvision.ops.nms over the rows (writing the same padded [B, max_keep] output), on the
same data (segments embedded as boxes x1 = start, x2 = end, y1 = 0, y2 = 1, built outside the
timed call; box IoU then equals segment IoU). Kept indices must agree (up to the order of equal
scores for the unpadded ops; exactly for the padded one).
"""
import torch

import vgops
from vgops import reference

from . import harness

IOU_THRESHOLD = 0.5


def _inputs(groups, per_group, seed=0):
    def make(device):
        g = harness.generator(seed)
        n = groups * per_group
        seg = harness.segments(n, g)
        scores = torch.rand(n, generator=g)
        # A batch of `groups` videos, each with its own `per_group` proposals, concatenated.
        idxs = torch.arange(groups).repeat_interleave(per_group)
        return {k: v.to(device) for k, v in dict(segments=seg, scores=scores, idxs=idxs).items()}
    return make


def _nms_providers():
    def vgops_(inp, mode):
        s, sc = inp["segments"], inp["scores"]
        note = f"backend={harness.vgops_backend('temporal_nms', s, sc)}"
        return harness.Run(lambda: vgops.temporal_nms(s, sc, IOU_THRESHOLD), note=note)

    def reference_(inp, mode):
        s, sc = inp["segments"], inp["scores"]
        return harness.Run(lambda: reference.temporal_nms(s, sc, IOU_THRESHOLD))

    def compiled_(inp, mode):
        s, sc = inp["segments"], inp["scores"]
        f = harness.Compiled(reference.temporal_nms)
        return harness.Run(lambda: f(s, sc, IOU_THRESHOLD), note=lambda: f.note)

    def torchvision_(inp, mode):
        tv = harness.require_torchvision()
        boxes, sc = harness.as_boxes(inp["segments"]), inp["scores"]
        return harness.Run(lambda: tv.ops.nms(boxes, sc, IOU_THRESHOLD))

    return {"vgops": vgops_, "reference": reference_, "compiled_reference": compiled_,
            "torchvision": torchvision_}


def _batched_providers():
    def vgops_(inp, mode):
        s, sc, ix = inp["segments"], inp["scores"], inp["idxs"]
        note = f"backend={harness.vgops_backend('batched_temporal_nms', s, sc, ix)}"
        return harness.Run(lambda: vgops.batched_temporal_nms(s, sc, ix, IOU_THRESHOLD), note=note)

    def reference_(inp, mode):
        s, sc, ix = inp["segments"], inp["scores"], inp["idxs"]
        return harness.Run(lambda: reference.batched_temporal_nms(s, sc, ix, IOU_THRESHOLD))

    def compiled_(inp, mode):
        s, sc, ix = inp["segments"], inp["scores"], inp["idxs"]
        f = harness.Compiled(reference.batched_temporal_nms)
        return harness.Run(lambda: f(s, sc, ix, IOU_THRESHOLD), note=lambda: f.note)

    def torchvision_(inp, mode):
        tv = harness.require_torchvision()
        boxes, sc, ix = harness.as_boxes(inp["segments"]), inp["scores"], inp["idxs"]
        return harness.Run(lambda: tv.ops.batched_nms(boxes, sc, ix, IOU_THRESHOLD))

    return {"vgops": vgops_, "reference": reference_, "compiled_reference": compiled_,
            "torchvision": torchvision_}


def _padded_inputs(rows, n, seed=0):
    def make(device):
        g = harness.generator(seed)
        seg = harness.segments(n, g, rows)
        scores = torch.rand(rows, n, generator=g)
        return {k: v.to(device) for k, v in dict(segments=seg, scores=scores).items()}
    return make


def compare_padded(expected, got, inputs):
    """Padded outputs (indices, valid mask): equal."""
    for i, (e, g) in enumerate(zip(expected, got)):
        if tuple(e.shape) != tuple(g.shape):
            return False, f"output {i}: shape {tuple(g.shape)}, expected {tuple(e.shape)}"
        if not torch.equal(e.cpu(), g.cpu()):
            return False, f"output {i}: {(e.cpu() != g.cpu()).sum().item()} entries differ"
    return True, ""


def _padded_providers(max_keep):
    def vgops_(inp, mode):
        s, sc = inp["segments"], inp["scores"]
        note = f"backend={harness.vgops_backend('temporal_nms_padded', s, sc)}"
        return harness.Run(lambda: vgops.temporal_nms_padded(s, sc, IOU_THRESHOLD, max_keep), note=note)

    def reference_(inp, mode):
        s, sc = inp["segments"], inp["scores"]
        return harness.Run(lambda: reference.temporal_nms_padded(s, sc, IOU_THRESHOLD, max_keep))

    def compiled_(inp, mode):
        s, sc = inp["segments"], inp["scores"]
        f = harness.Compiled(reference.temporal_nms_padded)
        return harness.Run(lambda: f(s, sc, IOU_THRESHOLD, max_keep), note=lambda: f.note)

    def torchvision_(inp, mode):
        tv = harness.require_torchvision()
        boxes, sc = harness.as_boxes(inp["segments"]), inp["scores"]

        def loop():  # what a user of torchvision writes: one nms call per row, then pad
            idx = torch.full((sc.shape[0], max_keep), -1, dtype=torch.long, device=sc.device)
            for b in range(sc.shape[0]):
                keep = tv.ops.nms(boxes[b], sc[b], IOU_THRESHOLD)[:max_keep]
                idx[b, :len(keep)] = keep
            return idx, idx >= 0
        return harness.Run(loop, note="Python loop of torchvision.ops.nms over the rows")

    return {"vgops": vgops_, "reference": reference_, "compiled_reference": compiled_,
            "torchvision": torchvision_}


CASES = [
    harness.Case("temporal_nms", "5000 segments fp32", _inputs(1, 5000), _nms_providers(),
                 compare=harness.compare_kept),
    harness.Case("batched_temporal_nms", "64 groups x 1000 segments fp32", _inputs(64, 1000),
                 _batched_providers(), compare=harness.compare_kept),
    harness.Case("temporal_nms_padded", "64 rows x 1000 segments fp32, max_keep 200", _padded_inputs(64, 1000),
                 _padded_providers(200), compare=compare_padded),
]
# Size sweep (--full): greedy NMS compares each kept segment with the rest, O(N^2) at worst.
CASES += [harness.Case("temporal_nms", f"{n} segments fp32 (sweep)", _inputs(1, n), _nms_providers(),
                       compare=harness.compare_kept, size=n) for n in (1000, 2000, 4000, 8000)]
