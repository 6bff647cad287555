"""temporal_soft_nms on 2000 segments and temporal_soft_nms_padded on 64 rows x 1000 segments:
ActionFormer's post-processing settings (gaussian, sigma 0.5, min_score 0.001, at most 2000
candidates in, 200 out; 100 out per row for the padded batch), forward only.

Target of the issue, on the CPU: >= 10x the pure-PyTorch soft-NMS (vgops.reference, a loop of
tensor ops per selection; the padded reference loops over the rows too). torchvision has no
soft-NMS, so there is no torchvision column. Selections must agree (indices equal, scores within
float32 rounding).
"""
import torch

import vgops
from vgops import reference

from . import harness

SOFT = dict(method="gaussian", iou_threshold=0.3, sigma=0.5, min_score=1e-3)


def _inputs(n, rows=None, seed=0):
    def make(device):
        g = harness.generator(seed)
        lead = () if rows is None else (rows,)
        seg = harness.segments(n, g, *lead)
        scores = torch.rand(*lead, n, generator=g)
        return {k: v.to(device) for k, v in dict(segments=seg, scores=scores).items()}
    return make


def compare_selection(expected, got, inputs):
    """(indices, scores[, valid]): indices (and valid) equal, scores close in float32."""
    for i, (e, g) in enumerate(zip(expected, got)):
        e, g = e.cpu(), g.cpu()
        if tuple(e.shape) != tuple(g.shape):
            return False, f"output {i}: shape {tuple(g.shape)}, expected {tuple(e.shape)}"
        if e.is_floating_point():
            if not torch.allclose(g.double(), e.double(), rtol=1e-5, atol=1e-6):
                return False, f"output {i}: max abs diff {(g.double() - e.double()).abs().max().item():.3g}"
        elif not torch.equal(e, g):
            return False, f"output {i}: {(e != g).sum().item()} entries differ"
    return True, ""


def _providers(max_keep, padded):
    op = "temporal_soft_nms_padded" if padded else "temporal_soft_nms"
    vg = vgops.temporal_soft_nms_padded if padded else vgops.temporal_soft_nms
    ref = reference.temporal_soft_nms_padded if padded else reference.temporal_soft_nms

    def vgops_(inp, mode):
        s, sc = inp["segments"], inp["scores"]
        note = f"backend={harness.vgops_backend(op, s, sc)}"
        return harness.Run(lambda: vg(s, sc, max_keep=max_keep, **SOFT), note=note)

    def reference_(inp, mode):
        s, sc = inp["segments"], inp["scores"]
        return harness.Run(lambda: ref(s, sc, max_keep=max_keep, **SOFT))

    def compiled_(inp, mode):
        s, sc = inp["segments"], inp["scores"]
        f = harness.Compiled(lambda a, b: ref(a, b, max_keep=max_keep, **SOFT))
        return harness.Run(lambda: f(s, sc), note=lambda: f.note)

    def torchvision_(inp, mode):
        harness.require_torchvision()
        raise harness.Unavailable("torchvision has no soft-NMS")

    return {"vgops": vgops_, "reference": reference_, "compiled_reference": compiled_,
            "torchvision": torchvision_}


CASES = [
    harness.Case("temporal_soft_nms", "2000 segments fp32 gaussian, max_keep 200", _inputs(2000),
                 _providers(200, padded=False), compare=compare_selection),
    harness.Case("temporal_soft_nms_padded", "64 rows x 1000 segments fp32 gaussian, max_keep 100",
                 _inputs(1000, rows=64), _providers(100, padded=True), compare=compare_selection),
]
