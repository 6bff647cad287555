"""roi_align_1d: proposal features of B=16 videos (C=512 channels, T=256 clips), 100 segments per
video pooled to 16 bins; forward and forward + backward (gradient with respect to the features).

Providers: vgops; vgops.reference eager and under torch.compile; torchvision.ops.roi_align on the
features as one-row maps [B, C, 1, T] with boxes (start, 0, end, 1) and output size (1, 16)
(the same numbers), timed with building its [K, 5] RoI list and reshaping the result.
"""
import torch

import vgops
from vgops import reference

from . import harness

L = 16


def _inputs(B, C, T, per_video, seed=0):
    def make(device):
        g = harness.generator(seed)
        features = torch.randn(B, C, T, generator=g)
        seg = harness.segments(B * per_video, g) * (T / 130.0)  # starts in [0, T), lengths up to T / 4
        batch = torch.arange(B).repeat_interleave(per_video).to(seg.dtype)
        segments = torch.cat([batch[:, None], seg], 1)
        grad_out = torch.rand(B * per_video, C, L, generator=g)
        return {k: v.to(device) for k, v in dict(features=features, segments=segments, grad_out=grad_out).items()}
    return make


def _torchvision_roi_align_1d(tv, features, segments):
    zeros, ones = torch.zeros_like(segments[:, 0]), torch.ones_like(segments[:, 0])
    rois = torch.stack([segments[:, 0], segments[:, 1], zeros, segments[:, 2], ones], 1)
    return tv.ops.roi_align(features[:, :, None], rois, (1, L), 1.0, -1, True)[:, :, 0]


def _providers():
    def run(f, inp, mode, note=""):
        seg = inp["segments"]
        return harness.forward_run(lambda x: f(x, seg), inp["features"], mode=mode, grad_out=inp["grad_out"],
                                   note=note)

    def vgops_(inp, mode):
        note = f"backend={harness.vgops_backend('roi_align_1d', inp['features'], inp['segments'])}"
        return run(lambda x, s: vgops.roi_align_1d(x, s, L), inp, mode, note)

    def reference_(inp, mode):
        return run(lambda x, s: reference.roi_align_1d(x, s, L), inp, mode)

    def compiled_(inp, mode):
        f = harness.Compiled(reference.roi_align_1d)
        return run(lambda x, s: f(x, s, L), inp, mode, note=lambda: f.note)

    def torchvision_(inp, mode):
        tv = harness.require_torchvision()
        return run(lambda x, s: _torchvision_roi_align_1d(tv, x, s), inp, mode)

    return {"vgops": vgops_, "reference": reference_, "compiled_reference": compiled_, "torchvision": torchvision_}


CASES = [
    harness.Case("roi_align_1d", "B=16 C=512 T=256, 1600 segments -> 16 bins fp32", _inputs(16, 512, 256, 100),
                 _providers(), modes=harness.MODES),
]
