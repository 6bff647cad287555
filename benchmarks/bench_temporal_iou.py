"""temporal_iou: pairwise (one 1000x1000 matrix, a batch of 32 200x200 matrices) and aligned
(1,000,000 pairs, DRN's IoU loss), forward and forward + backward.

Providers: vgops.temporal_iou; vgops.reference.temporal_iou eager and under torch.compile;
torchvision.ops.box_iou on the segments embedded as boxes (x1 = start, x2 = end, y1 = 0, y2 = 1;
the boxes are built outside the timed call, and only the x1/x2 gradients are compared).
torchvision has no aligned (elementwise) IoU, so the aligned cases have no torchvision column.
"""
import torch

import vgops
from vgops import reference

from . import harness


def _inputs(n, m, lead=(), aligned=False, seed=0):
    def make(device):
        g = harness.generator(seed)
        a = harness.segments(n, g, *lead)
        b = harness.segments(m, g, *lead)
        out_shape = (*lead, n) if aligned else (*lead, n, m)
        grad_out = torch.rand(out_shape, generator=g)  # a fixed upstream gradient for fwd+bwd
        return {k: v.to(device) for k, v in dict(a=a, b=b, grad_out=grad_out).items()}
    return make


def _providers(aligned):
    def vgops_(inp, mode):
        note = f"backend={harness.vgops_backend('temporal_iou', inp['a'], inp['b'])}"
        return harness.forward_run(lambda a, b: vgops.temporal_iou(a, b, aligned), inp["a"], inp["b"],
                                   mode=mode, grad_out=inp["grad_out"], note=note)

    def reference_(inp, mode):
        return harness.forward_run(lambda a, b: reference.temporal_iou(a, b, aligned), inp["a"],
                                   inp["b"], mode=mode, grad_out=inp["grad_out"])

    def compiled_(inp, mode):
        f = harness.Compiled(reference.temporal_iou)
        return harness.forward_run(lambda a, b: f(a, b, aligned), inp["a"], inp["b"], mode=mode,
                                   grad_out=inp["grad_out"], note=lambda: f.note)

    def torchvision_(inp, mode):
        tv = harness.require_torchvision()
        if aligned:
            raise harness.Unavailable("torchvision has no aligned (elementwise) IoU op")

        def convert(out):  # box gradients [..., 4] -> segment gradients [..., 2] (x1, x2)
            return out if mode == "fwd" else tuple(g[..., [0, 2]] for g in out)
        return harness.forward_run(tv.ops.box_iou, harness.as_boxes(inp["a"]), harness.as_boxes(inp["b"]),
                                   mode=mode, grad_out=inp["grad_out"], convert=convert)

    return {"vgops": vgops_, "reference": reference_, "compiled_reference": compiled_,
            "torchvision": torchvision_}


CASES = [
    harness.Case("temporal_iou.pairwise", "1000x1000 fp32", _inputs(1000, 1000),
                 _providers(aligned=False), modes=harness.MODES),
    harness.Case("temporal_iou.pairwise", "32x200x200 fp32", _inputs(200, 200, lead=(32,)),
                 _providers(aligned=False), modes=harness.MODES),
    harness.Case("temporal_iou.aligned", "1000000 pairs fp32", _inputs(1_000_000, 1_000_000, aligned=True),
                 _providers(aligned=True), modes=harness.MODES,
                 bytes_moved=lambda inp: 4 * 5 * inp["a"].shape[0]),  # read 2 + 2 floats, write 1 per pair
]
# Size sweep (--full): pairwise IoU is O(N M).
CASES += [harness.Case("temporal_iou.pairwise", f"{n}x{n} fp32 (sweep)", _inputs(n, n), _providers(aligned=False),
                       modes=harness.MODES, size=n) for n in (250, 500, 1000, 2000, 4000)]
