"""roi_align_clips on B=8 clips of T=64 frames, C=256 channels, 14x14 maps (a 224-pixel image at
stride 16), one box per frame pooled to 7x7; and roi_align_clips_multiscale in the FSM setting: the
same box pooled from 4 pyramid levels (56x56 ... 7x7, strides 4 ... 32), B=2 clips of T=16 frames.
Forward and forward + backward (gradient with respect to the features only).

Providers: vgops; vgops.reference (grid_sample based) eager and under torch.compile;
torchvision.ops.roi_align on the flattened frames, timed with what users pay today: building the
[K, 5] RoI list with frame indices, flattening (B, T) and reshaping the result (the multiscale
case: one roi_align per level, then torch.stack).

Targets of the issue, on the CPU: forward and forward + backward >= 1.0x torchvision and >= 3x
the reference.
"""
import torch

import vgops
from vgops import reference

from . import harness

IMAGE = 224.0


def _boxes(generator, B, T, R=None):
    """(x1, y1, x2, y2) in a 224-pixel image: sides 32 to 224 pixels, inside the image."""
    lead = (B, T) if R is None else (B, T, R)
    size = 32 + torch.rand(*lead, 2, generator=generator) * (IMAGE - 32)
    corner = torch.rand(*lead, 2, generator=generator) * (IMAGE - size)
    return torch.cat([corner, corner + size], -1)


def _inputs(B, T, C, sizes, seed=0):
    def make(device):
        g = harness.generator(seed)
        levels = [torch.randn(B, T, C, h, h, generator=g) for h in sizes]
        boxes = _boxes(g, B, T)
        grad_out = torch.rand(B, T, *([len(sizes)] if len(sizes) > 1 else []), C, 7, 7, generator=g)
        out = {f"level{i}": f for i, f in enumerate(levels)}
        out.update(boxes=boxes, grad_out=grad_out)
        return {k: v.to(device) for k, v in out.items()}
    return make


def _torchvision_roi_align(tv, features, boxes, scale):
    """What users write today: flatten the clips, build the [K, 5] RoI list, pool, reshape."""
    B, T = features.shape[:2]
    frames = torch.arange(B * T, dtype=boxes.dtype, device=boxes.device)
    rois = torch.cat([frames[:, None], boxes.reshape(B * T, 4)], 1)
    out = tv.ops.roi_align(features.flatten(0, 1), rois, 7, scale, -1, True)
    return out.view(B, T, *out.shape[1:])


def _single_providers(scale):
    def run(f, inp, mode, note=""):
        boxes = inp["boxes"]
        return harness.forward_run(lambda x: f(x, boxes), inp["level0"], mode=mode, grad_out=inp["grad_out"],
                                   note=note)

    def vgops_(inp, mode):
        note = f"backend={harness.vgops_backend('roi_align_clips', inp['level0'], inp['boxes'])}"
        return run(lambda x, b: vgops.roi_align_clips(x, b, 7, scale), inp, mode, note)

    def reference_(inp, mode):
        return run(lambda x, b: reference.roi_align_clips(x, b, 7, scale), inp, mode)

    def compiled_(inp, mode):
        f = harness.Compiled(reference.roi_align_clips)
        return run(lambda x, b: f(x, b, 7, scale), inp, mode, note=lambda: f.note)

    def torchvision_(inp, mode):
        tv = harness.require_torchvision()
        return run(lambda x, b: _torchvision_roi_align(tv, x, b, scale), inp, mode)

    return {"vgops": vgops_, "reference": reference_, "compiled_reference": compiled_, "torchvision": torchvision_}


def _multiscale_providers(scales):
    def run(f, inp, mode, note=""):
        boxes = inp["boxes"]
        levels = [inp[f"level{i}"] for i in range(len(scales))]
        return harness.forward_run(lambda *xs: f(list(xs), boxes), *levels, mode=mode, grad_out=inp["grad_out"],
                                   note=note)

    def vgops_(inp, mode):
        note = f"backend={harness.vgops_backend('roi_align_clips_multiscale', inp['level0'], inp['boxes'])}"
        return run(lambda xs, b: vgops.roi_align_clips_multiscale(xs, b, 7, scales), inp, mode, note)

    def reference_(inp, mode):
        return run(lambda xs, b: reference.roi_align_clips_multiscale(xs, b, 7, scales), inp, mode)

    def compiled_(inp, mode):
        f = harness.Compiled(reference.roi_align_clips_multiscale)
        return run(lambda xs, b: f(xs, b, 7, scales), inp, mode, note=lambda: f.note)

    def torchvision_(inp, mode):
        tv = harness.require_torchvision()
        return run(lambda xs, b: torch.stack([_torchvision_roi_align(tv, x, b, s) for x, s in zip(xs, scales)], 2),
                   inp, mode)

    return {"vgops": vgops_, "reference": reference_, "compiled_reference": compiled_, "torchvision": torchvision_}


CASES = [
    harness.Case("roi_align_clips", "B=8 T=64 C=256 14x14 -> 7x7, 1 box/frame fp32",
                 _inputs(8, 64, 256, (14,)), _single_providers(1 / 16), modes=harness.MODES),
    harness.Case("roi_align_clips_multiscale", "FSM 4 levels 56..7, B=2 T=16 C=256 -> 7x7 fp32",
                 _inputs(2, 16, 256, (56, 28, 14, 7)), _multiscale_providers([1 / 4, 1 / 8, 1 / 16, 1 / 32]),
                 modes=harness.MODES),
]
