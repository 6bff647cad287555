"""temporal_nms on 5000 segments and batched_temporal_nms on 64 groups x 1000 segments
(iou_threshold 0.5, forward only: NMS is not differentiable).

Targets of the issue, on the CPU: temporal_nms >= 1.3x torchvision.ops.nms, and
batched_temporal_nms >= 5x torchvision.ops.batched_nms, on the same data (segments embedded as
boxes x1 = start, x2 = end, y1 = 0, y2 = 1, built outside the timed call; box IoU then equals
segment IoU). Kept indices must agree (up to the order of equal scores).
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


CASES = [
    harness.Case("temporal_nms", "5000 segments fp32", _inputs(1, 5000), _nms_providers(),
                 compare=harness.compare_kept),
    harness.Case("batched_temporal_nms", "64 groups x 1000 segments fp32", _inputs(64, 1000),
                 _batched_providers(), compare=harness.compare_kept),
]
