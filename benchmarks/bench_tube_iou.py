"""tube_iou: tIoU and vIoU of 10,000 spatio-temporal tubes of 100 frames (VidSTG-like) against
the vectorised pure-PyTorch reference, eager and under torch.compile (a metric: forward only).
The per-video Python loop of TubeDETR's evaluation is slower still (it is the test oracle in
tests/test_tube_iou.py, not timed here)."""
import torch

import vgops
from vgops import reference

from . import harness


def _inputs(b, t, seed=0):
    def make(device):
        g = harness.generator(seed)

        def boxes():
            xy = torch.rand(b, t, 2, generator=g) * 300
            return torch.cat([xy, xy + 20 + torch.rand(b, t, 2, generator=g) * 200], -1)

        def span():
            s = torch.randint(0, t // 2, (b,), generator=g)
            return torch.stack([s, s + torch.randint(1, t // 2, (b,), generator=g)], 1).float()
        inp = dict(pred_boxes=boxes(), pred_span=span(), gt_boxes=boxes(), gt_span=span(),
                   frame_mask=torch.rand(b, t, generator=g) < 0.95)
        return {k: v.to(device) for k, v in inp.items()}
    return make


def _providers():
    names = ("pred_boxes", "pred_span", "gt_boxes", "gt_span", "frame_mask")

    def vgops_(inp, mode):
        note = f"backend={harness.vgops_backend('tube_iou', inp['pred_boxes'])}"
        return harness.Run(lambda: vgops.tube_iou(*(inp[k] for k in names)), note=note)

    def reference_(inp, mode):
        return harness.Run(lambda: reference.tube_iou(*(inp[k] for k in names)))

    def compiled_(inp, mode):
        f = harness.Compiled(reference.tube_iou)
        return harness.Run(lambda: f(*(inp[k] for k in names)), note=lambda: f.note)

    return {"vgops": vgops_, "reference": reference_, "compiled_reference": compiled_}


def _bytes(inp):  # both boxes of every frame, the frame mask, the spans read; tIoU and vIoU written
    b, t = inp["frame_mask"].shape
    return 2 * b * t * 16 + b * t + 2 * b * 8 + 2 * b * 4


CASES = [harness.Case("tube_iou", "10000 tubes x 100 frames fp32", _inputs(10_000, 100), _providers(),
                      bytes_moved=_bytes)]
