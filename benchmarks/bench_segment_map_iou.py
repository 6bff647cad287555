"""segment_map_iou: the 2D-TAN IoU target map of B=64 queries on an N=200 clip grid (forward;
a target, not differentiable). Baselines: the vectorised pure-PyTorch reference (the best plain
PyTorch version: one broadcast over [B, N, N]) eager and under torch.compile. Target: >= 3x."""
import torch

import vgops
from vgops import reference

from . import harness


def _inputs(b, n, seed=0):
    def make(device):
        g = harness.generator(seed)
        duration = 20 + torch.rand(b, generator=g) * 100
        start = torch.rand(b, generator=g) * duration * 0.8
        end = start + torch.rand(b, generator=g) * (duration - start)
        return {"gt": torch.stack([start, end], 1).to(device), "duration": duration.to(device), "n": n}
    return make


def _providers():
    def vgops_(inp, mode):
        note = f"backend={harness.vgops_backend('segment_map_iou', inp['gt'])}"
        return harness.Run(lambda: vgops.segment_map_iou(inp["gt"], inp["n"], inp["duration"]), note=note)

    def reference_(inp, mode):
        return harness.Run(lambda: reference.segment_map_iou(inp["gt"], inp["n"], inp["duration"]))

    def compiled_(inp, mode):
        f = harness.Compiled(reference.segment_map_iou)
        return harness.Run(lambda: f(inp["gt"], inp["n"], inp["duration"]), note=lambda: f.note)

    return {"vgops": vgops_, "reference": reference_, "compiled_reference": compiled_}


def _bytes(inp):  # the [B, N, N] map written, the [B, 2] + [B] inputs read
    b, n = inp["gt"].shape[0], inp["n"]
    return 4 * (b * n * n + 3 * b)


CASES = [harness.Case("segment_map_iou", "B=64 N=200 fp32", _inputs(64, 200), _providers(), bytes_moved=_bytes)]
# Size sweep (--full): the map is O(N^2).
CASES += [harness.Case("segment_map_iou", f"B=64 N={n} fp32 (sweep)", _inputs(64, n), _providers(), size=n)
          for n in (50, 100, 200, 400, 800)]
